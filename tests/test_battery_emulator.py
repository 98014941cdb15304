"""BatteryEmulator.check_battery() against the simulated battery on a pty."""
import time

import pytest

from battery_emulator import BatteryEmulator
from battery_emulator import battery_emulator as battery_module
from essx.essx_exception import ESSXConfigException, ESSXException
from essx.essx_modbus import ESSXModbusClient

TIMEOUT = 0.2  # Modbus timeout in these tests, seconds
#: check_battery must come back within two timeouts, the wait between the
#: tries, and a generous margin for a loaded machine (it must not hang).
NO_HANG_BOUND = 2 * TIMEOUT + 0.5 + 2.0


@pytest.fixture(autouse=True)
def short_retry_wait(monkeypatch):
    """0.05 s between tries keeps the suite fast; the no-hang test uses the real wait."""
    monkeypatch.setattr(battery_module, "RETRY_WAIT_S", 0.05)


@pytest.fixture
def sim(battery_sim):
    """A running battery simulator; no thread or fd is left behind (conftest)."""
    return battery_sim


@pytest.fixture
def client(sim):
    modbus = ESSXModbusClient(method="rtu", port=sim.port, timeout=TIMEOUT,
                              baudrate=9600, dir_pin="not_used")
    yield modbus
    modbus.close()


@pytest.fixture
def battery(client):
    return BatteryEmulator(dev=client, modbus_adr_rsoc=30030, modbus_adr_status=30031, unit=1)


def test_permitted(battery):
    assert battery.check_battery() == (55.5, 3, 0)
    assert battery.last_error == ""
    assert (battery.read_rsoc(), battery.read_status()) == (55.5, 0)


def test_not_permitted(sim, battery):
    sim.permitted = False
    assert battery.check_battery() == (55.5, 0, 0)
    assert battery.read_status() == 1


def test_values_change_at_run_time(sim, battery):
    sim.rsoc = 0.0
    assert battery.check_battery() == (0.0, 3, 0)
    sim.rsoc = 100.0
    assert battery.check_battery() == (100.0, 3, 0)


def test_adjacent_registers_are_one_request_of_count_2(sim, battery):
    battery.check_battery()
    assert sim.requests == 1
    frame = sim.frames[-1]
    assert frame[:6] == bytes.fromhex("0104001d0002")  # unit 1, fc 4, address 29, count 2


def test_registers_apart_are_two_requests(sim, client):
    battery = BatteryEmulator(dev=client, modbus_adr_rsoc=30030, modbus_adr_status=30001, unit=1)
    assert battery.check_battery() == (55.5, 0, 0)  # 0x3031 has bit 0 set: not permitted
    assert sim.requests == 2
    assert [frame[2:6] for frame in sim.frames] == [bytes.fromhex("001d0001"),
                                                      bytes.fromhex("00000001")]


def test_silent_battery_is_a_comm_error_and_does_not_hang(sim, battery, monkeypatch):
    monkeypatch.setattr(battery_module, "RETRY_WAIT_S", 0.5)  # the real wait
    sim.silent = True
    start = time.monotonic()
    assert battery.check_battery() == (0.0, 0, -1)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < NO_HANG_BOUND  # waited between the tries, and did not hang
    assert "no valid reply" in battery.last_error
    assert sim.requests == 2  # tried twice


def test_exception_response_is_a_comm_error_with_a_clear_message(sim, battery):
    sim.inject("exception", count=2, code=4)
    assert battery.check_battery() == (0.0, 0, -1)
    assert battery.last_error == ("battery unit 1, input register 30030..30031: the battery "
                                  "answered with Modbus exception 4 (server device failure)")
    assert battery.read_rsoc() is None  # nothing good was ever read


def test_one_exception_response_is_retried(sim, battery):
    sim.inject("exception", count=1, code=6)
    assert battery.check_battery() == (55.5, 3, 0)
    assert sim.requests == 2


def test_one_bad_crc_is_retried_and_succeeds(sim, battery):
    sim.inject("bad_crc", count=1)
    assert battery.check_battery() == (55.5, 3, 0)
    assert sim.requests == 2
    assert battery.last_error == ""


def test_bad_crc_twice_is_a_comm_error(sim, battery):
    sim.inject("bad_crc", count=2)
    assert battery.check_battery()[2] == -1
    assert "bad CRC" in battery.last_error


def test_last_good_values_survive_a_failure(sim, battery):
    battery.check_battery()
    sim.silent = True
    assert battery.check_battery() == (0.0, 0, -1)
    assert battery.read_rsoc() == 55.5


def test_reopened_port_works_on_the_next_check(sim, battery):
    assert battery.check_battery() == (55.5, 3, 0)
    sim.reopen()
    assert battery.check_battery() == (55.5, 3, 0)  # first try fails, the second reopens


def test_unopenable_port_is_a_comm_error(tmp_path):
    modbus = ESSXModbusClient(method="rtu", port=str(tmp_path / "gone"), timeout=TIMEOUT,
                              dir_pin="not_used")
    battery = BatteryEmulator(modbus, 30030, 30031, 1)
    assert battery.check_battery() == (0.0, 0, -1)
    assert "cannot open" in battery.last_error and "gone" in battery.last_error


def test_remote_reads_return_values_and_raise_on_errors(sim, battery):
    assert battery.remote_rsoc() == 55.5
    assert battery.remote_status() == 0
    sim.inject("exception", count=2, code=2)
    with pytest.raises(ESSXException, match="input register 30030: .*illegal data address"):
        battery.remote_rsoc()


def test_wrong_unit_is_not_answered(sim, client):
    battery = BatteryEmulator(client, 30030, 30031, unit=2)
    assert battery.check_battery()[2] == -1
    assert battery.last_error.startswith("battery unit 2,")


@pytest.mark.parametrize("kwargs, match", [
    ({"modbus_adr_rsoc": 29}, "modbus_adr_rsoc=29 .*30001..39999"),
    ({"modbus_adr_status": None}, "modbus_adr_status=None"),
    ({"unit": 0}, "unit=0"),
    ({"dev": None}, "needs dev="),
])
def test_configuration_errors(kwargs, match):
    arguments = dict(dev=object(), modbus_adr_rsoc=30030, modbus_adr_status=30031, unit=1)
    arguments.update(kwargs)
    with pytest.raises(ESSXConfigException, match=match):
        BatteryEmulator(**arguments)


class _FakeClient:
    """A client returning canned replies, for cases the simulator cannot make."""

    def __init__(self, reply):
        self.reply = reply
        self.calls = 0

    def read_input_registers(self, address, count, device_id):
        self.calls += 1
        return self.reply


class _Reply:
    def __init__(self, registers):
        self.registers = registers

    def isError(self):  # pymodbus API name
        return False


def test_short_reply_and_none_reply_are_comm_errors():
    battery = BatteryEmulator(_FakeClient(_Reply([555])), 30030, 30031, 1)
    assert battery.check_battery() == (0.0, 0, -1)
    assert "expected 2 registers in the reply, got 1" in battery.last_error
    battery = BatteryEmulator(_FakeClient(None), 30030, 30031, 1)
    assert battery.check_battery() == (0.0, 0, -1)
    assert battery.last_error.endswith("no reply")
    assert battery.dev.calls == 2


def test_rsoc_out_of_range_is_a_comm_error():
    battery = BatteryEmulator(_FakeClient(_Reply([1001, 0])), 30030, 30031, 1)
    assert battery.check_battery() == (0.0, 0, -1)
    assert "outside 0..1000" in battery.last_error
