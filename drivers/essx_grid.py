#!/usr/bin/env python3
"""essx-grid: N nodes of this driver on one simulated DC bus.

    essx-grid --nodes N --port P [--speed K] [--config FILE]
              [--control-port C] [--driver-config YML]

Node i (0..N-1) is the whole essx-server stack -- ``essx_server.System``
(ESSXRS485, EZA2500Device, ESSXModbusClient, the controller and its battery
watch) and ``essx_server.create_app`` -- over its own simulated EZA2500 and
battery on pseudo-terminals, serving the apis-main Web API on
``127.0.0.1:P+i``.  The converters are nodes of one ``essx.dcbus.DCBus``;
each battery's RSOC follows the power its converter carries
(``battery_emulator.physics``), ``K`` times faster than real time.

The control port (``P-1`` unless ``--control-port``) answers ``GET /grid``
(see ``Grid.snapshot``) and serves the grid's live page at ``/``.  ``--port 0``
takes free ports and logs them.
SIGTERM or Ctrl-C stops everything cleanly (exit 0); a bad option or grid
file is one line on stderr (exit 2).

The grid file (YAML, every key optional)::

    load: 0.0               # A drawn from the bus by something else
    driver_config: dcdc_batt_comm.yml   # the nodes' configuration
    defaults: {capacity_wh: 4800, rsoc: 50, rsoc_min: 10, rsoc_max: 90}
    nodes:                  # node i takes entry i, then the defaults
      - {rsoc: 80}
      - {capacity_wh: 2400, rsoc: 30}
"""
import argparse
import dataclasses
import functools
import os
import signal
import sys
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import bottle
import yaml

from essx import logsetup

#: A node's battery when the grid file says nothing: Wh, %, %, %.
NODE_DEFAULTS = {"capacity_wh": 4800.0, "rsoc": 50.0, "rsoc_min": 10.0, "rsoc_max": 90.0}
#: waitress threads per node (plus THREADS_EXTRA): apis-main polls each node.
THREADS_PER_NODE = 2
THREADS_EXTRA = 4


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


def node_config(base: Any, dcdc_port: str, battery_port: Optional[str]) -> Any:
    """``base`` (a ``Config``) with the simulators' ports and no direction pin."""
    changes = {"dcdc_dev": dataclasses.replace(base.dcdc_dev, port=dcdc_port, dir_pin="not_used")}
    if base.battery_dev is not None and battery_port is not None:
        kw = dataclasses.replace(base.battery_dev.kwparams, port=battery_port, dir_pin="not_used")
        changes["battery_dev"] = dataclasses.replace(base.battery_dev, kwparams=kw)
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class GridNode:
    """A running node: index, simulators (battery_sim None without battery), ``System``, WSGI app."""

    index: int
    dcdc_sim: Any
    battery_sim: Any
    system: Any = None
    app: Any = None


