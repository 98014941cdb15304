"""``essx-server --check``: the commissioning report (README.md, Commissioning).

Checks the configuration, opens both ports, reads the converter once (1-1,
10-1) and the battery once (RSOC, status); writes nothing.
"""
import sys
from typing import Any, Callable, Optional, TextIO

from essx.essx_exception import ESSXException
from essx_service.startup import StartupError, System, open_port
from eza2500 import table


def check_converter(system: System, say: Callable[[str], None]) -> Optional[str]:
    """Open the converter's port, read 1-1 and 10-1; None or what failed."""
    dev = system.config.dcdc_dev
    try:
        open_port(system)
    except StartupError as e:
        return "converter: %s" % e
    say("converter port %s (%d baud): open" % (system.dcdc_port, dev.baudrate))
    try:
        mode = system.controller.link.transact("1-1")["mode"]
        meters = system.controller.link.transact("10-1")
    except ESSXException as e:
        return "converter at AD1=%d AD2=%d on %s does not answer: %s" % (
            dev.address1, dev.address2, system.dcdc_port, e)
    say("converter: answering at AD1=%d AD2=%d: mode 0x%04x (%s), vg %.1f V, vb %.1f V" % (
        dev.address1, dev.address2, mode, table.mode_name(mode), meters["vg"], meters["vb"]))
    return None


def check_battery(system: System, say: Callable[[str], None]) -> Optional[str]:
    """Open the battery's port, read RSOC and status; None or what failed."""
    bat, battery = system.config.battery_dev, system.controller.bat_dev
    if bat is None:
        say("battery: none configured (battery_dev class 'None')")
        return None
    try:
        open_port(system, battery=True)
    except StartupError as e:
        return "battery: %s" % e
    say("battery port %s (%d baud, unit %d): open" % (system.battery_port, bat.kwparams.baudrate, bat.unit))
    try:
        battery.remote_rsoc_and_status()
    except ESSXException as e:
        return "battery unit %d on %s does not answer: %s" % (bat.unit, system.battery_port, e)
    say("battery: RSOC %.1f %%, interchange %s" % (
        battery.read_rsoc(), "permitted" if battery.read_status() else "NOT permitted"))
    return None


def _plural(n: int, noun: str) -> str:
    return "%d %s%s" % (n, noun, "" if n == 1 else "s")


def run_check(config: Any, simulate: bool = False, out: TextIO = sys.stdout) -> int:
    """Print the commissioning report for *config*.

    Returns:
        0 when the converter and the battery answered, 1 otherwise (each
        failure named on a ``FAILED:`` line).
    Raises:
        ESSXConfigException: a device set-up that cannot work (dir_pin).
    """
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say("configuration %s: OK (%s)" % (config.path, _plural(len(config.warnings), "warning")))
    for warning in config.warnings:
        say("  warning: %s" % warning)
    system = System(config, simulate=simulate, watch=False)
    try:
        failures = [f for f in (check_converter(system, say), check_battery(system, say)) if f]
    finally:
        system.close()
    for failure in failures:
        say("FAILED: %s" % failure)
    say("check failed: %s" % _plural(len(failures), "problem") if failures else "check passed")
    return 1 if failures else 0
