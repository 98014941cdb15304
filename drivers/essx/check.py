"""``essx-server --check``: a commissioning report.

Checks the configuration (printing its warnings), opens both ports, reads
the converter once (1-1 operation mode, 10-1 meters, through the link) and
the battery once (RSOC and status), prints a short report, and returns 0
when everything answered, 1 naming what failed.  Nothing is written to the
converter.  Example (``--simulate``)::

    configuration /etc/dcdc_batt_comm/dcdc_batt_comm.yml: OK (0 warnings)
    converter port /dev/ttyO2 (19200 baud): open
    converter: answering at AD1=0 AD2=16: mode 0x0000 (Waiting), vg 380.0 V, vb 52.0 V
    battery port /dev/ttyO5 (9600 baud, unit 1): open
    battery: RSOC 55.5 %, interchange permitted
    check passed
"""
import sys
from typing import Any, Callable, List, Optional, TextIO

from essx.essx_exception import ESSXException
from essx.startup import System, port_problem


def _line(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        out.write(text + "\n")
        out.flush()
    return say


def _open_converter(system: System) -> Optional[str]:
    """Open the converter's port; None or what failed."""
    try:
        system.serial.open()
    except (OSError, ValueError) as e:
        return port_problem(system.dcdc_port, e) or absent(system.dcdc_port, "ess_system.dcdc_dev.params")
    return None


def absent(port: str, key: str) -> str:
    """The report's line for a serial device that does not exist."""
    return ("serial port %s is absent: check the cable or USB adapter (ls -l /dev/serial/by-id/) "
            "and %s in the configuration" % (port, key))


def check_converter(system: System, say: Callable[[str], None]) -> Optional[str]:
    """Open the converter's port, read 1-1 and 10-1; None or what failed."""
    from eza2500 import table

    dev = system.config.dcdc_dev
    problem = _open_converter(system)
    if problem:
        return "converter: " + problem
    say("converter port %s (%d baud): open" % (system.dcdc_port, dev.baudrate))
    link = system.controller.link
    try:
        mode = link.transact("1-1")["mode"]
        meters = link.transact("10-1")
    except ESSXException as e:
        return "converter at AD1=%d AD2=%d on %s does not answer: %s" % (
            dev.address1, dev.address2, system.dcdc_port, e)
    say("converter: answering at AD1=%d AD2=%d: mode 0x%04x (%s), vg %.1f V, vb %.1f V" % (
        dev.address1, dev.address2, mode, table.mode_name(mode), meters["vg"], meters["vb"]))
    return None


def check_battery(system: System, say: Callable[[str], None]) -> Optional[str]:
    """Open the battery's port, read RSOC and status; None or what failed."""
    bat = system.config.battery_dev
    if bat is None:
        say("battery: none configured (battery_dev class 'None')")
        return None
    where = "battery port %s (%d baud, unit %d)" % (system.battery_port, bat.kwparams.baudrate, bat.unit)
    if not system.modbus.connect():
        reason = system.modbus.last_connect_error or "cannot be opened"
        return "battery: " + (port_problem(system.battery_port, OSError(reason))
                              or absent(system.battery_port, "ess_system.battery_dev.kwparams.port"))
    say(where + ": open")
    battery = system.controller.bat_dev
    try:
        battery.remote_rsoc_and_status()
    except ESSXException as e:
        return "battery unit %d on %s does not answer: %s" % (bat.unit, system.battery_port, e)
    say("battery: RSOC %.1f %%, interchange %s" % (
        battery.read_rsoc(), "permitted" if battery.read_status() else "NOT permitted"))
    return None


def run_check(config: Any, simulate: bool = False, out: TextIO = sys.stdout) -> int:
    """Print the commissioning report for *config*.

    Returns:
        0 when the converter and the battery answered, 1 otherwise (the
        failures are named on the last line).
    Raises:
        ESSXConfigException: a device set-up that cannot work (dir_pin).
    """
    say = _line(out)
    say("configuration %s: OK (%d warning%s)" % (
        config.path, len(config.warnings), "" if len(config.warnings) == 1 else "s"))
    for warning in config.warnings:
        say("  warning: %s" % warning)
    system = System(config, simulate=simulate, watch=False)
    try:
        failures: List[str] = [f for f in (check_converter(system, say), check_battery(system, say)) if f]
    finally:
        system.close()
    for failure in failures:
        say("FAILED: %s" % failure)
    say("check passed" if not failures else "check failed: %d problem%s" % (
        len(failures), "" if len(failures) == 1 else "s"))
    return 1 if failures else 0
