#!/usr/bin/env python3
"""Latency, load and soak bench for the dcdc_batt_comm Web API.

Usage::

    python3 bench/bench.py [--calls N] [--interval default|0|both]
                           [--json out.json] [--load] [--soak MINUTES]

What it does (see bench/README.md for the details and bench/RESULTS.md for
measured numbers):

* Starts the simulated EZA2500 (19200 baud, 5 ms turnaround) and the
  simulated battery (9600 baud) in a helper process (``bench/simhost.py``),
  writes a temporary copy of ``drivers/dcdc_batt_comm.yml`` whose ports point
  at them (``dir_pin: not_used``) and whose ``command_interval`` is the one
  under test, and starts ``drivers/essx_server.py --config COPY`` on a free
  port of 127.0.0.1.  (Not ``--simulate``: with the simulators outside the
  server the bench can read their collision counters.)  Waits until the
  server answers; at the end -- also on an error or Ctrl-C -- stops it with
  SIGTERM and checks that it exited 0.
* Latency table (``--calls N``, default 20; 0 skips it): every route of
  docs/web-api.md except ``/essx/goodbye``, N calls each (after one warm-up call)
  over one persistent HTTP/1.1 connection, waiting ``command_interval``
  between calls so the previous request's gap does not leak into the next
  measurement.  Set routes alternate their values so every call writes;
  the converter stays in Waiting (mode 0x0000).  For every route that talks to
  a device it prints the wire-time bound -- the time the frames alone need:
  Σ over the route's commands of (request + reply bytes) × 10 / baud +
  turnaround, plus (n − 1) × command_interval -- and median / bound.
  ``--interval`` picks the gap: ``default`` (the shipped 0.062 s), ``0``, or
  ``both`` (one server run each).
* ``--load``: ``--load-threads`` K (4) threads poll ``/all/get`` and
  ``/dcdc/get/status`` back to back, one thread issues ``/dcdc/set`` calls
  with alternating values back to back, and one thread measures
  ``/battery/get`` and ``/1/log/data`` every 50 ms, for ``--load-duration``
  seconds (20); p50/p99/max of each.
* ``--soak M``: M minutes of mixed traffic (an interface-v2 poller, an
  interface-v1 poller, both with set calls that switch the mode between
  Waiting and Grid Autonomy, and a client on fresh connections for the
  battery and version routes plus requests that must fail with 400/404).
  Reports requests, unexpected errors (a status other than the expected one,
  a transport error, or a set whose reply shows another mode), the
  simulators' collision counters, and the server's RSS and thread count after
  warm-up and at the end.
* ``--load`` and ``--soak`` run with the interval ``--interval`` names; with
  ``both`` they run with ``default`` (what a deployment runs).

It prints tables and writes everything, with the machine (CPU model, cores,
Python, package versions) and the settings, as JSON to ``--json`` (default
``bench/results/bench-<time>.json``).  It reports timings and never judges
them; the exit status is non-zero only when the server did not start or did
not exit 0, or the load/soak traffic saw unexpected errors or collisions.
"""
import argparse
import collections
import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DRIVERS = os.path.join(ROOT, "drivers")
if DRIVERS not in sys.path:
    sys.path.insert(0, DRIVERS)

from eza2500 import table  # noqa: E402  (needs DRIVERS on sys.path)

SERVER = os.path.join(DRIVERS, "essx_server.py")
SIMHOST = os.path.join(HERE, "simhost.py")
SHIPPED_CONFIG = os.path.join(DRIVERS, "dcdc_batt_comm.yml")

#: Converter command sequences (docs/web-api.md, "Routes"); /remote/set as run in
#: steady state with the converter in Waiting (4-4, 6-4, 1-4; the controller
#: reads 1-1 first only when it does not know the mode).
REMOTE_GET = ("1-1", "2-1", "4-1", "9-1", "10-1", "6-1")
GET_STATUS = ("1-1", "2-1", "10-1")
FULL_SET = ("4-4", "6-4", "1-4", "2-1", "9-1", "10-1")
SET_CURRENT = ("6-4", "10-1")
SET_VOLTAGE = ("4-4", "10-1")
IOCTL_SET = ("6-1", "6-4", "7-4", "3-4")
CLR_ALARM = ("9-4",) + REMOTE_GET

