"""pymodbus 3.x serial client whose port is an ``ESSXRS485`` (spec 5.4.2): ``ESSXModbusClient``.

``ESSXModbusClient(**kwparams)`` takes ``battery_dev.kwparams`` as the
reference did (spec 5.1.3; docs/battery-registers.md, "Line settings"),
checked by ``essx_config.modbus_params``; only pymodbus's public API is used
(tested with 3.14, 3.15 and 3.16). It is what ``battery_emulator.BatteryEmulator``
reads through (its ``ModbusDevice``: ``read_input_registers``, ``port``,
``is_open``, ``ready_at``, ``timeout``). The line (docs/battery-registers.md,
"Retries and deadlines" and "Junk on the line"; Modbus over Serial Line 1.02,
2.5.1.1):

- The first request opens the port (exclusively); after an I/O error it is
  closed and the next request reopens it (docs/reference-defects.md, D16).
  Port changes are logged once each.
- Stale input is dropped before every request; after a try without a valid
  reply the next one first waits up to one more timeout for the late reply
  and drops it: RTU has no transaction id, so it would be taken as the next
  request's answer. A reply later than twice the timeout cannot be told apart.
- Every wait is bounded by the deadline of the request in progress
  (``essx.deadline``; docs/reference-defects.md, D18): the line lock, the wait
  for a late reply, and each try's reply window, ``min(kwparams.timeout, what
  is left)``.
- Junk on the line is skipped (RTU reads, function 1-4): the adapter's echo
  of the request, noise, frames from other units or of other function codes,
  replies whose byte count does not fit the request. The first valid reply
  of the try is taken (the scan: ``essx.modbus_reply.find_reply``); when none
  comes, ``NoValidReply`` says what was seen (``essx.modbus_reply.describe``).

How the reply wait is bounded: pymodbus's sync client waits for a reply by
polling the port's ``in_waiting`` every 4 characters, each poll loop bounded
by ``comm_params.timeout_connect``, and loops again after data that does not
make a frame (3.14: without a bound; 3.15/3.16: until one timeout has passed,
so junk can stretch a try to two timeouts). Nothing public sets a per-call
bound. The port is therefore a ``ModbusPort``: once the reply window of the
request in progress has passed, its ``in_waiting`` raises ``ReplyWindowClosed``
(an ``InterruptedError``, which pymodbus 3.14-3.16 pass on untouched), and
``execute`` turns that into ``NoValidReply``. What pymodbus's framer gets is
filtered through its public ``trace_packet`` hook: only a valid reply, never
the junk before it (docs/reference-defects.md, D6 and D13).
"""
import logging
import termios
import threading
import time
from typing import Any, Optional, Tuple

import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from essx import deadline
from essx.essx_config import ModbusParams, modbus_params
from essx.essx_rs485 import ESSXRS485, make_pin, wait_ready
from essx.modbus_reply import byte_count, describe, find_reply

logger = logging.getLogger(__name__)

#: Quiet time that ends a late frame, s (3.5 characters at 9600 baud is 3.6 ms;
#: USB adapters deliver in up to 16 ms chunks; a loaded machine schedules late).
FRAME_GAP_S = 0.05
#: Bytes of the shortest RTU reply, an exception reply: unit, function | 0x80,
#: exception code, CRC (docs/battery-registers.md, "Exception replies").
EXCEPTION_REPLY_BYTES = 5
#: Bytes of an RTU read reply around its data: unit, function, byte count, CRC.
READ_REPLY_OVERHEAD = 5


class UnexpectedReply(ModbusIOException):
    """A well-formed reply that does not answer the request (other function code;
    ASCII framing only: on RTU such frames are skipped as junk)."""


