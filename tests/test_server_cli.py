"""The real process: --simulate, SIGTERM, --goodbye, configuration errors, /remote/ioctl/set reloads."""

import copy
import signal
import socket

import pytest
import yaml

from conftest import DEFAULT_CONFIG, ServerThread, fast_config



@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_simulate_serves_and_a_signal_exits_0(process, signum):
    p = process("--simulate")
    p.wait_ready()
    status, body = p.client.get("/remote/get")
    assert status == 200
    assert body["status"]["operationMode"] == "Waiting"
    status, body = p.client.get("/remote/set", mode="0x0014", dvg=350, dig=2.5, drg=0)
    assert status == 200, body
    assert body["status"]["operationMode"] == "Grid Autonomy"
    p.proc.send_signal(signum)
    assert p.proc.wait(10) == 0
    assert "stopped" in p.proc.stdout.read()   # the ports were closed on the way out


def test_goodbye_stops_the_process(process):
    p = process("--simulate", "--goodbye")
    p.wait_ready()
    assert p.client.get("/essx/goodbye") == (200, {"message": "goodbye"})
    assert p.proc.wait(10) == 0


def test_listens_on_host_only(process):
    p = process("--simulate", "--host", "127.0.0.1")
    p.wait_ready()
    assert p.client.get("/version/get")[0] == 200
    # not on the wildcard address: a connection to another local address is refused
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", p.port), timeout=1).close()


def _write(tmp_path, doc):
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _doc():
    with open(DEFAULT_CONFIG) as f:
        return yaml.safe_load(f)


def test_bad_config_stops_the_server_naming_the_key(process, tmp_path):
    doc = _doc()
    doc["dcdc"]["dcdc_default_eza2500"]["config"]["cib"] = "lots"
    p = process("--simulate", "--config", _write(tmp_path, doc))
    assert p.proc.wait(20) == 2
    out = p.proc.stdout.read()
    assert "dcdc.dcdc_default_eza2500.config.cib" in out and "lots" in out


@pytest.mark.parametrize("mutate,fragment", [
    (lambda d: d["ess_system"].pop("dcdc_dev"), "ess_system.dcdc_dev is missing"),
    (lambda d: d["ess_system"]["dcdc_dev"][0].update(address2="x"), "ess_system.dcdc_dev.address2"),
    (lambda d: d["ess_system"]["dcdc_dev"][0].update({"class": "Foo"}), "ess_system.dcdc_dev.class"),
    (lambda d: d["ess_system"]["battery_dev"][0]["kwparams"].update(method="binary"), "kwparams.method"),
    (lambda d: d["dcdc"]["dcdc_default_eza2500"]["config"].pop("ogv"), "config.ogv is missing"),
    (lambda d: d["dcdc"]["dcdc_default_eza2500"]["config"].update(ogv=500), "ogv"),
    (lambda d: d["dcdc"]["dcdc_default_eza2500"].update(wait_for_retry="slow"), "wait_for_retry"),
    (lambda d: d["battery"]["battery_emulator"]["config"].update(check_interval="often"),
     "battery.battery_emulator.config.check_interval"),
    (lambda d: d.pop("battery"), "battery is missing"),
])
def test_config_errors_name_the_key(tmp_path, mutate, fragment):
    from essx.essx_config import load_config
    from essx.essx_exception import ESSXConfigException

    doc = _doc()
    mutate(doc)
    with pytest.raises(ESSXConfigException) as e:
        load_config(_write(tmp_path, doc))
    assert fragment in str(e.value)


def test_config_forms_and_aliases(tmp_path):
    from essx.essx_config import load_config

    doc = _doc()
    ess = doc["ess_system"]
    ess["dcdc_dev"] = ess["dcdc_dev"][0]            # the spec's mapping form
    ess["dcdc_dev"]["vparams"] = ess["dcdc_dev"].pop("params")
    ess["dcdc"] = doc.pop("dcdc")                   # sections inside ess_system
    sec = ess["dcdc"]["dcdc_default_eza2500"]
    sec["wait_retry"] = sec.pop("wait_for_retry")   # the reference's key, kept a float
    sec["wait_retry"] = 0.25
    sec["config"]["tbv"] = sec["config"].pop("cvb")  # the spec table's name
    ess["battery_dev"][0]["class"] = "None"
    config = load_config(_write(tmp_path, doc))
    assert (config.dcdc_dev.port, config.dcdc_dev.baudrate) == ("/dev/ttyO2", 19200)
    assert config.dcdc.wait_for_retry == 0.25
    assert config.dcdc.config["cvb"] == 57.6
    assert config.battery_dev is None
    assert config.dcdc.command_interval == 0.062


def test_ioctl_set_rereads_the_file_and_keeps_settings_when_broken(tmp_path):
    from essx.essx_config import load_config
    from essx_server import System, create_app

    path = tmp_path / "c.yml"
    doc = _doc()
    path.write_text(yaml.safe_dump(doc))
    system = System(fast_config(str(path)), simulate=True, watch=False)
    server = ServerThread(create_app(system.controller, reload_config=lambda: load_config(str(path))))
    try:
        changed = copy.deepcopy(doc)
        changed["dcdc"]["dcdc_default_eza2500"]["config"]["cvb"] = 55.0
        path.write_text(yaml.safe_dump(changed))
        status, body = server.client.get("/remote/ioctl/set")
        assert status == 200, body
        assert body["dcdc_setup_parameter"]["cvb"] == 55.0
        assert abs(system.dcdc_sim.state["cvb"] - 55.0) < 0.01
        path.write_text("dcdc: [unclosed")
        system.dcdc_sim.clear()
        status, body = server.client.get("/remote/ioctl/set")
        assert status == 400
        assert "YAML" in body["err"]
        assert system.dcdc_sim.received == []
        assert system.controller.dcdc_config.config["cvb"] == 55.0
    finally:
        server.stop()
        system.close()
