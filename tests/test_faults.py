"""Faults on both buses, seen through HTTP (docs/web-api.md, docs/reference-defects.md).

Each test injects a fault into a pty simulator and checks four things:

* the HTTP answer: 200 when the retries absorb the fault, else 400 with an
  ``err`` that names the fault (the NAK code and its meaning, "bad checksum",
  "no complete reply", the battery's Modbus exception, the missing port);
* the elapsed time, against a budget computed from the configuration:
  ``tries x (timeout + wait_for_retry) + MARGIN`` for the converter, where
  ``tries`` counts every command the route puts on the line (retries
  included), and ``TRIES x timeout + (TRIES - 1) x RETRY_WAIT_S + MARGIN``
  for the battery;
* the exact commands (or Modbus requests) the simulator saw, where the fault
  makes that count deterministic;
* that the server still serves afterwards.

Unplugging: a serial device that disappears and comes back (the simulator's
``reopen()``: the old pty is closed, a new one appears at the same symlink)
is absorbed by the retry of the request that meets it: the I/O error closes
the port, the next try opens the path again, and the request answers 200.
While the device is gone altogether (the symlink removed), requests answer
400 naming the port; the first request after it is back answers 200, with no
restart.
"""

import os
import time

import pytest

from battery_emulator.battery_emulator import RETRY_WAIT_S, TRIES
from conftest import ServerThread, fast_config, with_settings
from conftest import commands
from conftest import METER_KEYS

#: Allowance on top of the retry budget: HTTP, thread switches, wire time of
#: the commands that succeed, a loaded CI machine (seconds).
MARGIN = 0.5

STATUS_ROUTE = "/remote/get/status"
STATUS_COMMANDS = ["1-1", "2-1", "10-1"]


# -- helpers ----------------------------------------------------------------------

def timed_get(http, path, **params):
    """(status, body, elapsed seconds) of one GET."""
    t0 = time.monotonic()
    status, body = http.get(path, **params)
    return status, body, time.monotonic() - t0


def dcdc_setting(http, key):
    return getattr(http.system.controller.dcdc_config, key)


def converter_budget(http, tries):
    """Upper bound (s) for a converter route that puts *tries* commands on the line."""
    per_try = float(dcdc_setting(http, "timeout")) + float(dcdc_setting(http, "wait_for_retry"))
    return tries * per_try + MARGIN


def battery_budget(http):
    """Upper bound (s) for a battery read that fails both of its tries."""
    timeout = float(http.system.modbus.timeout)
    return TRIES * timeout + (TRIES - 1) * RETRY_WAIT_S + MARGIN


def assert_serves(http):
    """Both buses answer again after a fault was cleared."""
    status, body = http.get(STATUS_ROUTE)
    assert status == 200, body
    status, body = http.get("/1/log/data")
    assert status == 200, body


#: Battery Modbus timeout for these tests (s): a 9600-baud reply takes ~10 ms,
#: and the silent-battery tests cost TRIES x this each.
BATTERY_TIMEOUT = 0.15


def faults_config():
    return with_settings(fast_config(), battery_kwparams={"timeout": BATTERY_TIMEOUT})


@pytest.fixture
def system(no_leaks):
    """As conftest's, with a shorter battery timeout."""
    from essx_server import System

    s = System(faults_config(), simulate=True, watch=False)
    yield s
    s.close()


@pytest.fixture
def bsim(http):
    s = http.system.battery_sim
    yield s
    s.clear_faults()


# -- converter faults ---------------------------------------------------------------

ONCE = [
    # (fault, inject() keywords)
    ("silent", {}),
    ("lost", {}),
    ("bad_checksum", {}),
    ("half", {}),
    ("nak", {"ercd": 0xFFFC}),
    ("nak", {"ercd": 0xFFFD}),
]


@pytest.mark.parametrize("fault,kw", ONCE, ids=lambda v: v if isinstance(v, str) else str(v))
def test_one_converter_fault_is_retried(http, sim, fault, kw):
    sim.inject(fault, 1, **kw)
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    assert status == 200, body
    assert set(body["meter"]) == METER_KEYS
    expected = ["1-1", "1-1", "2-1", "10-1"]
    assert commands(sim) == expected
    assert [r.fault for r in sim.received] == [fault, None, None, None]
    assert elapsed <= converter_budget(http, len(expected)), elapsed
    assert_serves(http)


