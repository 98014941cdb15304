"""apis-emulator's Web API on the grid's control port, over the real drivers.

apis-main in ``dcdc_emulator`` mode, apis-main_controller and apis-tester
talk to apis-emulator (its startEmul.py); the same routes here answer for
the grid's nodes, unit ``E001`` being node 0, ``E002`` node 1, ...:

| route | forwarded to the node's driver | answer (startEmul.py) |
|---|---|---|
| ``/get/unit/<id>`` | ``/all/get`` | ``{"emu", "dcdc", "oesunit", "time"}``, dcdc as ``convert_dcdc_`` (:119-125, :127-134) |
| ``/get/dcdc/status/<id>`` | ``/remote/get/status`` | ``{"status", "meter"}`` (:141-154) |
| ``/get/dcdc/<id>`` | ``/remote/get`` | the whole dcdc block (:156-159) |
| ``/set/dcdc/<id>?mode&dvg&dig[&drg]`` | ``/remote/set`` | ``convert_dcdc_`` of the dcdc block (:180-230) |
| ``/set/dcdc/voltage/<id>?dvg[&drg]`` | ``/remote/set/voltage`` | ``{"meter", "vdis"}`` (:232-270) |
| ``/set/dcdc/current/<id>?dig`` | ``/remote/set/current`` | ``{"meter", "param"}`` (:272-297) |
| ``/get/emu/<id>`` | ``/battery/get`` | the emu block (:136-139) |
| ``/get/log`` | as ``/get/unit`` for every node | ``{id: unit}``, dcdc untrimmed, ``powermeter.p2`` = AC in (:82-88) |
| ``/get/acc``, ``/set/acc/<n>`` | (the grid's clock) | the pace as JSON (:161-168) |
| ``/set/emu/<id>?key=value`` | (the node's household) | as ``/get/log`` (:170-178) |

Every call goes to the node's own Web API over HTTP, so every set crosses
the node's converter line as EZA2500 frames.  ``time``
is the grid's simulated clock ("2020/01/01-06:30:00", core.py timeUpdate);
the emu block comes from the node's battery (RSOC and status read by its
driver over Modbus), PV, load and UPS state.  A driver's 400 is answered as
400 with its ``{"err"}``; an unknown unit is 404.
"""
import http.client
import json
import urllib.parse
from typing import Any, Callable, Dict, Mapping, Optional

import bottle

from essx_service.grid_control import answer, json_error
from essx_sim.clock import check_speed, emulator_time
from essx_sim.profiles import unit_id

#: The keys apis-emulator keeps of each dcdc block (startEmul.py:115-118).
STATUS_KEYS = ("status", "alarmState", "operationMode")
METER_KEYS = ("wg", "tmp", "vb", "wb", "vg", "ib", "ig")
VDIS_KEYS = ("dvg", "drg")
PARAM_KEYS = ("dig",)
#: Seconds a forwarded call may take: a node answers within its request_deadline (4 s).
DRIVER_TIMEOUT_S = 10.0
#: apis-emulator's battery voltage for battery_current (its config.py, batteryVoltage), V.
EMU_BATTERY_VOLTAGE = 48.0
#: emu keys /set/emu maps onto the grid: key -> SimulatedGrid.set_node argument.
EMU_SETTABLE = {"rsoc": "rsoc", "pvc_charge_power": "pv", "ups_output_power": "load"}
#: emu keys that are constants of the UPS, settable and kept as given (standard.json's values).
EMU_CONSTANTS = {"ups_input_voltage": 102.8, "ups_output_voltage": 102.8, "ups_output_frequency": 60,
                 "pvc_charge_voltage": 0.28, "ups_operation_schedule": 1}


class DriverError(Exception):
    """A node's driver answered other than 200: ``status`` and its body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def call(url: str, path: str, params: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """GET ``url + path`` with ``params`` (a node's own Web API, as apis-main
    in dcdc_v2 mode calls it); its JSON body.

    Raises:
        DriverError: a status other than 200, or no answer within
            ``DRIVER_TIMEOUT_S`` (status 504).
    """
    parts = urllib.parse.urlsplit(url)
    target = path + ("?" + urllib.parse.urlencode(params) if params else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=DRIVER_TIMEOUT_S)
    try:
        conn.request("GET", target)
        reply = conn.getresponse()
        status, body = reply.status, reply.read()
    except (OSError, http.client.HTTPException) as e:
        raise DriverError(504, {"err": "%s%s: %s" % (url, path, e)}) from e
    finally:
        conn.close()
    try:
        decoded = json.loads(body.decode("utf-8")) if body else {}
    except ValueError:
        decoded = {"err": body.decode("utf-8", "replace")}
    if status != 200:
        raise DriverError(status, decoded)
    return decoded


def _only(block: Mapping[str, Any], keys) -> Dict[str, Any]:
    """``block``'s ``keys`` that are present and not None (startEmul.py convert_dict_)."""
    return {k: block[k] for k in keys if block.get(k) is not None}


