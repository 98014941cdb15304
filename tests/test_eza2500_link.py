"""EZA2500Link, the converter's bus owner, against the pty simulator."""
import dataclasses
import logging
import os
import threading
import time
from typing import Iterator, List, Tuple

import pytest
import serial
from conftest import held_line

import eza2500
from eza2500 import codec
from eza2500.link import EZA2500Link, LinkSettings, describe, link_settings
from essx.essx_config import DcdcSection
from essx_sim.converter import EZA2500Simulator
from essx.essx_exception import (
    ESSXDeviceException,
    ESSXIOException,
    ESSXTimeoutException,
    ESSXValueException,
)
from essx.exchange import Exchange

AD1, AD2 = 0, 16
SIX_FOUR = dict(cib=52, dig=2.5, ubv=40, ugv=300, obv=59, ogv=400)


@pytest.fixture
def rig(tmp_path, no_leaks) -> Iterator[Tuple[EZA2500Simulator, EZA2500Link, List[Exchange]]]:
    """(sim, link, exchanges): a link over a pyserial port on the simulator's
    pty, with a listener collecting every Exchange."""
    sim = EZA2500Simulator(AD1, AD2, 19200, 0.005, link=str(tmp_path / "ttyEZA"))
    sim.start()
    ser = serial.Serial(sim.port, 19200, timeout=0.01)
    link = EZA2500Link(eza2500.EZA2500Device(ser), AD1, AD2, number_of_timeout_retry=2,
                       number_of_dcdc_error_retry=2, wait_for_retry=0.01, command_interval=0.0)
    seen: List[Exchange] = []
    link.listeners.add(seen.append)
    try:
        yield sim, link, seen
    finally:
        ser.close()
        sim.stop()


def test_transact_returns_the_decoded_ack_and_tracks_the_mode(rig):
    sim, link, seen = rig
    assert link.mode is None
    assert link.transact("1-1") == {"mode": 0}
    assert link.mode == 0
    assert link.transact("1-4", {"mode": 0x0041}) == {"mode": 0x0041}
    assert link.mode == 0x0041 and sim.state["mode"] == 0x0041
    sim.inject("nak", ercd=0xFFFE)
    with pytest.raises(ESSXDeviceException):
        link.transact("10-1")
    assert link.mode is None                    # unknown after any failed command
    assert [(e.command, e.outcome, e.attempt) for e in seen] == [
        ("1-1", "ack", 1), ("1-4", "ack", 1), ("10-1", "nak_0xfffe", 1)]
    assert all(e.bus == "dcdc" and e.port == link.port for e in seen)
    assert seen[1].values == {"mode": 0x0041} and seen[2].values is None
    assert "0xfffe" in seen[2].error


def test_one_encode_per_command_the_same_bytes_on_every_try(rig, monkeypatch):
    sim, link, seen = rig
    calls = []
    build = codec.build_request
    monkeypatch.setattr(codec, "build_request", lambda *a, **k: calls.append(a) or build(*a, **k))
    sim.inject("silent", 2)
    assert link.transact("6-4", SIX_FOUR)["dig"] == pytest.approx(2.5, abs=7.8125 / 2**13)
    assert len(calls) == 1
    frames = [r.raw for r in sim.received]
    assert len(frames) == 3 and len(set(frames)) == 1
    assert [(e.outcome, e.attempt) for e in seen] == [("timeout", 1), ("timeout", 2), ("ack", 3)]


@pytest.mark.parametrize("fault,kw,budget,outcome", [
    ("silent", {}, "number_of_timeout_retry", "timeout"),
    ("bad_checksum", {}, "number_of_dcdc_error_retry", "checksum"),
    ("nak", {"ercd": 0xFFFC}, "number_of_dcdc_error_retry", "nak_0xfffc"),
    ("nak", {"ercd": 0xFFFD}, "number_of_dcdc_error_retry", "nak_0xfffd"),
])
def test_each_failure_draws_on_its_budget(rig, fault, kw, budget, outcome):
    sim, link, seen = rig
    link.configure(number_of_timeout_retry=1 if budget == "number_of_dcdc_error_retry" else 3,
                   number_of_dcdc_error_retry=1 if budget == "number_of_timeout_retry" else 3)
    tries = getattr(link.settings, budget) + 1
    sim.inject(fault, None, **kw)
    with pytest.raises(Exception) as err:
        link.transact("2-1")
    sim.clear_faults()
    assert "after %d tries" % tries in str(err.value) and "2-1" in str(err.value)
    assert [r.name for r in sim.received] == ["2-1"] * tries
    assert [e.outcome for e in seen] == [outcome] * tries
    assert [e.attempt for e in seen] == list(range(1, tries + 1))