PERSISTENT = [
    # (fault, inject() keywords, retry budget key, fragments the error must contain)
    ("silent", {}, "number_of_timeout_retry", ["1-1", "no complete reply"]),
    ("lost", {}, "number_of_timeout_retry", ["1-1", "no complete reply"]),
    ("half", {}, "number_of_timeout_retry", ["1-1", "no complete reply", "bytes pending: 02"]),
    ("bad_checksum", {}, "number_of_dcdc_error_retry", ["1-1", "bad checksum"]),
    ("nak", {"ercd": 0xFFFC}, "number_of_dcdc_error_retry", ["1-1", "NAK 0xfffc", "system busy"]),
    ("nak", {"ercd": 0xFFFD}, "number_of_dcdc_error_retry",
     ["1-1", "NAK 0xfffd", "normal, but cannot accept now"]),
]


@pytest.mark.parametrize("fault,kw,budget_key,fragments", PERSISTENT,
                         ids=["silent", "lost", "half", "bad_checksum", "nak-fffc", "nak-fffd"])
def test_persistent_converter_fault_is_400_naming_it(http, sim, fault, kw, budget_key, fragments):
    sim.inject(fault, None, **kw)
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    sim.clear_faults()
    tries = int(dcdc_setting(http, budget_key)) + 1
    assert status == 400, body
    assert set(body) == {"err"}
    for fragment in fragments:
        assert fragment in body["err"], body["err"]
    assert "after %d tries" % tries in body["err"]
    assert commands(sim) == ["1-1"] * tries
    assert elapsed <= converter_budget(http, tries), elapsed
    assert_serves(http)


@pytest.mark.parametrize("ercd,meaning", [(0xFFFF, "command not supported"),
                                          (0xFFFE, "parameter invalid"),
                                          (0xFFFB, "internal communication error")])
@pytest.mark.parametrize("path,params,first", [(STATUS_ROUTE, {}, "1-1"),
                                               ("/remote/set/current", {"dig": 1}, "6-4")])
def test_fatal_nak_is_not_retried(http, sim, ercd, meaning, path, params, first):
    sim.inject("nak", None, ercd=ercd)
    status, body, elapsed = timed_get(http, path, **params)
    sim.clear_faults()
    assert status == 400, body
    assert "NAK 0x%04x" % ercd in body["err"] and meaning in body["err"], body["err"]
    assert first in body["err"]
    assert commands(sim) == [first]          # exactly one command on the line
    assert elapsed <= converter_budget(http, 1), elapsed
    assert_serves(http)


@pytest.mark.parametrize("count", [1, None], ids=["once", "every-reply"])
def test_noise_before_the_reply_is_skipped(http, sim, count):
    sim.inject("garbage", count, nbytes=16)
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    sim.clear_faults()
    assert status == 200, body
    assert commands(sim) == STATUS_COMMANDS   # no retry was needed
    assert elapsed <= converter_budget(http, len(STATUS_COMMANDS)), elapsed


def wait_until_quiet(sim, quiet=0.3, limit=5.0):
    """Wait until the simulator has received nothing new for *quiet* s (at most *limit* s);
    returns its records then."""
    deadline = time.monotonic() + limit
    seen, since = len(sim.received), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(0.02)
        if len(sim.received) != seen:
            seen, since = len(sim.received), time.monotonic()
    return sim.received


