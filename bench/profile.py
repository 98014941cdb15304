#!/usr/bin/env python3
"""Where a request's CPU goes, layer by layer: the server sampled by py-spy.

    python3 bench/profile.py [--calls 200] [--rate 1000] [--routes R1,R2,...]
                             [--server-tree DIR] [--json out.json]

Starts the bench's simulators and server (``bench.py``'s ``bench_system``,
``command_interval`` 0; ``--server-tree`` runs another checkout's server
against this tree's simulators), and for each route runs N calls on one
connection while ``py-spy record --nonblocking --format raw`` samples the
server's threads that are on a CPU (py-spy leaves out threads asleep in a
system call: a read waiting for the line costs nothing and shows nothing;
the kernel's work in a call -- a wake-up for every chunk the line delivers
-- shows as the Python line that made it).  Calls are 1 ms apart, as in the
latency table.  Meanwhile ``cpu_ns`` reads the server's CPU time: each route
gets its measured CPU ms per request, split between the layers in
proportion to their samples (sampling is a share, not a clock).

A sample goes to the layer of its innermost frame whose file ``LAYERS``
knows (the layer that spends the time, as a profiler's "self" time); a
stack with no known frame is "other".  Needs py-spy (``pip install
py-spy``) and the right to trace the server (root, or
``kernel.yama.ptrace_scope`` 0).  Reports, asserts nothing (bench/README.md).
"""
import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import bench  # noqa: E402  (bench/bench.py, beside this file)

#: (layer, path fragments of its files), tried in order on each frame's file.
LAYERS = (
    ("HTTP server (waitress)", ("/waitress/", "/socketserver.py", "/http/", "/selectors.py", "/socket.py")),
    ("route (bottle, web, params)", ("/bottle.py", "/essx_service/web.py", "/essx_service/params.py",
                                     "/essx_service/app.py", "/essx/web.py", "/essx/essx_params.py",
                                     "/essx_server.py")),
    ("JSON", ("/json/",)),
    ("recorder, metrics, status", ("/essx_service/observe.py", "/essx_service/metrics.py",
                                   "/essx_service/status.py", "/prometheus_client/", "/essx/observe.py",
                                   "/essx/metrics.py", "/essx/status.py")),
    ("controller (essx_type_oes, blocks)", ("/essx/essx_type_oes.py", "/essx/blocks.py", "/essx/exchange.py",
                                            "/essx/deadline.py", "/essx/essx_config.py")),
    ("link (eza2500.link, commands)", ("/eza2500/link.py", "/eza2500/commands.py", "/eza2500/__init__.py")),
    ("codec, reply reader", ("/eza2500/codec.py", "/eza2500/table.py", "/eza2500/reader.py")),
    ("serial I/O (pyserial, device, rs485)", ("/serial/", "/essx/essx_rs485.py", "/eza2500/eza2500_device.py")),
    ("battery (Modbus client)", ("/battery_emulator/", "/essx/essx_modbus.py", "/essx/modbus_reply.py",
                                 "/pymodbus/")),
    ("errors", ("/essx/essx_exception.py",)),
    ("logging", ("/logging/",)),
    ("threads, locks", ("/threading.py", "/queue.py", "/concurrent/")),
)

DEFAULT_ROUTES = ("/remote/get", "/remote/get/status", "/remote/set", "/remote/set/current",
                  "/remote/set/voltage", "/all/get", "/1/log/data", "/battery/get", "/version/get")


def layer_of(frame_file):
    """The layer name of a frame's file, or None."""
    for name, parts in LAYERS:
        if any(p in frame_file for p in parts):
            return name
    return None


def stack_layer(stack):
    """The layer of a py-spy raw stack ("thread;func (file:line);..." outermost first)."""
    for frame in reversed(stack.split(";")):
        start = frame.rfind("(")
        found = layer_of(frame[start + 1:] if start >= 0 else frame)
        if found:
            return found
    return "other"


def read_raw(path):
    """{layer: samples} of a py-spy raw file (one "stack count" a line)."""
    out = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                out[stack_layer(stack)] += int(count)
    return out


def profile_route(route, port, pid, calls, rate, workdir):
    """N calls of ``route`` under py-spy; {"cpu_ms", "wall_ms", "samples", "layers_ms"}."""
    raw = os.path.join(workdir, "%s.txt" % route.name.strip("/").replace("/", "_").replace("?", "_"))
    client = bench.Client(port)
    client.get(route.path(1))                                  # warm-up
    spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                            "--pid", str(pid), "--rate", str(rate), "--nonblocking",
                            "--format", "raw", "--full-filenames", "--output", raw],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)                                            # py-spy attaches
    cpu0, t0 = bench.cpu_ns(pid), time.perf_counter()
    walls = []
    for i in range(calls):
        time.sleep(0.001)
        status, _, dt = client.get(route.path(i % 2))
        if status == 200:
            walls.append(dt)
    cpu1, elapsed = bench.cpu_ns(pid), time.perf_counter() - t0
    client.close()
    spy.send_signal(signal.SIGINT)
    spy.wait(30)
    layers = read_raw(raw)
    total = sum(layers.values())
    cpu_ms = (cpu1 - cpu0) / 1e6 / calls
    return {
        "cpu_ms": cpu_ms,
        "wall_ms": 1000.0 * sorted(walls)[len(walls) // 2] if walls else None,
        "elapsed_s": elapsed,
        "samples": total,
        "layers_ms": {name: cpu_ms * n / total for name, n in layers.most_common()} if total else {},
    }


def print_profile(results):
    names = [n for n, _ in LAYERS] + ["other"]
    routes = list(results)
    print("\nCPU ms per request by layer (share of py-spy samples x measured CPU)\n")
    print("| layer | %s |" % " | ".join(routes))
    print("|---|" + "---:|" * len(routes))
    for name in names:
        if any(results[r]["layers_ms"].get(name) for r in routes):
            print("| %s | %s |" % (name, " | ".join("%.2f" % results[r]["layers_ms"].get(name, 0.0)
                                                    for r in routes)))
    print("| **total CPU ms** | %s |" % " | ".join("**%.2f**" % results[r]["cpu_ms"] for r in routes))
    print("| wall ms (median) | %s |" % " | ".join("%.1f" % results[r]["wall_ms"] for r in routes))
    print("| samples | %s |" % " | ".join("%d" % results[r]["samples"] for r in routes))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples a second (1000)")
    p.add_argument("--routes", default=",".join(DEFAULT_ROUTES), help="comma-separated bench route names")
    p.add_argument("--server-tree", metavar="DIR", help="profile DIR/drivers/essx_server.py instead")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    script = bench.SERVER if args.server_tree is None else os.path.join(
        os.path.abspath(args.server_tree), "drivers", "essx_server.py")
    workdir = tempfile.mkdtemp(prefix="essx-profile-")
    results = {}
    with bench.bench_system(0.0, workdir, "profile", script) as (server, _sim, _settings):
        for name in args.routes.split(","):
            route = bench.ROUTES_BY_NAME[name]
            results[name] = profile_route(route, server.port, server.pid, args.calls, args.rate, workdir)
            print("%s: %.2f CPU ms/request, %d samples" % (name, results[name]["cpu_ms"],
                                                           results[name]["samples"]), flush=True)
        after = bench.process_stats(server.pid)
    print_profile(results)
    print("\nserver: %s; RSS %.2f MB, %d threads after the runs" % (script, after["rss"] / 2 ** 20,
                                                                    after["threads"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"server": script, "routes": results, "after": after}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
