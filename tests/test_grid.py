"""essx-grid: nodes of the real driver stack on one simulated DC bus.

Every request goes through a node's Web API (waitress, bottle, controller,
EZA2500Device over ESSXRS485 on a pty, ESSXModbusClient on a pty); the grid
endpoint reads the bus model."""
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import DEFAULT_CONFIG, DRIVERS, SPEED, HTTPClient, fast_config, grid_config, read_until, set_node

from essx_service import resources
from essx_service.grid import Grid, base_config_path, parse_args
from essx_sim.grid import GridConfigError, NodeSpec, grid_spec


def scripted_exchange(g):
    """README's script: node 0 holds the bus at 350 V, node 1 discharges 2 A, node 2 charges 1.5 A."""
    set_node(g, 0, "0x0014", 2.5)
    set_node(g, 1, "0x0002", 2.0)
    set_node(g, 2, "0x0041", 1.5)


def test_scripted_energy_exchange(make_grid):
    g = make_grid([NodeSpec()] * 3)
    scripted_exchange(g)
    body = g.snapshot()
    nodes = body["nodes"]
    assert body["bus"]["up"] and body["bus"]["voltage"] == pytest.approx(350, abs=0.03)
    assert [n["mode"] for n in nodes] == ["0x0014", "0x0002", "0x0041"]
    assert [n["operationMode"] for n in nodes] == ["Grid Autonomy", "Heteronomy CV", "Heteronomy CV"]
    step = 7.8125 / 2 ** 13        # dig travels in Q13 of 7.8125 A
    assert [n["ig"] for n in nodes] == pytest.approx([0.5, -2.0, 1.5], abs=2 * step)
    assert abs(sum(n["ig"] for n in nodes)) <= 1e-3
    assert abs(body["bus"]["sum_ig"]) <= 1e-3
    assert nodes[0]["wb"] > 0 and nodes[1]["wb"] < 0 and nodes[2]["wb"] > 0   # + charging
    assert [n["url"] for n in nodes] == [g.urls[i] for i in range(3)]
    # the driver reads the same flows through the converter's meters
    status, body = g.node(2).get("/remote/get")
    assert status == 200, body
    assert body["meter"]["vg"] == pytest.approx(350, abs=0.05)
    assert body["meter"]["ig"] == pytest.approx(1.5, abs=2 * step)
    assert body["meter"]["wb"] > 0 and body["status"]["runningState"] == "charge"


def test_currents_balance_with_droop_shared_sources(make_grid):
    g = make_grid([NodeSpec()] * 4)
    set_node(g, 0, "0x0014", 2.5, dvg=350, drg=0.5)
    set_node(g, 1, "0x0014", 2.5, dvg=351, drg=1.0)
    set_node(g, 2, "0x0041", 2.0)
    set_node(g, 3, "0x0041", 1.0)
    body = g.snapshot()
    ig = [n["ig"] for n in body["nodes"]]
    assert abs(sum(ig)) <= 1e-3
    v = body["bus"]["voltage"]
    assert 349 < v < 350
    # each source delivers (dvg - v) / drg (the Q-format values the converter took)
    for i in (0, 1):
        status, vdis = g.node(i).get("/remote/get")
        dvg, drg = vdis["vdis"]["dvg"], vdis["vdis"]["drg"]
        assert -ig[i] == pytest.approx((dvg - v) / drg, abs=1e-6)


def test_bus_is_down_without_a_voltage_source(make_grid):
    g = make_grid([NodeSpec()] * 2)
    set_node(g, 0, "0x0002", 2.0)
    set_node(g, 1, "0x0041", 1.5)
    before = g.snapshot()
    time.sleep(0.3)
    body = g.snapshot()
    assert body["bus"] == {"voltage": 0.0, "up": False, "load": 0.0, "sum_ig": 0.0}
    assert [(n["ig"], n["wb"]) for n in body["nodes"]] == [(0.0, 0.0), (0.0, 0.0)]
    assert [n["rsoc"] for n in body["nodes"]] == [n["rsoc"] for n in before["nodes"]]
    status, reply = g.node(0).get("/remote/get")
    assert reply["meter"]["vg"] == 0 and reply["meter"]["ig"] == 0


def _timed_snapshot(g):
    t0 = time.monotonic()
    body = g.grid.snapshot()
    return t0, time.monotonic(), body


def test_rsoc_moves_by_the_energy_through_the_battery(make_grid):
    """energy = ∫ wb dt within 1 %: wb from the converter's flows, t from this clock x speed."""
    g = make_grid([NodeSpec(capacity_wh=4800, rsoc=50)] * 3)
    scripted_exchange(g)
    lo0, hi0, first = _timed_snapshot(g)
    time.sleep(3.0)
    lo1, hi1, last = _timed_snapshot(g)
    for a, b in zip(first["nodes"], last["nodes"]):
        assert a["wb"] == b["wb"]          # constant flows: ∫ wb dt = wb x t
        energy_wh = (b["rsoc"] - a["rsoc"]) / 100 * a["capacity_wh"]   # into the battery
        bounds = sorted(a["wb"] * (t * SPEED) / 3600 for t in (lo1 - hi0, hi1 - lo0))
        tolerance = 0.01 * max(abs(x) for x in bounds)
        assert bounds[0] - tolerance <= energy_wh <= bounds[1] + tolerance, (a, b, bounds)
    rsoc = [(a["rsoc"], b["rsoc"]) for a, b in zip(first["nodes"], last["nodes"])]
    assert rsoc[0][1] > rsoc[0][0] and rsoc[1][1] < rsoc[1][0] and rsoc[2][1] > rsoc[2][0]
    # and the driver reads it from the battery (0.1 % steps)
    status, body = g.node(1).get("/battery/get")
    assert status == 200 and body["rsoc"] < 50.0