#: The battery read: one Modbus "read input registers" (function 4) of count
#: 2 (RSOC and status are adjacent): request unit fc addr(2) count(2) crc(2)
#: = 8 bytes, reply unit fc bytecount data(2 × count) crc(2) = 9 bytes.
BATTERY_REQUEST_BYTES = 8
BATTERY_REPLY_BYTES = 9
BITS_PER_BYTE = 10

#: Alternating set values (call i uses index i % 2); mode stays Waiting.
DVG = (350, 360)
DIG = (2.5, 3.0)
DRG = (0, 0.1)


# --- wire-time bound -----------------------------------------------------------

def frame_lengths(name):
    """(request bytes, ACK bytes) of converter command ``name`` ("6-4"), from eza2500.table."""
    group, write = table.parse_name(name)
    return group.request_length(write), group.ack_length(write)


def wire_bound(commands, baud, turnaround, interval):
    """Seconds the frames of ``commands`` need at least on the converter line.

    Σ (request + reply bytes) × 10 / baud + turnaround per command, plus
    ``interval`` before every command but the first; ``baud`` in bits/s,
    ``turnaround`` and ``interval`` in seconds.  Raises KeyError/ValueError
    (from eza2500.table) for an unknown command name.
    """
    if not commands:
        return 0.0
    total = 0.0
    for name in commands:
        req, ack = frame_lengths(name)
        total += (req + ack) * BITS_PER_BYTE / baud + turnaround
    return total + (len(commands) - 1) * interval


def battery_bound(baud, turnaround):
    """Seconds one battery read needs at least on the Modbus line (baud in bits/s, turnaround in s)."""
    return (BATTERY_REQUEST_BYTES + BATTERY_REPLY_BYTES) * BITS_PER_BYTE / baud + turnaround


@dataclass(frozen=True)
class Route:
    """One measured route.

    ``path(i)`` gives the request of call i (alternating values for sets);
    ``commands`` the converter commands it sends; ``battery`` whether it reads
    the battery (in parallel with the converter for /all/get and
    /remote/ioctl/get).
    """

    name: str
    path: Callable[[int], str]
    commands: Tuple[str, ...] = ()
    battery: bool = False

    def bound(self, settings):
        """Wire-time bound in seconds, or None for a route that touches no device."""
        parts = []
        if self.commands:
            parts.append(wire_bound(self.commands, settings["dcdc_baud"],
                                    settings["dcdc_turnaround"], settings["command_interval"]))
        if self.battery:
            parts.append(battery_bound(settings["battery_baud"], settings["battery_turnaround"]))
        return max(parts) if parts else None


def _full_set(route, mode=0x0000):
    return lambda i: "%s?mode=0x%04x&dvg=%s&dig=%s&drg=%s" % (route, mode, DVG[i % 2], DIG[i % 2], DRG[i % 2])


def _set_voltage(route):
    return lambda i: "%s?dvg=%s&drg=%s" % (route, DVG[i % 2], DRG[i % 2])


def _set_current(route):
    return lambda i: "%s?dig=%s" % (route, DIG[i % 2])


def _fixed(path):
    return lambda i: path


