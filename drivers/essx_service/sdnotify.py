"""systemd readiness and watchdog notifications (sd_notify(3) protocol).

``Type=notify`` waits for ``READY=1`` on ``$NOTIFY_SOCKET``; ``WatchdogSec=``
sets ``WATCHDOG_USEC`` and restarts the service when no ``WATCHDOG=1``
arrives in time.  Outside systemd every call does nothing.  :class:`Heartbeat`
withholds ``WATCHDOG=1`` once the serving loop has not turned for at least
``2 * LOOP_TURN`` s, so a ``WatchdogSec=`` below 4 s gains nothing.
"""
import logging
import os
import socket
import threading
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)

#: Longest time (s) between two turns of waitress's idle loop (its
#: ``asyncore_loop_timeout``, default 1).
LOOP_TURN = 1.0


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send *message* (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; True when
    sent, False without a socket or when sending failed (logged; never raises)."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):           # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", environ.get("NOTIFY_SOCKET"), e)
        return False


def watchdog_period(environ: Mapping[str, str] = os.environ) -> Optional[float]:
    """The watchdog period in seconds from ``WATCHDOG_USEC``, or None when
    the watchdog is off or meant for another process (``WATCHDOG_PID``)."""
    pid, usec = environ.get("WATCHDOG_PID"), environ.get("WATCHDOG_USEC", "")
    if (pid and pid != str(os.getpid())) or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1e6


class Heartbeat:
    """Sends ``WATCHDOG=1`` every ``period / 2`` s (*period* in s, from
    :func:`watchdog_period`) while :meth:`tick` was called within the last
    *stall_after* s (default ``max(period / 2, 2 * LOOP_TURN)``)."""

    def __init__(self, period: float, environ: Mapping[str, str] = os.environ,
                 stall_after: Optional[float] = None) -> None:
        self.period = period
        self.stall_after = max(period / 2, 2 * LOOP_TURN) if stall_after is None else stall_after
        self.environ = environ
        self._last_tick = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self.sent = 0

    def tick(self) -> None:
        """Called by the serving loop on each turn: it is alive."""
        self._last_tick = time.monotonic()

    def start(self) -> "Heartbeat":
        """Start the sending thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending; waits for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        stalled = False
        while not self._stop.wait(self.period / 2):
            age = time.monotonic() - self._last_tick
            if age <= self.stall_after:
                stalled = False
                self.sent += notify("WATCHDOG=1", self.environ)     # True counts 1
            elif not stalled:
                stalled = True
                log.error("serving loop stalled for %.1f s: watchdog heartbeat withheld", age)
