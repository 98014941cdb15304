"""The measuring and reporting half of deploy/board.sh (standard library only).

``serve`` runs inside the emulated root with the root's python3: it starts the
installed essx-server with --simulate, requests every route of
drivers/openapi.json, measures start time, RSS and CPU per request of the
server process from /proc, stops it with SIGTERM, and starts it once more with
--goodbye for /essx/goodbye.  ``step``, ``meta``, ``report`` and ``summary``
run on the host and turn what board.sh recorded into report.json and
report.md.  docs/deployment.md, "The board under emulation".
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

#: Values for the parameters of drivers/openapi.json, by name: the README's Quick start examples.
SAMPLES = {"mode": "0x0014", "dvg": 350, "dig": 2.5, "drg": 0, "since": 0}
#: Routes measured for CPU per request; the set route alternates its value (each call writes).
CPU_ROUTES = ("/version/get", "/remote/get", "/battery/get", "/all/get", "/dcdc/get/status",
              "/dcdc/set?dig={dig}", "/essx/status", "/metrics")
WARMUP = 5
TICK = os.sysconf("SC_CLK_TCK")


# -- serve: inside the root -----------------------------------------------------------

def _cpu_seconds(pid):
    """utime + stime of the whole process (all threads), from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _get(conn, path, timeout=30.0):
    conn.timeout = timeout
    t0 = time.monotonic()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return r.status, r.getheader("Content-Type", ""), body, time.monotonic() - t0


def _query(path, item):
    """The GET path for one route of the OpenAPI document, its parameters from SAMPLES."""
    params = []
    for p in item.get("parameters", []):
        name, schema = p["name"], p.get("schema", {})
        if name in SAMPLES:
            value = SAMPLES[name]
        elif p.get("required"):
            value = schema["enum"][0] if "enum" in schema else schema.get("minimum", 0)
        else:
            continue
        if "enum" in schema:
            assert value in schema["enum"], (path, name, value)
        if "minimum" in schema:
            assert schema["minimum"] <= value <= schema.get("maximum", value), (path, name, value)
        params.append("%s=%s" % (name, value))
    return path + ("?" + "&".join(params) if params else "")


