"""A stop always stops: a request for mode 0x0000 reaches Waiting whatever else
it carries (docs/apis-main.md, "WAIT").

apis-main's WAIT (and Scram, a WAIT) sends ``dvg=0.0`` when its policy has no
operationGridVoltageV: ``/dcdc/set?mode=0x0000&dvg=0.0&dig=0.0&drg=0``. 0 V is
outside 4-4's range, so that 4-4 cannot be sent; the 1-4 must still go, first
unless the converter is known to be waiting, and the answer is 200 with
``operationMode`` "Waiting", which apis-main checks.
"""
import logging

import pytest

from conftest import commands

#: apis-main's WAIT without operationGridVoltageV, as it writes the query.
APIS_MAIN_WAIT = "mode=0x0000&dvg=0.0&dig=0.0&drg=0"


def running(http, sim, mode="0x0014"):
    """Put the converter in *mode* through the API; forget what it received."""
    status, body = http.get("/remote/set", mode=mode, dvg=350, dig=2.0, drg=0)
    assert status == 200 and body["status"]["status"] == mode, body
    sim.clear()


@pytest.mark.parametrize("route", ["/dcdc/set", "/remote/set"])
@pytest.mark.parametrize("mode", ["0x0014", "0x0041", "0x0002"])
def test_apis_main_wait_with_dvg_zero_stops(http, sim, route, mode, caplog):
    running(http, sim, mode)
    with caplog.at_level(logging.WARNING):
        status, body = http.get(route, query=APIS_MAIN_WAIT)
    assert status == 200, body
    assert body["status"]["operationMode"] == "Waiting"
    assert sim.state["mode"] == 0x0000
    sent = commands(sim)
    assert sent[0] == "1-4", sent                    # the stop goes first
    assert "4-4" not in sent and "6-4" in sent       # dvg=0 cannot be sent; dig=0 can
    assert any("4-4 not sent" in r.getMessage() and "dvg=0" in r.getMessage() for r in caplog.records)


def test_stop_with_values_that_are_no_numbers(http, sim, caplog):
    running(http, sim)
    with caplog.at_level(logging.WARNING):
        status, body = http.get("/dcdc/set", query="mode=0x0000&dvg=abc&dig=%ff&drg=x")
    assert status == 200 and body["status"]["operationMode"] == "Waiting", body
    assert commands(sim)[0] == "1-4" and "4-4" not in commands(sim) and "6-4" not in commands(sim)
    text = " ".join(r.getMessage() for r in caplog.records)
    for name in ("dvg", "dig", "drg"):
        assert "%s not sent" % name in text, text


def test_stop_without_previous_values(http, sim):
    """A bare mode=0x0000 on a fresh server (no cached dvg, dig) stops."""
    sim.set(mode=0x0014)
    status, body = http.get("/remote/set", mode="0x0000")
    assert status == 200 and body["status"]["operationMode"] == "Waiting", body
    assert sim.state["mode"] == 0x0000


def test_stop_when_a_setting_is_refused(http, sim, caplog):
    """Known to be waiting, the stop's 4-4 goes first and is NAKed (parameter
    invalid, not retried): the 6-4 and the 1-4 still go, the answer is 200."""
    assert http.get("/remote/get/status")[0] == 200      # the link learns the mode (Waiting)
    sim.clear()
    sim.inject("nak", count=1, ercd=0xFFFE)
    with caplog.at_level(logging.WARNING):
        status, body = http.get("/dcdc/set", query="mode=0x0000&dvg=350.0&dig=0.0&drg=0")
    assert status == 200 and body["status"]["operationMode"] == "Waiting", body
    assert commands(sim)[:3] == ["4-4", "6-4", "1-4"], commands(sim)
    assert any("4-4 dvg=350 drg=0 failed" in r.getMessage() for r in caplog.records)


def test_stop_when_waiting_keeps_the_references_order(http, sim):
    """Known to be waiting: 4-4, 6-4, 1-4, as the reference sends them."""
    assert http.get("/remote/get/status")[0] == 200      # the link learns the mode (Waiting)
    sim.clear()
    status, body = http.get("/dcdc/set", query="mode=0x0000&dvg=350.0&dig=0.0&drg=0")
    assert status == 200, body
    assert commands(sim)[:3] == ["4-4", "6-4", "1-4"], commands(sim)


def test_stop_fills_the_body_from_reads(http, sim):
    """What was not written is read (4-1, 6-1): the body keeps its blocks."""
    running(http, sim)
    status, body = http.get("/dcdc/set", query="mode=0x0000&dvg=0&dig=abc&drg=0")
    assert status == 200, body
    assert set(body) == {"status", "meter", "vdis", "param"}
    assert body["vdis"]["dvg"] == pytest.approx(350, abs=0.05)     # the converter's, untouched
    assert {"4-1", "6-1"} <= set(commands(sim))


def test_stop_does_not_poison_the_previous_values(http, sim):
    """A dvg that was not sent is not the 'previous value' of the next set."""
    running(http, sim)
    assert http.get("/dcdc/set", query=APIS_MAIN_WAIT)[0] == 200
    status, body = http.get("/dcdc/set", mode="0x0014", dig=1.0)     # dvg: the last applied, 350
    assert status == 200, body
    assert body["vdis"]["dvg"] == pytest.approx(350, abs=0.05)


def test_other_modes_keep_the_strict_check(http, sim):
    """Every other request is checked whole before a byte is sent."""
    running(http, sim)
    status, body = http.get("/dcdc/set", query="mode=0x0014&dvg=0.0&dig=0.0&drg=0")
    assert status == 400 and "dvg=0" in body["err"], body
    assert commands(sim) == []
