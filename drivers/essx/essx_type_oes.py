"""ESSXTypeOES: the controller between the Web API and the devices (spec 5.2.1).

Each Web-API method checks every parameter of the request first (``vrfy``),
then sends its EZA2500 commands in the order web-api.md gives, each through
``run`` (retries, minimum gap between commands), and shapes the JSON body.

Concurrency: one lock per bus.  ``dcdc_lock`` (reentrant) is held for a whole
converter command sequence, so a command and its reply -- and a route's
commands -- are never interleaved with another request's or the battery-watch
thread's; ``bat_lock`` guards the battery line.  The two buses work in
parallel.
"""

import logging
import math
import re
import threading
import time

import eza2500
from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXException,
    ESSXParameterException,
    ESSXTimeoutException,
    ESSXValueException,
)

log = logging.getLogger(__name__)

#: 1-4 accepts only these modes (EZA2500.md, "Operation modes accepted by 1-4").
SETTABLE_MODES = (0x0000, 0x0002, 0x0014, 0x0041)

#: operationMode strings (spec 5.1.4.1; web-api.md "Blocks").
MODE_NAMES = {
    0x00: "Waiting",
    0x01: "Heteronomy CV Charging",
    0x02: "Heteronomy CV",
    0x22: "Heteronomy CV",
    0x04: "Battery Autonomy",
    0x14: "Grid Autonomy",
    0x34: "Grid Autonomy CC Battery",
    0x41: "Heteronomy CV",
}
#: CST bits 2-3 (spec 5.1.4.1).
ALARM_STATES = {0: "No alarm", 1: "Light alarm", 2: "Heavy alarm"}
#: CST bits 0-1 (spec 5.1.4.1).
RUNNING_STATES = {0: "off", 1: "charge", 2: "discharge"}

#: Configuration values 6-4 sends besides ``dig`` (web-api.md, ``param``).
PARAM_KEYS = ("cib", "ubv", "ogv", "obv", "ugv")
METER_KEYS = ("wg", "tmp", "vb", "wb", "vg", "ib", "ig")


#: A plain ASCII decimal number as clients write it ("350", "2.5", "-0.5",
#: Java's "1.0E-4").  float() alone would also take "3_50" (350), "\uff13\uff15\uff10"
#: (full-width 350) and other Unicode digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: "0x" and ASCII hex digits; int(text, 16) alone would also take "0x0_14".
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
#: Whitespace tolerated around a parameter (ASCII only).
_SPACE = " \t\r\n\f\v"


