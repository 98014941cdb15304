"""essx-grid as an APIS test bed: a simulated day with PV, load and losses,
apis-emulator's Web API over the real drivers, and the control API.

Every node is the whole driver stack over its own simulated EZA2500 and
battery on ptys; apis-emulator's sets reach the node's converter as EZA2500
frames."""
import datetime
import json
import re
import time
import urllib.request

import pytest
from conftest import HTTPClient

from essx_sim.grid import NodeSpec
from eza2500 import table

#: A simulated day in 10 s of real time.
DAY_SPEED = 8640.0


def wait_for(predicate, seconds, what):
    """``predicate()``'s first true value within ``seconds`` (real), polling every 0.1 s."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %s s" % (what, seconds))
        time.sleep(0.1)


def text(url):
    """(status, content type, body text) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get_content_type(), r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get_content_type(), e.read().decode()


def sim_time(g):
    return datetime.datetime.fromisoformat(g.snapshot()["time"])


def test_a_simulated_day_balances_with_a_deal(make_grid):
    """A day of the sample profiles on three nodes, with a deal between
    E001 and E002 made through apis-emulator's API:
    PV - load - losses - Δstored + AC in - wasted = 0 within 0.5 %."""
    g = make_grid([NodeSpec(rsoc=50, rsoc_min=0, rsoc_max=100)] * 3, speed=DAY_SPEED,
                  grid={"profiles": "sample"}, sample_s=600)
    emu = g.control
    status, body = emu.get("/set/dcdc/E001", mode="0x0014", dvg=350, dig=2.5, drg=0)
    assert status == 200, body
    status, body = emu.get("/set/dcdc/E002", mode="0x0002", dvg=350, dig=1.0, drg=0)
    assert status == 200, body
    report = wait_for(lambda: (lambda r: r if r["days"] else None)(emu.get("/figures")[1]), 60, "closed day")
    day = report["days"][0]
    assert day["date"] == "2020-01-01"
    assert day["pv"] > 10000 and day["load"] > 10000 and day["loss"] > 1000      # Wh, three households
    assert day["exchanged"] > 500                                                # the deal moved energy
    assert abs(day["bus_load"]) < 1.0                                            # no load on the bus
    scale = max(day["pv"], day["load"])
    residual = day["pv"] - day["load"] - day["loss"] - day["delta_stored"] + day["ac_in"] - day["wasted"]
    assert abs(residual) <= 0.005 * scale, day
    rows = [r for r in report["series"] if r["time"].startswith("2020-01-01")]
    assert max(r["pv"] for r in rows) > 3000 and min(r["pv"] for r in rows) == 0.0    # noon and night
    status, kind, csv = text(emu.base + "/figures/days.csv")
    assert status == 200 and kind == "text/csv" and csv.splitlines()[1].startswith("2020-01-01,")


def test_rsoc_follows_pv_and_load_with_no_deal(make_grid):
    """No profiles, no losses: the battery takes PV - load; the driver reads the
    RSOC it moved to over Modbus."""
    g = make_grid([NodeSpec(rsoc=40, rsoc_min=0, rsoc_max=100)], speed=100.0)
    status, row = g.control.get("/control/node/0", pv=1200, load=200)
    assert status == 200, row
    assert row["pv"] == 1200 and row["load"] == 200 and row["mode"] == "0x0000"
    status, before = g.node(0).get("/battery/get")
    t0 = sim_time(g)
    wait_for(lambda: (sim_time(g) - t0).total_seconds() >= 200, 30, "200 simulated s")
    status, after = g.node(0).get("/battery/get")
    elapsed = (sim_time(g) - t0).total_seconds()
    expected = 1000.0 * elapsed / 3600 / 4800 * 100          # % for 1000 W into 4800 Wh
    assert status == 200 and after["rsoc"] - before["rsoc"] == pytest.approx(expected, abs=0.3)
    g.control.get("/control/node/0", pv=0, load=800)
    status, before = g.node(0).get("/battery/get")
    t0 = sim_time(g)
    wait_for(lambda: (sim_time(g) - t0).total_seconds() >= 200, 30, "200 simulated s")
    status, after = g.node(0).get("/battery/get")
    assert after["rsoc"] < before["rsoc"] - 0.5              # the load alone: it falls


