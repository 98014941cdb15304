"""The driver's exception hierarchy (spec 5.2.1.2, design.md).

Every failure the driver reports is an ``ESSXException``; the web server turns
any of them into ``400 {"err": str(exc)}``.  Messages name the field, the value
and what was allowed, never Python internals.
"""

#: Meanings of the EZA2500 NAK error codes (EZA2500.md, "NAK error codes").
ERCD_MEANINGS = {
    0xFFFF: "command not supported",
    0xFFFE: "parameter invalid",
    0xFFFD: "normal, but cannot accept now",
    0xFFFC: "system busy",
    0xFFFB: "internal communication error",
}

#: NAK codes worth retrying with the error-retry budget (EZA2500.md).
RETRYABLE_ERCD = frozenset({0xFFFD, 0xFFFC})


class ESSXException(Exception):
    """Base class of every error the driver raises."""


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
    """The converter answered with a NAK.

    Attributes:
        ercd: the NAK error code (u16, e.g. 0xfffc).
        meaning: its meaning from EZA2500.md ("system busy", ...).
        command: the command name ("1-1", "6-4", ...) or ``None``.
    """

    def __init__(self, ercd, command=None):
        self.ercd = ercd
        self.meaning = ERCD_MEANINGS.get(ercd, "unknown error code")
        self.command = command
        where = " to command %s" % command if command else ""
        super().__init__("NAK 0x%04x (%s)%s" % (ercd, self.meaning, where))

    @property
    def retryable(self):
        """True for 0xfffd and 0xfffc, which the controller retries."""
        return self.ercd in RETRYABLE_ERCD


class ESSXConfigException(ESSXException):
    """The configuration file is missing, malformed, or has a wrong key."""