ROUTES = (
    Route("/1/log/data", _fixed("/1/log/data"), battery=True),
    Route("/battery/get", _fixed("/battery/get"), battery=True),
    Route("/remote/get", _fixed("/remote/get"), REMOTE_GET),
    Route("/dcdc/get", _fixed("/dcdc/get"), REMOTE_GET),
    Route("/remote/get/status", _fixed("/remote/get/status"), GET_STATUS),
    Route("/dcdc/get/status", _fixed("/dcdc/get/status"), GET_STATUS),
    Route("/remote/set", _full_set("/remote/set"), FULL_SET),
    Route("/dcdc/set", _full_set("/dcdc/set"), FULL_SET),
    Route("/remote/set/current", _set_current("/remote/set/current"), SET_CURRENT),
    Route("/dcdc/set?dig", _set_current("/dcdc/set"), SET_CURRENT),
    Route("/remote/set/voltage", _set_voltage("/remote/set/voltage"), SET_VOLTAGE),
    Route("/dcdc/set?dvg&drg", _set_voltage("/dcdc/set"), SET_VOLTAGE),
    Route("/remote/ioctl/set", _fixed("/remote/ioctl/set"), IOCTL_SET),
    Route("/remote/ioctl/get", _fixed("/remote/ioctl/get"), REMOTE_GET, battery=True),
    Route("/all/get", _fixed("/all/get"), REMOTE_GET, battery=True),
    Route("/remote/ioctl/clr_alarm", _fixed("/remote/ioctl/clr_alarm"), CLR_ALARM),
    Route("/version/get", _fixed("/version/get")),
    Route("/essx/hello", _fixed("/essx/hello")),
)
ROUTES_BY_NAME = {r.name: r for r in ROUTES}


# --- statistics ------------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile of ``values`` (p in 0..100); None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(p / 100.0 * len(s)) - 1)
    return s[min(k, len(s) - 1)]


def summary(seconds):
    """{n, median, p95, p99, max, mean} in milliseconds."""
    ms = [x * 1000.0 for x in seconds]
    if not ms:
        return {"n": 0, "median": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"n": len(ms), "median": percentile(ms, 50), "p95": percentile(ms, 95),
            "p99": percentile(ms, 99), "max": max(ms), "mean": sum(ms) / len(ms)}


def _fmt(x, digits=1):
    return "-" if x is None else "%.*f" % (digits, x)


# --- processes ----------------------------------------------------------------------

