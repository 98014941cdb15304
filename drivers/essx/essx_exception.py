"""The driver's exceptions, as in the reference (spec 5.2.1.2); the web server
turns any of them into ``400 {"err": str(exc)}`` (docs/web-api.md).

This module imports nothing of the project: every other module may import it.
"""
from typing import Any, Optional


class ESSXException(Exception):
    """Base class of every error the driver raises, built from one message: ``reason``, ``str(exc)``."""

    def __init__(self, reason: Any = "", *args: Any) -> None:
        super().__init__(reason, *args)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.reason)


class ESSXTimeoutException(ESSXException):
    """A device did not answer (completely) before the deadline."""


class ESSXIOException(ESSXTimeoutException):
    """The serial device failed (unplugged, closed, OS error); retried as a timeout, the port reopened."""


class ESSXChecksumException(ESSXException):
    """A reply's checksum (EZA2500) or CRC (Modbus) is wrong."""


class ESSXValueException(ESSXException):
    """A value is malformed or out of range, or a reply has an unexpected LEN/CMD."""


class ESSXParameterException(ESSXException):
    """A required parameter is missing."""


class ESSXDeviceException(ESSXException):
    """The converter answered with a NAK.

    ``ESSXDeviceException(ercd, "1-1", meaning, retry)`` reads "NAK 0x<ercd>
    (<meaning>) to command 1-1" (``eza2500.codec.nak_error`` builds it from
    the NAK table, docs/eza2500-protocol.md); ``ESSXDeviceException("text")``
    (the reference's form) keeps "text".

    Attributes:
        ercd: the error code (u16), None in the reference's form.
        command: "1-1", "6-4"... or None.
        meaning: the code's meaning, or None when not given.
    """

    def __init__(self, ercd: Any, command: Optional[str] = None, meaning: Optional[str] = None,
                 retry: bool = False) -> None:
        code = ercd if isinstance(ercd, int) and not isinstance(ercd, bool) else None
        self.ercd: Optional[int] = code
        self.command = command
        self.meaning: Optional[str] = None if code is None else meaning
        self._retry = code is not None and bool(retry)
        where = " to command %s" % command if command else ""
        what = "" if self.meaning is None else " (%s)" % self.meaning
        super().__init__(ercd if code is None else "NAK 0x%04x%s%s" % (code, what, where))

    def __reduce__(self):
        return (type(self), (self.reason if self.ercd is None else self.ercd, self.command, self.meaning,
                             self._retry))

    @property
    def retryable(self) -> bool:
        """True for the codes the NAK table marks for retry (given as ``retry``)."""
        return self._retry


class ESSXFatalException(ESSXException):
    """An error the driver cannot recover from (the reference's name)."""


class ESSXConfigException(ESSXException):
    """The configuration file is missing, malformed, or has a wrong key."""

