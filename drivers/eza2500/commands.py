"""Command0101 ... Command1601 and Command0104 ... Command0904, made from the table.

The classes keep the reference's interface (spec 5.2.1.2: the controller's
``vrfy``/``run`` take "an instance of eza2500.Command0101, etc."), but there is
one generic ``Command`` and each named class is produced from ``table.GROUPS``.
"""
import logging
import time
from typing import Any, Dict, Mapping, Optional

from essx.essx_exception import ESSXDeviceException

from . import codec, table
from .reader import read_reply

logger = logging.getLogger(__name__)


class Command:
    """One EZA2500 command ("N-1" read or "N-4" write) bound to a device.

    Class attributes (set per generated subclass):
        group: the ``table.Group``.
        write: True for "N-4".
        name: "4-4".
    Attributes:
        dev: the ``EZA2500Device``.
        response: dict of the last reply's decoded fields (physical values);
            ``{'ercd': code}`` after a NAK; ``{}`` initially.
    """

    group = None
    write = False
    name = None

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.response = {}
        self._address = (None, None)

    def pack_senddata(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> bytes:
        """The request frame (bytes) for addresses ``ad1``/``ad2``; no I/O.

        Args:
            ad1, ad2: addresses (0..255).
            params: dict name -> physical value (V, A, ... per ``table``) for
                a write; reads ignore it.
        Raises:
            ESSXParameterException: a field is missing.
            ESSXValueException: a value is not a number or out of range.
        """
        return codec.build_request(ad1, ad2, self.group, self.write, params)

    def send(self, ad1: int, ad2: int, params: Optional[Mapping[str, Any]] = None) -> None:
        """Validate and encode, then write the request to the device.

        Nothing is written if validation fails.
        Raises:
            ESSXParameterException, ESSXValueException: bad params.
            ESSXTimeoutException, ESSXIOException: from the device.
        """
        data = self.pack_senddata(ad1, ad2, params)
        self._address = (ad1, ad2)
        self.dev.write(data)

    def recv(self, deadline: Optional[float] = None) -> Dict[str, Any]:
        """Read and decode the reply to the last ``send``.

        Args:
            deadline: ``time.monotonic()`` limit for the whole reply; default
                now + the device's timeout.
        Returns:
            dict name -> physical value (also stored in ``self.response``).
        Raises:
            ESSXDeviceException: the converter sent a NAK (``response`` is
                ``{'ercd': code}``).
            ESSXTimeoutException, ESSXChecksumException, ESSXValueException,
            ESSXIOException: see ``reader.read_reply``.
        """
        if deadline is None:
            deadline = time.monotonic() + self.dev.timeout
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


def _class_name(group, write):
    return "Command%02d%02d" % (group.number, 4 if write else 1)


def _make_commands():
    """One subclass of ``Command`` per command of the table, in table order."""
    made = {}
    for g in table.GROUPS:
        for write in (False, True):
            if write and g.write is None:
                continue
            name = g.name(write)
            made[name] = type(_class_name(g, write), (Command,), {
                "group": g,
                "write": write,
                "name": name,
                "__doc__": "EZA2500 command %s (%s %s; EZA2500.md, group %d)."
                           % (name, "write" if write else "read", g.title, g.number),
                "__module__": __name__,
            })
    return made


#: Command name -> class: {"1-1": Command0101, "1-4": Command0104, ...}.
COMMANDS = _make_commands()

globals().update({cls.__name__: cls for cls in COMMANDS.values()})

__all__ = ["Command", "COMMANDS"] + [cls.__name__ for cls in COMMANDS.values()]