def convert_dcdc(dcdc: Mapping[str, Any]) -> Dict[str, Any]:
    """apis-emulator's ``convert_dcdc_`` (startEmul.py:119-125): status, meter, vdis, param, trimmed."""
    out = {}
    for key, keys in (("status", STATUS_KEYS), ("meter", METER_KEYS), ("vdis", VDIS_KEYS), ("param", PARAM_KEYS)):
        if dcdc.get(key) is not None:
            out[key] = _only(dcdc[key], keys)
    return out


class EmulatorAPI:
    """apis-emulator's routes for the nodes of ``grid`` (an ``essx_service.grid.Grid``).

    Args:
        grid: the running grid (nodes, devices).
        urls: node index -> the node's Web API ("http://127.0.0.1:8080"),
            filled once the server listens.
    """

    def __init__(self, grid: Any, urls: Mapping[int, str]) -> None:
        self.grid, self.urls = grid, urls
        self.constants: Dict[int, Dict[str, float]] = {}

    # --- units --------------------------------------------------------------------

    def node(self, oesid: str) -> Any:
        """The ``GridNode`` of unit ``oesid`` ("E001" -> node 0); KeyError naming it otherwise."""
        count = len(self.grid.nodes)
        if len(oesid) == 4 and oesid[0] == "E" and oesid[1:].isdigit() and 1 <= int(oesid[1:]) <= count:
            return self.grid.node(int(oesid[1:]) - 1)
        raise KeyError("no unit %s (E001..%s)" % (oesid, unit_id(count - 1)))

    def url(self, node: Any) -> str:
        """The node's Web API; KeyError while the server does not listen yet."""
        try:
            return self.urls[node.index]
        except KeyError:
            raise KeyError("unit %s: its Web API is not listening yet" % unit_id(node.index)) from None

    def dcdc(self, node: Any) -> Dict[str, Any]:
        """The node's whole dcdc block: its driver's ``/remote/get``, with
        ``powermeter.p2`` the AC the household takes now (W, as apis-emulator's core.py:85-93)."""
        dcdc = call(self.url(node), "/remote/get")
        dcdc.setdefault("powermeter", {})["p2"] = int(node.sim.side.ac_in)
        return dcdc

    def dcdc_status(self, node: Any) -> Dict[str, Any]:
        """``/get/dcdc/status``: the status and meter of the driver's ``/remote/get/status``."""
        status = convert_dcdc(call(self.url(node), "/remote/get/status"))
        return {k: v for k, v in status.items() if k in ("status", "meter")}

    def emu(self, node: Any, battery: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The node's emu block (apis-emulator's jsontmp/standard.json keys):
        RSOC and ``battery_operation_status`` as its driver reads them over
        Modbus (``battery``: a ``/battery/get`` body already read), the
        battery's power, PV, load and UPS mode from the grid's model."""
        sim, moment = node.sim, self.grid.devices.clock.now()
        if battery is None:
            battery = call(self.url(node), "/battery/get") if sim.battery_sim is not None else {}
        model = sim.model
        power = sim.side.battery_w + (model.power if model is not None else 0.0)
        load = sim.side.load
        consts = dict(EMU_CONSTANTS, **self.constants.get(sim.index, {}))
        rsoc = battery.get("rsoc")
        return {
            "rsoc": rsoc, "battery_rsoc": rsoc,
            "battery_operation_status": battery.get("battery_operation_status"),
            "charge_discharge_power": round(abs(power), 2),
            "battery_current": round(power / EMU_BATTERY_VOLTAGE, 2),
            "battery_voltage": model.vb if model is not None else None,
            "pvc_charge_power": round(sim.side.pv, 2), "pvc_charge_current": 0,
            "ups_output_power": round(load, 2),
            "ups_output_current": round(load / consts["ups_output_voltage"], 2) if consts["ups_output_voltage"] else 0,
            "ups_operation_mode": {"parameter": 80, "mode": sim.side.ups_mode, "stop_mode": 2},
            "system_time": {"year": moment.year, "month": moment.month, "day": moment.day,
                            "hour": moment.hour, "minute": moment.minute},
            "dischargeable_time": {"hour": 0, "minute": 0},
            **consts}

    def unit(self, node: Any, convert: bool) -> Dict[str, Any]:
        """``/get/unit`` (``convert``) or a ``/get/log`` entry of ``node``: one
        ``/all/get``, whose converter and battery reads the driver runs in
        parallel within its request_deadline (4 s), below apis-main's 5 s
        (``/remote/get`` alone for a node without battery)."""
        if node.sim.battery_sim is None:
            dcdc, battery = self.dcdc(node), {}
        else:
            dcdc = call(self.url(node), "/all/get")
            battery = {k: dcdc.pop(k) for k in ("rsoc", "battery_operation_status")}
            dcdc["powermeter"] = {"p2": int(node.sim.side.ac_in)}
        oesid = unit_id(node.index)
        return {"emu": self.emu(node, battery), "dcdc": convert_dcdc(dcdc) if convert else dcdc,
                "oesunit": {"on": True, "id": oesid, "display": oesid, "sn": str(node.index + 1), "budo": "1",
                            "ip": "127.0.0.1"},
                "time": emulator_time(self.grid.devices.clock.now())}

    def log(self) -> Dict[str, Any]:
        """``/get/log``: {unit id: whole unit} for every node."""
        return {unit_id(n.index): self.unit(n, False) for n in list(self.grid.nodes)}

    # --- sets ---------------------------------------------------------------------

    def set_dcdc(self, node: Any, query: Mapping[str, str]) -> Dict[str, Any]:
        """``/set/dcdc``: mode, dvg, dig, drg (those given) to ``/remote/set``."""
        params = {k: query[k] for k in ("mode", "dvg", "dig", "drg") if k in query}
        return convert_dcdc(call(self.url(node), "/remote/set", params))

    def set_voltage(self, node: Any, query: Mapping[str, str]) -> Dict[str, Any]:
        """``/set/dcdc/voltage``: dvg (and drg) to ``/remote/set/voltage``."""
        dcdc = call(self.url(node), "/remote/set/voltage", {k: query[k] for k in ("dvg", "drg") if k in query})
        return {k: v for k, v in convert_dcdc(dcdc).items() if k in ("meter", "vdis")}

    def set_current(self, node: Any, query: Mapping[str, str]) -> Dict[str, Any]:
        """``/set/dcdc/current``: dig to ``/remote/set/current``."""
        dcdc = call(self.url(node), "/remote/set/current", {k: query[k] for k in ("dig",) if k in query})
        return {k: v for k, v in convert_dcdc(dcdc).items() if k in ("meter", "param")}

    def set_emu(self, node: Any, query: Mapping[str, str]) -> Any:
        """``/set/emu``: rsoc (%), pvc_charge_power (W, PV), ups_output_power (W,
        load) to the grid; the UPS constants kept as given.  apis-emulator's
        answer for a key it does not know is the text "following key not
        found: <key>" (startEmul.py:177); every value is checked first."""
        changes, consts = {}, {}
        for key, value in query.items():
            if key in EMU_SETTABLE:
                changes[EMU_SETTABLE[key]] = value
            elif key in EMU_CONSTANTS:
                consts[key] = _float(key, value)
            else:
                return "following key not found: " + key
        self.grid.devices.set_node(node.index, **changes)
        self.constants.setdefault(node.index, {}).update(consts)
        return self.log()

    # --- the clock ----------------------------------------------------------------

    def acc(self) -> str:
        """``/get/acc``: the pace as JSON (an integer when it is one)."""
        speed = self.grid.devices.speed
        return json.dumps(int(speed) if speed == int(speed) else speed)

    def set_acc(self, value: str) -> str:
        """``/set/acc/<n>``: the clock's new pace (ValueError unless > 0)."""
        self.grid.devices.speed = check_speed(value)
        return self.acc()


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError("%s=%r: expected a number" % (name, value)) from None


