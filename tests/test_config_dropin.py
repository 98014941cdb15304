"""Configuration files the reference starts with start this driver too, with the same effect.

The corpus: the reference's shipped file (Raspberry Pi form: /dev/ttyUSB0,
dir_pin not_used) and the variants that operators' files have, each with
the warnings this driver must give once (key path and what happens).
"""
import decimal
from pathlib import Path

import pytest
import yaml

from essx import essx_config
from essx.essx_config import load_config, parse_config
from essx.essx_exception import ESSXConfigException

REFERENCE_FILE = """\
ess_system:
  type: essx_type_oes
  dcdc_dev:
    -
      name: dcdc1
      config: dcdc_default_eza2500
      class: 'ESSXRS485'
      params: ["/dev/ttyUSB0", 19200]
      kwparams:
        dir_pin: "not_used"
      address1:  0
      address2: 16
  battery_dev:
    -
      name: battery
      config: battery_emulator
      class: 'ESSXModbus'
      params: []
      kwparams:
        method: 'rtu'
        port: "/dev/ttyUSB1"
        timeout: 1
        baudrate: 9600
        dir_pin: "not_used"
      unit: 1
      modbus_adr_rsoc: 30030
      modbus_adr_status: 30031
dcdc:
  dcdc_default_eza2500:
    type: tdk_eza2500
    number_of_dcdc_error_retry: 3
    number_of_timeout_retry: 3
    wait_for_retry: 0.1
    config:
      cib: 52
      ubv: 40
      obv: 59
      ugv: 300
      ogv: 400
      bcf: 0x0003
      cvb: 57.6
      dlb: 49
      cdb: 1.2
      ddb: 1.8
      drb: 0.00
battery:
  battery_emulator:
    type: battery_emulator
    config:
      battery_voltage: 52.0
      battery_current: 20.0
      force_dcdc_waiting: No
"""


def reference_doc():
    return yaml.safe_load(REFERENCE_FILE)


def dcdc_section(doc):
    return doc["dcdc"]["dcdc_default_eza2500"]


def battery_kwparams(doc):
    return doc["ess_system"]["battery_dev"][0]["kwparams"]


def test_the_reference_file_loads_as_the_reference_reads_it(tmp_path):
    path = tmp_path / "dcdc_batt_comm.yml"
    path.write_text(REFERENCE_FILE)
    config = load_config(str(path))
    assert config.warnings == ()
    dev = config.dcdc_dev
    assert (dev.port, dev.baudrate, dev.dir_pin, dev.address1, dev.address2) == ("/dev/ttyUSB0", 19200,
                                                                                "not_used", 0, 16)
    assert config.battery_dev.kwparams.port == "/dev/ttyUSB1"
    assert config.battery_dev.kwparams.timeout == 1.0
    assert (config.battery_dev.modbus_adr_rsoc, config.battery_dev.modbus_adr_status) == (30030, 30031)
    assert config.dcdc.number_of_dcdc_error_retry == 3
    assert config.dcdc.wait_for_retry == 0.1
    assert config.dcdc.config == {"cib": 52, "ubv": 40, "obv": 59, "ugv": 300, "ogv": 400, "bcf": 3,
                                  "cvb": 57.6, "dlb": 49, "cdb": 1.2, "ddb": 1.8, "drb": 0.0}
    assert config.battery.force_dcdc_waiting is False


def warnings_of(doc, **kw):
    return parse_config(doc, "node.yml", **kw).warnings


def test_an_extra_set_up_key_is_ignored_with_a_warning():
    doc = reference_doc()
    dcdc_section(doc)["config"]["lbd"] = 45.8
    config = parse_config(doc, "node.yml")
    assert "lbd" not in config.dcdc.config
    assert config.warnings == ("configuration node.yml: dcdc.dcdc_default_eza2500.config.lbd: "
                               "unknown key this driver does not use; ignored",)


def test_pymodbus2_keywords_are_ignored_with_a_warning():
    doc = reference_doc()
    battery_kwparams(doc).update(strict=False, retry_on_empty=True)
    warnings = warnings_of(doc)
    assert len(warnings) == 2
    for key in ("strict", "retry_on_empty"):
        assert any("ess_system.battery_dev.kwparams.%s: a pymodbus 2.x option" % key in w for w in warnings)


def test_the_five_element_params_are_taken_as_serial_settings():
    doc = reference_doc()
    doc["ess_system"]["dcdc_dev"][0]["params"] = ["/dev/ttyO2", 19200, 8, "N", 1]
    config = parse_config(doc, "node.yml")
    assert config.warnings == ()
    assert (config.dcdc_dev.port, config.dcdc_dev.baudrate) == ("/dev/ttyO2", 19200)
    assert config.dcdc_dev.rs485 == {"bytesize": 8, "parity": "N", "stopbits": 1}


def test_integral_float_counts_and_numbers_in_strings_are_coerced_like_the_reference():
    doc = reference_doc()
    sec = dcdc_section(doc)
    sec["number_of_dcdc_error_retry"] = 3.0
    sec["number_of_timeout_retry"] = "2"
    sec["config"]["cib"] = "52"
    sec["config"]["bcf"] = "0x0003"
    config = parse_config(doc, "node.yml")
    assert config.warnings == ()
    assert config.dcdc.number_of_dcdc_error_retry == 3
    assert config.dcdc.number_of_timeout_retry == 2
    assert config.dcdc.config["cib"] == decimal.Decimal("52")   # Decimal(str), as the reference encodes it
    assert config.dcdc.config["bcf"] == 3


