"""Observation over HTTP against the pty simulators: /essx/status, /essx/history, /metrics
and / show what the routes' traffic showed, add no frame of their own, and every
state-changing request logs one INFO line."""
import logging
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import commands

OBSERVATION = ("/essx/status", "/essx/history", "/essx/history?since=0", "/metrics", "/")


def fetch(http, path):
    """(status, content type, text) of GET *path*."""
    with urllib.request.urlopen(http.base + path, timeout=30) as r:
        return r.status, r.headers.get_content_type(), r.read().decode()


def metric_samples(http):
    """{(name, frozenset(labels)): value} of /metrics."""
    _, _, text = fetch(http, "/metrics")
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_status_shows_what_the_routes_saw(http, sim):
    bsim = http.system.battery_sim
    bsim.rsoc, bsim.permitted = 61.5, True
    sim.set(mode=0x0014, dvg=350, dig=2.5, alm1=0)
    assert http.get("/remote/get")[0] == 200
    assert http.get("/1/log/data")[0] == 200
    status, body = http.get("/essx/status")
    assert status == 200
    assert body["operation"]["operationMode"] == "Grid Autonomy" and body["operation"]["mode"] == "0x0014"
    assert body["simulate"] is False and body["uptime_s"] >= 0    # the fixture's app is not told
    assert set(body["converter"]) == {"mode", "status", "alarm", "meter", "vdis", "param"}
    meter = body["converter"]["meter"]
    assert abs(meter["values"]["vg"] - 350) < 0.1 and 0 <= meter["age_s"] < 60
    assert body["battery"]["rsoc"]["value"] == 61.5 and body["battery"]["permitted"]["value"] is True
    dcdc = body["buses"]["dcdc"]
    assert (dcdc["port"], dcdc["open"], dcdc["failures"]) == (sim.port, True, 0)
    assert dcdc["tries"] == dcdc["ok"] >= 6 and dcdc["last_success_age_s"] < 60
    assert body["buses"]["battery"]["open"] is True and body["buses"]["battery"]["ok"] >= 1
    assert {"route": "/remote/get", "status": 200, "count": 1} in body["http"]
    history = http.get("/essx/history")[1]["series"]
    assert [v for _, v in history["rsoc"]][-1] == 61.5 and len(history["vg"]) >= 1


def test_operation_is_the_status_block_of_the_last_replies(http, sim):
    sim.set(mode=0x0041, dig=1.5)
    status, body = http.get("/remote/get")
    assert status == 200, body
    shown = body["status"]
    assert http.get("/essx/status")[1]["operation"] == {
        "mode": shown["status"], "operationMode": shown["operationMode"], "alarmState": shown["alarmState"],
        "runningState": shown["runningState"]}


def test_observing_sends_no_frame(http, sim):
    assert http.get("/all/get")[0] == 200       # something to show
    bsim = http.system.battery_sim
    sim.clear()
    battery_requests = bsim.requests
    for _ in range(25):
        for path in OBSERVATION:
            status, _, text = fetch(http, path)
            assert status == 200 and text, path
    assert commands(sim) == []
    assert bsim.requests == battery_requests


def test_a_nak_and_its_retry_are_counted(http, sim):
    sim.inject("nak", count=1)            # 0xfffc, system busy: retried
    status, body = http.get("/remote/set/current", dig=1.5)
    assert status == 200, body
    got = metric_samples(http)
    tries = "essx_converter_commands_total"
    assert got[(tries, frozenset({("command", "6-4"), ("outcome", "nak_0xfffc")}))] == 1
    assert got[(tries, frozenset({("command", "6-4"), ("outcome", "ack")}))] == 1
    assert got[("essx_converter_retries_total", frozenset({("command", "6-4")}))] == 1
    assert got[("essx_bus_port_open", frozenset({("bus", "dcdc")}))] == 1
    route = frozenset({("route", "/remote/set/current"), ("status", "200")})
    assert got[("essx_http_requests_total", route)] == 1
    errors = http.get("/essx/status")[1]["errors"]
    assert (errors[0]["command"], errors[0]["outcome"]) == ("6-4", "nak_0xfffc")


def test_one_info_line_per_state_changing_request(http, sim, caplog):
    caplog.set_level(logging.INFO, logger="essx_server")
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    sent = commands(sim)     # the mode is unknown after start: 1-1, 4-4, 6-4, 1-4, 2-1, 9-1, 10-1
    assert http.get("/remote/get")[0] == 200                       # not state-changing: no line
    assert http.get("/remote/set/current", dig=99)[0] == 400       # refused before anything is sent
    lines = [r for r in caplog.records if r.levelno == logging.INFO and "converter command" in r.getMessage()]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    ok, refused = (r.getMessage() for r in lines)
    assert ok.startswith("/remote/set dig=2.5 drg=0 dvg=350 mode=0x0014: 200; ")
    assert "; %d converter command(s) sent (%s); " % (len(sent), " ".join(sent)) in ok and ok.endswith(" ms")
    assert sent[-6:] == ["4-4", "6-4", "1-4", "2-1", "9-1", "10-1"]
    assert refused.startswith("/remote/set/current dig=99: 400 ") and "dig" in refused
    assert "0 converter command(s) sent;" in refused


def test_page_is_served_self_contained(http):
    status, content_type, text = fetch(http, "/")
    assert (status, content_type) == (200, "text/html")
    assert 'id="mode"' in text and 'id="plot-vg"' in text and "essx/status" in text
    assert "http://" not in text and "https://" not in text and "<link" not in text   # nothing from elsewhere
    assert "--accent:" in text and "/* page.css */" not in text   # the shared stylesheet is put in


def test_status_names_configuration_and_simulation(system):
    """With the Config and the simulate flag the server starts with: path, baud rates, banner flag."""
    from conftest import ServerThread, fast_config
    from essx_server import create_app

    config = fast_config()
    server = ServerThread(create_app(system.controller, config=config, simulate=True))
    try:
        assert server.client.get("/remote/get/status")[0] == 200
        body = server.client.get("/essx/status")[1]
    finally:
        server.stop()
    assert body["simulate"] is True and body["config"] == str(config.path)
    assert body["buses"]["dcdc"]["baud"] == config.dcdc_dev.baudrate
    assert body["buses"]["battery"]["baud"] == config.battery_dev.kwparams.baudrate
    assert body["buses"]["battery"]["tries"] == 0 and body["buses"]["battery"]["last_success"] is None


def test_no_battery_no_battery_bus(no_leaks):
    from dataclasses import replace

    from conftest import ServerThread, fast_config
    from essx_server import System, create_app

    config = replace(fast_config(), battery_dev=None)
    system = System(config, simulate=True, watch=False)
    server = ServerThread(create_app(system.controller, config=config))
    try:
        assert server.client.get("/remote/get/status")[0] == 200
        body = server.client.get("/essx/status")[1]
        got = metric_samples(server.client)
    finally:
        server.stop()
        system.close()
    assert set(body["buses"]) == {"dcdc"} and body["battery"] == {}
    assert ("essx_bus_port_open", frozenset({("bus", "battery")})) not in got
    assert got[("essx_bus_port_open", frozenset({("bus", "dcdc")}))] == 1


def test_the_info_line_cannot_be_split_by_a_parameter(http, sim, caplog):
    caplog.set_level(logging.INFO, logger="essx_server")
    assert http.get("/remote/set/current", dig="1\nFAKE line")[0] == 400
    line, = [r.getMessage() for r in caplog.records if "converter command" in r.getMessage()]
    assert "\n" not in line and "dig='1\\nFAKE line'" in line
