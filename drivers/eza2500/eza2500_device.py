"""EZA2500Device: deadline-bounded read/write over a serial-like object (spec 5.3.1).

The low-level object only needs pyserial's ``read(n)`` and ``write(data)``;
``timeout``, ``is_open``/``open()``/``close()``, ``in_waiting`` and
``reset_input_buffer()`` are used when it has them.
"""
import logging
import os
import time
from typing import Any, Optional

from essx.essx_exception import ESSXIOException, ESSXTimeoutException

from .codec import hexdump

try:  # termios.error is not an OSError; a hung-up tty may raise it
    from termios import error as _TermiosError
except ImportError:  # pragma: no cover - not POSIX
    class _TermiosError(Exception):
        pass

logger = logging.getLogger(__name__)

#: Errors of the port itself (serial.SerialException is an OSError).
IO_ERRORS = (OSError, _TermiosError)

#: Default whole-read timeout, seconds (EZA2500.md, "Timing facts": 100 ms).
DEFAULT_TIMEOUT = 0.1
#: Low-level read timeout set on the port, seconds (spec 5.3.1.1: 10 ms).
LOW_LEVEL_TIMEOUT = 0.01


def port_error(exc: BaseException) -> str:
    """The reason of a port failure as an operator reads it: "No such file or
    directory" for pyserial's "could not open port ...: [Errno 2] ..."."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno)
    return str(exc)


class EZA2500Device:
    """Reads and writes whole byte strings within a deadline.

    Args:
        dev: the low-level device (a ``serial.Serial``, an ESSXRS485, or any
            object with ``read(n)``/``write(data)``).
        timeout: seconds (float) a ``read``/``write`` may take before
            ``ESSXTimeoutException``; default 0.1 s.

    The port's own read timeout is set to 0.01 s when it has a ``timeout``
    attribute, so one low-level read never blocks longer than that (spec
    5.3.1.1): a deadline may be overrun by about 10 ms.
    """

    def __init__(self, dev: Any = None, timeout: Optional[float] = None) -> None:
        self.dev = dev
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        #: True once opened, False after the port failed or could not be
        #: opened, None before the first try (for the once-per-change log).
        self.available = True if getattr(dev, "is_open", False) else None
        try:
            self._set_low_level_timeout()
        except (AttributeError, TypeError, ValueError) + IO_ERRORS as exc:
            logger.debug("cannot set the low-level timeout of %s: %s", self.port, exc)

    @property
    def port(self) -> str:
        """A name for the underlying port (for messages)."""
        return getattr(self.dev, "port", None) or getattr(self.dev, "name", None) or repr(self.dev)

    # --- port state ----------------------------------------------------------

    def _set_low_level_timeout(self):
        """Bound one low-level read to LOW_LEVEL_TIMEOUT (spec 5.3.1.1), if the
        port has a ``timeout``; the setter's own errors propagate."""
        if hasattr(self.dev, "timeout"):
            self.dev.timeout = LOW_LEVEL_TIMEOUT

    def _drop(self, exc):
        """Close the port after ``exc`` and log its loss once."""
        self.close()
        self._set_available(False, exc)

    def _fail(self, what, exc):
        """Drop the port after an I/O error and raise ESSXIOException."""
        self._drop(exc)
        raise ESSXIOException("%s on %s failed: %s" % (what, self.port, exc)) from exc

    def _set_available(self, available, exc=None):
        """Log once per change: WARNING when the port is lost or cannot be
        opened, INFO when it is opened (again)."""
        if available == self.available:
            return
        if available:
            logger.info("converter port %s opened", self.port)
        elif self.available is None:
            logger.warning("converter port %s unavailable: %s", self.port, port_error(exc))
        else:
            logger.warning("converter port %s lost: %s", self.port, port_error(exc))
        self.available = available

    def close(self) -> None:
        """Close the port, ignoring errors of the close itself; the next
        ``write`` reopens it."""
        close = getattr(self.dev, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - a failing close must not hide the real error
            logger.debug("closing %s: %s", self.port, exc)

    @property
    def is_open(self) -> bool:
        """True when the port is open (a port without ``is_open`` counts as open)."""
        return getattr(self.dev, "is_open", True) is not False

    def ensure_open(self) -> None:
        """Open the port if it is closed (absent at start, or dropped after
        an I/O error).

        Raises:
            ESSXIOException: "converter port /dev/ttyUSB0: No such file or
                directory"; the next call tries again.
        """
        if self.is_open:
            return
        try:
            self.dev.open()
            self._set_low_level_timeout()
        except IO_ERRORS as exc:
            self._drop(exc)
            raise ESSXIOException("converter port %s: %s" % (self.port, port_error(exc))) from exc
        self._set_available(True)

    def in_waiting(self) -> int:
        """Bytes already received and not read (0 if the port cannot tell);
        ESSXIOException if the port failed (it is closed for a reopen)."""
        try:
            return int(getattr(self.dev, "in_waiting", 0) or 0)
        except IO_ERRORS as exc:
            self._fail("in_waiting", exc)

    def reset_input(self) -> None:
        """Drop stale input, if the port can; ESSXIOException if the port
        failed (it is closed for a reopen)."""
        reset = getattr(self.dev, "reset_input_buffer", None)
        if reset is not None:
            try:
                reset()
            except IO_ERRORS as exc:
                self._fail("reset_input_buffer", exc)

    # --- reading ----------------------------------------------------------------

    def _read_raw(self, size):
        """One low-level read (b"" when nothing came); a port error closes the
        port and raises ESSXIOException."""
        try:
            return self.dev.read(size) or b""
        except IO_ERRORS as exc:
            self._fail("read", exc)

    def read_some(self, size: int, deadline: float) -> bytes:
        """One low-level read of at most ``size`` bytes (may return fewer or b"").

        Args:
            size: bytes wanted (>= 1).
            deadline: ``time.monotonic()`` value after which nothing is read.
        Raises:
            ESSXTimeoutException: the deadline has passed already.
            ESSXIOException: the port failed (it is closed for a reopen).
        """
        if time.monotonic() >= deadline:
            raise ESSXTimeoutException("read timeout on %s" % self.port)
        return self._read_raw(size)

    def read_until_deadline(self, size: int, deadline: float) -> bytes:
        """Exactly ``size`` bytes (bytes), or ESSXTimeoutException at
        ``deadline`` (a ``time.monotonic()`` value, seconds); ESSXIOException
        if the port fails."""
        buf = bytearray()
        while len(buf) < size:
            if time.monotonic() >= deadline:
                raise ESSXTimeoutException("read timeout on %s: %d of %d bytes (%s)"
                                           % (self.port, len(buf), size, hexdump(buf)))
            buf += self._read_raw(size - len(buf))
        return bytes(buf)

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes within ``self.timeout`` seconds (spec 5.3.1.1).

        Raises:
            ESSXTimeoutException: fewer bytes came before the timeout.
            ESSXIOException: the port failed.
        """
        return self.read_until_deadline(size, time.monotonic() + self.timeout)

    # --- writing ----------------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Write all of ``data`` within ``self.timeout`` seconds (spec 5.3.1.2).

        A closed port is reopened first and stale input is dropped, since every
        write is a new request.
        Returns:
            int: bytes written (``len(data)``).
        Raises:
            ESSXTimeoutException: not everything was written in time.
            ESSXIOException: the port failed (it is closed for a reopen).
        """
        deadline = time.monotonic() + self.timeout
        self.ensure_open()
        self.reset_input()
        rest = bytes(data)
        while rest:
            try:
                n = self.dev.write(rest)
            except IO_ERRORS as exc:
                self._fail("write", exc)
            rest = rest[len(rest) if n is None else n:]
            if rest and time.monotonic() >= deadline:
                raise ESSXTimeoutException("write timeout on %s: %d bytes left" % (self.port, len(rest)))
        return len(data)
