"""EZA2500 DC/DC converter protocol: table, codec, commands, device, link, simulator.

``import eza2500; eza2500.Command0404(dev)`` works for every command of
EZA2500.md ("1-1" ... "16-1", "1-4" ... "9-4"); ``COMMANDS`` maps names to
classes.  The simulator is imported on demand (``eza2500.simulator``).
"""
from .codec import (
    build_ack,
    build_nak,
    build_request,
    checksum,
    checksum_ok,
    decode_value,
    encode_value,
    hexdump,
    parse_reply,
    parse_request,
    validate,
    with_checksum,
)
from .commands import COMMANDS, Command
from .commands import *  # noqa: F401,F403 - Command0101 ... Command1601
from .eza2500_device import EZA2500Device
from .link import EZA2500Link, RequestFrame
from .reader import read_reply
from .table import GROUPS, MODES, NAK_LENGTH, Field, Group, command_names, group, group_by_cmd, parse_name

__all__ = [
    "COMMANDS", "Command", "EZA2500Device", "EZA2500Link", "RequestFrame", "read_reply",
    "GROUPS", "MODES", "NAK_LENGTH", "Field", "Group", "command_names", "group", "group_by_cmd",
    "parse_name",
    "build_ack", "build_nak", "build_request", "checksum", "checksum_ok", "decode_value",
    "encode_value", "hexdump", "parse_reply", "parse_request", "validate", "with_checksum",
] + [cls.__name__ for cls in COMMANDS.values()]
