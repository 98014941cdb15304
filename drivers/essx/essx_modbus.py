"""pymodbus 3.x serial client whose port is an ``ESSXRS485`` (spec 5.4.2).

``ESSXModbusClient(**kwparams)`` takes the ``battery_dev.kwparams`` of the
configuration as the reference did (spec 5.1.3)::

    method: 'rtu'   port: "/dev/ttyO5"   timeout: 1   baudrate: 9600
    dir_pin: "P8_9" (parity, stopbits, bytesize, retries optional)

They are checked by ``essx_config.modbus_params`` (the one validator of these
keys) and mapped to the pymodbus 3.x API: ``method`` becomes ``framer=``,
``dir_pin`` (and ``drop_echo``) go to the ``ESSXRS485`` that ``connect()``
opens, as the specification's way is: override ``connect()``. Everything else
is pymodbus's public interface (``execute``, ``socket``, ``close``).

The line, as this client keeps it (battery-modbus.md; Modbus over Serial Line
1.02, 2.5.1.1):

- Nothing is opened at construction; every request opens the port if needed.
  The port is opened exclusively: a second program on it gets an error
  naming the port.
- After a serial I/O error the port is closed (pymodbus 3.16 does it; on
  3.14/3.15, which let the error out, this client does) and the next request
  opens it again. Changes are logged once each: WARNING when the port cannot
  be opened or is lost, INFO when it is open again.
- Stale input is dropped before every request. After a try that got no valid
  reply, the next request first waits, up to one more timeout, for the late
  reply and drops it: RTU has no transaction id, so a late reply would
  otherwise be taken as the answer to the next request. A reply later than
  twice the timeout cannot be told apart; the WARNING says to raise the
  timeout.
- A reply whose function code is not the request's (e.g. function 3 to a
  function 4 request) is refused (``UnexpectedReply``, a ModbusIOException).
- pymodbus itself makes one try per request; ``retries`` extra tries are made
  here, each after the line has settled.

Tested with pymodbus 3.14, 3.15 and 3.16.
"""
import logging
import select
import termios
import threading
import time
from typing import Any, Tuple

import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from essx.essx_config import ModbusParams, modbus_params
from essx.essx_exception import ESSXConfigException
from essx.essx_rs485 import ESSXRS485, make_pin

logger = logging.getLogger(__name__)

#: Quiet time that ends a late frame while the line settles, s (3.5
#: characters at 9600 baud is 3.6 ms; USB adapters deliver in up to 16 ms
#: chunks, and a loaded machine schedules late).
FRAME_GAP_S = 0.05

_FRAMERS = {"rtu": FramerType.RTU, "ascii": FramerType.ASCII}
_OPEN_ERRORS = (serial.SerialException, OSError, ValueError, termios.error)


class UnexpectedReply(ModbusIOException):
    """A well-formed reply that does not answer the request (other function code)."""


def client_arguments(params: ModbusParams) -> Tuple[dict, dict]:
    """Map checked kwparams to ``ModbusSerialClient`` and ``ESSXRS485`` arguments.

    Args:
        params: from ``essx_config.modbus_params``.

    Returns:
        (client_kwargs, rs485_kwargs): ``port, framer, timeout (s), baudrate,
        parity, stopbits, bytesize, retries (always 0: tries are made by
        ``execute``), handle_local_echo`` and ``dir_pin, drop_echo``.
    """
    client = {
        "port": params.port,
        "framer": _FRAMERS[params.method],
        "timeout": float(params.timeout),
        "baudrate": int(params.baudrate),
        "parity": params.parity,
        "stopbits": params.stopbits,
        "bytesize": int(params.bytesize),
        "retries": 0,
        "handle_local_echo": bool(params.handle_local_echo),
    }
    return client, {"dir_pin": params.dir_pin, "drop_echo": bool(params.drop_echo)}


def _reason(exc: BaseException) -> str:
    """An OS/serial error as one line, with a hint for a port in use."""
    text = str(exc) or exc.__class__.__name__
    if "exclusively lock" in text or "Resource temporarily unavailable" in text:
        text += " (the port is in use by another program, e.g. a second essx-server)"
    return text


