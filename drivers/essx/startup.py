"""essx-server's start-up: the devices (``System``), the ports' first
opening, the HTTP server, and ``main``.

An operator's mistake ends in one line on stderr and exit status 2 (the
unit's ``RestartPreventExitStatus=2`` keeps systemd from looping on it):
a bad ``--port`` or ``--host``, a port already in use, an unreadable or
invalid configuration, a serial port in use by another program or not
accessible.  A serial port that is absent at start is not fatal: the server
starts, the routes that need it answer 400 naming it, and the port is
opened as soon as it appears (the converter's link and the battery client
open on demand).
"""
import dataclasses
import errno
import logging
from typing import Any, List, Optional

from essx.essx_exception import ESSXException

log = logging.getLogger("essx_server")

#: Exit status of an operator's mistake (bad option, file, port).
EXIT_USAGE = 2
#: waitress worker threads.
THREADS = 8
#: Threads kept free of callers waiting for the converter's line, so that
#: /version/get, the battery routes and the observation routes always find
#: one: the link refuses at once a caller that finds ``THREADS - 1 -
#: RESERVED_THREADS`` others already waiting (one more holds the line).
RESERVED_THREADS = 3
#: waitress connection limits: idle and half-open connections cost a socket,
#: not a thread, and are closed after ``CHANNEL_TIMEOUT`` s of silence.
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 30
#: Open files wanted for CONNECTION_LIMIT sockets plus the process's own.
NOFILE_WANTED = 4096


class StartupError(ESSXException):
    """An operator's mistake found at start (exit status 2); one line."""


def max_waiting(threads: int = THREADS) -> int:
    """How many callers may wait for the converter's line (``max_waiting``
    of ``EZA2500Link``) with *threads* waitress threads."""
    return max(1, threads - 1 - RESERVED_THREADS)


def package_version() -> str:
    """The installed distribution's version ("1.4.0"), or "unknown" when
    running from a source tree that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("dcdc_batt_comm")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- devices -------------------------------------------------------------------------

class System:
    """The devices and the controller built from a ``Config``.

    The converter's ``ESSXRS485`` is built unopened, exclusive (a second
    program cannot open it while we hold it); the link opens it on demand,
    and :func:`open_ports` tries once at start.  With ``simulate=True`` a
    simulated EZA2500 and battery serve on pseudo-terminals and replace the
    configuration's ports; everything else is as on real hardware.

    Attributes:
        config, simulate, controller, serial (ESSXRS485), modbus
        (ESSXModbusClient or None), dcdc_sim, battery_sim (simulators or None),
        dcdc_port, battery_port (str, the ports in use).
    Raises:
        ESSXConfigException: a ``dir_pin`` that cannot work (GPIO module
            missing, unknown form).
    """

    def __init__(self, config: Any, simulate: bool = False, watch: bool = True) -> None:
        self.config, self.simulate = config, simulate
        self.simulators: List[Any] = []
        self.dcdc_sim = self.battery_sim = None
        self.controller = self.serial = self.modbus = None
        dev, bat = config.dcdc_dev, config.battery_dev
        dcdc_kw = dict(dev.rs485, dir_pin=dev.dir_pin)
        bat_kw = dataclasses.asdict(bat.kwparams) if bat else None
        self.dcdc_port = dev.port
        self.dcdc_dir_pin = dev.dir_pin
        self.battery_port = bat.kwparams.port if bat else None
        try:
            if simulate:
                self._simulate(dcdc_kw, bat_kw)
            self._build(dcdc_kw, bat_kw, watch)
        except BaseException:
            self.close()
            raise

    def _simulate(self, dcdc_kw: dict, bat_kw: Optional[dict]) -> None:
        """Start the simulators (one node alone on its bus, with battery
        physics: essx.simnode); point the keyword arguments at their ptys."""
        from essx.simnode import start_simulated_node

        dev, bat = self.config.dcdc_dev, self.config.battery_dev
        sim, bsim = start_simulated_node(dev.address1, dev.address2, dev.baudrate,
                                         bat.unit if bat else None,
                                         bat.kwparams.baudrate if bat else 9600)
        self.simulators += [s for s in (sim, bsim) if s is not None]
        self.dcdc_sim, self.battery_sim = sim, bsim
        self.dcdc_port = sim.port
        self.dcdc_dir_pin = dcdc_kw["dir_pin"] = "not_used"
        if bsim is not None:
            self.battery_port = bat_kw["port"] = bsim.port
            bat_kw["dir_pin"] = "not_used"

    def _build(self, dcdc_kw: dict, bat_kw: Optional[dict], watch: bool) -> None:
        """The serial port (unopened), the Modbus client, the controller."""
        from battery_emulator import BatteryEmulator
        from essx.essx_rs485 import ESSXRS485
        from essx.essx_type_oes import ESSXTypeOES
        from eza2500 import EZA2500Device

        config, dev, bat = self.config, self.config.dcdc_dev, self.config.battery_dev
        self.serial = ESSXRS485(None, dev.baudrate, exclusive=True, **dcdc_kw)
        self.serial.port = self.dcdc_port       # set while closed: nothing is opened yet
        dcdc = EZA2500Device(dev=self.serial, timeout=config.dcdc.timeout)
        battery = None
        if bat:
            from essx.essx_modbus import ESSXModbusClient

            self.modbus = ESSXModbusClient(**bat_kw)
            battery = BatteryEmulator(dev=self.modbus, modbus_adr_rsoc=bat.modbus_adr_rsoc,
                                      modbus_adr_status=bat.modbus_adr_status, unit=bat.unit)
        self.controller = ESSXTypeOES(dcdc_dev=dcdc, bat_dev=battery, dcdc_config=config.dcdc,
                                      bat_config=config.battery, ad1=dev.address1,
                                      ad2=dev.address2, name=dev.name, watch=watch)

    def close(self) -> None:
        """Stop the watch thread, close the ports, stop the simulators."""
        if self.controller is not None:
            self.controller.close()
        if self.modbus is not None:
            self.modbus.close()
        if self.serial is not None:
            self.serial.close()
        for sim in self.simulators:
            sim.stop()
        self.simulators = []


# -- the ports' first opening ------------------------------------------------------

def port_problem(port: str, exc: BaseException) -> Optional[str]:
    """What an operator must fix when *port* failed to open with *exc*, as
    one line; None when the port is merely absent (not fatal: it is opened
    when it appears)."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "in use" in text \
            or "exclusively lock" in text:
        return ("serial port %s is in use by another program (a second essx-server?): "
                "stop it, or give this one another port in the configuration" % port)
    if code == errno.EACCES or "Permission denied" in text:
        return ("serial port %s: permission denied: add the service user to the port's "
                "group (ls -l %s; usually dialout)" % (port, port))
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
        return None
    return "serial port %s cannot be opened: %s" % (port, text)


def open_ports(system: System) -> None:
    """Open both ports once at start.

    Raises:
        StartupError: a port is in use, not accessible or unusable.
    """
    try:
        system.serial.open()
    except (OSError, ValueError) as e:      # serial.SerialException is an OSError
        problem = port_problem(system.dcdc_port, e)
        if problem:
            raise StartupError(problem) from None
        log.warning("converter port %s is absent; the server starts and opens it when it "
                    "appears (routes that need it answer 400 until then)", system.dcdc_port)
    if system.modbus is not None and not system.modbus.connect():
        reason = system.modbus.last_connect_error or "cannot open"
        problem = port_problem(system.battery_port, OSError(reason))
        if problem:
            raise StartupError(problem)
        # essx_modbus logs the absent port itself, once per change.
