"""``/metrics``: a ``Recorder``'s observations in the Prometheus text format,
read at scrape time (metrics and units: docs/observability.md)."""
from typing import Iterator

from prometheus_client import CollectorRegistry, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from essx_service.observe import Recorder, known

#: Content type of ``generate_latest``'s classic text format (prometheus_client's
#: CONTENT_TYPE_PLAIN_0_0_4, named CONTENT_TYPE_LATEST before 0.22).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Last-known values: (block, key) -> (metric, help); block "battery" is the battery's.
#: Converter fields: docs/eza2500-protocol.md command table.
GAUGES = {
    ("mode", "mode"): ("essx_converter_mode", "Operation mode last reported by 1-1/1-4 (0x0014 = 20)"),
    ("status", "cst"): ("essx_converter_cst", "Status word cst last read by 2-1"),
    ("alarm", "alm1"): ("essx_converter_alm1", "Alarm word alm1 last read by 9-1"),
    ("vdis", "dvg"): ("essx_converter_dvg_volts", "Grid voltage set-point dvg (4-1/4-4), V"),
    ("vdis", "drg"): ("essx_converter_drg_ratio", "Droop ratio drg (4-1/4-4)"),
    ("param", "dig"): ("essx_converter_dig_amperes", "Grid current limit dig (6-1/6-4), A"),
    ("meter", "vg"): ("essx_meter_vg_volts", "Grid-side voltage vg (10-1), V"),
    ("meter", "ig"): ("essx_meter_ig_amperes", "Grid-side current ig (10-1), A"),
    ("meter", "vb"): ("essx_meter_vb_volts", "Battery-side voltage vb (10-1), V"),
    ("meter", "ib"): ("essx_meter_ib_amperes", "Battery-side current ib (10-1), A"),
    ("meter", "wg"): ("essx_meter_wg_watts", "Grid-side power wg (10-1), W"),
    ("meter", "wb"): ("essx_meter_wb_watts", "Battery-side power wb (10-1), W"),
    ("meter", "tmp"): ("essx_meter_tmp_celsius", "Converter temperature tmp (10-1), degrees Celsius"),
    ("battery", "rsoc"): ("essx_battery_rsoc_percent", "Battery relative state of charge, %"),
    ("battery", "permitted"): ("essx_battery_permitted", "1 when the battery permits charge/discharge"),
}
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
