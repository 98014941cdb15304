"""EZA2500Device: deadline-bounded reads and writes over a serial port
(docs/eza2500-protocol.md, "Timing"; "Reading a reply": stale input is dropped
before every request)."""
import logging
import os
import time
from typing import Optional, Protocol

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

#: Default whole-read timeout, s (docs/eza2500-protocol.md, "Timing": 100 ms).
DEFAULT_TIMEOUT = 0.1
#: Low-level read timeout set on the port, s (docs/eza2500-protocol.md, "Timing": 10 ms).
LOW_LEVEL_TIMEOUT = 0.01


class SerialPort(Protocol):
    """What ``EZA2500Device`` uses of its port, all of it: pyserial's interface
    as ``serial.Serial`` and ``essx.essx_rs485.ESSXRS485`` have it.  A port
    error is an ``OSError`` (``serial.SerialException`` is one) or a
    ``termios.error`` (``IO_ERRORS``).  A port may also have
    ``read_at_least(size, timeout) -> bytes`` (``ESSXRS485``'s: everything
    received once ``size`` bytes are in or ``timeout`` s have passed), which
    ``EZA2500Device.read_some`` then waits with."""

    #: Low-level read timeout, s; set to LOW_LEVEL_TIMEOUT at start and at every open.
    timeout: Optional[float]

    @property
    def port(self) -> Optional[str]:
        """The device path ("/dev/ttyO2"), None while none is set; for messages."""

    @property
    def is_open(self) -> bool:
        """True when the port is open."""

    @property
    def in_waiting(self) -> int:
        """Bytes received and not read yet."""

    def open(self) -> None:
        """Open the port."""

    def close(self) -> None:
        """Close the port."""

    def read(self, size: int) -> bytes:
        """At most ``size`` bytes, within ``timeout`` (b"" when none came)."""

    def write(self, data: bytes) -> Optional[int]:
        """Write ``data``; the number of bytes written (None: all of them)."""

    def reset_input_buffer(self) -> None:
        """Drop the input received and not read."""


def port_error(exc: BaseException) -> str:
    """The reason of a port failure (an ``IO_ERRORS`` instance) as an operator
    reads it: "No such file or directory" for pyserial's "could not open port
    ...: [Errno 2] ..."; the exception's text when it has no errno."""
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if isinstance(errno, int) and errno > 0 else str(exc)