def test_noise_longer_than_the_timeout_is_bounded(http, sim):
    """docs/reference-defects.md: a line full of noise must not hold a request past its timeout.

    The noise before each reply lasts twice the timeout on the wire, so each
    try ends at its deadline; a late reply may still be taken by the next try
    of the same command, so which command finally fails is not fixed, but
    every try the client made reached the simulator and is counted.
    """
    byte_time = 10 / 19200
    nbytes = int(2 * float(dcdc_setting(http, "timeout")) / byte_time)
    sim.inject("garbage", None, nbytes=nbytes)
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    sim.clear_faults()
    assert status == 400, body
    assert "no complete reply" in body["err"] and "discarded" in body["err"], body["err"]
    records = wait_until_quiet(sim)
    tries = len(records)
    assert elapsed <= converter_budget(http, tries), (elapsed, tries)
    # the simulator queues each noisy reply behind the one before: let the last leave the line
    line_free_at = records[0].time + tries * (nbytes + 32) * byte_time
    time.sleep(max(0.0, line_free_at - time.monotonic()))
    assert_serves(http)


def test_reply_delayed_within_the_timeout_is_taken(http, sim):
    sim.inject("delay", None, seconds=float(dcdc_setting(http, "timeout")) / 4)
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    sim.clear_faults()
    assert status == 200, body
    assert commands(sim) == STATUS_COMMANDS
    assert elapsed <= converter_budget(http, len(STATUS_COMMANDS)), elapsed


def test_lost_write_acknowledgement_is_retried(http, sim):
    """The converter applied 6-4 but its ACK was lost: 6-4 is sent again (it is idempotent)."""
    sim.inject("lost", 1)
    status, body, elapsed = timed_get(http, "/remote/set/current", dig=1.5)
    assert status == 200, body
    assert abs(body["param"]["dig"] - 1.5) <= 7.8125 / 2**13
    assert commands(sim) == ["6-4", "6-4", "10-1"]
    assert elapsed <= converter_budget(http, 3), elapsed


def test_persistent_fault_in_the_middle_of_a_set(http, sim):
    """A set that fails half-way answers 400 and is not remembered as the previous value."""
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    sim.clear()
    sim.inject("nak", None, ercd=0xFFFC)
    status, body, elapsed = timed_get(http, "/remote/set", mode="0x0041", dvg=360, dig=1, drg=0)
    sim.clear_faults()
    tries = int(dcdc_setting(http, "number_of_dcdc_error_retry")) + 1
    assert status == 400 and "NAK 0xfffc" in body["err"], body
    assert commands(sim) == ["1-4"] * tries
    assert elapsed <= converter_budget(http, tries), elapsed
    # the previous value is still the one of the call that succeeded
    sim.clear()
    status, body = http.get("/remote/set", dig=2)
    assert status == 200, body
    assert body["status"]["operationMode"] == "Grid Autonomy"
    assert abs(body["vdis"]["dvg"] - 350) <= 380 / 2**14


def test_failure_in_the_middle_of_a_set_names_what_was_applied(http, sim):
    """issue 8: in Grid Autonomy, 6-4 refused after 1-4 and 4-4 took effect; the error says so."""
    assert http.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)[0] == 200
    sim.clear()

    def refuse_6_4(exchange):
        if exchange.command == "4-4" and exchange.ok:      # the next command is 6-4
            sim.inject("nak", 1, ercd=0xFFFE)

    link = http.system.controller.link
    link.listeners.add(refuse_6_4)
    try:
        status, body = http.get("/remote/set", mode="0x0041", dvg=360, dig=2.5)
    finally:
        link.listeners.remove(refuse_6_4)
    assert status == 400, body
    err = body["err"]
    assert "NAK 0xfffe (parameter invalid)" in err and "6-4" in err, err
    assert "already applied: 1-4 mode=0x0041, 4-4 dvg=360 drg=0" in err, err
    assert commands(sim) == ["1-4", "4-4", "6-4"]
    assert sim.state["mode"] == 0x0041 and abs(sim.state["dvg"] - 360) <= 380 / 2**14


# -- battery faults ------------------------------------------------------------------

BATTERY_ROUTES = ["/1/log/data", "/battery/get", "/all/get"]
CONVERTER_ROUTES = [("/remote/get", {}), ("/dcdc/get", {}), (STATUS_ROUTE, {}),
                    ("/dcdc/get/status", {}), ("/remote/set/current", {"dig": 1}),
                    ("/remote/set/voltage", {"dvg": 350})]


