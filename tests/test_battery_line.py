"""The battery line within apis-main's attempt: deadline, junk on the line, impossible values
(docs/battery-registers.md, "Retries and deadlines", "Junk on the line", "RSOC (30030)";
docs/reference-defects.md, D18).

Every read here runs with the shipped timings (kwparams.timeout 1 s, two tries
0.5 s apart) under ``deadline.within(DEADLINE)``, the
driver's default request deadline, and must answer (a value or a named
failure) within DEADLINE + MARGIN: apis-main gives each call 5 s. Junk comes
from a scripted slave (``modbus_responder.Responder``) or the simulator's faults.
"""
import logging
import random
import re
import threading
import time

import pytest

from battery_emulator import BatteryEmulator
from battery_emulator.battery_emulator import RETRY_WAIT_S, TRIES
from essx import deadline
from essx.essx_exception import ESSXTimeoutException, ESSXValueException
from essx.essx_modbus import ESSXModbusClient
from modbus_responder import Responder, reply

TIMEOUT = 1.0  #: s, kwparams.timeout as shipped
DEADLINE = deadline.DEFAULT_S  #: s, the request deadline (4 s)
MARGIN = 0.5  #: s allowed past the deadline (scheduling, the HTTP layer's own share)
GOOD = [421, 0]  #: registers 30030/30031 of a good reply: 42.1 %, permitted
NOISE = random.Random(7).randbytes(300)  #: 300 bytes of noise, the same on every run

#: Junk before or instead of a reply: (bytes for the request ``frame``, what the error names).
JUNK = {
    "echo": (lambda frame: frame, "echo of the request only"),
    "noise": (lambda frame: NOISE, "300 bytes of noise only"),
    "other_unit": (lambda frame: reply(GOOD, unit=2), "reply from unit 2 only"),
    "other_function": (lambda frame: reply(GOOD, function=3), "function 3 reply only"),
    "bad_count": (lambda frame: reply(GOOD + [7]), "byte count 6 for 2 registers only"),
}
#: The simulator's fault kinds and what the error names when every try gets one.
SIM_FAULTS = {
    "echo": None,  # the reply follows the echo: always read
    "noise": None,  # the reply follows the noise: always read
    "noise_only": "300 bytes of noise only",
    "other_unit": "reply from unit 2 only",
    "other_function": "function 3 reply only",
    "bad_count": "byte count 6 for 2 registers only",
    "bad_crc": "a reply with a bad CRC only",
}


@pytest.fixture
def make_battery(no_leaks):
    """Build BatteryEmulators with the shipped timings; their clients are closed afterwards."""
    clients = []

    def make(port, **kwparams):
        client = ESSXModbusClient(method="rtu", port=str(port), timeout=TIMEOUT, dir_pin="not_used",
                                  **kwparams)
        clients.append(client)
        return BatteryEmulator(client, 30030, 30031, 1, retry_wait=RETRY_WAIT_S)

    yield make
    for client in clients:
        client.close()


def timed_check(battery, seconds=DEADLINE):
    """``battery.check_battery()`` under a deadline of ``seconds``; (result, elapsed s)."""
    start = time.monotonic()
    with deadline.within(seconds):
        result = battery.check_battery()
    return result, time.monotonic() - start


# -- junk on the line ----------------------------------------------------------------------
@pytest.mark.parametrize("gap", [0.0, 0.05])  # s between junk and reply: 0 is one chunk
@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_before_the_reply_is_skipped(tmp_path, make_battery, kind, gap):
    junk = JUNK[kind][0]

    def answer(n, frame):
        if gap:
            return [(0, junk(frame)), (gap, reply(GOOD))]
        return [(0, junk(frame) + reply(GOOD))]

    with Responder(tmp_path / "ttyR", answer) as rsp:
        battery = make_battery(rsp.link)
        result, elapsed = timed_check(battery)
        assert result == (42.1, 3, 0), battery.last_error
        assert len(rsp.requests) == 1
    assert elapsed < DEADLINE + MARGIN


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_junk_instead_of_the_reply_is_a_named_failure_within_the_deadline(tmp_path, make_battery,
                                                                          kind):
    junk, named = JUNK[kind]
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, junk(frame))]) as rsp:
        battery = make_battery(rsp.link)
        result, elapsed = timed_check(battery)
        assert result == (0.0, 0, -1)
        assert len(rsp.requests) == TRIES
    assert battery.last_error == ("battery unit 1, input register 30030..30031: no valid reply "
                                  "within 1 s: %s" % named)
    assert elapsed < DEADLINE + MARGIN


