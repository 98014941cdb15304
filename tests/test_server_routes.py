"""Every route over HTTP against the pty simulators: status, key sets, values, command sequences."""

import pytest

from conftest import METER_KEYS, commands

STATUS_KEYS = {"status", "alarmState", "statusName", "alarm", "runningState", "operationMode"}
PARAM_KEYS = {"cib", "ubv", "ogv", "obv", "ugv", "dig"}
BATTERY_KEYS = {"system_time", "rsoc", "battery_rsoc", "dischargeable_time", "battery_voltage",
                "battery_current", "charge_discharge_power", "battery_status", "battery_warning",
                "battery_operation_status", "battery_comm_err", "ups_operation_schedule",
                "ups_operation_mode"}
REMOTE_GET_KEYS = {"status", "powermeter", "meter", "vdis", "param"}

# One Q step of each field the tests compare (docs/eza2500-protocol.md command table).
STEP = {"dvg": 380 / 2**14, "drg": 1 / 2**13, "dig": 7.8125 / 2**13, "vg": 380 / 2**14}


def test_remote_get_body_and_sequence(http, sim):
    sim.set(mode=0x0014, dvg=350, drg=0.1, dig=2.5, alm1=0)
    status, body = http.get("/remote/get")
    assert status == 200, body
    assert set(body) == REMOTE_GET_KEYS
    assert set(body["status"]) == STATUS_KEYS
    assert set(body["meter"]) == METER_KEYS
    assert set(body["vdis"]) == {"dvg", "drg"}
    assert set(body["param"]) == PARAM_KEYS
    assert body["powermeter"] == {"p1": 0, "p2": 0, "v1": 0, "i1": 0, "kwh1": 0, "kwh2": 0}
    assert body["status"]["status"] == "0x0014"
    assert body["status"]["operationMode"] == "Grid Autonomy"
    assert body["status"]["statusName"] == "Ignore"
    assert abs(body["vdis"]["dvg"] - 350) <= STEP["dvg"]
    assert abs(body["vdis"]["drg"] - 0.1) <= STEP["drg"]
    assert abs(body["param"]["dig"] - 2.5) <= STEP["dig"]
    # the configuration's values, not the converter's
    assert {k: body["param"][k] for k in ("cib", "ubv", "ogv", "obv", "ugv")} == \
        {"cib": 52, "ubv": 40, "ogv": 400, "obv": 59, "ugv": 300}
    # Grid Autonomy holds vg at dvg less the droop (drg V/A times the current delivered)
    assert abs(body["meter"]["vg"] - (350 + 0.1 * body["meter"]["ig"])) <= 2 * STEP["vg"]
    assert commands(sim) == ["1-1", "2-1", "4-1", "9-1", "10-1", "6-1"]


def test_dcdc_get_drops_powermeter(http, sim):
    status, body = http.get("/dcdc/get")
    assert status == 200
    assert set(body) == REMOTE_GET_KEYS - {"powermeter"}
    assert commands(sim) == ["1-1", "2-1", "4-1", "9-1", "10-1", "6-1"]


@pytest.mark.parametrize("path", ["/remote/get/status", "/dcdc/get/status"])
def test_get_status(http, sim, path):
    sim.set(mode=0x0000)
    status, body = http.get(path)
    assert status == 200
    assert set(body) == {"status", "meter"}
    assert body["status"] == {"alarmState": "No alarm", "runningState": "off", "operationMode": "Waiting"}
    assert set(body["meter"]) == METER_KEYS
    assert body["meter"]["ig"] == 0
    assert commands(sim) == ["1-1", "2-1", "10-1"]


def test_alarm_string(http, sim):
    sim.set(alm1=0x0012)
    status, body = http.get("/remote/get")
    assert status == 200
    alm, alarm_state, running = body["status"]["alarm"].split()
    assert alm == "0012"
    assert int(alarm_state, 16) == (sim.state["cst"] >> 2) & 3
    assert body["status"]["alarmState"] != "No alarm"


def test_remote_set_from_waiting(http, sim):
    sim.set(mode=0x0000)
    status, body = http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)
    assert status == 200, body
    assert set(body) == {"status", "meter", "vdis", "param"}
    assert body["status"]["operationMode"] == "Grid Autonomy"
    assert body["status"]["status"] == "0x0014"
    # the converter was in Waiting: set-points first, then the mode
    assert commands(sim)[-6:] == ["4-4", "6-4", "1-4", "2-1", "9-1", "10-1"]
    assert sim.state["mode"] == 0x0014
    assert abs(sim.state["dvg"] - 350) <= STEP["dvg"]
    assert abs(body["vdis"]["dvg"] - 350) <= STEP["dvg"]
    assert body["vdis"]["drg"] == 0
    assert abs(body["param"]["dig"] - 2.5) <= STEP["dig"]


