"""EZA2500 driver against the simulator: bytes really cross a pty."""
import os
import struct
import threading
import time

import pytest
import serial

import eza2500
from eza2500 import codec, table
from eza2500.reader import read_reply
from essx_sim.converter import EZA2500Simulator, state_key, wire_time
from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXIOException,
    ESSXTimeoutException,
    ESSXValueException,
)

AD1, AD2 = 0, 16
#: Deadline of a command that must be answered (s): an answer comes as soon as
#: the simulator sends it, so this only bounds a CPU-starved machine.
ANSWER_TIMEOUT = 1.0
#: Deadline of a command that must time out (s): the reference's 100 ms.
FAIL_TIMEOUT = 0.1


@pytest.fixture
def rig(tmp_path, no_leaks):
    """(sim, dev): a simulator on a pty (reached through a symlink) and an
    EZA2500Device over a pyserial port opened on it.  Teardown checks that no
    thread or file descriptor is left behind (``no_leaks``) nor the link."""
    sim = EZA2500Simulator(AD1, AD2, 19200, 0.005, link=str(tmp_path / "ttyEZA"))
    sim.start()
    ser = serial.Serial(sim.port, 19200, timeout=0.01)
    dev = eza2500.EZA2500Device(ser, timeout=ANSWER_TIMEOUT)
    try:
        yield sim, dev
    finally:
        ser.close()
        sim.stop()
        sim.stop()  # idempotent
    assert not os.path.lexists(str(tmp_path / "ttyEZA"))


def run(dev, name, params=None, timeout=None):
    """Send command *name* and read its reply within *timeout* s (default the device's)."""
    cmd = eza2500.COMMANDS[name](dev)
    cmd.send(AD1, AD2, params)
    return cmd.recv(None if timeout is None else time.monotonic() + timeout)


def expected(group, state):
    """What a read of ``group`` must give for simulator state ``state``."""
    return {f.name: codec.decode_value(f, codec.encode_value(f, state[state_key(group, f)], clamp=True))
            for f in group.read}


def mid(f):
    if f.allowed is not None:
        return 0x0041
    return (f.lo + f.hi) // 2 if f.is_raw else (f.lo + f.hi) / 2


# --- reading and writing ----------------------------------------------------------------


def test_low_level_timeout_is_10ms(rig):
    _, dev = rig
    assert dev.dev.timeout == 0.01 and eza2500.EZA2500Device(dev.dev).timeout == 0.1


def test_reads_back_state_of_all_16_groups(rig):
    sim, dev = rig
    values = {}
    for g in table.GROUPS:
        for i, f in enumerate(g.read):
            key = state_key(g, f)
            if f.lo is not None and not f.is_raw:
                values[key] = f.lo + (f.hi - f.lo) * (i + 1) / 7
            elif f.is_raw:
                values[key] = 0x41 if key == "mode" else (g.number * 16 + i) % (f.raw_max + 1)
    values.update(dig=3.3, grid_v=342.5, vb=50.25, tmp=41.25, v5s=4.9, fan3=1200, alm1=0, alm2=4)
    values.pop("cst")
    sim.set(**values)
    state = sim.state
    assert state["mode"] == 0x41 and state["alm2"] == 4
    for g in table.GROUPS:
        assert run(dev, g.name(False)) == expected(g, state), g.name(False)
    assert state["cst"] == 1 | 1 << 2  # charging, light alarm
    assert state["ig"] == 3.3 and state["wg"] == pytest.approx(342.5 * 3.3)


def test_write_then_read_round_trips(rig):
    sim, dev = rig
    for g in table.GROUPS:
        if g.write is None or g.number == 9:
            continue
        params = {f.name: mid(f) for f in g.write}
        want = {f.name: codec.decode_value(f, codec.encode_value(f, params[f.name])) for f in g.write}
        assert run(dev, g.name(True), params) == want
        got = run(dev, g.name(False))
        assert {k: got[k] for k in want} == want
        for k, v in want.items():
            assert sim.state[k] == v


