"""bench/bench.py: the wire-time bound against hand-computed numbers, and one
short run checked for structure only (never for timings)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "bench")
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import bench  # noqa: E402

# docs/eza2500-protocol.md: a read request is 7 bytes (LEN 0); an ACK is 7 bytes + payload.
# /remote/get reads 1-1 (mode: 2), 2-1 (cst, ext: 4), 4-1 (dvg, drg: 4),
# 9-1 (alm1..3: 6), 10-1 (8 meters: 16), 6-1 (6 protection fields: 12).
REMOTE_GET_REQUESTS = 6 * 7
REMOTE_GET_REPLIES = 9 + 11 + 11 + 13 + 23 + 19          # = 86
BYTE_S = 10 / 19200                                      # 8N1 at 19200 baud


def test_frame_lengths_from_the_table_match_the_facts_sheet():
    assert bench.frame_lengths("1-1") == (7, 9)
    assert bench.frame_lengths("10-1") == (7, 23)             # "a 10-1 reply 23 bytes"
    assert bench.frame_lengths("4-4") == (11, 11)             # golden vector: 11 bytes
    assert bench.frame_lengths("6-4") == (19, 19)             # golden vector: 19 bytes
    assert bench.frame_lengths("9-4") == (9, 9)               # d0 d1 and their echo


@pytest.mark.parametrize("interval, expected_ms", [
    # 128 bytes * 10 / 19200 = 66.667 ms, + 6 * 5 ms turnaround = 96.667 ms
    (0.0, 96.6667),
    # + 5 gaps of 62 ms
    (0.062, 406.6667),
])
def test_remote_get_bound_by_hand(interval, expected_ms):
    by_hand = (REMOTE_GET_REQUESTS + REMOTE_GET_REPLIES) * BYTE_S + 6 * 0.005 + 5 * interval
    assert by_hand * 1000 == pytest.approx(expected_ms, abs=1e-3)
    computed = bench.wire_bound(bench.REMOTE_GET, 19200, 0.005, interval)
    assert computed == pytest.approx(by_hand, rel=1e-9)
    settings = {"dcdc_baud": 19200, "dcdc_turnaround": 0.005, "command_interval": interval,
                "battery_baud": 9600, "battery_turnaround": 0.005}
    assert bench.ROUTES_BY_NAME["/remote/get"].bound(settings) == pytest.approx(by_hand)
    # /all/get reads the battery in parallel: the converter sequence is the longer one
    assert bench.ROUTES_BY_NAME["/all/get"].bound(settings) == pytest.approx(by_hand)
    assert bench.ROUTES_BY_NAME["/version/get"].bound(settings) is None


def test_battery_bound_by_hand():
    # read input registers, count 2: 8-byte request, 9-byte reply, at 9600 baud
    assert bench.battery_bound(9600, 0.005) == pytest.approx(17 * 10 / 9600 + 0.005)


def test_percentile_is_nearest_rank():
    values = list(range(1, 21))
    assert bench.percentile(values, 50) == 10
    assert bench.percentile(values, 95) == 19
    assert bench.percentile(values, 100) == 20
    assert bench.percentile([], 50) is None


def run_script(name, *args, timeout):
    """Run bench/<name> with *args* to its end; the finished process, which exited 0."""
    proc = subprocess.run([sys.executable, os.path.join(BENCH_DIR, name), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_short_run_reports_every_route(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script("bench.py", "--calls", "2", "--interval", "0", "--json", str(out), timeout=120)
    report = json.loads(out.read_text())
    assert report["failed"] == []
    assert report["machine"]["cpu_count"] >= 1
    (run,) = report["runs"]
    assert run["kind"] == "latency" and run["server_exit_code"] == 0
    assert run["settings"]["command_interval"] == 0.0
    assert run["settings"]["dcdc_baud"] == 19200 and run["settings"]["battery_baud"] == 9600
    names = {r.name for r in bench.ROUTES}
    assert set(run["routes"]) == names
    assert not any(name.startswith("/essx/goodbye") for name in names)
    for name, r in run["routes"].items():
        assert r["n"] == 2 and r["errors"] == {}, (name, r)
        assert r["median"] > 0
        route = bench.ROUTES_BY_NAME[name]
        if route.commands or route.battery:
            assert r["bound"] > 0 and r["ratio"] > 0, name
        else:
            assert r["bound"] is None
    for name in run["routes"]:
        assert name in proc.stdout
        assert run["routes"][name]["cpu_ms"] > 0, name
    assert run["server"]["rss"] > 0 and run["server"]["threads"] >= 2


def test_cpu_ab_runs_both_sides_and_reports_each_route(tmp_path):
    """bench/cpu_ab.py on the work tree against itself, two routes, structure only."""
    out = tmp_path / "cpu_ab.json"
    proc = run_script("cpu_ab.py", ".", ".", "--calls", "2", "--rounds", "2", "--idle", "0.2",
                      "--routes", "/remote/get/status,/version/get", "--json", str(out), timeout=120)
    report = json.loads(out.read_text())
    assert set(report["routes"]) == {"/remote/get/status", "/version/get"}
    for name, sides in report["routes"].items():
        for side in ("A", "B"):
            assert len(sides[side]["cpu_rounds_ms"]) == 2 and sides[side]["cpu_ms"] > 0, (name, side)
            assert sides[side]["errors"] == 0 and sides[side]["wall_ms"] > 0, (name, side)
        assert "| %s |" % name in proc.stdout
    for side in ("A", "B"):
        assert report["memory"][side]["warm"]["rss"] > 0 and report["memory"][side]["end"]["threads"] >= 2
        assert report["idle_cpu_ms"][side] >= 0


def test_fault_times_smoke_run_prints_the_table(tmp_path):
    """bench/fault_times.py, one round of two fault classes: the markdown table, structure only."""
    out = tmp_path / "faults.md"
    proc = run_script("fault_times.py", "--calls", "1", "--faults", "none,dcdc:silent:every",
                      "--out", str(out), timeout=60)
    text = out.read_text()
    assert text in proc.stdout
    assert "request_deadline 4.0 s" in text
    header = next(line for line in text.splitlines() if line.startswith("| fault class"))
    for route in ("/all/get", "/1/log/data", "/battery/get", "/dcdc/get", "/dcdc/get/status",
                  "/dcdc/set full", "/dcdc/set?dig=1.0", "/dcdc/set stop", "/version/get", "2× /all/get"):
        assert "| %s |" % route in header
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert set(rows) == {"fault class", "none", "dcdc:silent:every"}
    assert rows["none"].count("(200)") == 10
    assert "(400)" in rows["dcdc:silent:every"]
    assert "At or over the deadline:" in text
