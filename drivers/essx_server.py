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
import json
import logging
import os
import signal
import sys
import threading

import bottle

from essx.essx_exception import ESSXConfigException, ESSXException, ESSXParameterException
from essx.essx_type_oes import parse_mode, parse_number

log = logging.getLogger("essx_server")

COMM_INTERFACE_VERSION = "2.0"
DCDC_BATT_COMM_VERSION = "1.4"
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcdc_batt_comm.yml")
OPENAPI_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


class SetCache:
    """The "previous value" rule of the set routes (web-api.md).

    Holds the last ``mode`` (int), ``dvg`` (V), ``dig`` (A) and ``drg`` that a
    set call applied successfully; ``/essx/hello`` forgets them.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.values = {}

    def get(self, name, default=None):
        with self.lock:
            return self.values.get(name, default)

    def remember(self, **values):
        with self.lock:
            self.values.update(values)

    def forget(self):
        with self.lock:
            self.values.clear()


def _decoded(params, key):
    """The request's value of *key* as text.

    Bottle's ``getunicode`` answers None for a value that is not UTF-8, which
    the set routes would take for "absent" and replace with the previous
    value; such a value is kept instead (its bytes as ``\\xff`` escapes), so
    the parameter check refuses it and names it.
    """
    value = params.getunicode(key)
    if value is None:
        value = params.get(key, "").encode("latin-1", "backslashreplace").decode("utf-8", "backslashreplace")
    return value


def create_app(controller, *, goodbye=None, reload_config=None):
    """Build the Bottle application.

    Args:
        controller: an ``ESSXTypeOES``.
        goodbye: None to disable ``/essx/goodbye`` (404); else a callable run
            after its answer is sent (it should stop the server).
        reload_config: None, or a callable returning a new ``Config`` for
            ``/remote/ioctl/set`` (raises ``ESSXConfigException`` on a bad file).
    Returns:
        bottle.Bottle.
    """
    app = bottle.Bottle()
    cache = SetCache()
    app.config["essx.cache"] = cache

    def answer(fn):
        """Run *fn* and shape its result or failure as the reference does."""
        def handler():
            bottle.response.content_type = "application/json"
            params = bottle.request.params
            try:
                body = fn({k: _decoded(params, k) for k in params.keys()})
            except ESSXException as e:
                log.warning("%s: %s", bottle.request.path, e)
                bottle.response.status = 400
                return json.dumps({"err": str(e)})
            except Exception as e:   # a defect of ours: logged with its traceback, still JSON
                log.exception("%s failed", bottle.request.path)
                bottle.response.status = 400
                return json.dumps({"err": "internal error: %s: %s" % (type(e).__name__, e)})
            return json.dumps(body, default=float)  # Decimal set-up values, as the reference's JSON plugin
        return handler

    def route(*paths):
        def register(fn):
            for path in paths:
                app.route(path, "GET", answer(fn))
            return fn
        return register

    @route("/1/log/data")
    def log_data(params):
        return controller.log_data(params)

    @route("/battery/get")
    def battery_get(params):
        data = controller.log_data(params)
        return {k: data[k] for k in ("rsoc", "battery_operation_status")}

    @route("/remote/get")
    def remote_get(params):
        return controller.remote_get(params)

    @route("/dcdc/get")
    def dcdc_get(params):
        body = controller.remote_get(params)
        body.pop("powermeter", None)
        return body

    @route("/remote/get/status", "/dcdc/get/status")
    def remote_get_status(params):
        return controller.remote_get_status(params)

    def full_set(params):
        previous = {"mode": cache.get("mode"), "dvg": cache.get("dvg"), "dig": cache.get("dig"),
                    "drg": cache.get("drg", 0)}
        values = {}
        for name in ("mode", "dvg", "dig", "drg"):
            given = params.get(name)
            if given is None and previous[name] is None:
                raise ESSXParameterException("%s is missing and no previous value was set" % name)
            values[name] = given if given is not None else previous[name]
        values["mode"] = parse_mode(values["mode"])
        for name in ("dvg", "dig", "drg"):
            values[name] = parse_number(name, values[name])
        body = controller.remote_set(values)
        cache.remember(**values)
        return body

    def set_current(params):
        dig = parse_number("dig", params.get("dig"))
        body = controller.remote_set_current({"dig": dig})
        cache.remember(dig=dig)
        return body

    def set_voltage(params):
        dvg = parse_number("dvg", params.get("dvg"))
        given_drg = params.get("drg")
        drg = parse_number("drg", given_drg if given_drg is not None else cache.get("drg", 0))
        body = controller.remote_set_voltage({"dvg": dvg, "drg": drg})
        cache.remember(dvg=dvg, drg=drg)
        return body

    route("/remote/set")(full_set)
    route("/remote/set/current")(set_current)
    route("/remote/set/voltage")(set_voltage)

    @route("/dcdc/set")
    def dcdc_set(params):
        present = {name for name in ("mode", "dvg", "dig", "drg") if name in params}
        if present == {"dig"}:
            return set_current(params)
        if "dvg" in present and not present & {"dig", "mode"}:
            return set_voltage(params)
        return full_set(params)

    @route("/remote/ioctl/set")
    def ioctl_set(params):
        if reload_config is not None:
            config = reload_config()
            controller.update_config(config.dcdc, config.battery)
        return controller.remote_ioctl_set(params)

    @route("/remote/ioctl/get")
    def ioctl_get(params):
        return controller.remote_ioctl_get(params)

    @route("/all/get")
    def all_get(params):
        body = controller.remote_ioctl_get(params)
        keys = ("rsoc", "battery_operation_status", "meter", "param", "status", "vdis")
        return {k: body[k] for k in keys}

    @route("/remote/ioctl/clr_alarm")
    def clr_alarm(params):
        return controller.remote_ioctl_clr_alarm(params)

    @route("/version/get")
    def version_get(params):
        return {"comm_interface_version": COMM_INTERFACE_VERSION,
                "dcdc_batt_comm_version": DCDC_BATT_COMM_VERSION}

    @route("/essx/hello")
    def hello(params):
        cache.forget()
        return {"message": "hello world"}

    @route("/essx/goodbye")
    def goodbye_route(params):
        if goodbye is None:
            bottle.response.status = 404
            return {"err": "/essx/goodbye is disabled; start the server with --goodbye to enable it"}
        threading.Timer(0.2, goodbye).start()
        return {"message": "goodbye"}

    @route("/openapi.json")
    def openapi(params):
        path = _installed_path(OPENAPI_PATH)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ESSXConfigException("API document %s cannot be read: %s" % (path, e)) from e

    def json_error(error):
        bottle.response.content_type = "application/json"
        return json.dumps({"err": "%s: %s" % (error.status_line, bottle.request.path)})

    for code in (404, 405, 500):
        app.error(code)(json_error)
    return app


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
