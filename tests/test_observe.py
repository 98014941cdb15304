"""essx_service.observe.Recorder fed with Exchange records directly, and its JSON views
(essx_service.status)."""
import threading

import pytest
from conftest import HandClock

from essx import blocks
from essx.exchange import Exchange, Listeners
from essx_service.observe import (BLOCKS, HISTORY_SECONDS, HISTORY_SERIES, LATENCY_BUCKETS, STATUS_WORDS,
                                  Recorder, reply_name)
from essx_service.status import history_body, operation, status_body


class Owner:
    """A bus owner as the contract describes it: listeners, port, is_open."""

    def __init__(self, port, is_open=True):
        self.listeners = Listeners()
        self.port = port
        self.is_open = is_open


def dcdc(command, outcome="ack", t=1000.0, seconds=0.02, attempt=1, values=None, error=None):
    return Exchange(bus="dcdc", command=command, outcome=outcome, seconds=seconds, attempt=attempt,
                    port="/dev/ttyO2", values=values, error=error, time=t)


def battery(outcome="ok", t=1000.0, values=None, error=None):
    return Exchange(bus="battery", command="read", outcome=outcome, seconds=0.03, port="/dev/ttyO5",
                    values=values, error=error, time=t)


METER = {"vg": 350.0, "ig": 1.5, "vb": 52.0, "ib": -10.0, "wg": 525.0, "wb": -520.0, "ic": 0, "tmp": 30.5}


@pytest.fixture
def clock():
    return HandClock(1000.0)


@pytest.fixture
def rec(clock):
    return Recorder(clock=clock)


def test_counts_commands_by_outcome_retries_and_latency(rec):
    rec.on_exchange(dcdc("6-4", "nak_0xfffc", seconds=0.015, error="NAK 0xfffc system busy"))
    rec.on_exchange(dcdc("6-4", "ack", seconds=0.016, attempt=2, values={"dig": 2.5}))
    rec.on_exchange(dcdc("10-1", "timeout", seconds=0.1, error="no reply"))
    snap = rec.snapshot()
    assert snap["commands"] == {("6-4", "nak_0xfffc"): 1, ("6-4", "ack"): 1, ("10-1", "timeout"): 1}
    assert snap["retries"] == {"6-4": 1}
    buckets, total = snap["latency"]["6-4"]
    assert total == pytest.approx(0.031)
    le = dict(buckets)
    assert le["0.01"] == 0 and le["0.02"] == 2 and le["+Inf"] == 2
    assert [b for b, _ in buckets] == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    bus = snap["buses"]["dcdc"]
    assert (bus["tries"], bus["ok"], bus["retries"]) == (3, 1, 1)
    assert bus["last_error"] == "10-1 timeout: no reply"
    assert [e["outcome"] for e in snap["errors"]] == ["nak_0xfffc", "timeout"]


def test_last_known_state_by_block_with_its_time(rec):
    rec.on_exchange(dcdc("1-1", values={"mode": 0x0014}, t=1000.0))
    rec.on_exchange(dcdc("2-1", values={"cst": 0x0005, "ext": 0}, t=1001.0))
    rec.on_exchange(dcdc("10-1", values=METER, t=1002.0))
    rec.on_exchange(dcdc("4-4", values={"dvg": 350.0, "drg": 0.1}, t=1003.0))
    rec.on_exchange(dcdc("6-1", values={"cib": 52.0, "dig": 2.5}, t=1004.0))
    rec.on_exchange(dcdc("9-1", values={"alm1": 0x12, "alm2": 0, "alm3": 0}, t=1005.0))
    rec.on_exchange(dcdc("1-4", "timeout", t=1006.0))   # a failure changes no state
    rec.on_exchange(battery(values={"rsoc": 55.5, "permitted": True}, t=1007.0))
    rec.on_exchange(battery(values={"rsoc": 56.0}, t=1008.0))   # a single-register read
    snap = rec.snapshot()
    conv = snap["converter"]
    assert conv["mode"] == ({"mode": 0x0014}, 1000.0)
    assert conv["status"][0]["cst"] == 5 and conv["meter"] == (METER, 1002.0)
    assert conv["vdis"] == ({"dvg": 350.0, "drg": 0.1}, 1003.0)
    assert conv["param"][1] == 1004.0 and conv["alarm"][0]["alm1"] == 0x12
    assert snap["battery"] == {"rsoc": (56.0, 1008.0), "permitted": (True, 1007.0)}
    assert snap["battery_reads"] == {"ok": 2}


def test_status_body_ages_and_decoded_operation(rec, clock):
    rec.attach("dcdc", Owner("/dev/ttyO2"))
    rec.attach("battery", Owner("/dev/ttyO5", is_open=False))
    rec.on_exchange(dcdc("1-1", values={"mode": 0x0014}, t=1000.0))
    rec.on_exchange(dcdc("2-1", values={"cst": 0x0005, "ext": 0}, t=1000.0))
    rec.on_exchange(battery("timeout", error="no answer", t=1001.0))
    rec.on_http("/remote/get", 200)
    clock.t = 1010.0
    body = status_body(rec, version="1.4", simulate=True)
    assert (body["version"], body["simulate"], body["uptime_s"], body["config"]) == ("1.4", True, 10.0, None)
    assert body["operation"] == {"mode": "0x0014", "operationMode": "Grid Autonomy",
                                 "runningState": "charge", "alarmState": "Light alarm"}
    assert body["converter"]["mode"]["age_s"] == 10.0
    dcdc_bus, bat_bus = body["buses"]["dcdc"], body["buses"]["battery"]
    assert (dcdc_bus["port"], dcdc_bus["open"], dcdc_bus["last_success_age_s"]) == ("/dev/ttyO2", True, 10.0)
    assert (bat_bus["open"], bat_bus["failures"], bat_bus["last_error_age_s"]) == (False, 1, 9.0)
    assert bat_bus["last_success"] is None and "no answer" in bat_bus["last_error"]
    assert body["http"] == [{"route": "/remote/get", "status": 200, "count": 1}]
    assert body["errors"][0]["bus"] == "battery"


