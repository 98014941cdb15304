"""RSOC and interchange permission of the battery over Modbus RTU (spec 5.3.2).

Facts from battery-modbus.md: input registers (function code 4), register
number 3xxxx is PDU address ``number - 30001``; RSOC in 0.1 %; status bit 0 = 1
means interchange NOT permitted; the reference reads both registers with one
request of count 2 when they are adjacent and tries each read twice, 0.5 s
apart. Unlike the reference, every Modbus failure (exception response, bad
CRC, no reply, serial error) counts as a communication error and is retried
(reference-defects.md).
"""
import logging
import time

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from essx.essx_exception import (ESSXConfigException, ESSXException, ESSXIOException,
                                 ESSXTimeoutException, ESSXValueException)

logger = logging.getLogger(__name__)

#: Wait between the two tries of a read, seconds (battery-modbus.md).
RETRY_WAIT_S = 0.5
#: Tries per read (battery-modbus.md).
TRIES = 2
#: Register number of PDU address 0 for input registers.
INPUT_REGISTER_BASE = 30001

#: battery_operation_status values (spec 5.3.2).
NOT_PERMITTED = 0
PERMITTED = 3

#: Modbus exception codes (Modbus application protocol 1.1b, 7).
MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def pdu_address(number, name):
    """PDU address of input register ``number`` (30030 -> 29).

    Raises:
        ESSXConfigException: ``number`` is not an input register number
            30001..39999.
    """
    if isinstance(number, bool) or not isinstance(number, int) or not 30001 <= number <= 39999:
        raise ESSXConfigException(
            "%s=%r is not an input register number (allowed: 30001..39999, e.g. 30030)"
            % (name, number))
    return number - INPUT_REGISTER_BASE


def operation_status(status_register):
    """battery_operation_status from the status register: bit 0 = 1 -> 0, else 3."""
    return NOT_PERMITTED if status_register & 0x1 else PERMITTED