def test_silent_battery_fails_battery_routes_only(http, sim, bsim):
    bsim.silent = True
    for path in BATTERY_ROUTES:
        before = bsim.requests
        status, body, elapsed = timed_get(http, path)
        assert status == 400, (path, body)
        assert set(body) == {"err"}
        assert "battery could not be read" in body["err"] and "no valid reply" in body["err"], body
        assert bsim.requests - before == TRIES, path
        assert elapsed <= battery_budget(http), (path, elapsed)
    for path, params in CONVERTER_ROUTES:
        sim.clear()
        status, body, elapsed = timed_get(http, path, **params)
        assert status == 200, (path, body)
        assert elapsed <= converter_budget(http, len(commands(sim))), (path, elapsed)
    bsim.silent = False
    assert_serves(http)


def test_battery_exception_response_is_400_with_its_meaning(http, bsim):
    """docs/reference-defects.md: an exception response crashed the reference's read."""
    before = bsim.requests
    bsim.inject("exception", TRIES, code=4)
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 400, body
    assert "Modbus exception 4 (server device failure)" in body["err"], body["err"]
    assert bsim.requests - before == TRIES
    assert elapsed <= battery_budget(http), elapsed
    assert_serves(http)


def test_one_battery_exception_is_retried(http, bsim):
    before = bsim.requests
    bsim.inject("exception", 1, code=6)
    status, body, elapsed = timed_get(http, "/battery/get")
    assert status == 200, body
    assert body == {"rsoc": bsim.rsoc, "battery_operation_status": 3}
    assert bsim.requests - before == 2
    assert elapsed <= battery_budget(http), elapsed


def test_one_bad_battery_crc_is_retried(http, bsim):
    """docs/reference-defects.md: one bad CRC failed the reference's read at once."""
    before = bsim.requests
    bsim.inject("bad_crc", 1)
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 200, body
    assert body["battery_comm_err"] == 0 and body["rsoc"] == bsim.rsoc
    assert bsim.requests - before == 2
    assert elapsed <= battery_budget(http), elapsed


def test_persistent_bad_battery_crc_is_400(http, bsim):
    before = bsim.requests
    bsim.inject("bad_crc", TRIES)
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 400, body
    assert "corrupt frame" in body["err"] or "CRC" in body["err"], body["err"]
    assert bsim.requests - before == TRIES
    assert elapsed <= battery_budget(http), elapsed
    assert_serves(http)


# -- serial devices that disappear and come back -----------------------------------------

@pytest.fixture
def linked(tmp_path, no_leaks):
    """A server whose converter and battery ports are symlinks to the simulators' ptys,
    as /dev/serial/by-id links are to a USB-RS485 adapter; everything it opened is
    closed after the test, also when its first requests fail."""
    from essx_sim.battery import BatterySimulator
    from essx_server import System, create_app
    from essx_sim.converter import EZA2500Simulator

    config = faults_config()
    dev = config.dcdc_dev
    link, blink = str(tmp_path / "ttyEZA"), str(tmp_path / "ttyBAT")
    sim = EZA2500Simulator(ad1=dev.address1, ad2=dev.address2, link=link).start()
    bsim = None
    try:
        bsim = BatterySimulator(unit=config.battery_dev.unit, link=blink).start()
        config = with_settings(config, dcdc_dev={"port": link, "baudrate": 19200, "dir_pin": "not_used"},
                               battery_kwparams={"port": blink, "dir_pin": "not_used"})
        system = System(config, simulate=False, watch=False)
    except BaseException:
        sim.stop()
        if bsim is not None:
            bsim.stop()
        raise
    system.dcdc_sim, system.battery_sim = sim, bsim
    system.simulators = [sim, bsim]      # System.close() stops them
    server = ServerThread(create_app(system.controller))
    server.client.system = system
    try:
        assert server.client.get(STATUS_ROUTE)[0] == 200
        assert server.client.get("/1/log/data")[0] == 200
        yield server.client
    finally:
        server.stop()
        system.close()


