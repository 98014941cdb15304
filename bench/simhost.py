#!/usr/bin/env python3
"""Run the simulated EZA2500 and battery in their own process for the bench.

    python3 bench/simhost.py [--dcdc-baud 19200] [--battery-baud 9600]
                             [--ad1 0 --ad2 16 --unit 1]

Why a process of its own: the server must be started without ``--simulate``
so that the bench can read the simulators' ``collisions`` counters (the
in-server simulators are unreachable from outside), and keeping the
simulators out of the bench process means the bench's client threads do not
compete with them for one GIL -- as with real hardware, the "devices" run
beside the server, not inside the load generator.

Protocol on stdin/stdout, one JSON object a line:

* on start it prints ``{"dcdc_port", "battery_port", "dcdc_baud",
  "battery_baud", "dcdc_turnaround", "battery_turnaround", "pid"}``;
* a line ``stats`` on stdin prints the counters
  ``{"dcdc_collisions", "dcdc_requests", "battery_collisions",
  "battery_requests"}``;
* ``fault dcdc KIND every|once [key=value ...]`` arms
  ``EZA2500Simulator.inject(KIND, None or 1, key=value ...)``;
  ``fault battery KIND`` arms ``BatterySimulator.inject(KIND)`` for every
  request (EVERY of them), ``fault battery silent`` sets ``silent``,
  ``fault battery rsoc_raw N`` makes the RSOC register read N (e.g. 65535,
  through ``StuckGauge``); ``clear`` removes every fault and the stuck
  gauge.  Each prints ``{"ok": true}`` or ``{"error": "..."}`` once applied
  (``apply_fault``, usable in-process too);
* ``quit``, end of input, SIGTERM or SIGINT stop both simulators, print the
  counters a last time and exit 0.
"""
import argparse
import json
import logging
import os
import signal
import sys

DRIVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers")
if DRIVERS not in sys.path:
    sys.path.insert(0, DRIVERS)


#: Requests a battery fault is armed for by ``fault battery KIND`` ("every request").
EVERY = 10000


def stuck_gauge(raw, original):
    """A ``BatteryModel`` whose RSOC register always reads ``raw`` (0.1 % units;
    65535 = 0xffff, a broken gauge: the simulator's ``rsoc`` setter refuses
    such values); ``.original`` keeps the model it stands in for."""
    from essx_sim.physics import BatteryModel

    class StuckGauge(BatteryModel):
        rsoc = property(lambda self: raw / 10.0)
    gauge = StuckGauge()
    gauge.original = original
    return gauge


def apply_fault(dcdc, battery, words):
    """Apply one ``fault ...``/``clear`` command (split into ``words``, see the
    module doc) to the simulators; ValueError/KeyError/IndexError when malformed."""
    if words == ["clear"]:
        dcdc.clear_faults()
        battery.clear_faults()
        battery.model = getattr(battery.model, "original", battery.model)
        return
    if words[0] != "fault":
        raise ValueError("unknown command %r" % " ".join(words))
    device, kind = words[1], words[2]
    if device == "dcdc":
        kw = {k: float(v) if "." in v else int(v, 0) for k, v in (w.split("=", 1) for w in words[4:])}
        dcdc.inject(kind, {"every": None, "once": 1}[words[3]], **kw)
    elif device != "battery":
        raise ValueError("unknown device %r" % device)
    elif kind == "silent":
        battery.silent = True
    elif kind == "rsoc_raw":
        battery.model = stuck_gauge(int(words[3]), getattr(battery.model, "original", battery.model))
    else:
        battery.inject(kind, EVERY)


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv=None):
    from essx_sim.battery import BatterySimulator
    from essx_sim.converter import EZA2500Simulator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dcdc-baud", type=int, default=19200)
    p.add_argument("--battery-baud", type=int, default=9600)
    p.add_argument("--ad1", type=int, default=0)
    p.add_argument("--ad2", type=int, default=16)
    p.add_argument("--unit", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s simhost %(name)s %(levelname)s %(message)s")

    def _stop(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _stop)

    dcdc = EZA2500Simulator(ad1=args.ad1, ad2=args.ad2, baudrate=args.dcdc_baud)
    battery = BatterySimulator(unit=args.unit, baudrate=args.battery_baud)

    def stats():
        return {"dcdc_collisions": dcdc.collisions, "dcdc_requests": len(dcdc.received),
                "battery_collisions": battery.collisions, "battery_requests": battery.requests}

    dcdc.start()
    try:
        battery.start()
        try:
            _emit({"dcdc_port": dcdc.port, "battery_port": battery.port,
                   "dcdc_baud": dcdc.baudrate, "battery_baud": battery.baudrate,
                   "dcdc_turnaround": dcdc.turnaround, "battery_turnaround": battery.turnaround,
                   "pid": os.getpid()})
            try:
                for line in sys.stdin:
                    cmd = line.strip()
                    if cmd == "stats":
                        _emit(stats())
                    elif cmd == "quit":
                        break
                    elif cmd:
                        try:
                            apply_fault(dcdc, battery, cmd.split())
                            _emit({"ok": True})
                        except (ValueError, KeyError, IndexError) as e:
                            _emit({"error": "%s: %s" % (type(e).__name__, e)})
            except KeyboardInterrupt:
                pass
        finally:
            battery.stop()
    finally:
        dcdc.stop()
    _emit(stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
