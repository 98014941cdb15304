"""What the driver has seen: a recorder fed only by bus exchanges and HTTP answers.

One ``Recorder`` per web application.  It is added as a listener to the bus
owners (the converter's link, the battery emulator; ``essx.exchange``) and
is told about every HTTP answer by the application's request wrapper.  It
never asks a device anything: everything it holds comes from exchanges that
already happened, so observing adds no traffic.

It keeps:
- per converter command and outcome: tries, retries, a latency histogram;
- per battery outcome: reads;
- per bus: tries, successes, failures, last success, last error and when;
- the last-known converter state, by block (mode, status, alarm, meter,
  vdis, param), and battery state (rsoc, permitted), each with its time;
- HTTP answers by route and status;
- the last ``RECENT_ERRORS`` failed tries;
- a one-hour ring buffer of vg, ig, wb and RSOC (``HISTORY_SERIES``).

All times are wall-clock seconds (``time.time()``).  Reads return copies.
"""
import bisect
import collections
import contextlib
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from essx.exchange import Exchange

#: Upper bounds (s) of the converter latency histogram's buckets (+Inf implied).
LATENCY_BUCKETS: Tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
#: The converter's reply blocks: command group -> block name (web-api.md "Blocks").
#: A 1-1/1-4 ACK gives "mode", 2-1 "status" (cst), 9-1 "alarm" (alm1..3),
#: 10-1 "meter", 4-1/4-4 "vdis" (dvg, drg), 6-1/6-4 "param" (cib, dig, ...).
BLOCKS: Dict[int, str] = {1: "mode", 2: "status", 4: "vdis", 6: "param", 9: "alarm", 10: "meter"}
#: Series of the ring buffer: name -> (bus, key in the exchange's values).
HISTORY_SERIES: Dict[str, Tuple[str, str]] = {
    "vg": ("dcdc", "vg"), "ig": ("dcdc", "ig"), "wb": ("dcdc", "wb"), "rsoc": ("battery", "rsoc")}
#: How far back the ring buffer reaches, s.
HISTORY_SECONDS = 3600.0
#: A series keeps one point per slot of this many seconds: the slot's latest.
HISTORY_RESOLUTION = 1.0
#: Failed tries kept for the status.
RECENT_ERRORS = 20
#: The buses.
BUSES = ("dcdc", "battery")


class Histogram:
    """Counts of observations (s) per bucket of ``LATENCY_BUCKETS`` plus their sum.

    ``counts[i]`` counts observations ``<= LATENCY_BUCKETS[i]`` and greater
    than the bucket before (not cumulative); ``counts[-1]`` the rest (+Inf).
    """

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation of ``seconds``."""
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> List[Tuple[str, int]]:
        """[(le, cumulative count), ..., ("+Inf", total)] as Prometheus wants them."""
        out, total = [], 0
        for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), self.counts):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


class BusRecord:
    """What one bus did: tries, successes, failures, last success and last error."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = ""
        self.tries = 0
        self.ok = 0
        self.retries = 0
        self.last_success: Optional[float] = None
        self.last_error: Optional[str] = None
        self.last_error_time: Optional[float] = None

    def count(self, exchange: Exchange) -> None:
        """Count one try."""
        self.port = exchange.port or self.port
        self.tries += 1
        if exchange.attempt > 1:
            self.retries += 1
        if exchange.ok:
            self.ok += 1
            self.last_success = exchange.time
        else:
            self.last_error = "%s %s: %s" % (exchange.command, exchange.outcome, exchange.error or "")
            self.last_error_time = exchange.time


class _PerThread(threading.local):
    """Per-thread state: the list ``commands_sent`` collects into, or None."""

    sent: Optional[List[str]] = None


