"""RS485 serial port with a transceiver direction pin (spec 5.4.1).

``ESSXRS485`` is a ``serial.Serial`` that raises the transceiver's DE line for
the duration of a write and drops it once the output has drained
(battery-modbus.md, "Physical layer"; design.md, EVerest SerialCommHub).

``dir_pin`` selects how the direction is switched:

=====================  ====================================================
``"P8_9"``, ``"P8_7"``  a BeagleBone header pin through Adafruit_BBIO.GPIO
(``P8_n``, ``P9_n``,    (extra ``[bbb]``); ``"P8_9"`` is the default, as the
``GPIOx_y``)            spec says (``P8_9`` for /dev/ttyO5, ``P8_7`` for
                        /dev/ttyO2)
``"gpiochipN:LINE"``    a line of a GPIO character device through libgpiod
                        2.x (extra ``[gpiod]``); LINE is an offset or a name
``"rs485"``             the kernel's RS485 mode (TIOCSRS485): the UART
                        drives RTS as DE itself
``"not_used"``/None     the adapter switches direction itself (USB-RS485
                        adapters, Raspberry Pi setups)
=====================  ====================================================

A pin backend is any object with ``transmit()``, ``receive()`` and
``close()`` (``setup()`` optional), or with ``set(level)`` and ``close()``;
pass one as ``pin_driver=`` to use it instead of the one ``dir_pin`` names
(tests inject fakes this way). The pin is set up when the port opens and
released (left in receive) when it closes; it is reused on reopen.

Echo: on a half-duplex bus whose receiver stays enabled while transmitting,
every byte written comes back on the input. With ``drop_echo=True`` a write
reads back exactly as many bytes as it sent (bounded by a deadline of the
frame's time on the wire plus ``ECHO_MARGIN_S``) and discards them, so reply
bytes that follow are never lost. The default is ``False``: the usual
BeagleBone RS485 capes tie DE and /RE to the one pin, so the receiver is off
while transmitting and nothing echoes; reading back an echo that never comes
would only cost the deadline on every write.

POSIX only (termios/select on ``self.fd``); works on ptys, which tests use.
"""
import importlib
import logging
import os
import re
import select
import termios
import time

import serial
import serial.rs485

from essx.essx_exception import ESSXConfigException

logger = logging.getLogger(__name__)

#: Default direction pin (spec 5.4.1: "P8_9 ... use of /dev/ttyO5 is assumed").
DEFAULT_DIR_PIN = "P8_9"

#: Extra time allowed for an echo to come back, on top of the frame's wire
#: time (USB adapters deliver input in 1-16 ms latency-timer chunks), seconds.
ECHO_MARGIN_S = 0.05

_BBB_PIN = re.compile(r"^(P[89]_\d{1,2}|GPIO\d_\d{1,2})$")
_GPIOD_PIN = re.compile(r"^(?:/dev/)?(gpiochip\d+):(\S+)$")
_NO_PIN = ("not_used", "none", "")


class NoPin:
    """Direction backend for adapters that switch direction themselves."""

    def setup(self):
        """Nothing to set up."""

    def transmit(self):
        """Nothing to drive."""

    def receive(self):
        """Nothing to drive."""

    def close(self):
        """Nothing to release."""


class BBIOPin:
    """A BeagleBone header pin driven through ``Adafruit_BBIO.GPIO``.

    HIGH = transmit (DE raised), LOW = receive. ``close()`` leaves the pin an
    output at LOW (receive): ``GPIO.cleanup()`` would reset every pin of the
    process, including the other bus's, and a floating DE could jam the bus.

    Raises:
        ESSXConfigException: Adafruit_BBIO is not installed.
    """

    def __init__(self, name):
        self.name = name
        try:
            self._gpio = importlib.import_module("Adafruit_BBIO.GPIO")
        except ImportError as exc:
            raise ESSXConfigException(
                "dir_pin %r needs Adafruit_BBIO, which is not installed: "
                "pip install 'dcdc_batt_comm[bbb]' (or set dir_pin: not_used "
                "for an adapter that switches direction itself)" % name) from exc
        self._ready = False

    def setup(self):
        """Make the pin an output at LOW (receive)."""
        self._gpio.setup(self.name, self._gpio.OUT)
        self._gpio.output(self.name, self._gpio.LOW)
        self._ready = True

    def transmit(self):
        """Raise the pin (DE on)."""
        if not self._ready:
            self.setup()
        self._gpio.output(self.name, self._gpio.HIGH)

    def receive(self):
        """Drop the pin (DE off)."""
        if self._ready:
            self._gpio.output(self.name, self._gpio.LOW)

    def close(self):
        """Leave the pin at LOW; the next transmit() sets it up again."""
        self.receive()
        self._ready = False