def test_junk_of_several_kinds_is_all_named(tmp_path, make_battery):
    def answer(n, frame):
        return [(0, frame + NOISE[:10] + reply(GOOD, unit=3) + reply(GOOD, unit=3))]

    with Responder(tmp_path / "ttyR", answer) as rsp:
        battery = make_battery(rsp.link)
        assert timed_check(battery)[0] == (0.0, 0, -1)
    assert battery.last_error.endswith(
        ": echo of the request, 10 bytes of noise, reply from unit 3 (2 times) only")


def test_noise_longer_than_the_deadline_is_cut_at_the_deadline(tmp_path, make_battery):
    """A babbling line: 8 bytes every 25 ms for 6 s, on every request."""
    def answer(n, frame):
        return [(0.025 * i, NOISE[:8]) for i in range(240)] if n == 1 else []

    with Responder(tmp_path / "ttyR", answer) as rsp:
        battery = make_battery(rsp.link)
        result, elapsed = timed_check(battery)
        assert result == (0.0, 0, -1)
        assert "bytes of noise only" in battery.last_error
        assert elapsed < DEADLINE + MARGIN


@pytest.mark.parametrize("kind", sorted(SIM_FAULTS))
def test_simulator_fault_on_every_try(battery_sim, make_battery, kind):
    battery_sim.inject(kind, TRIES)
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery)
    if SIM_FAULTS[kind] is None:
        assert result == (55.5, 3, 0), battery.last_error
        assert battery_sim.requests == 1
    else:
        assert result == (0.0, 0, -1)
        assert battery.last_error.endswith("no valid reply within 1 s: " + SIM_FAULTS[kind])
        assert battery_sim.requests == TRIES
    assert elapsed < DEADLINE + MARGIN


@pytest.mark.parametrize("kind", sorted(SIM_FAULTS))
def test_simulator_fault_on_the_first_try_only(battery_sim, make_battery, kind):
    battery_sim.inject(kind, 1)
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery)
    assert result == (55.5, 3, 0), battery.last_error
    assert elapsed < DEADLINE + MARGIN


@pytest.mark.parametrize("kwparams", [{"drop_echo": True}, {"handle_local_echo": True}])
def test_echo_settings_still_work(battery_sim, make_battery, kwparams, caplog):
    battery_sim.inject("echo", 3)
    battery = make_battery(battery_sim.port, **kwparams)
    caplog.set_level(logging.WARNING, logger="essx")
    for _ in range(3):
        assert timed_check(battery)[0] == (55.5, 3, 0), battery.last_error
    assert battery_sim.requests == 3
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]  # no echo left behind


# -- the deadline -----------------------------------------------------------------------------
def test_a_silent_battery_answers_within_the_deadline(battery_sim, make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery)
    assert result == (0.0, 0, -1)
    assert battery_sim.requests == TRIES
    assert elapsed < DEADLINE + MARGIN


def test_the_second_try_is_shortened_to_the_deadline(battery_sim, make_battery):
    """Try 1 ends at 1 s, try 2 starts at 2 s (after the wait for a late reply): 0.5 s are left."""
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery, 2.5)
    assert result == (0.0, 0, -1)
    assert battery_sim.requests == 2
    assert "(the request's deadline): nothing received" in battery.last_error
    assert 2.5 - 0.1 <= elapsed < 2.5 + MARGIN


def test_no_second_try_when_it_cannot_fit(battery_sim, make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery, 1.5)
    assert result == (0.0, 0, -1)
    assert battery_sim.requests == 1
    assert "no valid reply within 1 s: nothing received" in battery.last_error
    assert elapsed < 1.0 + MARGIN  # no 0.5 s wait for a try that could not be made


