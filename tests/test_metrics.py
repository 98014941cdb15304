"""/metrics: the Prometheus text format from the recorder (prometheus_client's parser reads it back)."""
import concurrent.futures
import subprocess
import sys
import wsgiref.util
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from essx import blocks
from essx.exchange import Exchange, Listeners
from essx_service.exposition import Exposition
from essx_service.metrics import GAUGES, UNIT_WORDS
from essx_service.observe import Recorder

DRIVERS = Path(__file__).resolve().parent.parent / "drivers"

REQUIRED = {
    "essx_http_requests_total", "essx_converter_commands_total", "essx_converter_command_seconds",
    "essx_battery_reads_total", "essx_converter_mode", "essx_meter_vg_volts", "essx_meter_ig_amperes",
    "essx_meter_vb_volts", "essx_meter_ib_amperes", "essx_meter_wg_watts", "essx_meter_wb_watts",
    "essx_meter_tmp_celsius", "essx_battery_rsoc_percent", "essx_bus_last_success_timestamp_seconds",
    "essx_bus_port_open",
}
METER = {"vg": 350.0, "ig": 1.5, "vb": 52.0, "ib": -10.0, "wg": 525.0, "wb": -520.0, "ic": 0, "tmp": 30.5}


def wsgi_get(app, path):
    """(status line, headers dict, body bytes) of GET *path* on the WSGI *app*, without a socket."""
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    wsgiref.util.setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def samples(text):
    """{(sample name, frozenset of labels): value} of an exposition."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def exchange(bus, command, outcome, values=None, t=1700000000.0, seconds=0.02, attempt=1):
    return Exchange(bus=bus, command=command, outcome=outcome, seconds=seconds, attempt=attempt,
                    port="/dev/pts/9", values=values, error=None if outcome in ("ack", "ok") else "x", time=t)


class Owner:
    """A bus owner as the contract describes it: listeners, port, is_open."""

    def __init__(self, port, is_open):
        self.listeners, self.port, self.is_open = Listeners(), port, is_open


def feed(recorder):
    recorder.on_exchange(exchange("dcdc", "1-1", "ack", {"mode": 0x0014}))
    recorder.on_exchange(exchange("dcdc", "10-1", "ack", METER, seconds=0.03))
    recorder.on_exchange(exchange("dcdc", "6-4", "nak_0xfffc", seconds=0.015))
    recorder.on_exchange(exchange("dcdc", "6-4", "ack", {"dig": 2.5}, attempt=2, t=1700000001.0))
    recorder.on_exchange(exchange("battery", "read", "ok", {"rsoc": 55.5, "permitted": True}))
    recorder.on_exchange(exchange("battery", "read", "timeout"))


@pytest.fixture
def app():
    from essx_server import create_app

    return create_app(None)


def test_metrics_route_serves_every_required_metric(app):
    recorder = app.config["essx.recorder"]
    recorder.attach("dcdc", Owner("/dev/pts/9", True))
    recorder.attach("battery", Owner("/dev/pts/10", False))
    feed(recorder)
    wsgi_get(app, "/version/get")
    wsgi_get(app, "/no/such/route")
    status, headers, body = wsgi_get(app, "/metrics")
    assert status.startswith("200") and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(body.decode())
    names = {name for name, _ in got}
    assert REQUIRED <= names | {"essx_converter_command_seconds"}
    assert {"essx_converter_command_seconds_bucket", "essx_converter_command_seconds_sum"} <= names
    tries = "essx_converter_commands_total"
    assert got[(tries, frozenset({("command", "6-4"), ("outcome", "nak_0xfffc")}))] == 1
    assert got[(tries, frozenset({("command", "6-4"), ("outcome", "ack")}))] == 1
    assert got[("essx_converter_retries_total", frozenset({("command", "6-4")}))] == 1
    bucket = "essx_converter_command_seconds_bucket"
    assert got[(bucket, frozenset({("command", "10-1"), ("le", "0.03")}))] == 1
    assert got[(bucket, frozenset({("command", "10-1"), ("le", "0.02")}))] == 0
    assert got[("essx_converter_command_seconds_count", frozenset({("command", "6-4")}))] == 2
    assert got[("essx_battery_reads_total", frozenset({("outcome", "timeout")}))] == 1
    assert got[("essx_converter_mode", frozenset())] == 0x0014
    assert got[("essx_meter_ib_amperes", frozenset())] == -10.0
    assert got[("essx_meter_tmp_celsius", frozenset())] == 30.5
    assert got[("essx_converter_dig_amperes", frozenset())] == 2.5
    assert got[("essx_battery_rsoc_percent", frozenset())] == 55.5
    assert got[("essx_battery_permitted", frozenset())] == 1
    assert got[("essx_bus_last_success_timestamp_seconds", frozenset({("bus", "dcdc")}))] == 1700000001.0
    assert got[("essx_bus_port_open", frozenset({("bus", "dcdc")}))] == 1
    assert got[("essx_bus_port_open", frozenset({("bus", "battery")}))] == 0
    assert got[("essx_http_requests_total", frozenset({("route", "/version/get"), ("status", "200")}))] == 1
    assert got[("essx_http_requests_total", frozenset({("route", "(unmatched)"), ("status", "404")}))] == 1
    assert got[("essx_build_info", frozenset({("version", "1.4")}))] == 1


def test_unknown_values_are_left_out(app):
    got = samples(wsgi_get(app, "/metrics")[2].decode())
    names = {name for name, _ in got}
    assert "essx_converter_mode" not in names and "essx_meter_vg_volts" not in names
    assert "essx_bus_port_open" not in names   # no bus owner attached (controller None)
    assert "essx_start_time_seconds" in names


def test_two_apps_in_one_process_count_apart():
    from essx_server import create_app

    first, second = create_app(None), create_app(None)
    feed(first.config["essx.recorder"])
    wsgi_get(second, "/metrics")
    one = samples(wsgi_get(first, "/metrics")[2].decode())
    two = samples(wsgi_get(second, "/metrics")[2].decode())
    assert ("essx_converter_mode", frozenset()) in one and ("essx_converter_mode", frozenset()) not in two
    # a scrape is counted after its answer is built: each app saw one earlier scrape of its own, or none
    assert two[("essx_http_requests_total", frozenset({("route", "/metrics"), ("status", "200")}))] == 1
    assert ("essx_http_requests_total", frozenset({("route", "/metrics"), ("status", "200")})) not in one


#: The last-known value gauges as docs/observability.md lists them, in exposition order.
PINNED_GAUGES = {
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


def test_gauges_named_from_the_blocks_are_the_documented_ones():
    assert list(GAUGES.items()) == list(PINNED_GAUGES.items())


def test_each_gauge_carries_its_fields_unit():
    units = {f.key: f.unit for b in (blocks.METER, blocks.VDIS, blocks.PARAM) for f in b.reply_fields()}
    units["rsoc"] = blocks.BATTERY.item("rsoc").unit
    for (_, key), (name, text) in GAUGES.items():
        if key in units:     # the status words and the permission have none
            assert name.endswith("_" + UNIT_WORDS[units[key]]), name
            assert ("," in text) == bool(units[key]), text


def test_prometheus_client_is_loaded_at_the_first_scrape_only():
    """A server nobody scrapes does not carry prometheus_client (essx_service.exposition);
    the first /metrics loads it and answers the full exposition."""
    code = ("import sys, wsgiref.util\n"
            "import essx_server\n"
            "from essx_service import cli\n"
            "app = essx_server.create_app(None)\n"
            "print('prometheus_client' in sys.modules, 'essx_service.metrics' in sys.modules)\n"
            "environ = {'PATH_INFO': '/metrics', 'REQUEST_METHOD': 'GET'}\n"
            "wsgiref.util.setup_testing_defaults(environ)\n"
            "seen = []\n"
            "body = b''.join(app(environ, lambda status, headers, exc_info=None: seen.append(status)))\n"
            "print('prometheus_client' in sys.modules, seen[0])\n"
            "print(body.decode())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(DRIVERS))
    assert out.returncode == 0, out.stderr
    before, after, text = out.stdout.split("\n", 2)
    assert before == "False False"
    assert after == "True 200 OK"
    assert {"essx_build_info", "essx_start_time_seconds"} <= {name for name, _ in samples(text)}


def test_concurrent_first_scrapes_build_one_registry():
    recorder = Recorder()
    exposition = Exposition(recorder, "1.4")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        bodies = list(pool.map(lambda _: exposition(), range(8)))
    assert len(set(bodies)) == 1
    assert ("essx_build_info", frozenset({("version", "1.4")})) in samples(bodies[0].decode())
    first = exposition._scrape
    exposition()
    assert exposition._scrape is first
