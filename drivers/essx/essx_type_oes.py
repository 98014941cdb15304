"""ESSXTypeOES: the controller between the Web API and the devices (spec 5.2.1).

Each Web-API method builds its EZA2500 requests first (each is validated and
encoded once, so a bad value is refused before anything is sent), then sends
them in the order web-api.md gives inside one ``link.sequence()``, and shapes
the JSON body.  Everything about the converter's line -- the lock, the gap
between commands, the retries, the reports to observers, the mode last seen
-- belongs to the link (``eza2500.link.EZA2500Link``); the battery's line
belongs to the ``BatteryEmulator``.  The two buses work in parallel.

Set parameters arrive typed (the server parses them once with
``essx.essx_params``): mode an int, dvg/dig/drg floats.
"""

import logging
import threading
from typing import Any, Dict, Mapping, Optional, Tuple

from essx.essx_exception import ESSXDeviceException, ESSXException, ESSXTimeoutException
from eza2500 import codec, table
from eza2500.link import EZA2500Link, RequestFrame, link_settings

log = logging.getLogger(__name__)

#: Configuration values 6-4 sends besides ``dig`` (web-api.md, ``param``).
PARAM_KEYS = ("cib", "ubv", "ogv", "obv", "ugv")
#: The ``meter`` block's keys (10-1 fields; V, A, W, °C).
METER_KEYS = ("wg", "tmp", "vb", "wb", "vg", "ib", "ig")
#: ``dcdc_setup_parameter`` of ``/remote/ioctl/set`` (besides ``bcf``).
SETUP_BODY_KEYS = ("ubv", "ugv", "obv", "ogv", "cvb", "dlb", "cdb", "ddb", "drb", "cib")
#: Fields of 6-4 taken from the configuration (all but ``dig``).
_PROTECTION = tuple(f for f in table.group(6).write if f.name != "dig")

NO_BATTERY = "no battery configured"

Body = Dict[str, Any]


def _meter(reply: Mapping[str, Any]) -> Body:
    """The ``meter`` body block (V, A, W, °C) from a decoded 10-1 reply."""
    return {k: reply[k] for k in METER_KEYS}


def _vdis(reply: Mapping[str, Any]) -> Body:
    """The ``vdis`` body block (dvg V, drg) from a decoded 4-1 or 4-4 reply."""
    return {"dvg": reply["dvg"], "drg": reply["drg"]}


def status_block(mode: int, cst: int, alm1: int) -> Body:
    """The ``status`` body block from a mode, the 2-1 ``cst`` and the 9-1 ``alm1``.

    Returns:
        dict with status ("0x%04x"), alarmState, statusName, alarm, runningState,
        operationMode (EZA2500.md "Status word decoding", via ``table``; web-api.md).
    """
    running, alarm_state = table.decode_cst(cst)
    return {
        "status": "0x%04x" % mode,
        "alarmState": table.ALARM_STATES.get(alarm_state, table.UNKNOWN_NAME),
        "statusName": "Ignore",
        "alarm": "%04x %04x %04x" % (alm1, alarm_state, running),
        "runningState": table.RUNNING_STATES.get(running, table.UNKNOWN_NAME),
        "operationMode": table.mode_name(mode),
    }