def test_remote_set_order_follows_the_actual_mode(http, sim):
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    sim.clear()
    status, body = http.get("/remote/set", mode="0x0041", dvg=350, dig=3, drg=0)
    assert status == 200, body
    assert body["status"]["operationMode"] == "Heteronomy CV"
    assert commands(sim) == ["1-4", "4-4", "6-4", "2-1", "9-1", "10-1"]
    # back to Waiting, then the next set sees Waiting again (the reference never did)
    assert http.get("/remote/set", mode="0x0000", dvg=350, dig=0, drg=0)[0] == 200
    sim.clear()
    assert http.get("/remote/set", mode="0x0002", dvg=350, dig=1, drg=0)[0] == 200
    assert commands(sim) == ["4-4", "6-4", "1-4", "2-1", "9-1", "10-1"]


def test_remote_set_reads_mode_when_unknown(http, sim):
    assert http.system.controller.link.mode is None   # just after start
    sim.set(mode=0x0014)
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    assert commands(sim) == ["1-1", "1-4", "4-4", "6-4", "2-1", "9-1", "10-1"]


def test_set_current_and_voltage(http, sim):
    status, body = http.get("/remote/set/current", dig=1.5)
    assert status == 200, body
    assert set(body) == {"meter", "param"}
    assert abs(body["param"]["dig"] - 1.5) <= STEP["dig"]
    assert commands(sim) == ["6-4", "10-1"]
    sim.clear()
    status, body = http.get("/remote/set/voltage", dvg=300, drg=0.1)
    assert status == 200, body
    assert set(body) == {"meter", "vdis"}
    assert body["vdis"] == {"dvg": 299.98291015625, "drg": 0.0999755859375}   # spec's example values
    assert commands(sim) == ["4-4", "10-1"]


def test_ioctl_set(http, sim):
    sim.set(dig=3.0)
    status, body = http.get("/remote/ioctl/set")
    assert status == 200, body
    assert body["dcdc_converter_name"] == "dcdc1"
    assert body["dcdc_setup_parameter"] == {
        "ubv": 40, "ugv": 300, "obv": 59, "ogv": 400, "bcf": "0x0003", "cvb": 57.6, "dlb": 49,
        "cdb": 1.2, "ddb": 1.8, "drb": 0.0, "cib": 52}
    assert commands(sim) == ["6-1", "6-4", "7-4", "3-4"]
    six_four = [r for r in sim.received if r.name == "6-4"][0]
    params = six_four.params
    assert abs(params["dig"] - 3.0) <= STEP["dig"]   # the converter's present dig is kept
    assert abs(sim.state["cvb"] - 57.6) <= 48 / 2**14


@pytest.mark.parametrize("path", ["/remote/ioctl/get", "/all/get"])
def test_ioctl_get_and_all_get(http, sim, path):
    http.system.battery_sim.rsoc = 55.5
    http.system.battery_sim.permitted = True
    status, body = http.get(path)
    assert status == 200, body
    if path == "/all/get":
        assert set(body) == {"rsoc", "battery_operation_status", "meter", "param", "status", "vdis"}
    else:
        assert set(body) == REMOTE_GET_KEYS | BATTERY_KEYS
        assert body["battery_rsoc"] == 55.5
    assert body["rsoc"] == 55.5
    assert body["battery_operation_status"] == 3
    assert commands(sim) == ["1-1", "2-1", "4-1", "9-1", "10-1", "6-1"]


def test_clr_alarm(http, sim):
    sim.set(alm1=5, alm2=1)
    status, body = http.get("/remote/ioctl/clr_alarm")
    assert status == 200, body
    assert set(body) == REMOTE_GET_KEYS
    assert commands(sim) == ["9-4", "1-1", "2-1", "4-1", "9-1", "10-1", "6-1"]
    assert sim.state["alm1"] == 0
    assert body["status"]["alarm"].startswith("0000 ")


def test_log_data_and_battery_get(http, sim):
    bsim = http.system.battery_sim
    bsim.rsoc = 42.3
    bsim.permitted = False
    status, body = http.get("/1/log/data")
    assert status == 200, body
    assert set(body) == BATTERY_KEYS
    assert body["rsoc"] == body["battery_rsoc"] == 42.3
    assert body["battery_operation_status"] == 0
    assert body["battery_voltage"] == 52.0 and body["battery_current"] == 20.0
    assert body["charge_discharge_power"] == 52.0 * 20.0
    assert body["ups_operation_mode"] == {"mode": 0, "parameter": 0, "stop_mode": 0}
    status, body = http.get("/battery/get")
    assert status == 200
    assert body == {"rsoc": 42.3, "battery_operation_status": 0}
    assert commands(sim) == []   # battery routes never touch the converter


def test_battery_silent_is_400(http, sim):
    http.system.battery_sim.silent = True
    status, body = http.get("/1/log/data")
    assert status == 400
    assert "battery" in body["err"]


def test_version_hello_goodbye(http):
    assert http.get("/version/get") == (200, {"comm_interface_version": "2.0",
                                              "dcdc_batt_comm_version": "1.4"})
    assert http.get("/essx/hello") == (200, {"message": "hello world"})
    status, body = http.get("/essx/goodbye")
    assert status == 404
    assert "--goodbye" in body["err"]


def test_unknown_route_is_json_404(http):
    status, body = http.get("/no/such/route")
    assert status == 404
    assert "err" in body