def test_9_4_clears_alarms(rig):
    sim, dev = rig
    sim.set(alm1=1, alm2=2, alm3=3)
    assert run(dev, "9-1") == {"alm1": 1, "alm2": 2, "alm3": 3}
    assert run(dev, "2-1")["cst"] >> 2 & 3 == 1
    assert run(dev, "9-4", {"d0": 0, "d1": 0}) == {"d0": 0, "d1": 0}
    assert run(dev, "9-1") == {"alm1": 0, "alm2": 0, "alm3": 0}


@pytest.mark.parametrize("mode, running", [(0x0000, 0), (0x0041, 1), (0x0002, 2), (0x0014, 2)])
def test_meters_follow_mode(rig, mode, running):
    sim, dev = rig
    run(dev, "4-4", {"dvg": 360, "drg": 0})
    run(dev, "6-4", dict(cib=52, dig=2.5, ubv=40, ugv=300, obv=59, ogv=400))
    run(dev, "1-4", {"mode": mode})
    m = run(dev, "10-1")
    assert run(dev, "2-1")["cst"] & 3 == running
    if mode == 0:
        assert m["ig"] == m["wg"] == m["ib"] == m["wb"] == 0
    else:
        assert m["wg"] == pytest.approx(m["vg"] * m["ig"], abs=2.5)  # Q11/2500: 1.2 W a step
        assert m["ib"] == pytest.approx(m["wb"] / m["vb"], abs=0.05)  # wb step / vb
        assert (m["ig"] > 0) == (m["wg"] > 0) == (m["ib"] > 0) == (m["wb"] > 0) == (mode == 0x41)
        assert abs(m["wb"]) < abs(m["wg"]) if mode == 0x41 else abs(m["wb"]) > abs(m["wg"])
    if mode == 0x14:
        assert m["vg"] == pytest.approx(360, abs=0.03)
        assert 0 < -m["ig"] <= 2.5


def test_simulator_records_commands_in_order(rig):
    sim, dev = rig
    run(dev, "1-1")
    run(dev, "4-4", {"dvg": 300, "drg": 0.1})
    run(dev, "10-1")
    rec = sim.received
    assert [r.name for r in rec] == ["1-1", "4-4", "10-1"]
    assert [r["write"] for r in rec] == [False, True, False]
    assert rec[1].params == {"dvg": 299.98291015625, "drg": 0.0999755859375}
    assert rec[1].raw == bytes.fromhex("05 04 00 10 1a 86 32 33 03 18 01")
    assert rec[1].cmd == 0x1A and rec[0].params == {}
    assert rec[0].time <= rec[1].time <= rec[2].time
    assert [r.name for r in sim.writes()] == ["4-4"]
    sim.clear()
    assert sim.received == []
    assert sim.collisions == 0


def test_bad_values_write_nothing(rig):
    sim, dev = rig
    with pytest.raises(ESSXValueException):
        eza2500.Command0404(dev).send(AD1, AD2, {"dvg": 1000, "drg": 0})
    with pytest.raises(ESSXValueException):
        eza2500.Command0104(dev).send(AD1, AD2, {"mode": 3})
    run(dev, "1-1")  # the line carried only this
    assert [r.name for r in sim.received] == ["1-1"]


# --- the simulator's NAKs ---------------------------------------------------------------------


def _raw_exchange(dev, frame, group, write):
    dev.write(codec.with_checksum(frame))
    return codec.parse_reply(read_reply(dev, group, write, None, AD1, AD2), group, write)


@pytest.mark.parametrize("frame", [
    bytes.fromhex("05 04 00 10 1a") + struct.pack("<HH", 20000, 0) + b"\0\0",    # dvg 463.9 V
    bytes.fromhex("05 04 00 10 1a") + struct.pack("<HH", 11000, 0) + b"\0\0",    # dvg 255.1 V
    bytes.fromhex("05 02 00 10 00 03 00 00 00"),                                # mode 0x0003
])
def test_nak_parameter_invalid(rig, frame):
    sim, dev = rig
    g = table.group_by_cmd(frame[4])
    with pytest.raises(ESSXDeviceException) as err:
        _raw_exchange(dev, frame, g, True)
    assert err.value.ercd == 0xFFFE and not err.value.retryable
    assert sim.state["dvg"] == 350.0 and sim.state["mode"] == 0


