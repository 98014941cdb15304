"""pymodbus 3.x serial client whose port is an ``ESSXRS485`` (spec 5.4.2).

``ESSXModbusClient(**kwparams)`` takes the ``battery_dev.kwparams`` of the
configuration as the reference did (spec 5.1.3)::

    method: 'rtu'   port: "/dev/ttyO5"   timeout: 1   baudrate: 9600
    dir_pin: "P8_9" (parity, stopbits, bytesize, retries optional)

and maps them to the pymodbus 3.x API: ``method`` becomes ``framer=``,
``dir_pin`` (and ``drop_echo``) go to the ``ESSXRS485`` that ``connect()``
opens. pymodbus's own ``retries`` default to 0 here, because
``BatteryEmulator`` makes its own two tries 0.5 s apart (battery-modbus.md).

Reconnect: after a serial I/O error the port is closed, and the next request
opens it again (``execute()`` calls ``connect()``). pymodbus 3.16 does the
closing itself but reports only the client's name; ``send``/``recv`` here keep
the OS error's text, and also close on the older 3.x releases that let
``OSError`` through.
"""
import logging
import termios

import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException
from pymodbus.framer import FramerType

from essx.essx_exception import ESSXConfigException
from essx.essx_rs485 import DEFAULT_DIR_PIN, ESSXRS485, make_pin

logger = logging.getLogger(__name__)

_METHODS = {"rtu": FramerType.RTU, "ascii": FramerType.ASCII}
_PARITIES = ("N", "E", "O", "M", "S")
_STOPBITS = (1, 1.5, 2)
_BYTESIZES = (5, 6, 7, 8)
KNOWN_KWPARAMS = ("method", "port", "timeout", "baudrate", "parity", "stopbits",
                  "bytesize", "retries", "dir_pin", "drop_echo", "handle_local_echo")


def _refuse(key, value, allowed):
    raise ESSXConfigException("battery kwparams: %s=%r is not allowed (allowed: %s)"
                              % (key, value, allowed))


