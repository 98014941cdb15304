"""The simulated battery: register map, faults, pacing, life cycle, script."""
import os
import signal
import subprocess
import sys
import time

import pytest
import serial
from conftest import read_until
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from essx_sim import rtu
from essx_sim.battery import BatterySimulator
from essx.essx_modbus import ESSXModbusClient

DRIVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers")


@pytest.fixture
def sim(battery_sim):
    return battery_sim


@pytest.fixture
def client(sim):
    modbus = ESSXModbusClient(method="rtu", port=sim.port, timeout=0.3, dir_pin="not_used")
    yield modbus
    modbus.close()


def _request(unit, function, address, count):
    body = bytes((unit, function)) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return body + rtu.crc16(body)


# -- register map (docs/battery-registers.md) ------------------------------------------
def test_register_map(client):
    assert client.read_input_registers(0, count=3, device_id=1).registers == [0x3031, 0x3030, 0x3030]
    assert client.read_input_registers(9, count=1, device_id=1).registers == [int.from_bytes(b"SM", "big")]
    assert client.read_input_registers(29, count=2, device_id=1).registers == [555, 0]


def test_undefined_address_answers_illegal_data_address(client):
    reply = client.read_input_registers(3, count=1, device_id=1)
    assert reply.isError() and reply.exception_code == 2


def test_run_time_values_reach_the_registers(sim, client):
    sim.rsoc, sim.permitted = 12.3, False
    assert client.read_input_registers(29, count=2, device_id=1).registers == [123, 1]
    assert (sim.rsoc, sim.permitted) == (12.3, False)


@pytest.mark.parametrize("value", [-0.1, 100.1])
def test_rsoc_outside_0_100_is_refused(value):
    with pytest.raises(ValueError, match="rsoc"):
        BatterySimulator(rsoc=value)


# -- faults -----------------------------------------------------------------------
def test_exception_fault_answers_the_next_n_requests(sim, client):
    sim.inject("exception", count=2, code=6)
    for _ in range(2):
        reply = client.read_input_registers(29, count=2, device_id=1)
        assert reply.isError() and reply.exception_code == 6
    assert client.read_input_registers(29, count=2, device_id=1).registers == [555, 0]


def test_silent_and_clear_faults(sim, client):
    sim.silent = True
    sim.inject("bad_crc", count=5)
    with pytest.raises(Exception, match="no valid reply within 0.3 s: nothing received"):
        client.read_input_registers(29, count=1, device_id=1)
    sim.clear_faults()
    assert not sim.silent
    assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
    assert sim.requests == 2


def test_bad_crc_fault_corrupts_only_the_crc(sim):
    sim.inject("bad_crc")
    with serial.Serial(sim.port, timeout=0.5) as port:
        port.write(_request(1, 4, 29, 1))
        reply = port.read(7)
    assert reply[:5] == bytes.fromhex("010402022b")
    assert not rtu.crc_ok(reply)
    assert reply[5:] != rtu.crc16(reply[:5])


def _raw_exchange(sim, request, nbytes, timeout=1.0):
    """Write ``request`` to the simulator; the ``nbytes`` bytes that come back (fewer on timeout)."""
    with serial.Serial(sim.port, timeout=timeout) as port:
        port.write(request)
        return port.read(nbytes)


GOOD_REPLY = bytes.fromhex("010404022b0000")  # unit 1, fc 4, 4 bytes: 555, 0 (CRC follows)


