"""The driver where users run it: Debian's default /etc/hosts, and a node
commissioned with a real /etc/dcdc_batt_comm/ configuration.

Each test runs a process in a mount namespace of its own whose /etc is an
overlay (``conftest.as_debian_node``): the machine's files are never touched.
"""
import os
import socket
import subprocess
import sys
import time

from conftest import DEFAULT_CONFIG, DRIVERS, HTTPClient, SERVER, as_debian_node, free_port

ROOT = os.path.dirname(DRIVERS)
#: A configuration no test may read: invalid YAML, named loudly.
POISON = "this /etc/dcdc_batt_comm/dcdc_batt_comm.yml must never be read by the test suite: [\n"


def wait_listening(proc, port, limit=20.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not listen on 127.0.0.1:%d" % port)


def test_quick_start_serves_localhost_on_both_addresses(tmp_path):
    """README, Quick start, command 1, with the default --host localhost, on a machine
    whose localhost is 127.0.0.1 and ::1: it serves on both and logs both."""
    port = free_port()
    proc = subprocess.Popen(as_debian_node([sys.executable, SERVER, "--simulate", "--port", str(port)],
                                           tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_listening(proc, port)
        for host in ("127.0.0.1", "[::1]"):
            status, body = HTTPClient("http://%s:%d" % (host, port)).get("/version/get")
            assert status == 200 and body["comm_interface_version"] == "2.0", (host, body)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    serving = next(line for line in out.splitlines() if "serving on" in line)
    assert "http://127.0.0.1:%d" % port in serving and "http://[::1]:%d" % port in serving, out
    assert "Traceback" not in out, out


def test_the_suite_never_reads_the_nodes_configuration(tmp_path):
    """On a commissioned node (a broken /etc/dcdc_batt_comm/dcdc_batt_comm.yml
    here), the tests that start servers and grids as processes without naming a
    configuration still pass: none of them reads the node's file (in-process,
    conftest's ``no_etc_config`` moves the default path away)."""
    modules = ["tests/test_startup.py", "tests/test_server_cli.py", "tests/test_check.py",
               "tests/test_grid.py::test_command_line_serves_and_stops_on_sigterm",
               "tests/test_grid.py::test_command_line_mistake_is_one_line"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(as_debian_node([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                          *modules], tmp_path, etc_config=POISON),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_a_node_without_config_flag_uses_its_etc_file(tmp_path):
    """The other side: essx-server without --config reads /etc/dcdc_batt_comm/ (the
    node's file) when there is one, and names it in its one error line."""
    done = subprocess.run(as_debian_node([sys.executable, SERVER, "--port", str(free_port())], tmp_path,
                                         etc_config=POISON),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "/etc/dcdc_batt_comm/dcdc_batt_comm.yml is not valid YAML" in done.stderr, done.stderr
    assert os.path.exists(DEFAULT_CONFIG)
