"""RS485 serial port with a transceiver direction pin (spec 5.4.1).

``ESSXRS485`` raises the transceiver's DE line for a write and drops it once
the output has drained (docs/battery-registers.md, "Physical layer"; README.md, "How it is built"). ``dir_pin``:

- ``"P8_9"`` (default, spec 5.4.1: /dev/ttyO5), ``"P8_7"`` (/dev/ttyO2), any
  ``P8_n``/``P9_n``/``GPIOx_y``: a BeagleBone pin through Adafruit_BBIO (extra ``[bbb]``);
- ``"gpiochipN:LINE"`` (LINE an offset or a name): libgpiod 2.x (extra ``[gpiod]``);
- ``"rs485"``: the kernel's RS485 mode (TIOCSRS485), the UART drives RTS as DE;
- ``"not_used"`` or None: the adapter switches direction itself.

``drop_echo=True`` discards the echo of each write (a receiver left on while
transmitting); off by default: the usual BeagleBone capes tie DE and /RE to
one pin, so nothing echoes. POSIX only (termios, select/poll); works on ptys.

Descriptors above 1023 work: a process serving many ports (a hundred nodes of
``essx-grid``) has them, and ``select(2)`` takes none above FD_SETSIZE - 1.
Every wait is ``wait_ready``: select as before while the descriptors are
below FD_SETSIZE, ``poll(2)`` above. ``read`` and ``write`` are pyserial's,
which wait in select: while the port's descriptors are below FD_SETSIZE they
are called as they are, above it a copy whose waits are polls. A single node
(essx-server) has low descriptors: its I/O and timings are unchanged.

``read_at_least(size, timeout)`` waits for a reply with one wake-up: the
terminal's VMIN is set to ``size`` for the wait, so the kernel's line
discipline reports the port readable only once ``size`` bytes are in (a
reply arrives in many small chunks; waking for each costs the node CPU).
Not on a USB serial adapter (``usb_serial``): its driver may talk to the
adapter at every terminal setting (ftdi_sio sends a USB control request even
when only VMIN changes), and its bytes come a USB packet at a time anyway.
"""
import errno
import importlib
import logging
import os
import re
import select
import termios
import time
from typing import Collection, Optional, Set

import serial
import serial.rs485
from serial.serialutil import Timeout, to_bytes

from essx.essx_exception import ESSXConfigException

logger = logging.getLogger(__name__)

DEFAULT_DIR_PIN = "P8_9"  #: spec 5.4.1: "P8_9 ... use of /dev/ttyO5 is assumed"
VMIN_MAX = 255  #: the largest VMIN a terminal takes (a c_cc entry is one byte)
READ_CHUNK = 4096  #: bytes ``read_at_least`` takes at most at once (a tty buffers 4 KiB)
ECHO_MARGIN_S = 0.05  #: s allowed beyond an echo's wire time (USB adapters deliver in 1-16 ms chunks)

#: Where Linux lists terminals (sysfs); a USB serial adapter's is on the usb-serial bus.
SYSFS_TTY = "/sys/class/tty"

#: poll(2) events of select(2)'s "readable" and "writable" (POLLERR, POLLHUP and
#: POLLNVAL come whether asked for or not, and count as ready too, as select's).
POLL_READ = select.POLLIN
POLL_WRITE = select.POLLOUT
#: select(2) takes descriptors below this only (glibc's FD_SETSIZE).
FD_SETSIZE = 1024
#: errno values pyserial's read and write ignore (try again), as they do.
_RETRY_ERRNOS = (errno.EAGAIN, errno.EALREADY, errno.EWOULDBLOCK, errno.EINPROGRESS, errno.EINTR)

_BBB_PIN = re.compile(r"^(P[89]_\d{1,2}|GPIO\d_\d{1,2})$")
_GPIOD_PIN = re.compile(r"^(?:/dev/)?(gpiochip\d+):(\S+)$")