def _number(key, value, low, high=None):
    """Return ``value`` as a number within [low, high] or raise ESSXConfigException."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < low or (high is not None and number > high) or isinstance(value, bool):
        _refuse(key, value, ">= %s" % low if high is None else "%s..%s" % (low, high))
    return number


def _choice(key, value, allowed):
    """Return ``value`` if it is one of ``allowed``, else raise ESSXConfigException."""
    if value not in allowed:
        _refuse(key, value, ", ".join(str(a) for a in allowed))
    return value


def client_arguments(kwparams):
    """Translate the configuration's kwparams to ModbusSerialClient arguments.

    Args:
        kwparams: dict from ``battery_dev.kwparams``.

    Returns:
        (client_kwargs, rs485_kwargs): keyword arguments for
        ``ModbusSerialClient.__init__`` and for ``ESSXRS485``
        (``dir_pin``, ``drop_echo``).

    Raises:
        ESSXConfigException: unknown key (named), missing ``port``, or a value
            out of range (named with what is allowed).
    """
    unknown = sorted(set(kwparams) - set(KNOWN_KWPARAMS))
    if unknown:
        raise ESSXConfigException("battery kwparams: unknown key %r (known: %s)"
                                  % (unknown[0], ", ".join(KNOWN_KWPARAMS)))
    if not kwparams.get("port"):
        raise ESSXConfigException("battery kwparams: 'port' is required (e.g. /dev/ttyO5)")
    method = str(kwparams.get("method", "rtu")).lower()
    _choice("method", method, tuple(_METHODS))
    client = {
        "port": str(kwparams["port"]),
        "framer": _METHODS[method],
        "timeout": _number("timeout", kwparams.get("timeout", 1), 0.001),
        "baudrate": int(_number("baudrate", kwparams.get("baudrate", 9600), 50)),
        "parity": _choice("parity", str(kwparams.get("parity", "N")).upper(), _PARITIES),
        "stopbits": _choice("stopbits", kwparams.get("stopbits", 1), _STOPBITS),
        "bytesize": _choice("bytesize", kwparams.get("bytesize", 8), _BYTESIZES),
        "retries": int(_number("retries", kwparams.get("retries", 0), 0, 10)),
        "handle_local_echo": bool(kwparams.get("handle_local_echo", False)),
    }
    rs485 = {
        "dir_pin": kwparams.get("dir_pin", DEFAULT_DIR_PIN),
        "drop_echo": bool(kwparams.get("drop_echo", False)),
    }
    return client, rs485


class ESSXModbusClient(ModbusSerialClient):
    """Synchronous pymodbus ``ModbusSerialClient`` over an ``ESSXRS485``.

    ``ESSXModbusClient(**kwparams)``; see ``client_arguments`` for the keys.
    The direction pin's GPIO module is loaded here, so a missing
    Adafruit_BBIO / gpiod is reported at construction, not hidden behind a
    failed connect.

    Raises:
        ESSXConfigException: bad kwparams or unusable ``dir_pin``.

    Not thread-safe beyond pymodbus's own per-request lock; the controller
    holds one lock per bus (design.md).
    """

    def __init__(self, **kwparams):
        client, rs485 = client_arguments(kwparams)
        self.dir_pin = rs485["dir_pin"]
        self.drop_echo = rs485["drop_echo"]
        self._pin_kind, self._pin = make_pin(self.dir_pin)
        self.last_connect_error = ""
        super().__init__(**client)

    def connect(self):
        """Open the port as an ``ESSXRS485`` (mirrors pymodbus 3.16 connect()).

        Returns:
            bool: True when the port is open.

        Raises:
            ESSXConfigException: the port refuses the configured direction
                mode (e.g. kernel RS485 on a port without it). Other open
                errors are logged and give False, as in pymodbus.
        """
        if self.socket:
            return True
        try:
            self.socket = ESSXRS485(
                self.comm_params.host,
                timeout=self.comm_params.timeout_connect,
                write_timeout=self.comm_params.timeout_connect,
                bytesize=self.comm_params.bytesize,
                stopbits=self.comm_params.stopbits,
                baudrate=self.comm_params.baudrate,
                parity=self.comm_params.parity,
                exclusive=True,
                dir_pin=self.dir_pin,
                pin_driver=self._pin if self._pin_kind in ("bbio", "gpiod") else None,
                drop_echo=self.drop_echo,
            )
            self.socket.inter_byte_timeout = getattr(self, "inter_byte_timeout", 0)
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            self.last_connect_error = str(exc)
            logger.error("cannot open %s: %s", self.comm_params.host, exc)
            self.close()
        return self.socket is not None

    def execute(self, no_response_expected, request):
        """Run one request; open the port first if needed (pymodbus API).

        Raises:
            ConnectionException: the port cannot be opened (with the reason).
            ModbusIOException: no valid reply within the timeout.
        """
        if not self.connect():
            raise ConnectionException("cannot open %s: %s"
                                      % (self.comm_params.host, self.last_connect_error))
        return super().execute(no_response_expected, request)

    # send/recv mirror pymodbus 3.16 but keep the OS error's text in the
    # ConnectionException (pymodbus reports only the client's name) and close
    # the port on every I/O error on all 3.x releases (3.10 let OSError out).
    def send(self, request, addr=None):
        """Write one frame, after dropping stale input; close the port on I/O error.

        Returns:
            int: bytes written.

        Raises:
            ConnectionException: port not open, write timeout, or I/O error.
        """
        _ = addr
        if not self.socket:
            raise ConnectionException("%s: port is not open" % self.comm_params.host)
        try:
            waiting = self.socket.in_waiting
            if waiting:
                stale = self.socket.read(waiting)
                logger.warning("%s: dropped %d stale bytes before sending: %s",
                               self.comm_params.host, len(stale), stale.hex())
            return self.socket.write(request) or 0
        except serial.SerialTimeoutException as exc:
            raise ConnectionException("%s: write timeout" % self.comm_params.host) from exc
        except (OSError, termios.error) as exc:
            self.close()
            raise ConnectionException("%s: %s" % (self.comm_params.host, exc)) from exc

    def recv(self, size):
        """Read a reply (pymodbus's waiting rule); close the port on I/O error.

        Args:
            size: bytes wanted, or None for "whatever arrives before the gap".

        Returns:
            bytes: what arrived within the timeout (may be short or empty).

        Raises:
            ConnectionException: port not open or I/O error.
        """
        if not self.socket:
            raise ConnectionException("%s: port is not open" % self.comm_params.host)
        try:
            if size is None:
                size = self._wait_for_data()
            if size > self.socket.in_waiting:
                self._wait_for_data()
            return self.socket.read(size)
        except (OSError, termios.error) as exc:
            self.close()
            raise ConnectionException("%s: %s" % (self.comm_params.host, exc)) from exc
