"""What the driver has seen, from bus exchanges (``essx.exchange``) and HTTP
answers only: observing asks no device anything (docs/observability.md).
Times are wall-clock s.

The converter's last replies are kept by the name of what they carry, taken
from the response blocks (``essx.blocks``; docs/web-api.md, "Blocks").
"""
import bisect
import collections
import contextlib
import itertools
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from essx import blocks
from essx.devices import BusOwner
from essx.exchange import Exchange

#: Upper bounds (s) of the converter latency histogram's buckets (+Inf implied).
LATENCY_BUCKETS: Tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
#: The histogram's "le" labels, as Prometheus writes them.
LE = tuple(repr(b) for b in LATENCY_BUCKETS) + ("+Inf",)
#: The status block's replies (``blocks.STATUS``) by the name their last values are
#: kept under: what each carries (docs/observability.md, "/essx/status", "converter").
STATUS_WORDS: Dict[blocks.Reply, str] = {blocks.MODE: "mode", blocks.CST: "status", blocks.ALM1: "alarm"}
#: Blocks made of one command group's replies: their last values are kept under the block's key.
REPLY_BLOCKS = (blocks.METER, blocks.VDIS, blocks.PARAM)
#: Converter command group ("10", of "10-1" and "10-4") -> the name its last reply is kept
#: under: "mode", "status", "alarm", "meter", "vdis", "param".
BLOCKS: Dict[str, str] = dict(
    [(str(source.group), name) for source, name in STATUS_WORDS.items()]
    + [(str(source.group), block.key) for block in REPLY_BLOCKS for source in block.replies()])
#: The meter fields the ring buffer keeps (docs/observability.md, "/essx/history").
HISTORY_METER = ("vg", "ig", "wb")
#: Series of the ring buffer: name -> (bus, key in the exchange's values): the meter's
#: vg, ig, wb (10-1: V, A, W) and the battery's rsoc (%).
HISTORY_SERIES: Dict[str, Tuple[str, str]] = dict(
    [(f.key, ("dcdc", f.sources[0].field)) for f in blocks.METER.only(*HISTORY_METER).fields()]
    + [("rsoc", ("battery", blocks.BATTERY.item("rsoc").sources[0].key))])
#: How far back the ring buffer reaches, s; a series keeps one point a second (its latest).
HISTORY_SECONDS = 3600.0
#: Failed tries kept for the status.
RECENT_ERRORS = 20
BUSES = ("dcdc", "battery")


