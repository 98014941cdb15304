"""essx-server's start-up at the process level: one line and exit 2 for an
operator's mistake, absent ports not fatal, exclusive ports, journald
format, systemd notifications (issue 10, points 2, 4, 7)."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import essx_service
from conftest import SERVER, free_port, run_server, write_config
from essx_service import cli


def one_error_line(err):
    """The error lines of *err* (no traceback) — exactly one expected."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if "ERROR" in line or "error:" in line]


def test_version():
    status, out, err = run_server("--version")
    assert (status, out.strip()) == (0, "essx-server 1.4.0 (dcdc_batt_comm)")


def test_the_version_is_the_distributions_without_importlib_metadata():
    """--version and the start line name essx_service.__version__, which pyproject.toml
    gives the distribution; a server does not load importlib.metadata for it."""
    with open(os.path.join(os.path.dirname(os.path.dirname(SERVER)), "pyproject.toml"), encoding="utf-8") as f:
        pyproject = f.read()
    assert 'version = {attr = "essx_service.__version__"}' in pyproject
    assert cli.package_version() == essx_service.__version__ == "1.4.0"
    code = "import sys, essx_server\nprint('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(SERVER))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("args,fragment", [
    (["--port", "99999"], "--port: '99999' is not a TCP port: expected 1-65535"),
    (["--port", "http"], "--port: 'http' is not a TCP port"),
    (["--host", "no such host"], "--host: 'no such host' is neither an IP address nor a host name"),
    (["--log-level", "loud"], "--log-level: invalid choice: 'loud'"),
])
def test_bad_option_is_one_line_exit_2(args, fragment):
    status, out, err = run_server(*args)
    assert status == 2
    assert err.count("\n") == 1 and fragment in err, err


def test_bad_host_when_binding(tmp_path, devices):
    config = write_config(tmp_path, devices[0].port, devices[1].port)
    for host, fragment in (("192.0.2.1", "--host 192.0.2.1 is not an address of this machine"),
                           ("nonexistent.invalid", "--host nonexistent.invalid cannot be resolved")):
        status, out, err = run_server("--config", config, "--host", host, "--port", str(free_port()))
        assert status == 2, err
        lines = one_error_line(err)
        assert len(lines) == 1 and fragment in lines[0], err


def test_port_in_use_is_one_line_exit_2(tmp_path, devices):
    config = write_config(tmp_path, devices[0].port, devices[1].port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, out, err = run_server("--config", config, "--host", "127.0.0.1", "--port", str(port))
    assert status == 2
    lines = one_error_line(err)
    assert len(lines) == 1 and "--port %d: address already in use on 127.0.0.1" % port in lines[0], err


def test_unreadable_configuration_is_one_line_exit_2(tmp_path):
    for path in (str(tmp_path / "missing.yml"), str(tmp_path)):
        status, out, err = run_server("--config", path)
        assert status == 2
        lines = one_error_line(err)
        assert len(lines) == 1 and "cannot read configuration %s" % path in lines[0], err


def test_absent_ports_are_not_fatal(tmp_path, process):
    """The server starts without its devices, names them in 400 answers, and
    uses them once they appear."""
    from essx_sim.battery import BatterySimulator
    from essx_sim.converter import EZA2500Simulator

    dcdc_port, battery_port = str(tmp_path / "ttyDCDC"), str(tmp_path / "ttyBAT")
    p = process("--config", write_config(tmp_path, dcdc_port, battery_port))
    p.wait_ready()
    status, body = p.client.get("/remote/get")
    assert status == 400 and dcdc_port in body["err"], body
    status, body = p.client.get("/battery/get")
    assert status == 400 and battery_port in body["err"], body
    assert p.client.get("/version/get")[0] == 200
    with EZA2500Simulator(link=dcdc_port), BatterySimulator(link=battery_port, rsoc=42.0):
        status, body = p.client.get("/remote/get")
        assert status == 200, body
        status, body = p.client.get("/battery/get")
        assert (status, body["rsoc"]) == (200, 42.0)
        p.stop()


def test_second_instance_on_the_same_ports_exits_2(tmp_path, devices, process):
    config = write_config(tmp_path, devices[0].port, devices[1].port)
    first = process("--config", config)
    first.wait_ready()
    status, out, err = run_server("--config", config, "--port", str(free_port()))
    assert status == 2
    lines = one_error_line(err)
    assert len(lines) == 1, err
    assert "serial port %s is in use by another program" % devices[0].port in lines[0]
    assert first.client.get("/remote/get")[0] == 200      # the first one is undisturbed


def _journal_env(fd):
    st = os.fstat(fd)
    return dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))


def test_journald_format_when_stderr_is_the_journal(tmp_path):
    """Priority prefixes, no timestamp, when JOURNAL_STREAM names stderr."""
    read, write = os.pipe()
    with os.fdopen(read) as r:
        proc = subprocess.Popen([sys.executable, SERVER, "--config", str(tmp_path / "none.yml")],
                                stderr=write, env=_journal_env(read))
        os.close(write)
        err = r.read()
        assert proc.wait(30) == 2
    assert err.startswith("<3>essx_server: cannot read configuration %s" % (tmp_path / "none.yml")), err
    status, out, plain = run_server("--config", str(tmp_path / "none.yml"))      # not the journal
    assert plain[:4].isdigit() and " ERROR essx_server: cannot read" in plain, plain


