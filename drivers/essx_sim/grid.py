"""A simulated grid: N simulated nodes (``essx_sim.node``) on one DC bus
(``essx_sim.dcbus``), each battery a ``BatteryModel`` on the grid's
``SimClock``, each node's household (``essx_sim.household``) fed by its PV
and load profiles (``essx_sim.profiles``), and the grid's figures
(``essx_sim.figures``).

The grid file (YAML, every key optional)::

    load: 0.0               # A drawn from the bus by something else
    driver_config: dcdc_batt_comm.yml   # the nodes' configuration
    profiles: profiles/     # a profile directory (relative) or "sample"
    start: "2020-01-01T00:00:00"        # the simulated clock's start
    household: {batt_mode_loss_w: 129}  # essx_sim.household.Losses
    defaults: {capacity_wh: 4800, rsoc: 50, rsoc_min: 10, rsoc_max: 90}
    nodes:                  # node i takes entry i, then the defaults
      - {rsoc: 80}
      - {capacity_wh: 2400, rsoc: 30}

Without profiles a node has no PV, no load, no losses and no AC backup
(only what the bus carries moves its RSOC) until the control API gives it
PV or load.  This module knows the devices only; ``essx_service.grid``
puts a driver on each node and serves them.
"""
import dataclasses
import datetime
import os
import sys
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from eza2500 import table

from .clock import DEFAULT_START, SimClock, check_speed
from .dcbus import DCBus
from .figures import Figures
from .household import Household, Losses, Side, losses_from
from .node import start_simulated_node
from .physics import BatteryModel
from .profiles import ZERO, NodeProfile, ProfileError, profiles_for, unit_id

#: Real seconds between two updates of the households (PV, load, UPS state) and figures.
TICK_S = 0.2

#: A node's battery when the grid file says nothing: Wh, %, %, %.
NODE_DEFAULTS = {"capacity_wh": 4800.0, "rsoc": 50.0, "rsoc_min": 10.0, "rsoc_max": 90.0}


class GridConfigError(ValueError):
    """A grid file or option that cannot work (the message names it)."""


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One node's battery: capacity_wh (Wh), rsoc (%), rsoc_min/rsoc_max (%)."""

    capacity_wh: float = NODE_DEFAULTS["capacity_wh"]
    rsoc: float = NODE_DEFAULTS["rsoc"]
    rsoc_min: float = NODE_DEFAULTS["rsoc_min"]
    rsoc_max: float = NODE_DEFAULTS["rsoc_max"]


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """The grid: its nodes, the bus load (A), the nodes' driver configuration
    path, the profiles (a directory, "sample" or None), the clock's start and
    the household figures."""

    nodes: Tuple[NodeSpec, ...]
    load: float = 0.0
    driver_config: Optional[str] = None
    profiles: Optional[str] = None
    start: datetime.datetime = DEFAULT_START
    household: Losses = Losses()


def _node_spec(entry: Any, defaults: Mapping[str, float], where: str) -> NodeSpec:
    if not isinstance(entry, Mapping):
        raise GridConfigError("%s: expected a mapping, got %r" % (where, entry))
    unknown = set(entry) - set(NODE_DEFAULTS)
    if unknown:
        raise GridConfigError("%s: unknown key %s (known: %s)"
                              % (where, ", ".join(sorted(map(str, unknown))), ", ".join(NODE_DEFAULTS)))
    values = dict(defaults, **entry)
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GridConfigError("%s.%s=%r: expected a number" % (where, key, value))
    return NodeSpec(**{k: float(v) for k, v in values.items()})


