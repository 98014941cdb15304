"""Set routes: refusals send nothing, the previous-value rule, /dcdc/set dispatch, apis-main's sequences."""

import pytest

from conftest import commands, writes


REFUSALS = [
    # (path, query, the parameter the error must name, a fragment of the error)
    ("/remote/set", "mode=0x0014&dvg=1000&dig=2.5&drg=0", "dvg", "1000"),
    ("/remote/set", "mode=0x0014&dvg=abc&dig=2.5&drg=0", "dvg", "abc"),
    ("/remote/set", "mode=0x0014&dvg=350&dig=100&drg=0", "dig", "100"),
    ("/remote/set", "mode=0x0014&dvg=350&dig=2.5&drg=5", "drg", "5"),
    ("/remote/set", "mode=0x0014&dvg=350&dig=-1&drg=0", "dig", "-1"),
    ("/remote/set", "mode=0x0015&dvg=350&dig=2.5&drg=0", "mode", "0x0015"),
    ("/remote/set", "mode=20&dvg=350&dig=2.5&drg=0", "mode", "0x"),
    ("/remote/set", "mode=0xzz&dvg=350&dig=2.5&drg=0", "mode", "0xzz"),
    ("/remote/set", "mode=0x0014&dvg=nan&dig=2.5&drg=0", "dvg", "nan"),
    ("/remote/set", "mode=0x0014&dvg=&dig=2.5&drg=0", "dvg", "''"),
    ("/remote/set", "dvg=350&dig=2.5&drg=0", "mode", "missing"),
    ("/remote/set", "mode=0x0014&dig=2.5&drg=0", "dvg", "missing"),
    ("/remote/set/current", "", "dig", "missing"),
    ("/remote/set/current", "dig=9", "dig", "9"),
    ("/remote/set/voltage", "drg=0.1", "dvg", "missing"),
    ("/remote/set/voltage", "dvg=200", "dvg", "200"),
    ("/remote/set/voltage", "dvg=350&drg=x", "drg", "x"),
    ("/dcdc/set", "dig=1e9", "dig", "8.5162"),
    ("/dcdc/set", "dvg=391", "dvg", "391"),
    ("/dcdc/set", "mode=0x0014&dvg=350&dig=2.5&drg=4", "drg", "4"),
]


@pytest.mark.parametrize("path,query,field,fragment", REFUSALS)
def test_refusal_names_the_parameter_and_sends_nothing(http, sim, path, query, field, fragment):
    status, body = http.get(path, query=query)
    assert status == 400
    assert set(body) == {"err"}
    assert field in body["err"]
    assert fragment in body["err"]
    assert commands(sim) == []
    assert sim.state["mode"] == 0x0000


def test_out_of_range_dvg_names_the_range_and_keeps_waiting(http, sim):
    status, body = http.get("/remote/set", mode="0x0014", dvg=1000, dig=2.5, drg=0)
    assert status == 400
    assert "dvg" in body["err"] and "1000" in body["err"] and "260" in body["err"] and "390" in body["err"]
    assert writes(sim) == []
    assert http.get("/remote/get/status")[1]["status"]["operationMode"] == "Waiting"


def test_previous_values_are_used_and_only_after_success(http, sim):
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0.1)[0] == 200
    # a refused call must not change what is remembered
    assert http.get("/remote/set", dvg=1000)[0] == 400
    sim.clear()
    status, body = http.get("/remote/set", dig=1.0)
    assert status == 200, body
    assert abs(body["vdis"]["dvg"] - 350) < 0.05
    assert abs(body["vdis"]["drg"] - 0.1) < 0.001
    assert body["status"]["operationMode"] == "Grid Autonomy"
    assert abs(body["param"]["dig"] - 1.0) < 0.001
    # /remote/set/voltage takes drg from the last value when not given
    status, body = http.get("/remote/set/voltage", dvg=360)
    assert status == 200
    assert abs(body["vdis"]["drg"] - 0.1) < 0.001


