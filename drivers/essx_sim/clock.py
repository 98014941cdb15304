"""The simulated grid's clock: a date and time that runs ``speed`` times real
time, the pace changeable while it runs.

apis-emulator keeps the same kind of clock (its ``gl.now``, advanced by
``gl.acc`` seconds a real second and set with ``/set/acc/<n>``); its sample
data starts on 2020-01-01 00:00, and so does this clock unless told
otherwise.  Every battery of a grid integrates on this clock, so a change of
pace changes them all at once.
"""
import datetime
import threading
import time
from typing import Callable

#: apis-emulator's start of the simulated world (its inputData.py: 2020-01-01 00:00).
DEFAULT_START = datetime.datetime(2020, 1, 1, 0, 0, 0)


class SimClock:
    """Simulated time: ``seconds()`` since ``start``, ``speed`` simulated
    seconds a real second (> 0), piecewise: a new speed applies from the
    moment it is set.  Thread-safe.

    Args:
        start: the simulated date and time at real time now.
        speed: simulated seconds per real second (> 0).
        real: the real monotonic clock, s (tests may pass their own).
    Raises:
        ValueError: ``speed`` is not a number > 0.
    """

    def __init__(self, start: datetime.datetime = DEFAULT_START, speed: float = 1.0,
                 real: Callable[[], float] = time.monotonic) -> None:
        self.start = start
        self._real = real
        self._lock = threading.Lock()
        self._base_real = real()
        self._base_sim = 0.0
        self._speed = check_speed(speed)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = check_speed(value)
        with self._lock:
            now = self._real()
            self._base_sim += (now - self._base_real) * self._speed
            self._base_real, self._speed = now, value

    def seconds(self) -> float:
        """Simulated seconds since ``start`` (float, never decreasing)."""
        with self._lock:
            return self._base_sim + (self._real() - self._base_real) * self._speed

    def set_seconds(self, seconds: float) -> None:
        """Jump to ``seconds`` after ``start`` (a restored state); ValueError below 0."""
        if not float(seconds) >= 0:
            raise ValueError("clock seconds=%r: expected a number >= 0" % (seconds,))
        with self._lock:
            self._base_real, self._base_sim = self._real(), float(seconds)

    def year_seconds(self, seconds: float) -> float:
        """Simulated seconds from 1 January 00:00 of ``start``'s year to
        ``seconds`` after ``start``: the time a profile is read at (row 0 of
        a day-by-day profile is 1 January, as in apis-emulator's sample data)."""
        return seconds + (self.start - self.start.replace(month=1, day=1, hour=0, minute=0, second=0,
                                                          microsecond=0)).total_seconds()

    def now(self) -> datetime.datetime:
        """The simulated date and time now."""
        return self.at(self.seconds())

    def at(self, seconds: float) -> datetime.datetime:
        """The simulated date and time ``seconds`` after ``start``."""
        return self.start + datetime.timedelta(seconds=seconds)


def check_speed(value: float) -> float:
    """``value`` as a float if it is a number > 0, else ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError("speed=%r: expected a number > 0" % (value,))
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise ValueError("speed=%r: expected a number > 0" % (value,)) from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError("speed=%r: expected a number > 0" % (value,))
    return speed


def emulator_time(moment: datetime.datetime) -> str:
    """``moment`` as apis-emulator writes its ``time`` field: "2020/01/01-06:30:00"
    (its core.py, timeUpdate: ``strftime("%Y/%m/%d-%H:%M:%S")``)."""
    return moment.strftime("%Y/%m/%d-%H:%M:%S")