def wait_ready(read: Collection[int], write: Collection[int] = (),
               timeout: Optional[float] = None) -> Set[int]:
    """The descriptors of ``read`` that are readable and of ``write`` that are
    writable (either: or failed), once one is or after ``timeout`` s (None: no
    limit; below 0 counts as 0); an empty set after the timeout.

    ``select(2)`` while every descriptor is below FD_SETSIZE (its timeout is
    to the microsecond: the simulators pace bytes by it), else ``poll(2)``,
    which takes any descriptor and rounds the timeout up to the next
    millisecond; both report the same readiness.

    Raises:
        OSError: the wait failed, e.g. EBADF for a closed descriptor under
            select (poll reports it ready: the read or write that follows
            fails); EINTR is retried by Python.
    """
    if max(max(read, default=-1), max(write, default=-1)) < FD_SETSIZE:
        r, w, _ = select.select(read, write, [], None if timeout is None else max(0.0, timeout))
        return {*r, *w}
    poller = select.poll()
    for fd in read:
        poller.register(fd, POLL_READ)
    for fd in write:
        poller.register(fd, POLL_WRITE)
    ms = None if timeout is None else max(0.0, timeout) * 1000.0
    return {fd for fd, _ in poller.poll(ms)}


def _gpio_module(module, dir_pin, needs, extra):
    """Import ``module`` for ``dir_pin``; ESSXConfigException naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ESSXConfigException(
            "dir_pin %r needs %s, which is not installed: pip install 'dcdc_batt_comm[%s]' "
            "(or dir_pin: not_used for an adapter that switches direction itself)"
            % (dir_pin, needs, extra)) from exc


class Pin:
    """A direction backend: ``set(1)`` transmit (DE on), ``set(0)`` receive; ``setup()``
    when the port opens, ``close()`` (left in receive: a floating DE jams the bus) when it closes."""

    def setup(self) -> None:
        """Make the pin an output in receive."""

    def set(self, level: int) -> None:
        """Drive DE: 1 transmit, 0 receive."""

    def close(self) -> None:
        """Leave the pin in receive and release it."""
        self.set(0)

    def transmit(self) -> None:
        self.set(1)

    def receive(self) -> None:
        self.set(0)


class NoPin(Pin):
    """Direction backend for adapters that switch direction themselves."""


class BBIOPin(Pin):
    """A BeagleBone header pin through ``Adafruit_BBIO.GPIO``; HIGH = transmit.

    ``close()`` leaves it an output at LOW, not ``GPIO.cleanup()``, which
    resets every pin of the process. ESSXConfigException: no Adafruit_BBIO.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._gpio = _gpio_module("Adafruit_BBIO.GPIO", name, "Adafruit_BBIO", "bbb")

    def setup(self) -> None:
        self._gpio.setup(self.name, self._gpio.OUT)
        self.set(0)

    def set(self, level: int) -> None:
        self._gpio.output(self.name, self._gpio.HIGH if level else self._gpio.LOW)


class GpiodPin(Pin):
    """A line (offset int or name str) of ``/dev/gpiochipN`` through libgpiod 2.x;
    active = transmit. ESSXConfigException: ``gpiod`` missing or older than 2.x."""

    def __init__(self, chip: str, line) -> None:
        self.chip = chip if chip.startswith("/dev/") else "/dev/" + chip
        self.line = line
        dir_pin = "%s:%s" % (chip, line)
        self._gpiod = _gpio_module("gpiod", dir_pin, "libgpiod's Python module (gpiod 2.x)", "gpiod")
        if not hasattr(self._gpiod, "request_lines"):  # checked first: gpiod 1.x has no gpiod.line
            raise ESSXConfigException(
                "dir_pin %r needs gpiod 2.x (request_lines); the installed gpiod module is "
                "older: pip install 'dcdc_batt_comm[gpiod]'" % dir_pin)
        self._line = _gpio_module("gpiod.line", dir_pin, "gpiod 2.x", "gpiod")
        self._request = None

    def setup(self) -> None:
        settings = self._gpiod.LineSettings(direction=self._line.Direction.OUTPUT,
                                            output_value=self._line.Value.INACTIVE)
        self._request = self._gpiod.request_lines(self.chip, consumer="essx-rs485-dir",
                                                  config={self.line: settings})

    def set(self, level: int) -> None:
        value = self._line.Value
        self._request.set_value(self.line, value.ACTIVE if level else value.INACTIVE)

    def close(self) -> None:
        try:
            self.set(0)
        finally:
            self._request.release()