def test_hello_forgets_the_previous_values(http, sim):
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    assert http.get("/essx/hello")[0] == 200
    sim.clear()
    status, body = http.get("/remote/set", dig=1.0)
    assert status == 400
    assert "mode" in body["err"]
    assert commands(sim) == []


def test_voltage_and_current_need_no_cache(http, sim):
    """The reference refused these after a restart; only what the call sends is needed."""
    assert http.get("/remote/set/current", dig=2)[0] == 200
    assert http.get("/remote/set/voltage", dvg=350)[0] == 200
    assert writes(sim) == ["6-4", "4-4"]


@pytest.mark.parametrize("query,expected", [
    ("dig=2", ["6-4", "10-1"]),
    ("dvg=350", ["4-4", "10-1"]),
    ("dvg=350&drg=0.1", ["4-4", "10-1"]),
    ("mode=0x0014&dvg=350&dig=2.5&drg=0", ["4-4", "6-4", "1-4", "2-1", "9-1", "10-1"]),
])
def test_dcdc_set_dispatch(http, sim, query, expected):
    http.system.controller.link.transact("1-1")   # known Waiting: no 1-1 before a full set
    sim.clear()
    status, body = http.get("/dcdc/set", query=query)
    assert status == 200, body
    assert commands(sim) == expected


def _apis_main_sequence(http, sim, set_path, status_path, poll_path):
    """WAIT, VOLTAGE_REFERENCE, voltage step, current step, CHARGE, DISCHARGE, WAIT (docs/web-api.md)."""
    steps = [
        ({"mode": "0x0000", "dvg": "350.0", "dig": "0", "drg": "0"}, "Waiting"),
        ({"mode": "0x0014", "dvg": "350.0", "dig": "2.5", "drg": "0.0"}, "Grid Autonomy"),
        ({"dvg": "352.0", "drg": "0.0"}, "Grid Autonomy"),
        ({"dig": "3.0"}, "Grid Autonomy"),
        ({"mode": "0x0041", "dvg": "350.0", "dig": "2.0", "drg": "0.0"}, "Heteronomy CV"),
        ({"mode": "0x0002", "dvg": "350.0", "dig": "2.0", "drg": "0.0"}, "Heteronomy CV"),
        ({"mode": "0x0000", "dvg": "350.0", "dig": "0", "drg": "0"}, "Waiting"),
    ]
    for params, mode_name in steps:
        path = set_path
        if set_path == "/remote/set" and set(params) == {"dig"}:
            path = "/remote/set/current"
        elif set_path == "/remote/set" and "mode" not in params:
            path = "/remote/set/voltage"
        status, body = http.get(path, **params)
        assert status == 200, (params, body)
        if "mode" in params:
            assert body["status"]["operationMode"] == mode_name
        status, body = http.get(status_path)
        assert status == 200
        assert body["status"]["operationMode"] == mode_name
        assert http.get(poll_path)[0] == 200
    return body


def test_apis_main_v1_sequence(http, sim):
    body = _apis_main_sequence(http, sim, "/remote/set", "/remote/get/status", "/remote/get")
    assert body["status"]["operationMode"] == "Waiting"
    assert sim.state["mode"] == 0
    assert http.get("/1/log/data")[0] == 200


def test_apis_main_v2_sequence(http, sim):
    status, version = http.get("/version/get")
    assert version["comm_interface_version"].split(".")[0] == "2"
    body = _apis_main_sequence(http, sim, "/dcdc/set", "/dcdc/get/status", "/all/get")
    assert body["status"]["operationMode"] == "Waiting"
    assert sim.state["mode"] == 0


def test_charge_and_discharge_meters(http, sim):
    status, body = http.get("/remote/set", mode="0x0041", dvg=350, dig=2.0, drg=0)
    assert status == 200
    charge = body["meter"]
    status, body = http.get("/remote/set", mode="0x0002", dvg=350, dig=2.0, drg=0)
    discharge = body["meter"]
    assert abs(abs(charge["ig"]) - 2.0) < 0.01 and abs(abs(discharge["ig"]) - 2.0) < 0.01
    assert charge["ig"] * discharge["ig"] < 0          # opposite directions
    assert charge["wb"] * discharge["wb"] < 0
