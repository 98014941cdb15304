#!/usr/bin/env python3
"""Scale of essx-grid: 1, 10 and 20 nodes on this machine.

    python3 bench/grid_bench.py [--nodes 1 10 20] [--interval default|0|both]
                                [--calls 20] [--load-seconds 8] [--json out.json]
    python3 bench/grid_bench.py --apis-main [--nodes 1 100] [--seconds 60] [--json out.json]

For each N it starts ``drivers/essx_grid.py --nodes N --port 0 --speed 1``
as a process of its own, with the shipped driver configuration or a copy of
it with ``command_interval`` 0 (no gap between converter commands: the most
work per second the grid can be given), and measures:

* start-up: seconds until every node and the control port are listed;
* idle: the grid process's CPU (% of one core) over ``IDLE_S`` s with every
  node running (battery watch threads, simulators) and an energy exchange
  on the bus (node 0 Grid Autonomy, the others ±0.2 A alternately);
* one node: ``--calls`` sequential ``/remote/get/status`` calls to node 0,
  others idle (median, p95 in ms);
* all nodes: one client per node calling ``/remote/get/status`` back to back
  for ``--load-seconds`` s (worst case: apis-main polls far less often):
  latency of every call (median, p95, max in ms), calls/s, CPU %;
* RSS (MiB) and threads of the grid process, and the time SIGTERM takes.

``--apis-main`` (issue 19) instead polls as apis-main does: every node gets
``/all/get`` every PERIOD_S (5 s, apis-main's DataAcquisition period) over a
persistent connection, node i's first poll ``i * PERIOD_S / N`` s after the
start (the phases spread over the period), for ``--seconds`` s, shipped
configuration, an energy exchange on the bus.  Per node: p50, p95 and max
latency (ms); the worst node's p95 against the lone node's (N=1) p95 (goal:
at most 1.2 times); the grid process's CPU % over the run, RSS, threads,
start-up and stop time.

Reports only; asserts nothing (exit 1 only when the grid fails to start or
stop cleanly).  Other programs sharing the CPU change the figures.
"""
import argparse
import http.client
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = os.path.join(ROOT, "drivers", "essx_grid.py")
ROUTE = "/remote/get/status"
#: apis-main's poll (DataAcquisition), and its period in s.
POLL_ROUTE = "/all/get"
PERIOD_S = 5.0
IDLE_S = 3.0
START_TIMEOUT_S = 120.0


SHIPPED = os.path.join(ROOT, "drivers", "dcdc_batt_comm.yml")


def driver_config(interval, directory):
    """Path of the driver configuration: the shipped one, or a copy with
    ``command_interval`` = interval (s) in ``directory``."""
    if interval is None:
        return SHIPPED
    with open(SHIPPED, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for section in doc["dcdc"].values():
        section["command_interval"] = interval
    path = os.path.join(directory, "grid-bench-%g.yml" % interval)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f)
    return path


