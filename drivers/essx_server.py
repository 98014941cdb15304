#!/usr/bin/env python3
"""ESSXServer: the apis-dcdc_batt_comm Web API (spec 4.1, 5.1; web-api.md).

Every route is a GET answering 200 + JSON, or 400 + ``{"err": "..."}`` for any
failure.  The application is built by :func:`create_app` (tests use it without
a socket); :func:`main` reads the command line, checks the configuration,
opens the devices (or, with ``--simulate``, simulated ones on pseudo-terminals)
and serves with waitress until SIGINT/SIGTERM.
"""

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading

import bottle

from essx.essx_exception import ESSXConfigException, ESSXException, ESSXParameterException
from essx.web import SetCache, build_app  # noqa: F401 - SetCache: re-exported

log = logging.getLogger("essx_server")

COMM_INTERFACE_VERSION = "2.0"
DCDC_BATT_COMM_VERSION = "1.4"
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcdc_batt_comm.yml")
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


def create_app(controller, *, goodbye=None, reload_config=None, config=None, simulate=False):
    """Build the Bottle application (the routes are in ``essx.web``).

    Args:
        controller: an ``ESSXTypeOES`` (None only to list the routes); the
            application's recorder listens to ``controller.link`` and
            ``controller.bat_dev`` (when not None).
        goodbye: None to disable ``/essx/goodbye`` (404); else a callable run
            after its answer is sent (it should stop the server).
        reload_config: None, or a callable returning a new ``Config`` for
            ``/remote/ioctl/set`` (raises ``ESSXConfigException`` on a bad file).
        config: the ``Config`` the server runs with, shown by ``/essx/status``
            (path, baud rates); None when unknown.
        simulate: True when the devices are simulators (``/essx/status``, the
            live page's banner).
    Returns:
        bottle.Bottle; ``app.config["essx.recorder"]`` is its ``essx.observe.Recorder``.
    """
    return build_app(controller, goodbye=goodbye, reload_config=reload_config, config=config,
                     simulate=simulate, openapi_path=lambda: _installed_path(OPENAPI_PATH),
                     versions={"comm_interface_version": COMM_INTERFACE_VERSION,
                               "dcdc_batt_comm_version": DCDC_BATT_COMM_VERSION})


# -- start-up -----------------------------------------------------------------------

class System:
    """The opened devices and the controller built from a ``Config``.

    With ``simulate=True`` a simulated EZA2500 and battery are started on
    pseudo-terminals and the configuration's ports are replaced by theirs;
    everything else (ESSXRS485, ESSXModbusClient, EZA2500Device,
    BatteryEmulator) is the same as on real hardware.
    """

    def __init__(self, config, simulate=False, watch=True):
        from battery_emulator import BatteryEmulator
        from essx.essx_modbus import ESSXModbusClient
        from essx.essx_rs485 import ESSXRS485
        from essx.essx_type_oes import ESSXTypeOES
        from eza2500 import EZA2500Device

        self.simulators = []
        self.dcdc_sim = self.battery_sim = None
        dev = config.dcdc_dev
        port, baud = dev.port, dev.baudrate
        dcdc_kw = dict(dev.rs485, dir_pin=dev.dir_pin)
        bat = config.battery_dev
        bat_kw = dataclasses.asdict(bat.kwparams) if bat else None
        try:
            if simulate:
                from battery_emulator.simulator import BatterySimulator
                from eza2500.simulator import EZA2500Simulator

                sim = EZA2500Simulator(ad1=dev.address1, ad2=dev.address2, baudrate=baud)
                sim.start()
                self.simulators.append(sim)
                self.dcdc_sim = sim
                port, dcdc_kw["dir_pin"] = sim.port, "not_used"
                if bat:
                    bsim = BatterySimulator(unit=bat.unit, baudrate=bat.kwparams.baudrate)
                    bsim.start()
                    self.simulators.append(bsim)
                    self.battery_sim = bsim
                    bat_kw["port"], bat_kw["dir_pin"] = bsim.port, "not_used"
                log.info("simulated converter on %s, simulated battery on %s", port,
                         bat_kw["port"] if bat else "(none)")
            self.serial = ESSXRS485(port, baud, **dcdc_kw)
            dcdc = EZA2500Device(dev=self.serial, timeout=config.dcdc.timeout)
            self.modbus = None
            battery = None
            if bat:
                self.modbus = ESSXModbusClient(**bat_kw)
                battery = BatteryEmulator(dev=self.modbus, modbus_adr_rsoc=bat.modbus_adr_rsoc,
                                          modbus_adr_status=bat.modbus_adr_status, unit=bat.unit)
            self.controller = ESSXTypeOES(dcdc_dev=dcdc, bat_dev=battery, dcdc_config=config.dcdc,
                                          bat_config=config.battery, ad1=dev.address1,
                                          ad2=dev.address2, name=dev.name, watch=watch)
        except BaseException:
            self.close()
            raise

    def close(self):
        """Stop the watch thread, close the ports, stop the simulators."""
        controller = getattr(self, "controller", None)
        if controller is not None:
            controller.close()
        if getattr(self, "modbus", None) is not None:
            self.modbus.close()
        if getattr(self, "serial", None) is not None:
            self.serial.close()
        for sim in self.simulators:
            sim.stop()
        self.simulators = []


class WaitressServer(bottle.ServerAdapter):
    """Bottle's adapter for waitress, keeping the server so it can be closed."""

    def run(self, handler):
        import waitress

        self.server = waitress.create_server(handler, host=self.host, port=self.port, **self.options)
        log.info("serving on http://%s:%s", self.host, self.server.effective_port)
        self.server.run()


def parse_args(argv=None):
    """The command line of spec 5.1.2, plus ``--goodbye`` and ``--simulate``."""
    p = argparse.ArgumentParser(description="ESS Server: apis-dcdc_batt_comm Web API")
    p.add_argument("--host", default="localhost", help="address to listen on (default localhost)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--debug", action="store_true", help="debug log, every converter frame in hex")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="configuration file (default %(default)s)")
    p.add_argument("--goodbye", action="store_true", help="enable /essx/goodbye")
    p.add_argument("--simulate", action="store_true",
                   help="run against a simulated EZA2500 and battery on pseudo-terminals")
    return p.parse_args(argv)


def _installed_path(path):
    """*path* (beside essx_server.py) if it exists, else the copy a non-editable
    install put in ``<prefix>/share/dcdc_batt_comm/`` (setup.py's data_files)
    when that exists, else *path*."""
    if not os.path.exists(path):
        installed = os.path.join(sys.prefix, "share", "dcdc_batt_comm", os.path.basename(path))
        if os.path.exists(installed):
            return installed
    return path


def _default_config_path(path):
    """Beside essx_server.py, or where a non-editable install put the example."""
    if path == DEFAULT_CONFIG:
        return _installed_path(path)
    return path


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    """Run the server; returns the process exit code (0 after SIGINT/SIGTERM)."""
    from essx.essx_config import load_config

    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.debug:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    config_path = _default_config_path(args.config)
    try:
        config = load_config(config_path)
        system = System(config, simulate=args.simulate)
    except ESSXException as e:
        log.error("%s", e)
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):   # SIGINT too: a background job may start with it ignored
        signal.signal(signum, _raise_interrupt)
    app = create_app(system.controller,
                     goodbye=(lambda: os.kill(os.getpid(), signal.SIGTERM)) if args.goodbye else None,
                     reload_config=lambda: load_config(config_path))
    server = WaitressServer(host=args.host, port=args.port, threads=8)
    try:
        bottle.run(app, server=server, quiet=True)
    finally:
        system.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