class Recorder:
    """The observations of one web application (see the module docstring).

    Feed it with ``attach(bus, owner)`` (adds ``on_exchange`` to
    ``owner.listeners``) or by calling ``on_exchange`` directly, and with
    ``on_http(route, status)``.  Thread-safe: listeners run in the bus
    owners' threads.
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._local = _PerThread()
        self.started = clock()
        self.owners: Dict[str, Any] = {}
        self.buses = {name: BusRecord(name) for name in BUSES}
        self.commands: Dict[Tuple[str, str], int] = collections.Counter()
        self.retries: Dict[str, int] = collections.Counter()
        self.latency: Dict[str, Histogram] = {}
        self.battery_reads: Dict[str, int] = collections.Counter()
        self.http: Dict[Tuple[str, int], int] = collections.Counter()
        self.converter: Dict[str, Tuple[Dict[str, Any], float]] = {}
        self.battery: Dict[str, Tuple[Any, float]] = {}
        self.errors: collections.deque = collections.deque(maxlen=RECENT_ERRORS)
        self.history = {name: collections.deque() for name in HISTORY_SERIES}

    # -- feeding ------------------------------------------------------------

    def attach(self, bus: str, owner: Any) -> None:
        """Listen to ``owner`` (a bus owner: ``.listeners``, ``.port``,
        ``.is_open``) as bus ``bus`` ("dcdc" or "battery")."""
        if bus not in self.buses:
            raise ValueError("unknown bus %r; expected one of %s" % (bus, ", ".join(BUSES)))
        owner.listeners.add(self.on_exchange)
        self.owners[bus] = owner

    def detach(self) -> None:
        """Stop listening to every owner ``attach`` added."""
        for owner in self.owners.values():
            owner.listeners.remove(self.on_exchange)
        self.owners = {}

    def on_exchange(self, exchange: Exchange) -> None:
        """Record one try (the listener of ``essx.exchange.Listeners``)."""
        sent = self._local.sent
        if sent is not None and exchange.bus == "dcdc":
            sent.append(exchange.command)
        with self._lock:
            bus = self.buses.get(exchange.bus)
            if bus is None:
                return
            bus.count(exchange)
            if not exchange.ok:
                self.errors.append(_error_entry(exchange))
            if exchange.bus == "dcdc":
                self._converter(exchange)
            else:
                self._battery(exchange)

    def _converter(self, exchange: Exchange) -> None:
        self.commands[(exchange.command, exchange.outcome)] += 1
        if exchange.attempt > 1:
            self.retries[exchange.command] += 1
        hist = self.latency.get(exchange.command)
        if hist is None:
            hist = self.latency[exchange.command] = Histogram()
        hist.observe(exchange.seconds)
        if exchange.ok and exchange.values:
            block = BLOCKS.get(_group_number(exchange.command))
            if block is not None:
                self.converter[block] = (dict(exchange.values), exchange.time)
            self._add_history("dcdc", exchange)

    def _battery(self, exchange: Exchange) -> None:
        self.battery_reads[exchange.outcome] += 1
        if exchange.ok and exchange.values:
            for key, value in exchange.values.items():
                self.battery[key] = (value, exchange.time)
            self._add_history("battery", exchange)

    def _add_history(self, bus: str, exchange: Exchange) -> None:
        t = exchange.time
        for name, (series_bus, key) in HISTORY_SERIES.items():
            if series_bus != bus or key not in exchange.values:
                continue
            points = self.history[name]
            point = (t, float(exchange.values[key]))
            if points and t // HISTORY_RESOLUTION == points[-1][0] // HISTORY_RESOLUTION:
                points[-1] = point
            else:
                points.append(point)
            while points and points[0][0] < t - HISTORY_SECONDS:
                points.popleft()

    def on_http(self, route: str, status: int) -> None:
        """Count one HTTP answer of ``route`` (the route's rule, "/remote/get")."""
        with self._lock:
            self.http[(route, status)] += 1

    @contextlib.contextmanager
    def commands_sent(self) -> Iterator[List[str]]:
        """Collect the names of the converter tries made by this thread
        inside the ``with`` block ("4-4", "6-4", ...; a retry appears again)."""
        sent: List[str] = []
        outer = self._local.sent
        self._local.sent = sent
        try:
            yield sent
        finally:
            self._local.sent = outer
            if outer is not None:
                outer.extend(sent)

    # -- reading ------------------------------------------------------------

    def now(self) -> float:
        """The recorder's clock, s."""
        return self._clock()

    def port_state(self, bus: str) -> Tuple[str, Optional[bool]]:
        """(port, is_open) of the attached owner of ``bus`` (reading sends
        nothing); ("", None) when no owner is attached; the port of the last
        exchange when the owner is unknown."""
        owner = self.owners.get(bus)
        if owner is None:
            return self.buses[bus].port, None
        return owner.port, bool(owner.is_open)

    def snapshot(self) -> Dict[str, Any]:
        """A consistent copy of everything recorded (plain dicts, lists and tuples)."""
        with self._lock:
            return {
                "time": self._clock(),
                "started": self.started,
                "buses": {name: dict(vars(b)) for name, b in self.buses.items()},
                "commands": dict(self.commands),
                "retries": dict(self.retries),
                "latency": {c: (h.cumulative(), h.sum) for c, h in self.latency.items()},
                "battery_reads": dict(self.battery_reads),
                "http": dict(self.http),
                "converter": {k: (dict(v), t) for k, (v, t) in self.converter.items()},
                "battery": dict(self.battery),
                "errors": list(self.errors),
            }

    def history_since(self, since: float = 0.0) -> Dict[str, List[Tuple[float, float]]]:
        """Points (time s, value) of each ``HISTORY_SERIES`` newer than ``since``,
        within the last ``HISTORY_SECONDS``, oldest first."""
        horizon = max(since, self._clock() - HISTORY_SECONDS)
        with self._lock:
            return {name: [p for p in points if p[0] > horizon] for name, points in self.history.items()}


def known(state: Dict[str, Tuple[Any, float]], name: str, key: Optional[str] = None) -> Any:
    """A last-known value from a snapshot's "converter" (block -> (values
    dict, time s)) or "battery" (key -> (value, time s)): the value of
    *name*, or with *key* the field *key* of block *name* ("meter", "vg");
    None while never read."""
    entry = state.get(name)
    value = None if entry is None else entry[0]
    return value if key is None or value is None else value.get(key)


def _group_number(command: str) -> int:
    """"10-1" -> 10; 0 for a name that is not "N-M"."""
    head = command.partition("-")[0]
    return int(head) if head.isdigit() else 0


def _error_entry(exchange: Exchange) -> Dict[str, Any]:
    return {"time": exchange.time, "bus": exchange.bus, "command": exchange.command,
            "outcome": exchange.outcome, "attempt": exchange.attempt, "error": exchange.error}

