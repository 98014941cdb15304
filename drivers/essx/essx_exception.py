"""The driver's exception hierarchy (spec 5.2.1.2, design.md).

Every failure the driver reports is an ``ESSXException``; the web server turns
any of them into ``400 {"err": str(exc)}``.  Messages name the field, the value
and what was allowed, never Python internals.

As in the reference (``drivers/essx/essx_exception.py``), every exception is
built from one message, carries it as ``.reason``, and ``str(exc)`` is that
message.  The NAK codes and their meanings are protocol facts of
``eza2500.table`` (``NAKS``); this module reads them from there.
"""
from typing import Any, Optional


def _table():
    """``eza2500.table``, imported when first needed: eza2500's codec imports
    this module, so a module-level import would be circular."""
    from eza2500 import table
    return table


class ESSXException(Exception):
    """Base class of every error the driver raises.

    Attributes:
        reason: the message (what ``str(exc)`` returns), as in the reference.
    """

    def __init__(self, reason: Any = "", *args: Any) -> None:
        super().__init__(reason, *args)
        self.reason = reason

    def __str__(self) -> str:
        return str(self.reason)


class ESSXTimeoutException(ESSXException):
    """A device did not answer (completely) before the deadline."""


class ESSXIOException(ESSXTimeoutException):
    """The serial device itself failed (unplugged, closed, OS error).

    A subclass of ``ESSXTimeoutException`` because it is retried with the
    timeout budget; the port is reopened on the next try.
    """


class ESSXChecksumException(ESSXException):
    """A reply arrived whose checksum (EZA2500) or CRC (Modbus) is wrong."""


class ESSXValueException(ESSXException):
    """A value is malformed or out of range, or a reply has an unexpected LEN/CMD."""


class ESSXParameterException(ESSXException):
    """A required parameter is missing."""


class ESSXDeviceException(ESSXException):
    """The converter answered with a NAK (or, reference style, a device error).

    ``ESSXDeviceException(table.ERCD_BUSY, "1-1")`` gives the message
    "NAK 0x<ercd> (<meaning>) to command 1-1"; ``ESSXDeviceException("text")``
    (the reference's form) keeps "text" as the message, with ``ercd`` None.

    Attributes:
        ercd: the NAK error code (u16, a key of ``eza2500.table.NAKS``), or ``None``.
        meaning: its meaning from ``eza2500.table.NAKS``, or
            ``None`` without a code.
        command: the command name ("1-1", "6-4", ...) or ``None``.
    """

    def __init__(self, ercd: Any, command: Optional[str] = None) -> None:
        self.command = command
        if isinstance(ercd, int) and not isinstance(ercd, bool):
            self.ercd: Optional[int] = ercd
            self.meaning: Optional[str] = _table().nak_meaning(ercd)
            where = " to command %s" % command if command else ""
            super().__init__("NAK 0x%04x (%s)%s" % (ercd, self.meaning, where))
        else:
            self.ercd, self.meaning = None, None
            super().__init__(ercd)

    def __reduce__(self):
        """Pickles back to the same code and command (or reference message)."""
        if self.ercd is None:
            return (type(self), (self.reason, self.command))
        return (type(self), (self.ercd, self.command))

    @property
    def retryable(self) -> bool:
        """True for the codes ``eza2500.table.NAKS`` marks for retry; False
        without a code."""
        return self.ercd is not None and _table().nak_retryable(self.ercd)


class ESSXFatalException(ESSXException):
    """An error the driver cannot recover from (the reference's name)."""


class ESSXConfigException(ESSXException):
    """The configuration file is missing, malformed, or has a wrong key."""


def __getattr__(name: str) -> Any:
    """Former names, read from the table: ERCD_MEANINGS (ercd -> meaning)
    and RETRYABLE_ERCD (frozenset of codes retried)."""
    if name == "ERCD_MEANINGS":
        return {n.ercd: n.meaning for n in _table().NAKS.values()}
    if name == "RETRYABLE_ERCD":
        return frozenset(n.ercd for n in _table().NAKS.values() if n.retry)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
