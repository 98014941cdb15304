"""A node configured with no battery (``class: 'None'``), as the reference (issue 9 point 4).

The battery routes -- and the battery half of /remote/ioctl/get and /all/get
-- answer 400 "no battery configured" without touching the converter; the
converter routes work; with ``force_dcdc_waiting`` the watch puts the
converter in Waiting at start and at every check.
"""
import time
from dataclasses import replace
from typing import Iterator

import pytest

from conftest import HTTPClient, ServerThread, commands, fast_config, with_settings, writes


@pytest.fixture
def bare(no_leaks) -> Iterator[HTTPClient]:
    """An HTTP client of a server whose configuration has no battery (``client.system``)."""
    from essx_server import System, create_app

    system = System(replace(fast_config(), battery_dev=None), simulate=True, watch=False)
    server = ServerThread(create_app(system.controller))
    server.client.system = system
    try:
        yield server.client
    finally:
        server.stop()
        system.close()


@pytest.mark.parametrize("path", ["/1/log/data", "/battery/get", "/remote/ioctl/get", "/all/get"])
def test_battery_routes_answer_no_battery_configured(bare, path):
    sim = bare.system.dcdc_sim
    assert bare.system.battery_sim is None and bare.system.controller.bat_dev is None
    sim.clear()
    assert bare.get(path) == (400, {"err": "no battery configured"})
    assert commands(sim) == []


def test_converter_routes_work_without_a_battery(bare):
    status, body = bare.get("/remote/get/status")
    assert status == 200 and body["status"]["operationMode"] == "Waiting"
    status, body = bare.get("/remote/set", mode="0x0014", dvg=350, dig=1, drg=0)
    assert status == 200 and body["status"]["operationMode"] == "Grid Autonomy"


def test_check_forces_waiting_without_a_battery(bare):
    controller, sim = bare.system.controller, bare.system.dcdc_sim
    sim.set(mode=0x0014)
    sim.clear()
    assert controller.check_and_wait() is False          # force_dcdc_waiting is off
    assert commands(sim) == []
    controller.update_config(controller.dcdc_config, replace(controller.bat_config, force_dcdc_waiting=True))
    for _ in range(2):                                   # at every check
        assert controller.check_and_wait() is True
    assert writes(sim) == ["1-4", "1-4"] and sim.state["mode"] == 0


def wait_until(predicate, limit: float = 5.0) -> bool:
    """Poll *predicate* every 0.05 s for at most *limit* s; its last value."""
    deadline = time.monotonic() + limit
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_watch_forces_waiting_at_start(no_leaks):
    """The first check runs when the watch starts, not one check_interval later."""
    from essx.essx_type_oes import ESSXTypeOES
    from essx_server import System

    config = with_settings(replace(fast_config(), battery_dev=None),
                           battery={"force_dcdc_waiting": True, "check_interval": 60})
    system = System(config, simulate=True, watch=False)
    try:
        sim = system.dcdc_sim
        sim.set(mode=0x0014)
        sim.clear()
        controller = ESSXTypeOES(system.controller.dcdc_dev, None, config.dcdc, config.battery,
                                 config.dcdc_dev.address1, config.dcdc_dev.address2, "dcdc1", watch=True)
        try:
            assert wait_until(lambda: sim.state["mode"] == 0)
            assert writes(sim) == ["1-4"] and controller.watching
        finally:
            controller.close()
        assert not controller.watching
    finally:
        system.close()