def start_grid(nodes, config):
    """(process, {node: (host, port)}, control (host, port), start-up s)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, GRID, "--nodes", str(nodes), "--port", "0", "--speed", "1",
                             "--driver-config", config],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    out = b""
    while b"/grid\n" not in out:
        left = START_TIMEOUT_S - (time.monotonic() - t0)
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("essx-grid --nodes %d did not start: %r" % (nodes, out[-300:]))
        if select.select([proc.stdout], [], [], left)[0]:
            out += os.read(proc.stdout.fileno(), 65536)
    started = time.monotonic() - t0
    urls, control = {}, None
    for line in out.decode().splitlines():
        words = line.split()
        if line.startswith("essx-grid: node"):
            urls[int(words[2])] = _hostport(words[3])
        elif line.startswith("essx-grid: grid"):
            control = _hostport(words[2])
    return proc, urls, control, started


def _hostport(url):
    host, port = url.split("//")[1].split("/")[0].split(":")
    return host, int(port)


def get(conn, path):
    """GET over a persistent connection: (status, seconds)."""
    t0 = time.monotonic()
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status, time.monotonic() - t0


def exchange(urls):
    """Node 0 Grid Autonomy 350 V; odd nodes discharge 0.2 A, even nodes charge 0.2 A."""
    for i, (host, port) in sorted(urls.items()):
        mode, dig = ("0x0014", 2.5) if i == 0 else ("0x0002", 0.2) if i % 2 else ("0x0041", 0.2)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        status, _ = get(conn, "/remote/set?mode=%s&dvg=350&dig=%s&drg=0" % (mode, dig))
        conn.close()
        if status != 200:
            raise RuntimeError("node %d: /remote/set answered %d" % (i, status))


def cpu_percent(proc, seconds):
    """CPU of ``proc`` (and its threads) over ``seconds`` s, % of one core."""
    t = proc.cpu_times()
    time.sleep(seconds)
    u = proc.cpu_times()
    return 100.0 * ((u.user - t.user) + (u.system - t.system)) / seconds


def one_node(urls, calls):
    host, port = urls[0]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    get(conn, ROUTE)
    times = [get(conn, ROUTE)[1] for _ in range(calls)]
    conn.close()
    return _stats(times)


def all_nodes(urls, seconds, proc):
    """One back-to-back client per node for ``seconds`` s."""
    stop = threading.Event()
    times, errors = [], []
    lock = threading.Lock()

    def client(host, port):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while not stop.is_set():
            status, dt = get(conn, ROUTE)
            with lock:
                (times if status == 200 else errors).append(dt)
        conn.close()

    threads = [threading.Thread(target=client, args=hp, daemon=True) for hp in urls.values()]
    for t in threads:
        t.start()
    cpu = cpu_percent(proc, seconds)
    stop.set()
    for t in threads:
        t.join(30)
    result = _stats(times)
    result.update(calls_per_s=len(times) / seconds, errors=len(errors), cpu_percent=cpu)
    return result


def _stats(times):
    ms = sorted(t * 1000 for t in times)
    return {"calls": len(ms), "median_ms": statistics.median(ms),
            "p95_ms": ms[int(0.95 * (len(ms) - 1))], "max_ms": ms[-1]}


def stop_grid(proc):
    """SIGTERM the grid process (killed after 60 s); {"stop_s": s it took, "exit_code": its status}."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    proc.stdout.close()
    return {"stop_s": time.monotonic() - t0, "exit_code": code}


def measure(nodes, calls, load_seconds, config):
    proc, urls, control, started = start_grid(nodes, config)
    ps = psutil.Process(proc.pid)
    try:
        exchange(urls)
        report = {"nodes": nodes, "startup_s": started, "idle_cpu_percent": cpu_percent(ps, IDLE_S),
                  "one_node": one_node(urls, calls),
                  "all_nodes": all_nodes(urls, load_seconds, ps),
                  "rss_mib": ps.memory_info().rss / 2 ** 20, "threads": ps.num_threads()}
    finally:
        stopped = stop_grid(proc)
    report.update(stopped)
    return report


def apis_main(urls, seconds, proc):
    """Every node polled with POLL_ROUTE every PERIOD_S s for ``seconds`` s, phases
    spread over the period; {"nodes": {i: stats}, "errors", "cpu_percent"}."""
    n = len(urls)
    start = time.monotonic() + 0.5
    times = {i: [] for i in urls}
    errors = []
    stop = threading.Event()

    def client(i, host, port):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        due = start + i * PERIOD_S / n
        while due < start + seconds and not stop.wait(max(0.0, due - time.monotonic())):
            status, dt = get(conn, POLL_ROUTE)
            (times[i] if status == 200 else errors).append(dt)
            due += PERIOD_S
        conn.close()

    threads = [threading.Thread(target=client, args=(i, *hp), daemon=True) for i, hp in urls.items()]
    before = proc.cpu_times()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    stop.set()
    after, elapsed = proc.cpu_times(), time.monotonic() - t0
    cpu = 100.0 * ((after.user - before.user) + (after.system - before.system)) / elapsed
    return {"nodes": {i: _stats(ts) for i, ts in times.items() if ts}, "errors": len(errors), "cpu_percent": cpu}


def measure_apis_main(nodes, seconds, config):
    """One grid of ``nodes`` polled as apis-main polls (``apis_main``), with its start, RSS, threads, stop."""
    proc, urls, control, started = start_grid(nodes, config)
    ps = psutil.Process(proc.pid)
    try:
        exchange(urls)
        polled = apis_main(urls, seconds, ps)
        report = {"nodes": nodes, "seconds": seconds, "startup_s": started, "polled": polled,
                  "rss_mib": ps.memory_info().rss / 2 ** 20, "threads": ps.num_threads()}
    finally:
        stopped = stop_grid(proc)
    report.update(stopped)
    return report


