#!/usr/bin/env python3
"""Scale of essx-grid: 1, 10 and 20 nodes on this machine.

    python3 bench/grid_bench.py [--nodes 1 10 20] [--interval default|0|both]
                                [--calls 20] [--load-seconds 8] [--json out.json]

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
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        proc.stdout.close()
    report.update(stop_s=time.monotonic() - t0, exit_code=code)
    return report


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
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 20])
    p.add_argument("--interval", choices=("default", "0", "both"), default="both",
                   help="command_interval: the shipped one, 0, or both (default)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--load-seconds", type=float, default=8.0)
    p.add_argument("--json", help="write every figure to this file")
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
