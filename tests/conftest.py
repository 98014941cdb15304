"""Shared pytest setup: make drivers/ importable without an install."""
import os
import sys

DRIVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers")
if DRIVERS not in sys.path:
    sys.path.insert(0, DRIVERS)

import json
import shutil
import socket
import subprocess
import threading
import time
import typing
from contextlib import contextmanager
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

DEFAULT_CONFIG = os.path.join(DRIVERS, "dcdc_batt_comm.yml")


def protocol_members(protocol: type) -> set:
    """The public members a ``typing.Protocol`` states, its bases' included."""
    names: set = set()
    for base in protocol.__mro__:
        if base in (object, typing.Protocol, typing.Generic):
            continue
        names |= {n for n in vars(base) if not n.startswith("_")}
        names |= set(vars(base).get("__annotations__", {}))
    return names


def openapi_resolve(doc: dict, node: dict) -> dict:
    """*node* of the OpenAPI document *doc* with its local ``$ref``s followed."""
    while "$ref" in node:
        assert node["$ref"].startswith("#/"), node["$ref"]
        target = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


#: The keys of the meter block (docs/web-api.md, "meter").
METER_KEYS = {"wg", "tmp", "vb", "wb", "vg", "ib", "ig"}


def write_config(tmp_path, dcdc_port, battery_port, mutate=None, name="c.yml"):
    """The shipped configuration on the given ports, direction pins not_used."""
    with open(DEFAULT_CONFIG) as f:
        doc = yaml.safe_load(f)
    dev = doc["ess_system"]["dcdc_dev"][0]
    dev["params"][0], dev["kwparams"]["dir_pin"] = dcdc_port, "not_used"
    kw = doc["ess_system"]["battery_dev"][0]["kwparams"]
    kw["port"], kw["dir_pin"] = battery_port, "not_used"
    if mutate:
        mutate(doc)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run_server(*args, env=None, timeout=30):
    """Run essx-server to its end: (exit status, stdout, stderr); on the shipped
    configuration unless *args* name one (never the machine's /etc/dcdc_batt_comm/)."""
    if "--config" not in args:
        args = ("--config", DEFAULT_CONFIG) + args
    r = subprocess.run([sys.executable, SERVER, *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


@contextmanager
def held_line(link) -> typing.Iterator[None]:
    """Another thread holds the link's line for the duration of the block."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with link.sequence():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, name="line-holder")
    holder.start()
    try:
        assert held.wait(5)
        yield
    finally:
        release.set()
        holder.join()

class HandClock:
    """A clock the test sets: ``t`` seconds (``clock()`` answers it)."""

    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


class HTTPClient:
    """A tiny HTTP client for a server on 127.0.0.1: ``get(path, **params) -> (status, json)``."""

    def __init__(self, base):
        self.base = base

    def get(self, path, query=None, **params):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        elif query is not None:
            url += "?" + query
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            e.close()
            assert e.headers.get_content_type() == "application/json", body
            return e.code, json.loads(body)


class ServerThread:
    """waitress serving *app* on an ephemeral port of 127.0.0.1 in a thread.

    The loop runs in short rounds so that ``stop()`` closes the server from
    its own thread (closing it from another one races with select()).
    """

    def __init__(self, app):
        import waitress

        self.map: dict = {}     # waitress's socket map, ours through create_server(map=)
        self.server = waitress.create_server(app, map=self.map, host="127.0.0.1", port=0, threads=8)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="test-waitress", daemon=True)
        self.thread.start()
        self.client = HTTPClient("http://127.0.0.1:%d" % int(self.server.effective_port))

    def _serve(self):
        server = self.server
        while not self._stop.is_set():
            server.asyncore.loop(timeout=0.05, map=self.map, count=1)
        for channel in list(self.map.values()):
            channel.close()
        server.task_dispatcher.shutdown()

    def stop(self):
        self._stop.set()
        self.thread.join(5)


def fast_config(path=DEFAULT_CONFIG):
    """The shipped configuration with test-friendly timings (no inter-command gap)."""
    from essx.essx_config import load_config

    config = load_config(path)
    return with_settings(config, dcdc={"command_interval": 0.0, "wait_for_retry": 0.01},
                         battery_kwparams={"timeout": 0.3})


def with_settings(config, dcdc=None, battery=None, dcdc_dev=None, battery_dev=None, battery_kwparams=None):
    """A copy of the frozen ``config`` with some fields of its sections replaced."""
    from dataclasses import replace

    changes = {}
    if dcdc:
        changes["dcdc"] = replace(config.dcdc, **dcdc)
    if battery:
        changes["battery"] = replace(config.battery, **battery)
    if dcdc_dev:
        changes["dcdc_dev"] = replace(config.dcdc_dev, **dcdc_dev)
    if config.battery_dev is not None and (battery_dev or battery_kwparams):
        bat = replace(config.battery_dev, **(battery_dev or {}))
        changes["battery_dev"] = replace(bat, kwparams=replace(bat.kwparams, **(battery_kwparams or {})))
    return replace(config, **changes)


@pytest.fixture(autouse=True)
def no_etc_config(monkeypatch, tmp_path):
    """In-process, the default configuration is never the machine's
    /etc/dcdc_batt_comm/dcdc_batt_comm.yml (a commissioned node has one)."""
    from essx_service import resources

    monkeypatch.setattr(resources, "ETC_CONFIG", str(tmp_path / "no-etc" / "dcdc_batt_comm.yml"))


@pytest.fixture
def system(no_leaks):
    """Controller + devices on a simulated converter and battery (no watch thread);
    every thread and fd it opened is gone after the test."""
    from essx_server import System

    s = System(fast_config(), simulate=True, watch=False)
    yield s
    s.close()


@pytest.fixture
def http(system):
    """An HTTPClient for the server of *system* (``http.system`` gives the system)."""
    from essx_server import create_app

    st = ServerThread(create_app(system.controller))
    st.client.system = system
    yield st.client
    st.stop()


def commands(sim):
    """Names of the commands the simulated converter received, in order ("1-1", "6-4", ...)."""
    return [r.name for r in sim.received]


def writes(sim):
    """Names of the write commands ("N-4") the simulated converter received."""
    return [r.name for r in sim.writes()]


@pytest.fixture
def sim(http):
    """The simulated converter of *http*, in Waiting, with nothing recorded;
    faults injected by the test are cleared afterwards."""
    s = http.system.dcdc_sim
    s.set(mode=0x0000)
    s.clear()
    yield s
    s.clear_faults()


def open_fds():
    """The file descriptors this process has open (Linux)."""
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks():
    """Assert that every thread and fd opened in the test is gone afterwards."""
    threads, fds = set(threading.enumerate()), open_fds()
    yield
    assert set(threading.enumerate()) == threads
    assert open_fds() <= fds


@pytest.fixture
def battery_sim(tmp_path, no_leaks):
    """A running BatterySimulator reached through a symlink in tmp_path."""
    from essx_sim.battery import BatterySimulator

    with BatterySimulator(link=str(tmp_path / "ttyBAT")) as simulator:
        yield simulator


def read_until(stream, text, deadline):
    """Read a child's pipe *stream* until *text* (bytes) appears; returns all
    bytes read. Fails the test at *deadline* (monotonic s) or if the child
    closes the pipe first."""
    import select
    import time

    seen = b""
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, "%r did not appear in time: %r" % (text, seen)
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, "the child closed its output first: %r" % seen
            seen += chunk
    return seen


#: Debian's and Raspberry Pi OS's default /etc/hosts: localhost has two addresses.
DEBIAN_HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"


def as_debian_node(argv, tmp_path, hosts=DEBIAN_HOSTS, etc_config=None):
    """*argv* made to run as on a user's node: in a mount namespace of its own whose
    /etc is an overlay (the machine's /etc is never written) holding *hosts* as
    /etc/hosts and, given *etc_config* (text), a commissioned node's
    /etc/dcdc_batt_comm/dcdc_batt_comm.yml.  Needs root (``unshare -m``); skips
    the test without it, fails it when CI is set."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        if os.environ.get("CI"):
            pytest.fail("the Debian-node tests need root and unshare(1) in CI")
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    upper, work = tmp_path / "etc-upper", tmp_path / "etc-work"
    upper.mkdir()
    work.mkdir()
    (upper / "hosts").write_text(hosts)
    if etc_config is not None:
        (upper / "dcdc_batt_comm").mkdir()
        (upper / "dcdc_batt_comm" / "dcdc_batt_comm.yml").write_text(etc_config)
    script = 'mount -t overlay overlay -o lowerdir=/etc,upperdir="$1",workdir="$2" /etc && shift 2 && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(upper), str(work), *argv]


#: The server script, run as a process by the command-line tests.
SERVER = os.path.join(DRIVERS, "essx_server.py")


def free_port():
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """``essx_server.py`` as a child process on a free port, on the shipped configuration
    unless *args* name one (never the machine's /etc/dcdc_batt_comm/); ``stop()`` kills
    and reaps it."""
    def __init__(self, *args):
        self.port = free_port()
        if "--config" not in args:
            args = ("--config", DEFAULT_CONFIG) + args
        self.proc = subprocess.Popen([sys.executable, SERVER, "--port", str(self.port), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.client = HTTPClient("http://localhost:%d" % self.port)

    def wait_ready(self, limit=20):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError("server exited: %s" % self.proc.stdout.read())
            try:
                with socket.create_connection(("localhost", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def process():
    """``start(*args) -> Process``; every process started is stopped after the test."""
    started = []

    def start(*args):
        p = Process(*args)
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def devices(tmp_path, no_leaks):
    """A simulated converter and battery reached through links in tmp_path."""
    from essx_sim.battery import BatterySimulator
    from essx_sim.converter import EZA2500Simulator

    with EZA2500Simulator(link=str(tmp_path / "ttyDCDC")) as dcdc, \
            BatterySimulator(link=str(tmp_path / "ttyBAT")) as battery:
        yield dcdc, battery


#: Simulated seconds per real second of the grids make_grid starts by default.
SPEED = 100.0


class RunningGrid:
    """A started ``Grid`` served on free ports: ``node(i)`` and ``control`` are HTTPClients."""

    def __init__(self, specs, config, speed=SPEED, grid=None, **devices):
        from essx_service.grid import Grid, GridServer, control_app
        from essx_sim.grid import GridSpec

        self.grid = Grid(GridSpec(tuple(specs), **(grid or {})), config, speed=speed, **devices).start()
        urls = {}
        try:
            apps = [(0, control_app(self.grid, urls))] + [(0, n.app) for n in self.grid.nodes]
            self.server = GridServer(apps, threads=4 + 2 * len(specs))
        except BaseException:
            self.grid.close()
            raise
        for i, port in enumerate(self.server.ports[1:]):
            urls[i] = "http://127.0.0.1:%d" % port
        self.urls = urls
        self.control = HTTPClient("http://127.0.0.1:%d" % self.server.ports[0])
        self.thread = threading.Thread(target=self.server.serve, name="grid-server", daemon=True)
        self.thread.start()

    def node(self, i):
        return HTTPClient(self.urls[i])

    def snapshot(self):
        status, body = self.control.get("/grid")
        assert status == 200, body
        return body

    def close(self):
        self.server.stop()
        self.thread.join(10)
        self.grid.close()


def grid_config(**battery):
    """fast_config() with some fields of its battery section replaced."""
    return with_settings(fast_config(), battery=battery or None)


@pytest.fixture
def make_grid(no_leaks):
    """``make(specs, config=None, speed=SPEED, grid=None, **devices) -> RunningGrid``
    (``grid``: more ``GridSpec`` fields; ``devices``: ``SimulatedGrid``
    options); every grid is closed after the test."""
    grids = []

    def make(specs, config=None, speed=SPEED, grid=None, **devices):
        g = RunningGrid(specs, config or grid_config(), speed, grid, **devices)
        grids.append(g)
        return g

    yield make
    for g in grids:
        g.close()


def set_node(g, i, mode, dig, dvg=350, drg=0):
    """/remote/set on node *i* of RunningGrid *g*; its JSON reply (status 200 asserted)."""
    status, body = g.node(i).get("/remote/set", mode=mode, dvg=dvg, dig=dig, drg=drg)
    assert status == 200, body
    return body


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def browser():
    """The path of a Chromium, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium():
    """The path of a Chromium; skips the test without one (fails it when CI is set)."""
    path = browser()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium (%s) on PATH; .ci/run installs Debian's chromium" % ", ".join(BROWSERS))
        pytest.skip("no Chromium on PATH (set CI to make this a failure)")
    return path


def render(chromium, url, profile, *extra):
    """Run headless Chromium on *url* for 5 s of virtual time; its stdout (the DOM with --dump-dom)."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=%s" % profile, "--virtual-time-budget=5000", *extra, url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
