"""The grid's control API and figures, on the control port (docs/grid.md).

Every route answers JSON (200), ``{"err": "..."}`` with 400 for a bad value
or 404 for an unknown node; a set changes nothing unless every value in it
is good.  Sets are GETs with a query, as the driver's own API and
apis-emulator's are, except the restore, which POSTs a saved state.

| route | does |
|---|---|
| ``/control/node/<i>?rsoc=&capacity_wh=&pv=&load=`` | node *i*'s RSOC (%), capacity (Wh), PV and load (W, or ``profile``) |
| ``/control/bus?load=`` | the bus's own load (A) |
| ``/control/speed?value=`` | the clock's pace (simulated s a real s) |
| ``/control/fault/<i>?device=&kind=&count=`` | arm a simulator fault (``kind=clear`` disarms) |
| ``GET /control/state``, ``POST /control/state`` | save, restore the whole state |
| ``/figures``, ``/figures/series.csv``, ``/figures/days.csv`` | the day's figures (``essx_sim.figures``; ``now``: the simulated clock) |
"""
import json
from typing import Any, Callable, Dict, Mapping

import bottle

#: Fault options passed on to the simulators' ``inject`` (converter: ercd, nbytes, seconds; battery: code, nbytes).
FAULT_OPTIONS = {"ercd": int, "nbytes": int, "seconds": float, "code": int}


def answer(fn: Callable[[], Any]) -> Any:
    """``fn()``'s body; 404 ``{"err"}`` for a KeyError (an unknown node or
    unit), 400 for a ValueError (a bad value); the message is the error's."""
    try:
        return fn()
    except KeyError as e:
        return json_error(404, e.args[0] if e.args else str(e))
    except ValueError as e:
        return json_error(400, str(e))


def json_error(status: int, body: Any) -> str:
    """Set the response's ``status``; ``{"err": body}`` (or ``body`` itself when a dict) as JSON text."""
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(body if isinstance(body, dict) else {"err": body})


def _fault_options(query: Mapping[str, str]) -> Dict[str, Any]:
    out = {}
    for key, kind in FAULT_OPTIONS.items():
        if key in query:
            try:
                out[key] = int(query[key], 0) if kind is int else kind(query[key])
            except ValueError:
                raise ValueError("%s=%r: expected a number" % (key, query[key])) from None
    return out


def _csv(text: str) -> str:
    bottle.response.content_type = "text/csv; charset=utf-8"
    return text


def install(app: bottle.Bottle, grid: Any) -> None:
    """Add the control and figures routes (module docstring) to ``app`` for
    ``grid`` (an ``essx_service.grid.Grid``)."""
    devices = grid.devices

    def query() -> Dict[str, str]:
        return dict(bottle.request.query.decode())

    def node_row(i: int) -> Dict[str, Any]:
        return devices.snapshot([devices.node(i)])["nodes"][0]

    def set_node(i: str) -> Any:
        q = query()
        unknown = sorted(set(q) - {"rsoc", "capacity_wh", "pv", "load"})
        if unknown:
            raise ValueError("unknown parameter %s (known: rsoc, capacity_wh, pv, load)" % ", ".join(unknown))
        devices.set_node(i, **q)
        return node_row(devices.node(i).index)

    def set_bus() -> Any:
        q = query()
        if "load" not in q:
            raise ValueError("load is missing: the bus's own load in A")
        devices.set_bus_load(q["load"])
        return grid.snapshot()["bus"]

    def set_speed() -> Any:
        q = query()
        if "value" not in q:
            raise ValueError("value is missing: simulated seconds per real second")
        try:
            devices.speed = q["value"]
        except ValueError as e:
            raise ValueError("value=%r: expected a number > 0" % q["value"]) from e
        return {"speed": devices.speed, "time": devices.clock.now().isoformat(timespec="seconds")}

    def fault(i: str) -> Any:
        q = query()
        for key in ("device", "kind"):
            if key not in q:
                raise ValueError("%s is missing (device: converter or battery; kind: a fault or clear)" % key)
        devices.fault(i, q["device"], q["kind"], q.get("count", 1), **_fault_options(q))
        return {"node": devices.node(i).index, "device": q["device"], "kind": q["kind"]}

    def restore() -> Any:
        try:
            doc = json.loads(bottle.request.body.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError("state: not JSON: %s" % e) from None
        if not isinstance(doc, dict):
            raise ValueError("state: expected a JSON object")
        devices.restore(doc)
        return devices.state()

    routes = {
        ("/control/node/<i>", "GET"): set_node,
        ("/control/bus", "GET"): set_bus,
        ("/control/speed", "GET"): set_speed,
        ("/control/fault/<i>", "GET"): fault,
        ("/control/state", "GET"): devices.state,
        ("/control/state", "POST"): restore,
        ("/figures", "GET"): lambda: dict(devices.figures.report(),
                                           now=devices.clock.now().isoformat(timespec="seconds")),
        ("/figures/series.csv", "GET"): lambda: _csv(devices.figures.series_csv()),
        ("/figures/days.csv", "GET"): lambda: _csv(devices.figures.days_csv()),
    }
    for (rule, method), fn in routes.items():
        app.route(rule, method, lambda fn=fn, **kw: answer(lambda: fn(**kw)))