class GpiodPin:
    """A GPIO line of ``/dev/gpiochipN`` requested through libgpiod 2.x.

    ``line`` is an offset (int) or a line name (str). Active = transmit.
    ``close()`` drives the line inactive and releases the request.

    Raises:
        ESSXConfigException: the ``gpiod`` module (2.x) is not installed.
    """

    CONSUMER = "essx-rs485-dir"

    def __init__(self, chip, line):
        self.chip = chip if chip.startswith("/dev/") else "/dev/" + chip
        self.line = line
        try:
            self._gpiod = importlib.import_module("gpiod")
            self._line_mod = importlib.import_module("gpiod.line")
        except ImportError as exc:
            raise ESSXConfigException(
                "dir_pin %s:%s needs libgpiod's Python module (gpiod 2.x), which "
                "is not installed: pip install 'dcdc_batt_comm[gpiod]'"
                % (chip, line)) from exc
        if not hasattr(self._gpiod, "request_lines"):
            raise ESSXConfigException(
                "dir_pin %s:%s needs gpiod 2.x (request_lines); the installed "
                "gpiod module is older: pip install 'dcdc_batt_comm[gpiod]'"
                % (chip, line))
        self._request = None

    def setup(self):
        """Request the line as an output, inactive (receive)."""
        value = self._line_mod.Value
        settings = self._gpiod.LineSettings(
            direction=self._line_mod.Direction.OUTPUT, output_value=value.INACTIVE)
        self._request = self._gpiod.request_lines(
            self.chip, consumer=self.CONSUMER, config={self.line: settings})

    def transmit(self):
        """Drive the line active (DE on)."""
        if self._request is None:
            self.setup()
        self._request.set_value(self.line, self._line_mod.Value.ACTIVE)

    def receive(self):
        """Drive the line inactive (DE off)."""
        if self._request is not None:
            self._request.set_value(self.line, self._line_mod.Value.INACTIVE)

    def close(self):
        """Drive the line inactive and release it."""
        request, self._request = self._request, None
        if request is not None:
            try:
                request.set_value(self.line, self._line_mod.Value.INACTIVE)
            finally:
                request.release()


class _LevelPin:
    """Adapts an injected driver with ``set(level)`` to transmit()/receive()."""

    def __init__(self, driver):
        self._driver = driver

    def setup(self):
        if hasattr(self._driver, "setup"):
            self._driver.setup()

    def transmit(self):
        self._driver.set(1)

    def receive(self):
        self._driver.set(0)

    def close(self):
        self._driver.close()


def make_pin(dir_pin):
    """Build the direction backend that ``dir_pin`` names.

    Args:
        dir_pin: "P8_9"-style BeagleBone pin, "gpiochipN:LINE", "rs485",
            "not_used" or None.

    Returns:
        (kind, backend): kind is "bbio", "gpiod", "rs485" or "none"; backend
        is a pin object (``NoPin`` for "rs485" and "none").

    Raises:
        ESSXConfigException: unknown form, or the GPIO module is missing.
    """
    name = "not_used" if dir_pin is None else str(dir_pin).strip()
    if name.lower() in _NO_PIN:
        return "none", NoPin()
    if name.lower() == "rs485":
        return "rs485", NoPin()
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


def _as_pin(driver):
    """Accept an injected pin driver with transmit()/receive() or set(level)."""
    if hasattr(driver, "transmit") and hasattr(driver, "receive"):
        return driver
    if hasattr(driver, "set"):
        return _LevelPin(driver)
    raise ESSXConfigException(
        "pin_driver %r has neither transmit()/receive() nor set(level)" % (driver,))