class Recorder:
    """The observations of one web application; thread-safe (listeners run in
    the bus owners' threads).  Fed by ``attach``/``on_exchange`` and ``on_http``."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self.started = clock()
        self.owners: Dict[str, Any] = {}
        self.buses = {bus: collections.Counter(tries=0, ok=0, retries=0) for bus in BUSES}
        self.last: Dict[Tuple[str, bool], Exchange] = {}        # (bus, ok) -> its latest try
        self.ports: Dict[str, str] = {}
        self.commands: Dict[Tuple[str, str], int] = collections.Counter()
        self.retries: Dict[str, int] = collections.Counter()
        self.battery_reads: Dict[str, int] = collections.Counter()
        self.latency: Dict[str, List[int]] = collections.defaultdict(lambda: [0] * len(LE))
        self.latency_sum: Dict[str, float] = collections.Counter()
        self.http: Dict[Tuple[str, int], int] = collections.Counter()
        self.converter: Dict[str, Tuple[Dict[str, Any], float]] = {}
        self.battery: Dict[str, Tuple[Any, float]] = {}
        self.errors: collections.deque = collections.deque(maxlen=RECENT_ERRORS)
        self.history = {name: collections.deque() for name in HISTORY_SERIES}

    def attach(self, bus: str, owner: BusOwner) -> None:
        """Listen to ``owner`` (``essx.devices.BusOwner``: ``.listeners``, ``.port``,
        ``.is_open``) as bus ``bus``; ValueError for a bus not in ``BUSES``."""
        if bus not in BUSES:
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
        sent = getattr(self._local, "sent", None)
        if sent is not None and exchange.bus == "dcdc":
            sent.append(exchange.command)
        if exchange.bus not in BUSES:
            return
        ok = exchange.ok
        with self._lock:
            counts = self.buses[exchange.bus]
            counts["tries"] += 1
            counts["ok"] += ok
            counts["retries"] += exchange.attempt > 1
            self.last[(exchange.bus, ok)] = exchange
            self.ports[exchange.bus] = exchange.port or self.ports.get(exchange.bus, "")
            if not ok:
                self.errors.append({k: getattr(exchange, k)
                                    for k in ("time", "bus", "command", "outcome", "attempt", "error")})
            if exchange.bus == "battery":
                self.battery_reads[exchange.outcome] += 1
            else:
                self.commands[(exchange.command, exchange.outcome)] += 1
                if exchange.attempt > 1:
                    self.retries[exchange.command] += 1
                self.latency[exchange.command][bisect.bisect_left(LATENCY_BUCKETS, exchange.seconds)] += 1
                self.latency_sum[exchange.command] += exchange.seconds
            if not (ok and exchange.values):
                return
            block = BLOCKS.get(exchange.command.partition("-")[0])
            if exchange.bus == "battery":
                self.battery.update((k, (v, exchange.time)) for k, v in exchange.values.items())
            elif block is not None:
                self.converter[block] = (dict(exchange.values), exchange.time)
            self._add_history(exchange)

    def _add_history(self, exchange: Exchange) -> None:
        t = exchange.time
        for name, (bus, key) in HISTORY_SERIES.items():
            if bus != exchange.bus or key not in exchange.values:
                continue
            points = self.history[name]
            if points and t // 1 == points[-1][0] // 1:
                points.pop()
            points.append((t, float(exchange.values[key])))
            while points[0][0] < t - HISTORY_SECONDS:
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
        outer = getattr(self._local, "sent", None)
        self._local.sent = sent
        try:
            yield sent
        finally:
            self._local.sent = outer
            if outer is not None:
                outer.extend(sent)

    def now(self) -> float:
        """The recorder's clock, s."""
        return self._clock()

    def port_state(self, bus: str) -> Tuple[str, Optional[bool]]:
        """(port, is_open) of the attached owner of ``bus`` (reading sends
        nothing); else (port of its last try or "", None)."""
        owner = self.owners.get(bus)
        if owner is not None:
            return owner.port, bool(owner.is_open)
        return self.ports.get(bus, ""), None

    def snapshot(self) -> Dict[str, Any]:
        """A consistent copy of everything recorded: {"time", "started", "buses":
        {bus: {"tries", "ok", "retries", "last_success", "last_error",
        "last_error_time"}}, "commands": {(command, outcome): n}, "retries":
        {command: n}, "latency": {command: ([(le, cumulative n)], sum s)},
        "battery_reads": {outcome: n}, "http": {(route, status): n},
        "converter": {block: (values, t)}, "battery": {key: (value, t)}, "errors": [...]}."""
        with self._lock:
            return {
                "time": self._clock(), "started": self.started,
                "buses": {bus: self._bus(bus) for bus in BUSES},
                "commands": dict(self.commands), "retries": dict(self.retries),
                "latency": {c: (list(zip(LE, itertools.accumulate(counts))), self.latency_sum[c])
                            for c, counts in self.latency.items()},
                "battery_reads": dict(self.battery_reads), "http": dict(self.http),
                "converter": {k: (dict(v), t) for k, (v, t) in self.converter.items()},
                "battery": dict(self.battery), "errors": list(self.errors),
            }

    def _bus(self, bus: str) -> Dict[str, Any]:
        success, failure = self.last.get((bus, True)), self.last.get((bus, False))
        error = failure and "%s %s: %s" % (failure.command, failure.outcome, failure.error or "")
        return dict(self.buses[bus], last_success=success and success.time, last_error=error,
                    last_error_time=failure and failure.time)

    def history_since(self, since: float = 0.0) -> Dict[str, List[Tuple[float, float]]]:
        """Points (time s, value) of each ``HISTORY_SERIES`` newer than ``since``,
        within the last ``HISTORY_SECONDS``, oldest first."""
        horizon = max(since, self._clock() - HISTORY_SECONDS)
        with self._lock:
            return {name: [p for p in points if p[0] > horizon] for name, points in self.history.items()}


def reply_name(source: blocks.Reply) -> str:
    """The name the last reply carrying *source* is kept under ("meter" for 10-1 ``vg``);
    KeyError for a reply no block is made of."""
    return BLOCKS[str(source.group)]


def known(state: Dict[str, Tuple[Any, float]], name: str, key: Optional[str] = None) -> Any:
    """The last-known value *name* of a snapshot's "converter" (block ->
    (values, t)) or "battery" (key -> (value, t)); with *key*, that field of
    block *name* ("meter", "vg"); None while never read."""
    value = state.get(name, (None,))[0]
    return value if key is None or value is None else value.get(key)