def make_pin(dir_pin):
    """``(kind, Pin)`` for ``dir_pin`` (module docstring): kind "bbio", "gpiod", "rs485"
    or "none" (these two with a ``NoPin``). ESSXConfigException: unknown form, GPIO module missing."""
    name = "not_used" if dir_pin is None else str(dir_pin).strip()
    if name.lower() in ("not_used", "none", "", "rs485"):
        return ("rs485" if name.lower() == "rs485" else "none"), NoPin()
    if _BBB_PIN.match(name):
        return "bbio", BBIOPin(name)
    match = _GPIOD_PIN.match(name)
    if match:
        chip, line = match.groups()
        return "gpiod", GpiodPin(chip, int(line) if line.isdigit() else line)
    raise ESSXConfigException(
        "dir_pin %r is not understood; use a BeagleBone pin such as 'P8_9' or "
        "'P8_7', 'gpiochipN:LINE' (libgpiod), 'rs485' (kernel RS485 mode) or "
        "'not_used'" % (dir_pin,))


def usb_serial(port: Optional[str], sysfs_tty: str = SYSFS_TTY) -> bool:
    """True when ``port`` ("/dev/ttyUSB0", or a symlink to it) is the terminal of
    a USB serial adapter: its sysfs device is on the usb-serial bus (ftdi_sio,
    cp210x, ch341, pl2303, ...).  False for a UART, a pty or an unknown path.
    Such a driver's ``set_termios`` runs at every tcsetattr, and ftdi_sio's
    sends the adapter a USB control request each time (Linux,
    drivers/usb/serial/ftdi_sio.c, ``ftdi_set_termios``)."""
    if not port:
        return False
    name = os.path.basename(os.path.realpath(port))
    bus = os.path.realpath(os.path.join(sysfs_tty, name, "device", "subsystem"))
    return os.path.basename(bus) == "usb-serial"


def _as_pin(driver):
    """An injected driver as is with transmit()/receive(), else a Pin over its set(level)."""
    if hasattr(driver, "transmit") and hasattr(driver, "receive"):
        return driver
    if not hasattr(driver, "set"):
        raise ESSXConfigException(
            "pin_driver %r has neither transmit()/receive() nor set(level)" % (driver,))
    pin = Pin()
    pin.set, pin.close = driver.set, driver.close
    pin.setup = getattr(driver, "setup", pin.setup)
    return pin


