"""``essx-server --check`` (issue 10, point 3), run as a process against the
pty simulators."""
import re

import pytest

from conftest import run_server, write_config


def _pymodbus2_option(doc):
    doc["ess_system"]["battery_dev"][0]["kwparams"]["strict"] = True


def test_simulated_check_passes():
    status, out, err = run_server("--simulate", "--check")
    assert status == 0, out + err
    lines = out.splitlines()
    assert lines[0].endswith(": OK (0 warnings)")
    assert re.search(r"^converter: answering at AD1=0 AD2=16: mode 0x0000 \(Waiting\), "
                     r"vg \d+\.\d V, vb \d+\.\d V$", out, re.M), out
    assert "battery: RSOC 55.5 %, interchange permitted" in out
    assert lines[-1] == "check passed"


def test_check_reports_the_devices_as_they_are(tmp_path, devices):
    from eza2500 import table

    dcdc, battery = devices
    dcdc.set(mode=0x0041)
    battery.permitted = False
    config = write_config(tmp_path, dcdc.port, battery.port)
    status, out, err = run_server("--config", config, "--check")
    assert status == 0, out + err
    assert "converter port %s (19200 baud): open" % dcdc.port in out
    assert "mode 0x0041 (%s)" % table.mode_name(0x0041) in out
    assert "battery port %s (9600 baud, unit 1): open" % battery.port in out
    assert "interchange NOT permitted" in out
    assert [r.name for r in dcdc.received] == ["1-1", "10-1"]        # reads only


def test_absent_converter_fails_naming_the_port(tmp_path, devices):
    absent = str(tmp_path / "ttyNONE")
    config = write_config(tmp_path, absent, devices[1].port)
    status, out, err = run_server("--config", config, "--check")
    assert status == 1
    assert "FAILED: converter: serial port %s is absent" % absent in out
    assert "ess_system.dcdc_dev.params in the configuration" in out
    assert "battery: RSOC 55.5 %, interchange permitted" in out      # the battery is still checked
    assert out.splitlines()[-1] == "check failed: 1 problem"


def test_silent_converter_and_absent_battery(tmp_path, devices):
    dcdc = devices[0]
    dcdc.inject("silent", count=None)
    absent = str(tmp_path / "ttyNOBAT")
    config = write_config(tmp_path, dcdc.port, absent)
    status, out, err = run_server("--config", config, "--check")
    assert status == 1
    assert "FAILED: converter at AD1=0 AD2=16 on %s does not answer" % dcdc.port in out
    assert "FAILED: battery: serial port %s is absent" % absent in out
    assert "ess_system.battery_dev.kwparams.port" in out
    assert out.splitlines()[-1] == "check failed: 2 problems"


def test_warnings_are_printed_and_strict_refuses(tmp_path, devices):
    config = write_config(tmp_path, devices[0].port, devices[1].port, mutate=_pymodbus2_option)
    status, out, err = run_server("--config", config, "--check")
    assert status == 0, out + err
    assert ": OK (1 warning)" in out
    assert "  warning: " in out and "kwparams.strict" in out
    status, out, err = run_server("--config", config, "--check", "--strict-config")
    assert status == 2
    assert "Traceback" not in err
    assert "kwparams.strict" in err and "--strict-config" in err


@pytest.mark.parametrize("which", [0, 1])
def test_port_in_use_fails_the_check(tmp_path, devices, which):
    """A port held by another program (a running essx-server) is named."""
    from essx.essx_rs485 import ESSXRS485

    busy = devices[which].port
    holder = ESSXRS485(busy, 9600, exclusive=True, dir_pin="not_used")
    try:
        config = write_config(tmp_path, devices[0].port, devices[1].port)
        status, out, err = run_server("--config", config, "--check")
    finally:
        holder.close()
    assert status == 1
    assert "in use by another program" in out and busy in out, out