class BatteryEmulator:
    """The battery (or battery emulator board) as a Modbus RTU slave.

    ``BatteryEmulator(dev=None, modbus_adr_rsoc=None, modbus_adr_status=None,
    unit=0x1)``

    Args:
        dev: a connected-on-demand pymodbus sync client, normally an
            ``ESSXModbusClient`` (spec 5.3.2 calls it the low-level device).
        modbus_adr_rsoc: RSOC register number, e.g. 30030.
        modbus_adr_status: status register number, e.g. 30031.
        unit: Modbus unit (device id) 1..247.

    Raises:
        ESSXConfigException: missing ``dev``, bad register numbers or unit.

    Attributes:
        last_error (str): why the last read failed; "" after a success.

    Not thread-safe by itself: the controller holds the battery bus lock
    around every call (design.md, "one lock per bus").
    """

    def __init__(self, dev=None, modbus_adr_rsoc=None, modbus_adr_status=None, unit=0x1):
        if dev is None:
            raise ESSXConfigException("BatteryEmulator needs dev= (an ESSXModbusClient)")
        if isinstance(unit, bool) or not isinstance(unit, int) or not 1 <= unit <= 247:
            raise ESSXConfigException("battery unit=%r is not allowed (allowed: 1..247)" % (unit,))
        self.dev = dev
        self.unit = unit
        self.modbus_adr_rsoc = modbus_adr_rsoc
        self.modbus_adr_status = modbus_adr_status
        self._rsoc_address = pdu_address(modbus_adr_rsoc, "modbus_adr_rsoc")
        self._status_address = pdu_address(modbus_adr_status, "modbus_adr_status")
        self._rsoc = None
        self._status = None
        self.last_error = ""

    # -- most recent values ------------------------------------------------
    def read_rsoc(self):
        """Most recent RSOC, % (float 0.0-100.0), or None before the first read."""
        return self._rsoc

    def read_status(self):
        """Most recent raw status register (int), or None before the first read."""
        return self._status

    # -- Modbus reads ---------------------------------------------------------
    def remote_rsoc(self):
        """Read the RSOC register (two tries); return RSOC in % (float).

        Raises:
            ESSXException: communication error after both tries (its subclass
                says which: timeout, I/O, value, or exception response).
        """
        (raw,) = self._read(self._rsoc_address, 1)
        self._rsoc = self._percent(raw)
        return self._rsoc

    def remote_status(self):
        """Read the status register (two tries); return its raw value (int).

        Raises:
            ESSXException: communication error after both tries.
        """
        (self._status,) = self._read(self._status_address, 1)
        return self._status

    def check_battery(self):
        """Read RSOC and status; return ``(rsoc, battery_operation_status, comm_err)``.

        Returns:
            tuple: rsoc float 0.0-100.0 %, battery_operation_status 0 (not
            permitted) or 3 (permitted), comm_err 0 (both read) or -1. On a
            communication error the result is ``(0.0, 0, -1)``: nothing is
            permitted on stale data; ``last_error`` says why, and
            ``read_rsoc()``/``read_status()`` keep the last good values.

        Never raises ``ESSXException``; one request of count 2 when the two
        registers are adjacent, else two requests.
        """
        try:
            low = min(self._rsoc_address, self._status_address)
            if abs(self._rsoc_address - self._status_address) == 1:
                registers = self._read(low, 2)
                rsoc_raw = registers[self._rsoc_address - low]
                status = registers[self._status_address - low]
                self._rsoc, self._status = self._percent(rsoc_raw), status
            else:
                self.remote_rsoc()
                self.remote_status()
        except ESSXException as exc:
            self.last_error = str(exc)
            logger.warning("battery check failed: %s", exc)
            return 0.0, NOT_PERMITTED, -1
        return self._rsoc, operation_status(self._status), 0

    def _percent(self, raw):
        """RSOC register (0.1 %) to %.

        Raises:
            ESSXValueException: raw is outside 0..1000.
        """
        if not 0 <= raw <= 1000:
            self.last_error = ("battery unit %d: RSOC register %d reads %d, outside 0..1000 (0.1 %%)"
                               % (self.unit, self.modbus_adr_rsoc, raw))
            raise ESSXValueException(self.last_error)
        return raw / 10.0

    # -- one read, two tries ---------------------------------------------------
    def _read(self, address, count):
        """Read ``count`` input registers at PDU ``address``, tried TRIES times.

        Returns:
            list[int]: the registers.

        Raises:
            ESSXException: the last try's error.
        """
        error = None
        for attempt in range(1, TRIES + 1):
            if attempt > 1:
                time.sleep(RETRY_WAIT_S)  # a real wait between tries, not a timeout
            try:
                registers = self._read_once(address, count)
            except ESSXConfigException:
                raise
            except ESSXException as exc:
                error = exc
                logger.info("battery read try %d/%d failed: %s", attempt, TRIES, exc)
                continue
            self.last_error = ""
            return registers
        self.last_error = str(error)
        raise error

    def _timeout(self):
        params = getattr(self.dev, "comm_params", None)
        return getattr(params, "timeout_connect", "?")

    def _describe(self, address, count):
        last = INPUT_REGISTER_BASE + address + count - 1
        regs = "%d" % (INPUT_REGISTER_BASE + address) + ("..%d" % last if count > 1 else "")
        return "battery unit %d, input register %s" % (self.unit, regs)

    def _read_once(self, address, count):
        """One Modbus request (function code 4); errors mapped to ESSXException.

        Raises:
            ESSXTimeoutException: no (valid) reply within the timeout (pymodbus
                ModbusIOException; a bad CRC shows up this way too).
            ESSXIOException: the port could not be opened or failed.
            ESSXException: the battery answered with a Modbus exception.
            ESSXValueException: the reply has the wrong number of registers.
        """
        what = self._describe(address, count)
        try:
            reply = self.dev.read_input_registers(address, count=count, device_id=self.unit)
        except ConnectionException as exc:
            raise ESSXIOException("%s: serial port error: %s" % (what, exc)) from exc
        except ModbusIOException as exc:
            raise ESSXTimeoutException(
                "%s: no valid reply within %s s (no answer, or a corrupt frame such as a bad CRC)"
                % (what, self._timeout())) from exc
        except ModbusException as exc:
            raise ESSXIOException("%s: Modbus error: %s" % (what, exc)) from exc
        except OSError as exc:  # serial.SerialException is an OSError
            raise ESSXIOException("%s: serial port error: %s" % (what, exc)) from exc
        if reply is None:
            raise ESSXTimeoutException("%s: no reply" % what)
        if reply.isError():
            code = getattr(reply, "exception_code", None)
            meaning = MODBUS_EXCEPTIONS.get(code, "unknown exception code")
            raise ESSXException("%s: the battery answered with Modbus exception %s (%s)"
                                % (what, code, meaning))
        registers = list(getattr(reply, "registers", None) or [])
        if len(registers) != count:
            raise ESSXValueException("%s: expected %d registers in the reply, got %d"
                                     % (what, count, len(registers)))
        return registers
