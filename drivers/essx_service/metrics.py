"""``/metrics``: a ``Recorder``'s observations in the Prometheus text format,
read at scrape time (metrics and units: docs/observability.md, "/metrics").
Loaded at the first scrape (essx_service.exposition), not at start.

The gauges of last-known values are named from the response blocks
(``essx.blocks``): a field's key and unit give the metric's name, its text,
the commands that carry it and its unit give the help.
"""
import functools
from typing import Callable, Dict, Iterator, Tuple

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from essx import blocks
from essx_service.observe import Recorder, known, reply_name

#: The word of each unit of the blocks in a metric's name (Prometheus base units);
#: "" (no unit: a droop ratio) is "ratio".
UNIT_WORDS = {"V": "volts", "A": "amperes", "W": "watts", "°C": "celsius", "%": "percent", "": "ratio"}
#: A unit as a help text writes it, where that is not as the blocks do.
UNIT_TEXTS = {"°C": "degrees Celsius"}
#: The status words (the status block's replies, no unit): source -> help; named essx_converter_<field>.
STATUS_WORD_HELP = {
    blocks.MODE: "Operation mode last reported by 1-1/1-4 (0x0014 = 20)",
    blocks.CST: "Status word cst last read by 2-1",
    blocks.ALM1: "Alarm word alm1 last read by 9-1",
}
#: Blocks whose reply fields are gauges, and the prefix of their names.
GAUGE_BLOCKS = ((blocks.VDIS, "essx_converter"), (blocks.PARAM, "essx_converter"),
                (blocks.METER, "essx_meter"))
#: The battery's interchange permission, as its reads report it (``permitted``), no block field.
PERMITTED = ("essx_battery_permitted", "1 when the battery permits charge/discharge")


def _help(text: str, unit: str) -> str:
    """A gauge's help: *text*, then its unit unless it has none."""
    return "%s, %s" % (text, UNIT_TEXTS.get(unit, unit)) if unit else text


def gauges() -> Dict[Tuple[str, str], Tuple[str, str]]:
    """The gauges of last-known values: (reply name or "battery", key in its values) ->
    (metric, help), in exposition order: the status words, then each reply field of
    ``GAUGE_BLOCKS`` in the reply's order ("essx_meter_vg_volts", "Grid-side voltage vg
    (10-1), V"), then the battery's RSOC and permission (docs/observability.md, "/metrics")."""
    found = {(reply_name(source), source.field): ("essx_converter_" + source.field, text)
             for source, text in STATUS_WORD_HELP.items()}
    for block, prefix in GAUGE_BLOCKS:
        for f in block.reply_fields():
            source = f.sources[0]
            text = "%s %s (%s)" % (f.text, f.key, "/".join(source.carried_by))
            found[reply_name(source), source.field] = ("%s_%s_%s" % (prefix, f.key, UNIT_WORDS[f.unit]),
                                                       _help(text, f.unit))
    rsoc = blocks.BATTERY.item("rsoc")
    found["battery", rsoc.sources[0].key] = ("essx_battery_%s_%s" % (rsoc.key, UNIT_WORDS[rsoc.unit]),
                                             _help(rsoc.text, rsoc.unit))
    found["battery", "permitted"] = PERMITTED
    return found


#: Last-known values: (reply name, key) -> (metric, help); "battery" is the battery's reads.
GAUGES = gauges()
#: Labelled counters: (snapshot key, metric name, help, labels).
COUNTERS = (
    ("http", "essx_http_requests", "HTTP answers by route rule and status", ["route", "status"]),
    ("commands", "essx_converter_commands",
     "Converter tries by command and outcome (ack, nak_0xfffc, timeout, ...)", ["command", "outcome"]),
    ("retries", "essx_converter_retries", "Converter tries that were retries, by command", ["command"]),
    ("battery_reads", "essx_battery_reads", "Battery Modbus reads by outcome (ok, timeout, ...)",
     ["outcome"]),
)
#: Per-bus gauges (label "bus"): last success, last failure, port open.
BUS_GAUGES = (
    ("essx_bus_last_success_timestamp_seconds", "End of the bus's last answered try, Unix time"),
    ("essx_bus_last_error_timestamp_seconds", "End of the bus's last failed try, Unix time"),
    ("essx_bus_port_open", "1 when the bus's serial port is open"),
)


class RecorderCollector:
    """A prometheus_client collector reading a ``Recorder`` at each scrape."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from one snapshot of the recorder."""
        snap = self.recorder.snapshot()
        for key, name, text, labels in COUNTERS:
            family = CounterMetricFamily(name, text, labels=labels)
            for label_values, n in sorted(snap[key].items()):
                label_values = label_values if isinstance(label_values, tuple) else (label_values,)
                family.add_metric([str(v) for v in label_values], n)
            yield family
        seconds = HistogramMetricFamily("essx_converter_command_seconds",
                                        "Duration of a converter try (request sent to reply or failure), s",
                                        labels=["command"])
        for command, (buckets, total) in sorted(snap["latency"].items()):
            seconds.add_metric([command], buckets, total)
        yield seconds
        yield from self._buses(snap)
        yield from _state(snap)

    def _buses(self, snap) -> Iterator[Metric]:
        families = [GaugeMetricFamily(name, text, labels=["bus"]) for name, text in BUS_GAUGES]
        for bus, record in snap["buses"].items():
            values = (record["last_success"], record["last_error_time"], self.recorder.port_state(bus)[1])
            for family, value in zip(families, values):
                if value is not None:
                    family.add_metric([bus], float(value))
        return families


def _state(snap) -> Iterator[Metric]:
    """The gauges of GAUGES (each left out while unknown) and when each was read."""
    for (block, key), (name, text) in GAUGES.items():
        value = known(snap["battery"], key) if block == "battery" else known(snap["converter"], block, key)
        if value is not None:
            yield GaugeMetricFamily(name, text, value=float(value))
    times = GaugeMetricFamily("essx_state_timestamp_seconds",
                              "When a last-known value was read (block: mode, status, alarm, meter, vdis, "
                              "param, rsoc, permitted), Unix time", labels=["block"])
    for block, (_, t) in sorted(snap["converter"].items()) + sorted(snap["battery"].items()):
        times.add_metric([block], t)
    yield times


def registry(recorder: Recorder, version: str) -> CollectorRegistry:
    """A registry of its own (two applications in one process do not clash)
    holding a ``RecorderCollector`` of ``recorder``."""
    reg = CollectorRegistry(auto_describe=False)
    Info("essx_build", "Driver version", registry=reg).info({"version": version})
    started = Gauge("essx_start_time_seconds", "Start of the web application, Unix time", registry=reg)
    started.set(recorder.started)
    reg.register(RecorderCollector(recorder))
    return reg


def scraper(recorder: Recorder, version: str) -> Callable[[], bytes]:
    """A function answering the exposition of a new :func:`registry` of *recorder*
    (``generate_latest``: the classic text format, essx_service.exposition.CONTENT_TYPE)."""
    return functools.partial(generate_latest, registry(recorder, version))
