"""essx.devices: the real classes (EZA2500Device, EZA2500Link, BatteryEmulator) have every
member of the Protocols the controller states, with the same parameters, so a renamed
member fails here rather than at a route's first call; and the controller's devices are them."""
import inspect
from typing import List

import pytest
from conftest import protocol_members

from battery_emulator import BatteryEmulator
from essx.devices import Battery, BusOwner, ConverterLine, ConverterPort
from essx.exchange import Listeners
from eza2500 import EZA2500Device, EZA2500Link

#: Protocol -> the class the controller is given or makes.
REAL = {ConverterPort: EZA2500Device, ConverterLine: EZA2500Link, Battery: BatteryEmulator}


def parameters(fn) -> List[tuple]:
    """(name, kind) of a function's parameters but self; ``**kw`` by kind alone."""
    return [("**" if p.kind is p.VAR_KEYWORD else p.name, p.kind)
            for p in list(inspect.signature(fn).parameters.values())[1:]]


def mismatches(protocol: type, cls: type) -> List[str]:
    """How ``cls`` differs from ``protocol``: a method it lacks or whose parameters
    differ, a property that is a method, ... (data members are checked on instances)."""
    found = []
    for name in sorted(protocol_members(protocol)):
        stated = inspect.getattr_static(protocol, name, None)
        real = inspect.getattr_static(cls, name, None)
        if inspect.isfunction(stated):
            if not inspect.isfunction(real):
                found.append("%s.%s is no method" % (cls.__name__, name))
            elif parameters(real) != parameters(stated):
                found.append("%s.%s%s differs from %s" % (cls.__name__, name, inspect.signature(real),
                                                          inspect.signature(stated)))
        elif isinstance(stated, property) and inspect.isfunction(real):
            found.append("%s.%s is a method, not a property" % (cls.__name__, name))
    return found


def test_the_protocols_state_these_members():
    assert protocol_members(BusOwner) == {"listeners", "port", "is_open"}
    assert protocol_members(ConverterPort) == {"timeout", "port", "is_open", "ensure_open", "write", "read_some",
                                      "in_waiting"}
    assert protocol_members(ConverterLine) == protocol_members(BusOwner) | {"mode", "request", "transact", "sequence",
                                                          "configure", "open"}
    assert protocol_members(Battery) == protocol_members(BusOwner) | {"last_error", "check_battery", "remote_rsoc_and_status",
                                                    "read_rsoc", "read_status"}


@pytest.mark.parametrize("protocol", list(REAL), ids=lambda p: p.__name__)
def test_each_real_class_has_the_members_and_parameters(protocol):
    assert mismatches(protocol, REAL[protocol]) == []


def test_the_controllers_devices_are_instances_of_the_protocols(system):
    controller = system.controller
    assert isinstance(controller.dcdc_dev, ConverterPort)
    assert isinstance(controller.link, ConverterLine) and isinstance(controller.link, BusOwner)
    assert isinstance(controller.bat_dev, Battery) and isinstance(controller.bat_dev, BusOwner)
    assert not isinstance(controller.bat_dev, ConverterLine)
    assert not isinstance(controller.link, Battery)


class RenamedBattery:
    """A battery whose check_battery was renamed and whose read_rsoc takes a parameter more."""

    listeners, port, is_open, last_error = Listeners(), "/dev/null", True, ""

    def check(self):
        return 0.0, 0, -1

    def remote_rsoc_and_status(self):
        pass

    def read_rsoc(self, raw):
        return raw / 10.0

    def read_status(self):
        return 0


def test_a_renamed_member_or_a_changed_signature_is_found():
    assert not isinstance(RenamedBattery(), Battery)
    assert mismatches(Battery, RenamedBattery) == [
        "RenamedBattery.check_battery is no method",
        "RenamedBattery.read_rsoc(self, raw) differs from (self) -> float",
    ]
