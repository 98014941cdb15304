"""essx-grid with file descriptors above 1023 (select's FD_SETSIZE), and its
open-file limit.

A grid of 100 nodes holds ~5000 descriptors; anything waiting in select()
on one above 1023 raises ValueError. Each test runs a child process (so this
one's descriptor table stays as it is) that first opens /dev/null until the
next descriptor is above FLOOR: everything the grid opens then lies above it.
"""
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import DEFAULT_CONFIG, DRIVERS, HTTPClient, read_until

#: Every descriptor the child opens after its filler lies above this.
FLOOR = 1100
#: Open files the child needs: the filler, the grid, this much more.
NEEDED = FLOOR + 400

#: Python code run first in a child: raise the soft open-file limit to the
#: hard one, fill the descriptor table up to FLOOR, put drivers/ on the path.
PRELUDE = textwrap.dedent("""\
    import os, resource, sys
    sys.path.insert(0, %(drivers)r)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    while os.open("/dev/null", os.O_RDONLY) < %(floor)d:
        pass
    """) % {"drivers": DRIVERS, "floor": FLOOR}

#: The routes every node must answer with 200 (docs/web-api.md), besides the sets.
ROUTES = ["/version/get", "/all/get", "/remote/get", "/dcdc/get", "/remote/get/status",
          "/dcdc/get/status", "/battery/get", "/1/log/data", "/remote/ioctl/get",
          "/essx/status", "/essx/history", "/openapi.json", "/essx/hello"]


@pytest.fixture
def high_limit():
    """Skip unless this machine's hard open-file limit allows NEEDED descriptors."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.skip("the hard open-file limit %d is below the %d the test needs" % (hard, NEEDED))


def descriptors(pid):
    """{fd: what it is} of process ``pid`` (Linux /proc)."""
    found = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            found[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except FileNotFoundError:  # closed meanwhile
            pass
    return found


def start_grid(args, preexec_fn=None, prelude=PRELUDE):
    """essx-grid's main(args) in a child after ``prelude``; (process, {node: url}, control url)."""
    code = prelude + "from essx_service.grid import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "--port", "0", "--driver-config", DEFAULT_CONFIG,
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn)
    try:
        out = read_until(proc.stdout, b"/grid\n", time.monotonic() + 60).decode()
    except BaseException:
        stop_grid(proc)
        raise
    lines = out.strip().splitlines()
    urls = {int(line.split()[2]): line.split()[3] for line in lines if line.startswith("essx-grid: node")}
    return proc, urls, lines[-1].split()[-1][:-len("/grid")]


def stop_grid(proc):
    """SIGTERM, wait; the exit status and stderr (the child is killed if it hangs)."""
    try:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
    return code, err


def wait_for(predicate, limit=10.0):
    """Poll ``predicate()`` every 0.1 s until true or ``limit`` s passed; its last value."""
    end = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


