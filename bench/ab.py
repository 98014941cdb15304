#!/usr/bin/env python3
"""A/B of two commits with ``bench/bench.py``, runs interleaved (A1 B1 A2 B2 ...).

    python3 bench/ab.py A B [--rounds 3] [-- BENCH ARGUMENTS]

A and B are commits (anything ``git rev-parse`` takes) or ``.`` for the work
tree.  Each commit is checked out into a temporary ``git worktree``; each run
is that tree's own ``bench/bench.py`` (its own simulators and server, so the
two trees need not share a module), with the bench arguments (default
``--calls 10 --interval 0 --soak 0.75``).  Prints per route the median latency
of every run, each side's mean and B − A, then the server's CPU per request
and RSS over the soak; writes everything to ``--json``.  Reports, asserts
nothing (bench/README.md).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from statistics import mean
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BENCH_ARGS = ["--calls", "10", "--interval", "0", "--soak", "0.75"]


def checkout(rev: str, where: str) -> str:
    """The tree of *rev* (a detached worktree under *where*), or ROOT for ".";
    RuntimeError when git cannot."""
    if rev == ".":
        return ROOT
    path = os.path.join(where, rev.replace("/", "_"))
    r = subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", path, rev],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("git worktree add %s: %s" % (rev, r.stderr.strip()))
    return path


def run_bench(tree: str, args: List[str], out: str) -> Dict:
    """One run of *tree*'s bench.py; its JSON report."""
    cmd = [sys.executable, os.path.join(tree, "bench", "bench.py"), *args, "--json", out]
    print("$ %s" % " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def medians(report: Dict) -> Dict[str, float]:
    """{route: median ms} of the report's latency run."""
    for run in report["runs"]:
        if run["kind"] == "latency":
            return {name: r["median"] for name, r in run["routes"].items()}
    return {}


def soak(report: Dict) -> Dict[str, float]:
    """CPU ms per request, RSS MB at the soak's end, threads; {} without a soak."""
    for run in report["runs"]:
        if run["kind"] == "soak" and run["requests"]:
            server = run["server"]
            return {"cpu_ms_per_request": 1000.0 * server["cpu_s"] / run["requests"],
                    "rss_mb": server["end"]["rss"] / 2 ** 20, "threads": server["end"]["threads"]}
    return {}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=os.path.join(HERE, "results", "ab.json"))
    argv = sys.argv[1:] if argv is None else list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:split])
    bench_args = argv[split + 1:] or DEFAULT_BENCH_ARGS
    where = tempfile.mkdtemp(prefix="essx-ab-")
    trees = {}
    try:
        trees = {side: checkout(rev, where) for side, rev in (("A", args.a), ("B", args.b))}
        reports: Dict[str, List[Dict]] = {"A": [], "B": []}
        for n in range(args.rounds):
            for side in ("A", "B"):
                reports[side].append(run_bench(trees[side], bench_args,
                                               os.path.join(where, "%s%d.json" % (side, n + 1))))
    finally:
        for side, tree in trees.items():
            if tree != ROOT:
                subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(where, ignore_errors=True)
    table = {side: [medians(r) for r in reports[side]] for side in reports}
    routes = list(table["A"][0]) if table["A"] and table["A"][0] else []
    cols = ["%s%d" % (s, n + 1) for n in range(args.rounds) for s in ("A", "B")]
    print("\nA = %s, B = %s; median latency, ms\n" % (args.a, args.b))
    print("| route | %s | A mean | B mean | B − A |" % " | ".join(cols))
    print("|---|" + "---:|" * (len(cols) + 3))
    for route in routes:
        a = [m.get(route) for m in table["A"]]
        b = [m.get(route) for m in table["B"]]
        if None in a or None in b:
            continue
        cells = [v for pair in zip(a, b) for v in pair]
        print("| %s | %s | %.1f | %.1f | %+.1f |" % (route, " | ".join("%.1f" % v for v in cells),
                                                    mean(a), mean(b), mean(b) - mean(a)))
    soaks = {side: [soak(r) for r in reports[side]] for side in reports}
    if all(soaks["A"]) and all(soaks["B"]):
        print("\nServer over the soak\n")
        print("| | %s | mean |" % " | ".join("run %d" % (n + 1) for n in range(args.rounds)))
        print("|---|" + "---:|" * (args.rounds + 1))
        for key, label in (("cpu_ms_per_request", "ms CPU/request"), ("rss_mb", "RSS at the end, MB"),
                           ("threads", "threads")):
            for side in ("A", "B"):
                values = [s[key] for s in soaks[side]]
                print("| %s (%s), %s | %s | %.3f |" % (side, getattr(args, side.lower()), label,
                                                       " | ".join("%.3f" % v for v in values), mean(values)))
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"a": args.a, "b": args.b, "bench_args": bench_args, "medians": table, "soak": soaks},
                  f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
