"""RSOC and interchange permission of the battery over Modbus RTU (spec 5.3.2).

Facts from docs/battery-registers.md: input registers (function code 4), PDU address
= register number - 30001 ("Registers"), RSOC in 0.1 % ("RSOC (30030)"), status
bit 0 = 1: interchange NOT permitted ("Status (30031)"); adjacent registers in one
request; two tries, 0.5 s apart ("Retries and deadlines"); what ``check_battery``
makes of them ("What the driver derives"). The methods keep the meanings of the
reference's ``battery_emulator/__init__.py``. Unlike the reference
(docs/reference-defects.md, D6 and D14; docs/migrating.md), every Modbus failure,
an exception reply included ("Exception replies"), is a communication error and
is retried; an RSOC up to ``RSOC_PLAUSIBLE_MAX`` (110.0 %) is passed on as read,
with a WARNING above 100 %; above it the read fails (``ESSXValueException``):
such a value is a fault, not a reading.

The battery reads through a ``ModbusDevice`` (the project's is
``essx.essx_modbus.ESSXModbusClient``) and takes from each reply only what
``ModbusReply`` states, both ``typing.Protocol``s: the members named there are
all it uses.

Deadline: under ``essx.deadline.within`` (an HTTP request) every wait of a read
is bounded by what is left: the bus lock (a read that cannot get it in time
fails at once, nothing sent), each try's reply window (``ESSXModbusClient``:
``min(kwparams.timeout, left)``), the wait for a late reply, and the pause
between tries, made only when a try of at least ``MIN_TRY_S`` still fits after
it (docs/reference-defects.md, D18). Without a deadline (the battery watch) a
read is as it always was: TRIES tries, RETRY_WAIT_S apart. The battery has its
own bus lock, apart from the converter's (D7, D8).
"""
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from essx import deadline
from essx.essx_exception import (ESSXConfigException, ESSXException, ESSXIOException, ESSXTimeoutException,
                                 ESSXValueException)
from essx.essx_modbus import NotSent, NoValidReply, UnexpectedReply
from essx.exchange import Exchange, Listeners

logger = logging.getLogger(__name__)

RETRY_WAIT_S = 0.5  #: s between the tries of a read (docs/battery-registers.md, "Retries and deadlines")
#: Tries per read (docs/battery-registers.md, "Retries and deadlines"; docs/reference-defects.md, D6).
TRIES = 2
INPUT_REGISTER_BASE = 30001  #: register number of input register PDU address 0
REGISTER_NUMBERS = range(30001, 40000)  #: taken as register numbers; other 0..65535: PDU addresses
RSOC_FULL = 1000  #: RSOC register value of 100 % (0.1 % units)
#: Highest RSOC register value taken as a reading (0.1 % units, 110.0 %). A gauge
#: overshoots 100 % by a few tenths while it recalibrates at full charge (passed
#: on, with a WARNING); far above that, e.g. 0xffff (a register never written, a
#: gauge in error), the value is a fault: refused, never passed on.
RSOC_PLAUSIBLE_MAX = 1100
#: Shortest reply window worth a try, s: a request and a 2-register reply take
#: 18 ms at 9600 baud, a battery answers within tens of ms; less would fail a
#: healthy battery and only delay the answer.
MIN_TRY_S = 0.2
NOT_PERMITTED, PERMITTED = 0, 3  #: battery_operation_status values (spec 5.3.2)

#: Modbus exception codes and their meanings (docs/battery-registers.md, "Exception replies";
#: Modbus application protocol 1.1b, 7).
MODBUS_EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                     4: "server device failure", 5: "acknowledge", 6: "server device busy",
                     8: "memory parity error", 10: "gateway path unavailable",
                     11: "gateway target device failed to respond"}

#: Exchange outcome of a failed try, most specific class first (ESSXConfigException:
#: the port refuses the configured direction mode, e.g. kernel RS485).
_OUTCOMES = (((ESSXConfigException, ESSXIOException), "io_error"), (ESSXTimeoutException, "timeout"),
             (ESSXValueException, "value"), (ESSXException, "exception"))


@runtime_checkable
class ModbusReply(Protocol):
    """What ``BatteryEmulator`` reads of a reply PDU: pymodbus 3.14-3.16's ``ModbusPDU``
    (``ReadInputRegistersResponse``, ``ExceptionResponse``) has all three members."""

    @property
    def registers(self) -> Sequence[int]:
        """The register values, 0..65535 each, in address order (read when not ``isError()``)."""

    @property
    def exception_code(self) -> int:
        """The Modbus exception code of an exception reply (1..255; docs/battery-registers.md,
        "Exception replies"); read only when ``isError()``."""

    def isError(self) -> bool:  # pymodbus's name
        """True for an exception reply (function code | 0x80)."""