class ESSXTypeOES:
    """Controller for an EZA2500 converter and a Modbus battery (spec 5.2.1.2).

    Args:
        dcdc_dev: an ``eza2500.EZA2500Device`` (its port may be absent: it is
            opened before each command).
        bat_dev: a ``battery_emulator.BatteryEmulator``, or None (no battery).
        dcdc_config: the converter section (``DcdcSection``: retries,
            ``wait_for_retry`` s, ``command_interval`` s, ``line_wait`` s,
            ``config`` set-up values).
        bat_config: the battery section (``BatterySection``).
        ad1, ad2: EZA2500 addresses (reference: 0 and 16).
        name: the converter's name (``dcdc_converter_name``).
        watch: start the battery-watch thread (spec: started with the instance).

    Attributes:
        link: the ``EZA2500Link`` owning the converter's line (listeners,
            mode, port, is_open).
        bat_dev: the battery, or None.

    The watch thread checks at start and then every ``check_interval`` s
    (10): when ``force_dcdc_waiting`` is true and the battery does not permit
    interchange, cannot be read, or is not configured, it sets Waiting with
    1-4, as the reference does.  Call :meth:`close` to stop it.
    """

    def __init__(self, dcdc_dev: Any = None, bat_dev: Any = None, dcdc_config: Any = None,
                 bat_config: Any = None, ad1: int = 0, ad2: int = 1, name: Optional[str] = None,
                 watch: bool = True) -> None:
        self.dcdc_dev, self.bat_dev, self.name = dcdc_dev, bat_dev, name
        self.dcdc_config, self.bat_config = dcdc_config, bat_config
        self.link = EZA2500Link(dcdc_dev, ad1, ad2, **link_settings(dcdc_config))
        self._stop = threading.Event()
        self._waiting_reason: Optional[str] = None   # why the watch last forced Waiting
        self._watch: Optional[threading.Thread] = None
        if watch:
            self._watch = threading.Thread(target=self._watch_battery, name="battery-watch", daemon=True)
            self._watch.start()

    @property
    def watching(self) -> bool:
        """True while the battery-watch thread runs."""
        return self._watch is not None and self._watch.is_alive()

    def update_config(self, dcdc_config: Any, bat_config: Any) -> None:
        """Use new converter and battery sections (``/remote/ioctl/set``): the
        set-up values, the battery settings, and the link's retries, gap,
        line_wait and the device's timeout, from the next command on."""
        self.link.configure(timeout=getattr(dcdc_config, "timeout", None), **link_settings(dcdc_config))
        self.dcdc_config = dcdc_config
        self.bat_config = bat_config

    # -- the specification's thin interface (spec 5.2.1.2) ---------------------------

    def vrfy(self, obj: Any, params: Optional[Mapping[str, Any]] = None) -> bytes:
        """Check and encode *params* for command *obj* (an ``eza2500.Command0404``
        etc.) without sending anything.

        Returns:
            bytes, the request frame.
        Raises:
            ESSXValueException / ESSXParameterException: bad or missing value;
                the message names the field, the value and the range.
        """
        return self.link.request(obj.name, params).frame

    def run(self, obj: Any, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Send command *obj* with *params* through the link (retries, gap,
        lock; see ``EZA2500Link.transact``) and return its decoded reply, also
        stored in ``obj.response`` (``{'ercd': code}`` after a NAK)."""
        try:
            obj.response = self.link.transact(obj.name, params)
        except ESSXDeviceException as e:
            obj.response = {"ercd": e.ercd}
            raise
        return obj.response

    # -- helpers ------------------------------------------------------------------------

    def _param_values(self, dig: Any) -> Body:
        cfg = self.dcdc_config.config
        values = {k: cfg[k] for k in PARAM_KEYS}
        values["dig"] = dig
        return values

    def _require_battery(self) -> None:
        if self.bat_dev is None:
            raise ESSXException(NO_BATTERY)

    # -- Web-API methods: battery ------------------------------------------------------

    def log_data(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """Battery block for ``/1/log/data`` (web-api.md; spec 5.2.1.3).

        Returns:
            dict (rsoc %, battery_voltage V, battery_current A,
            charge_discharge_power W, battery_operation_status 0|3, ...).
        Raises:
            ESSXException: "no battery configured".
            ESSXTimeoutException: the battery could not be read.
        """
        self._require_battery()
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

    def check_battery(self) -> Tuple[float, int, int]:
        """Read the battery (its emulator holds the battery line).

        Returns:
            (rsoc %, battery_operation_status 0|3, comm_err 0|-1); with no
            battery configured (0.0, 0, -1), as the reference.
        """
        if self.bat_dev is None:
            return 0.0, 0, -1
        return self.bat_dev.check_battery()

    # -- Web-API methods: converter ------------------------------------------------------

    def remote_get(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/get``: 1-1, 2-1, 4-1, 9-1, 10-1, 6-1 (web-api.md).

        Returns:
            {status, powermeter, meter, vdis, param}; meter in V, A, W, °C.
        Raises:
            ESSXException: a converter command failed after its retries
                (timeout, checksum, unexpected reply or NAK), or the line
                stayed busy (see ``EZA2500Link.transact``).
        """
        transact = self.link.transact
        with self.link.sequence():
            mode = transact("1-1")["mode"]
            cst = transact("2-1")["cst"]
            vdis = transact("4-1")
            alm1 = transact("9-1")["alm1"]
            meter = transact("10-1")
            dig = transact("6-1")["dig"]
        return {
            "status": status_block(mode, cst, alm1),
            "powermeter": {"p1": 0, "p2": 0, "v1": 0, "i1": 0, "kwh1": 0, "kwh2": 0},
            "meter": _meter(meter),
            "vdis": _vdis(vdis),
            "param": self._param_values(dig),
        }

    def remote_get_status(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/get/status``: 1-1, 2-1, 10-1.

        Returns:
            {status: {alarmState, runningState, operationMode}, meter}.
        Raises:
            ESSXException: as :meth:`remote_get`.
        """
        transact = self.link.transact
        with self.link.sequence():
            mode = transact("1-1")["mode"]
            cst = transact("2-1")["cst"]
            meter = transact("10-1")
        full = status_block(mode, cst, 0)
        return {
            "status": {k: full[k] for k in ("alarmState", "runningState", "operationMode")},
            "meter": _meter(meter),
        }

    def remote_set(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set``: set mode, grid voltage and current (web-api.md).

        Args:
            params: {mode: int (``table.SETTABLE_MODES``), dvg: V, drg: droop,
                dig: A}, already parsed (``essx_params``).
        Sends 4-4, 6-4, 1-4 when the converter is in Waiting, else 1-4, 4-4,
        6-4; then 2-1, 9-1, 10-1.  The converter's mode is the one last
        reported by a 1-1 or 1-4 reply (``link.mode``); when unknown it is
        read with 1-1 first.
        Returns:
            {status, meter, vdis, param}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries; the
                message names the writes already applied.
        """
        link = self.link
        set_mode = link.request("1-4", {"mode": params["mode"]})
        set_voltage = link.request("4-4", {"dvg": params["dvg"], "drg": params["drg"]})
        set_current = link.request("6-4", self._param_values(params["dig"]))
        with link.sequence():
            if link.mode is None:
                link.transact("1-1")
            if link.mode == table.MODE_WAITING:
                order = (set_voltage, set_current, set_mode)
            else:
                order = (set_mode, set_voltage, set_current)
            acks = {r.name: link.transact(r) for r in order}
            cst = link.transact("2-1")["cst"]
            alm1 = link.transact("9-1")["alm1"]
            meter = link.transact("10-1")
        return {
            "status": status_block(acks["1-4"]["mode"], cst, alm1),
            "meter": _meter(meter),
            "vdis": _vdis(acks["4-4"]),
            "param": self._param_values(acks["6-4"]["dig"]),
        }

    def _set_then_meter(self, request: RequestFrame) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """One write, then 10-1, on one hold of the line: (ack, meter reply)."""
        with self.link.sequence():
            return self.link.transact(request), self.link.transact("10-1")

    def remote_set_current(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set/current``: 6-4 then 10-1.

        Args:
            params: {dig: A}, already parsed.
        Returns:
            {meter, param}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries.
        """
        ack, meter = self._set_then_meter(self.link.request("6-4", self._param_values(params["dig"])))
        return {"meter": _meter(meter), "param": self._param_values(ack["dig"])}

    def remote_set_voltage(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set/voltage``: 4-4 then 10-1.

        Args:
            params: {dvg: V, drg: droop (default 0)}, already parsed.
        Returns:
            {meter, vdis}.
        Raises:
            ESSXParameterException / ESSXValueException: before anything is sent.
            ESSXException: a converter command failed after its retries.
        """
        request = self.link.request("4-4", {"dvg": params["dvg"], "drg": params.get("drg", 0)})
        ack, meter = self._set_then_meter(request)
        return {"meter": _meter(meter), "vdis": _vdis(ack)}

    def remote_ioctl_set(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/set``: 6-1, 6-4, 7-4, 3-4 with the configured set-up values.

        ``dig`` for 6-4 is the converter's present value (6-1).  Returns
        {dcdc_converter_name, dcdc_setup_parameter} with the values written
        (from the configuration; ``bcf`` as "0x%04x").

        Raises:
            ESSXValueException: a configured value is out of range (nothing sent).
            ESSXException: a converter command failed after its retries.
        """
        cfg = self.dcdc_config.config
        link = self.link
        codec.validate(_PROTECTION, cfg, "6-4")
        setup = link.request("7-4", cfg)         # the request takes its fields from cfg
        battery_cv = link.request("3-4", cfg)
        with link.sequence():
            dig = link.transact("6-1")["dig"]
            for request in (link.request("6-4", self._param_values(dig)), setup, battery_cv):
                link.transact(request)
        body = {k: cfg[k] for k in SETUP_BODY_KEYS}
        body["bcf"] = "0x%04x" % int(cfg["bcf"])
        return {"dcdc_converter_name": self.name, "dcdc_setup_parameter": body}

    def remote_ioctl_get(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/get`` and ``/all/get``: the battery block and ``/remote/get``.

        The battery is read on its own bus in parallel with the converter sequence.

        Returns:
            the union of :meth:`log_data` and :meth:`remote_get`.
        Raises:
            ESSXException: "no battery configured" (nothing sent), the battery
                could not be read, or a converter command failed.
        """
        self._require_battery()
        battery: Body = {}
        failure = []

        def read_battery() -> None:
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

    def remote_ioctl_clr_alarm(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/clr_alarm``: 9-4 (d0 = d1 = 0), then as ``/remote/get``.

        Returns and raises as :meth:`remote_get`.
        """
        with self.link.sequence():
            self.link.transact("9-4", {"d0": 0, "d1": 0})
            return self.remote_get()

    # -- battery watch ---------------------------------------------------------------

    def _watch_battery(self) -> None:
        while True:
            try:
                self.check_and_wait()
            except ESSXException as e:
                log.error("battery watch: could not set Waiting: %s", e)
            if self._stop.wait(self.bat_config.check_interval):
                return

    def _forbids(self) -> Optional[str]:
        """Why interchange is not allowed now, or None when it is."""
        if self.bat_dev is None:
            return NO_BATTERY
        rsoc, bos, comm_err = self.check_battery()
        if comm_err:
            return "battery unreachable"
        if bos == 0:
            return "battery forbids interchange"
        return None

    def check_and_wait(self) -> bool:
        """One battery-watch step: set Waiting (1-4, mode 0) when needed.

        Needed when ``force_dcdc_waiting`` is set and the battery forbids
        interchange, cannot be read, or is not configured (the reference's
        watchdog).  The reason is logged once per change.
        Returns:
            True when 1-4 was sent.
        Raises:
            ESSXException: 1-4 failed after its retries, or the line stayed busy.
        """
        if not self.bat_config.force_dcdc_waiting:
            self._waiting_reason = None
            return False
        reason = self._forbids()
        if reason != self._waiting_reason and reason is not None:
            log.warning("%s: setting the converter to Waiting (force_dcdc_waiting)", reason)
        self._waiting_reason = reason
        if reason is None:
            return False
        self.link.transact("1-4", {"mode": table.MODE_WAITING})
        return True

    def close(self) -> None:
        """Stop the battery-watch thread (waits for it)."""
        self._stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join()