def _answer(fn: Callable[[], Any]) -> Any:
    """``grid_control.answer``, and a driver's own failure as its status and body."""
    try:
        return answer(fn)
    except DriverError as e:
        return json_error(e.status, e.body)


def install(app: bottle.Bottle, grid: Any, urls: Mapping[int, str]) -> EmulatorAPI:
    """Add apis-emulator's routes (module docstring) to ``app`` for ``grid``,
    whose node *i* listens at ``urls[i]``; returns their ``EmulatorAPI``."""
    api = EmulatorAPI(grid, urls)

    def route(rule: str, fn: Callable[..., Any]) -> None:
        def handler(**kw: str) -> Any:
            query = dict(bottle.request.query.decode())
            if "oesid" in kw:
                return _answer(lambda: fn(api.node(kw["oesid"]), query))
            return _answer(lambda: fn(query, **kw))
        app.route(rule, "GET", handler)

    route("/get/unit/<oesid>", lambda node, q: api.unit(node, True))
    route("/get/dcdc/status/<oesid>", lambda node, q: api.dcdc_status(node))
    route("/get/dcdc/<oesid>", lambda node, q: api.dcdc(node))
    route("/get/emu/<oesid>", lambda node, q: api.emu(node))
    route("/set/dcdc/voltage/<oesid>", api.set_voltage)
    route("/set/dcdc/current/<oesid>", api.set_current)
    route("/set/dcdc/<oesid>", api.set_dcdc)
    route("/set/emu/<oesid>", api.set_emu)
    route("/get/log", lambda q: api.log())
    route("/get/acc", lambda q: api.acc())
    route("/set/acc/<value>", lambda q, value: api.set_acc(value))
    return api