def test_a_near_miss_says_did_you_mean_and_acts_as_the_reference():
    doc = reference_doc()
    doc["battery"]["battery_emulator"]["config"]["force_dcdc_wating"] = True
    config = parse_config(doc, "node.yml")
    assert config.battery.force_dcdc_waiting is False     # the reference ignores the misspelt key too
    assert config.warnings == ("configuration node.yml: "
                               "battery.battery_emulator.config.force_dcdc_wating: "
                               "did you mean force_dcdc_waiting? "
                               "unknown key this driver does not use; ignored",)


def test_wait_retry_is_read_as_seconds_with_a_warning():
    doc = reference_doc()
    sec = dcdc_section(doc)
    sec["wait_retry"] = sec.pop("wait_for_retry")
    sec["wait_retry"] = 0.25
    config = parse_config(doc, "node.yml")
    assert config.dcdc.wait_for_retry == 0.25
    assert len(config.warnings) == 1 and "wait_retry: read as wait_for_retry" in config.warnings[0]


def test_a_quoted_boolean_is_read_as_no_like_the_reference():
    doc = reference_doc()
    doc["battery"]["battery_emulator"]["config"]["force_dcdc_waiting"] = "yes"
    config = parse_config(doc, "node.yml")
    assert config.battery.force_dcdc_waiting is False
    assert "force_dcdc_waiting: 'yes' is not a YAML boolean; read as No" in config.warnings[0]


def test_strict_config_turns_the_first_warning_into_an_error():
    doc = reference_doc()
    dcdc_section(doc)["config"]["lbd"] = 45.8
    with pytest.raises(ESSXConfigException) as e:
        parse_config(doc, "node.yml", strict=True)
    assert "config.lbd" in str(e.value) and "--strict-config" in str(e.value)


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d["ess_system"]["battery_dev"][0].update(unit=0),
     "ess_system.battery_dev.unit=0: out of range: expected 1 to 247"),
    (lambda d: d["ess_system"]["dcdc_dev"][0].update(address1=256),
     "ess_system.dcdc_dev.address1=256: out of range: expected 0 to 255"),
    (lambda d: d["ess_system"]["dcdc_dev"][0].update(params=["/dev/ttyO2", 19200, 8, "X", 1]),
     "ess_system.dcdc_dev.params[3]='X': expected one of N, E, O, M, S"),
    (lambda d: battery_kwparams(d).update(timeout=0),
     "ess_system.battery_dev.kwparams.timeout=0: out of range"),
    (lambda d: battery_kwparams(d).pop("port"), "ess_system.battery_dev.kwparams.port is missing"),
    (lambda d: d["ess_system"]["battery_dev"][0].update(modbus_adr_rsoc=29),
     "ess_system.battery_dev.modbus_adr_rsoc=29: out of range: expected 30001 to 39999"),
])
def test_values_that_cannot_work_stop_the_start_naming_the_key(mutate, fragment):
    doc = reference_doc()
    mutate(doc)
    with pytest.raises(ESSXConfigException) as e:
        parse_config(doc, "node.yml")
    assert str(e.value).startswith("configuration node.yml: ")
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_utf8_is_one_line_naming_the_file(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes(REFERENCE_FILE.replace("name: dcdc1", "name: d\xe9cdc1").encode("latin-1"))
    with pytest.raises(ESSXConfigException) as e:
        load_config(str(path))
    assert str(e.value) == ("configuration %s is not UTF-8 text (byte 0xe9 at offset %d): save it as UTF-8"
                            % (path, REFERENCE_FILE.index("dcdc1") + 1))


def test_the_shipped_file_has_no_warnings():
    from conftest import DEFAULT_CONFIG

    assert load_config(DEFAULT_CONFIG).warnings == ()


def test_a_reference_file_starts_the_server_stack(tmp_path):
    """The reference's file, its ports replaced by the simulators', serves /remote/get and /1/log/data."""
    from conftest import ServerThread, with_settings
    from essx_server import System, create_app

    doc = reference_doc()
    sec = dcdc_section(doc)
    sec["number_of_dcdc_error_retry"] = 3.0
    sec["config"].update(cib="52.08", lbd=45.8)
    path = tmp_path / "dcdc_batt_comm.yml"
    path.write_text(yaml.safe_dump(doc))
    config = load_config(str(path))
    assert len(config.warnings) == 1
    system = System(with_settings(config, dcdc={"command_interval": 0.0}), simulate=True, watch=False)
    server = ServerThread(create_app(system.controller))
    try:
        status, body = server.client.get("/remote/get")
        assert status == 200, body
        assert body["param"]["cib"] == 52.08
        status, body = server.client.get("/1/log/data")
        assert status == 200, body
    finally:
        server.stop()
        system.close()


def test_the_fast_yaml_loader_reads_the_shipped_file_as_the_python_loader_does():
    text = (Path(__file__).resolve().parent.parent / "drivers" / "dcdc_batt_comm.yml").read_text(encoding="utf-8")
    assert yaml.load(text, Loader=essx_config.FAST_LOADER) == yaml.safe_load(text)
    if yaml.__with_libyaml__:   # PyYAML built with libyaml (wheels for x86_64, aarch64)
        assert essx_config.FAST_LOADER is yaml.CSafeLoader