def parse_number(name, value):
    """Turn a request parameter into a float.

    Args:
        name: the parameter name, for the message.
        value: a str from the query string (a plain ASCII decimal number,
            optionally with an exponent and surrounding ASCII whitespace), or
            a number.
    Returns:
        float (finite).
    Raises:
        ESSXParameterException: *value* is None.
        ESSXValueException: not a finite decimal number.
    """
    if value is None:
        raise ESSXParameterException("%s is missing" % name)
    if isinstance(value, bool):
        raise ESSXValueException("%s=%r is not a number" % (name, value))
    if isinstance(value, str) and not _DECIMAL.fullmatch(value.strip(_SPACE)):
        raise ESSXValueException("%s=%r is not a number: expected a decimal number such as 350 or 2.5"
                                 % (name, value))
    try:
        number = float(value.strip(_SPACE) if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ESSXValueException("%s=%r is not a number: expected a decimal number such as 350 or 2.5"
                                 % (name, value)) from None
    if not math.isfinite(number):
        raise ESSXValueException("%s=%r is not a finite number" % (name, value))
    return number


def parse_mode(value):
    """Turn the ``mode`` parameter ("0x0014") into the converter's mode code.

    Returns:
        int, one of :data:`SETTABLE_MODES`.
    Raises:
        ESSXParameterException: missing.
        ESSXValueException: not a "0x" hex string, or not a settable mode.
    """
    allowed = ", ".join("0x%04x" % m for m in SETTABLE_MODES)
    if value is None:
        raise ESSXParameterException("mode is missing: expected one of %s" % allowed)
    if isinstance(value, int) and not isinstance(value, bool):
        code = value
    else:
        text = str(value).strip(_SPACE)
        if not text.lower().startswith("0x"):
            raise ESSXValueException("mode=%r: expected a hex string starting with 0x, one of %s"
                                     % (value, allowed))
        if not _HEX.fullmatch(text):
            raise ESSXValueException("mode=%r is not a hex number: expected one of %s"
                                     % (value, allowed))
        code = int(text, 16)
    if code not in SETTABLE_MODES:
        raise ESSXValueException("mode=%r is not a settable mode: expected one of %s" % (value, allowed))
    return code


def _meter(reply):
    """The ``meter`` body block (V, A, W, °C) from a decoded 10-1 reply."""
    return {k: reply[k] for k in METER_KEYS}


def _vdis(reply):
    """The ``vdis`` body block (dvg V, drg) from a decoded 4-1 or 4-4 reply."""
    return {"dvg": reply["dvg"], "drg": reply["drg"]}


def status_block(mode, cst, alm1):
    """The ``status`` body block from a mode, the 2-1 ``cst`` and the 9-1 ``alm1``.

    Returns:
        dict with status ("0x%04x"), alarmState, statusName, alarm, runningState,
        operationMode (EZA2500.md "Status word decoding"; web-api.md).
    """
    running = cst & 0x3
    alarm_state = (cst >> 2) & 0x3
    return {
        "status": "0x%04x" % mode,
        "alarmState": ALARM_STATES.get(alarm_state, "Unknown"),
        "statusName": "Ignore",
        "alarm": "%04x %04x %04x" % (alm1, alarm_state, running),
        "runningState": RUNNING_STATES.get(running, "Unknown"),
        "operationMode": MODE_NAMES.get(mode, "Unknown"),
    }


class ESSXTypeOES:
    """Controller for an EZA2500 converter and a Modbus battery (spec 5.2.1.2).

    Args:
        dcdc_dev: an ``eza2500.EZA2500Device``.
        bat_dev: a ``battery_emulator.BatteryEmulator``, or None (no battery).
        dcdc_config: the converter section of the configuration
            (``Config.dcdc``: retries, ``wait_for_retry`` s, ``command_interval`` s,
            ``config`` set-up values).
        bat_config: the battery section (``Config.battery``).
        ad1, ad2: EZA2500 addresses (reference: 0 and 16).
        name: the converter's name (``dcdc_converter_name``).
        watch: start the battery-watch thread (spec: started with the instance).

    The thread checks the battery every ``check_interval`` s (10) and, when
    ``force_dcdc_waiting`` is true and the battery does not permit interchange
    or cannot be read, sets Waiting with 1-4.  Call :meth:`close` to stop it.
    """

    def __init__(self, dcdc_dev=None, bat_dev=None, dcdc_config=None, bat_config=None,
                 ad1=0, ad2=1, name=None, watch=True):
        self.dcdc_dev = dcdc_dev
        self.bat_dev = bat_dev
        self.dcdc_config = dcdc_config
        self.bat_config = bat_config
        self.ad1 = ad1
        self.ad2 = ad2
        self.name = name
        self.dcdc_lock = threading.RLock()
        self.bat_lock = threading.Lock()
        self._next_command_at = 0.0     # monotonic time before which no command may start
        self._mode = None               # converter mode last seen in a 1-1 / 1-4 ACK; None = unknown
        self._stop = threading.Event()
        self._watch = None
        if watch:
            self._watch = threading.Thread(target=self._watch_battery, name="battery-watch", daemon=True)
            self._watch.start()

    # -- configuration ------------------------------------------------------------

    def update_config(self, dcdc_config, bat_config):
        """Use new converter and battery sections (``/remote/ioctl/set``)."""
        with self.dcdc_lock:
            self.dcdc_config = dcdc_config
            self.bat_config = bat_config

    def _setting(self, key, default):
        return getattr(self.dcdc_config, key)

    # -- one command --------------------------------------------------------------

    def vrfy(self, obj, params=None):
        """Check and encode *params* for command *obj* without sending anything.

        Returns:
            bytes, the request frame.
        Raises:
            ESSXValueException / ESSXParameterException: bad or missing value;
                the message names the field, the value and the range.
        """
        return obj.pack_senddata(self.ad1, self.ad2, params or {})

    def run(self, obj, params=None):
        """Send command *obj* with *params* and return its decoded reply.

        Retries (spec 5.2.1.2): timeouts and serial I/O errors up to
        ``number_of_timeout_retry`` times; bad checksums, unexpected replies and
        NAK 0xfffd/0xfffc up to ``number_of_dcdc_error_retry`` times; other NAKs
        fail at once.  ``wait_for_retry`` seconds pass between tries.  No
        command starts less than ``command_interval`` seconds after the end of
        the previous one.

        Returns:
            dict, ``obj.response``.
        Raises:
            ESSXValueException / ESSXParameterException: bad parameters (nothing sent).
            ESSXTimeoutException, ESSXChecksumException, ESSXValueException,
            ESSXDeviceException: the last failure once retries ran out; the
                message names the command and what happened.
        """
        params = params or {}
        self.vrfy(obj, params)
        timeout_left = int(self._setting("number_of_timeout_retry", 0))
        error_left = int(self._setting("number_of_dcdc_error_retry", 0))
        wait = float(self._setting("wait_for_retry", 0.1))
        tries = 0
        with self.dcdc_lock:
            while True:
                tries += 1
                try:
                    return self._exchange(obj, params)
                except ESSXTimeoutException as e:
                    exc, left = e, timeout_left
                    timeout_left -= 1
                except (ESSXChecksumException, ESSXValueException) as e:
                    exc, left = e, error_left
                    error_left -= 1
                except ESSXDeviceException as e:
                    exc, left = e, (error_left if e.retryable else 0)
                    error_left -= 1
                if left <= 0:
                    self._mode = None
                    raise type(exc)(*self._final_args(exc, obj, tries)) from exc
                log.info("command %s failed (%s); retrying in %.3f s", obj.name, exc, wait)
                time.sleep(wait)

    @staticmethod
    def _final_args(exc, obj, tries):
        if isinstance(exc, ESSXDeviceException):
            return (exc.ercd, "%s after %d tr%s" % (obj.name, tries, "y" if tries == 1 else "ies"))
        return ("command %s: %s (after %d tr%s)" % (obj.name, exc, tries, "y" if tries == 1 else "ies"),)

    def _exchange(self, obj, params):
        """One try: wait out the gap, send, read the reply (under ``dcdc_lock``)."""
        delay = self._next_command_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            obj.send(self.ad1, self.ad2, params)
            return obj.recv()
        finally:
            self._next_command_at = time.monotonic() + float(self._setting("command_interval", 0.062))

    def _command(self, name):
        return eza2500.COMMANDS[name](self.dcdc_dev)

    def _run(self, name, params=None):
        resp = self.run(self._command(name), params)
        if name in ("1-1", "1-4"):
            self._mode = resp["mode"]
        return resp

    # -- parameter checks ------------------------------------------------------

    def _param_values(self, dig):
        cfg = self.dcdc_config.config
        values = {k: cfg[k] for k in PARAM_KEYS}
        values["dig"] = dig
        return values

    def _check_all(self, checks):
        """vrfy every (command name, params) pair before anything is sent."""
        for name, params in checks:
            self.vrfy(self._command(name), params)

    # -- Web-API methods -----------------------------------------------------------

    def log_data(self, params=None):
        """Battery block for ``/1/log/data`` (web-api.md; spec 5.2.1.3).

        Returns:
            dict (rsoc %, battery_voltage V, battery_current A,
            charge_discharge_power W, battery_operation_status 0-3, ...).
        Raises:
            ESSXTimeoutException: the battery could not be read.
        """
        rsoc, bos, comm_err = self.check_battery()
        if comm_err:
            reason = getattr(self.bat_dev, "last_error", None) or "no answer"
            raise ESSXTimeoutException("battery could not be read: %s" % reason)
        voltage, current = self.bat_config.battery_voltage, self.bat_config.battery_current
        return {
            "system_time": {"year": 0, "month": 0, "day": 0, "hour": 0, "minute": 0},
            "rsoc": rsoc,
            "battery_rsoc": rsoc,
            "dischargeable_time": {"hour": 0, "minute": 0},
            "battery_voltage": voltage,
            "battery_current": current,
            "charge_discharge_power": voltage * current,
            "battery_status": 0,
            "battery_warning": 0,
            "battery_operation_status": bos,
            "battery_comm_err": comm_err,
            "ups_operation_schedule": 0,
            "ups_operation_mode": {"mode": 0, "parameter": 0, "stop_mode": 0},
        }

    def check_battery(self):
        """Read the battery under ``bat_lock``.

        Returns:
            (rsoc %, battery_operation_status 0|3, comm_err 0|-1); with no
            battery configured (0.0, 3, 0): nothing forbids interchange.
        """
        if self.bat_dev is None:
            return 0.0, 3, 0
        with self.bat_lock:
            return self.bat_dev.check_battery()

    def remote_get(self, params=None):
        """``/remote/get``: 1-1, 2-1, 4-1, 9-1, 10-1, 6-1 (web-api.md).

        Returns:
            {status, powermeter, meter, vdis, param}; meter in V, A, W, °C.
        Raises:
            ESSXException: a converter command failed after its retries
                (timeout, checksum, unexpected reply or NAK; see :meth:`run`).
        """
        with self.dcdc_lock:
            mode = self._run("1-1")["mode"]
            cst = self._run("2-1")["cst"]
            vdis = self._run("4-1")
            alm1 = self._run("9-1")["alm1"]
            meter = self._run("10-1")
            dig = self._run("6-1")["dig"]
        return {
            "status": status_block(mode, cst, alm1),
            "powermeter": {"p1": 0, "p2": 0, "v1": 0, "i1": 0, "kwh1": 0, "kwh2": 0},
            "meter": _meter(meter),
            "vdis": _vdis(vdis),
            "param": self._param_values(dig),
        }

    def remote_get_status(self, params=None):
        """``/remote/get/status``: 1-1, 2-1, 10-1.

        Returns:
            {status: {alarmState, runningState, operationMode}, meter}.
        Raises:
            ESSXException: a converter command failed after its retries
                (timeout, checksum, unexpected reply or NAK; see :meth:`run`).
        """
        with self.dcdc_lock:
            mode = self._run("1-1")["mode"]
            cst = self._run("2-1")["cst"]
            meter = self._run("10-1")
        full = status_block(mode, cst, 0)
        return {
            "status": {k: full[k] for k in ("alarmState", "runningState", "operationMode")},
            "meter": _meter(meter),
        }

    def remote_set(self, params):
        """``/remote/set``: set mode, grid voltage and current (web-api.md).

        Args:
            params: {mode: "0x0014", dvg: V, drg: droop, dig: A}; values may be
                strings from the query string.
        Sends 4-4, 6-4, 1-4 when the converter is in Waiting, else 1-4, 4-4,
        6-4; then 2-1, 9-1, 10-1.  The converter's mode is the one last
        reported by a 1-1 or 1-4 reply; when unknown it is read with 1-1 first.
        Returns:
            {status, meter, vdis, param}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries.
        """
        mode = parse_mode(params.get("mode"))
        dvg = parse_number("dvg", params.get("dvg"))
        drg = parse_number("drg", params.get("drg"))
        dig = parse_number("dig", params.get("dig"))
        set_mode = ("1-4", {"mode": mode})
        set_voltage = ("4-4", {"dvg": dvg, "drg": drg})
        set_current = ("6-4", self._param_values(dig))
        self._check_all((set_voltage, set_current, set_mode))
        with self.dcdc_lock:
            if self._mode is None:
                self._run("1-1")
            if self._mode == 0x0000:
                order = (set_voltage, set_current, set_mode)
            else:
                order = (set_mode, set_voltage, set_current)
            acks = {name: self._run(name, p) for name, p in order}
            cst = self._run("2-1")["cst"]
            alm1 = self._run("9-1")["alm1"]
            meter = self._run("10-1")
        return {
            "status": status_block(acks["1-4"]["mode"], cst, alm1),
            "meter": _meter(meter),
            "vdis": _vdis(acks["4-4"]),
            "param": self._param_values(acks["6-4"]["dig"]),
        }

    def remote_set_current(self, params):
        """``/remote/set/current``: 6-4 then 10-1.

        Args:
            params: {dig: A}.
        Returns:
            {meter, param}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries.
        """
        dig = parse_number("dig", params.get("dig"))
        set_current = ("6-4", self._param_values(dig))
        self._check_all((set_current,))
        with self.dcdc_lock:
            ack = self._run(*set_current)
            meter = self._run("10-1")
        return {"meter": _meter(meter), "param": self._param_values(ack["dig"])}

    def remote_set_voltage(self, params):
        """``/remote/set/voltage``: 4-4 then 10-1.

        Args:
            params: {dvg: V, drg: droop (default 0)}.
        Returns:
            {meter, vdis}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries.
        """
        dvg = parse_number("dvg", params.get("dvg"))
        drg = parse_number("drg", params.get("drg", 0))
        set_voltage = ("4-4", {"dvg": dvg, "drg": drg})
        self._check_all((set_voltage,))
        with self.dcdc_lock:
            ack = self._run(*set_voltage)
            meter = self._run("10-1")
        return {"meter": _meter(meter), "vdis": _vdis(ack)}

    def remote_ioctl_set(self, params=None):
        """``/remote/ioctl/set``: 6-1, 6-4, 7-4, 3-4 with the configured set-up values.

        ``dig`` for 6-4 is the converter's present value (6-1).  Returns
        {dcdc_converter_name, dcdc_setup_parameter} with the values written
        (from the configuration; ``bcf`` as "0x%04x").

        Raises:
            ESSXValueException: a configured value is out of range (nothing sent).
            ESSXException: a converter command failed after its retries.
        """
        cfg = self.dcdc_config.config
        setup = ("7-4", {k: cfg[k] for k in ("bcf", "cvb", "dlb", "cdb", "ddb")})
        battery_cv = ("3-4", {"cvb": cfg["cvb"], "drb": cfg["drb"]})
        self._check_all((("6-4", self._param_values(0)), setup, battery_cv))
        with self.dcdc_lock:
            dig = self._run("6-1")["dig"]
            protection = ("6-4", self._param_values(dig))
            self._check_all((protection,))
            for name, p in (protection, setup, battery_cv):
                self._run(name, p)
        body = {k: cfg[k] for k in ("ubv", "ugv", "obv", "ogv", "cvb", "dlb", "cdb", "ddb", "drb", "cib")}
        body["bcf"] = "0x%04x" % cfg["bcf"]
        return {"dcdc_converter_name": self.name, "dcdc_setup_parameter": body}

    def remote_ioctl_get(self, params=None):
        """``/remote/ioctl/get`` and ``/all/get``: the battery block and ``/remote/get``.

        The battery is read on its own bus in parallel with the converter sequence.

        Returns:
            the union of :meth:`log_data` and :meth:`remote_get`.
        Raises:
            ESSXException: the battery could not be read, or a converter
                command failed after its retries.
        """
        battery = {}
        failure = []

        def read_battery():
            try:
                battery.update(self.log_data())
            except ESSXException as e:
                failure.append(e)

        reader = threading.Thread(target=read_battery, name="battery-read", daemon=True)
        reader.start()
        try:
            body = self.remote_get()
        finally:
            reader.join()
        if failure:
            raise failure[0]
        body.update(battery)
        return body

    def remote_ioctl_clr_alarm(self, params=None):
        """``/remote/ioctl/clr_alarm``: 9-4 (d0 = d1 = 0), then as ``/remote/get``.

        Returns and raises as :meth:`remote_get`.
        """
        with self.dcdc_lock:
            self._run("9-4", {"d0": 0, "d1": 0})
            return self.remote_get()

    # -- battery watch ---------------------------------------------------------------

    def _watch_battery(self):
        while not self._stop.wait(self.bat_config.check_interval):
            try:
                self.check_and_wait()
            except ESSXException as e:
                log.error("battery watch: could not set Waiting: %s", e)

    def check_and_wait(self):
        """One battery-watch step: set Waiting (1-4, mode 0) when needed.

        Returns:
            True when 1-4 was sent.
        Raises:
            ESSXException: 1-4 failed after its retries.
        """
        if not self.bat_config.force_dcdc_waiting:
            return False
        rsoc, bos, comm_err = self.check_battery()
        if bos != 0 and not comm_err:
            return False
        log.warning("battery %s: setting the converter to Waiting",
                    "unreachable" if comm_err else "forbids interchange")
        self._run("1-4", {"mode": 0x0000})
        return True

    def close(self):
        """Stop the battery-watch thread (waits for it)."""
        self._stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join()