class ESSXModbusClient(ModbusSerialClient):
    """Synchronous pymodbus ``ModbusSerialClient`` over an ``ESSXRS485``.

    ``ESSXModbusClient(**kwparams)``: the keys of ``battery_dev.kwparams``
    (see ``essx_config.ModbusParams``). The direction pin's GPIO module is
    loaded here, so a missing Adafruit_BBIO / gpiod is reported at
    construction; the port is not opened here.

    Raises:
        ESSXConfigException: bad kwparams (the key path is named) or an
            unusable ``dir_pin``.

    Attributes:
        params (ModbusParams): the checked settings.
        last_connect_error (str): why the port could not be opened last time.
        line_lock (RLock): held for a whole request (settle, tries).
    """

    def __init__(self, **kwparams: Any) -> None:
        self.params = modbus_params(kwparams)
        client, rs485 = client_arguments(self.params)
        self.dir_pin = rs485["dir_pin"]
        self.drop_echo = rs485["drop_echo"]
        self._pin_kind, self._pin = make_pin(self.dir_pin)
        self.last_connect_error = ""
        self.line_lock = threading.RLock()
        self._unsettled_until = 0.0
        self._state = "new"  # new, open, lost (I/O error), absent (cannot be opened)
        super().__init__(**client)

    @property
    def port(self) -> str:
        """The serial device, e.g. "/dev/ttyO5" (sends nothing)."""
        return self.comm_params.host

    @property
    def is_open(self) -> bool:
        """True while the port is open (sends nothing)."""
        return self.socket is not None

    def connect(self) -> bool:
        """Open the port as an ``ESSXRS485`` (exclusively) unless it is open.

        Returns:
            bool: True when the port is open; False when it cannot be opened
            (``last_connect_error`` says why; logged once per change).

        Raises:
            ESSXConfigException: the port refuses the configured direction
                mode (e.g. kernel RS485 on a port without it).
        """
        if self.socket:
            return True
        params = self.comm_params
        try:
            self.socket = ESSXRS485(
                params.host, timeout=params.timeout_connect, write_timeout=params.timeout_connect,
                bytesize=params.bytesize, stopbits=params.stopbits, baudrate=params.baudrate,
                parity=params.parity, exclusive=True, dir_pin=self.dir_pin,
                pin_driver=self._pin if self._pin_kind in ("bbio", "gpiod") else None,
                drop_echo=self.drop_echo)
            self.socket.inter_byte_timeout = getattr(self, "inter_byte_timeout", 0)
        except ESSXConfigException:
            raise
        except _OPEN_ERRORS as exc:
            self.socket = None
            self.last_connect_error = "cannot open %s: %s" % (params.host, _reason(exc))
            if self._state in ("new", "open"):
                logger.warning("battery port %s; retried at every read", self.last_connect_error)
            if self._state != "lost":  # a lost port that stays away was reported once
                self._state = "absent"
            return False
        if self._state in ("lost", "absent"):
            logger.info("battery port %s is open again", params.host)
        self._state = "open"
        return True

    def execute(self, no_response_expected: bool, request: Any) -> Any:
        """Run one request: open the port if needed, settle the line, try.

        Makes ``1 + retries`` tries (``retries`` from kwparams), each after
        the line has settled.

        Returns:
            the pymodbus reply PDU (None with ``no_response_expected``).

        Raises:
            ConnectionException: the port cannot be opened or failed (the
                message names the port and the OS error).
            ModbusIOException: no valid reply within the timeout (also a bad
                CRC); ``UnexpectedReply`` for another function code.
        """
        with self.line_lock:
            for _ in range(int(self.params.retries)):
                try:
                    return self._try(no_response_expected, request)
                except ModbusIOException:
                    pass  # the next try settles the line first
            return self._try(no_response_expected, request)

    def _try(self, no_response_expected, request):
        """One try: open, settle, pymodbus's execute, check the function code."""
        if not self.connect():
            raise ConnectionException(self.last_connect_error)
        try:
            self._settle()
            reply = super().execute(no_response_expected, request)
        except ConnectionException as exc:  # 3.16 closed the port; the OS error is the context
            raise self._lost(exc.__context__ or exc) from exc
        except (OSError, termios.error) as exc:  # 3.14/3.15 let the serial error out
            raise self._lost(exc) from exc
        except ModbusIOException:
            self._unsettle()
            raise
        if reply is not None and (reply.function_code & 0x7F) != request.function_code:
            self._unsettle()
            raise UnexpectedReply("%s: reply with function code %d to a function %d request (refused)"
                                  % (self.port, reply.function_code, request.function_code))
        return reply

    def _lost(self, exc: BaseException) -> ConnectionException:
        """Close the port after an I/O error; log once; the error to raise."""
        self.close()
        text = "%s: %s" % (self.port, _reason(exc))
        if self._state != "lost":
            logger.warning("battery port lost: %s; reopened at the next read", text)
        self._state = "lost"
        return ConnectionException(text)

    def _unsettle(self) -> None:
        """After a failed try: a late reply may still come within one more timeout."""
        self._unsettled_until = time.monotonic() + self.comm_params.timeout_connect

    def _settle(self) -> None:
        """Drop stale input; after a failed try, first wait out a late reply."""
        until, self._unsettled_until = self._unsettled_until, 0.0
        dropped = _drain(self.socket, until, self.comm_params.timeout_connect)
        if dropped and until:
            logger.warning("%s: dropped %d bytes that came after the previous request's timeout "
                           "(%.3g s): %s; a late reply is never taken for a later request; "
                           "raise kwparams.timeout if the battery answers this late",
                           self.port, len(dropped), self.comm_params.timeout_connect, dropped.hex())
        elif dropped:
            logger.warning("%s: dropped %d stale bytes before sending: %s",
                           self.port, len(dropped), dropped.hex())


def _drain(port: serial.Serial, until: float, limit: float) -> bytes:
    """Read and return what arrives: what is waiting now, and until ``until``.

    Args:
        port: an open pyserial port.
        until: monotonic time up to which a late frame is awaited (0: none).
        limit: at most this long past ``until`` (or now) in all, s, so a
            babbling line cannot hold the caller.

    Returns:
        bytes: everything read. Stops early once something arrived and the
        line then stayed quiet for ``FRAME_GAP_S``.
    """
    data = bytearray()
    end = max(until, time.monotonic()) + limit
    while True:
        now = time.monotonic()
        waiting = port.in_waiting
        if waiting and now < end:
            data += port.read(waiting)
            continue
        wait = min(FRAME_GAP_S if data else until - now, end - now)
        if wait <= 0 or not select.select([port.fileno()], [], [], wait)[0]:
            return bytes(data)