def test_battery_at_its_limit_forces_waiting(make_grid):
    config = grid_config(force_dcdc_waiting=True, check_interval=0.1)
    g = make_grid([NodeSpec(), NodeSpec(capacity_wh=100, rsoc=10.5, rsoc_min=10)], config, speed=10)
    set_node(g, 0, "0x0014", 2.5)
    set_node(g, 1, "0x0002", 2.0)          # ~714 W from 100 Wh at speed 10: 2 % a second
    deadline = time.monotonic() + 10
    while True:
        body = g.snapshot()
        node = body["nodes"][1]
        if node["mode"] == "0x0000" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert node["mode"] == "0x0000", node
    assert not node["permitted"] and node["rsoc"] < 10
    assert node["ig"] == 0 and body["nodes"][0]["ig"] == 0
    assert body["nodes"][0]["mode"] == "0x0014"        # the other node was left alone


def test_grid_file():
    spec = grid_spec({"load": 0.5, "defaults": {"capacity_wh": 1000},
                      "nodes": [{"rsoc": 80}, {"rsoc_min": 20, "rsoc": 30}]}, 3, "/etc/grid.yml")
    assert spec.load == 0.5 and spec.driver_config is None
    assert spec.nodes == (NodeSpec(1000, 80), NodeSpec(1000, 30, 20), NodeSpec(1000))
    with pytest.raises(GridConfigError, match=r"grid.yml: nodes\[1\]: unknown key capacity \("):
        grid_spec({"nodes": [{}, {"capacity": 3}]}, 2, "grid.yml")
    with pytest.raises(GridConfigError, match=r"grid.yml: defaults.rsoc='x': expected a number"):
        grid_spec({"defaults": {"rsoc": "x"}}, 1, "grid.yml")
    with pytest.raises(GridConfigError, match="node 0: rsoc=120"):
        Grid(grid_spec({"defaults": {"rsoc": 120}}, 1), fast_config()).start()


def test_nodes_take_the_shipped_configuration_never_the_machines(tmp_path, monkeypatch):
    """A node's /etc file names its real ports: the grid's simulated nodes never take it."""
    etc = tmp_path / "dcdc_batt_comm.yml"
    etc.write_text("poison: true\n")
    monkeypatch.setattr(resources, "ETC_CONFIG", str(etc))
    assert resources.default_config_path() == str(etc)        # essx-server would take it
    shipped = str(resources.data_path(resources.DEFAULT_CONFIG_NAME))
    assert base_config_path(parse_args(["--nodes", "1", "--port", "0"]), grid_spec(None, 1)) == shipped
    mine = str(tmp_path / "mine.yml")
    assert base_config_path(parse_args(["--nodes", "1", "--port", "0", "--driver-config", mine]),
                            grid_spec(None, 1)) == mine


def test_command_line_serves_and_stops_on_sigterm(tmp_path):
    grid_file = tmp_path / "grid.yml"
    grid_file.write_text("nodes:\n  - {rsoc: 70}\n")
    proc = subprocess.Popen([sys.executable, os.path.join(DRIVERS, "essx_grid.py"), "--nodes", "2",
                             "--port", "0", "--speed", "5", "--config", str(grid_file),
                             "--driver-config", DEFAULT_CONFIG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out = read_until(proc.stdout, b"/grid\n", time.monotonic() + 60).decode()
        urls = {line.split()[2]: line.split()[3] for line in out.strip().splitlines()
                if line.startswith("essx-grid: node")}
        control = out.strip().splitlines()[-1].split()[-1]
        status, body = HTTPClient(control[:-len("/grid")]).get("/grid")
        assert status == 200 and body["speed"] == 5.0
        assert [n["rsoc"] for n in body["nodes"]] == [70.0, 50.0]
        assert body["bus"]["up"] is False
        status, body = HTTPClient(urls["1"]).get("/remote/get/status")
        assert status == 200 and body["status"]["operationMode"] == "Waiting"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read().decode().strip().endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_command_line_mistake_is_one_line(tmp_path):
    bad = tmp_path / "grid.yml"
    bad.write_text("nodes: [{rsoc: 101}]\n")
    for args, text in ((["--nodes", "0", "--port", "9000"], "--nodes=0: expected at least 1"),
                       (["--nodes", "1", "--port", "0", "--config", str(bad)], "node 0: rsoc=101.0")):
        proc = subprocess.run([sys.executable, os.path.join(DRIVERS, "essx_grid.py"), "--driver-config",
                               DEFAULT_CONFIG] + args,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == ["essx-grid: " + proc.stderr.strip()[len("essx-grid: "):]]
        assert text in proc.stderr


def test_simulated_server_is_one_node_alone_with_battery_physics(system):
    """essx-server --simulate: the converter and the battery share one model; alone on its bus."""
    dcdc, battery = system.dcdc_sim, system.battery_sim
    assert dcdc.battery is battery.model
    battery.rsoc = 50.0
    dcdc.set(mode=0x0002, dig=2.0)               # discharge 2 A into the external grid (350 V)
    assert battery.model.power == pytest.approx(-350 * 2.0 / 0.98)
    time.sleep(0.2)
    assert battery.rsoc < 50.0
    dcdc.set(mode=0x0014, dvg=350, drg=0)         # Grid Autonomy alone: the 1 A autonomy load
    assert dcdc.state["ig"] == -1.0 and battery.model.power == pytest.approx(-350 / 0.98)
    dcdc.set(mode=0x0000)
    assert battery.model.power == 0.0 and dcdc.state["vg"] == 350.0