def grid_spec(doc: Any, nodes: int, path: str = "<grid>") -> GridSpec:
    """The ``GridSpec`` of a parsed grid file for ``nodes`` nodes.

    Raises:
        GridConfigError: a key or value that cannot work (path and key named).
    """
    doc = {} if doc is None else doc
    if not isinstance(doc, Mapping):
        raise GridConfigError("%s: expected a mapping at the top" % path)
    unknown = set(doc) - {"load", "driver_config", "defaults", "nodes", "profiles", "start", "household"}
    if unknown:
        raise GridConfigError("%s: unknown key %s" % (path, ", ".join(sorted(map(str, unknown)))))
    defaults = _node_spec(doc.get("defaults") or {}, NODE_DEFAULTS, "%s: defaults" % path)
    entries = doc.get("nodes") or []
    if not isinstance(entries, list):
        raise GridConfigError("%s: nodes: expected a list" % path)
    base = dataclasses.asdict(defaults)
    specs = tuple(_node_spec(entries[i] if i < len(entries) else {}, base, "%s: nodes[%d]" % (path, i))
                  for i in range(nodes))
    load = doc.get("load", 0.0)
    if isinstance(load, bool) or not isinstance(load, (int, float)):
        raise GridConfigError("%s: load=%r: expected a number (A)" % (path, load))
    here = os.path.dirname(os.path.abspath(path))
    driver = doc.get("driver_config")
    if driver is not None:
        driver = os.path.join(here, str(driver))
    profiles = doc.get("profiles")
    if profiles is not None and str(profiles) != "sample":
        profiles = os.path.join(here, str(profiles))
    start = doc.get("start", DEFAULT_START)
    if isinstance(start, str):
        try:
            start = datetime.datetime.fromisoformat(start)
        except ValueError:
            raise GridConfigError("%s: start=%r: expected a date and time, e.g. 2020-01-01T00:00:00"
                                  % (path, start)) from None
    elif isinstance(start, datetime.date) and not isinstance(start, datetime.datetime):
        start = datetime.datetime.combine(start, datetime.time())
    if not isinstance(start, datetime.datetime):
        raise GridConfigError("%s: start=%r: expected a date and time, e.g. 2020-01-01T00:00:00" % (path, start))
    try:
        household = losses_from(doc.get("household"), "%s: household" % path)
    except ValueError as e:
        raise GridConfigError(str(e)) from e
    return GridSpec(specs, float(load), driver, None if profiles is None else str(profiles), start, household)


def load_grid_spec(path: Optional[str], nodes: int) -> GridSpec:
    """``grid_spec`` of the YAML file ``path`` (None: all defaults).

    Raises:
        GridConfigError: unreadable file, bad YAML, bad key or value.
    """
    if path is None:
        return grid_spec(None, nodes)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise GridConfigError("%s: cannot be read: %s" % (path, e)) from e
    return grid_spec(doc, nodes, path)



@dataclasses.dataclass
class SimulatedNode:
    """A running simulated node: its index, simulators (battery_sim None
    without battery), its PV and load ``profile``, its ``household`` (UPS
    state, losses), the PV and load set from outside (W; None: the
    profile's) and the household ``side`` last handed to its battery."""

    index: int
    dcdc_sim: Any
    battery_sim: Any
    profile: NodeProfile = ZERO
    household: Household = dataclasses.field(default_factory=lambda: Household(backup=False))
    pv_set: Optional[float] = None
    load_set: Optional[float] = None
    side: Side = Side()

    @property
    def model(self) -> Optional[BatteryModel]:
        """The node's ``BatteryModel``, or None without battery."""
        return self.battery_sim.model if self.battery_sim is not None else None

    @property
    def mode(self) -> int:
        """The converter's mode now (a ``table.MODE_*`` code)."""
        return self.dcdc_sim.node.setting.mode

    def stop(self) -> None:
        """Stop both simulators."""
        for sim in (self.dcdc_sim, self.battery_sim):
            if sim is not None:
                sim.stop()


def _watts(name: str, value: Any) -> Optional[float]:
    """A PV or load value set from outside: W >= 0, or None / "profile" for the profile's."""
    if value is None or value == "profile":
        return None
    try:
        return _number(name, value, 0.0, sys.float_info.max)
    except ValueError:
        raise ValueError("%s=%r: expected W >= 0 or 'profile'" % (name, value)) from None