class EZA2500Device:
    """Reads and writes whole byte strings within ``timeout`` seconds
    (default 0.1 s; docs/eza2500-protocol.md, "Timing") over ``dev``, a
    ``SerialPort`` (a ``serial.Serial``, an ``ESSXRS485``, ...).

    The port's own read timeout is set to 0.01 s, so a deadline is overrun by
    one low-level read at most ("Timing"); a port that also has
    ``read_at_least`` (``ESSXRS485``) is waited on until the deadline in one
    wake-up instead.  A port error closes the port; the
    next ``write`` reopens it.  It is the ``LinkDevice`` of ``EZA2500Link``.

    Args:
        dev: the port, open or not (``write`` opens it).
        timeout: s a whole read or write may take; None: DEFAULT_TIMEOUT.

    Raises:
        ValueError, TypeError: ``timeout`` is not a number.
    """

    def __init__(self, dev: SerialPort, timeout: Optional[float] = None) -> None:
        self.dev = dev
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        #: The port's one-wake-up wait (``ESSXRS485.read_at_least``), None for a plain SerialPort.
        self._read_at_least = getattr(dev, "read_at_least", None)
        #: True once opened, False after the port failed or could not be
        #: opened, None before the first try (for the once-per-change log).
        self.available = True if dev.is_open else None
        try:
            self._set_low_level_timeout()
        except (TypeError, ValueError) + IO_ERRORS as exc:
            logger.debug("cannot set the low-level timeout of %s: %s", self.port, exc)

    @property
    def port(self) -> str:
        """The port's device path, for messages ("/dev/ttyO2"); the port's repr
        while it has none."""
        return self.dev.port or repr(self.dev)

    @property
    def is_open(self) -> bool:
        """True when the port is open."""
        return bool(self.dev.is_open)

    def _set_low_level_timeout(self) -> None:
        self.dev.timeout = LOW_LEVEL_TIMEOUT

    def _set_available(self, available, exc=None):
        """Log once per change: WARNING when the port is lost or cannot be
        opened, INFO when it is opened (again)."""
        if available == self.available:
            return
        if available:
            logger.info("converter port %s opened", self.port)
        else:
            lost = "unavailable" if self.available is None else "lost"
            logger.warning("converter port %s %s: %s; tried again at every command", self.port, lost,
                           port_error(exc))
        self.available = available

    def _io(self, what):
        """``with self._io(what)`` around a port call; see :class:`_PortCall`."""
        return _PortCall(self, what)

    def _port_failed(self, what, exc):
        """Close the port, log once, raise ESSXIOException ("read on /dev/ttyUSB0
        failed: ..."; with ``what`` None, opening failed)."""
        self.close()
        self._set_available(False, exc)
        if what is None:
            raise ESSXIOException("converter port %s: %s" % (self.port, port_error(exc))) from exc
        raise ESSXIOException("%s on %s failed: %s" % (what, self.port, exc)) from exc

    def close(self) -> None:
        """Close the port, ignoring errors of the close itself (logged at DEBUG)."""
        try:
            self.dev.close()
        except Exception as exc:  # noqa: BLE001 - a failing close must not hide the real error
            logger.debug("closing %s: %s", self.port, exc)

    def ensure_open(self) -> None:
        """Open the port if it is closed, and set its low-level read timeout.

        Raises:
            ESSXIOException: "converter port /dev/ttyUSB0: No such file or
                directory" (the port stays closed; the next call tries again).
            ESSXConfigException: the port refuses its ``dir_pin`` (ESSXRS485).
        """
        if self.is_open:
            return
        with self._io(None):
            self.dev.open()
            self._set_low_level_timeout()
        self._set_available(True)

    def in_waiting(self) -> int:
        """Bytes received and not read; ESSXIOException."""
        with self._io("in_waiting"):
            return int(self.dev.in_waiting)

    def reset_input(self) -> None:
        """Drop stale input; ESSXIOException."""
        with self._io("reset_input_buffer"):
            self.dev.reset_input_buffer()

    def read_some(self, size: int, deadline: float) -> bytes:
        """What has been received once ``size`` more bytes are in, or at
        ``deadline`` (``time.monotonic()`` s): maybe more than ``size`` bytes
        (everything waiting), maybe fewer (b"" when nothing came).

        A port with ``read_at_least`` (``ESSXRS485``) is waited on until then
        with one wake-up; any other ``SerialPort`` is read once, in its
        0.01 s low-level read ("Timing"), so the caller asks again.

        Raises:
            ESSXTimeoutException: ``deadline`` had passed before the call.
            ESSXIOException: the port failed.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise ESSXTimeoutException("read timeout on %s" % self.port)
        with self._io("read"):
            if self._read_at_least is not None:
                return self._read_at_least(size, left)
            return self.dev.read(max(size, self.dev.in_waiting)) or b""

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes within ``self.timeout`` seconds
        (docs/eza2500-protocol.md, "Timing").

        Raises:
            ESSXTimeoutException: fewer bytes came before the timeout.
            ESSXIOException: the port failed.
        """
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        while len(buf) < size:
            if time.monotonic() >= deadline:
                raise ESSXTimeoutException("read timeout on %s: %d of %d bytes (%s)"
                                           % (self.port, len(buf), size, hexdump(buf)))
            with self._io("read"):
                buf += self.dev.read(size - len(buf)) or b""
        return bytes(buf)

    def write(self, data: bytes) -> int:
        """Write all of ``data`` (one request frame) within ``self.timeout``
        seconds, after reopening a closed port and dropping stale input (every
        write is a new request; docs/eza2500-protocol.md, "Reading a reply");
        returns ``len(data)``.

        Raises:
            ESSXTimeoutException: not everything was written in time.
            ESSXIOException: the port failed.
        """
        deadline = time.monotonic() + self.timeout
        self.ensure_open()
        self.reset_input()
        rest = bytes(data)
        while rest:
            with self._io("write"):
                n = self.dev.write(rest)
            rest = rest[len(rest) if n is None else n:]
            if rest and time.monotonic() >= deadline:
                raise ESSXTimeoutException("write timeout on %s: %d bytes left" % (self.port, len(rest)))
        return len(data)


class _PortCall:
    """The context of one port call: a port error goes to ``_port_failed``.  A
    class, not @contextmanager: it wraps ~8 calls a command, and a generator
    costs several times more CPU."""

    __slots__ = ("device", "what")

    def __init__(self, device: EZA2500Device, what: Optional[str]) -> None:
        self.device, self.what = device, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, IO_ERRORS):
            self.device._port_failed(self.what, exc)
        return False
