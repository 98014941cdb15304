#!/usr/bin/env python3
"""Answer times of apis-main's routes under device faults, with the shipped timings.

    python3 bench/fault_times.py [--calls N] [--budget S] [--faults GLOB,...] [--out FILE]

apis-main gives each attempt 5 s; the server promises 200 or 400 within
``request_deadline`` (4 s by default).  This script starts the simulators
(``bench/simhost.py``) and ``drivers/essx_server.py --config COPY`` as
processes of their own (``bench.bench_system``: the shipped configuration,
only the ports changed and ``dir_pin: not_used``), then for every fault
class -- none; each ``EZA2500Simulator`` fault on every command ("every") and
on the first command of each request ("once"); the battery silent, each
``BatterySimulator.inject`` kind on every request, and an RSOC register of
0xffff -- calls each route once a round, plus a pair of overlapping
``/all/get``, for N rounds: ``--calls`` (5), fewer when a class's rounds
would pass ``--budget`` seconds (10; at least one).  The fault is armed
before an uncounted ``/all/get``, so the first counted call already meets
its steady state (e.g. the wait for a failed battery read's late reply).
Prints a markdown table: the worst answer time of each route in seconds,
the status codes seen, cells at or over the deadline marked.  It reports;
it never judges (exit 1 only when the server did not start or exit 0).
"""
import argparse
import collections
import fnmatch
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (also puts drivers/ on sys.path)
from essx_sim.battery import FAULTS as BATTERY_FAULTS  # noqa: E402
from essx.deadline import DEFAULT_S  # noqa: E402
from essx_sim.converter import FAULTS as DCDC_FAULTS  # noqa: E402

APIS_MAIN_ATTEMPT_S = 5.0
CLIENT_TIMEOUT_S = 15.0
#: (column, request) in the order of one round; the full set starts from Waiting,
#: the stop from Grid Autonomy.
ROUTES = (
    ("/all/get", "/all/get"),
    ("/1/log/data", "/1/log/data"),
    ("/battery/get", "/battery/get"),
    ("/dcdc/get", "/dcdc/get"),
    ("/dcdc/get/status", "/dcdc/get/status"),
    ("/dcdc/set full", "/dcdc/set?mode=0x0014&dvg=350.0&dig=2.0&drg=0"),
    ("/dcdc/set?dig=1.0", "/dcdc/set?dig=1.0"),
    ("/dcdc/set stop", "/dcdc/set?mode=0x0000&dvg=0.0&dig=0.0&drg=0"),
    ("/version/get", "/version/get"),
)
OVERLAP = "2× /all/get"
COLUMNS = [label for label, _ in ROUTES] + [OVERLAP]


def fault_classes():
    """[(name, simhost command or None, re-armed before every request)], in table order."""
    out = [("none", None, False)]
    dcdc = [(k, k, "") for k in sorted(DCDC_FAULTS)]
    dcdc.append(("delay0.15", "delay", " seconds=0.15"))   # a reply later than the 0.1 s timeout
    for name, kind, kw in dcdc:
        out.append(("dcdc:%s:every" % name, "fault dcdc %s every%s" % (kind, kw), False))
        out.append(("dcdc:%s:once" % name, "fault dcdc %s once%s" % (kind, kw), True))
    out.append(("battery:silent", "fault battery silent", False))
    out += [("battery:%s" % k, "fault battery %s" % k, False) for k in BATTERY_FAULTS]
    out.append(("battery:rsoc=0xffff", "fault battery rsoc_raw 65535", False))
    return out


def sim_command(sim, line):
    """Send one ``fault ...``/``clear`` line to simhost and wait until it is applied."""
    sim.proc.stdin.write(line + "\n")
    sim.proc.stdin.flush()
    answer = sim.proc.stdout.readline()
    if '"ok"' not in answer:
        raise RuntimeError("simhost refused %r: %s" % (line, answer.strip() or "no answer"))


def measure(sim, port, fault, calls, gap, budget):
    """({column: (seconds list, Counter of status codes)}, rounds) for one fault class:
    rounds of every route and one overlapping pair, as many as fit in ``budget``
    seconds (at least one, at most ``calls``)."""
    _, command, per_call = fault
    seen = {c: ([], collections.Counter()) for c in COLUMNS}
    lock = threading.Lock()

    def call(c, path, column):
        status, _, dt = c.get(path)
        with lock:
            seen[column][0].append(dt)
            seen[column][1]["err" if status is None else status] += 1

    def arm(now=True):
        if command and now:
            sim_command(sim, command)
        time.sleep(gap)

    def pair(c):
        barrier.wait()
        call(c, "/all/get", OVERLAP)

    sim_command(sim, "clear")
    client = bench.Client(port, timeout=CLIENT_TIMEOUT_S)
    pair_clients = [bench.Client(port, timeout=CLIENT_TIMEOUT_S) for _ in range(2)]
    arm()
    client.get("/all/get")           # not counted: the first measured call meets the fault's steady state
    t0, rounds = time.monotonic(), 0
    try:
        while rounds < calls:
            r0 = time.monotonic()
            for column, path in ROUTES:
                arm(per_call)
                call(client, path, column)
            arm(per_call)
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=pair, args=(c,)) for c in pair_clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            rounds += 1
            now = time.monotonic()
            if now - t0 + (now - r0) > budget:
                break
    finally:
        for c in [client] + pair_clients:
            c.close()
        sim_command(sim, "clear")
    return seen, rounds