@pytest.mark.parametrize("kind, expected", [
    ("echo", lambda request: request + GOOD_REPLY + rtu.crc16(GOOD_REPLY)),
    ("other_unit", lambda request: b"\x02" + GOOD_REPLY[1:] + rtu.crc16(b"\x02" + GOOD_REPLY[1:])),
    ("other_function", lambda request: GOOD_REPLY[:1] + b"\x03" + GOOD_REPLY[2:]
     + rtu.crc16(GOOD_REPLY[:1] + b"\x03" + GOOD_REPLY[2:])),
    ("bad_count", lambda request: bytes.fromhex("010406022b00000000")
     + rtu.crc16(bytes.fromhex("010406022b00000000"))),
])
def test_reply_faults_send_exactly_these_bytes(sim, kind, expected):
    sim.inject(kind)
    request = _request(1, 4, 29, 2)
    want = expected(request)
    assert _raw_exchange(sim, request, len(want) + 1, timeout=0.5) == want
    assert _raw_exchange(sim, request, 10, timeout=0.5) == GOOD_REPLY + rtu.crc16(GOOD_REPLY)


def test_noise_comes_before_the_reply_and_noise_only_instead(sim):
    request = _request(1, 4, 29, 2)
    sim.inject("noise", nbytes=20)
    got = _raw_exchange(sim, request, 20 + 9)
    assert got[20:] == GOOD_REPLY + rtu.crc16(GOOD_REPLY) and len(got) == 29
    sim.inject("noise_only", nbytes=30)
    got = _raw_exchange(sim, request, 30 + 9, timeout=0.5)
    assert len(got) == 30 and GOOD_REPLY not in got
    assert sim.requests == 2


def test_faults_combine_and_clear(sim):
    request = _request(1, 4, 29, 2)
    sim.inject("echo", 2)
    sim.inject("other_unit", 1)
    got = _raw_exchange(sim, request, 8 + 9 + 1, timeout=0.5)
    assert got[:8] == request and got[8] == 2 and len(got) == 17
    sim.clear_faults()
    assert _raw_exchange(sim, request, 10, timeout=0.5) == GOOD_REPLY + rtu.crc16(GOOD_REPLY)


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "noise", "nbytes": 0}, "nbytes=0"), ({"kind": "echo", "count": 0}, "count=0"),
    ({"kind": "exception", "code": 0}, "code=0"),
])
def test_bad_fault_arguments_are_refused(sim, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sim.inject(**kwargs)


def test_unknown_fault_is_refused(sim):
    with pytest.raises(ValueError, match="'jam' is not known.*'noise_only'"):
        sim.inject("jam")


def test_bad_request_crc_and_other_units_get_no_reply(sim):
    with serial.Serial(sim.port, timeout=0.2) as port:
        port.write(_request(1, 4, 29, 1)[:-1] + b"\x00")
        port.write(_request(7, 4, 29, 1))
        assert port.read(1) == b""
    assert sim.requests == 1  # the frame for unit 7 was received, the corrupt one not
    assert sim.frames[-1][0] == 7


# -- pacing and collisions ---------------------------------------------------------------
def test_reply_is_paced_at_the_baud_rate_after_the_turnaround(tmp_path, no_leaks):
    baud, turnaround = 1200, 0.02
    with BatterySimulator(baudrate=baud, turnaround=turnaround) as sim:
        with serial.Serial(sim.port, timeout=2) as port:
            request = _request(1, 4, 29, 2)
            start = time.monotonic()
            port.write(request)
            reply = port.read(9)
            elapsed = time.monotonic() - start
    assert rtu.crc_ok(reply)
    # Lower bound only (cannot be early by design): request + turnaround + reply.
    char = 10.0 / baud
    assert elapsed >= len(request) * char + turnaround + (len(reply) - 1) * char


def test_request_during_a_reply_counts_as_a_collision(no_leaks):
    with BatterySimulator(baudrate=300, turnaround=0) as sim:
        with serial.Serial(sim.port, timeout=3) as port:
            port.write(_request(1, 4, 29, 2))
            assert len(port.read(1)) == 1  # the reply has begun: 8 more bytes take 0.27 s
            port.write(_request(1, 4, 29, 1))
            port.read(8 + 7)
    assert sim.collisions == 8
    assert sum(c.nbytes for c in sim.collision_log) == 8 and {c.reply for c in sim.collision_log} == {1}


# -- life cycle -----------------------------------------------------------------------
def test_link_points_to_the_pty_and_is_removed_on_stop(tmp_path, no_leaks):
    link = tmp_path / "ttyBAT"
    os.symlink("/nonexistent", link)  # a stale link from an earlier run is replaced
    sim = BatterySimulator(link=str(link)).start()
    try:
        assert sim.port == str(link)
        assert os.readlink(link).startswith("/dev/pts/")
    finally:
        sim.stop()
    sim.stop()  # idempotent
    assert not os.path.lexists(link)


def test_link_over_a_regular_file_is_refused(tmp_path, no_leaks):
    path = tmp_path / "file"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="not a symlink"):
        BatterySimulator(link=str(path)).start()
    assert path.read_text() == "keep me"