def test_attach_listens_and_detach_stops(rec):
    owner = Owner("/dev/ttyO2")
    rec.attach("dcdc", owner)
    owner.listeners.emit(dcdc("1-1", values={"mode": 0}))
    rec.detach()
    owner.listeners.emit(dcdc("1-1", values={"mode": 0}))
    assert rec.snapshot()["buses"]["dcdc"]["tries"] == 1
    with pytest.raises(ValueError, match="unknown bus 'rs232'"):
        rec.attach("rs232", owner)


def test_history_one_point_a_second_for_one_hour(rec, clock):
    for i in range(10):   # two exchanges 0.5 s apart: the later replaces the earlier
        rec.on_exchange(dcdc("10-1", values=dict(METER, vg=300.0 + i), t=1000.0 + i * 0.5))
    points = rec.history_since()["vg"]
    assert [v for _, v in points] == [301.0, 303.0, 305.0, 307.0, 309.0]
    assert rec.history_since()["rsoc"] == [] and len(rec.history_since()["wb"]) == 5
    rec.on_exchange(battery(values={"rsoc": 40.0, "permitted": True}, t=1000.0 + HISTORY_SECONDS + 1))
    clock.t = 1000.0 + HISTORY_SECONDS + 10
    assert rec.history_since()["vg"] == []          # older than an hour
    assert rec.history_since()["rsoc"] == [(1000.0 + HISTORY_SECONDS + 1, 40.0)]
    body = history_body(rec, since=1000.0 + HISTORY_SECONDS + 1)
    assert body["series"]["rsoc"] == [] and body["seconds"] == HISTORY_SECONDS


def test_history_is_bounded(rec, clock):
    for i in range(5000):
        rec.on_exchange(dcdc("10-1", values=METER, t=1000.0 + i))
    clock.t = 1000.0 + 5000
    assert len(rec.history_since()["vg"]) <= HISTORY_SECONDS + 1
    assert len(rec.snapshot()["errors"]) == 0


def test_commands_sent_collects_only_this_threads_converter_tries(rec):
    other = threading.Thread(target=lambda: rec.on_exchange(dcdc("2-1")))
    with rec.commands_sent() as sent:
        rec.on_exchange(dcdc("4-4"))
        rec.on_exchange(battery(values={"rsoc": 1.0}))
        other.start()
        other.join()
        rec.on_exchange(dcdc("6-4", "nak_0xfffc"))
        rec.on_exchange(dcdc("6-4", attempt=2))
    rec.on_exchange(dcdc("1-4"))
    assert sent == ["4-4", "6-4", "6-4"]


def test_http_counts(rec):
    for status in (200, 200, 400):
        rec.on_http("/remote/set", status)
    assert rec.snapshot()["http"] == {("/remote/set", 200): 2, ("/remote/set", 400): 1}


def test_replies_are_kept_under_the_names_the_blocks_give():
    """docs/observability.md's converter names, derived from essx.blocks."""
    assert BLOCKS == {"1": "mode", "2": "status", "4": "vdis", "6": "param", "9": "alarm", "10": "meter"}
    assert set(STATUS_WORDS) == set(blocks.STATUS.replies())
    assert {reply_name(s) for s in blocks.REMOTE_GET.replies()} == set(BLOCKS.values())
    assert reply_name(blocks.Reply("4-1", "drg")) == "vdis"
    assert reply_name(blocks.Reply("10-1", "ic")) == "meter"
    assert HISTORY_SERIES == {"vg": ("dcdc", "vg"), "ig": ("dcdc", "ig"), "wb": ("dcdc", "wb"),
                              "rsoc": ("battery", "rsoc")}
    assert list(HISTORY_SERIES) == ["vg", "ig", "wb", "rsoc"]


@pytest.mark.parametrize("mode", [0x0000, 0x0014, 0x0041, 0x0002, 0x0034, 0x0099])
@pytest.mark.parametrize("cst", [0x0000, 0x0005, 0x000a, 0x000f])
def test_operation_decodes_as_the_status_block(mode, cst):
    status = blocks.STATUS.shape(blocks.Readings(reply={"mode": mode, "cst": cst, "alm1": 0}))
    converter = {"mode": ({"mode": mode}, 1.0), "status": ({"cst": cst, "ext": 0}, 1.0)}
    assert operation(converter) == {
        "mode": status["status"], "operationMode": status["operationMode"],
        "alarmState": status["alarmState"], "runningState": status["runningState"]}


def test_operation_is_none_where_a_reply_is_missing():
    assert operation({}) == dict.fromkeys(("mode", "operationMode", "alarmState", "runningState"))
    assert operation({"mode": ({"mode": 0x0014}, 1.0)}) == {
        "mode": "0x0014", "operationMode": "Grid Autonomy", "alarmState": None, "runningState": None}
