"""The reference's command classes: ``Command0101`` ... ``Command1601``, one per
command of docs/eza2500-protocol.md, "Command table" (``CommandGGWW``: group GG,
WW 01 for the read "GG-1", 04 for the write "GG-4"), and ``COMMANDS`` by name.

The reference's interface (docs/migrating.md, "The package API"): the
controller's ``vrfy``/``run`` take an instance of ``eza2500.Command0101``, etc.;
each has ``pack_senddata``, ``send`` and ``recv``.  A class states only its
``name``; its ``group`` and ``write`` come from ``table.parse_name``, so the
table stays the one source of the protocol's facts.
"""
import logging
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type

from essx.essx_exception import ESSXDeviceException

from . import codec, table
from .reader import read_reply

logger = logging.getLogger(__name__)


class Command:
    """One EZA2500 command bound to ``dev``, an ``EZA2500Device`` (it needs
    ``write(data)`` and what ``reader.read_reply`` reads: ``read_some``,
    ``in_waiting()``, ``timeout``, ``port``).

    Per subclass: ``name`` ("4-4"), and from it (``__init_subclass__``,
    ``table.parse_name``) ``group`` (``table.Group``) and ``write`` (True for
    "N-4").  ``response`` holds the last reply's fields (physical values: V, A,
    W, °C; docs/eza2500-protocol.md, "Q-format scaling"), ``{'ercd': code}``
    after a NAK ("NAK codes"), ``{}`` at first.
    """

    name: ClassVar[Optional[str]] = None
    group: ClassVar[Optional[table.Group]] = None
    write: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive ``group`` and ``write`` of a subclass that states a ``name``
        (a subclass without one inherits all three).

        Raises:
            TypeError: ``name`` is no command of ``table.command_names()``.
        """
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        try:
            cls.group, cls.write = table.parse_name(name)
        except KeyError:
            raise TypeError("%s: no EZA2500 command %r in the table (docs/eza2500-protocol.md, "
                            "\"Command table\")" % (cls.__name__, name)) from None

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.response: Dict[str, Any] = {}
        self._address: Tuple[Optional[int], Optional[int]] = (None, None)

    def pack_senddata(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> bytes:
        """The request frame (docs/eza2500-protocol.md, "Frames") to ``ad1``/``ad2``
        (0..255) carrying ``params`` (field name -> physical value; writes only,
        a read ignores them); no I/O.

        Raises:
            ESSXParameterException: a field of the write is missing.
            ESSXValueException: a value is not a number, out of its range
                ("Range checks"), or an address is not a byte.
        """
        return codec.build_request(ad1, ad2, self.group, self.write, params)

    def send(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> None:
        """Write the request to the device; nothing is written when
        ``pack_senddata`` raises (and it raises as that).

        Raises:
            ESSXTimeoutException, ESSXIOException: from the device's ``write``.
        """
        data = self.pack_senddata(ad1, ad2, params)
        self._address = (ad1, ad2)
        self.dev.write(data)

    def recv(self, deadline: Optional[float] = None) -> Dict[str, Any]:
        """The decoded reply to the last ``send`` (also kept in ``response``):
        field name -> physical value, read until ``deadline``
        (``time.monotonic()`` s; default now + the device's ``timeout``).

        Raises:
            ESSXDeviceException: a NAK (``.ercd``; ``response`` becomes
                ``{'ercd': code}``; docs/eza2500-protocol.md, "NAK codes").
            ESSXTimeoutException, ESSXChecksumException, ESSXValueException,
                ESSXIOException: as ``reader.read_reply``.
        """
        ad1, ad2 = self._address
        frame = read_reply(self.dev, self.group, self.write, deadline, ad1, ad2)
        try:
            self.response = codec.parse_reply(frame, self.group, self.write, ad1, ad2)
        except ESSXDeviceException as exc:
            self.response = {"ercd": exc.ercd}
            logger.info("%s: %s", self.name, exc)
            raise
        return self.response

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.name)


class Command0101(Command):
    """EZA2500 command 1-1 (read operation mode; docs/eza2500-protocol.md, group 1)."""

    name = "1-1"


class Command0104(Command):
    """EZA2500 command 1-4 (write operation mode; docs/eza2500-protocol.md, group 1)."""

    name = "1-4"


class Command0201(Command):
    """EZA2500 command 2-1 (read status; docs/eza2500-protocol.md, group 2)."""

    name = "2-1"


class Command0301(Command):
    """EZA2500 command 3-1 (read battery CV; docs/eza2500-protocol.md, group 3)."""

    name = "3-1"


class Command0304(Command):
    """EZA2500 command 3-4 (write battery CV; docs/eza2500-protocol.md, group 3)."""

    name = "3-4"


class Command0401(Command):
    """EZA2500 command 4-1 (read grid voltage; docs/eza2500-protocol.md, group 4)."""

    name = "4-1"


class Command0404(Command):
    """EZA2500 command 4-4 (write grid voltage; docs/eza2500-protocol.md, group 4)."""

    name = "4-4"


class Command0501(Command):
    """EZA2500 command 5-1 (read dead zone; docs/eza2500-protocol.md, group 5)."""

    name = "5-1"


class Command0504(Command):
    """EZA2500 command 5-4 (write dead zone; docs/eza2500-protocol.md, group 5)."""

    name = "5-4"


class Command0601(Command):
    """EZA2500 command 6-1 (read protection; docs/eza2500-protocol.md, group 6)."""

    name = "6-1"


class Command0604(Command):
    """EZA2500 command 6-4 (write protection; docs/eza2500-protocol.md, group 6)."""

    name = "6-4"


class Command0701(Command):
    """EZA2500 command 7-1 (read battery setup; docs/eza2500-protocol.md, group 7)."""

    name = "7-1"


class Command0704(Command):
    """EZA2500 command 7-4 (write battery setup; docs/eza2500-protocol.md, group 7)."""

    name = "7-4"


class Command0801(Command):
    """EZA2500 command 8-1 (read battery deviation; docs/eza2500-protocol.md, group 8)."""

    name = "8-1"


class Command0804(Command):
    """EZA2500 command 8-4 (write battery deviation; docs/eza2500-protocol.md, group 8)."""

    name = "8-4"


class Command0901(Command):
    """EZA2500 command 9-1 (read alarms; docs/eza2500-protocol.md, group 9)."""

    name = "9-1"


class Command0904(Command):
    """EZA2500 command 9-4 (write alarms; docs/eza2500-protocol.md, group 9)."""

    name = "9-4"


class Command1001(Command):
    """EZA2500 command 10-1 (read meters; docs/eza2500-protocol.md, group 10)."""

    name = "10-1"


class Command1101(Command):
    """EZA2500 command 11-1 (read internal; docs/eza2500-protocol.md, group 11)."""

    name = "11-1"


class Command1201(Command):
    """EZA2500 command 12-1 (read meter Q; docs/eza2500-protocol.md, group 12)."""

    name = "12-1"


class Command1301(Command):
    """EZA2500 command 13-1 (read internal Q; docs/eza2500-protocol.md, group 13)."""

    name = "13-1"


class Command1401(Command):
    """EZA2500 command 14-1 (read ratings; docs/eza2500-protocol.md, group 14)."""

    name = "14-1"


class Command1501(Command):
    """EZA2500 command 15-1 (read version; docs/eza2500-protocol.md, group 15)."""

    name = "15-1"


class Command1601(Command):
    """EZA2500 command 16-1 (read version; docs/eza2500-protocol.md, group 16)."""

    name = "16-1"


#: Command name -> class, in the order of ``table.command_names()``:
#: {"1-1": Command0101, "1-4": Command0104, "2-1": Command0201, ...}.
COMMANDS: Dict[str, Type[Command]] = {cls.name: cls for cls in (
    Command0101, Command0104, Command0201, Command0301, Command0304, Command0401,
    Command0404, Command0501, Command0504, Command0601, Command0604, Command0701,
    Command0704, Command0801, Command0804, Command0901, Command0904, Command1001,
    Command1101, Command1201, Command1301, Command1401, Command1501, Command1601,
)}

__all__ = [
    "Command", "COMMANDS",
    "Command0101", "Command0104", "Command0201", "Command0301", "Command0304", "Command0401",
    "Command0404", "Command0501", "Command0504", "Command0601", "Command0604", "Command0701",
    "Command0704", "Command0801", "Command0804", "Command0901", "Command0904", "Command1001",
    "Command1101", "Command1201", "Command1301", "Command1401", "Command1501", "Command1601",
]