def test_nak_not_supported(rig):
    _, dev = rig
    for number in (2, 10, 11, 12, 13, 14, 15, 16):
        g = table.group(number)
        with pytest.raises(ESSXDeviceException) as err:
            _raw_exchange(dev, bytes((5, 2, AD1, AD2, g.cmd, 0, 0, 0, 0)), g, False)
        assert err.value.ercd == 0xFFFF
    dev.write(codec.with_checksum(bytes.fromhex("05 00 00 10 33 00 00")))
    assert dev.read(9) == codec.build_nak(AD1, AD2, 0x33, 0xFFFF)


def test_other_address_ignored(rig):
    sim, dev = rig
    cmd = eza2500.Command0101(dev)
    cmd.send(AD1, AD2 + 1, None)
    with pytest.raises(ESSXTimeoutException):
        cmd.recv(deadline=time.monotonic() + 0.05)
    assert sim.received == []


# --- faults against the reader ------------------------------------------------------------------


def test_fault_silent(rig):
    sim, dev = rig
    sim.inject("silent")
    with pytest.raises(ESSXTimeoutException) as err:
        run(dev, "4-4", {"dvg": 300, "drg": 0}, timeout=FAIL_TIMEOUT)
    assert not isinstance(err.value, ESSXIOException)
    assert sim.state["dvg"] == 350.0
    assert run(dev, "1-1") == {"mode": 0}  # only the next command was hit


def test_fault_lost_applies_the_command(rig):
    sim, dev = rig
    sim.inject("lost")
    with pytest.raises(ESSXTimeoutException):
        run(dev, "4-4", {"dvg": 300, "drg": 0}, timeout=FAIL_TIMEOUT)
    assert sim.state["dvg"] == 299.98291015625
    assert run(dev, "4-1")["dvg"] == 299.98291015625


def test_fault_bad_checksum(rig):
    sim, dev = rig
    sim.inject("bad_checksum")
    with pytest.raises(ESSXChecksumException):
        run(dev, "10-1")


@pytest.mark.parametrize("ercd", [0xFFFF, 0xFFFE, 0xFFFD, 0xFFFC, 0xFFFB, 0x1234])
def test_fault_nak(rig, ercd):
    sim, dev = rig
    sim.inject("nak", ercd=ercd)
    cmd = eza2500.Command0604(dev)
    cmd.send(AD1, AD2, dict(cib=52, dig=2.5, ubv=40, ugv=300, obv=59, ogv=400))
    with pytest.raises(ESSXDeviceException) as err:
        cmd.recv()
    assert err.value.ercd == ercd and err.value.command == "6-4"
    assert cmd.response == {"ercd": ercd}
    assert err.value.retryable == (ercd in (0xFFFD, 0xFFFC))


def test_fault_nak_default_is_busy(rig):
    sim, dev = rig
    sim.inject("nak")
    with pytest.raises(ESSXDeviceException) as err:
        run(dev, "1-1")
    assert err.value.ercd == 0xFFFC


def test_fault_garbage_before_reply(rig):
    sim, dev = rig
    sim.inject("garbage", count=3, nbytes=20)
    for _ in range(3):
        assert run(dev, "2-1") == {"cst": 0, "ext": 0}
    assert [r.fault for r in sim.received] == ["garbage"] * 3


def test_fault_half(rig):
    sim, dev = rig
    sim.inject("half")
    with pytest.raises(ESSXTimeoutException):
        run(dev, "10-1", timeout=FAIL_TIMEOUT)


def test_fault_delay(rig):
    sim, dev = rig
    dev.timeout = 0.5
    sim.inject("delay", seconds=0.1)
    assert run(dev, "1-1") == {"mode": 0}
    sim.inject("delay", seconds=0.8)
    with pytest.raises(ESSXTimeoutException):
        run(dev, "1-1")


