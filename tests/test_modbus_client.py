"""ESSXModbusClient: kwparams mapping, ESSXRS485 as the port, reconnect."""
import pathlib
import sys

import pytest
from pymodbus.exceptions import ConnectionException
from pymodbus.framer import FramerType

from essx.essx_exception import ESSXConfigException
from essx.essx_modbus import ESSXModbusClient, client_arguments
from essx.essx_rs485 import ESSXRS485

DRIVERS = pathlib.Path(__file__).resolve().parent.parent / "drivers"
REFERENCE_KWPARAMS = {"method": "rtu", "port": "/dev/ttyO5", "timeout": 1,
                      "baudrate": 9600, "dir_pin": "P8_9"}


@pytest.fixture
def sim(battery_sim):
    """A running battery simulator; no thread or fd is left behind (conftest)."""
    return battery_sim


def test_reference_kwparams_map_to_the_3x_api():
    client, rs485 = client_arguments(dict(REFERENCE_KWPARAMS))
    assert client["framer"] == FramerType.RTU
    assert client["port"] == "/dev/ttyO5"
    assert (client["timeout"], client["baudrate"]) == (1, 9600)
    assert (client["parity"], client["stopbits"], client["bytesize"]) == ("N", 1, 8)
    assert client["retries"] == 0  # BatteryEmulator makes its own two tries
    assert rs485 == {"dir_pin": "P8_9", "drop_echo": False}


def test_all_optional_keys_are_accepted():
    client, _ = client_arguments(dict(REFERENCE_KWPARAMS, parity="e", stopbits=2, bytesize=7,
                                      retries=1, method="ascii"))
    assert (client["parity"], client["stopbits"], client["bytesize"]) == ("E", 2, 7)
    assert client["retries"] == 1 and client["framer"] == FramerType.ASCII


def test_unknown_kwparam_names_the_key():
    with pytest.raises(ESSXConfigException, match="unknown key 'strict'"):
        ESSXModbusClient(**dict(REFERENCE_KWPARAMS, strict=True, dir_pin="not_used"))


def test_missing_port_is_a_config_error():
    with pytest.raises(ESSXConfigException, match="'port' is required"):
        ESSXModbusClient(method="rtu", dir_pin="not_used")


@pytest.mark.parametrize("key, value, allowed", [
    ("method", "socket", "rtu, ascii"),
    ("parity", "X", "N, E, O"),
    ("stopbits", 3, "1, 1.5, 2"),
    ("baudrate", "fast", ">= 50"),
    ("timeout", 0, ">= 0.001"),
])
def test_bad_values_name_key_value_and_range(key, value, allowed):
    with pytest.raises(ESSXConfigException, match="%s=.*allowed: %s" % (key, allowed)):
        client_arguments(dict(REFERENCE_KWPARAMS, **{key: value}))


def test_missing_gpio_module_is_reported_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO", None)
    with pytest.raises(ESSXConfigException, match=r"\[bbb\]"):
        ESSXModbusClient(**REFERENCE_KWPARAMS)


def test_nothing_imports_the_2x_sync_module():
    offenders = [str(path) for path in DRIVERS.rglob("*.py")
                 if "pymodbus.client.sync" in path.read_text(encoding="utf-8")]
    assert offenders == []


def test_connect_opens_an_essxrs485(sim):
    client = ESSXModbusClient(method="rtu", port=sim.port, timeout=0.3, dir_pin="not_used")
    try:
        assert client.connect()
        assert isinstance(client.socket, ESSXRS485)
        assert client.socket.dir_pin == "not_used"
        reply = client.read_input_registers(29, count=2, device_id=1)
        assert reply.registers == [555, 0]
    finally:
        client.close()
    assert client.socket is None


def test_unopenable_port_gives_a_connection_error_with_the_reason(tmp_path):
    client = ESSXModbusClient(method="rtu", port=str(tmp_path / "nothing"), timeout=0.2,
                              dir_pin="not_used")
    assert client.connect() is False
    with pytest.raises(ConnectionException, match="nothing.*No such file"):
        client.read_input_registers(29, count=2, device_id=1)


def test_io_error_closes_the_port_and_the_next_request_reopens_it(sim):
    client = ESSXModbusClient(method="rtu", port=sim.port, timeout=0.3, dir_pin="not_used")
    try:
        assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
        first = client.socket
        sim.reopen()  # unplug/replug: the open port is dead now
        with pytest.raises(ConnectionException, match="Input/output error"):
            client.read_input_registers(29, count=1, device_id=1)
        assert client.socket is None
        assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
        assert client.socket is not first
    finally:
        client.close()