def test_rsoc_follows_the_sample_profiles_by_day_and_by_night(make_grid):
    g = make_grid([NodeSpec(rsoc=50, rsoc_min=0, rsoc_max=100)], speed=120.0,
                  grid={"profiles": "sample", "start": datetime.datetime(2020, 1, 1, 11, 0)})
    rsoc = lambda: g.node(0).get("/battery/get")[1]["rsoc"]            # noqa: E731
    noon = rsoc()
    wait_for(lambda: rsoc() > noon + 0.3, 30, "RSOC rising at noon")
    status, state = g.control.get("/control/state")
    state["clock"]["seconds"] = 11 * 3600.0                             # 22:00: no PV, the evening load
    req = urllib.request.Request(g.control.base + "/control/state", json.dumps(state).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    assert sim_time(g).hour == 22
    night = rsoc()
    wait_for(lambda: rsoc() < night - 0.3, 30, "RSOC falling at night")
    row = g.snapshot()["nodes"][0]
    assert row["pv"] == 0 and row["load"] > 150 and row["loss"] > 150


def test_set_dcdc_on_E002_reaches_node_1_and_its_converter_line(make_grid):
    g = make_grid([NodeSpec()] * 2)
    emu = g.control
    status, body = emu.get("/set/dcdc/E001", mode="0x0014", dvg=350, dig=2.5, drg=0)
    assert status == 200, body
    node0 = g.grid.nodes[0].dcdc_sim
    node1 = g.grid.nodes[1].dcdc_sim
    node0.clear()
    node1.clear()
    status, body = emu.get("/set/dcdc/E002", mode="0x0002", dvg=350, dig=1.5, drg=0)
    assert status == 200, body
    assert set(body) == {"status", "meter", "vdis", "param"}                   # startEmul.py convert_dcdc_
    assert set(body["status"]) == {"status", "alarmState", "operationMode"} and set(body["param"]) == {"dig"}
    assert body["status"]["status"] == "0x0002" and body["param"]["dig"] == pytest.approx(1.5, abs=0.001)
    status, own = g.node(1).get("/remote/get")                                 # node 1's own driver
    assert own["status"]["status"] == "0x0002" and own["param"]["dig"] == pytest.approx(1.5, abs=0.001)
    writes = node1.writes()
    assert writes and writes[-1].name == "1-4" and writes[-1].params["mode"] == table.MODE_HETERONOMY_DISCHARGE
    assert any(w.name == "6-4" and w.params["dig"] == pytest.approx(1.5, abs=0.001) for w in writes)
    assert node0.writes() == []                                                # no other unit touched
    status, body = emu.get("/set/dcdc/current/E002", dig=0.5)
    assert status == 200 and set(body) == {"meter", "param"}
    status, body = emu.get("/set/dcdc/voltage/E001", dvg=352, drg=0)
    assert status == 200 and set(body) == {"meter", "vdis"} and body["vdis"]["dvg"] == pytest.approx(352, abs=0.05)
    status, body = emu.get("/set/dcdc/E002", mode="0x0002", dvg=350, dig=100, drg=0)
    assert status == 400 and "dig=100" in body["err"]                          # the driver's own check


def test_apis_emulator_reads(make_grid):
    g = make_grid([NodeSpec(rsoc=60)] * 2, grid={"profiles": "sample"})
    emu = g.control
    status, unit = emu.get("/get/unit/E001")
    assert status == 200 and set(unit) == {"emu", "dcdc", "oesunit", "time"}
    assert re.fullmatch(r"2020/01/01-\d\d:\d\d:\d\d", unit["time"])
    assert unit["oesunit"]["id"] == "E001"
    status, battery = g.node(0).get("/battery/get")
    assert unit["emu"]["rsoc"] == pytest.approx(battery["rsoc"], abs=0.2)      # what the driver read
    assert unit["emu"]["battery_operation_status"] == battery["battery_operation_status"]
    assert unit["emu"]["ups_operation_mode"]["mode"] == 2 and unit["emu"]["ups_output_power"] > 0
    status, st = emu.get("/get/dcdc/status/E002")
    assert status == 200 and set(st) == {"status", "meter"}
    status, dcdc = emu.get("/get/dcdc/E002")
    assert status == 200 and dcdc["powermeter"]["p2"] == 57                   # AC in: the transformer's loss
    status, log = emu.get("/get/log")
    assert sorted(log) == ["E001", "E002"]
    assert emu.get("/get/unit/E003") == (404, {"err": "no unit E003 (E001..E002)"})
    status, kind, body = text(emu.base + "/set/emu/E002?voltage=3")
    assert body == "following key not found: voltage"
    status, log = emu.get("/set/emu/E002", ups_output_power=333, rsoc=70)
    assert status == 200 and log["E002"]["emu"]["ups_output_power"] == 333
    assert g.snapshot()["nodes"][1]["rsoc"] == pytest.approx(70, abs=0.5)


def test_set_acc_changes_the_pace_of_the_clock(make_grid):
    g = make_grid([NodeSpec()], speed=10.0)
    status, kind, body = text(g.control.base + "/get/acc")
    assert body == "10"

    def pace():
        t0, r0 = sim_time(g), time.monotonic()
        wait_for(lambda: time.monotonic() - r0 >= 1.0, 5, "a second")
        return (sim_time(g) - t0).total_seconds() / (time.monotonic() - r0)

    assert pace() < 30
    status, kind, body = text(g.control.base + "/set/acc/600")
    assert status == 200 and body == "600"
    assert pace() > 300
    status, kind, body = text(g.control.base + "/set/acc/fast")
    assert status == 400 and "speed='fast'" in body
    assert text(g.control.base + "/get/acc")[2] == "600"                       # unchanged


def test_control_api_sets_faults_and_restores(make_grid):
    g = make_grid([NodeSpec(rsoc=55)] * 2)
    c = g.control
    status, bus = c.get("/control/bus", load=-0.5)
    assert status == 200 and bus["load"] == 0.0                # no voltage source: nothing served
    assert g.grid.bus.load == -0.5
    status, state = c.get("/control/state")
    assert status == 200 and state["bus"]["load"] == -0.5 and [n["node"] for n in state["nodes"]] == [0, 1]
    assert c.get("/control/node/1", rsoc=101)[0] == 400
    assert c.get("/control/node/1", rsoc=20, capacity_wh=0)[0] == 400
    assert g.snapshot()["nodes"][1]["rsoc"] == pytest.approx(55, abs=0.5)      # nothing changed
    assert c.get("/control/node/7", rsoc=20)[0] == 404
    status, row = c.get("/control/node/1", rsoc=20, capacity_wh=2400)
    assert status == 200 and row["capacity_wh"] == 2400
    # faults of the simulators, seen through the driver
    status, body = c.get("/control/fault/0", device="converter", kind="nak", count=20)
    assert status == 200
    status, body = g.node(0).get("/remote/get")
    assert status == 400 and "NAK" in body["err"]
    c.get("/control/fault/0", device="converter", kind="clear")
    assert g.node(0).get("/remote/get")[0] == 200
    c.get("/control/fault/1", device="battery", kind="exception", count=20)
    assert g.node(1).get("/battery/get")[0] == 400
    c.get("/control/fault/1", device="battery", kind="clear")
    assert g.node(1).get("/battery/get")[0] == 200
    assert c.get("/control/fault/1", device="inverter", kind="nak")[0] == 400
    # restore the saved state: RSOC, capacity and bus load come back
    req = urllib.request.Request(c.base + "/control/state", json.dumps(state).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    row = g.snapshot()["nodes"][1]
    assert row["rsoc"] == pytest.approx(55, abs=0.5) and row["capacity_wh"] == 4800
    bad = dict(state, clock={"seconds": -1, "speed": 1})
    req = urllib.request.Request(c.base + "/control/state", json.dumps(bad).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    with e.value:
        assert e.value.code == 400 and b"clock.seconds" in e.value.read()
    assert HTTPClient(c.base).get("/control/speed", value=0)[0] == 400


def test_a_bad_profile_or_start_is_one_line(tmp_path, capsys):
    from essx_service.grid import parse_args, run

    (tmp_path / "E001.csv").write_text("time,pv,load\n12:00,lots,100\n")
    assert run(parse_args(["--nodes", "1", "--port", "0", "--profiles", str(tmp_path)])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "E001.csv: line 2: pv: 'lots' is not a number" in err
    assert run(parse_args(["--nodes", "1", "--port", "0", "--start", "noon"])) == 2
    err = capsys.readouterr().err
    assert err == "essx-grid: --start=noon: expected a date and time, e.g. 2020-01-01T06:00:00\n"
    assert run(parse_args(["--nodes", "1", "--port", "0", "--profiles", str(tmp_path / "none")])) == 2
    assert "not a directory (or 'sample')" in capsys.readouterr().err