def test_fault_until_cleared(rig):
    sim, dev = rig
    sim.inject("silent", count=None)
    for _ in range(2):
        with pytest.raises(ESSXTimeoutException):
            run(dev, "1-1", timeout=FAIL_TIMEOUT)
    sim.clear_faults()
    assert run(dev, "1-1") == {"mode": 0}
    with pytest.raises(ValueError):
        sim.inject("nonsense")


def test_noise_on_the_pty_times_out_in_time(rig):
    """Continuous garbage on the line (a thread writing into the pty)."""
    sim, dev = rig
    stop = threading.Event()
    noise = bytes(b for b in range(256) if b != 0x02) * 4
    jammed = []

    def jam():
        while not stop.is_set():
            sim.write_raw(noise)
            jammed.append(len(noise))
            stop.wait(0.001)

    dev.timeout = FAIL_TIMEOUT
    sim.inject("silent", count=None)
    cmd = eza2500.Command0101(dev)
    cmd.send(AD1, AD2, None)
    jammer = threading.Thread(target=jam, name="jam", daemon=True)
    jammer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ESSXTimeoutException):
            cmd.recv()
        assert time.monotonic() - t0 <= dev.timeout + 0.1   # the precise overrun: bench/reader_overrun.py
    finally:
        stop.set()
        jammer.join()
    assert len(jammed) > 1   # the line really was full of noise while the reader waited


# --- unplug / replug ---------------------------------------------------------------------------------


def test_reopen_and_device_reopens_port(rig):
    sim, dev = rig
    sim.set(mode=0x14)
    assert run(dev, "1-1") == {"mode": 0x14}
    old = os.readlink(sim.port)
    sim.reopen()
    assert os.readlink(sim.port) != old or not os.path.exists(old)
    with pytest.raises(ESSXIOException):
        run(dev, "1-1")
    assert not dev.dev.is_open
    assert run(dev, "1-1") == {"mode": 0x14}
    assert dev.dev.is_open and dev.dev.timeout == 0.01


def test_port_without_link(no_leaks):
    with EZA2500Simulator() as sim:
        assert sim.port.startswith("/dev/pts/")
        with serial.Serial(sim.port, 19200, timeout=0.01) as ser:
            assert run(eza2500.EZA2500Device(ser), "15-1") == {"min": 0, "maj": 1}
        with pytest.raises(ValueError):
            sim.reopen()
    assert sim.port is None


def test_collision_is_counted(rig):
    """A request put on the line while a reply is still on it is a collision."""
    sim, dev = rig
    first = codec.build_request(AD1, AD2, 10, False)
    dev.write(first)
    assert dev.read(1) == b"\x02"          # the reply has started
    dev.dev.write(codec.build_request(AD1, AD2, 1, False))
    assert dev.read(22 + 9)[-9:] == codec.build_ack(AD1, AD2, 1, False, {"mode": 0})
    assert sim.collisions == 1
    assert sum(c.nbytes for c in sim.collision_log) == 7          # the whole 1-1 request
    assert [r.name for r in sim.received] == ["10-1", "1-1"]


def test_wire_time():
    assert wire_time(1, 19200) == pytest.approx(0.00052, abs=1e-5)
    assert wire_time(23, 9600) == pytest.approx(23 * 10 / 9600)


def test_reply_is_paced_at_wire_speed(rig):
    """The reply needs at least the wire time of request + reply + turnaround."""
    _, dev = rig
    t0 = time.monotonic()
    run(dev, "10-1")
    assert time.monotonic() - t0 >= wire_time(7 + 23, 19200) + 0.005


def test_simulator_runs_as_a_script(tmp_path):
    """``python -m essx_sim.converter --link PATH`` serves until SIGTERM."""
    import signal
    import subprocess
    import sys

    link = tmp_path / "ttyEZA"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-m", "essx_sim.converter", "--link", str(link),
                             "--ad2", "17", "--turnaround", "0.001"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.lexists(link):
            assert proc.poll() is None and time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.01)
        with serial.Serial(str(link), 19200, timeout=0.01) as ser:
            cmd = eza2500.Command0101(eza2500.EZA2500Device(ser, timeout=1.0))
            cmd.send(0, 17)
            assert cmd.recv() == {"mode": 0}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert not os.path.lexists(link)
