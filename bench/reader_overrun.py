#!/usr/bin/env python3
"""How far past its deadline the EZA2500 reply reader gives up on a noisy line.

    python3 bench/reader_overrun.py [--tries 50] [--timeout 0.1]

The tests only check that a reader facing noise stops within 0.1 s of its
deadline (no tighter bound in the suite); this reports the actual overrun,
which the design bounds by one low-level read (10 ms, spec 5.3.1.1):

* "memory": a port object returning random bytes at once (no I/O);
* "pty": a pyserial port on a pseudo-terminal whose other side a thread
  keeps full of noise (no byte 0x02), as a jammed RS485 line.

Prints one line per case: tries, median, 95th percentile and maximum
overrun in ms.  Reports, asserts nothing.
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time

DRIVERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "drivers")
if DRIVERS not in sys.path:
    sys.path.insert(0, DRIVERS)

import serial  # noqa: E402

from essx.essx_exception import ESSXTimeoutException  # noqa: E402
from essx_sim.ptyport import PtyPort  # noqa: E402
from eza2500 import EZA2500Device, table  # noqa: E402
from eza2500.reader import read_reply  # noqa: E402


class NoisePort:
    """Random bytes at once on every read; never a reply (an ``eza2500_device.SerialPort``)."""

    port = "memory-noise"
    timeout = None
    in_waiting = 512
    is_open = True

    def __init__(self, seed=1):
        self.rng = random.Random(seed)

    def open(self):
        self.is_open = True

    def close(self):
        self.is_open = False

    def reset_input_buffer(self):
        pass

    def read(self, n):
        return self.rng.randbytes(n)

    def write(self, data):
        return len(data)


def overruns(device, tries, timeout):
    """Seconds past the deadline at which each of *tries* reads gave up."""
    out = []
    for i in range(tries):
        group = table.GROUPS[i % len(table.GROUPS)]
        deadline = time.monotonic() + timeout
        try:
            read_reply(device, group, False, deadline, 0, 16)
        except ESSXTimeoutException:
            out.append(time.monotonic() - deadline)
    return out


def pty_overruns(tries, timeout):
    """The same on a pty kept full of noise by a thread."""
    noise = bytes(b for b in range(256) if b != 0x02) * 4
    stop = threading.Event()
    pty = PtyPort()
    try:
        def jam():
            while not stop.is_set():
                try:
                    os.write(pty.master, noise)
                except BlockingIOError:
                    pass
                stop.wait(0.001)

        jammer = threading.Thread(target=jam, daemon=True)
        with serial.Serial(pty.port, 19200, timeout=0.01) as ser:
            jammer.start()
            try:
                return overruns(EZA2500Device(ser), tries, timeout)
            finally:
                stop.set()
                jammer.join()
    finally:
        pty.close()


def report(name, values):
    ms = sorted(v * 1000 for v in values)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print("%-7s tries %3d  overrun median %6.2f ms  p95 %6.2f ms  max %6.2f ms"
          % (name, len(ms), statistics.median(ms), p95, ms[-1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tries", type=int, default=50)
    p.add_argument("--timeout", type=float, default=0.1, help="reader deadline, s (default 0.1)")
    args = p.parse_args(argv)
    report("memory", overruns(EZA2500Device(NoisePort()), args.tries, args.timeout))
    report("pty", pty_overruns(args.tries, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