@pytest.mark.parametrize("ercd", [0xFFFF, 0xFFFE, 0xFFFB])
def test_other_naks_fail_at_once(rig, ercd):
    sim, link, _ = rig
    sim.inject("nak", None, ercd=ercd)
    with pytest.raises(ESSXDeviceException) as err:
        link.transact("6-4", SIX_FOUR)
    sim.clear_faults()
    assert err.value.ercd == ercd and "after 1 try" in str(err.value)
    assert [r.name for r in sim.received] == ["6-4"]


def test_bad_parameters_send_nothing(rig):
    sim, link, seen = rig
    with pytest.raises(ESSXValueException, match="dvg=1000"):
        link.transact("4-4", {"dvg": 1000, "drg": 0})
    with pytest.raises(ESSXValueException, match="no EZA2500 command"):
        link.request("2-4")
    assert sim.received == [] and seen == []


def test_command_interval_is_kept_before_the_next_command(rig):
    sim, link, _ = rig
    link.configure(command_interval=0.3)
    link.transact("1-1")
    link.transact("2-1")
    first, second = sim.received
    assert second.time - first.time >= 0.3


def test_failure_in_a_sequence_names_the_writes_already_applied(rig):
    sim, link, _ = rig
    set_mode = link.request("1-4", {"mode": 0x0041})
    set_voltage = link.request("4-4", {"dvg": 360, "drg": 0})

    def refuse_after_4_4(exchange: Exchange) -> None:
        if exchange.command == "4-4" and exchange.ok:
            sim.inject("nak", ercd=0xFFFE)

    link.listeners.add(refuse_after_4_4)
    with pytest.raises(ESSXDeviceException) as err:
        with link.sequence():
            link.transact(set_mode)
            link.transact(set_voltage)
            link.transact("6-4", SIX_FOUR)
    text = str(err.value)
    assert "NAK 0xfffe" in text and "6-4" in text
    assert "already applied: 1-4 mode=0x0041, 4-4 dvg=360 drg=0" in text
    assert err.value.ercd == 0xFFFE
    # a new sequence starts with nothing applied
    sim.inject("nak", ercd=0xFFFE)
    with pytest.raises(ESSXDeviceException) as err:
        link.transact("6-4", SIX_FOUR)
    assert "already applied" not in str(err.value)


def test_describe_shows_values_as_written():
    link = EZA2500Link(eza2500.EZA2500Device(serial.Serial()), AD1, AD2)
    assert describe(link.request("6-4", SIX_FOUR)) == "6-4 cib=52 dig=2.5 ubv=40 ugv=300 obv=59 ogv=400"
    assert describe(link.request("4-4", {"dvg": 360.0, "drg": 0.1})) == "4-4 dvg=360 drg=0.1"


def start_waiting(link: EZA2500Link, target, *args) -> threading.Thread:
    """Start ``target(*args)`` in a thread and return once it waits for the line."""
    before = link.waiting
    thread = threading.Thread(target=target, args=args)
    thread.start()
    deadline = time.monotonic() + 5
    while link.waiting <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert link.waiting == before + 1
    return thread


def test_busy_line_refuses_within_line_wait_and_sends_nothing(rig):
    sim, link, _ = rig
    link.configure(line_wait=0.2)
    with held_line(link):
        t0 = time.monotonic()
        with pytest.raises(ESSXTimeoutException, match="converter line busy.*nothing sent"):
            link.transact("1-4", {"mode": 0x0014})
        assert time.monotonic() - t0 >= 0.2
    assert sim.received == []
    assert link.transact("1-1") == {"mode": 0}   # the line is free again


def test_max_waiting_refuses_at_once(rig):
    sim, link, _ = rig
    link.configure(line_wait=10, max_waiting=1)
    results = []
    with held_line(link):
        waiter = start_waiting(link, lambda: results.append(link.transact("1-1")))
        with pytest.raises(ESSXTimeoutException, match="already waiting.*nothing sent"):
            link.transact("1-4", {"mode": 0x0014})
    waiter.join()
    assert results == [{"mode": 0}]
    assert [r.name for r in sim.received] == ["1-1"]


def test_line_is_granted_in_the_order_it_was_asked_for(rig):
    sim, link, _ = rig
    names = ["2-1", "4-1", "9-1", "10-1"]
    with held_line(link):
        waiters = [start_waiting(link, link.transact, name) for name in names]
    for waiter in waiters:
        waiter.join()
    assert [r.name for r in sim.received] == names


def test_sequence_is_reentrant(rig):
    sim, link, _ = rig
    link.configure(line_wait=0.2)
    with link.sequence():
        with link.sequence():
            link.transact("1-1")
        link.transact("2-1")
    assert [r.name for r in sim.received] == ["1-1", "2-1"]


