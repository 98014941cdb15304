"""The answer deadline of the request in progress.

apis-main gives each call 5 s and tries 3 times (docs/apis-main.md); a request
must be answered, 200 or 400, before its client gives up, and nothing of it
may run after that.  The web layer runs each request under :func:`within`;
the bus owners (``EZA2500Link``, ``BatteryEmulator``) bound every wait, try
and retry by :func:`remaining`, and start no command once it is too late.

The deadline lives in a ``contextvars.ContextVar``: it follows the request's
thread, and a worker thread started for it takes it with
``contextvars.copy_context().run``.  Outside a request (the battery watch,
``--check``, a library user) there is none and every bound is the caller's own.
"""
import contextvars
import time
from contextlib import contextmanager
from typing import Iterator, Optional

#: The default of the configuration key ``request_deadline`` (s): below
#: apis-main's 5 s per attempt, with room for HTTP and a loaded machine.
DEFAULT_S = 4.0

_at: contextvars.ContextVar[Optional[float]] = contextvars.ContextVar("essx_deadline", default=None)


@contextmanager
def within(seconds: Optional[float]) -> Iterator[None]:
    """Run the block with a deadline *seconds* (s) from now; None: no deadline.
    Nested, the earlier deadline wins."""
    if seconds is None:
        yield
        return
    at = time.monotonic() + seconds
    outer = _at.get()
    token = _at.set(at if outer is None else min(at, outer))
    try:
        yield
    finally:
        _at.reset(token)


def remaining() -> Optional[float]:
    """Seconds left before the deadline (0.0 once past it); None without one."""
    at = _at.get()
    return None if at is None else max(0.0, at - time.monotonic())


def bound(seconds: float) -> float:
    """*seconds* (s), shortened to what is left of the deadline, if any."""
    left = remaining()
    return seconds if left is None else min(seconds, left)


def has_time(seconds: float) -> bool:
    """True when at least *seconds* (s) are left, or there is no deadline."""
    left = remaining()
    return left is None or left >= seconds
