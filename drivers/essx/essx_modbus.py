"""pymodbus 3.x serial client whose port is an ``ESSXRS485`` (spec 5.4.2).

``ESSXModbusClient(**kwparams)`` takes ``battery_dev.kwparams`` as the
reference did (spec 5.1.3), checked by ``essx_config.modbus_params``; only
pymodbus's public API is used (tested with 3.14, 3.15 and 3.16). The line
(battery-modbus.md; Modbus over Serial Line 1.02, 2.5.1.1):

- The first request opens the port (exclusively); after an I/O error it is
  closed and the next request reopens it. Port changes are logged once each.
- Stale input is dropped before every request; after a try without a valid
  reply the next one first waits up to one more timeout for the late reply
  and drops it: RTU has no transaction id, so it would be taken as the next
  request's answer. A reply later than twice the timeout cannot be told apart.
- A reply of another function code (function 3 to a function 4 request) is
  refused: ``UnexpectedReply``.
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
from essx.essx_rs485 import ESSXRS485, make_pin

logger = logging.getLogger(__name__)

#: Quiet time that ends a late frame, s (3.5 characters at 9600 baud is 3.6 ms;
#: USB adapters deliver in up to 16 ms chunks; a loaded machine schedules late).
FRAME_GAP_S = 0.05


class UnexpectedReply(ModbusIOException):
    """A well-formed reply that does not answer the request (other function code)."""


def client_arguments(params: ModbusParams) -> Tuple[dict, dict]:
    """Checked kwparams (``essx_config.modbus_params``) as (``ModbusSerialClient`` kwargs,
    ``ESSXRS485`` kwargs ``dir_pin``, ``drop_echo``); timeout in s; retries always 0: ``execute``
    tries. ``method`` becomes ``framer``; spec 5.4.2: the port is set up by overriding ``connect()``."""
    client = dict(port=params.port, framer=FramerType(params.method), timeout=float(params.timeout),
                  baudrate=int(params.baudrate), parity=params.parity, stopbits=params.stopbits,
                  bytesize=int(params.bytesize), retries=0,
                  handle_local_echo=bool(params.handle_local_echo))
    return client, {"dir_pin": params.dir_pin, "drop_echo": bool(params.drop_echo)}


def _reason(exc: BaseException) -> str:
    """An OS/serial error as one line, with a hint for a port in use."""
    text = str(exc) or exc.__class__.__name__
    if "exclusively lock" in text or "Resource temporarily unavailable" in text:
        text += " (the port is in use by another program, e.g. a second essx-server)"
    return text


class ESSXModbusClient(ModbusSerialClient):
    """Synchronous pymodbus ``ModbusSerialClient`` over an ``ESSXRS485``; kwparams as in
    ``essx_config.ModbusParams``. Opens nothing; a missing GPIO module is reported here.

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
        self.dir_pin, self.drop_echo = rs485["dir_pin"], rs485["drop_echo"]
        self._pin_kind, self._pin = make_pin(self.dir_pin)
        self.last_connect_error = ""
        self.line_lock = threading.RLock()
        self._unsettled_until = 0.0
        self._down = False  # lost or cannot be opened, and logged
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
        """Open the port as an ``ESSXRS485`` (exclusively) unless it is open; False when
        it cannot be (``last_connect_error`` says why). ESSXConfigException: the port
        refuses the configured direction mode (e.g. kernel RS485)."""
        if self.socket:
            return True
        params = self.comm_params
        try:
            self.socket = ESSXRS485(
                params.host, timeout=params.timeout_connect, write_timeout=params.timeout_connect,
                bytesize=params.bytesize, stopbits=params.stopbits, baudrate=params.baudrate,
                parity=params.parity, exclusive=True, dir_pin=self.dir_pin,
                pin_driver=self._pin if self._pin_kind in ("bbio", "gpiod") else None,
                drop_echo=self.drop_echo, inter_byte_timeout=getattr(self, "inter_byte_timeout", 0))
        except (OSError, ValueError, termios.error) as exc:  # serial.SerialException is an OSError
            self.socket = None
            self.last_connect_error = "cannot open %s: %s" % (params.host, _reason(exc))
            if not self._down:
                logger.warning("battery port %s; retried at every read", self.last_connect_error)
            self._down = True
            return False
        if self._down:
            logger.info("battery port %s is open again", params.host)
        self._down = False
        return True

    def execute(self, no_response_expected: bool, request: Any) -> Any:
        """Run one request in ``1 + retries`` tries, each on an open, settled line.

        Returns:
            the pymodbus reply PDU (None with ``no_response_expected``).

        Raises:
            ConnectionException: the port cannot be opened or failed (the
                message names the port and the OS error).
            ModbusIOException: no valid reply within the timeout (also a bad
                CRC); ``UnexpectedReply`` for another function code.
        """
        with self.line_lock:
            for attempt in range(self.params.retries + 1):
                if not self.connect():
                    raise ConnectionException(self.last_connect_error)
                try:
                    self._settle()
                    reply = super().execute(no_response_expected, request)
                    if reply is not None and (reply.function_code & 0x7F) != request.function_code:
                        raise UnexpectedReply("%s: reply with function code %d to a function %d request "
                                              "(refused)" % (self.port, reply.function_code,
                                                             request.function_code))
                    return reply
                except ConnectionException as exc:  # 3.16 closed the port; the OS error is the context
                    raise self._lost(exc.__context__ or exc) from exc
                except (OSError, termios.error) as exc:  # 3.14/3.15 let the serial error out
                    raise self._lost(exc) from exc
                except ModbusIOException:  # also UnexpectedReply; the next try settles the line first
                    self._unsettled_until = time.monotonic() + self.comm_params.timeout_connect
                    if attempt == self.params.retries:
                        raise

    def _lost(self, exc: BaseException) -> ConnectionException:
        """Close the port after an I/O error; log once; the error to raise."""
        self.close()
        text = "%s: %s" % (self.port, _reason(exc))
        if not self._down:
            logger.warning("battery port lost: %s; reopened at the next read", text)
        self._down = True
        return ConnectionException(text)

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
    """What is waiting now and what arrives until monotonic ``until`` (0: nothing
    awaited), at most ``limit`` s past ``until`` or now (a babbling line cannot
    hold the caller); ends once the line was quiet for ``FRAME_GAP_S`` after data."""
    data = b""
    end = max(until, time.monotonic()) + limit
    while True:
        now = time.monotonic()
        waiting = port.in_waiting
        if waiting and now < end:
            data += port.read(waiting)
            continue
        wait = min(FRAME_GAP_S if data else until - now, end - now)
        if wait <= 0 or not select.select([port.fileno()], [], [], wait)[0]:
            return data