def test_debug_log_names_each_frame(rig, caplog):
    _, link, _ = rig
    with caplog.at_level(logging.DEBUG, logger="eza2500.link"):
        link.transact("1-1")
    lines = [r.getMessage() for r in caplog.records if r.name == "eza2500.link"]
    assert lines == ["-> 1-1 05 00 00 10 00 10 00",
                     "<- 1-1 ACK " + codec.hexdump(codec.build_ack(AD1, AD2, 1, False, {"mode": 0}))]


def test_configure_applies_every_setting(rig):
    _, link, _ = rig
    link.configure(number_of_timeout_retry=4, number_of_dcdc_error_retry=5, wait_for_retry=0.5,
                   command_interval=0.25, line_wait=2, max_waiting=3, timeout=0.4)
    assert link.settings == LinkSettings(4, 5, 0.5, 0.25, 2.0, 3) and link.device.timeout == 0.4
    assert isinstance(link.settings.line_wait, float)


def test_configure_keeps_what_is_none_and_refuses_unknown_names(rig):
    _, link, _ = rig
    before = link.settings
    link.configure(number_of_timeout_retry=None, line_wait=None, timeout=None)
    assert link.settings == before
    with pytest.raises(TypeError, match="EZA2500Link has no setting 'timeout_retries'"):
        link.configure(command_interval=0.5, timeout_retries=1)
    with pytest.raises(ValueError):
        link.configure(command_interval=0.5, wait_for_retry="soon")
    assert link.settings == before                  # nothing applied by a refused call
    with pytest.raises(TypeError, match="no setting 'retry_wait'"):
        EZA2500Link(eza2500.EZA2500Device(serial.Serial()), AD1, AD2, retry_wait=0.1)


def test_link_settings_defaults_and_coercion():
    s = LinkSettings()
    assert (s.number_of_timeout_retry, s.number_of_dcdc_error_retry, s.wait_for_retry,
            s.command_interval, s.line_wait, s.max_waiting) == (0, 0, 0.1, 0.062, 5.0, None)
    s = LinkSettings(number_of_timeout_retry="3", wait_for_retry=1, max_waiting=2.0)
    assert (s.number_of_timeout_retry, s.wait_for_retry, s.max_waiting) == (3, 1.0, 2)
    assert type(s.wait_for_retry) is float and type(s.max_waiting) is int
    with pytest.raises(TypeError):
        LinkSettings(line_wait=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.line_wait = 1.0


def test_link_settings_from_a_section():
    section = DcdcSection(type="EZA2500", number_of_timeout_retry=1, number_of_dcdc_error_retry=2,
                          wait_for_retry=0.3, command_interval=0.062, line_wait=4.0, config={})
    assert link_settings(section) == {"number_of_timeout_retry": 1, "number_of_dcdc_error_retry": 2,
                                      "wait_for_retry": 0.3, "command_interval": 0.062, "line_wait": 4.0}
    assert link_settings(None) == {}


def test_settings_are_named_as_the_configuration_keys_with_their_defaults():
    """Every LinkSettings field but max_waiting is a DcdcSection key, with the same default."""
    keys = {f.name: f.default for f in dataclasses.fields(DcdcSection)}
    own = {f.name: f.default for f in dataclasses.fields(LinkSettings) if f.name != "max_waiting"}
    assert {k: keys[k] for k in own} == own
    assert LinkSettings(**link_settings(DcdcSection(type="EZA2500", config={}))) == LinkSettings()


# -- a port that is absent, then appears ------------------------------------------------

def test_absent_port_is_opened_when_it_appears(tmp_path, no_leaks, caplog):
    from essx.essx_rs485 import ESSXRS485

    path = str(tmp_path / "ttyUSB0")
    port = ESSXRS485(None, 19200, dir_pin="not_used")
    port.port = path                    # set, not opened: the device is absent
    link = EZA2500Link(eza2500.EZA2500Device(port), AD1, AD2, number_of_timeout_retry=1,
                       wait_for_retry=0.01, command_interval=0.0)
    assert not link.is_open and link.port == path
    sim = EZA2500Simulator(AD1, AD2, link=path)
    try:
        with caplog.at_level(logging.INFO, logger="eza2500.eza2500_device"):
            for _ in range(3):
                with pytest.raises(ESSXIOException) as err:
                    link.transact("1-1")
                assert "converter port %s: No such file or directory" % path in str(err.value)
            sim.start()
            assert link.transact("1-1") == {"mode": 0} and link.is_open
            assert link.transact("2-1")["cst"] == 0
        logged = [(r.levelname, r.getMessage()) for r in caplog.records]
        unavailable = "converter port %s unavailable: No such file or directory; tried again at every command"
        assert logged == [("WARNING", unavailable % path),
                          ("INFO", "converter port %s opened" % path)]
    finally:
        port.close()
        sim.stop()
    assert not os.path.lexists(path)
