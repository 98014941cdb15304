#!/usr/bin/env python3
"""essx-grid: N nodes of this driver on one simulated DC bus.

    essx-grid --nodes N --port P [--speed K] [--config FILE]
              [--control-port C] [--driver-config YML]
              [--profiles DIR|sample] [--start 2020-01-01T00:00:00]

Node i (0..N-1) is the whole essx-server stack -- ``essx_service.startup.System``
(ESSXRS485, EZA2500Device, ESSXModbusClient, the controller and its battery
watch) and ``essx_service.app.create_app`` -- over its own simulated EZA2500 and
battery on pseudo-terminals, serving the apis-main Web API on
``127.0.0.1:P+i``.  The converters are nodes of one ``essx_sim.dcbus.DCBus``;
each battery's RSOC follows the power its converter carries
(``essx_sim.physics``), ``K`` times faster than real time.

The control port (``P-1`` unless ``--control-port``) answers ``GET /grid``
(see ``Grid.snapshot``) and serves the grid's live page at ``/``.  ``--port 0``
takes free ports and logs them.
SIGTERM or Ctrl-C stops everything cleanly (exit 0); a bad option or grid
file is one line on stderr (exit 2).

The grid file is described in ``essx_sim.grid``.
"""
import argparse
import dataclasses
import datetime
import functools
import logging
import resource
import signal
import sys
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

import bottle
import waitress

from essx.essx_config import load_config
from essx.essx_exception import ESSXException
from essx_service import emulator_api, grid_control, logsetup, resources
from essx_service.app import create_app
from essx_service.startup import System
from essx_sim.grid import GridConfigError, GridSpec, SimulatedGrid, SimulatedNode, load_grid_spec

#: waitress threads per node (plus THREADS_EXTRA): apis-main polls each node.
THREADS_PER_NODE = 2
THREADS_EXTRA = 4
#: Open connections a listening port may have (waitress's connection_limit counts
#: every socket it serves, listeners included: its default, 100, is less than the
#: listeners of a 100-node grid, which then accepts nothing).
CONNECTIONS_PER_PORT = 16
#: File descriptors a node holds (ptys, pyserial's abort pipes, the battery
#: simulator's event loop: 32 measured), its listener and its connections.
FDS_PER_NODE = 32 + 1 + CONNECTIONS_PER_PORT
#: File descriptors of the grid besides its nodes' (stdio, the control port and
#: its connections, waitress's trigger, imports).
FDS_EXTRA = 64

log = logging.getLogger(__name__)


def node_config(base: Any, dcdc_port: str, battery_port: Optional[str]) -> Any:
    """``base`` (a ``Config``) with the simulators' ports and no direction pin."""
    changes = {"dcdc_dev": dataclasses.replace(base.dcdc_dev, port=dcdc_port, dir_pin="not_used")}
    if base.battery_dev is not None and battery_port is not None:
        kw = dataclasses.replace(base.battery_dev.kwparams, port=battery_port, dir_pin="not_used")
        changes["battery_dev"] = dataclasses.replace(base.battery_dev, kwparams=kw)
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class GridNode:
    """A running node: its simulated devices (``SimulatedNode``), ``System`` and WSGI app."""

    sim: SimulatedNode
    system: Any = None
    app: Any = None

    @property
    def index(self) -> int:
        """The node's number, 0..N-1."""
        return self.sim.index

    @property
    def dcdc_sim(self) -> Any:
        """The node's ``EZA2500Simulator``."""
        return self.sim.dcdc_sim

    @property
    def battery_sim(self) -> Any:
        """The node's ``BatterySimulator``, or None without battery."""
        return self.sim.battery_sim


class Grid:
    """N nodes of the driver on one DC bus (module docstring).

    Args:
        spec: the ``GridSpec`` (one ``NodeSpec`` per node).
        base_config: the nodes' ``Config`` (ports are replaced per node).
        speed: simulated seconds per real second for every battery (> 0).
    Raises:
        GridConfigError: ``speed`` <= 0.
    Attributes:
        bus (``DCBus``), nodes (list of ``GridNode``, after start()),
        devices (the ``SimulatedGrid``).
    """

    def __init__(self, spec: GridSpec, base_config: Any, *, speed: float = 1.0, **devices: Any):
        self.devices = SimulatedGrid(spec, speed=speed, **devices)
        self.spec, self.base_config = spec, base_config
        self.bus = self.devices.bus
        self.nodes: List[GridNode] = []

    @property
    def speed(self) -> float:
        """Simulated seconds per real second (``SimulatedGrid.speed``)."""
        return self.devices.speed

    def start(self) -> "Grid":
        """Start every node's simulators, devices and controller; returns self.

        Raises:
            ValueError (GridConfigError), OSError, RuntimeError: a node could
            not start (everything started is stopped again).
        """
        try:
            for i in range(len(self.spec.nodes)):
                self.nodes.append(self._start_node(i))
            self.devices.start_clock()
        except BaseException:
            self.close()
            raise
        return self

    def _start_node(self, i: int) -> GridNode:
        sim = self.devices.start_node(i, self.base_config.dcdc_dev, self.base_config.battery_dev)
        node = GridNode(sim)
        try:
            config = node_config(self.base_config, sim.dcdc_sim.port,
                                 sim.battery_sim.port if sim.battery_sim else None)
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
        node.sim.stop()

    def close(self) -> None:
        """Stop the households' clock and every node (controllers, ports,
        simulators); idempotent."""
        self.devices.close()
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            self._stop_node(node)

    def snapshot(self) -> Dict[str, Any]:
        """The grid now, as ``GET /grid`` answers it: ``SimulatedGrid.snapshot``."""
        return self.devices.snapshot([node.sim for node in list(self.nodes)])

    def node(self, i: Any) -> GridNode:
        """Running node *i* (int or decimal text); KeyError naming it when there is none."""
        index = self.devices.node(i).index
        for node in list(self.nodes):
            if node.index == index:
                return node
        raise KeyError("node %r is not running" % (i,))