def test_without_link_the_port_is_the_pty(no_leaks):
    with BatterySimulator() as sim:
        assert sim.port.startswith("/dev/pts/")
    assert sim.port is None


def test_reopen_moves_the_link_to_a_new_pty(sim):
    old = os.readlink(sim.port)
    assert sim.reopen() == sim.port
    assert os.readlink(sim.port) != old


def test_a_failed_reopen_raises_and_the_old_pty_keeps_serving(sim, client):
    assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
    os.unlink(sim.port)
    with open(sim.port, "w") as f:
        f.write("keep me")
    with pytest.raises(ValueError, match="not a symlink"):
        sim.reopen()
    assert client.read_input_registers(29, count=1, device_id=1).registers == [555]


def test_two_simulators_run_side_by_side(tmp_path, no_leaks):
    with BatterySimulator(rsoc=10.0) as first, BatterySimulator(rsoc=20.0, unit=2) as second:
        for sim, unit, raw in ((first, 1, 100), (second, 2, 200)):
            modbus = ESSXModbusClient(method="rtu", port=sim.port, timeout=0.3, dir_pin="not_used")
            try:
                assert modbus.read_input_registers(29, count=1, device_id=unit).registers == [raw]
            finally:
                modbus.close()


def test_runs_as_a_script_until_sigterm(tmp_path):
    link = tmp_path / "ttyBAT"
    env = dict(os.environ, PYTHONPATH=DRIVERS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "essx_sim.battery", "--link", str(link),
         "--rsoc", "42.0", "--not-permitted", "--baud", "19200"],
        stderr=subprocess.PIPE, env=env)
    try:
        read_until(proc.stderr, b"serving on", time.monotonic() + 20)
        modbus = ESSXModbusClient(method="rtu", port=str(link), timeout=0.5, dir_pin="not_used")
        try:
            assert modbus.read_input_registers(29, count=2, device_id=1).registers == [420, 1]
        finally:
            modbus.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not os.path.lexists(link)


# -- RTU helpers -----------------------------------------------------------------------
@given(st.binary(min_size=2, max_size=256))  # a frame is unit + function at least
def test_crc16_matches_pymodbus(data):
    assert rtu.crc16(data) == FramerRTU.compute_CRC(data).to_bytes(2, "big")
    assert rtu.crc_ok(data + rtu.crc16(data))


@given(st.integers(1, 247), st.integers(1, 127), st.integers(1, 255))
def test_exception_reply_is_a_valid_frame(unit, function, code):
    frame = rtu.exception_reply(unit, function, code)
    assert rtu.reply_length(frame) == len(frame) == 5
    assert rtu.crc_ok(frame) and frame[1] == function | 0x80


def test_frame_lengths():
    assert rtu.request_length(_request(1, 4, 29, 2)) == 8
    assert rtu.request_length(b"\x01\x10\x00\x00\x00\x02\x04") == 13
    assert rtu.request_length(b"\x01") is None
    assert rtu.request_length(b"\x01\x2b") == 0
    assert rtu.reply_length(b"\x01\x04\x04") == 9
    assert rtu.reply_length(b"\x01\x04") is None
