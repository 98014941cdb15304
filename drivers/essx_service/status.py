"""The JSON views of a ``Recorder``: ``/essx/status`` and ``/essx/history``
(docs/observability.md).

Times are Unix s, ages s before the answer, None when never seen.

``status_body`` ->
    {"version", "uptime_s", "simulate", "config", "time",
     "buses": {"dcdc"|"battery": {"port", "baud", "open", "last_success",
               "last_success_age_s", "tries", "ok", "failures", "retries",
               "last_error", "last_error_time", "last_error_age_s"}},
     "converter": {block: {"values": {...}, "time", "age_s"}},
     "operation": {"mode", "operationMode", "alarmState", "runningState"},
     "battery": {"rsoc"|"permitted": {"value", "time", "age_s"}},
     "commands": [{"command", "outcome", "count"}],
     "battery_reads": {outcome: count}, "http": [{"route", "status", "count"}],
     "errors": [{"time", "age_s", "bus", "command", "outcome", "attempt", "error"}]}

``history_body`` -> {"time", "seconds": 3600, "series": {"vg"|"ig"|"wb"|"rsoc": [[t, value], ...]}}
"""
from typing import Any, Dict, List, Optional, Tuple

from essx import blocks
from essx_service.observe import HISTORY_SECONDS, Recorder, known, reply_name

#: ``operation`` of /essx/status: its key -> the field of the status block
#: (``blocks.STATUS``; docs/web-api.md, "status") it shows, decoded from the last replies.
OPERATION: Tuple[Tuple[str, str], ...] = (
    ("mode", "status"), ("operationMode", "operationMode"), ("alarmState", "alarmState"),
    ("runningState", "runningState"))


def _age(now: float, t: Optional[float]) -> Optional[float]:
    return None if t is None else round(max(0.0, now - t), 3)


def _bauds(config) -> Dict[str, Optional[int]]:
    """{"dcdc": baud, "battery": baud} of an ``essx_config.Config`` (None: unknown)."""
    battery = config and config.battery_dev
    return {"dcdc": config and config.dcdc_dev.baudrate, "battery": battery and battery.kwparams.baudrate}


def _bus(recorder: Recorder, name: str, bus: Dict[str, Any], baud, now: float) -> Dict[str, Any]:
    port, opened = recorder.port_state(name)
    return {"port": port, "baud": baud, "open": opened, "last_success": bus["last_success"],
            "last_success_age_s": _age(now, bus["last_success"]), "tries": bus["tries"], "ok": bus["ok"],
            "failures": bus["tries"] - bus["ok"], "retries": bus["retries"], "last_error": bus["last_error"],
            "last_error_time": bus["last_error_time"], "last_error_age_s": _age(now, bus["last_error_time"])}


def operation(converter: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """A snapshot's "converter" status words decoded as the status block decodes them:
    {"mode": "0x0014", "operationMode": "Grid Autonomy", "alarmState": "No alarm",
    "runningState": "charge"}, each None while a reply it needs was not yet read."""
    return {key: _decoded(converter, blocks.STATUS.item(name)) for key, name in OPERATION}


def _decoded(converter: Dict[str, Any], field: Any) -> Any:
    """The value of the status block's *field* from the last replies in *converter*, or None."""
    values: List[Any] = [known(converter, reply_name(source), source.field) for source in field.sources]
    return None if any(v is None for v in values) else field.make_from(values)


def status_body(recorder: Recorder, *, version: str, simulate: bool, config=None) -> Dict[str, Any]:
    """The body of ``/essx/status`` (shape in the module docstring)."""
    snap = recorder.snapshot()
    now = snap["time"]
    bauds = _bauds(config)
    buses = {name: _bus(recorder, name, bus, bauds[name], now) for name, bus in snap["buses"].items()
             if name in recorder.owners or bus["tries"]}   # a node without a battery shows no battery bus
    return {
        "version": version,
        "uptime_s": round(now - snap["started"], 3),
        "simulate": bool(simulate),
        "config": None if config is None else str(config.path),
        "time": now,
        "buses": buses,
        "converter": {block: {"values": values, "time": t, "age_s": _age(now, t)}
                      for block, (values, t) in sorted(snap["converter"].items())},
        "operation": operation(snap["converter"]),
        "battery": {key: {"value": value, "time": t, "age_s": _age(now, t)}
                    for key, (value, t) in sorted(snap["battery"].items())},
        "commands": [{"command": c, "outcome": o, "count": n}
                     for (c, o), n in sorted(snap["commands"].items())],
        "battery_reads": snap["battery_reads"],
        "http": [{"route": r, "status": s, "count": n} for (r, s), n in sorted(snap["http"].items())],
        "errors": [dict(e, age_s=_age(now, e["time"])) for e in reversed(snap["errors"])],
    }


def history_body(recorder: Recorder, since: float = 0.0) -> Dict[str, Any]:
    """The body of ``/essx/history?since=T`` (points newer than T; shape in the module docstring)."""
    series = recorder.history_since(since)
    return {"time": recorder.now(), "seconds": HISTORY_SECONDS,
            "series": {name: [[round(t, 3), v] for t, v in points] for name, points in series.items()}}