@runtime_checkable
class ModbusDevice(Protocol):
    """What ``BatteryEmulator`` needs of its Modbus device, and all it uses: the
    project's ``essx.essx_modbus.ESSXModbusClient`` (tests/test_battery_emulator.py
    checks that it satisfies this). Reading the properties sends nothing."""

    @property
    def port(self) -> str:
        """The serial device, e.g. "/dev/ttyO5"."""

    @property
    def is_open(self) -> bool:
        """True while the port is open."""

    @property
    def ready_at(self) -> float:
        """Monotonic time (s) before which the next request cannot start (it first
        waits out a late reply to a failed try); 0.0 when it need not wait."""

    @property
    def timeout(self) -> float:
        """The reply timeout of a try, s (``kwparams.timeout``)."""

    def read_input_registers(self, address: int, *, count: int = 1,
                             device_id: int = 1) -> Optional[ModbusReply]:
        """One function-code-4 request (docs/battery-registers.md, "Function code and
        framing") for ``count`` registers at PDU ``address`` from unit ``device_id``;
        the reply, or None (no reply).

        Raises (what ``BatteryEmulator`` tells apart): ``ConnectionException`` or
        ``OSError`` (the port cannot be opened or failed), ``essx_modbus.NoValidReply``
        / ``NotSent`` (with ``reason``), ``essx_modbus.UnexpectedReply``, other
        ``ModbusIOException`` (no valid reply) and ``ModbusException``.
        """


