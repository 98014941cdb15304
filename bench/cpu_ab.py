#!/usr/bin/env python3
"""CPU per request of two commits, A/B interleaved on the simulators.

    python3 bench/cpu_ab.py A B [--calls 30] [--rounds 5] [--interval 0]
                            [--routes R1,R2,...] [--idle 5] [--json FILE]

A and B are commits (anything ``git rev-parse`` takes) or ``.`` for the work
tree; each is checked out into a temporary ``git worktree`` and its
``drivers/essx_server.py`` is run, both at once, each against simulators of
its own from *this* tree (``bench.py``'s ``bench_system``: the same devices
for both sides, whatever the commits' own simulators are).

For every route (``bench.py``'s ROUTES: each route of docs/web-api.md) the
two servers take turns: in each of ``--rounds`` rounds, A then B (B then A
in every other round), ``--calls`` requests on one connection with
``command_interval`` + 1 ms between them, as the latency table waits.  A
block's CPU is the server's (every thread, user + system, ns, from
/proc/PID/task/*/schedstat) over the block divided by its requests; a
route's figure is the median over the rounds, so a moment of noise on the
machine moves one round, not the result.  Wall time is the median of all
the route's requests.

Also reported: each server's RSS and threads after a warm-up (every route
once) and at the end, and its CPU while idle for ``--idle`` s.  Prints a
Markdown table; writes everything to ``--json``.  Reports, asserts nothing
(bench/README.md).
"""
import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import ab  # noqa: E402  (bench/ab.py: the worktrees)
import bench  # noqa: E402  (bench/bench.py: simulators, server, client, routes)


def block(client, route, calls, gap, pid, first):
    """``calls`` requests of ``route``; (CPU ns per request, [wall s], errors)."""
    walls, errors = [], 0
    cpu0 = bench.cpu_ns(pid)
    for i in range(calls):
        time.sleep(gap)
        status, _, dt = client.get(route.path(first + i))
        if status == 200:
            walls.append(dt)
        else:
            errors += 1
    return (bench.cpu_ns(pid) - cpu0) / calls, walls, errors


def measure(sides, routes, calls, rounds, gap):
    """{route: {side: {"cpu_ms", "cpu_rounds_ms", "wall_ms", "errors"}}}."""
    out = {}
    for route in routes:
        cpu = {s: [] for s in sides}
        walls = {s: [] for s in sides}
        errors = dict.fromkeys(sides, 0)
        for n in range(rounds):
            order = list(sides) if n % 2 == 0 else list(reversed(list(sides)))
            for side in order:
                server, client = sides[side]
                per_request, w, e = block(client, route, calls, gap, server.pid, n * calls)
                cpu[side].append(per_request / 1e6)
                walls[side].extend(w)
                errors[side] += e
        out[route.name] = {side: {"cpu_ms": statistics.median(cpu[side]), "cpu_rounds_ms": cpu[side],
                                  "wall_ms": 1000.0 * statistics.median(walls[side]) if walls[side] else None,
                                  "errors": errors[side]} for side in sides}
        a, b = out[route.name]["A"]["cpu_ms"], out[route.name]["B"]["cpu_ms"]
        print("%-26s CPU ms A %.3f  B %.3f  B/A %.2f" % (route.name, a, b, b / a if a else float("nan")),
              flush=True)
    return out


def idle_cpu(pids, seconds):
    """CPU ms each process ran while left alone for ``seconds``."""
    start = {k: bench.cpu_ns(p) for k, p in pids.items()}
    time.sleep(seconds)
    return {k: (bench.cpu_ns(p) - start[k]) / 1e6 for k, p in pids.items()}


def print_report(args, results, memory, idle, settings):
    print("\nA = %s, B = %s; %d rounds x %d calls a route, command_interval %.3f s\n"
          % (args.a, args.b, args.rounds, args.calls, args.interval))
    print("| route | CPU ms A | CPU ms B | B/A | wall ms A | wall ms B | B wall / bound |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        bound = bench.ROUTES_BY_NAME[name].bound(settings)
        b_wall = r["B"]["wall_ms"]
        print("| %s | %.2f | %.2f | %.2f | %s | %s | %s |" % (
            name, r["A"]["cpu_ms"], r["B"]["cpu_ms"], r["B"]["cpu_ms"] / r["A"]["cpu_ms"],
            bench._fmt(r["A"]["wall_ms"]), bench._fmt(b_wall),
            "-" if bound is None or b_wall is None else "%.2f" % (b_wall / (bound * 1000.0))))
    print("\n| server | RSS after warm-up, MB | RSS at the end, MB | threads | idle CPU, ms in %.0f s |"
          % args.idle)
    print("|---|---:|---:|---:|---:|")
    for side in ("A", "B"):
        m = memory[side]
        print("| %s (%s) | %.2f | %.2f | %d | %.1f |" % (side, getattr(args, side.lower()), m["warm"]["rss"] / 2 ** 20,
                                                        m["end"]["rss"] / 2 ** 20, m["end"]["threads"],
                                                        idle[side]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--calls", type=int, default=30, help="requests a block (30)")
    p.add_argument("--rounds", type=int, default=5, help="blocks a route and side (5)")
    p.add_argument("--interval", type=float, default=0.0, help="command_interval, s (0)")
    p.add_argument("--routes", help="comma-separated route names of bench.py (default: all)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured (5)")
    p.add_argument("--json", default=os.path.join(HERE, "results", "cpu_ab.json"))
    args = p.parse_args(argv)
    routes = ([bench.ROUTES_BY_NAME[n] for n in args.routes.split(",")] if args.routes else bench.ROUTES)
    where = tempfile.mkdtemp(prefix="essx-cpu-ab-")
    trees = {}
    try:
        trees = {side: ab.checkout(rev, where) for side, rev in (("A", args.a), ("B", args.b))}
        with contextlib.ExitStack() as stack:
            sides, memory, settings = {}, {}, None
            for side in ("A", "B"):
                script = os.path.join(trees[side], "drivers", "essx_server.py")
                server, _sim, settings = stack.enter_context(
                    bench.bench_system(args.interval, where, side, script))
                client = bench.Client(server.port)
                stack.callback(client.close)
                sides[side] = (server, client)
            for side, (server, client) in sides.items():
                for route in bench.ROUTES:
                    client.get(route.path(0))
                memory[side] = {"warm": bench.process_stats(server.pid)}
            results = measure(sides, routes, args.calls, args.rounds, args.interval + 0.001)
            for side, (server, _) in sides.items():
                memory[side]["end"] = bench.process_stats(server.pid)
            idle = idle_cpu({s: sides[s][0].pid for s in sides}, args.idle)
    finally:
        for tree in trees.values():
            if tree != ab.ROOT:
                subprocess.run(["git", "-C", ab.ROOT, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(where, ignore_errors=True)
    print_report(args, results, memory, idle, settings)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"a": args.a, "b": args.b, "calls": args.calls, "rounds": args.rounds,
                   "interval": args.interval, "machine": bench.machine_info(), "settings": settings,
                   "routes": results, "memory": memory, "idle_cpu_ms": idle, "idle_s": args.idle}, f, indent=1)
    print("\nresults: %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