def apis_main_table(reports):
    """The per-grid summary: per-node p50/p95/max spread, worst p95 against the lone node's."""
    lone = next((r for r in reports if r["nodes"] == 1), None)
    lone_p95 = lone["polled"]["nodes"][0]["p95_ms"] if lone and lone["polled"]["nodes"] else None
    rows = ["| nodes | polls | errors | node p50 ms min / median / max | node p95 ms min / median / max "
            "| worst node (p95 ms) | worst p95 / lone p95 | max ms | CPU % | RSS MiB | threads | start s | stop s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        per = r["polled"]["nodes"]
        p50 = sorted(s["median_ms"] for s in per.values())
        p95 = sorted(s["p95_ms"] for s in per.values())
        worst = max(per, key=lambda i: per[i]["p95_ms"])
        ratio = "%.2f" % (per[worst]["p95_ms"] / lone_p95) if lone_p95 else "-"
        rows.append("| %d | %d | %d | %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %d (%.0f) | %s | %.0f "
                    "| %.1f | %.0f | %d | %.1f | %.1f |"
                    % (r["nodes"], sum(s["calls"] for s in per.values()), r["polled"]["errors"],
                       p50[0], statistics.median(p50), p50[-1], p95[0], statistics.median(p95), p95[-1],
                       worst, per[worst]["p95_ms"], ratio, max(s["max_ms"] for s in per.values()),
                       r["polled"]["cpu_percent"], r["rss_mib"], r["threads"], r["startup_s"], r["stop_s"]))
    return "\n".join(rows)


def table(reports):
    rows = ["| gap s | nodes | start s | RSS MiB | MiB/node | threads | idle CPU % "
            "| one node median / p95 ms | all nodes median / p95 / max ms | calls/s | load CPU % | stop s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        one, load = r["one_node"], r["all_nodes"]
        rows.append("| %s | %d | %.1f | %.0f | %.1f | %d | %.1f | %.0f / %.0f | %.0f / %.0f / %.0f "
                    "| %.1f | %.0f | %.1f |"
                    % (r["interval"], r["nodes"], r["startup_s"], r["rss_mib"], r["rss_mib"] / r["nodes"],
                       r["threads"],
                       r["idle_cpu_percent"], one["median_ms"], one["p95_ms"], load["median_ms"],
                       load["p95_ms"], load["max_ms"], load["calls_per_s"], load["cpu_percent"], r["stop_s"]))
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, nargs="+", help="grid sizes (default 1 10 20; --apis-main: 1 100)")
    p.add_argument("--interval", choices=("default", "0", "both"), default="both",
                   help="command_interval: the shipped one, 0, or both (default)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--load-seconds", type=float, default=8.0)
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--apis-main", action="store_true",
                   help="poll every node with /all/get every 5 s as apis-main does (default nodes 1 100)")
    p.add_argument("--seconds", type=float, default=60.0, help="--apis-main: seconds of polling (default 60)")
    args = p.parse_args(argv)
    if args.apis_main:
        return run_apis_main(args.nodes or [1, 100], args.seconds, args.json)
    args.nodes = args.nodes or [1, 10, 20]
    intervals = {"default": [None], "0": [0.0], "both": [None, 0.0]}[args.interval]
    reports = []
    with tempfile.TemporaryDirectory() as directory:
        for interval in intervals:
            config = driver_config(interval, directory)
            for n in args.nodes:
                reports.append(measure(n, args.calls, args.load_seconds, config))
                reports[-1]["interval"] = "shipped" if interval is None else "%g" % interval
                print(json.dumps(reports[-1]), flush=True)
    print(table(reports))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(reports, f, indent=2)
    return 0 if all(r["exit_code"] == 0 for r in reports) else 1


def run_apis_main(nodes, seconds, json_path):
    """``--apis-main``: one grid per N in ``nodes``, shipped configuration; exit status."""
    reports = []
    for n in nodes:
        reports.append(measure_apis_main(n, seconds, SHIPPED))
        print(json.dumps(reports[-1]), flush=True)
    print(apis_main_table(reports))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(reports, f, indent=2)
    return 0 if all(r["exit_code"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
