"""EZA2500 DC/DC converter protocol (docs/eza2500-protocol.md): the table, the codec,
the reference's command classes (``eza2500.Command0404(dev)`` for every command of
its "Command table", ``COMMANDS`` by name), the device, the reply reader and the
link.  The converter's simulator is ``essx_sim.converter``, outside this package.

``from eza2500 import Command0101, ..., Command1601, EZA2500Device`` is the
reference's import path (docs/migrating.md, "The package API").
"""
from .codec import (build_ack, build_nak, build_request, checksum, checksum_ok, decode_value, encode_value,
                    hexdump, parse_reply, parse_request, validate, with_checksum)
from .commands import (COMMANDS, Command, Command0101, Command0104, Command0201, Command0301, Command0304,
                       Command0401, Command0404, Command0501, Command0504, Command0601, Command0604,
                       Command0701, Command0704, Command0801, Command0804, Command0901, Command0904,
                       Command1001, Command1101, Command1201, Command1301, Command1401, Command1501,
                       Command1601)
from .eza2500_device import EZA2500Device
from .link import EZA2500Link, RequestFrame
from .reader import read_reply
from .table import GROUPS, MODES, NAK_LENGTH, Field, Group, command_names, group, group_by_cmd, parse_name

__all__ = [
    "COMMANDS", "Command", "EZA2500Device", "EZA2500Link", "RequestFrame", "read_reply",
    "GROUPS", "MODES", "NAK_LENGTH", "Field", "Group", "command_names", "group", "group_by_cmd", "parse_name",
    "build_ack", "build_nak", "build_request", "checksum", "checksum_ok", "decode_value",
    "encode_value", "hexdump", "parse_reply", "parse_request", "validate", "with_checksum",
    "Command0101", "Command0104", "Command0201", "Command0301", "Command0304", "Command0401",
    "Command0404", "Command0501", "Command0504", "Command0601", "Command0604", "Command0701",
    "Command0704", "Command0801", "Command0804", "Command0901", "Command0904", "Command1001",
    "Command1101", "Command1201", "Command1301", "Command1401", "Command1501", "Command1601",
]
