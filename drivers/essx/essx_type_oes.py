"""ESSXTypeOES: the controller between the Web API and the devices (docs/web-api.md).

Its route methods send the converter commands of docs/web-api.md, "Routes" and
shape their bodies from the blocks of ``essx.blocks`` (docs/web-api.md, "Blocks").
"""
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from essx import blocks
from essx.devices import Battery, ConverterLine, ConverterPort
from essx.essx_config import BatterySection, DcdcSection
from essx.essx_exception import (ESSXDeviceException, ESSXException, ESSXParameterException,
                                 ESSXTimeoutException)
from eza2500 import table
from eza2500.link import EZA2500Link, RequestFrame, describe, link_settings

log = logging.getLogger(__name__)

NO_BATTERY = "no battery configured"

Body = Dict[str, Any]


class ESSXTypeOES:
    """Controller for an EZA2500 converter and a Modbus battery (docs/eza2500-protocol.md,
    docs/battery-registers.md).

    Args:
        dcdc_dev: the converter's port (``ConverterPort``: an
            ``eza2500.EZA2500Device``), opened before each command.
        bat_dev: the battery (``Battery``: a
            ``battery_emulator.BatteryEmulator``), or None (no battery).
        dcdc_config: the converter section (``DcdcSection``: retries, waits
            in s, ``config`` set-up values); bat_config: ``BatterySection``.
        ad1, ad2: EZA2500 addresses (the shipped dcdc_batt_comm.yml has 0 and 16).
        name: the converter's name (``dcdc_converter_name``).
        watch: start the battery-watch thread now (:meth:`check_and_wait` at
            once, then every ``check_interval`` s); else :meth:`start_watch`
            starts it later; :meth:`close` stops it.

    Attributes:
        link: the ``ConverterLine`` owning the converter's line (an ``EZA2500Link``).
        dcdc_dev, bat_dev, dcdc_config, bat_config, name: as given;
        ``update_config`` replaces the two sections.

    Route methods take parsed parameters (mode int, dvg V, dig A, drg float;
    docs/web-api.md, "Set parameters and the previous-value rule"), send the
    commands of docs/web-api.md, "Routes" in order on one ``link.sequence()``
    (the battery's bus in parallel) and return the JSON body (``essx.blocks``:
    V, A, W, °C, %); they raise as ``EZA2500Link.request`` (bad value, nothing
    sent) and ``.transact`` (failure after the retries, naming the writes
    already applied).
    """

    def __init__(self, dcdc_dev: Optional[ConverterPort] = None, bat_dev: Optional[Battery] = None,
                 dcdc_config: Optional[DcdcSection] = None, bat_config: Optional[BatterySection] = None,
                 ad1: int = 0, ad2: int = 1, name: Optional[str] = None, watch: bool = True) -> None:
        self.dcdc_dev: Optional[ConverterPort] = dcdc_dev
        self.bat_dev: Optional[Battery] = bat_dev
        self.name = name
        self.dcdc_config, self.bat_config = dcdc_config, bat_config
        self.link: ConverterLine = EZA2500Link(dcdc_dev, ad1, ad2, **link_settings(dcdc_config))
        self._stop = threading.Event()
        self._waiting_reason: Optional[str] = None   # why the watch last forced Waiting
        self._watch = threading.Thread(target=self._watch_battery, name="battery-watch", daemon=True)
        if watch:
            self.start_watch()

    def start_watch(self) -> None:
        """Start the battery-watch thread (once; essx-server does it after
        start-up has opened the ports, so the two never race for them)."""
        if self._watch.ident is None and not self._stop.is_set():
            self._watch.start()

    @property
    def watching(self) -> bool:
        """True while the battery-watch thread runs."""
        return self._watch.is_alive()

    def update_config(self, dcdc_config: DcdcSection, bat_config: BatterySection) -> None:
        """Use new sections (``/remote/ioctl/set``) from the next command on,
        the link's settings and the device's timeout (s) included.

        Raises:
            TypeError, ValueError: a setting the link does not take (nothing changed).
        """
        self.link.configure(timeout=dcdc_config.timeout, **link_settings(dcdc_config))
        self.dcdc_config, self.bat_config = dcdc_config, bat_config

    def vrfy(self, obj: Any, params: Optional[Mapping[str, Any]] = None) -> bytes:
        """The request frame (bytes SFD .. CHK) of command *obj* (``eza2500.Command0404``
        ...) with *params* (V, A, ...), range-checked, nothing sent (the specification's
        ``vrfy``: docs/eza2500-protocol.md, "Range checks").

        Raises:
            ESSXParameterException: a field is missing.
            ESSXValueException: a value is out of range (named with the range and command).
        """
        return self.link.request(obj.name, params).frame

    def run(self, obj: Any, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Send command *obj* with *params* (``link.transact``, with its retries:
        docs/eza2500-protocol.md, "Retries") -> its decoded reply ({field: V, A, ...}),
        also in ``obj.response`` (``{'ercd': code}`` after a NAK).

        Raises:
            as ``EZA2500Link.transact``: ESSXDeviceException (NAK, ``.ercd``),
            ESSXTimeoutException, ESSXIOException, ESSXChecksumException, ESSXValueException.
        """
        try:
            obj.response = self.link.transact(obj.name, params)
        except ESSXDeviceException as e:
            obj.response = {"ercd": e.ercd}
            raise
        return obj.response

    def _readings(self, reply: Mapping[str, Any]) -> blocks.Readings:
        """What the blocks are made of: the reply fields *reply*, the sections, the name."""
        setup = self.dcdc_config.config if self.dcdc_config is not None else {}
        return blocks.Readings(reply=reply, setup=setup, battery_config=self.bat_config, name=self.name)

    def _param_values(self, dig: Any) -> Body:
        """The ``param`` block with *dig* (A): also the values a 6-4 sends (docs/web-api.md, "param")."""
        return blocks.PARAM.shape(self._readings({"dig": dig}))

    def _send(self, *requests: Union[str, RequestFrame]) -> Body:
        """Each request (a name or a ``RequestFrame``) in order on one hold of
        the line -> the fields of all replies in one dict (no name is in two)."""
        values: Body = {}
        with self.link.sequence():
            for request in requests:
                values.update(self.link.transact(request))
        return values

    def _body(self, v: Mapping[str, Any], body: blocks.Block) -> Body:
        """The *body* (``essx.blocks``) from the reply fields ``v`` of :meth:`_send`."""
        return body.shape(self._readings(v))

    def log_data(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """Battery block of ``/1/log/data`` (``blocks.BATTERY``; docs/web-api.md,
        "battery block"; docs/battery-registers.md, "Where the values go"): {rsoc %,
        battery_voltage V, battery_current A, charge_discharge_power W,
        battery_operation_status 0|3, battery_comm_err 0, ...}.

        Raises:
            ESSXException: "no battery configured".
            ESSXTimeoutException: the battery could not be read.
        """
        if self.bat_dev is None:
            raise ESSXException(NO_BATTERY)
        rsoc, bos, comm_err = self.bat_dev.check_battery()
        if comm_err:
            reason = self.bat_dev.last_error or "no answer"
            raise ESSXTimeoutException("battery could not be read: %s" % reason)
        battery = {"rsoc": rsoc, "operation_status": bos, "comm_err": comm_err}
        return blocks.LOG_DATA.shape(blocks.Readings(battery=battery, battery_config=self.bat_config))

    def remote_get(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/get``: 1-1, 2-1, 4-1, 9-1, 10-1, 6-1 on one hold of the line ->
        {status, powermeter, meter, vdis, param} (``blocks.REMOTE_GET``; docs/web-api.md,
        "/remote/get and /dcdc/get"); raises as ``EZA2500Link.transact``."""
        return self._body(self._send("1-1", "2-1", "4-1", "9-1", "10-1", "6-1"), blocks.REMOTE_GET)

    def remote_get_status(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/get/status``: 1-1, 2-1, 10-1 -> {status: {alarmState,
        runningState, operationMode}, meter} (``blocks.REMOTE_GET_STATUS``); raises
        as ``EZA2500Link.transact``."""
        return self._body(self._send("1-1", "2-1", "10-1"), blocks.REMOTE_GET_STATUS)

    def remote_set(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set``: {mode: int (``table.SETTABLE_MODES``), dvg: V, drg,
        dig: A} -> {status, meter, vdis, param} (``blocks.REMOTE_SET``).

        Sends 4-4, 6-4, 1-4 when the converter is in Waiting, else 1-4, 4-4,
        6-4; then 2-1, 9-1, 10-1 (docs/web-api.md, "/remote/set").  The mode is
        ``link.mode``, read with 1-1 first when unknown.  Mode 0x0000 is
        :meth:`set_waiting`: it reaches Waiting whatever the other values are.

        Raises:
            ESSXParameterException, ESSXValueException: a value missing or out of
                range; every one is checked before anything is sent.
            as ``EZA2500Link.transact``: a command failed (naming the writes applied).
        """
        if params["mode"] == table.MODE_WAITING:
            return self.set_waiting(params)[0]
        link = self.link
        set_mode = link.request("1-4", {"mode": params["mode"]})
        set_voltage = link.request("4-4", {"dvg": params["dvg"], "drg": params["drg"]})
        set_current = link.request("6-4", self._param_values(params["dig"]))
        with link.sequence():
            if link.mode is None:
                link.transact("1-1")
            if link.mode == table.MODE_WAITING:
                v = self._send(set_voltage, set_current, set_mode, "2-1", "9-1", "10-1")
            else:
                v = self._send(set_mode, set_voltage, set_current, "2-1", "9-1", "10-1")
        return self._body(v, blocks.REMOTE_SET)

    def set_waiting(self, params: Mapping[str, Any]) -> Tuple[Body, Body]:
        """A stop (mode 0x0000): the converter reaches Waiting whatever else
        *params* ({dvg: V, drg, dig: A}, each may be None or absent) carries.

        1-4 (mode 0) goes first unless the converter is known to be waiting
        (then 4-4, 6-4, 1-4, as :meth:`remote_set`); a ``dvg``, ``drg`` or
        ``dig`` that cannot be sent is not sent, and a 4-4 or 6-4 that fails
        does not stop the 1-4: each is a WARNING naming it.  4-1 / 6-1 read
        what was not written, then 2-1, 9-1, 10-1.

        Returns:
            (the /remote/set body, the values sent: {mode, and those of dvg,
            drg, dig that the converter acknowledged}).
        Raises:
            as ``EZA2500Link.transact``, only when the 1-4 or a read fails.
        """
        link = self.link
        set_mode = link.request("1-4", {"mode": table.MODE_WAITING})
        writes = [w for w in (self._stop_write("4-4", params, "dvg", "drg"),
                              self._stop_write("6-4", params, "dig")) if w is not None]
        sent: Body = {"mode": table.MODE_WAITING}
        v: Body = {}
        with link.sequence():
            waiting = link.mode == table.MODE_WAITING
            for request in writes if waiting else ():
                v.update(self._stop_transact(request, sent))
            v.update(link.transact(set_mode))
            for request in () if waiting else writes:     # not known to wait: the stop goes first
                v.update(self._stop_transact(request, sent))
            v.update(self._send(*_unwritten(v, blocks.VDIS, blocks.PARAM), "2-1", "9-1", "10-1"))
        return self._body(v, blocks.REMOTE_SET), sent

    def _stop_write(self, name: str, params: Mapping[str, Any], *keys: str) -> Optional[RequestFrame]:
        """The 4-4 or 6-4 of a stop, or None (a WARNING) when a value cannot be sent."""
        given = {k: params.get(k) for k in keys}
        missing = [k for k, value in given.items() if value is None]
        try:
            if missing:
                raise ESSXParameterException("%s not given" % " and ".join(missing))
            return self.link.request(name, given if name == "4-4" else self._param_values(given["dig"]))
        except ESSXException as e:
            log.warning("mode=0x0000 (Waiting): %s not sent (%s); the stop goes on", name, e)
            return None

    def _stop_transact(self, request: RequestFrame, sent: Body) -> Body:
        """A 4-4 or 6-4 of a stop: its reply fields, or {} (a WARNING) when it fails."""
        try:
            values = self.link.transact(request)
        except ESSXException as e:
            log.warning("mode=0x0000 (Waiting): %s failed (%s); the stop goes on", describe(request), e)
            return {}
        sent.update({k: v for k, v in request.params.items() if k in ("dvg", "drg", "dig")})
        return values

    def remote_set_current(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set/current``: {dig: A}; 6-4 then 10-1 -> {meter, param} (``blocks.SET_CURRENT``)."""
        v = self._send(self.link.request("6-4", self._param_values(params["dig"])), "10-1")
        return self._body(v, blocks.SET_CURRENT)

    def remote_set_voltage(self, params: Mapping[str, Any]) -> Body:
        """``/remote/set/voltage``: {dvg: V, drg (default 0)}; 4-4 then 10-1 -> {meter, vdis}
        (``blocks.SET_VOLTAGE``)."""
        v = self._send(self.link.request("4-4", {"dvg": params["dvg"], "drg": params.get("drg", 0)}), "10-1")
        return self._body(v, blocks.SET_VOLTAGE)

    def remote_ioctl_set(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/set``: 6-1, then 6-4 (its ``dig`` the 6-1 value), 7-4,
        3-4 with the configured set-up values -> {dcdc_converter_name,
        dcdc_setup_parameter} (``blocks.IOCTL_SET``: the values written; ``bcf`` as "0x%04x";
        docs/web-api.md, "/remote/ioctl/set").

        Raises:
            ESSXValueException: a configured value out of range (nothing sent).
            as ``EZA2500Link.transact``: a command failed (naming the writes applied).
        """
        cfg = self.dcdc_config.config
        self.link.request("6-4", dict(cfg, dig=0))   # checks the configured values (0 A: dig's stand-in)
        setup, battery_cv = self.link.request("7-4", cfg), self.link.request("3-4", cfg)
        with self.link.sequence():
            dig = self.link.transact("6-1")["dig"]
            self._send(self.link.request("6-4", self._param_values(dig)), setup, battery_cv)
        return self._body({}, blocks.IOCTL_SET)

    def remote_ioctl_get(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/get`` and ``/all/get``: :meth:`remote_get` and
        :meth:`log_data` in one body (``blocks.IOCTL_GET``), the battery read in
        parallel; raises as they do ("no battery configured": nothing sent)."""
        if self.bat_dev is None:
            raise ESSXException(NO_BATTERY)
        with ThreadPoolExecutor(1, thread_name_prefix="battery-read") as pool:
            battery = pool.submit(contextvars.copy_context().run, self.log_data)   # the same deadline
            body = self.remote_get()
        body.update(battery.result())
        return body

    def remote_ioctl_clr_alarm(self, params: Optional[Mapping[str, Any]] = None) -> Body:
        """``/remote/ioctl/clr_alarm``: 9-4 (d0 = d1 = 0), then as :meth:`remote_get`."""
        with self.link.sequence():
            self.link.transact("9-4", {"d0": 0, "d1": 0})
            return self.remote_get()

    def _watch_battery(self) -> None:
        while True:
            try:
                self.check_and_wait()
            except ESSXException as e:
                log.error("battery watch: could not set Waiting: %s", e)
            if self._stop.wait(self.bat_config.check_interval):
                return

    def check_and_wait(self) -> bool:
        """One battery-watch step: with ``force_dcdc_waiting``, set Waiting (1-4,
        mode 0) when the battery forbids interchange, cannot be read or is not
        configured (the reference's watchdog; docs/battery-registers.md, "Where
        the values go"; docs/converter-line.md, "No battery configured"),
        logging the reason once per change.  True when 1-4 was sent; raises as
        ``EZA2500Link.transact``."""
        if not self.bat_config.force_dcdc_waiting:
            self._waiting_reason = None
            return False
        reason: Optional[str] = NO_BATTERY
        if self.bat_dev is not None:
            _, bos, comm_err = self.bat_dev.check_battery()
            reason = "battery unreachable" if comm_err else None if bos else "battery forbids interchange"
        if reason not in (None, self._waiting_reason):
            log.warning("%s: setting the converter to Waiting (force_dcdc_waiting)", reason)
        self._waiting_reason = reason
        if reason is not None:
            self.link.transact("1-4", {"mode": table.MODE_WAITING})
        return reason is not None

    def close(self) -> None:
        """Stop the battery-watch thread (waits for it)."""
        self._stop.set()
        if self._watch.is_alive() and self._watch is not threading.current_thread():
            self._watch.join()


def _unwritten(v: Mapping[str, Any], *shown: blocks.Block) -> List[str]:
    """The reads ("4-1", "6-1") of the reply fields the blocks *shown* need that
    the replies ``v`` (of the writes a stop made) lack, in command order."""
    reads: List[str] = []
    for block in shown:
        for source in block.replies():
            if source.field not in v and source.command not in reads:
                reads.append(source.command)
    return reads