def test_converter_replugged_is_reopened_by_the_next_request(linked):
    http, sim = linked, linked.system.dcdc_sim
    old = os.readlink(sim.link)
    sim.reopen()
    assert os.readlink(sim.link) != old
    sim.clear()
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    assert status == 200, body
    # the failed try met the dead port before writing; the new pty saw one clean sequence
    assert commands(sim) == STATUS_COMMANDS
    assert elapsed <= converter_budget(http, 1 + len(STATUS_COMMANDS)), elapsed
    assert_serves(http)


def test_converter_unplugged_then_back(linked):
    http, sim = linked, linked.system.dcdc_sim
    sim.stop()                                  # the device and its link are gone
    assert not os.path.lexists(sim.link)
    tries = int(dcdc_setting(http, "number_of_timeout_retry")) + 1
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    assert status == 400, body
    assert sim.link in body["err"] and "1-1" in body["err"], body["err"]
    assert "after %d tries" % tries in body["err"]
    assert elapsed <= converter_budget(http, tries), elapsed
    assert http.get("/1/log/data")[0] == 200    # the other bus is not affected
    sim.start()                                 # plugged in again
    sim.clear()
    status, body, elapsed = timed_get(http, STATUS_ROUTE)
    assert status == 200, body
    assert commands(sim) == STATUS_COMMANDS
    assert elapsed <= converter_budget(http, len(STATUS_COMMANDS)), elapsed


def test_battery_replugged_is_reopened_by_the_next_request(linked):
    http, bsim = linked, linked.system.battery_sim
    bsim.reopen()
    before = bsim.requests
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 200, body
    assert body["rsoc"] == bsim.rsoc
    assert bsim.requests - before == 1          # the first try met the dead port
    assert elapsed <= battery_budget(http), elapsed
    assert_serves(http)


def test_battery_unplugged_then_back(linked):
    http, bsim = linked, linked.system.battery_sim
    bsim.stop()
    assert not os.path.lexists(bsim.link)
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 400, body
    assert bsim.link in body["err"], body["err"]
    assert elapsed <= battery_budget(http), elapsed
    assert http.get(STATUS_ROUTE)[0] == 200     # the converter is not affected
    bsim.start()
    before = bsim.requests
    status, body, elapsed = timed_get(http, "/1/log/data")
    assert status == 200, body
    assert bsim.requests - before == 1
    assert elapsed <= battery_budget(http), elapsed


def test_converter_absent_at_start_then_plugged(tmp_path, no_leaks, caplog):
    """issue 10: a converter port missing at start is not fatal; routes name it; it is
    opened when it appears; one log line per change."""
    import logging

    from essx.essx_rs485 import ESSXRS485
    from essx.essx_type_oes import ESSXTypeOES
    from essx_server import create_app
    from eza2500 import EZA2500Device
    from essx_sim.converter import EZA2500Simulator

    config = faults_config()
    path = str(tmp_path / "ttyUSB0")
    port = ESSXRS485(None, 19200, dir_pin="not_used")
    port.port = path                                  # configured, not opened
    controller = ESSXTypeOES(EZA2500Device(port, timeout=config.dcdc.timeout), None, config.dcdc,
                             config.battery, config.dcdc_dev.address1, config.dcdc_dev.address2,
                             "dcdc1", watch=False)
    server = ServerThread(create_app(controller))
    sim = EZA2500Simulator(config.dcdc_dev.address1, config.dcdc_dev.address2, link=path)
    try:
        with caplog.at_level(logging.INFO, logger="eza2500.eza2500_device"):
            for _ in range(3):
                status, body = server.client.get(STATUS_ROUTE)
                assert status == 400, body
                assert "converter port %s: No such file or directory" % path in body["err"], body
            assert server.client.get("/version/get")[0] == 200
            sim.start()
            status, body = server.client.get(STATUS_ROUTE)
            assert status == 200, body
            assert commands(sim) == STATUS_COMMANDS
        logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "eza2500.eza2500_device"]
        assert logged == [
            ("WARNING", "converter port %s unavailable: No such file or directory; tried again at every "
                        "command" % path),
            ("INFO", "converter port %s opened" % path)]
    finally:
        server.stop()
        controller.close()
        port.close()
        sim.stop()
