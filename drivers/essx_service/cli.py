"""essx-server's command line (spec 5.1.2 plus deployment options) and main.

Exit status: 0 after SIGINT/SIGTERM (or a passing ``--check``), 1 when
``--check`` finds a fault, 2 for an operator's mistake (one line on stderr).
"""
import argparse
import ipaddress
import logging
import os
import re
import signal
from typing import Any, List, Optional

import essx_service
from essx import essx_config
from essx.essx_exception import ESSXException
from essx_service import logsetup, resources
from essx_service.app import create_app
from essx_service.check import run_check
from essx_service.serve import THREADS, max_waiting, serve
from essx_service.startup import System

log = logging.getLogger("essx_server")

#: Exit status of an operator's mistake (bad option, file, port).
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, "%s: %s (see %s --help)\n" % (self.prog, message, self.prog))


def package_version() -> str:
    """This release's version ("1.4.0"): ``essx_service.__version__``, which is
    the distribution's (pyproject.toml)."""
    return essx_service.__version__


def tcp_port(text: str) -> int:
    """``--port``: an integer 1-65535."""
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("%r is not a TCP port: expected 1-65535" % text)
    return value


def host_name(text: str) -> str:
    """``--host``: an IP address or a host name (whether it is this machine's
    is checked when binding)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:      # labels of letters, digits and "-", not starting with "-"
        if 0 < len(text) <= 253 and all(re.fullmatch(r"(?!-)(?:[^\W_]|-){1,63}", label)
                                        for label in text.rstrip(".").split(".")):
            return text
    raise argparse.ArgumentTypeError("%r is neither an IP address nor a host name" % text)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line; exits 2 with one line on a bad option, 0 after
    ``--version``/``--help``."""
    p = _Parser(prog="essx-server", description="ESS Server: apis-dcdc_batt_comm Web API")
    p.add_argument("--host", type=host_name, default="localhost",
                   help="address to listen on (default localhost)")
    p.add_argument("--port", type=tcp_port, default=8080, help="TCP port, 1-65535 (default 8080)")
    p.add_argument("--config", help="configuration file (default %s when it exists, else the "
                                    "shipped example)" % resources.ETC_CONFIG)
    p.add_argument("--log-level", choices=logsetup.LEVELS, default="info",
                   help="least severe level logged (default info; --debug means debug)")
    for flag, text in (
            ("--debug", "debug log: every converter frame in hex with its command"),
            ("--goodbye", "enable /essx/goodbye"),
            ("--simulate", "run against a simulated EZA2500 and battery on pseudo-terminals"),
            ("--check", "commissioning: check the configuration, open both ports, read the "
                        "converter and the battery once, print a report; exit 0 or 1"),
            ("--strict-config", "turn the configuration's warnings into errors")):
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--version", action="version",
                   version="essx-server %s (dcdc_batt_comm)" % package_version())
    return p.parse_args(argv)


def startup_line(system: System) -> str:
    """The INFO line logged at start: version, configuration, ports, baud rates, addresses."""
    dev, bat = system.config.dcdc_dev, system.config.battery_dev
    battery = "battery %s %d baud unit %d" % (system.battery_port, bat.kwparams.baudrate,
                                              bat.unit) if bat else "no battery"
    return "essx-server %s starting: configuration %s; converter %s %d baud AD1=%d AD2=%d " \
           "dir_pin=%s; %s; %s" % (package_version(), system.config.path, system.dcdc_port,
                                   dev.baudrate, dev.address1, dev.address2, system.dcdc_dir_pin,
                                   battery, "simulated devices" if system.simulate else "real devices")


def _serve(args: argparse.Namespace, system: System) -> None:
    """Serve until SIGINT/SIGTERM.  The ``/remote/ioctl/set`` reload validates
    as at start (same strictness); a changed device section is logged as
    needing a restart, the open ports stay as they are."""
    def reload() -> Any:
        config = essx_config.load_config(args.config, strict=args.strict_config)
        for where in essx_config.restart_needed(system.config, config):
            log.warning("configuration %s: %s changed; it takes effect at the next restart",
                        config.path, where)
        return config

    system.controller.link.configure(max_waiting=max_waiting(THREADS))
    # SIGINT too: a background job may start with it ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler)       # raises KeyboardInterrupt
    app = create_app(system.controller, reload_config=reload, config=system.config,
                     goodbye=(lambda: os.kill(os.getpid(), signal.SIGTERM)) if args.goodbye else None,
                     simulate=args.simulate)
    serve(app, args.host, args.port, threads=THREADS)


def main(argv: Optional[List[str]] = None) -> int:
    """Run essx-server; returns the exit status (see the module docstring).

    Args:
        argv: the arguments (None: ``sys.argv[1:]``).
    """
    args = parse_args(argv)
    logsetup.setup_logging(args.log_level, args.debug)
    args.config = args.config or resources.default_config_path()
    system = None
    try:
        config = essx_config.load_config(args.config, strict=args.strict_config)
        essx_config.log_warnings(config)
        if args.check:
            return run_check(config, simulate=args.simulate)
        system = System(config, simulate=args.simulate)
        log.info("%s", startup_line(system))
        system.start()
        _serve(args, system)
    except ESSXException as e:      # a bad file, StartupError, a dir_pin the port refuses
        log.error("%s", e)
        return EXIT_USAGE
    finally:
        if system is not None:
            system.close()
            log.info("stopped")
    return 0