class SimulatedGrid:
    """The devices of a grid: one ``DCBus``, a ``SimulatedNode`` per
    ``NodeSpec``, the ``SimClock`` their batteries run on, their households
    and the ``Figures``.  ``start_clock()`` starts the thread that updates the
    households every ``tick_s`` real seconds; ``close()`` stops it.

    Args:
        spec: the ``GridSpec``.
        speed: simulated seconds per real second (> 0); ``speed`` can be set later.
        profiles: the nodes' ``NodeProfile`` list; default: ``spec.profiles``
            read (None there: no household model, only what the bus carries).
        tick_s: real seconds between household updates.
        sample_s: simulated seconds between rows of the figures' series.
    Raises:
        GridConfigError: ``speed`` <= 0, a profile directory that cannot be used.
    Attributes:
        spec, clock (``SimClock``), bus (``DCBus``), nodes (``SimulatedNode``
        list, in start order), figures (``Figures``), backup (True with
        profiles: losses and AC backup on).
    """

    def __init__(self, spec: GridSpec, *, speed: float = 1.0, profiles: Optional[List[NodeProfile]] = None,
                 tick_s: float = TICK_S, sample_s: float = 300.0) -> None:
        try:
            self.clock = SimClock(spec.start, check_speed(speed))
            if profiles is None:
                profiles = profiles_for(spec.profiles, len(spec.nodes))
        except ProfileError as e:
            raise GridConfigError(str(e)) from e
        except ValueError as e:
            raise GridConfigError("--speed=%r: expected a number > 0" % (speed,)) from e
        self.spec, self.tick_s = spec, float(tick_s)
        self.backup = profiles is not None
        self.profiles = profiles if profiles is not None else [ZERO] * len(spec.nodes)
        self.bus = DCBus(load=spec.load)
        self.nodes: List[SimulatedNode] = []
        self.figures = Figures(sample_s)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def speed(self) -> float:
        """Simulated seconds per real second; setting it changes every
        battery's pace from now on (ValueError unless > 0)."""
        return self.clock.speed

    @speed.setter
    def speed(self, value: float) -> None:
        self.clock.speed = value

    def start_node(self, i: int, dev: Any, bat: Any) -> SimulatedNode:
        """Start node *i*'s simulators with the converter settings *dev* (a
        ``DcdcDev``: address1, address2, baudrate) and the battery settings
        *bat* (a ``BatteryDev`` or None: no battery); the node joins ``nodes``.

        Raises:
            GridConfigError: the node's battery values cannot work; OSError,
                RuntimeError: a pty or the Modbus server could not start.
        """
        try:
            model = BatteryModel(clock=self.clock.seconds, **dataclasses.asdict(self.spec.nodes[i])) if bat else None
        except ValueError as e:
            raise GridConfigError("node %d: %s" % (i, e)) from e
        dcdc_sim, battery_sim = start_simulated_node(
            dev.address1, dev.address2, dev.baudrate, bat.unit if bat else None,
            bat.kwparams.baudrate if bat else 9600, bus=self.bus, model=model, name=i)
        node = SimulatedNode(i, dcdc_sim, battery_sim, self.profiles[i],
                             Household(self.spec.household, backup=self.backup))
        with self._lock:
            self.nodes.append(node)
            self._update(node, self.clock.seconds())
        return node

    # --- the households' clock --------------------------------------------------

    def start_clock(self) -> None:
        """Start the thread that updates households and figures every ``tick_s`` s."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="grid-clock", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the households' thread (the caller stops the nodes); idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        """Update every household (PV, load, UPS state, losses) at the
        simulated time now, and take a row of figures when one is due."""
        with self._lock:
            t = self.clock.seconds()
            for node in self.nodes:
                self._update(node, t)
            if self.figures.due(t):
                self.figures.sample(t, self.clock.at(t), [n.model.ledger() for n in self.nodes if n.model])

    def _update(self, node: SimulatedNode, t: float) -> None:
        model = node.model
        if model is None:
            return
        year_t = self.clock.year_seconds(t)
        pv = node.profile.pv.at(year_t) if node.pv_set is None else node.pv_set
        load = node.profile.load.at(year_t) if node.load_set is None else node.load_set
        node.side = side = node.household.side(pv, load, model.rsoc, node.mode)
        model.set_side(side.pv, side.load, side.ac_in, side.loss)

    # --- control ------------------------------------------------------------------

    def node(self, i: Any) -> SimulatedNode:
        """Node *i* (an int or its decimal text); KeyError naming it when there is none."""
        try:
            index = int(i)
        except (ValueError, TypeError):
            index = -1
        if not 0 <= index < len(self.nodes):
            raise KeyError("node %r: no such node (0..%d)" % (i, len(self.nodes) - 1))
        return self.nodes[index]

    def set_node(self, i: Any, *, rsoc: Any = None, capacity_wh: Any = None, pv: Any = ..., load: Any = ...) -> None:
        """Set node *i*'s RSOC (%), capacity (Wh), PV and load (W, or
        None/"profile": the profile's again); what is not given is kept.
        Every value is checked before any is applied.

        Raises:
            KeyError: no node *i*; ValueError: a value out of range (named),
                or RSOC or capacity for a node without battery.
        """
        node = self.node(i)
        model = node.model
        if model is None and (rsoc is not None or capacity_wh is not None):
            raise ValueError("node %d has no battery: rsoc and capacity_wh cannot be set" % node.index)
        values = {}
        if rsoc is not None:
            values["rsoc"] = _number("rsoc", rsoc, 0.0, 100.0)
        if capacity_wh is not None:
            values["capacity_wh"] = _number("capacity_wh", capacity_wh, 0.0, float("inf"), low_open=True)
        if pv is not ...:
            values["pv"] = _watts("pv", pv)
        if load is not ...:
            values["load"] = _watts("load", load)
        with self._lock:
            if "capacity_wh" in values:
                model.set_capacity(values["capacity_wh"])
            if "rsoc" in values:
                model.rsoc = values["rsoc"]
            if "pv" in values:
                node.pv_set = values["pv"]
            if "load" in values:
                node.load_set = values["load"]
            self._update(node, self.clock.seconds())

    def set_bus_load(self, amps: Any) -> None:
        """The current (A) the bus's own load draws (negative: a source); ValueError if not a number."""
        self.bus.configure(load=_number("load", amps, float("-inf"), float("inf")))

    def fault(self, i: Any, device: str, kind: str, count: Any = 1, **kw: Any) -> None:
        """Arm fault ``kind`` on node *i*'s ``device`` ("converter": the
        EZA2500 simulator's faults; "battery": the battery simulator's) for
        ``count`` requests; ``kind`` "clear" disarms that device's faults.

        Raises:
            KeyError: no node *i*; ValueError: unknown device, kind or count,
                or a battery fault on a node without battery.
        """
        node = self.node(i)
        sim = {"converter": node.dcdc_sim, "battery": node.battery_sim}.get(device, ...)
        if sim is ...:
            raise ValueError("device=%r: expected converter or battery" % (device,))
        if sim is None:
            raise ValueError("node %d has no battery" % node.index)
        if kind == "clear":
            sim.clear_faults()
            return
        count = int(_number("count", count, 1, 10 ** 6))
        sim.inject(kind, count, **kw)

    # --- the whole state ----------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """The whole state, as ``restore`` takes it back::

            {"clock": {"start": ISO, "seconds": s, "speed": K},
             "bus": {"load": A},
             "nodes": [{"node": i, "rsoc": %, "capacity_wh": Wh, "pv": W|None,
                        "load": W|None, "bypass": bool, "ac_charging": bool,
                        "converter": {"mode": code, "dvg": V, "dig": A, "drg": V/A}}]}

        (``pv``/``load``: set from outside, None: the profile's.)"""
        with self._lock:
            rows = []
            for node in self.nodes:
                m, s = node.model, node.dcdc_sim.state
                rows.append({"node": node.index, "rsoc": m.rsoc if m else None,
                             "capacity_wh": m.capacity_wh if m else None,
                             "pv": node.pv_set, "load": node.load_set,
                             "bypass": node.household.bypass, "ac_charging": node.household.ac_charging,
                             "converter": {k: s[k] for k in ("mode", "dvg", "dig", "drg")}})
            return {"clock": {"start": self.clock.start.isoformat(), "seconds": self.clock.seconds(),
                              "speed": self.speed},
                    "bus": {"load": self.bus.load}, "nodes": rows}

    def restore(self, doc: Mapping[str, Any]) -> None:
        """Put back a ``state()``: clock time and speed, bus load, and each
        listed node's RSOC, capacity, PV, load, UPS state and converter
        setting.  Everything is checked before anything changes.

        Raises:
            ValueError: a missing or bad value (its place named), a node that
                does not exist.
        """
        try:
            clock, bus, rows = doc["clock"], doc["bus"], doc["nodes"]
            seconds = _number("clock.seconds", clock["seconds"], 0.0, float("inf"))
            speed = check_speed(clock["speed"])
            load = _number("bus.load", bus["load"], float("-inf"), float("inf"))
            plan = []
            for k, row in enumerate(rows):
                node = self.node(row["node"])
                conv = row["converter"]
                setting = {"mode": int(_number("nodes[%d].converter.mode" % k, conv["mode"], 0, 0xFFFF)),
                           "dvg": _number("nodes[%d].converter.dvg" % k, conv["dvg"], 0, 1000),
                           "dig": _number("nodes[%d].converter.dig" % k, conv["dig"], 0, 1000),
                           "drg": _number("nodes[%d].converter.drg" % k, conv["drg"], 0, 1000)}
                values = {"pv": _watts("nodes[%d].pv" % k, row.get("pv")),
                          "load": _watts("nodes[%d].load" % k, row.get("load"))}
                if node.model is not None:
                    values["rsoc"] = _number("nodes[%d].rsoc" % k, row["rsoc"], 0.0, 100.0)
                    values["capacity_wh"] = _number("nodes[%d].capacity_wh" % k, row["capacity_wh"], 0.0,
                                                    float("inf"), low_open=True)
                plan.append((node, setting, values, bool(row.get("bypass")), bool(row.get("ac_charging"))))
        except (KeyError, TypeError) as e:
            raise ValueError("state: missing or bad %s" % e) from None
        with self._lock:
            self.clock.set_seconds(seconds)
            self.clock.speed = speed
            self.bus.configure(load=load)
            for node, setting, values, bypass, ac_charging in plan:
                node.dcdc_sim.set(**setting)
                node.pv_set, node.load_set = values["pv"], values["load"]
                node.household.bypass, node.household.ac_charging = bypass, ac_charging
                if node.model is not None:
                    node.model.set_capacity(values["capacity_wh"])
                    node.model.rsoc = values["rsoc"]
                self._update(node, self.clock.seconds())

    # --- views --------------------------------------------------------------------

    def snapshot(self, nodes: Optional[List[SimulatedNode]] = None) -> Dict[str, Any]:
        """The bus and *nodes* (default: all) now::

            {"time": "2020-01-01T06:30:00", "speed": K,
             "bus": {"voltage": V, "up": bool, "load": A, "sum_ig": A},
             "nodes": [{"node": i, "unit": "E001", "mode": "0x0014",
                        "operationMode": "Grid Autonomy", "vg": V, "ig": A,
                        "wg": W, "wb": W, "direction": "charging", "vb": V,
                        "rsoc": %, "permitted": bool, "capacity_wh": Wh,
                        "pv": W, "load": W, "ac_in": W, "loss": W,
                        "bypass": bool, "ac_charging": bool}, ...]}

        The 10-1 meters' sign (docs/grid.md): ``ig``, ``wg``, ``wb`` > 0
        when the node draws from the bus into its battery ("charging"), < 0
        when its battery delivers into the bus ("discharging"); ``wb = wg -
        losses``; Σ ig + load = 0.  Exact model values (not the Q-format
        meters the driver reads).  ``pv`` ... ``ac_charging``: the
        household side (``essx_sim.household.Side``).  No battery: rsoc,
        vb, permitted, capacity_wh are null.
        """
        bus = self.bus.snapshot()
        rows = []
        for node in (self.nodes if nodes is None else nodes):
            flow = bus["nodes"][node.index]
            mode = node.dcdc_sim.state["mode"]
            bsim = node.battery_sim
            m = bsim.model if bsim else None
            side = node.side
            rows.append({"node": node.index, "unit": unit_id(node.index), "mode": "0x%04x" % mode,
                         "operationMode": table.mode_name(mode),
                         "vg": flow.vg, "ig": flow.ig, "wg": flow.wg, "wb": flow.wb,
                         "direction": flow.direction,
                         "vb": m.vb if m else None, "rsoc": m.rsoc if m else None,
                         "permitted": bsim.permitted if bsim else None,
                         "capacity_wh": m.capacity_wh if m else None,
                         "pv": side.pv, "load": side.load, "ac_in": side.ac_in, "loss": side.loss,
                         "bypass": side.bypass, "ac_charging": side.ac_charging})
        return {"time": self.clock.now().isoformat(timespec="seconds"), "speed": self.speed,
                "bus": {"voltage": bus["voltage"], "up": bus["voltage"] > 0, "load": bus["load"],
                        "sum_ig": bus["sum_ig"]},
                "nodes": rows}


def _number(name: str, value: Any, lo: float, hi: float, low_open: bool = False) -> float:
    """``value`` as a float within [lo, hi] (``low_open``: above lo), else ValueError naming ``name``."""
    if isinstance(value, bool):
        raise ValueError("%s=%r: expected a number" % (name, value))
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError("%s=%r: expected a number" % (name, value)) from None
    if not (lo < x if low_open else lo <= x) or not x <= hi or x != x:
        raise ValueError("%s=%r: expected a number %s %s%s" % (
            name, value, ">" if low_open else ">=", lo, "" if hi == float("inf") else " and <= %s" % hi))
    return x