class ESSXRS485(serial.Serial):
    """A serial port whose writes switch the RS485 transceiver direction.

    ``ESSXRS485(*args, dir_pin="P8_9", pin_driver=None, drop_echo=False,
    **kwargs)``: every ``serial.Serial`` argument, plus

    Args:
        dir_pin: see the module docstring; default "P8_9" (spec 5.4.1).
        pin_driver: an object used instead of the backend ``dir_pin`` names
            (``transmit()``/``receive()`` or ``set(level)``, and ``close()``);
            ``dir_pin`` is then only a label.
        drop_echo: read back and discard the echo of each write (see module
            docstring); default False.
        exclusive: pyserial's exclusive access (an ``flock`` on the port);
            default True here, so a second program (a second essx-server)
            cannot open the line and garble its replies.

    Raises:
        ESSXConfigException: ``dir_pin`` is malformed, its GPIO module is
            missing, or the port's driver refuses kernel RS485 mode.
        serial.SerialException: the port cannot be opened (pyserial).

    Example (spec 5.4.1): ``ESSXRS485("/dev/ttyO2", 115200, dir_pin="P8_7")``
    """

    def __init__(self, *args, dir_pin=DEFAULT_DIR_PIN, pin_driver=None,
                 drop_echo=False, **kwargs):
        self.dir_pin = dir_pin
        self.drop_echo = bool(drop_echo)
        if pin_driver is not None:
            self._dir_kind, self._pin = "driver", _as_pin(pin_driver)
        else:
            self._dir_kind, self._pin = make_pin(dir_pin)
        self._pin_ready = False
        kwargs.setdefault("exclusive", True)
        super().__init__(*args, **kwargs)

    # -- open / close: the pin lives as long as the port is open ----------
    def open(self):
        """Open the port; set the pin up (receive) or enable kernel RS485.

        Raises:
            ESSXConfigException: the driver refuses kernel RS485 mode.
            serial.SerialException: pyserial could not open the port.
        """
        if self._dir_kind == "rs485" and self._rs485_mode is None:
            # RTS high while sending drives DE (serial.rs485.RS485Settings).
            self._rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=True, rts_level_for_rx=False)
        if not self._pin_ready and hasattr(self._pin, "setup"):
            self._pin.setup()
        self._pin_ready = True
        try:
            super().open()
        except ValueError as exc:
            self._release_pin()
            if self._dir_kind == "rs485":
                raise ESSXConfigException(
                    "dir_pin 'rs485': the driver of %s does not support the "
                    "kernel RS485 mode (%s); use a GPIO pin or 'not_used'"
                    % (self.port, exc)) from exc
            raise
        except BaseException:
            self._release_pin()
            raise

    def close(self):
        """Close the port and release the direction pin (left in receive)."""
        try:
            super().close()
        finally:
            self._release_pin()

    def _release_pin(self):
        pin = getattr(self, "_pin", None)
        if pin is not None and getattr(self, "_pin_ready", False):
            self._pin_ready = False
            pin.close()

    # -- write: transmit, send, drain, (drop echo), receive ---------------
    def write(self, data):
        """Send ``data`` with the transceiver in transmit, then back to receive.

        Order: pin transmit -> ``serial.Serial.write`` -> ``flush()``
        (tcdrain: the bytes have left the UART) -> optional echo drop -> pin
        receive (always, also on error). Without a pin ("not_used", "rs485")
        this is a plain write (plus the optional echo drop).

        Returns:
            int: bytes written.

        Raises:
            serial.SerialException: the write or the drain failed (I/O error,
                port gone); serial.SerialTimeoutException on write timeout.
        """
        if self._dir_kind in ("none", "rs485"):
            return self._send(data, drain=False)
        self._pin.transmit()
        try:
            return self._send(data, drain=True)
        finally:
            self._pin.receive()

    def _send(self, data, drain):
        """``serial.Serial.write``, then (``drain``) tcdrain, then the optional echo drop."""
        count = super().write(data)
        if drain:
            try:
                self.flush()
            except termios.error as exc:
                raise serial.SerialException("drain failed on %s: %s" % (self.port, exc)) from exc
        if self.drop_echo:
            self._discard_echo(bytes(data)[:count])
        return count

    def _char_time(self):
        """Seconds per character on the wire (start + data + parity + stop)."""
        bits = 1 + self.bytesize + (0 if self.parity == serial.PARITY_NONE else 1) + self.stopbits
        return bits / float(self.baudrate)

    def _discard_echo(self, sent):
        """Read back exactly ``len(sent)`` echoed bytes, or until the deadline.

        Reads no more than was sent, so a reply behind the echo stays in the
        input. A mismatch (bus collision, no echo) is logged, not raised: the
        reply's CRC check decides.
        """
        if not sent:
            return
        deadline = time.monotonic() + len(sent) * self._char_time() + ECHO_MARGIN_S
        echo = bytearray()
        while len(echo) < len(sent):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                break
            chunk = os.read(self.fd, len(sent) - len(echo))
            if not chunk:
                raise serial.SerialException("%s: device reports readiness to read but returned no data" % self.port)
            echo += chunk
        if bytes(echo) != sent:
            logger.warning("%s: echo %s does not match the %d bytes sent %s",
                           self.port, bytes(echo).hex(), len(sent), sent.hex())