@functools.lru_cache(maxsize=1)
def grid_page() -> str:
    """The grid's live page (package data essx_service/static/grid.html, beside the
    node page); OSError when the install left it out."""
    return resources.read_page("grid.html")


def control_app(grid: Grid, urls: Mapping[int, str]) -> bottle.Bottle:
    """The control port's application: ``GET /grid`` -> ``grid.snapshot()``
    with each node's ``url``; ``GET /`` the grid's live page (``grid_page``),
    which polls ``/grid`` and ``/figures`` and reads nothing else; the control
    API and figures (``essx_service.grid_control``) and apis-emulator's API
    (``essx_service.emulator_api``)."""
    app = bottle.Bottle()
    grid_control.install(app, grid)
    emulator_api.install(app, grid, urls)

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
        connections_per_port: open connections allowed per port (together:
            waitress stops accepting on every port once they are all in use).
    Attributes:
        ports: the ports actually listened on, in the order of ``apps``.
    Raises:
        OSError: a port cannot be bound.
    """

    def __init__(self, apps: List[Tuple[int, Any]], host: str = "127.0.0.1", threads: int = 8,
                 connections_per_port: int = CONNECTIONS_PER_PORT):
        listen = " ".join("%s:%d" % (host, port) for port, _ in apps)
        limit = len(apps) * (1 + connections_per_port) + 1   # listeners, connections, trigger
        self.server = waitress.create_server(self._dispatch, listen=listen, threads=threads,
                                             connection_limit=limit)
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
        closing from another one would race with its poll(). poll, not
        waitress's default select: a grid of many nodes has sockets above fd 1023."""
        try:
            while not self._stop.is_set():
                self.server.asyncore.loop(timeout=0.05, use_poll=True, map=self.server.map, count=1)
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
    p.add_argument("--profiles", help="PV and load profiles: a directory (docs/grid.md) or 'sample'; "
                                      "default: the grid file's profiles, else none")
    p.add_argument("--start", help="the simulated clock's start, e.g. 2020-01-01T06:00:00 "
                                   "(default: the grid file's start, else 2020-01-01T00:00:00)")
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


def base_config_path(args: argparse.Namespace, spec: GridSpec) -> str:
    """The nodes' configuration: ``--driver-config``, else the grid file's
    ``driver_config``, else the shipped example -- never this machine's
    /etc/dcdc_batt_comm/ file, which names real ports."""
    return str(args.driver_config or spec.driver_config or resources.data_path(resources.DEFAULT_CONFIG_NAME))


def with_options(spec: GridSpec, args: argparse.Namespace) -> GridSpec:
    """``spec`` with the command line's ``--profiles`` and ``--start`` (they win over the grid file's).

    Raises:
        GridConfigError: ``--start`` is not a date and time.
    """
    changes: Dict[str, Any] = {}
    if args.profiles:
        changes["profiles"] = args.profiles
    if args.start:
        try:
            changes["start"] = datetime.datetime.fromisoformat(args.start)
        except ValueError:
            raise GridConfigError("--start=%s: expected a date and time, e.g. 2020-01-01T06:00:00"
                                  % args.start) from None
    return dataclasses.replace(spec, **changes)


def fds_needed(nodes: int) -> int:
    """File descriptors a grid of ``nodes`` nodes may hold at once (FDS_PER_NODE
    each, FDS_EXTRA besides)."""
    return nodes * FDS_PER_NODE + FDS_EXTRA


def raise_fd_limit(nodes: int) -> Tuple[int, int]:
    """Raise this process's soft limit of open files (RLIMIT_NOFILE; Debian's is
    1024) to its hard limit, which must allow ``fds_needed(nodes)``; logs one
    INFO line. Returns (soft limit before, soft limit now).

    Raises:
        GridConfigError: the hard limit (or the soft one, when it cannot be
            raised) is below what the nodes need; the message names both.
    """
    need = fds_needed(nodes)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if hard != infinite and hard < need:
        raise GridConfigError(
            "--nodes=%d needs about %d open files, but the hard limit of open files (RLIMIT_NOFILE, "
            "ulimit -Hn) is %d: raise it (LimitNOFILE= under systemd) or run fewer nodes"
            % (nodes, need, hard))
    target = hard if hard != infinite else max(soft, need)
    if soft == infinite or soft >= target:
        log.info("open files: soft limit %s; %d nodes need about %d", soft, nodes, need)
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        if soft < need:
            raise GridConfigError("--nodes=%d needs about %d open files, but the soft limit of open files "
                                  "(RLIMIT_NOFILE, ulimit -n) is %d and cannot be raised: %s"
                                  % (nodes, need, soft, e)) from e
        log.info("open files: soft limit %d (not raised: %s); %d nodes need about %d", soft, e, nodes, need)
        return soft, soft
    log.info("open files: soft limit raised from %d to %d (the hard limit); %d nodes need about %d",
             soft, target, nodes, need)
    return soft, target


def run(args: argparse.Namespace) -> int:
    """Start the grid and serve until SIGTERM/SIGINT; returns the exit status."""
    grid = server = None
    try:
        control, ports = listen_ports(args.nodes, args.port, args.control_port)
        raise_fd_limit(args.nodes)
        spec = with_options(load_grid_spec(args.config, args.nodes), args)
        grid = Grid(spec, load_config(base_config_path(args, spec)), speed=args.speed).start()
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
