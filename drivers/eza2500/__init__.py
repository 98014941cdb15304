"""EZA2500 DC/DC converter protocol: table, codec, commands (``eza2500.Command0404(dev)``
for every command of docs/eza2500-protocol.md, ``COMMANDS`` by name), device, link; ``essx_sim.converter``
is imported on demand."""
from .codec import (build_ack, build_nak, build_request, checksum, checksum_ok, decode_value, encode_value,
                    hexdump, parse_reply, parse_request, validate, with_checksum)
from .commands import COMMANDS, Command
from .eza2500_device import EZA2500Device
from .link import EZA2500Link, RequestFrame
from .reader import read_reply
from .table import GROUPS, MODES, NAK_LENGTH, Field, Group, command_names, group, group_by_cmd, parse_name

globals().update({cls.__name__: cls for cls in COMMANDS.values()})  # Command0101 ... Command1601

__all__ = [
    "COMMANDS", "Command", "EZA2500Device", "EZA2500Link", "RequestFrame", "read_reply",
    "GROUPS", "MODES", "NAK_LENGTH", "Field", "Group", "command_names", "group", "group_by_cmd", "parse_name",
    "build_ack", "build_nak", "build_request", "checksum", "checksum_ok", "decode_value",
    "encode_value", "hexdump", "parse_reply", "parse_request", "validate", "with_checksum",
]
__all__ += [cls.__name__ for cls in COMMANDS.values()]