class Grid:
    """N nodes of the driver on one DC bus (module docstring).

    Args:
        spec: the ``GridSpec`` (one ``NodeSpec`` per node).
        base_config: the nodes' ``Config`` (ports are replaced per node).
        speed: simulated seconds per real second for every battery (> 0).
    Raises:
        GridConfigError: ``speed`` <= 0.
    Attributes:
        bus (``DCBus``), nodes (list of ``GridNode``, after start()).
    """

    def __init__(self, spec: GridSpec, base_config: Any, *, speed: float = 1.0):
        from essx.dcbus import DCBus

        if not speed > 0:
            raise GridConfigError("--speed=%r: expected a number > 0" % (speed,))
        self.spec, self.base_config, self.speed = spec, base_config, float(speed)
        self.bus = DCBus(load=spec.load)
        self.nodes: List[GridNode] = []

    def start(self) -> "Grid":
        """Start every node's simulators, devices and controller; returns self.

        Raises:
            ValueError (GridConfigError), OSError, RuntimeError: a node could
            not start (everything started is stopped again).
        """
        try:
            for i, node_spec in enumerate(self.spec.nodes):
                self.nodes.append(self._start_node(i, node_spec))
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, i: int, node_spec: NodeSpec) -> GridNode:
        from battery_emulator.physics import BatteryModel
        from essx.simnode import start_simulated_node
        from essx_server import System, create_app

        dev, bat = self.base_config.dcdc_dev, self.base_config.battery_dev
        try:
            model = BatteryModel(speed=self.speed, **dataclasses.asdict(node_spec)) if bat else None
        except ValueError as e:
            raise GridConfigError("node %d: %s" % (i, e)) from e
        dcdc_sim, battery_sim = start_simulated_node(
            dev.address1, dev.address2, dev.baudrate, bat.unit if bat else None,
            bat.kwparams.baudrate if bat else 9600, bus=self.bus, model=model, name=i)
        node = GridNode(i, dcdc_sim, battery_sim)
        try:
            config = node_config(self.base_config, dcdc_sim.port, battery_sim.port if battery_sim else None)
            node.system = System(config)
            node.system.start()          # ports opened by their owners, then the battery watch
            node.app = create_app(node.system.controller, config=config, simulate=True)
        except BaseException:
            self._stop_node(node)
            raise
        return node

    @staticmethod
    def _stop_node(node: GridNode) -> None:
        if node.system is not None:
            node.system.close()
        for sim in (node.dcdc_sim, node.battery_sim):
            if sim is not None:
                sim.stop()

    def close(self) -> None:
        """Stop every node (controllers, ports, simulators); idempotent."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            self._stop_node(node)

    def snapshot(self) -> Dict[str, Any]:
        """The grid now, as ``GET /grid`` answers it::

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
        from eza2500 import table

        bus = self.bus.snapshot()
        nodes = []
        for node in list(self.nodes):
            flow = bus["nodes"][node.index]
            mode = node.dcdc_sim.state["mode"]
            bsim = node.battery_sim
            m = bsim.model if bsim else None
            nodes.append({"node": node.index, "mode": "0x%04x" % mode, "operationMode": table.mode_name(mode),
                          "vg": flow.vg, "ig": flow.ig, "wg": flow.wg, "wb": flow.wb,
                          "direction": flow.direction,
                          "vb": m.vb if m else None, "rsoc": m.rsoc if m else None,
                          "permitted": bsim.permitted if bsim else None,
                          "capacity_wh": m.capacity_wh if m else None})
        return {"speed": self.speed,
                "bus": {"voltage": bus["voltage"], "up": bus["voltage"] > 0, "load": bus["load"],
                        "sum_ig": bus["sum_ig"]},
                "nodes": nodes}


@functools.lru_cache(maxsize=1)
def grid_page() -> str:
    """The grid's live page (package data essx/static/grid.html, beside the
    node page); OSError when the install left it out."""
    from essx import resources

    return resources.read_page("grid.html")


def control_app(grid: Grid, urls: Mapping[int, str]) -> bottle.Bottle:
    """The control port's application: ``GET /grid`` -> ``grid.snapshot()``
    with each node's ``url``; ``GET /`` the grid's live page (``grid_page``),
    which polls ``/grid`` once a second and reads nothing else."""
    app = bottle.Bottle()

    def grid_json():
        body = grid.snapshot()
        for node in body["nodes"]:
            node["url"] = urls.get(node["node"])
        return body

    def page():
        bottle.response.content_type = "text/html; charset=utf-8"
        return grid_page()

    app.route("/grid", "GET", grid_json)
    app.route("/", "GET", page)
    return app