def test_start_up_line_and_log_level(tmp_path, devices, process):
    config = write_config(tmp_path, devices[0].port, devices[1].port)
    p = process("--config", config, "--log-level", "warning")
    p.wait_ready()
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0
    assert "starting" not in p.proc.stdout.read()       # an INFO line
    p = process("--config", config)
    p.wait_ready()
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0
    line = next(l for l in p.proc.stdout.read().splitlines() if "starting" in l)
    for part in ("essx-server 1.4.0", "configuration %s" % config,
                 "converter %s 19200 baud AD1=0 AD2=16" % devices[0].port,
                 "battery %s 9600 baud unit 1" % devices[1].port, "real devices"):
        assert part in line, line


def test_reload_uses_the_start_up_validation_and_names_what_needs_a_restart(tmp_path, devices, process):
    """/remote/ioctl/set re-reads the file as a start would (same --strict-config):
    a file the server could not start with is 400 with nothing sent; a changed
    device section is applied at the next restart, and the log says so."""
    sim = devices[0]
    config = write_config(tmp_path, sim.port, devices[1].port)
    p = process("--config", config, "--strict-config")
    p.wait_ready()
    write_config(tmp_path, sim.port, devices[1].port,
                 mutate=lambda d: d["dcdc"]["dcdc_default_eza2500"]["config"].update(lbd=45.8))
    sim.clear()
    status, body = p.client.get("/remote/ioctl/set")
    assert status == 400 and "config.lbd" in body["err"] and "--strict-config" in body["err"], body
    assert sim.received == []
    write_config(tmp_path, sim.port, devices[1].port,
                 mutate=lambda d: d["ess_system"]["dcdc_dev"][0]["params"].__setitem__(1, 9600))
    status, body = p.client.get("/remote/ioctl/set")
    assert status == 200, body
    assert [r.name for r in sim.writes()] == ["6-4", "7-4", "3-4"]
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(10) == 0
    assert "ess_system.dcdc_dev changed; it takes effect at the next restart" in p.proc.stdout.read()


class NotifySocket:
    """A fake $NOTIFY_SOCKET: a unix datagram socket collecting messages."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)

    def messages(self, until, limit=20.0):
        """Messages received until one contains *until* (or *limit* s pass)."""
        got, end = [], time.monotonic() + limit
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
            if until in got[-1]:
                break
        return got

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    s = NotifySocket(str(tmp_path / "notify"))
    yield s
    s.close()


def test_ready_watchdog_and_stopping(tmp_path, devices, notify_socket):
    config = write_config(tmp_path, devices[0].port, devices[1].port)
    port = free_port()
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.path, WATCHDOG_USEC="400000")
    proc = subprocess.Popen([sys.executable, SERVER, "--config", config, "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = notify_socket.messages("READY=1")
        assert ready and ready[-1].startswith("READY=1"), ready
        socket.create_connection(("localhost", port), timeout=1).close()    # listening already
        beats = notify_socket.messages("never", limit=1.5)
        assert 3 <= beats.count("WATCHDOG=1") <= 10, beats      # every 0.2 s while the loop turns
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "STOPPING=1" in notify_socket.messages("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_heartbeat_stops_when_the_loop_stalls(notify_socket):
    from essx_service.sdnotify import Heartbeat

    beat = Heartbeat(0.4, {"NOTIFY_SOCKET": notify_socket.path}, stall_after=0.2).start()
    def turn(seconds):
        """A loop turning every 0.05 s for *seconds*."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            beat.tick()
            time.sleep(0.05)

    try:
        turn(1.0)
        assert notify_socket.messages("never", limit=0.3).count("WATCHDOG=1") >= 2
        assert beat.sent >= 2
        stalled = notify_socket.messages("never", limit=1.0)       # no tick: the loop is stuck
        assert stalled.count("WATCHDOG=1") <= 1, stalled            # at most one from the last turn
        sent = beat.sent
        assert notify_socket.messages("never", limit=0.6) == []
        assert beat.sent == sent
        turn(1.0)                                                   # it turns again
        assert beat.sent > sent
        assert "WATCHDOG=1" in notify_socket.messages("WATCHDOG=1", limit=1.0)
    finally:
        beat.stop()




def test_rs485_port_is_exclusive_by_default(devices):
    """ESSXRS485 locks its port unless told otherwise: a second opener fails."""
    import serial

    from essx.essx_rs485 import ESSXRS485

    first = ESSXRS485(devices[0].port, 19200, dir_pin="not_used")
    try:
        with pytest.raises(serial.SerialException, match="exclusively lock"):
            ESSXRS485(devices[0].port, 19200, dir_pin="not_used")
        ESSXRS485(devices[0].port, 19200, dir_pin="not_used", exclusive=False).close()
    finally:
        first.close()
