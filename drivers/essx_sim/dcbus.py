"""A DC bus shared by simulated converters (the simulated grid's physics).

Model (choices of this simulator; docs/eza2500-protocol.md gives the modes, not the
physics):

* A converter in Grid Autonomy (``table.MODE_GRID_AUTONOMY``) is a voltage
  source at ``dvg`` (V) with droop ``drg`` taken as volts per ampere
  delivered (docs/eza2500-protocol.md gives only its range, 0..3.999; a source with drg 0
  holds ``dvg`` exactly while within its limit, and counts as ``DROOP_MIN``
  in the share): it delivers ``I = clamp((dvg - V) / drg, -dig, +dig)`` at
  bus voltage ``V``.
* Heteronomy CV discharge (``MODE_HETERONOMY_DISCHARGE``) injects ``dig``
  (A); charge (``MODE_HETERONOMY_CHARGE``) draws ``dig``; Waiting carries
  nothing.
* ``load`` (A) is drawn by something that is no converter (negative: a
  source); ``external_v`` (V) is an external stiff grid that holds the bus
  when no converter is in Grid Autonomy (a lone simulated node uses it).
* The voltage sources share the balance by their droop, each limited to its
  ``dig``; the bus voltage is where the balance holds.  When demand exceeds
  what the sources can give, the constant-current draws are curtailed in
  proportion (a real bus would sag and trip; this keeps a defined state),
  likewise surplus injections.  With no voltage source and no external grid
  the bus is down: 0 V, no current.
* Meters of every node, signed as the converter's 10-1 meters (seen from
  the bus and the node's battery; docs/grid.md): ``vg`` = bus voltage,
  ``ig`` (A) positive when the node draws from the bus (charging), negative
  when it delivers (discharging); ``wg = vg * ig`` (W); ``wb`` (W) the
  battery side through ``efficiency``, the same sign as ``wg`` (positive
  into the battery): ``wb = wg * eta`` when charging, ``wg / eta`` when
  discharging, so ``wb = wg - losses`` either way.
* No line losses: Σ ig + load = 0 (to float rounding).

Thread-safe: ``update`` solves the whole bus under the bus lock and hands
each node's battery its new power (lock order: caller, bus, battery).
"""
import threading
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Mapping, Optional, Tuple

from eza2500 import table

#: Droop (V/A) used for a source set to drg = 0, so that two ideal sources
#: at different dvg still have a defined share.
DROOP_MIN = 1e-3
#: Bisection steps for the bus voltage (range / 2**80: exact to float).
BISECTION_STEPS = 80
#: A node whose |ig| is at most this (A) carries nothing ("idle").
IDLE_IG = 1e-6


@dataclass(frozen=True)
class Setting:
    """What a converter asks of the bus.

    Attributes: mode (a ``table.MODE_*`` code, e.g. 0x0014), dvg (V), drg (V/A), dig (A),
    efficiency (0..1].
    """

    mode: int = table.MODE_WAITING
    dvg: float = 0.0
    drg: float = 0.0
    dig: float = 0.0
    efficiency: float = 1.0


@dataclass(frozen=True)
class Flow:
    """A node's meters on the bus: vg (V), ig (A, + = drawn from the bus,
    charging), wg = vg * ig (W), wb (W, battery side, + = into the battery,
    charging; - = out of it, discharging)."""

    vg: float = 0.0
    ig: float = 0.0
    wg: float = 0.0
    wb: float = 0.0

    @property
    def direction(self) -> str:
        """"charging" (ig > 0: from the bus into the battery), "discharging"
        (ig < 0) or "idle" (|ig| <= ``IDLE_IG`` A)."""
        if self.ig > IDLE_IG:
            return "charging"
        return "discharging" if self.ig < -IDLE_IG else "idle"


def battery_power(wg: float, efficiency: float) -> float:
    """Battery-side power ``wb`` (W) for grid power ``wg`` (W): ``wg`` less the
    losses, same sign (positive: charging, into the battery; negative:
    discharging), so ``|wb| < |wg|`` charging and ``|wb| > |wg|`` discharging."""
    if wg > 0:
        return wg * efficiency
    return wg / efficiency if wg else 0.0


def _fixed_current(s: Setting) -> float:
    """Current (A) a constant-current node draws from the bus."""
    if s.mode == table.MODE_HETERONOMY_CHARGE:
        return s.dig
    if s.mode == table.MODE_HETERONOMY_DISCHARGE:
        return -s.dig
    return 0.0


def _delivered(s: Setting, v: float) -> float:
    """Current (A) source ``s`` delivers into the bus at ``v`` volts."""
    r = max(s.drg, DROOP_MIN)
    return max(-s.dig, min(s.dig, (s.dvg - v) / r))


