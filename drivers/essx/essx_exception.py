"""The driver's exceptions, as in the reference (spec 5.2.1.2, design.md); the web server
turns any of them into ``400 {"err": str(exc)}``."""
from typing import Any, Optional


def _table():
    """``eza2500.table``, imported late: eza2500's codec imports this module."""
    from eza2500 import table
    return table


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
    """The converter answered with a NAK: ``ESSXDeviceException(ercd, "1-1")`` reads
    "NAK 0x<ercd> (<meaning>) to command 1-1"; ``ESSXDeviceException("text")`` (the
    reference's form) keeps "text".  Attributes: ``ercd`` (u16, a key of
    ``eza2500.table.NAKS``), ``meaning`` (its text there), ``command`` ("1-1", "6-4"...),
    each None when not given."""

    def __init__(self, ercd: Any, command: Optional[str] = None) -> None:
        code = ercd if isinstance(ercd, int) and not isinstance(ercd, bool) else None
        self.ercd: Optional[int] = code
        self.command = command
        self.meaning: Optional[str] = None if code is None else _table().nak_meaning(code)
        where = " to command %s" % command if command else ""
        super().__init__(ercd if code is None else "NAK 0x%04x (%s)%s" % (code, self.meaning, where))

    def __reduce__(self):
        return (type(self), (self.reason if self.ercd is None else self.ercd, self.command))

    @property
    def retryable(self) -> bool:
        """True for the codes ``eza2500.table.NAKS`` marks for retry."""
        return self.ercd is not None and _table().nak_retryable(self.ercd)


class ESSXFatalException(ESSXException):
    """An error the driver cannot recover from (the reference's name)."""


class ESSXConfigException(ESSXException):
    """The configuration file is missing, malformed, or has a wrong key."""


def __getattr__(name: str) -> Any:
    """Former names from the table: ERCD_MEANINGS {ercd: meaning}, RETRYABLE_ERCD frozenset."""
    if name == "ERCD_MEANINGS":
        return {n.ercd: n.meaning for n in _table().NAKS.values()}
    if name == "RETRYABLE_ERCD":
        return frozenset(n.ercd for n in _table().NAKS.values() if n.retry)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
