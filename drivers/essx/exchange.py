"""One ``Exchange`` per try on a bus, given by the bus owner to its ``Listeners``;
observers are listeners, so observing adds no traffic."""
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exchange:
    """One try of one command on one bus.

    Attributes:
        bus: "dcdc" (the EZA2500 line) or "battery" (the Modbus line).
        command: "6-4" (converter) or "read" (battery register read).
        outcome: dcdc: "ack", "timeout", "io_error", "checksum", "unexpected" or
            "nak_0x%04x" (its code); battery: "ok", "timeout", "io_error",
            "exception" or "value".
        seconds: duration of the try, s.
        attempt: 1 for the first try of a command, 2 for its first retry, ...
        port: the serial device ("/dev/ttyO2").
        values: the decoded reply (V, A, W, °C, %) on success, else None;
            battery: {"rsoc": %, "permitted": bool}.
        error: the failure's message, else None.
        time: wall-clock end of the try (``time.time()``, s).
    """

    bus: str
    command: str
    outcome: str
    seconds: float
    attempt: int = 1
    port: str = ""
    values: Optional[Mapping[str, Any]] = None
    error: Optional[str] = None
    time: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        """True for an answered try ("ack" or "ok")."""
        return self.outcome in ("ack", "ok")


Listener = Callable[[Exchange], None]


class Listeners:
    """A bus owner's listeners, called in order in the owner's thread; one
    that raises is logged and skipped (observing never breaks a bus)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fns: List[Listener] = []

    def add(self, fn: Listener) -> None:
        """Register ``fn`` (called with each ``Exchange``) after those already added."""
        with self._lock:
            self._fns.append(fn)

    def remove(self, fn: Listener) -> None:
        """Unregister ``fn`` (no error if it was not registered)."""
        with self._lock:
            if fn in self._fns:
                self._fns.remove(fn)

    def emit(self, exchange: Exchange) -> None:
        """Hand ``exchange`` to every listener (bus owner only); raises nothing."""
        with self._lock:
            fns = list(self._fns)
        for fn in fns:
            try:
                fn(exchange)
            except Exception:  # noqa: BLE001 - an observer's defect must not fail the bus
                log.exception("exchange listener %r failed", fn)
