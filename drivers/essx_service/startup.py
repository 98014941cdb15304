"""essx-server's devices (``System``) and their ports' first opening.

A port in use or not accessible is an operator's mistake (``StartupError``:
one line, exit status 2, which the unit does not restart); an absent port is
not fatal: the routes that need it answer 400 naming it until it appears.
"""
import dataclasses
import errno
import logging
from typing import Any, Optional

from battery_emulator import BatteryEmulator
from essx.essx_exception import ESSXException, ESSXIOException
from essx.essx_modbus import ESSXModbusClient
from essx.essx_rs485 import ESSXRS485
from essx.essx_type_oes import ESSXTypeOES
from eza2500 import EZA2500Device

log = logging.getLogger("essx_server")


class StartupError(ESSXException):
    """An operator's mistake found at start (exit status 2); one line."""


class PortAbsent(StartupError):
    """A serial device that does not exist (not fatal for the server)."""


class System:
    """The devices and the controller built from a ``Config``.

    The converter's ``ESSXRS485`` is built unopened and exclusive; its owner,
    the link, opens it (on demand, or at :meth:`start`).  ``simulate=True``
    serves a simulated EZA2500 and battery on ptys (``essx_sim.node``) in place
    of the configured ports.  Nothing runs until :meth:`start`.

    Attributes:
        config, simulate, watch, controller, serial (ESSXRS485), modbus
        (ESSXModbusClient or None), dcdc_sim, battery_sim (or None),
        dcdc_port, dcdc_dir_pin, battery_port (str or None): the ports in use.
    Raises:
        ESSXConfigException: a ``dir_pin`` that cannot work.
    """

    def __init__(self, config: Any, simulate: bool = False, watch: bool = True) -> None:
        self.config, self.simulate, self.watch = config, simulate, watch
        self.dcdc_sim = self.battery_sim = self.controller = self.serial = self.modbus = None
        dev, bat = config.dcdc_dev, config.battery_dev
        try:
            if simulate:
                dev, bat = self._simulate(dev, bat)
            self.dcdc_port, self.dcdc_dir_pin = dev.port, dev.dir_pin
            self.battery_port = bat.kwparams.port if bat else None
            self._build(dev, bat)
        except BaseException:
            self.close()
            raise

    def _simulate(self, dev: Any, bat: Any) -> tuple:
        """Start the simulators; returns *dev* and *bat* on their ptys.  The
        simulation is imported here, for ``--simulate`` only: a node's server
        does not carry the simulators and pymodbus's server (about 1.2 MB)."""
        from essx_sim.node import start_simulated_node  # optional part: tests/test_layout.py

        self.dcdc_sim, self.battery_sim = start_simulated_node(
            dev.address1, dev.address2, dev.baudrate, bat.unit if bat else None,
            bat.kwparams.baudrate if bat else 9600)
        dev = dataclasses.replace(dev, port=self.dcdc_sim.port, dir_pin="not_used")
        if self.battery_sim is not None:
            kw = dataclasses.replace(bat.kwparams, port=self.battery_sim.port, dir_pin="not_used")
            bat = dataclasses.replace(bat, kwparams=kw)
        return dev, bat

    def _build(self, dev: Any, bat: Any) -> None:
        self.serial = ESSXRS485(None, dev.baudrate, exclusive=True, dir_pin=dev.dir_pin, **dev.rs485)
        self.serial.port = dev.port       # set while closed: nothing is opened yet
        battery = None
        if bat:
            self.modbus = ESSXModbusClient(**dataclasses.asdict(bat.kwparams))
            battery = BatteryEmulator(dev=self.modbus, modbus_adr_rsoc=bat.modbus_adr_rsoc,
                                      modbus_adr_status=bat.modbus_adr_status, unit=bat.unit)
        self.controller = ESSXTypeOES(
            dcdc_dev=EZA2500Device(dev=self.serial, timeout=self.config.dcdc.timeout), bat_dev=battery,
            dcdc_config=self.config.dcdc, bat_config=self.config.battery, ad1=dev.address1,
            ad2=dev.address2, name=dev.name, watch=False)

    def start(self) -> "System":
        """Open both ports through their owners (:func:`open_ports`), then start
        the battery watch (``watch``): start-up ends before the watch begins.

        Raises:
            StartupError: a port is in use, not accessible or unusable.
            ESSXConfigException: the port refuses the configured ``dir_pin``.
        """
        open_ports(self)
        if self.watch:
            self.controller.start_watch()
        return self

    def close(self) -> None:
        """Stop the watch thread, close the ports, stop the simulators."""
        for part in (self.controller, self.modbus, self.serial):
            if part is not None:
                part.close()
        for sim in (self.dcdc_sim, self.battery_sim):
            if sim is not None:
                sim.stop()
        self.dcdc_sim = self.battery_sim = None


def port_problem(port: str, exc: BaseException) -> Optional[str]:
    """What an operator must fix when *port* failed to open with *exc* (one
    line); None when the port is merely absent."""
    code, text = getattr(exc, "errno", None), str(exc)
    if code in (errno.EAGAIN, errno.EBUSY) or "in use" in text or "exclusively lock" in text:
        return ("serial port %s is in use by another program (a second essx-server?): "
                "stop it, or give this one another port in the configuration" % port)
    if code == errno.EACCES or "Permission denied" in text:
        return ("serial port %s: permission denied: add the service user to the port's "
                "group (ls -l %s; usually dialout)" % (port, port))
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
        return None
    return "serial port %s cannot be opened: %s" % (port, text)


def open_port(system: System, battery: bool = False) -> None:
    """Open the converter's (or the battery's) port now, through its owner (the
    link; the Modbus client), never a second time.

    Raises:
        PortAbsent: the device does not exist (the line names the key to check).
        StartupError: the port is in use, not accessible or unusable.
        ESSXConfigException: the port refuses the configured ``dir_pin``.
    """
    port, key = system.dcdc_port, "ess_system.dcdc_dev.params"
    if battery:
        port, key = system.battery_port, "ess_system.battery_dev.kwparams.port"
        if system.modbus.connect():
            return
        exc: BaseException = OSError(system.modbus.last_connect_error or "cannot be opened")
    else:
        try:
            return system.controller.link.open()
        except ESSXIOException as e:
            exc = e.__cause__ or e
    problem = port_problem(port, exc)
    if problem:
        raise StartupError(problem)
    raise PortAbsent("serial port %s is absent: check the cable or USB adapter (ls -l "
                     "/dev/serial/by-id/) and %s in the configuration" % (port, key))


def open_ports(system: System) -> None:
    """Open both ports once at start; an absent one is logged, not fatal.

    Raises:
        StartupError: a port is in use, not accessible or unusable.
    """
    for battery in (False, True) if system.modbus is not None else (False,):
        try:
            open_port(system, battery)
        except PortAbsent:
            pass        # the port's owner logged it (once per change) and opens it when it appears
