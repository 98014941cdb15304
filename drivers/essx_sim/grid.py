"""A simulated grid: N simulated nodes (``essx_sim.node``) on one DC bus
(``essx_sim.dcbus``), each battery a ``BatteryModel``, and the grid file that
describes them.

The grid file (YAML, every key optional)::

    load: 0.0               # A drawn from the bus by something else
    driver_config: dcdc_batt_comm.yml   # the nodes' configuration
    defaults: {capacity_wh: 4800, rsoc: 50, rsoc_min: 10, rsoc_max: 90}
    nodes:                  # node i takes entry i, then the defaults
      - {rsoc: 80}
      - {capacity_wh: 2400, rsoc: 30}

This module knows the devices only; ``essx_service.grid`` puts a driver on
each node and serves them.
"""
import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from eza2500 import table

from .dcbus import DCBus
from .node import start_simulated_node
from .physics import BatteryModel

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
    """The grid: its nodes, the bus load (A) and the nodes' driver configuration path."""

    nodes: Tuple[NodeSpec, ...]
    load: float = 0.0
    driver_config: Optional[str] = None


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
    unknown = set(doc) - {"load", "driver_config", "defaults", "nodes"}
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
    driver = doc.get("driver_config")
    if driver is not None:
        driver = os.path.join(os.path.dirname(os.path.abspath(path)), str(driver))
    return GridSpec(specs, float(load), driver)


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
    """A running simulated node: its index and simulators (battery_sim None without battery)."""

    index: int
    dcdc_sim: Any
    battery_sim: Any

    def stop(self) -> None:
        """Stop both simulators."""
        for sim in (self.dcdc_sim, self.battery_sim):
            if sim is not None:
                sim.stop()


class SimulatedGrid:
    """The devices of a grid: one ``DCBus`` and a ``SimulatedNode`` per ``NodeSpec``.

    Args:
        spec: the ``GridSpec``.
        speed: simulated seconds per real second for every battery (> 0).
    Raises:
        GridConfigError: ``speed`` <= 0.
    Attributes:
        spec, speed, bus (``DCBus``).
    """

    def __init__(self, spec: GridSpec, *, speed: float = 1.0) -> None:
        if not speed > 0:
            raise GridConfigError("--speed=%r: expected a number > 0" % (speed,))
        self.spec, self.speed = spec, float(speed)
        self.bus = DCBus(load=spec.load)

    def start_node(self, i: int, dev: Any, bat: Any) -> SimulatedNode:
        """Start node *i*'s simulators with the converter settings *dev* (a
        ``DcdcDev``: address1, address2, baudrate) and the battery settings
        *bat* (a ``BatteryDev`` or None: no battery).

        Raises:
            GridConfigError: the node's battery values cannot work; OSError,
                RuntimeError: a pty or the Modbus server could not start.
        """
        try:
            model = BatteryModel(speed=self.speed, **dataclasses.asdict(self.spec.nodes[i])) if bat else None
        except ValueError as e:
            raise GridConfigError("node %d: %s" % (i, e)) from e
        dcdc_sim, battery_sim = start_simulated_node(
            dev.address1, dev.address2, dev.baudrate, bat.unit if bat else None,
            bat.kwparams.baudrate if bat else 9600, bus=self.bus, model=model, name=i)
        return SimulatedNode(i, dcdc_sim, battery_sim)

    def snapshot(self, nodes: List[SimulatedNode]) -> Dict[str, Any]:
        """The bus and *nodes* now::

            {"speed": K, "bus": {"voltage": V, "up": bool, "load": A,
                                 "sum_ig": A},
             "nodes": [{"node": i, "mode": "0x0014",
                        "operationMode": "Grid Autonomy", "vg": V, "ig": A,
                        "wg": W, "wb": W, "direction": "charging", "vb": V,
                        "rsoc": %, "permitted": bool, "capacity_wh": Wh}, ...]}

        The 10-1 meters' sign (docs/grid.md): ``ig``, ``wg``, ``wb`` > 0
        when the node draws from the bus into its battery ("charging"), < 0
        when its battery delivers into the bus ("discharging"); ``wb = wg -
        losses``; Σ ig + load = 0.  Exact model values (not the Q-format
        meters the driver reads).  No battery: rsoc, vb, permitted,
        capacity_wh are null.
        """
        bus = self.bus.snapshot()
        rows = []
        for node in nodes:
            flow = bus["nodes"][node.index]
            mode = node.dcdc_sim.state["mode"]
            bsim = node.battery_sim
            m = bsim.model if bsim else None
            rows.append({"node": node.index, "mode": "0x%04x" % mode, "operationMode": table.mode_name(mode),
                         "vg": flow.vg, "ig": flow.ig, "wg": flow.wg, "wb": flow.wb,
                         "direction": flow.direction,
                         "vb": m.vb if m else None, "rsoc": m.rsoc if m else None,
                         "permitted": bsim.permitted if bsim else None,
                         "capacity_wh": m.capacity_wh if m else None})
        return {"speed": self.speed,
                "bus": {"voltage": bus["voltage"], "up": bus["voltage"] > 0, "load": bus["load"],
                        "sum_ig": bus["sum_ig"]},
                "nodes": rows}
