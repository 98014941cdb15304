"""ESSXTypeOES beside the routes: the spec's vrfy/run, reload of every setting, the public hooks."""
import time
from dataclasses import replace

import pytest

import eza2500
from conftest import commands
from essx.essx_exception import ESSXDeviceException, ESSXValueException


def test_vrfy_encodes_without_sending_and_run_sends_once(system):
    controller, sim = system.controller, system.dcdc_sim
    sim.clear()
    cmd = eza2500.Command0404(controller.dcdc_dev)
    frame = controller.vrfy(cmd, {"dvg": 300, "drg": 0.1})
    assert frame == bytes.fromhex("05 04 00 10 1a 86 32 33 03 18 01")
    with pytest.raises(ESSXValueException, match="dvg=1000"):
        controller.vrfy(cmd, {"dvg": 1000, "drg": 0})
    assert sim.received == []
    assert controller.run(cmd, {"dvg": 300, "drg": 0.1}) == cmd.response
    assert [r.raw for r in sim.received] == [frame]
    sim.inject("nak", ercd=0xFFFE)
    with pytest.raises(ESSXDeviceException):
        controller.run(cmd, {"dvg": 300, "drg": 0.1})
    assert cmd.response == {"ercd": 0xFFFE}


def test_update_config_applies_every_setting(system):
    controller = system.controller
    new = replace(controller.dcdc_config, number_of_timeout_retry=5, number_of_dcdc_error_retry=6,
                  wait_for_retry=0.2, command_interval=0.03, timeout=0.4, line_wait=2.5,
                  config=dict(controller.dcdc_config.config, cvb=55.0))
    controller.update_config(new, controller.bat_config)
    link = controller.link
    settings = link.settings
    assert (settings.number_of_timeout_retry, settings.number_of_dcdc_error_retry, settings.wait_for_retry,
            settings.command_interval, settings.line_wait, link.device.timeout) == (5, 6, 0.2, 0.03, 2.5, 0.4)
    assert controller.dcdc_config.config["cvb"] == 55.0


def test_reloaded_timeout_takes_effect(system):
    """A reply 0.25 s late fails with the shipped 0.1 s timeout and is taken after a reload to 0.5 s."""
    controller, sim = system.controller, system.dcdc_sim
    controller.update_config(replace(controller.dcdc_config, number_of_timeout_retry=0),
                             controller.bat_config)
    sim.inject("delay", None, seconds=0.25)
    try:
        with pytest.raises(Exception, match="no complete reply"):
            controller.remote_get_status()
        controller.update_config(replace(controller.dcdc_config, timeout=0.5), controller.bat_config)
        time.sleep(0.3)                  # the late reply to the failed 1-1 has left the line
        sim.clear()
        assert controller.remote_get_status()["status"]["operationMode"] == "Waiting"
        assert commands(sim) == ["1-1", "2-1", "10-1"]
    finally:
        sim.clear_faults()


def test_public_hooks(system):
    controller = system.controller
    assert controller.watching is False                  # the fixture starts no watch thread
    assert controller.link.port == system.dcdc_sim.port
    assert controller.link.mode is None
    controller.remote_get_status()
    assert controller.link.mode == 0 and controller.link.is_open