def cell(times, codes, deadline):
    """'worst (codes)', bold and marked when worst >= deadline."""
    if not times:
        return "–"
    text = "%.2f (%s)" % (max(times), "/".join(str(c) for c in sorted(codes, key=str)))
    return "**%s** ⚠" % text if max(times) >= deadline else text


def report(results, calls_used, deadline, settings, args, argv, machine):
    """The markdown report (header lines, the table, the cells at or over the deadline)."""
    lines = [
        "date %s; `python3 bench/fault_times.py %s`" % (time.strftime("%Y-%m-%d %H:%M %z"), " ".join(argv)),
        "machine: nproc %s, %s, %s" % (machine["cpus_usable"], machine["python"], machine["cpu_model"]),
        "settings (shipped): converter timeout %s s, %s timeout + %s error retries, wait %s s, "
        "command_interval %s s; battery timeout %s s; request_deadline %.1f s; apis-main %.0f s an attempt"
        % (settings["dcdc_timeout"], settings["timeout_retry"], settings["error_retry"], settings["wait"],
           settings["command_interval"], settings["battery_timeout"], deadline, APIS_MAIN_ATTEMPT_S),
        "",
        "Worst answer time in seconds (status codes seen) over N rounds (--calls %d, --budget %g s a class); "
        "⚠ at or over the deadline." % (args.calls, args.budget),
        "",
        "| fault class | N | " + " | ".join(COLUMNS) + " | worst | margin to 5 s |",
        "|---|---:|" + "---:|" * len(COLUMNS) + "---:|---:|",
    ]
    over, overall = [], (0.0, None, None)
    for name, seen in results.items():
        worst = max((max(t) for t, _ in seen.values() if t), default=0.0)
        cells = [cell(t, c, deadline) for t, c in seen.values()]
        lines.append("| %s | %d | %s | %.2f | %.2f |"
                     % (name, calls_used[name], " | ".join(cells), worst, APIS_MAIN_ATTEMPT_S - worst))
        for column, (t, _) in seen.items():
            if t and max(t) >= deadline:
                over.append("%s %s: %.2f s" % (name, column, max(t)))
            if t and max(t) > overall[0]:
                overall = (max(t), name, column)
    lines += ["", "Worst of all: %.2f s (%s, %s): %.2f s under the deadline, %.2f s under apis-main's 5 s."
              % (overall[0], overall[1], overall[2], deadline - overall[0], APIS_MAIN_ATTEMPT_S - overall[0]),
              "At or over the deadline: %s." % ("; ".join(over) if over else "none")]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=5, help="rounds per fault class (5)")
    p.add_argument("--faults", default="*",
                   help="comma-separated fault classes or globs (default all), e.g. none,dcdc:*:once; "
                        "names: " + ", ".join(n for n, _, _ in fault_classes()))
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds per fault class: rounds stop when the next would end past it "
                        "(at least 1, at most --calls; default 10)")
    p.add_argument("--out", help="also write the markdown report here")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    patterns = [p.strip() for p in args.faults.split(",") if p.strip()]
    chosen = [f for f in fault_classes() if any(fnmatch.fnmatchcase(f[0], p) for p in patterns)]
    if not chosen:
        sys.exit("no fault class matches %r" % args.faults)
    doc = bench.load_shipped()
    section = bench.dcdc_section(doc)
    deadline = float(section.get("request_deadline", DEFAULT_S))
    interval = float(section["command_interval"])
    results, calls_used = {}, {}
    workdir = tempfile.mkdtemp(prefix="essx-fault-times-")
    with bench.bench_system(interval, workdir, "faults") as (server, sim, settings):
        settings.update(timeout_retry=section["number_of_timeout_retry"], wait=section["wait_for_retry"],
                        error_retry=section["number_of_dcdc_error_retry"])
        for fault in chosen:
            t0 = time.monotonic()
            results[fault[0]], calls_used[fault[0]] = measure(sim, server.port, fault, args.calls,
                                                              interval + 0.001, args.budget)
            print("%-24s %5.1f s" % (fault[0], time.monotonic() - t0), file=sys.stderr, flush=True)
    text = report(results, calls_used, deadline, settings, args, argv, bench.machine_info())
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    if server.exit_code != 0:
        print("server exited %s (logs kept in %s)" % (server.exit_code, workdir), file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