def test_first_try_shortened_by_a_short_deadline(battery_sim, make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    result, elapsed = timed_check(battery, 0.6)
    assert result == (0.0, 0, -1)
    # the window left when the try began (opening the port took a moment): 0.6 s or a little less
    assert re.search(r"no valid reply within 0\.(?:6|59\d*) s \(the request's deadline\)", battery.last_error)
    assert elapsed < 0.6 + MARGIN


def test_no_deadline_keeps_two_tries_half_a_second_apart(battery_sim, make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    start = time.monotonic()
    assert battery.check_battery() == (0.0, 0, -1)
    elapsed = time.monotonic() - start
    assert battery_sim.requests == TRIES
    assert elapsed >= 2 * TIMEOUT + RETRY_WAIT_S - 0.1


def _overlapping(battery, seconds, count=2, stagger=0.1):
    """``count`` check_battery() calls in threads, each under ``seconds`` of deadline,
    started ``stagger`` s apart; [(result, last_error seen, elapsed s from its start)]."""
    results = [None] * count

    def run(i):
        results[i] = timed_check(battery, seconds) + (battery.last_error,)

    threads = [threading.Thread(target=run, args=(i,), name="overlap-%d" % i) for i in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(stagger)  # a stagger between starts, not a deadline
    for thread in threads:
        thread.join(seconds + 5)
        assert not thread.is_alive()
    return results


def test_two_overlapping_reads_of_a_silent_battery_end_within_the_deadline(battery_sim, make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    results = _overlapping(battery, DEADLINE)
    for result, elapsed, _ in results:
        assert result == (0.0, 0, -1)
        assert elapsed < DEADLINE + MARGIN
    assert battery_sim.requests == TRIES  # the second read found no time left: nothing sent


def test_two_overlapping_reads_of_a_junk_line_end_within_the_deadline(battery_sim, make_battery):
    battery_sim.inject("noise_only", 4)
    battery = make_battery(battery_sim.port)
    for result, elapsed, _ in _overlapping(battery, DEADLINE):
        assert result == (0.0, 0, -1)
        assert elapsed < DEADLINE + MARGIN


def test_two_overlapping_reads_of_a_good_battery_both_succeed(battery_sim, make_battery):
    battery = make_battery(battery_sim.port)
    for result, elapsed, _ in _overlapping(battery, DEADLINE, stagger=0.0):
        assert result == (55.5, 3, 0)
        assert elapsed < DEADLINE + MARGIN


def test_a_read_that_cannot_get_the_line_fails_at_its_deadline_sending_nothing(battery_sim,
                                                                               make_battery):
    battery_sim.silent = True
    battery = make_battery(battery_sim.port)
    holder = threading.Thread(target=timed_check, args=(battery,), name="holder")
    holder.start()
    try:
        time.sleep(0.2)  # let the holder take the line (a stagger, not a deadline)
        with pytest.raises(ESSXTimeoutException, match="battery line was busy.*nothing was sent"):
            start = time.monotonic()
            with deadline.within(1.0):
                battery.remote_rsoc()
        assert time.monotonic() - start < 1.0 + MARGIN
    finally:
        holder.join(DEADLINE + 5)
    assert battery_sim.requests == TRIES  # the holder's two tries only


# -- impossible values --------------------------------------------------------------------------
def test_rsoc_0xffff_is_refused_naming_unit_register_and_value(tmp_path, make_battery):
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, reply([0xFFFF, 0]))]) as rsp:
        battery = make_battery(rsp.link)
        result, elapsed = timed_check(battery)
        assert result == (0.0, 0, -1)
        assert battery.read_rsoc() == 0.0  # never passed on
        with pytest.raises(ESSXValueException) as error:
            with deadline.within(DEADLINE):
                battery.remote_rsoc()
    assert elapsed < DEADLINE + MARGIN
    for text in (battery.last_error, str(error.value)):
        assert "battery unit 1" in text and "30030" in text
        assert "65535" in text and "0xffff" in text


def test_rsoc_a_little_above_100_passes_with_a_warning(tmp_path, make_battery, caplog):
    caplog.set_level(logging.WARNING, logger="battery_emulator.battery_emulator")
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, reply([1001, 0]))]) as rsp:
        battery = make_battery(rsp.link)
        assert timed_check(battery)[0] == (100.1, 3, 0)
    assert any("1001 (100.1 %), above 100 %" in r.getMessage() for r in caplog.records)


def test_rsoc_at_the_plausible_bound_passes_and_above_it_fails(tmp_path, make_battery):
    registers = [1100, 0]
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, reply(list(registers)))]) as rsp:
        battery = make_battery(rsp.link)
        assert timed_check(battery)[0] == (110.0, 3, 0)
        registers[0] = 1101
        assert timed_check(battery)[0] == (0.0, 0, -1)
    assert "1101 (0x044d)" in battery.last_error