def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimHost:
    """``bench/simhost.py`` as a subprocess: the two simulators and their counters."""

    def __init__(self, log):
        self.proc = subprocess.Popen([sys.executable, SIMHOST], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                                     start_new_session=True)   # Ctrl-C reaches the bench only
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("simulator host did not start (exit %s)" % self.proc.wait())
        self.info = json.loads(line)
        self._lock = threading.Lock()

    def stats(self):
        """The simulators' counters now."""
        with self._lock:
            self.proc.stdin.write("stats\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())

    def stop(self):
        """Stop the simulators; returns their final counters (None if they were lost)."""
        if self.proc.poll() is not None:
            return None
        final = None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
            final = json.loads(line) if line else None
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return final


def load_shipped():
    """The shipped configuration (drivers/dcdc_batt_comm.yml) as a dict."""
    import yaml

    with open(SHIPPED_CONFIG, encoding="utf-8") as f:
        return yaml.safe_load(f)


def dcdc_section(doc):
    """The converter settings section that ``doc``'s dcdc_dev names (a dict inside ``doc``)."""
    return doc["dcdc"][doc["ess_system"]["dcdc_dev"][0]["config"]]


def write_config(path, dcdc_port, battery_port, interval):
    """The shipped configuration with the simulators' ports and ``command_interval``."""
    import yaml

    doc = load_shipped()
    dev = doc["ess_system"]["dcdc_dev"][0]
    dev["params"][0] = dcdc_port
    dev["kwparams"]["dir_pin"] = "not_used"
    bat = doc["ess_system"]["battery_dev"][0]
    bat["kwparams"]["port"] = battery_port
    bat["kwparams"]["dir_pin"] = "not_used"
    dcdc_section(doc)["command_interval"] = interval
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return doc


class Server:
    """``essx_server.py`` as a subprocess on a free port of 127.0.0.1."""

    def __init__(self, config, log, script=SERVER):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, script, "--config", config, "--host", "127.0.0.1",
                                      "--port", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)   # Ctrl-C reaches the bench only
        self.exit_code = None

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, limit=30.0):
        """Poll /version/get until it answers 200; RuntimeError when the server died or never answered."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s before answering" % self.proc.returncode)
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/version/get")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not answer within %.0f s" % limit)

    def stop(self, limit=15.0):
        """SIGTERM, wait; returns the exit code (killed: the negative signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(limit)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        return self.exit_code


class Client:
    """A persistent HTTP/1.1 connection; ``get(path) -> (status, body, seconds)``.

    Transport failures come back as status None with the error text as body,
    after which the next call reconnects.  With ``fresh=True`` every call
    opens (and the server closes) a new connection.
    """

    def __init__(self, port, timeout=30.0, fresh=False):
        self.port = port
        self.timeout = timeout
        self.fresh = fresh
        self.conn = None

    def get(self, path):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.connect()      # TCP setup is not part of the measured time
            except OSError as e:
                self.close()
                return None, "connect: %s: %s" % (type(e).__name__, e), 0.0
        t0 = time.perf_counter()
        try:
            headers = {"Connection": "close"} if self.fresh else {}
            self.conn.request("GET", path, headers=headers)
            r = self.conn.getresponse()
            body = r.read()
            dt = time.perf_counter() - t0
            status = r.status
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return None, "%s: %s" % (type(e).__name__, e), time.perf_counter() - t0
        if self.fresh or r.will_close:
            self.close()
        return status, body, dt

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@contextlib.contextmanager
def bench_system(interval, workdir, name, server_script=SERVER):
    """Simulators + server with ``command_interval`` = interval; yields (server, simhost, settings).

    ``server_script`` is the essx_server.py to run (another tree's for an
    A/B: the simulators stay this tree's, so both sides meet the same devices).
    """
    sim_log = open(os.path.join(workdir, "%s-simhost.log" % name), "w")
    server_log_path = os.path.join(workdir, "%s-server.log" % name)
    server_log = open(server_log_path, "w")
    sim = server = None
    try:
        sim = SimHost(sim_log)
        config = os.path.join(workdir, "%s.yml" % name)
        doc = write_config(config, sim.info["dcdc_port"], sim.info["battery_port"], interval)
        section = dcdc_section(doc)
        settings = {
            "command_interval": interval,
            "dcdc_baud": sim.info["dcdc_baud"],
            "dcdc_turnaround": sim.info["dcdc_turnaround"],
            "battery_baud": sim.info["battery_baud"],
            "battery_turnaround": sim.info["battery_turnaround"],
            "dcdc_timeout": section["timeout"],
            "battery_timeout": doc["ess_system"]["battery_dev"][0]["kwparams"]["timeout"],
            "server_threads": 8,
            "simulators": "bench/simhost.py (separate process); server without --simulate",
        }
        server = Server(config, server_log, server_script)
        server.wait_ready()
        settings["server_script"] = server_script
        settings["server_pid"] = server.pid
        yield server, sim, settings
    except BaseException:
        if server is not None:
            server_log.flush()
            sys.stderr.write("server log (%s), last lines:\n" % server_log_path)
            with open(server_log_path, encoding="utf-8", errors="replace") as f:
                sys.stderr.write("".join(f.readlines()[-20:]))
        raise
    finally:
        if server is not None:
            server.stop()
        if sim is not None:
            sim.stop()
        sim_log.close()
        server_log.close()


# --- latency table --------------------------------------------------------------------

def measure_routes(port, calls, interval, settings, routes=ROUTES, pid=None):
    """N calls of every route on one connection; returns {route name: result dict}.

    With ``pid`` (the server's), each result also has ``cpu_ms``: the
    server's CPU time (every thread, user + system, from
    /proc/PID/task/*/schedstat, ns resolution) over the N counted calls
    divided by N -- what one request of that route costs the node.
    """
    client = Client(port)
    gap = interval + 0.001
    out = {}
    try:
        for route in routes:
            times, bad = [], collections.Counter()
            cpu_start = None
            for i in range(-1, calls):          # call -1 is the warm-up, not counted
                time.sleep(gap)
                if i == 0 and pid is not None:
                    cpu_start = cpu_ns(pid)
                status, body, dt = client.get(route.path(i % 2))
                if status != 200:
                    bad["%s %s" % (status, body[:80] if isinstance(body, bytes) else body)] += 1
                    continue
                if i >= 0:
                    times.append(dt)
            cpu_ms = None
            if cpu_start is not None and calls > 0:
                cpu_ms = (cpu_ns(pid) - cpu_start) / 1e6 / calls
            bound = route.bound(settings)
            s = summary(times)
            s.update({
                "commands": list(route.commands),
                "battery": route.battery,
                "bound": None if bound is None else bound * 1000.0,
                "ratio": None if bound is None or s["median"] is None else s["median"] / (bound * 1000.0),
                "errors": dict(bad),
                "cpu_ms": cpu_ms,
            })
            out[route.name] = s
    finally:
        client.close()
    return out


def print_table(title, results):
    print()
    print(title)
    head = "%-26s | %8s | %8s | %8s | %8s | %6s | %7s" % ("route", "median", "p95", "max", "bound", "ratio",
                                                          "CPU ms")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        line = "%-26s | %8s | %8s | %8s | %8s | %6s | %7s" % (
            name, _fmt(r["median"]), _fmt(r["p95"]), _fmt(r["max"]), _fmt(r["bound"]), _fmt(r["ratio"], 2),
            _fmt(r.get("cpu_ms"), 2))
        if r["errors"]:
            line += "   errors: %s" % r["errors"]
        print(line)


# --- load -------------------------------------------------------------------------------

class Recorder:
    """Thread-safe latency and error collection per category."""

    def __init__(self):
        self.lock = threading.Lock()
        self.times = collections.defaultdict(list)
        self.errors = collections.defaultdict(collections.Counter)
        self.requests = collections.Counter()

    def add(self, category, status, body, dt, expected=200):
        with self.lock:
            self.requests[category] += 1
            if status == expected:
                self.times[category].append(dt)
                return True
            text = body[:100].decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            self.errors[category]["%s %s" % (status, text)] += 1
            return False

    def error(self, category, text):
        with self.lock:
            self.errors[category][text] += 1

    def result(self):
        out = {}
        with self.lock:
            for cat in sorted(self.requests):
                s = summary(self.times[cat])
                s["requests"] = self.requests[cat]
                s["errors"] = dict(self.errors[cat])
                out[cat] = s
        return out

    def error_count(self):
        with self.lock:
            return sum(sum(c.values()) for c in self.errors.values())


def run_load(port, duration, threads):
    """Pollers, a setter and a battery probe for ``duration`` seconds; returns results per category."""
    rec = Recorder()
    stop = threading.Event()

    def poller(k):
        c = Client(port)
        i = k
        while not stop.is_set():
            path = "/all/get" if i % 2 == 0 else "/dcdc/get/status"
            rec.add("poll " + path, *c.get(path))
            i += 1
        c.close()

    def setter():
        c = Client(port)
        i = 0
        while not stop.is_set():
            rec.add("/dcdc/set (full)", *c.get(_full_set("/dcdc/set")(i)))
            i += 1
        c.close()

    def battery():
        c = Client(port)
        i = 0
        while not stop.is_set():
            path = "/battery/get" if i % 2 == 0 else "/1/log/data"
            rec.add(path, *c.get(path))
            i += 1
            stop.wait(0.05)
        c.close()

    workers = [threading.Thread(target=poller, args=(k,), name="poller-%d" % k) for k in range(threads)]
    workers += [threading.Thread(target=setter, name="setter"),
                threading.Thread(target=battery, name="battery")]
    for w in workers:
        w.start()
    try:
        stop.wait(duration)
    finally:
        stop.set()
        for w in workers:
            w.join()
    return rec.result()


def print_load(title, results):
    print()
    print(title)
    head = "%-26s | %6s | %8s | %8s | %8s | %s" % ("requests", "n", "p50", "p99", "max", "errors")
    print(head)
    print("-" * len(head))
    for cat, r in results.items():
        print("%-26s | %6d | %8s | %8s | %8s | %s" % (cat, r["requests"], _fmt(r["median"]), _fmt(r["p99"]),
                                                     _fmt(r["max"]), sum(r["errors"].values()) or ""))


# --- soak -------------------------------------------------------------------------------

MODE_NAMES = {0x0000: "Waiting", 0x0014: "Grid Autonomy"}


def _set_check(rec, category, status, body, dt, mode):
    """Record a full set and check that its reply reports the mode that was set."""
    if not rec.add(category, status, body, dt):
        return
    try:
        got = json.loads(body)["status"]["operationMode"]
    except (ValueError, KeyError, TypeError):
        got = None
    if got != MODE_NAMES[mode]:
        rec.error(category, "operationMode %r after setting 0x%04x" % (got, mode))


def cpu_ns(pid):
    """CPU time (ns, user + system) the live threads of process ``pid`` have run,
    from /proc/PID/task/*/schedstat (its first field: time on a CPU, ns).

    Threads that ended are not counted; the server's threads (waitress'
    workers, the battery watch, the converter line) live as long as it.
    """
    total = 0
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/schedstat" % (base, tid), encoding="ascii") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue                    # the thread ended between listdir and open
    return total


def process_stats(pid):
    """RSS (bytes), thread count, CPU seconds of process ``pid``."""
    import psutil

    p = psutil.Process(pid)
    with p.oneshot():
        cpu = p.cpu_times()
        return {"rss": p.memory_info().rss, "threads": p.num_threads(), "cpu": cpu.user + cpu.system}


def run_soak(port, pid, sim, minutes, sample_every=10.0):
    """Mixed traffic for ``minutes``; returns the soak report (see module doc)."""
    rec = Recorder()
    stop = threading.Event()

    def poller(first, gets, set_phase, modes, full_set, partial_sets, extra=()):
        """One connection: GET ``first`` once, then ``gets`` round after round;
        in every 5th round (``set_phase``) the full set (category, route) with
        the next mode of ``modes``, checked, and the ``partial_sets`` (route
        names); every 20th round ``extra``."""
        c = Client(port)
        for path in first:
            rec.add(path, *c.get(path))
        category, route = full_set
        i = 0
        while not stop.is_set():
            for path in gets:
                rec.add(path, *c.get(path))
            if i % 5 == set_phase:
                mode = modes[(i // 5) % 2]
                _set_check(rec, category, *c.get(_full_set(route, mode)(i)), mode=mode)
                for name in partial_sets:
                    rec.add(name, *c.get(ROUTES_BY_NAME[name].path(i)))
            if i % 20 == 7:
                for path in extra:
                    rec.add(path, *c.get(path))
            i += 1
        c.close()

    def v2():
        poller(("/version/get",), ("/all/get", "/dcdc/get/status"), 0, (0x0000, 0x0014),
               ("/dcdc/set (full)", "/dcdc/set"), ("/dcdc/set?dvg&drg", "/dcdc/set?dig"))

    def v1():
        poller((), ("/remote/get", "/1/log/data", "/remote/get/status"), 2, (0x0014, 0x0000),
               ("/remote/set", "/remote/set"), ("/remote/set/voltage", "/remote/set/current"),
               extra=("/dcdc/get", "/remote/ioctl/get", "/remote/ioctl/clr_alarm", "/remote/ioctl/set"))

    def misc():
        c = Client(port, fresh=True)     # a new TCP connection for every request
        expected_failures = (
            ("bad mode (400)", "/remote/set?mode=0x0099&dvg=350&dig=1&drg=0", 400),
            ("dvg out of range (400)", "/remote/set/voltage?dvg=999&drg=0", 400),
            ("no such route (404)", "/no/such/route", 404),
            ("goodbye disabled (404)", "/essx/goodbye", 404),
        )
        i = 0
        while not stop.is_set():
            rec.add("/battery/get", *c.get("/battery/get"))
            rec.add("/version/get", *c.get("/version/get"))
            if i % 10 == 0:
                rec.add("/essx/hello", *c.get("/essx/hello"))
                name, path, code = expected_failures[(i // 10) % len(expected_failures)]
                rec.add(name, *c.get(path), expected=code)
            i += 1
            stop.wait(0.1)

    def pass_over_every_route():
        c = Client(port)
        for route in ROUTES:
            rec.add(route.name, *c.get(route.path(0)))
        c.close()

    launch = process_stats(pid)
    pass_over_every_route()           # warm-up: every code path loaded once
    time.sleep(1.0)
    start = process_stats(pid)
    sim_start = sim.stats()
    samples = [dict(start, t=0.0)]
    workers = [threading.Thread(target=f, name=f.__name__) for f in (v2, v1, misc)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    try:
        end = t0 + minutes * 60.0
        while time.monotonic() < end:
            if stop.wait(min(sample_every, max(0.0, end - time.monotonic()))):
                break
            samples.append(dict(process_stats(pid), t=time.monotonic() - t0))
            print("  soak %5.0f s: %d requests, %d unexpected errors, rss %.1f MB, %d threads"
                  % (samples[-1]["t"], sum(rec.requests.values()), rec.error_count(),
                     samples[-1]["rss"] / 2**20, samples[-1]["threads"]), flush=True)
    finally:
        stop.set()
        for w in workers:
            w.join()
    elapsed = time.monotonic() - t0
    time.sleep(1.0)
    end_stats = process_stats(pid)
    sim_end = sim.stats()
    results = rec.result()
    return {
        "minutes": minutes,
        "elapsed_s": elapsed,
        "requests": sum(r["requests"] for r in results.values()),
        "unexpected_errors": rec.error_count(),
        "collisions": {
            "dcdc": sim_end["dcdc_collisions"] - sim_start["dcdc_collisions"],
            "battery": sim_end["battery_collisions"] - sim_start["battery_collisions"],
        },
        "device_requests": {
            "dcdc": sim_end["dcdc_requests"] - sim_start["dcdc_requests"],
            "battery": sim_end["battery_requests"] - sim_start["battery_requests"],
        },
        "server": {
            "launch": launch, "start": start, "end": end_stats,
            "rss_growth_mb": (end_stats["rss"] - start["rss"]) / 2**20,
            "threads_change": end_stats["threads"] - start["threads"],
            "cpu_s": end_stats["cpu"] - start["cpu"],
        },
        "samples": samples,
        "routes": results,
    }


def print_soak(report):
    print()
    print("Soak: %.1f min, %d requests, %d unexpected errors, collisions dcdc %d / battery %d "
          "(%d converter commands, %d battery reads)"
          % (report["elapsed_s"] / 60, report["requests"], report["unexpected_errors"],
             report["collisions"]["dcdc"], report["collisions"]["battery"],
             report["device_requests"]["dcdc"], report["device_requests"]["battery"]))
    s = report["server"]
    print("Server: RSS %.1f MB at launch; after warm-up -> end %.1f -> %.1f MB (%+.2f MB), "
          "threads %d -> %d, CPU %.1f s"
          % (s["launch"]["rss"] / 2**20, s["start"]["rss"] / 2**20, s["end"]["rss"] / 2**20,
             s["rss_growth_mb"],
             s["start"]["threads"], s["end"]["threads"], s["cpu_s"]))
    print_load("Soak latencies (ms)", report["routes"])
    for cat, r in report["routes"].items():
        if r["errors"]:
            print("  %s: %s" % (cat, r["errors"]))


# --- machine and main -----------------------------------------------------------------------

def machine_info():
    """CPU model, cores, OS, Python and package versions."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("bottle", "waitress", "pyserial", "pymodbus", "PyYAML", "psutil"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": "%s %s" % (platform.python_implementation(), platform.python_version()),
        "packages": versions,
        "loadavg_at_start": os.getloadavg(),
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Latency/load/soak bench of the dcdc_batt_comm Web API "
                                            "against simulated devices (see bench/README.md).")
    p.add_argument("--calls", type=int, default=20, help="calls per route for the latency table (0: skip it)")
    p.add_argument("--interval", choices=("default", "0", "both"), default="both",
                   help="command_interval: the shipped one, 0, or both (default)")
    p.add_argument("--json", help="write the results here (default bench/results/bench-<time>.json)")
    p.add_argument("--load", action="store_true", help="run the concurrent-load test")
    p.add_argument("--load-threads", type=int, default=4, help="polling threads under --load (4)")
    p.add_argument("--load-duration", type=float, default=20.0, help="seconds of --load (20)")
    p.add_argument("--soak", type=float, metavar="MINUTES", help="run mixed traffic for MINUTES")
    p.add_argument("--server-tree", metavar="DIR",
                   help="run DIR/drivers/essx_server.py (another checkout) against this tree's simulators")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    default_interval = float(dcdc_section(load_shipped())["command_interval"])
    intervals = {"default": [default_interval], "0": [0.0], "both": [default_interval, 0.0]}[args.interval]
    extra_interval = 0.0 if args.interval == "0" else default_interval
    report = {"machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "argv": sys.argv[1:], "runs": []}
    print("machine: %s, %s cores, %s" % (report["machine"]["cpu_model"], report["machine"]["cpu_count"],
                                         report["machine"]["python"]))
    failed = []
    json_path = args.json or os.path.join(HERE, "results", "bench-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    workdir = tempfile.mkdtemp(prefix="essx-bench-")
    server_script = SERVER if args.server_tree is None else os.path.join(
        os.path.abspath(args.server_tree), "drivers", "essx_server.py")
    try:
        plan = []
        if args.calls > 0:
            plan += [("latency", iv) for iv in intervals]
        if args.load:
            plan.append(("load", extra_interval))
        if args.soak:
            plan.append(("soak", extra_interval))
        for n, (kind, interval) in enumerate(plan):
            run = {"kind": kind}
            with bench_system(interval, workdir, "%d-%s" % (n, kind), server_script) as (server, sim, settings):
                run["settings"] = settings
                print()
                print("%s run: command_interval %.3f s, converter %d baud + %.0f ms turnaround, "
                      "battery %d baud"
                      % (kind, interval, settings["dcdc_baud"], settings["dcdc_turnaround"] * 1000,
                         settings["battery_baud"]), flush=True)
                if kind == "latency":
                    run["calls"] = args.calls
                    run["routes"] = measure_routes(server.port, args.calls, interval, settings,
                                                   pid=server.pid)
                    run["server"] = process_stats(server.pid)
                    print_table("Latency, ms (%d calls; command_interval %.3f s)" % (args.calls, interval),
                                run["routes"])
                    print("server after the table: RSS %.2f MB, %d threads"
                          % (run["server"]["rss"] / 2 ** 20, run["server"]["threads"]))
                elif kind == "load":
                    run["threads"] = args.load_threads
                    run["duration_s"] = args.load_duration
                    run["routes"] = run_load(server.port, args.load_duration, args.load_threads)
                    print_load("Under load, ms (%d pollers + 1 setter, %.0f s; command_interval %.3f s)"
                               % (args.load_threads, args.load_duration, interval), run["routes"])
                    errors = sum(sum(r["errors"].values()) for r in run["routes"].values())
                    if errors:
                        failed.append("load: %d unexpected errors" % errors)
                else:
                    run.update(run_soak(server.port, server.pid, sim, args.soak))
                    print_soak(run)
                    if run["unexpected_errors"]:
                        failed.append("soak: %d unexpected errors" % run["unexpected_errors"])
                    if run["collisions"]["dcdc"] or run["collisions"]["battery"]:
                        failed.append("soak: collisions %s" % run["collisions"])
            run["server_exit_code"] = server.exit_code
            print("server exit code: %s" % server.exit_code)
            if server.exit_code != 0:
                failed.append("%s run: server exited %s" % (kind, server.exit_code))
            report["runs"].append(run)
    except KeyboardInterrupt:
        failed.append("interrupted")
        print("\ninterrupted; server stopped", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - report, keep the partial JSON
        failed.append("error: %s: %s" % (type(e).__name__, e))
        print("bench failed: %s: %s (logs in %s)" % (type(e).__name__, e, workdir), file=sys.stderr)
    report["failed"] = failed
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print()
    print("results: %s" % json_path)
    if failed:
        print("FAILED: %s (server and simulator logs kept in %s)" % ("; ".join(failed), workdir))
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