class GridServer:
    """One waitress server listening on the control port and every node's
    port; a request goes to the application of the port it came in on.

    Args:
        apps: [(port, WSGI app)], port 0 = any free port.
        host: address to listen on.
        threads: waitress worker threads (shared by all ports).
    Attributes:
        ports: the ports actually listened on, in the order of ``apps``.
    Raises:
        OSError: a port cannot be bound.
    """

    def __init__(self, apps: List[Tuple[int, Any]], host: str = "127.0.0.1", threads: int = 8):
        import waitress

        listen = " ".join("%s:%d" % (host, port) for port, _ in apps)
        self.server = waitress.create_server(self._dispatch, listen=listen, threads=threads)
        self.ports = [int(port) for _, port in self.server.effective_listen]
        self._apps = {port: app for port, (_, app) in zip(self.ports, apps)}
        self._stop = threading.Event()

    def _dispatch(self, environ, start_response):
        app = self._apps.get(int(environ.get("SERVER_PORT", 0)))
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no application on this port\n"]
        return app(environ, start_response)

    def serve(self) -> None:
        """Serve until ``stop()`` (from another thread or a signal handler),
        then close every socket and the worker threads (also on an error).
        The loop turns in 0.05 s rounds and closes from its own thread:
        closing from another one would race with its select()."""
        try:
            while not self._stop.is_set():
                self.server.asyncore.loop(timeout=0.05, map=self.server.map, count=1)
        finally:
            self._close()

    def _close(self) -> None:
        channels = list(self.server.map.values())
        for channel in channels:
            channel.close()
        self.server.task_dispatcher.shutdown()

    def stop(self) -> None:
        """Make ``serve()`` return (safe from a signal handler)."""
        self._stop.set()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (module docstring)."""
    p = argparse.ArgumentParser(prog="essx-grid", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True, help="number of nodes N (>= 1)")
    p.add_argument("--port", type=int, required=True,
                   help="node i serves on P+i (0: free ports, logged)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per real second for the batteries (default 1)")
    p.add_argument("--config", help="grid file (YAML): batteries, bus load, driver configuration")
    p.add_argument("--control-port", type=int, help="port of GET /grid (default P-1)")
    p.add_argument("--driver-config", help="the nodes' essx-server configuration "
                                           "(default: the grid file's driver_config, else the shipped one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--log-level", type=str.lower, choices=logsetup.LEVELS, default="warning",
                   help="logging level (default warning)")
    return p.parse_args(argv)


def listen_ports(nodes: int, port: int, control_port: Optional[int]) -> Tuple[int, List[int]]:
    """(control port, [node ports]) for the command line's values.

    Raises:
        GridConfigError: nodes < 1, or a port outside 0..65535.
    """
    if nodes < 1:
        raise GridConfigError("--nodes=%d: expected at least 1" % nodes)
    if port == 0:
        return (control_port or 0), [0] * nodes
    control = port - 1 if control_port is None else control_port
    if not (1 <= control <= 65535 and 1 <= port and port + nodes - 1 <= 65535):
        raise GridConfigError("--port=%d with --nodes=%d and control port %d: ports must lie in 1..65535"
                              % (port, nodes, control))
    return control, [port + i for i in range(nodes)]


def _base_config(args: argparse.Namespace, spec: GridSpec) -> Any:
    from essx import resources
    from essx.essx_config import load_config

    path = args.driver_config or spec.driver_config or resources.default_config_path()
    return load_config(path)


def run(args: argparse.Namespace) -> int:
    """Start the grid and serve until SIGTERM/SIGINT; returns the exit status."""
    from essx.essx_exception import ESSXException

    grid = server = None
    try:
        control, ports = listen_ports(args.nodes, args.port, args.control_port)
        spec = load_grid_spec(args.config, args.nodes)
        grid = Grid(spec, _base_config(args, spec), speed=args.speed).start()
        urls: Dict[int, str] = {}
        apps = [(control, control_app(grid, urls))] + [(p, n.app) for p, n in zip(ports, grid.nodes)]
        server = GridServer(apps, args.host, threads=THREADS_PER_NODE * args.nodes + THREADS_EXTRA)
    except (GridConfigError, ESSXException, OSError) as e:
        print("essx-grid: %s" % e, file=sys.stderr)
        if grid is not None:
            grid.close()
        return 2
    for i, port in enumerate(server.ports[1:]):
        urls[i] = "http://%s:%d" % (args.host, port)
        print("essx-grid: node %d %s" % (i, urls[i]), flush=True)
    print("essx-grid: grid http://%s:%d/grid" % (args.host, server.ports[0]), flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop())
    try:
        server.serve()
    finally:
        grid.close()
    print("essx-grid: stopped", flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """essx-grid's entry point; returns the exit status (0 after SIGTERM/SIGINT,
    2 for a bad option, grid file, driver configuration or port)."""
    args = parse_args(argv)
    logsetup.setup_logging(args.log_level, debug=args.log_level == "debug")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