def _bus_voltage(sources: List[Setting], demand: float) -> float:
    """The voltage (V) at which the sources deliver ``demand`` (A) in total;
    ``demand`` must be within ± the sum of their dig."""
    lo = min(s.dvg - max(s.drg, DROOP_MIN) * s.dig for s in sources)
    hi = max(s.dvg + max(s.drg, DROOP_MIN) * s.dig for s in sources)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if sum(_delivered(s, mid) for s in sources) > demand:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _curtail(fixed: Dict[Any, float], load: float, cap: float) -> Tuple[Dict[Any, float], float]:
    """Scale the draws (or the injections) so that the demand fits ``cap`` (A)."""
    draws = sum(i for i in fixed.values() if i > 0) + max(load, 0.0)
    injects = -sum(i for i in fixed.values() if i < 0) + max(-load, 0.0)
    demand = draws - injects
    if -cap <= demand <= cap:
        return fixed, load
    if demand > cap:
        k, side = (cap + injects) / draws, 1.0
    else:
        k, side = (draws + cap) / injects, -1.0

    def scaled(i):
        return i * k if i * side > 0 else i

    return {n: scaled(i) for n, i in fixed.items()}, scaled(load)


def solve(settings: Mapping[Hashable, Setting], load: float = 0.0,
          external_v: Optional[float] = None) -> Tuple[float, Dict[Hashable, float], float]:
    """Solve the bus (see module docstring).

    Args:
        settings: node -> its ``Setting``.
        load: current (A) drawn by the bus's load (negative: injected).
        external_v: voltage (V) of an external stiff grid, or None.
    Returns:
        (bus voltage V, node -> ig A, load current actually served A).
    """
    sources = {n: s for n, s in settings.items() if s.mode == table.MODE_GRID_AUTONOMY}
    fixed = {n: _fixed_current(s) for n, s in settings.items() if n not in sources}
    if not sources:
        if external_v is None:
            return 0.0, {n: 0.0 for n in settings}, 0.0
        return float(external_v), fixed, load
    cap = sum(s.dig for s in sources.values())
    fixed, load = _curtail(fixed, load, cap)
    demand = sum(fixed.values()) + load
    v = _bus_voltage(list(sources.values()), demand)
    delivered = {n: _delivered(s, v) for n, s in sources.items()}
    ideal = [n for n, s in sources.items() if s.drg <= 0 and abs(delivered[n]) < s.dig]
    if ideal:  # an unsaturated source without droop holds its dvg exactly
        v = sources[ideal[0]].dvg
        delivered = {n: _delivered(s, v) for n, s in sources.items()}
        share = [n for n in ideal if sources[n].dvg == v]
    else:
        share = [max(sources, key=lambda n: sources[n].dig - abs(delivered[n]))]
    residual = demand - sum(delivered.values())
    total = sum(sources[n].dig for n in share) or 1.0
    for n in share:
        delivered[n] += residual * (sources[n].dig / total if len(share) > 1 else 1.0)
    ig = dict(fixed)
    ig.update({n: -i for n, i in delivered.items()})
    return v, ig, load


class Node:
    """One converter on a ``DCBus``: its ``name``, ``setting``, last ``flow``
    and optional ``battery`` (anything with ``set_power(wb, wg)``, W)."""

    def __init__(self, name: Hashable, battery=None):
        self.name = name
        self.battery = battery
        self.setting = Setting()
        self.flow = Flow()


class DCBus:
    """The bus: nodes, an optional load and external grid (module docstring).

    Args:
        load: current (A) drawn by a load that is no converter.
        external_v: voltage (V) of an external stiff grid, or None (none).
    """

    def __init__(self, load: float = 0.0, external_v: Optional[float] = None):
        self._lock = threading.RLock()
        self._nodes: Dict[Hashable, Node] = {}
        self.load, self.external_v = load, external_v
        self._solve()  # sets voltage (V) and load_served (A)

    def attach(self, name: Hashable, battery=None) -> Node:
        """Add a node (in Waiting) named ``name``; ValueError if taken."""
        with self._lock:
            if name in self._nodes:
                raise ValueError("bus node %r already exists" % (name,))
            node = self._nodes[name] = Node(name, battery)
            self._solve()
            return node

    def detach(self, node: Node) -> None:
        """Remove ``node`` (its battery gets 0 W)."""
        with self._lock:
            if self._nodes.pop(node.name, None) is not None and node.battery is not None:
                node.battery.set_power(0.0, 0.0)
            self._solve()

    def update(self, node: Node, setting: Setting) -> None:
        """Give ``node`` a new setting and solve the bus again."""
        with self._lock:
            node.setting = setting
            self._solve()

    def configure(self, load: Optional[float] = None, external_v: Any = ...) -> None:
        """Change the load (A) and/or the external grid (V or None), then solve."""
        with self._lock:
            if load is not None:
                self.load = load
            if external_v is not ...:
                self.external_v = external_v
            self._solve()

    def snapshot(self) -> Dict[str, Any]:
        """{"voltage": V, "load": A served, "sum_ig": A, "nodes": {name: Flow}}."""
        with self._lock:
            nodes = {n.name: n.flow for n in self._nodes.values()}
            return {"voltage": self.voltage, "load": self.load_served,
                    "sum_ig": sum(f.ig for f in nodes.values()), "nodes": nodes}

    def _solve(self):
        settings = {name: n.setting for name, n in self._nodes.items()}
        v, ig, self.load_served = solve(settings, self.load, self.external_v)
        self.voltage = v
        for name, node in self._nodes.items():
            i = ig[name]
            wg = v * i
            node.flow = Flow(v, i, wg, battery_power(wg, node.setting.efficiency))
            if node.battery is not None:
                node.battery.set_power(node.flow.wb, node.flow.wg)
