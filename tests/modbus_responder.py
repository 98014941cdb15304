"""A scripted Modbus RTU slave on a pty, for faults the battery simulator lacks.

``Responder(link, answer)`` opens a pty (``essx_sim.ptyport.PtyPort``, the
symlink ``link`` pointing at its slave) and answers every 8-byte request frame read on the master with
``answer(n, frame)`` (n = 1, 2, ... counts requests): a list of ``(delay_s,
reply_bytes)``, each written ``delay_s`` after the request arrived (a deadline,
not a sleep), or ``[]`` for silence. ``requests`` holds the frames received.
"""
import os
import select
import threading
import time

from pymodbus.framer import FramerRTU

from essx_sim.ptyport import PtyPort


def reply(registers, unit=1, function=4):
    """A read reply frame: unit, function, byte count, registers (big-endian), CRC."""
    body = bytes((unit, function, 2 * len(registers)))
    body += b"".join(r.to_bytes(2, "big") for r in registers)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


class Responder:
    """See the module docstring; use as a context manager (closes every fd and thread)."""

    def __init__(self, link, answer):
        self.link = str(link)
        self.answer = answer
        self.requests = []
        self.pty = PtyPort(self.link)
        self.master = self.pty.master
        self._wake_r, self._wake_w = os.pipe()
        self.running = True
        self._due = []  # (monotonic time, bytes)
        self._thread = threading.Thread(target=self._run, name="modbus-responder", daemon=True)
        self._thread.start()

    def _run(self):
        buf = bytearray()
        while self.running:
            wait = max(0.0, self._due[0][0] - time.monotonic()) if self._due else None
            ready, _, _ = select.select([self.master, self._wake_r], [], [], wait)
            if self.master in ready:
                buf += os.read(self.master, 4096)
                while len(buf) >= 8:
                    frame, buf[:] = bytes(buf[:8]), buf[8:]
                    self.requests.append(frame)
                    now = time.monotonic()
                    for delay, data in self.answer(len(self.requests), frame):
                        self._due.append((now + delay, data))
                self._due.sort(key=lambda item: item[0])
            while self._due and self._due[0][0] <= time.monotonic():
                os.write(self.master, self._due.pop(0)[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.running = False
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        self.pty.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