class NoValidReply(ModbusIOException):
    """No valid reply within the try's reply window; ``reason`` (str) says what was
    seen, e.g. "no valid reply within 1 s: echo of the request only" (the names of
    docs/battery-registers.md, "Junk on the line")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotSent(ModbusIOException):
    """Nothing was sent: the line was busy, or the request's deadline left no time;
    ``reason`` (str) says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReplyWindowClosed(InterruptedError):
    """Raised by ``ModbusPort.in_waiting`` once the reply window has passed: it ends
    pymodbus's wait for a reply (caught in ``ESSXModbusClient.execute``)."""


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


class ModbusPort(ESSXRS485):
    """An ``ESSXRS485`` (all its arguments) whose reply wait can be cut short.

    ``open_window(seconds)`` arms a reply window that starts when the next write
    returns; once it has passed, ``in_waiting`` raises ``ReplyWindowClosed``
    (pymodbus polls ``in_waiting`` while it waits for a reply). ``close_window()``
    disarms it. Without a window it is a plain ``ESSXRS485``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._window: Optional[float] = None
        self._window_end: Optional[float] = None
        super().__init__(*args, **kwargs)

    def open_window(self, seconds: float) -> None:
        """Arm a reply window of ``seconds`` (s) from the end of the next write."""
        self._window, self._window_end = seconds, None

    @property
    def window(self) -> Optional[float]:
        """The armed reply window, s; None when none is armed."""
        return self._window

    def window_left(self) -> Optional[float]:
        """Seconds left of the reply window that a write started (<= 0: it has
        passed); None while none runs."""
        return None if self._window_end is None else self._window_end - time.monotonic()

    def close_window(self) -> None:
        """Disarm the reply window."""
        self._window = self._window_end = None

    def write(self, data: Any) -> int:
        """``ESSXRS485.write``; starts an armed reply window when it returns."""
        count = super().write(data)
        if self._window is not None:
            self._window_end = time.monotonic() + self._window
        return count

    @property
    def in_waiting(self) -> int:
        """Bytes waiting (int). ReplyWindowClosed: the armed reply window has passed."""
        if self._window_end is not None and time.monotonic() >= self._window_end:
            raise ReplyWindowClosed("reply window of %.3g s passed" % self._window)
        return super().in_waiting


class ESSXModbusClient(ModbusSerialClient):
    """Synchronous pymodbus ``ModbusSerialClient`` over a ``ModbusPort`` (an ``ESSXRS485``);
    kwparams as in ``essx_config.ModbusParams`` (docs/battery-registers.md, "Line settings"
    and "Physical layer"). Opens nothing; a missing GPIO module is reported here.
    Satisfies ``battery_emulator.battery_emulator.ModbusDevice`` (tests/test_battery_emulator.py
    checks it).

    Raises:
        ESSXConfigException: bad kwparams (the key path is named) or an
            unusable ``dir_pin``.

    Attributes:
        params (ModbusParams): the checked settings.
        last_connect_error (str): why the port could not be opened last time.
        line_lock (RLock): held for a whole request (settle, tries).
        port, is_open, timeout, ready_at: read-only properties, see each.
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
        self._sent, self._received = b"", b""  # the try's request frame and what came back
        self._read_in_try = 0  # bytes recv() returned since the try's request was sent
        super().__init__(trace_packet=self._trace_packet, **client)

    @property
    def port(self) -> str:
        """The serial device, e.g. "/dev/ttyO5" (sends nothing)."""
        return self.comm_params.host

    @property
    def is_open(self) -> bool:
        """True while the port is open (sends nothing)."""
        return self.socket is not None

    @property
    def timeout(self) -> float:
        """The reply timeout of a try, s (``kwparams.timeout``; pymodbus's
        ``comm_params.timeout_connect``), e.g. 1.0."""
        return self.comm_params.timeout_connect

    @property
    def ready_at(self) -> float:
        """Monotonic time (s) until which the next request first waits for a late reply
        to a failed try (then drops it); 0.0 when it need not wait."""
        return self._unsettled_until

    def connect(self) -> bool:
        """Open the port as a ``ModbusPort`` (exclusively) unless it is open; False when
        it cannot be (``last_connect_error`` says why). ESSXConfigException: the port
        refuses the configured direction mode (e.g. kernel RS485)."""
        if self.socket:
            return True
        params = self.comm_params
        try:
            self.socket = ModbusPort(
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
        """Run one request in ``1 + retries`` tries, each on an open, settled line, all
        within the deadline of the request in progress (``essx.deadline``), if any.

        Returns:
            the pymodbus reply PDU (None with ``no_response_expected``).

        Raises:
            ConnectionException: the port cannot be opened or failed (the
                message names the port and the OS error).
            NotSent: the line lock could not be had, or no time was left,
                before the deadline; nothing was sent.
            NoValidReply: no valid reply within the reply window (``reason``
                says what came instead, e.g. a bad CRC or an echo only);
                ``UnexpectedReply`` (ASCII) for another function code.
        """
        left = deadline.remaining()
        if not self.line_lock.acquire(timeout=-1 if left is None else left):
            raise NotSent("%s: the line was busy for %.3g s (another request held it); nothing "
                          "was sent" % (self.port, left))
        try:
            for attempt in range(self.params.retries + 1):
                if not self.connect():
                    raise ConnectionException(self.last_connect_error)
                try:
                    return self._try(no_response_expected, request)
                except NotSent:
                    raise
                except ConnectionException as exc:  # 3.16 closed the port; the OS error is the context
                    raise self._lost(exc.__context__ or exc) from exc
                except (OSError, termios.error) as exc:  # 3.14/3.15 let the serial error out
                    raise self._lost(exc) from exc
                except ModbusIOException:  # the next try settles the line first
                    self._unsettled_until = time.monotonic() + self.comm_params.timeout_connect
                    if attempt == self.params.retries:
                        raise
            raise AssertionError("retries must be >= 0")
        finally:
            self.line_lock.release()

    def _try(self, no_response_expected: bool, request: Any) -> Any:
        """One try on the open port: settle, send, take the first valid reply in the window."""
        self._settle()
        timeout = self.comm_params.timeout_connect
        window = deadline.bound(timeout)
        if window <= 0:
            raise NotSent("%s: the request's deadline passed before it could be sent; nothing "
                          "was sent" % self.port)
        self._sent, self._received = b"", b""
        self.socket.open_window(window)
        try:
            reply = super().execute(no_response_expected, request)
        except (ReplyWindowClosed, ModbusIOException) as exc:
            self.socket.close_window()
            raise self._no_valid_reply(window, window < timeout) from exc
        finally:
            if self.socket is not None:  # pymodbus 3.16 closes it after an OS error
                self.socket.close_window()
        if reply is not None and (reply.function_code & 0x7F) != request.function_code:
            raise UnexpectedReply("%s: reply with function code %d to a function %d request "
                                  "(refused)" % (self.port, reply.function_code,
                                                 request.function_code))
        return reply

    def recv(self, size: Optional[int]) -> bytes:
        """pymodbus's read of reply bytes (its ``sync_get_response`` asks
        ``recv(None)``, "what has come", until its framer has a reply).

        For an RTU read (function 1-4) this waits, one wake-up a step, until
        the bytes a reply needs can be there: the shortest reply's first (an
        exception reply, EXCEPTION_REPLY_BYTES), then the whole read reply
        (READ_REPLY_OVERHEAD + byte count), the request's echo first when
        ``handle_local_echo`` is set; after junk, whatever comes next.  So the
        reply is taken as its last byte arrives, where pymodbus's own wait
        polls every 4 characters and needs two polls alike (up to ~8 ms at
        9600 baud).  Anything else: pymodbus's own ``recv``.

        Raises:
            ReplyWindowClosed: the try's reply window passed before more came.
            OSError, termios.error: the port failed.
        """
        count = byte_count(self._sent)
        left = None if self.socket is None else self.socket.window_left()
        if size is not None or count is None or left is None or self.params.method != "rtu":
            return super().recv(size)
        echo = len(self._sent) if self.params.handle_local_echo else 0
        shortest = echo + EXCEPTION_REPLY_BYTES
        want = shortest if self._read_in_try < shortest else echo + READ_REPLY_OVERHEAD + count
        if left <= 0:
            raise ReplyWindowClosed("reply window of %.3g s passed" % self.socket.window)
        data = self.socket.read_at_least(max(1, want - self._read_in_try), left)
        if not data:
            raise ReplyWindowClosed("reply window of %.3g s passed" % self.socket.window)
        self._read_in_try += len(data)
        return data

    def _no_valid_reply(self, window: float, shortened: bool) -> NoValidReply:
        """The NoValidReply of a try that ended without one, naming what was received."""
        waiting = self.socket.in_waiting  # what came after pymodbus's last look
        received = self._received + (self.socket.read(waiting) if waiting else b"")
        if byte_count(self._sent) is None:
            seen = "%d bytes" % len(received) if received else ""
        else:
            seen = describe(received, self._sent)
        logger.debug("%s: no valid reply; received %s", self.port, received.hex())
        return NoValidReply("no valid reply within %.3g s%s: %s" % (
            window, " (the request's deadline)" if shortened else "",
            seen + " only" if seen else "nothing received"))

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's ``trace_packet`` hook: note the request sent; of the bytes received
        so far in a try, pass on only the valid reply (RTU reads), so the junk before it
        is skipped whatever pymodbus's framer would make of it."""
        if sending:
            self._sent, self._read_in_try = bytes(data), 0
            return data
        self._received = bytes(data)
        if self.params.method != "rtu" or byte_count(self._sent) is None:
            return data
        return find_reply(self._received, self._sent) or b""

    def _lost(self, exc: BaseException) -> ConnectionException:
        """Close the port after an I/O error; log once; the error to raise."""
        self.close()
        text = "%s: %s" % (self.port, _reason(exc))
        if not self._down:
            logger.warning("battery port lost: %s; reopened at the next read", text)
        self._down = True
        return ConnectionException(text)

    def _settle(self) -> None:
        """Drop stale input; after a failed try, first wait out a late reply (until
        ``ready_at``, but not past the deadline)."""
        until, self._unsettled_until = self._unsettled_until, 0.0
        left = deadline.remaining()
        cap = None if left is None else time.monotonic() + left
        dropped = _drain(self.socket, until, self.comm_params.timeout_connect, cap)
        if dropped and until:
            logger.warning("%s: dropped %d bytes that came after the previous request's timeout "
                           "(%.3g s): %s; a late reply is never taken for a later request; "
                           "raise kwparams.timeout if the battery answers this late",
                           self.port, len(dropped), self.comm_params.timeout_connect, dropped.hex())
        elif dropped:
            logger.warning("%s: dropped %d stale bytes before sending: %s",
                           self.port, len(dropped), dropped.hex())


def _drain(port: serial.Serial, until: float, limit: float, cap: Optional[float] = None) -> bytes:
    """What is waiting now and what arrives until monotonic ``until`` (0: nothing
    awaited), at most ``limit`` s past ``until`` or now (a babbling line cannot
    hold the caller) and never past monotonic ``cap`` (None: no cap); ends once
    the line was quiet for ``FRAME_GAP_S`` after data."""
    data = b""
    end = max(until, time.monotonic()) + limit
    if cap is not None:
        end, until = min(end, cap), min(until, cap)
    while True:
        now = time.monotonic()
        waiting = port.in_waiting
        if waiting and now < end:
            data += port.read(waiting)
            continue
        wait = min(FRAME_GAP_S if data else until - now, end - now)
        if wait <= 0 or not wait_ready((port.fileno(),), (), wait):  # poll: any fd number
            return data
