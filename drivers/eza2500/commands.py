"""Command0101 ... Command1601 and Command0104 ... Command0904, made from the table.

The reference's interface (spec 5.2.1.2: the controller's ``vrfy``/``run``
take "an instance of eza2500.Command0101, etc."): one generic ``Command`` and
a subclass per command of ``table.GROUPS``.
"""
import logging
from typing import Any, Dict, Mapping, Optional

from essx.essx_exception import ESSXDeviceException

from . import codec, table
from .reader import read_reply

logger = logging.getLogger(__name__)


class Command:
    """One EZA2500 command bound to ``dev`` (an ``EZA2500Device``); per
    subclass ``group`` (``table.Group``), ``write`` (True for "N-4") and
    ``name`` ("4-4").  ``response`` holds the last reply's fields (physical
    values), ``{'ercd': code}`` after a NAK, ``{}`` at first."""

    group = None
    write = False
    name = None

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.response = {}
        self._address = (None, None)

    def pack_senddata(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> bytes:
        """The request frame to ``ad1``/``ad2`` (0..255) carrying ``params``
        (name -> physical value; writes only); no I/O.  ESSXParameterException
        when a field is missing, ESSXValueException for a value not a number or out of range."""
        return codec.build_request(ad1, ad2, self.group, self.write, params)

    def send(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> None:
        """Write the request to the device; nothing is written when
        ``pack_senddata`` raises.  ESSXTimeoutException, ESSXIOException from
        the device."""
        data = self.pack_senddata(ad1, ad2, params)
        self._address = (ad1, ad2)
        self.dev.write(data)

    def recv(self, deadline: Optional[float] = None) -> Dict[str, Any]:
        """The decoded reply to the last ``send`` (also kept in ``response``),
        read until ``deadline`` (``time.monotonic()``; default now + the
        device's timeout).  ESSXDeviceException for a NAK (``response``
        becomes ``{'ercd': code}``), else the errors of ``reader.read_reply``."""
        ad1, ad2 = self._address
        frame = read_reply(self.dev, self.group, self.write, deadline, ad1, ad2)
        try:
            self.response = codec.parse_reply(frame, self.group, self.write, ad1, ad2)
        except ESSXDeviceException as exc:
            self.response = {"ercd": exc.ercd}
            logger.info("%s: %s", self.name, exc)
            raise
        return self.response

    def __repr__(self):
        return "<%s %s>" % (type(self).__name__, self.name)


def _command_class(name: str) -> type:
    g, write = table.parse_name(name)
    return type("Command%02d%02d" % (g.number, 4 if write else 1), (Command,), {
        "group": g, "write": write, "name": name, "__module__": __name__,
        "__doc__": "EZA2500 command %s (%s %s; docs/eza2500-protocol.md, group %d)."
                   % (name, "write" if write else "read", g.title, g.number),
    })


#: Command name -> class: {"1-1": Command0101, "1-4": Command0104, ...}.
COMMANDS = {name: _command_class(name) for name in table.command_names()}

globals().update({cls.__name__: cls for cls in COMMANDS.values()})

__all__ = ["Command", "COMMANDS"] + [cls.__name__ for cls in COMMANDS.values()]