def pdu_address(value: Any, key: str) -> int:
    """PDU address of an input register given as a register number 30001..39999
    (30030 -> 29, the configuration's form) or a PDU address 0..30000 or
    40000..65535 (29, the reference server's form); ESSXConfigException naming ``key``
    (docs/battery-registers.md, "Registers")."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ESSXConfigException(
            "%s=%r: expected an input register number 30001..39999 (e.g. 30030) or a "
            "0-based PDU address (e.g. 29)" % (key, value))
    return value - INPUT_REGISTER_BASE if value in REGISTER_NUMBERS else value


class BatteryEmulator:
    """The battery (or battery emulator board) as a Modbus RTU slave.

    Args (the reference's, plus keyword-only ``retry_wait``):
        dev (ModbusDevice): a Modbus client that connects on demand
            (``ESSXModbusClient``; spec 5.3.2's low-level device).
        modbus_adr_rsoc, modbus_adr_status: 30030/30031 or PDU addresses 29/30.
        unit: Modbus unit (device id) 0..255 (0 is broadcast: nobody answers).
        retry_wait: the wait between the TRIES tries of a read (s).

    Raises:
        ESSXConfigException: missing ``dev``, a bad address or unit (named).

    Attributes:
        last_error (str): why the last read failed; "" after a success.
        listeners (Listeners): get one ``Exchange(bus="battery",
            command="read")`` per try.
        lock (RLock): the bus lock, held for a whole read (all its tries); under a
            deadline it is waited for only until then.
    """

    def __init__(self, dev: Optional[ModbusDevice] = None, modbus_adr_rsoc: Any = None,
                 modbus_adr_status: Any = None, unit: Any = 0x1, *,
                 retry_wait: float = RETRY_WAIT_S) -> None:
        if dev is None:
            raise ESSXConfigException("BatteryEmulator needs dev= (an ESSXModbusClient)")
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 255:
            raise ESSXConfigException("unit=%r: expected a Modbus unit (device id) 0..255, e.g. 1"
                                      % (unit,))
        self.dev: ModbusDevice = dev
        self.unit = unit
        self.modbus_adr_rsoc, self.modbus_adr_status = modbus_adr_rsoc, modbus_adr_status
        self.rsoc_address = pdu_address(modbus_adr_rsoc, "modbus_adr_rsoc")
        self.status_address = pdu_address(modbus_adr_status, "modbus_adr_status")
        self.retry_wait = retry_wait
        self.last_error = ""
        self.listeners = Listeners()
        self.lock = threading.RLock()
        self._rsoc_raw, self._status_raw = 0, 1  # the reference's: 0.0 %, not permitted
        self._rsoc_high = self._failing = False

    @property
    def port(self) -> str:
        """The battery's serial device (``dev.port``), e.g. "/dev/ttyO5"."""
        return self.dev.port

    @property
    def is_open(self) -> bool:
        """True while the battery's port is open (``dev.is_open``; sends nothing)."""
        return self.dev.is_open

    def read_rsoc(self) -> float:
        """RSOC last read, % (0.1 % steps, as read: may exceed 100, docs/battery-registers.md,
        "RSOC (30030)"); 0.0 before any read."""
        return self._rsoc_raw / 10.0

    def read_status(self) -> int:
        """Interchange permission last read: 1 permitted, 0 not (also before any read;
        docs/battery-registers.md, "Status (30031)": bit 0 = 1 is not permitted)."""
        return 0 if self._status_raw & 0x1 else 1

    def remote_rsoc(self) -> None:
        """Read the RSOC register (and the status with it when it is the next one); ESSXException
        after all tries (its subclass says which: timeout, I/O, value, or exception response)."""
        self._read(self.rsoc_address, 2 if self.status_address == self.rsoc_address + 1 else 1)

    def remote_status(self) -> None:
        """Read the status register; ESSXException after all tries."""
        self._read(self.status_address, 1)

    def remote_rsoc_and_status(self) -> None:
        """Read both registers (one request of count 2 when adjacent); ESSXException after all tries."""
        with self._bus():
            if abs(self.rsoc_address - self.status_address) == 1:
                self._read(min(self.rsoc_address, self.status_address), 2)
            else:
                self._read(self.rsoc_address, 1)
                self._read(self.status_address, 1)

    def check_battery(self) -> Tuple[float, int, int]:
        """Read RSOC and status (docs/battery-registers.md, "What the driver derives");
        never raises ``ESSXException``.

        Returns:
            ``(rsoc, battery_operation_status, comm_err)``: rsoc float % as
            read, status 0 (not permitted) or 3 (permitted), comm_err 0 or -1.
            On a communication error ``(0.0, 0, -1)``: nothing is permitted on
            stale data; ``last_error`` says why (naming the port when it cannot
            be opened, the line busy until the deadline, an implausible RSOC);
            ``read_rsoc()`` / ``read_status()`` keep the last good values.
        """
        try:
            with self._bus():
                self.remote_rsoc_and_status()
        except ESSXException as exc:
            self.last_error = str(exc)
            return 0.0, NOT_PERMITTED, -1
        return self.read_rsoc(), PERMITTED if self.read_status() else NOT_PERMITTED, 0

    @contextmanager
    def _bus(self) -> Iterator[None]:
        """Hold the bus lock; under a deadline wait for it only until then
        (ESSXTimeoutException: busy, nothing sent)."""
        left = deadline.remaining()
        if not self.lock.acquire(timeout=-1 if left is None else left):
            raise ESSXTimeoutException("battery unit %d on %s: the battery line was busy for %.3g s "
                                       "(another read held it) until the request's deadline; "
                                       "nothing was sent" % (self.unit, self.port, left))
        try:
            yield
        finally:
            self.lock.release()

    def _try_fits(self, pause: float) -> bool:
        """True when a try started after ``pause`` s, and after the client's wait for a
        late reply (``dev.ready_at``), still has MIN_TRY_S before the deadline (or none)."""
        left = deadline.remaining()
        if left is None:
            return True
        now = time.monotonic()
        start = max(now + pause, self.dev.ready_at)
        return left - (start - now) >= MIN_TRY_S

    def _read(self, address: int, count: int) -> List[int]:
        """Read ``count`` input registers at PDU ``address`` under the bus lock,
        store them, report each try; raises the last try's ESSXException."""
        with self._bus():
            if not self._try_fits(0.0):
                raise ESSXTimeoutException(
                    "battery unit %d on %s: no time left for a read before the request's deadline "
                    "(%.3g s left; the line first waits out a late reply); nothing was sent"
                    % (self.unit, self.port, deadline.remaining()))
            for attempt in range(1, TRIES + 1):
                if attempt > 1:
                    time.sleep(self.retry_wait)  # a real pause between tries; _try_fits checked it
                start = time.monotonic()
                try:
                    registers = self._read_once(address, count)
                except ESSXException as exc:
                    outcome = next(name for cls, name in _OUTCOMES if isinstance(exc, cls))
                    self._emit(outcome, start, attempt, error=str(exc))
                    logger.debug("battery read try %d/%d failed: %s", attempt, TRIES, exc)
                    # a configuration error is not retried: no retry helps
                    retry = attempt < TRIES and not isinstance(exc, ESSXConfigException)
                    if retry and self._try_fits(self.retry_wait):
                        continue
                    if retry:
                        logger.debug("battery read: no try %d, the request's deadline is too close",
                                     attempt + 1)
                    if not self._failing and not isinstance(exc, ESSXIOException):
                        logger.warning("battery cannot be read: %s", exc)  # the client logs port changes
                    self.last_error, self._failing = str(exc), True
                    raise
                self._emit("ok", start, attempt, values=self._store(address, registers))
                if self._failing:
                    logger.info("battery unit %d on %s answers again", self.unit, self.port)
                self.last_error, self._failing = "", False
                return registers
            raise AssertionError("TRIES must be >= 1")

    def _emit(self, outcome: str, start: float, attempt: int, values: Optional[Dict] = None,
              error: Optional[str] = None) -> None:
        self.listeners.emit(Exchange(
            bus="battery", command="read", outcome=outcome, seconds=time.monotonic() - start,
            attempt=attempt, port=self.port, values=values, error=error))

    def _store(self, address: int, registers: List[int]) -> Dict[str, Any]:
        """Keep the registers read; return them as Exchange values."""
        values: Dict[str, Any] = {}
        for raw_address, raw in enumerate(registers, address):
            if raw_address == self.rsoc_address:
                if raw > RSOC_FULL and not self._rsoc_high:  # once per rise above 100 %
                    logger.warning("battery unit %d: RSOC register %s reads %d (%.1f %%), above "
                                   "100 %%; passed on as read", self.unit, self.modbus_adr_rsoc,
                                   raw, raw / 10.0)
                self._rsoc_raw, self._rsoc_high = raw, raw > RSOC_FULL
                values["rsoc"] = self.read_rsoc()
            if raw_address == self.status_address:
                self._status_raw = raw
                values["permitted"] = bool(self.read_status())
        return values

    def _read_once(self, address: int, count: int) -> List[int]:
        """One function-code-4 request. Raises ESSXTimeoutException: no valid reply within the
        reply window (the message says what came instead: nothing, a bad CRC, junk), or nothing
        sent (the line busy, no time left); ESSXIOException: the port could not be opened or
        failed; ESSXException: a Modbus exception reply; ESSXValueException: a reply of another
        function code or with the wrong number of registers (ASCII framing), an RSOC above
        RSOC_PLAUSIBLE_MAX."""
        numbers = self.modbus_adr_rsoc in REGISTER_NUMBERS  # name registers as configured
        first = address + INPUT_REGISTER_BASE if numbers else address
        what = "battery unit %d, input register %s%d" % (
            self.unit, "" if numbers else "at PDU address ", first)
        what += "..%d" % (first + count - 1) if count > 1 else ""
        try:
            reply = self.dev.read_input_registers(address, count=count, device_id=self.unit)
        except (ConnectionException, OSError) as exc:  # serial.SerialException is an OSError
            raise ESSXIOException("%s: serial port error: %s" % (what, exc)) from exc
        except (NoValidReply, NotSent) as exc:
            raise ESSXTimeoutException("%s: %s" % (what, exc.reason)) from exc
        except UnexpectedReply as exc:
            raise ESSXValueException("%s: %s" % (what, exc)) from exc
        except ModbusIOException as exc:
            raise ESSXTimeoutException("%s: no valid reply within %s s (no answer, or a corrupt "
                                       "frame such as a bad CRC)" % (what, self.dev.timeout)) from exc
        except ModbusException as exc:
            raise ESSXIOException("%s: Modbus error: %s" % (what, exc)) from exc
        if reply is None:
            raise ESSXTimeoutException("%s: no reply" % what)
        if reply.isError():
            code = reply.exception_code
            raise ESSXException("%s: the battery answered with Modbus exception %s (%s)"
                                % (what, code, MODBUS_EXCEPTIONS.get(code, "unknown exception code")))
        registers = list(reply.registers)
        if len(registers) != count:
            raise ESSXValueException("%s: expected %d registers in the reply, got %d"
                                     % (what, count, len(registers)))
        rsoc_at = self.rsoc_address - address
        if 0 <= rsoc_at < count and registers[rsoc_at] > RSOC_PLAUSIBLE_MAX:
            raw = registers[rsoc_at]
            raise ESSXValueException(
                "battery unit %d: RSOC register %s reads %d (0x%04x), above the plausible %d "
                "(%.1f %%); refused, not a reading" % (self.unit, self.modbus_adr_rsoc, raw, raw,
                                                       RSOC_PLAUSIBLE_MAX, RSOC_PLAUSIBLE_MAX / 10.0))
        return registers
