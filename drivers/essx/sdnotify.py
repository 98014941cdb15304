"""systemd readiness and watchdog notifications (sd_notify(3) protocol).

A unit with ``Type=notify`` waits for ``READY=1`` on the datagram socket
named by ``$NOTIFY_SOCKET``; with ``WatchdogSec=`` systemd also sets
``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) and restarts the service when no
``WATCHDOG=1`` arrives within that time.  Outside systemd (no
``NOTIFY_SOCKET``) every call does nothing.

:class:`Heartbeat` sends ``WATCHDOG=1`` every half period, but only while
the serving loop proves it is alive: the loop calls :meth:`Heartbeat.tick`
on each turn (waitress's loop turns at least once a second, ``LOOP_TURN``),
and a loop stuck for longer than ``stall_after`` (half the period, at least
two turns) stops the heartbeat, so systemd restarts the service.  A
``WatchdogSec=`` below 4 s therefore gains nothing.
"""
import logging
import os
import socket
import threading
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)

#: Longest time (s) between two turns of waitress's loop when idle
#: (its ``asyncore_loop_timeout``, an integer, default 1).
LOOP_TURN = 1.0


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send *message* (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``.

    Returns:
        True when sent; False when there is no socket (not under systemd) or
        sending failed (logged once at WARNING; never raises).
    """
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
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


class Heartbeat:
    """Sends ``WATCHDOG=1`` every ``period / 2`` s while :meth:`tick` was
    called within the last ``stall_after`` s.

    Args:
        period: watchdog period (s), from :func:`watchdog_period`.
        environ: where ``NOTIFY_SOCKET`` is read (tests pass their own).
        stall_after: how long without a tick counts as a stalled loop (s);
            default ``max(period / 2, 2 * LOOP_TURN)``.
    """

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
        """Stop sending (waits for the thread)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        half = self.period / 2
        stalled = False
        while not self._stop.wait(half):
            age = time.monotonic() - self._last_tick
            if age <= self.stall_after:
                stalled = False
                if notify("WATCHDOG=1", self.environ):
                    self.sent += 1
            elif not stalled:
                stalled = True
                log.error("serving loop stalled for %.1f s: watchdog heartbeat withheld", age)
