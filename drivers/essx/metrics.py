"""``/metrics``: the recorder's observations in the Prometheus text format.

A ``RecorderCollector`` reads a ``essx.observe.Recorder`` at scrape time,
so recording an exchange costs no more than the recorder's own counting.
``registry(recorder, version)`` gives each web application a registry of its
own (two applications in one process do not clash).  The metrics and their
units are listed in ``METRICS`` and documented in docs/observability.md.
"""
from typing import Dict, Iterator, Tuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from essx.observe import Recorder, known

#: Content type of the answer of /metrics: the classic text format ``generate_latest`` writes
#: (prometheus_client >= 0.22 names it CONTENT_TYPE_PLAIN_0_0_4; older ones CONTENT_TYPE_LATEST).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Converter meter -> (metric name, help). 10-1's fields (EZA2500.md command table).
METERS: Dict[str, Tuple[str, str]] = {
    "vg": ("essx_meter_vg_volts", "Grid-side voltage vg (10-1), V"),
    "ig": ("essx_meter_ig_amperes", "Grid-side current ig (10-1), A"),
    "vb": ("essx_meter_vb_volts", "Battery-side voltage vb (10-1), V"),
    "ib": ("essx_meter_ib_amperes", "Battery-side current ib (10-1), A"),
    "wg": ("essx_meter_wg_watts", "Grid-side power wg (10-1), W"),
    "wb": ("essx_meter_wb_watts", "Battery-side power wb (10-1), W"),
    "tmp": ("essx_meter_tmp_celsius", "Converter temperature tmp (10-1), degrees Celsius"),
}
#: Other last-known converter values: (block, key) -> (metric name, help).
SETTINGS: Dict[Tuple[str, str], Tuple[str, str]] = {
    ("mode", "mode"): ("essx_converter_mode", "Operation mode last reported by 1-1/1-4 (0x0014 = 20)"),
    ("status", "cst"): ("essx_converter_cst", "Status word cst last read by 2-1"),
    ("alarm", "alm1"): ("essx_converter_alm1", "Alarm word alm1 last read by 9-1"),
    ("vdis", "dvg"): ("essx_converter_dvg_volts", "Grid voltage set-point dvg (4-1/4-4), V"),
    ("vdis", "drg"): ("essx_converter_drg_ratio", "Droop ratio drg (4-1/4-4)"),
    ("param", "dig"): ("essx_converter_dig_amperes", "Grid current limit dig (6-1/6-4), A"),
}


class RecorderCollector:
    """A prometheus_client collector reading a ``Recorder`` at each scrape."""

    def __init__(self, recorder: Recorder, version: str) -> None:
        self.recorder = recorder
        self.version = version

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from one snapshot of the recorder."""
        snap = self.recorder.snapshot()
        info = GaugeMetricFamily("essx_build_info", "Driver version", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield GaugeMetricFamily("essx_start_time_seconds", "Start of the web application, Unix time",
                                value=snap["started"])
        yield from _traffic(snap)
        yield from _buses(self.recorder, snap)
        yield from _state(snap)


#: Labelled counters: (snapshot key, metric name, help, labels).
COUNTERS = (
    ("http", "essx_http_requests", "HTTP answers by route rule and status", ["route", "status"]),
    ("commands", "essx_converter_commands",
     "Converter tries by command and outcome (ack, nak_0xfffc, timeout, ...)", ["command", "outcome"]),
    ("retries", "essx_converter_retries", "Converter tries that were retries, by command", ["command"]),
    ("battery_reads", "essx_battery_reads", "Battery Modbus reads by outcome (ok, timeout, ...)", ["outcome"]),
)


def _traffic(snap) -> Iterator[Metric]:
    """The counters of COUNTERS and the converter-try histogram (s)."""
    for key, name, text, labels in COUNTERS:
        family = CounterMetricFamily(name, text, labels=labels)
        for label_values, n in sorted(snap[key].items()):
            family.add_metric([str(v) for v in _tuple(label_values)], n)
        yield family
    seconds = HistogramMetricFamily("essx_converter_command_seconds",
                                    "Duration of a converter try (request sent to reply or failure), s",
                                    labels=["command"])
    for command, (buckets, total) in sorted(snap["latency"].items()):
        seconds.add_metric([command], buckets, total)
    yield seconds


def _tuple(key) -> tuple:
    """A snapshot key as a tuple of label values ("6-4" -> ("6-4",))."""
    return key if isinstance(key, tuple) else (key,)


def _buses(recorder: Recorder, snap) -> Iterator[Metric]:
    success = GaugeMetricFamily("essx_bus_last_success_timestamp_seconds",
                                "End of the bus's last answered try, Unix time", labels=["bus"])
    error = GaugeMetricFamily("essx_bus_last_error_timestamp_seconds",
                              "End of the bus's last failed try, Unix time", labels=["bus"])
    is_open = GaugeMetricFamily("essx_bus_port_open", "1 when the bus's serial port is open", labels=["bus"])
    for name, bus in snap["buses"].items():
        if bus["last_success"] is not None:
            success.add_metric([name], bus["last_success"])
        if bus["last_error_time"] is not None:
            error.add_metric([name], bus["last_error_time"])
        _, opened = recorder.port_state(name)
        if opened is not None:
            is_open.add_metric([name], 1 if opened else 0)
    yield success
    yield error
    yield is_open


def _state(snap) -> Iterator[Metric]:
    converter = snap["converter"]
    for (block, key), (name, text) in SETTINGS.items():
        yield from _gauge(name, text, known(converter, block, key))
    for key, (name, text) in METERS.items():
        yield from _gauge(name, text, known(converter, "meter", key))
    battery = snap["battery"]
    yield from _gauge("essx_battery_rsoc_percent", "Battery relative state of charge, %",
                      known(battery, "rsoc"))
    yield from _gauge("essx_battery_permitted", "1 when the battery permits charge/discharge",
                      known(battery, "permitted"))
    times = GaugeMetricFamily("essx_state_timestamp_seconds",
                              "When a last-known value was read (block: mode, status, alarm, meter, vdis, "
                              "param, rsoc, permitted), Unix time", labels=["block"])
    for block, (_, t) in sorted(converter.items()):
        times.add_metric([block], t)
    for key, (_, t) in sorted(battery.items()):
        times.add_metric([key], t)
    yield times


def _gauge(name: str, text: str, value) -> Iterator[Metric]:
    """One unlabelled gauge, left out while its value is unknown (None)."""
    if value is not None:
        yield GaugeMetricFamily(name, text, value=float(value))


def registry(recorder: Recorder, version: str) -> CollectorRegistry:
    """A registry of its own holding a ``RecorderCollector`` of ``recorder``."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RecorderCollector(recorder, version))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    """The text format of every metric of ``reg`` (prometheus_client's ``generate_latest``)."""
    return generate_latest(reg)