def test_grid_works_with_every_descriptor_above_1023(high_limit):
    proc, urls, control = start_grid(["--nodes", "3", "--speed", "100"])
    try:
        fds = descriptors(proc.pid)
        grid_fds = {fd: what for fd, what in fds.items()
                    if what.startswith(("/dev/pts/", "/dev/ptmx", "socket:", "pipe:", "anon_inode:"))
                    and fd > 2}
        assert len(grid_fds) > 3 * 30 and min(grid_fds) > FLOOR, sorted(grid_fds.items())[:5]
        nodes = [HTTPClient(urls[i]) for i in range(3)]
        for node in nodes:
            for route in ROUTES:
                status, body = node.get(route)
                assert status == 200, (route, body)
        # the scripted exchange (docs/grid.md): node 0 holds 350 V, 1 discharges 2 A, 2 charges 1.5 A
        for node, mode, dig in zip(nodes, ("0x0014", "0x0002", "0x0041"), (2.5, 2.0, 1.5)):
            status, body = node.get("/remote/set", mode=mode, dvg=350, dig=dig, drg=0)
            assert status == 200 and body["status"]["status"] == mode, body
        status, body = nodes[2].get("/remote/set/current", dig=1.0)
        assert status == 200 and body["param"]["dig"] == pytest.approx(1.0, abs=1e-3), body
        status, body = nodes[0].get("/remote/set/voltage", dvg=350, drg=0)
        assert status == 200, body
        status, body = nodes[1].get("/dcdc/set", dig=2.0)
        assert status == 200, body
        status, body = nodes[0].get("/remote/ioctl/clr_alarm")
        assert status == 200, body
        grid = HTTPClient(control)
        status, first = grid.get("/grid")
        assert status == 200 and first["bus"]["up"], first
        assert [n["ig"] for n in first["nodes"]] == pytest.approx([1.0, -2.0, 1.0], abs=0.01)

        def moved():
            now = grid.get("/grid")[1]["nodes"]
            return (now[0]["rsoc"] > first["nodes"][0]["rsoc"] and now[1]["rsoc"] < first["nodes"][1]["rsoc"]
                    and now[2]["rsoc"] > first["nodes"][2]["rsoc"])
        assert wait_for(moved), "no energy moved"
        # and the driver reads it over Modbus: 0.1 % steps, 2 A from 4800 Wh at speed 100 is ~0.4 %/s
        assert wait_for(lambda: nodes[1].get("/battery/get")[1]["rsoc"] < 50.0)
        assert nodes[0].get("/all/get")[1]["meter"]["ig"] == pytest.approx(1.0, abs=0.01)  # takes the 1 A left
    finally:
        code, err = stop_grid(proc)
    assert code == 0, err[-2000:]
    assert "Traceback" not in err and "out of range" not in err, err[-2000:]


def test_ports_above_1023_read_write_and_cancel():
    """ESSXRS485's own read and write (pyserial's, waiting in poll above FD_SETSIZE)."""
    script = PRELUDE + textwrap.dedent("""\
        import threading, time
        from essx.essx_rs485 import ESSXRS485
        master, slave = os.openpty()
        import tty; tty.setraw(slave)
        port = ESSXRS485(os.ttyname(slave), 9600, dir_pin="not_used", timeout=0.2, write_timeout=1)
        assert port.fd > %(floor)d and not port.selectable, port.fd
        assert port.write(b"request") == 7 and os.read(master, 100) == b"request"
        os.write(master, b"reply")
        assert port.read(5) == b"reply"
        t0 = time.monotonic()
        assert port.read(5) == b"" and time.monotonic() - t0 >= 0.19   # the timeout
        os.write(master, b"abc")
        assert port.read_at_least(3, 1.0) == b"abc"
        port.timeout = None
        threading.Timer(0.2, port.cancel_read).start()
        assert port.read(5) == b""                                      # cancelled, not blocked
        port.close(); os.close(master); os.close(slave)
        print("ok")
        """) % {"floor": FLOOR}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


def test_start_raises_the_soft_open_file_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 1024:
        pytest.skip("needs a finite hard open-file limit above 1024 (it is %s)" % hard)

    def debian_default():  # the child starts with Debian's soft limit, 1024
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    prelude = "import sys\nsys.path.insert(0, %r)\n" % DRIVERS
    proc, urls, _ = start_grid(["--nodes", "2", "--log-level", "info"], debian_default, prelude)
    try:
        with open("/proc/%d/limits" % proc.pid) as f:
            limits = [line.split()[3:5] for line in f if line.startswith("Max open files")]
        assert limits == [[str(hard), str(hard)]]
        assert HTTPClient(urls[1]).get("/remote/get/status")[0] == 200
    finally:
        code, err = stop_grid(proc)
    assert code == 0, err
    line = "open files: soft limit raised from 1024 to %d (the hard limit); 2 nodes need about" % hard
    assert [x for x in err.splitlines() if "open files" in x] == [x for x in err.splitlines() if line in x]
    assert line in err, err


def test_too_low_hard_limit_is_one_line():
    def low():
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    done = subprocess.run([sys.executable, os.path.join(DRIVERS, "essx_grid.py"), "--nodes", "100",
                           "--port", "0", "--driver-config", DEFAULT_CONFIG],
                          capture_output=True, text=True, timeout=60, preexec_fn=low)
    assert done.returncode == 2
    assert done.stderr.startswith("essx-grid: --nodes=100 needs about ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "hard limit of open files (RLIMIT_NOFILE, ulimit -Hn) is 200" in done.stderr
    assert done.stdout == ""