def _start(cmd, log):
    """Start the server; seconds until /version/get answers 200 (None: it never did)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, t0


def _wait_ready(proc, port, t0, limit=300.0):
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            return None
        try:
            conn = http.client.HTTPConnection("localhost", port, timeout=2)
            status, _, _, _ = _get(conn, "/version/get", timeout=2)
            conn.close()
            if status == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.05)
    return None


def _stop(proc, sig=signal.SIGTERM, limit=60.0):
    if proc.poll() is None and sig is not None:
        proc.send_signal(sig)
    try:
        return proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "killed after %.0f s" % limit


def _log_findings(path):
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    bad = [ln for ln in lines if re.search(r"Traceback|\bERROR\b|\bCRITICAL\b", ln)]
    warn = [ln for ln in lines if re.search(r"\bWARNING\b", ln)]
    return {"lines": len(lines), "errors": bad[:10], "warnings": warn[:10], "first": lines[:3]}


def _exercise(proc, args, paths, result):
    """Every route once, RSS, idle CPU, then CPU per request of CPU_ROUTES."""
    problems = result["problems"]
    # Every address of localhost (Debian's /etc/hosts has two): the default --host is localhost.
    result["addresses"] = {}
    hosts = sorted({ai[4][0] for ai in socket.getaddrinfo("localhost", args.port, type=socket.SOCK_STREAM)})
    for host in hosts:
        try:
            conn = http.client.HTTPConnection(host, args.port, timeout=10)
            status = _get(conn, "/version/get")[0]
            conn.close()
            result["addresses"][host] = status
        except OSError as e:
            result["addresses"][host] = str(e)
        if result["addresses"][host] != 200:
            problems.append("/version/get on %s: %s" % (host, result["addresses"][host]))
    conn = http.client.HTTPConnection("localhost", args.port, timeout=30)
    for path, item in paths.items():
        if "get" not in item:
            continue
        query = _query(path, item["get"])
        expect = 404 if path == "/essx/goodbye" else 200   # disabled without --goodbye
        status, ctype, body, secs = _get(conn, query)
        entry = {"query": query, "status": status, "expect": expect, "ms": round(secs * 1000, 1),
                 "bytes": len(body), "type": ctype.split(";")[0]}
        if status == expect and ctype.startswith("application/json"):
            try:
                json.loads(body)
            except ValueError as e:
                entry["json"] = str(e)
        entry["ok"] = status == expect and "json" not in entry
        if not entry["ok"]:
            entry["body"] = body[:300].decode("utf-8", "replace")
            problems.append("%s: %s (expected %s) %s" % (query, status, expect, entry["body"][:120]))
        result["routes"][path] = entry
    _get(conn, "/remote/set?mode=0x0000&dvg=350&dig=2.5&drg=0")     # back to Waiting for the measurement
    result["rss_after_routes_kib"] = _rss_kib(proc.pid)
    # Idle CPU of the server (its watch thread and the in-process simulators).
    c0, w0 = _cpu_seconds(proc.pid), time.monotonic()
    time.sleep(args.idle)
    idle = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
    result["idle_cpu_ms_per_s"] = round(idle * 1000, 2)
    for route in CPU_ROUTES:
        for i in range(WARMUP):
            _get(conn, route.format(dig=2.5 if i % 2 else 3.0))
        walls = []
        c0, w0 = _cpu_seconds(proc.pid), time.monotonic()
        for i in range(args.requests):
            status, _, _, secs = _get(conn, route.format(dig=2.5 if i % 2 else 3.0))
            walls.append(secs)
            if status != 200:
                problems.append("%s answered %s during the CPU measurement" % (route, status))
                break
        wall = time.monotonic() - w0
        cpu = _cpu_seconds(proc.pid) - c0
        n = len(walls)
        result["cpu"][route.format(dig="2.5/3.0")] = {
            "requests": n,
            "cpu_ms_per_request": round(cpu * 1000 / n, 2),
            "cpu_ms_per_request_less_idle": round(max(cpu - idle * wall, 0) * 1000 / n, 2),
            "median_ms": round(statistics.median(walls) * 1000, 1),
            "tick_ms": round(1000 / TICK, 1),
        }
    result["rss_after_cpu_kib"] = _rss_kib(proc.pid)
    conn.close()


def serve(args):
    with open(args.openapi) as f:
        paths = json.load(f)["paths"]
    base = [args.server, "--config", args.config, "--simulate", "--port", str(args.port)]
    result = {"command": " ".join(base), "routes": {}, "cpu": {}, "problems": []}
    problems = result["problems"]
    log_path = os.path.splitext(args.out)[0] + ".log"
    with open(log_path, "w") as log:
        proc, t0 = _start(base, log)
    try:
        result["start_seconds"] = _wait_ready(proc, args.port, t0)
        if result["start_seconds"] is None:
            problems.append("the server did not answer /version/get (exit %s)" % proc.poll())
        else:
            _exercise(proc, args, paths, result)
    except (OSError, http.client.HTTPException) as e:
        problems.append("request failed: %r" % e)
    finally:
        if proc.poll() is None:
            t = time.monotonic()
            result["sigterm_exit"] = _stop(proc)
            result["sigterm_seconds"] = round(time.monotonic() - t, 2)
        else:
            result["sigterm_exit"] = "had already exited with %s" % proc.returncode
        if result["sigterm_exit"] != 0:
            problems.append("SIGTERM: exit %s" % result["sigterm_exit"])
        result["log"] = _log_findings(log_path)

    # Once more with --goodbye: /essx/goodbye answers, then the server stops itself with exit 0.
    with open(log_path + ".goodbye", "w") as log:
        proc, t0 = _start(base + ["--goodbye"], log)
    try:
        result["start_seconds_second"] = _wait_ready(proc, args.port, t0)
        conn = http.client.HTTPConnection("localhost", args.port, timeout=30)
        status, _, body, secs = _get(conn, "/essx/goodbye")
        conn.close()
        result["goodbye"] = {"status": status, "body": body.decode("utf-8", "replace")[:100]}
        result["goodbye"]["exit"] = _stop(proc, sig=None, limit=30)
        if status != 200 or result["goodbye"]["exit"] != 0:
            problems.append("/essx/goodbye with --goodbye: %s, exit %s" % (status, result["goodbye"]["exit"]))
    except (OSError, http.client.HTTPException) as e:
        problems.append("/essx/goodbye: %r" % e)
        _stop(proc)
    result["log_goodbye"] = _log_findings(log_path + ".goodbye")
    result["ok"] = not problems
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    routes = result["routes"].values()
    print("%d of %d routes as expected; start %s s; RSS %s MiB; SIGTERM exit %s; %s" % (
        sum(e["ok"] for e in routes), len(result["routes"]), _r(result.get("start_seconds")),
        _mib(result.get("rss_after_routes_kib", {}).get("VmRSS")), result.get("sigterm_exit"),
        "; ".join(problems) or "no problems"))
    return 0 if result["ok"] else 1


# -- step, meta: on the host ----------------------------------------------------------

def step(args):
    tail, out = [], ""
    if args.log:
        with open(args.log, errors="replace") as f:
            out = f.read()
        tail = [ln for ln in out.splitlines() if ln.strip()][-12:]
    rec = {"name": args.name, "rc": args.rc, "expect": args.expect, "ok": args.rc == args.expect,
           "seconds": round(args.seconds, 1), "command": args.command, "tail": tail,
           "note": args.note or (tail[-1] if tail else "")}
    pattern = {"install": r"^install\.sh: installed essx-server", "apt": r"newly installed"}.get(args.name.split("-")[0])
    picked = [ln for ln in out.splitlines() if pattern and re.search(pattern, ln)]
    if picked and not args.note:
        rec["note"] = picked[-1]
    if args.name == "wheels-built":
        rec["note"] = ", ".join(tail) or "none"
    if args.name.startswith("verify"):
        rec["note"] = "clean (no output)" if not out.strip() else " / ".join(tail[:4])
        rec["ok"] = rec["ok"] and not out.strip()
    if args.name.startswith("security"):
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\S+)", out)
        rec["note"] = ("exposure %s %s" % m.groups()) if m else rec["note"]
        rec["exposure"] = float(m.group(1)) if m else None
    print(json.dumps(rec))
    return 0


def meta(args):
    with open(args.hosts) as f:
        localhost = [ln.split()[0] for ln in f if re.search(r"\slocalhost(\s|$)", ln) and not ln.startswith("#")]
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    print(json.dumps({"arch": args.arch, "commit": args.commit, "uncommitted_files": int(args.dirty),
                      "qemu": args.qemu, "machine": args.machine, "debian": args.debian,
                      "python": args.python, "localhost": localhost, "requests": args.requests,
                      "root": args.root, "host_ca": args.ca, "host_cpu": cpu, "host_cores": os.cpu_count(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    return 0


# -- report, summary: on the host -----------------------------------------------------

def _load(d):
    with open(os.path.join(d, "meta.json")) as f:
        m = json.load(f)
    with open(os.path.join(d, "steps.jsonl")) as f:
        steps = [json.loads(ln) for ln in f if ln.strip()]
    s = {}
    if os.path.exists(os.path.join(d, "serve.json")):
        with open(os.path.join(d, "serve.json")) as f:
            s = json.load(f)
    return m, steps, s


def _markdown(m, steps, s):
    native = m["qemu"].startswith("none")
    out = ["## %s (%s) %s" % (m["arch"], m["machine"], "natively on the host, for comparison" if native
                               else "under qemu-user emulation"), "",
           (("No emulation: %s on %s (%d cores), nice 10. " if native else
             "Emulation: %s on %s (%d cores), nice 10. Not a board's speed. ") +
            "Debian %s, Python %s, project %s%s; localhost in /etc/hosts: %s. %s.") % (
               m["qemu"], m["host_cpu"], m["host_cores"], m["debian"], m["python"], m["commit"],
               " (HEAD; %d uncommitted files not in the run)" % m["uncommitted_files"]
               if m["uncommitted_files"] else "", ", ".join(m["localhost"]), m["date"]), "",
           *(["pip in the root trusted this host's CA bundle (%s)." % m["host_ca"], ""]
             if m.get("host_ca") else []),
           "| Step | Result | Seconds | Note |", "|---|---|---|---|"]
    for st in steps:
        res = "ok" if st["ok"] else "**FAILED** (exit %s, expected %s)" % (st["rc"], st["expect"])
        out.append("| %s | %s | %s | %s |" % (st["name"], res, st["seconds"],
                                              st["note"].replace("|", "\\|")[:160]))
    if s:
        out += ["", "Server (`%s`):" % s.get("command", ""), ""]
        rss = s.get("rss_after_routes_kib", {})
        rss2 = s.get("rss_after_cpu_kib", {})
        out.append("- start to /version/get answering: %s s (second start, with --goodbye: %s s)" % (
            _r(s.get("start_seconds")), _r(s.get("start_seconds_second"))))
        out.append("- RSS %s after the route checks: %s MiB (after the CPU runs %s MiB, peak %s MiB)%s" % (
            "of the server" if native else "of the qemu process", _mib(rss.get("VmRSS")), _mib(rss2.get("VmRSS")),
            _mib(rss2.get("VmHWM")), "" if native else "; includes qemu's translator and code cache"))
        out.append("- idle CPU (watch thread, in-process simulators): %s ms/s" % s.get("idle_cpu_ms_per_s"))
        out.append("- localhost addresses answering /version/get: %s" % ", ".join(
            "%s %s" % kv for kv in s.get("addresses", {}).items()))
        out.append("- SIGTERM: exit %s after %s s; /essx/goodbye (with --goodbye): %s, exit %s" % (
            s.get("sigterm_exit"), s.get("sigterm_seconds"), s.get("goodbye", {}).get("status"),
            s.get("goodbye", {}).get("exit")))
        out.append("- server log: %d lines, %d ERROR/Traceback, %d WARNING" % (
            s.get("log", {}).get("lines", 0), len(s.get("log", {}).get("errors", [])),
            len(s.get("log", {}).get("warnings", []))))
        routes = s.get("routes", {})
        ok = [p for p, e in routes.items() if e["ok"]]
        out += ["- routes of drivers/openapi.json answering as expected: %d of %d" % (len(ok), len(routes)), ""]
        out += ["| Route | Status | ms (first call) |", "|---|---|---|"]
        for p, e in routes.items():
            out.append("| `%s` | %s%s | %s |" % (e["query"], e["status"], "" if e["ok"] else " **unexpected**",
                                                  e["ms"]))
        out += ["", "CPU of the server process (utime+stime from /proc, %s ms ticks) per request, "
                "%s requests a route on one connection after %d warm-up calls:" % (
                    next(iter(s.get("cpu", {}).values()), {}).get("tick_ms"), m["requests"], WARMUP), "",
                "| Route | CPU ms/request | less idle | median ms |", "|---|---|---|---|"]
        for route, c in s.get("cpu", {}).items():
            out.append("| `%s` | %s | %s | %s |" % (route, c["cpu_ms_per_request"],
                                                    c["cpu_ms_per_request_less_idle"], c["median_ms"]))
        if s.get("problems"):
            out += ["", "Problems:", ""] + ["- %s" % p for p in s["problems"]]
        for ln in s.get("log", {}).get("errors", []) + s.get("log", {}).get("warnings", []):
            out.append("- log: `%s`" % ln[:200])
    failed = [st for st in steps if not st["ok"]]
    for st in failed:
        out += ["", "`%s` failed (`%s`), last lines:" % (st["name"], st["command"]), "", "```"]
        out += st["tail"] + ["```"]
    return "\n".join(out) + "\n"


def _r(x):
    return "%.1f" % x if isinstance(x, (int, float)) else str(x)


def _mib(kib):
    return "%.1f" % (kib / 1024) if kib else "?"


def report(args):
    m, steps, s = _load(args.dir)
    ok = all(st["ok"] for st in steps) and bool(s) and s.get("ok", False)
    with open(os.path.join(args.dir, "report.json"), "w") as f:
        json.dump({"ok": ok, "meta": m, "steps": steps, "serve": s}, f, indent=1)
    md = _markdown(m, steps, s)
    with open(os.path.join(args.dir, "report.md"), "w") as f:
        f.write(md)
    sys.stdout.write(md)
    return 0 if ok else 1


def summary(args):
    lines = []
    for arch in args.arches:
        path = os.path.join(args.out, arch, "report.json")
        if not os.path.exists(path):
            lines.append("%s: no report" % arch)
            continue
        with open(path) as f:
            r = json.load(f)
        s = r["serve"]
        steps = {st["name"]: st for st in r["steps"]}
        cpu = s.get("cpu", {}).get("/remote/get", {})
        if "install" in steps:
            installs = "install %s s" % steps["install"]["seconds"]
        else:
            installs = "install bbb %s s, gpiod %s s" % (steps.get("install-bbb", {}).get("seconds"),
                                                         steps.get("install-gpiod", {}).get("seconds"))
        lines.append("%s: %s; %s; start %s s; RSS %s MiB; /remote/get %s ms CPU; failed: %s" % (
                         arch, "ok" if r["ok"] else "FAILED", installs, _r(s.get("start_seconds")),
                         _mib(s.get("rss_after_routes_kib", {}).get("VmRSS")), cpu.get("cpu_ms_per_request"),
                         ", ".join(n for n, st in steps.items() if not st["ok"]) or "nothing"))
    print("\n".join("board.sh: " + ln for ln in lines))
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--server", required=True)
    p.add_argument("--config", required=True)
    p.add_argument("--openapi", required=True)
    p.add_argument("--port", type=int, default=18080)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement (10 ms ticks)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("step")
    p.add_argument("--name", required=True)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--log")
    p.add_argument("--command", default="")
    p.add_argument("--note", default="")
    p = sub.add_parser("meta")
    for name in ("arch", "commit", "dirty", "qemu", "machine", "debian", "python", "hosts", "requests", "root"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--ca", default="", help="the host's CA bundle given to pip in the root, if any")
    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p = sub.add_parser("summary")
    p.add_argument("--out", required=True)
    p.add_argument("arches", nargs="+")
    args = ap.parse_args(argv)
    return {"serve": serve, "step": step, "meta": meta, "report": report, "summary": summary}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