class ESSXRS485(serial.Serial):
    """A ``serial.Serial`` (all its arguments) whose writes switch the RS485 direction.

    Args:
        dir_pin: see the module docstring; default "P8_9" (spec 5.4.1).
        pin_driver: used instead of the backend ``dir_pin`` names
            (``transmit()``/``receive()`` or ``set(level)``, and ``close()``).
        drop_echo: discard the echo of each write (see the module docstring).
        exclusive: default True here: a second essx-server cannot open the line.

    Raises:
        ESSXConfigException: bad ``dir_pin``, its GPIO module missing, or
            kernel RS485 mode refused. serial.SerialException: cannot open.

    Example (spec 5.4.1): ``ESSXRS485("/dev/ttyO2", 115200, dir_pin="P8_7")``
    """

    def __init__(self, *args, dir_pin=DEFAULT_DIR_PIN, pin_driver=None,
                 drop_echo=False, **kwargs):
        self.dir_pin, self.drop_echo, self._pin_ready = dir_pin, bool(drop_echo), False
        #: Whether pyserial's read and write (select) can take the open port's descriptors.
        self.selectable = True
        #: Whether read_at_least waits with VMIN (set at open: not on a USB serial adapter).
        self.vmin_wait = True
        self._dir_kind, self._pin = (make_pin(dir_pin) if pin_driver is None
                                     else ("driver", _as_pin(pin_driver)))
        kwargs.setdefault("exclusive", True)
        super().__init__(*args, **kwargs)

    def open(self):
        """Open the port, set the pin up in receive or enable kernel RS485 mode;
        ESSXConfigException if the driver refuses that mode."""
        if self._dir_kind == "rs485" and self.rs485_mode is None:  # RTS high while sending drives DE
            self.rs485_mode = serial.rs485.RS485Settings(rts_level_for_tx=True, rts_level_for_rx=False)
        if not self._pin_ready:
            getattr(self._pin, "setup", lambda: None)()
            self._pin_ready = True
        try:
            super().open()
            self.vmin_wait = not usb_serial(self.port)
            self.selectable = max(self.fd, self.pipe_abort_read_r, self.pipe_abort_write_r) < FD_SETSIZE
        except BaseException as exc:
            self._release_pin()
            if self._dir_kind == "rs485" and isinstance(exc, ValueError):
                raise ESSXConfigException(
                    "dir_pin 'rs485': the driver of %s does not support the kernel RS485 "
                    "mode (%s); use a GPIO pin or 'not_used'" % (self.port, exc)) from exc
            raise

    def close(self):
        """Close the port and release the direction pin (left in receive)."""
        try:
            super().close()
        finally:
            self._release_pin()

    def _release_pin(self):
        if getattr(self, "_pin_ready", False):
            self._pin_ready = False
            self._pin.close()

    def write(self, data):
        """Pin transmit, write, drain (tcdrain), drop the echo, pin receive (always);
        without a pin ("not_used", "rs485") no drain. Returns the bytes written (int).

        Raises:
            serial.SerialException: the write or the drain failed
                (serial.SerialTimeoutException on write timeout).
        """
        if not self.is_open:
            raise serial.PortNotOpenError()
        self._pin.transmit()
        try:
            count = super().write(data) if self.selectable else self._write_polled(data)
            if self._dir_kind not in ("none", "rs485"):
                try:
                    self.flush()
                except termios.error as exc:
                    raise serial.SerialException("drain failed on %s: %s" % (self.port, exc)) from exc
            if self.drop_echo:
                self._discard_echo(bytes(data)[:count])
            return count
        finally:
            self._pin.receive()

    def read(self, size: int = 1) -> bytes:
        """pyserial's ``read`` (module docstring: its waits polls when the port's
        descriptors are above FD_SETSIZE): up to ``size`` bytes; fewer once
        ``timeout`` (s) has passed (at once with timeout 0, never with None)
        or after ``cancel_read()``.

        Raises:
            serial.PortNotOpenError: the port is closed.
            serial.SerialException: the read failed, or the device reports
                data and has none (unplugged).
        """
        if not self.is_open:
            raise serial.PortNotOpenError()
        if self.selectable:
            return super().read(size)
        read = bytearray()
        timeout = Timeout(self._timeout)
        while len(read) < size:
            try:
                ready = wait_ready((self.fd, self.pipe_abort_read_r), (), timeout.time_left())
                if self.pipe_abort_read_r in ready:
                    os.read(self.pipe_abort_read_r, 1000)
                    break
                if not ready:
                    break  # timed out
                buf = os.read(self.fd, size - len(read))
            except OSError as exc:
                if exc.errno not in _RETRY_ERRNOS:
                    raise serial.SerialException("read failed: %s" % exc) from exc
            else:
                if not buf:
                    raise serial.SerialException(
                        "device reports readiness to read but returned no data "
                        "(device disconnected or multiple access on port?)")
                read.extend(buf)
            if timeout.expired():
                break
        return bytes(read)

    def _write_polled(self, data) -> int:
        """pyserial's ``write`` with its waits made polls (``wait_ready``): all of
        ``data`` unless ``write_timeout`` is 0 (one write) or ``cancel_write()``;
        returns the bytes written (int).

        Raises:
            serial.SerialTimeoutException: ``write_timeout`` (s) passed first.
            serial.SerialException: the write failed.
        """
        d = to_bytes(data)
        length = len(d)
        timeout = Timeout(self._write_timeout)
        while d:
            try:
                n = os.write(self.fd, d)
                if timeout.is_non_blocking:
                    return n
                if not timeout.is_infinite and timeout.expired():
                    raise serial.SerialTimeoutException("Write timeout")
                ready = wait_ready((self.pipe_abort_write_r,), (self.fd,), timeout.time_left())
                if self.pipe_abort_write_r in ready:
                    os.read(self.pipe_abort_write_r, 1000)
                    break
                if not ready:
                    raise serial.SerialTimeoutException("Write timeout")
                d = d[n:]
            except serial.SerialException:
                raise
            except OSError as exc:
                if exc.errno not in _RETRY_ERRNOS:
                    raise serial.SerialException("write failed: %s" % exc) from exc
            if not timeout.is_non_blocking and timeout.expired():
                raise serial.SerialTimeoutException("Write timeout")
        return length - len(d)

    def read_at_least(self, size: int, timeout: float) -> bytes:
        """Everything received, once at least ``size`` bytes are in or ``timeout``
        (s) has passed, whichever comes first: maybe more than ``size`` bytes,
        maybe fewer (b"" when nothing came in time).

        One wake-up however the bytes trickle in: for the wait the terminal's
        VMIN is ``size`` (at most VMIN_MAX) and VTIME 0, with which Linux's
        line discipline reports the port readable only once VMIN bytes are
        waiting; pyserial's VMIN is put back before returning.  Without
        ``vmin_wait`` (a USB serial adapter) the wait ends at the first bytes.

        Raises:
            serial.PortNotOpenError: the port is closed.
            serial.SerialException: the device reports data and has none
                (unplugged), as pyserial's ``read``.
            OSError, termios.error: the port failed.
        """
        if not self.is_open:
            raise serial.PortNotOpenError()
        fd = self.fd
        ready = True
        if size > 0 and timeout > 0:  # the wait returns at once when the bytes are in already
            ready = self._wait_vmin(size, timeout) if self.vmin_wait else self._readable(timeout)
        try:
            data = os.read(fd, READ_CHUNK)  # the port is non-blocking (pyserial opens it so)
        except BlockingIOError:
            return b""
        if not data and ready:
            raise serial.SerialException("device reports readiness to read but returned no data "
                                         "(device disconnected or multiple access on port?)")
        return data

    def _readable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the port to be readable (``wait_ready``)."""
        return bool(wait_ready((self.fd,), (), timeout))

    def _wait_vmin(self, size: int, timeout: float) -> bool:
        """``_readable`` with VMIN ``size`` (VTIME 0) for the wait, pyserial's put back."""
        attrs = termios.tcgetattr(self.fd)
        cc = attrs[6]
        vmin, vtime = cc[termios.VMIN], cc[termios.VTIME]
        cc[termios.VMIN], cc[termios.VTIME] = min(size, VMIN_MAX), 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        try:
            return self._readable(timeout)
        finally:
            cc[termios.VMIN], cc[termios.VTIME] = vmin, vtime
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)

    def _discard_echo(self, sent):
        """Read back at most ``len(sent)`` bytes (a reply behind the echo stays); a mismatch
        (collision, no echo) is logged, not raised: the reply's CRC check decides."""
        bits = 1 + self.bytesize + (self.parity != serial.PARITY_NONE) + self.stopbits
        deadline = time.monotonic() + len(sent) * bits / self.baudrate + ECHO_MARGIN_S
        echo = b""
        while len(echo) < len(sent):
            left = deadline - time.monotonic()
            if left <= 0 or not wait_ready((self.fd,), (), left):
                break
            chunk = os.read(self.fd, len(sent) - len(echo))
            if not chunk:
                raise serial.SerialException("%s: device reports readiness to read but returned no data"
                                             % self.port)
            echo += chunk
        if echo != sent:
            logger.warning("%s: echo %s does not match the %d bytes sent %s",
                           self.port, echo.hex(), len(sent), sent.hex())
