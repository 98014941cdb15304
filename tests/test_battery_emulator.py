"""BatteryEmulator against the simulated battery (and a scripted slave) on a pty, and the
protocols it reads through (ModbusDevice, ModbusReply). The facts checked are those of
docs/battery-registers.md ("Registers", "Exception replies", "What the driver derives",
"Retries and deadlines"); the reference's defects not inherited: docs/reference-defects.md,
D6 (one bad CRC is retried), D14 (an exception reply is a clear error), D16 (a port reopened).

Timeouts: a test that expects an answer uses the reference's 1 s timeout, so
a loaded machine cannot turn a slow answer into a failure (an answer comes
back as soon as it is there; the timeout is never waited for). Only tests
that expect a failure use a short one.
"""
import ast
import inspect
import logging
import pathlib
import time

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import ReadInputRegistersResponse

import battery_emulator.battery_emulator as battery_module
from battery_emulator import BatteryEmulator, ModbusDevice, ModbusReply
from essx.essx_exception import ESSXConfigException, ESSXException
from essx.essx_modbus import ESSXModbusClient
from modbus_responder import Responder, reply

ANSWER_TIMEOUT = 1.0  # s, for reads that must succeed (the reference's value)
FAIL_TIMEOUT = 0.2  # s, for reads that must fail
QUICK_WAIT = 0.05  # s between tries, to keep the suite fast


@pytest.fixture
def sim(battery_sim):
    """A running battery simulator; no thread or fd is left behind (conftest)."""
    return battery_sim


@pytest.fixture
def make_battery(no_leaks):
    """Build BatteryEmulators on ESSXModbusClients that are closed after the test."""
    clients = []

    def make(port, timeout=ANSWER_TIMEOUT, rsoc=30030, status=30031, unit=1, retry_wait=QUICK_WAIT):
        client = ESSXModbusClient(method="rtu", port=str(port), timeout=timeout, dir_pin="not_used")
        clients.append(client)
        return BatteryEmulator(client, rsoc, status, unit, retry_wait=retry_wait)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def battery(sim, make_battery):
    return make_battery(sim.port)


@pytest.fixture
def failing(sim, make_battery):
    """A battery on the simulator with a short timeout, for tests where reads fail."""
    return make_battery(sim.port, timeout=FAIL_TIMEOUT)


def record(battery):
    """The exchanges ``battery`` reports, in a list."""
    exchanges = []
    battery.listeners.add(exchanges.append)
    return exchanges


def test_permitted(battery):
    assert battery.check_battery() == (55.5, 3, 0)
    assert battery.last_error == ""
    assert (battery.read_rsoc(), battery.read_status()) == (55.5, 1)


def test_not_permitted(sim, battery):
    sim.permitted = False
    assert battery.check_battery() == (55.5, 0, 0)
    assert battery.read_status() == 0


def test_reference_initial_values_before_any_read(battery):
    assert (battery.read_rsoc(), battery.read_status()) == (0.0, 0)


def test_pdu_addresses_as_the_reference_server_passes_them(sim, make_battery):
    battery = make_battery(sim.port, rsoc=29, status=30)
    assert battery.check_battery() == (55.5, 3, 0)
    assert sim.frames[-1][:6] == bytes.fromhex("0104001d0002")  # the same request as 30030/30031


def test_values_change_at_run_time(sim, battery):
    sim.rsoc = 0.0
    assert battery.check_battery() == (0.0, 3, 0)
    sim.rsoc = 100.0
    assert battery.check_battery() == (100.0, 3, 0)


def test_adjacent_registers_are_one_request_of_count_2(sim, battery):
    battery.check_battery()
    assert sim.requests == 1
    assert sim.frames[-1][:6] == bytes.fromhex("0104001d0002")  # unit 1, fc 4, address 29, count 2


def test_registers_apart_are_two_requests(sim, make_battery):
    battery = make_battery(sim.port, status=30001)
    assert battery.check_battery() == (55.5, 0, 0)  # 0x3031 has bit 0 set: not permitted
    assert [frame[2:6] for frame in sim.frames] == [bytes.fromhex("001d0001"),
                                                      bytes.fromhex("00000001")]


def test_remote_reads_send_and_read_gives_the_values(sim, battery):
    sim.permitted = False
    assert battery.remote_rsoc() is None  # the status is the next register: read with it
    assert sim.frames[-1][:6] == bytes.fromhex("0104001d0002")
    assert (battery.read_rsoc(), battery.read_status()) == (55.5, 0)
    sim.permitted = True
    assert battery.remote_status() is None
    assert sim.frames[-1][:6] == bytes.fromhex("0104001e0001")
    assert battery.read_status() == 1


def test_remote_read_raises_after_the_tries(sim, battery):
    sim.inject("exception", count=2, code=2)
    with pytest.raises(ESSXException, match="input register 30030..30031: .*illegal data address"):
        battery.remote_rsoc()
    assert sim.requests == 2


def test_silent_battery_is_a_comm_error_and_does_not_hang(sim, make_battery):
    battery = make_battery(sim.port, timeout=FAIL_TIMEOUT, retry_wait=0.5)  # the real wait
    sim.silent = True
    start = time.monotonic()
    assert battery.check_battery() == (0.0, 0, -1)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 2 * FAIL_TIMEOUT + 0.5 + 2.0  # waited between the tries, did not hang
    assert "no valid reply" in battery.last_error
    assert sim.requests == 2  # tried twice


def test_exception_response_is_a_comm_error_with_a_clear_message(sim, failing):
    sim.inject("exception", count=2, code=4)
    assert failing.check_battery() == (0.0, 0, -1)
    assert failing.last_error == ("battery unit 1, input register 30030..30031: the battery "
                                  "answered with Modbus exception 4 (server device failure)")
    assert failing.read_rsoc() == 0.0  # nothing good was ever read


def test_one_exception_response_is_retried_and_reported(sim, battery):
    exchanges = record(battery)
    sim.inject("exception", count=1, code=6)
    assert battery.check_battery() == (55.5, 3, 0)
    assert [(e.bus, e.command, e.attempt, e.outcome) for e in exchanges] == [
        ("battery", "read", 1, "exception"), ("battery", "read", 2, "ok")]
    assert "server device busy" in exchanges[0].error and exchanges[0].values is None
    assert exchanges[1].values == {"rsoc": 55.5, "permitted": True}
    assert exchanges[1].error is None
    assert all(e.port == sim.port and e.seconds >= 0 for e in exchanges)


def test_one_bad_crc_is_retried_and_succeeds(sim, failing):
    sim.inject("bad_crc", count=1)
    assert failing.check_battery() == (55.5, 3, 0)
    assert sim.requests == 2
    assert failing.last_error == ""


def test_bad_crc_twice_is_a_comm_error(sim, failing):
    exchanges = record(failing)
    sim.inject("bad_crc", count=2)
    assert failing.check_battery()[2] == -1
    assert "bad CRC" in failing.last_error
    assert [e.outcome for e in exchanges] == ["timeout", "timeout"]


def test_last_good_values_survive_a_failure(sim, failing):
    failing.check_battery()
    sim.silent = True
    assert failing.check_battery() == (0.0, 0, -1)
    assert (failing.read_rsoc(), failing.read_status()) == (55.5, 1)


def test_reopened_port_works_on_the_next_check(sim, battery):
    assert battery.check_battery() == (55.5, 3, 0)
    sim.reopen()
    assert battery.check_battery() == (55.5, 3, 0)  # first try fails, the second reopens


def test_port_and_is_open_send_nothing(sim, battery):
    assert (battery.port, battery.is_open) == (sim.port, False)  # nothing opened yet
    battery.check_battery()
    assert (battery.port, battery.is_open) == (sim.port, True)
    assert sim.requests == 1


def test_absent_port_is_a_comm_error_naming_it_until_it_appears(tmp_path, make_battery, caplog):
    link = tmp_path / "ttyGONE"
    battery = make_battery(link)
    exchanges = record(battery)
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert battery.check_battery() == (0.0, 0, -1)
        assert "cannot open %s" % link in battery.last_error
    assert {e.outcome for e in exchanges} == {"io_error"}
    with Responder(link, lambda n, frame: [(0, reply([421, 1]))]):
        assert battery.check_battery() == (42.1, 0, 0)
    ours = [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name in ("essx.essx_modbus", "battery_emulator.battery_emulator")]
    assert [level for level, _ in ours] == ["WARNING", "INFO", "INFO"]  # once per change
    assert "ttyGONE" in ours[0][1] and "open again" in ours[1][1] and "answers again" in ours[2][1]


def test_rsoc_above_100_passes_through_with_one_warning_per_rise(tmp_path, make_battery, caplog):
    registers = [1001, 0]
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, reply(list(registers)))]):
        battery = make_battery(tmp_path / "ttyR")
        caplog.set_level(logging.WARNING, logger="battery_emulator.battery_emulator")
        assert battery.check_battery() == (100.1, 3, 0)
        assert battery.check_battery() == (100.1, 3, 0)
        registers[0] = 999
        assert battery.check_battery() == (99.9, 3, 0)
        registers[0] = 1002
        assert battery.check_battery() == (100.2, 3, 0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "battery_emulator.battery_emulator"]
    assert len(warnings) == 2
    assert "1001 (100.1 %), above 100 %" in warnings[0] and "1002" in warnings[1]


def test_a_late_reply_is_not_taken_for_the_retry(tmp_path, make_battery):
    """Try 1 is answered 1.5 timeouts late, try 2 after 0.7 timeouts (the late
    reply would come first if try 2 went out right after the retry wait), the
    next check at once: each value is its own request's."""
    timeout = 1.0
    delays = {1: 1.5 * timeout, 2: 0.7 * timeout}

    def answer(n, frame):
        return [(delays.get(n, 0.0), reply([100 * n, 0]))]

    with Responder(tmp_path / "ttyR", answer) as responder:
        battery = make_battery(responder.link, timeout=timeout)
        assert battery.check_battery() == (20.0, 3, 0)
        assert battery.check_battery() == (30.0, 3, 0)
        assert len(responder.requests) == 3


def test_an_always_late_battery_is_a_comm_error_every_time(tmp_path, make_battery):
    """Field report: 1.5 s late with a 1 s timeout gave 200 with the previous value."""
    timeout = 0.3
    with Responder(tmp_path / "ttyR", lambda n, frame: [(1.5 * timeout, reply([n, 0]))]):
        battery = make_battery(tmp_path / "ttyR", timeout=timeout)
        assert [battery.check_battery() for _ in range(3)] == [(0.0, 0, -1)] * 3


def test_a_function_3_reply_is_skipped_and_retried(tmp_path, make_battery):
    def answer(n, frame):
        return [(0, reply([777, 1], function=3) if n == 1 else reply([123, 0]))]

    with Responder(tmp_path / "ttyR", answer):
        battery = make_battery(tmp_path / "ttyR")
        exchanges = record(battery)
        assert battery.check_battery() == (12.3, 3, 0)
    assert [e.outcome for e in exchanges] == ["timeout", "ok"]
    assert "no valid reply within 1 s: function 3 reply only" in exchanges[0].error


def test_wrong_unit_is_not_answered(sim, make_battery):
    battery = make_battery(sim.port, timeout=FAIL_TIMEOUT, unit=2)
    assert battery.check_battery()[2] == -1
    assert battery.last_error.startswith("battery unit 2,")


@pytest.mark.parametrize("kwargs, match", [
    ({"modbus_adr_rsoc": 70000}, "modbus_adr_rsoc=70000: expected an input register number"),
    ({"modbus_adr_rsoc": "30030"}, "modbus_adr_rsoc='30030'"),
    ({"modbus_adr_status": None}, "modbus_adr_status=None"),
    ({"unit": 256}, "unit=256: expected a Modbus unit"),
    ({"unit": True}, "unit=True"),
    ({"dev": None}, "needs dev="),
])
def test_configuration_errors_name_the_parameter(kwargs, match):
    arguments = dict(dev=_FakeClient(None), modbus_adr_rsoc=30030, modbus_adr_status=30031, unit=1)
    arguments.update(kwargs)
    with pytest.raises(ESSXConfigException, match=match):
        BatteryEmulator(**arguments)


def test_unit_0_is_accepted_as_the_reference_does():
    assert BatteryEmulator(_FakeClient(None), 29, 30, 0).unit == 0


class _FakeClient:
    """A ModbusDevice returning a canned reply (or raising ``error``), for cases the pty
    cannot make."""

    port, is_open, ready_at, timeout = "/dev/ttyFAKE", False, 0.0, 0.3

    def __init__(self, reply_pdu, error=None):
        self.reply, self.error = reply_pdu, error
        self.calls = 0

    def read_input_registers(self, address, *, count=1, device_id=1):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.reply


class _Reply:
    """A ModbusReply that is not an error."""

    exception_code = 0

    def __init__(self, registers):
        self.registers = registers

    def isError(self):  # pymodbus API name
        return False


def test_short_reply_and_none_reply_are_comm_errors():
    battery = BatteryEmulator(_FakeClient(_Reply([555])), 30030, 30031, 1, retry_wait=QUICK_WAIT)
    exchanges = record(battery)
    assert battery.check_battery() == (0.0, 0, -1)
    assert "expected 2 registers in the reply, got 1" in battery.last_error
    assert [e.outcome for e in exchanges] == ["value", "value"]
    battery = BatteryEmulator(_FakeClient(None), 30030, 30031, 1, retry_wait=QUICK_WAIT)
    assert battery.check_battery() == (0.0, 0, -1)
    assert battery.last_error.endswith("no reply")
    assert battery.dev.calls == 2


def test_a_port_without_kernel_rs485_is_a_comm_error_naming_the_setting(sim, no_leaks):
    client = ESSXModbusClient(method="rtu", port=sim.port, timeout=FAIL_TIMEOUT, dir_pin="rs485")
    battery = BatteryEmulator(client, 30030, 30031, 1, retry_wait=QUICK_WAIT)
    exchanges = record(battery)
    try:
        assert battery.check_battery() == (0.0, 0, -1)
    finally:
        client.close()
    assert "dir_pin 'rs485'" in battery.last_error and sim.port in battery.last_error
    assert [e.outcome for e in exchanges] == ["io_error"]  # no second try: no retry helps


def test_another_modbus_io_error_names_the_device_timeout():
    battery = BatteryEmulator(_FakeClient(None, error=ModbusIOException("garbled")), 30030, 30031, 1,
                              retry_wait=QUICK_WAIT)
    exchanges = record(battery)
    assert battery.check_battery() == (0.0, 0, -1)
    assert battery.last_error == ("battery unit 1, input register 30030..30031: no valid reply "
                                  "within 0.3 s (no answer, or a corrupt frame such as a bad CRC)")
    assert [(e.outcome, e.port) for e in exchanges] == [("timeout", "/dev/ttyFAKE")] * 2


# -- the protocols: what the battery needs of its device and of a reply ---------------------------
def _members(protocol):
    return {name for name in vars(protocol) if not name.startswith("_")}


def _used(variable):
    """The attributes battery_emulator.py reads of ``variable`` (e.g. "self.dev", "reply")."""
    tree = ast.parse(pathlib.Path(battery_module.__file__).read_text(encoding="utf-8"))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and ast.unparse(node.value) == variable}


def test_the_protocols_name_exactly_what_the_battery_uses():
    assert _members(ModbusDevice) == _used("self.dev") == {
        "port", "is_open", "ready_at", "timeout", "read_input_registers"}
    assert _members(ModbusReply) == _used("reply") == {"registers", "exception_code", "isError"}


def test_the_project_client_is_a_modbus_device():
    """A member renamed in ESSXModbusClient (or added to ModbusDevice) fails here."""
    client = ESSXModbusClient(method="rtu", port="/dev/ttyNONE", timeout=0.5, dir_pin="not_used")
    assert isinstance(client, ModbusDevice)
    for name in _members(ModbusDevice):
        assert hasattr(type(client), name), name  # the class's own, not an instance attribute
    inspect.signature(client.read_input_registers).bind(29, count=2, device_id=1)
    assert (client.port, client.is_open, client.ready_at, client.timeout) == (
        "/dev/ttyNONE", False, 0.0, 0.5)


def test_pymodbus_replies_are_modbus_replies():
    registers = ReadInputRegistersResponse(registers=[625, 0])
    exception = ExceptionResponse(4, 2)
    assert isinstance(registers, ModbusReply) and isinstance(exception, ModbusReply)
    assert (registers.isError(), list(registers.registers)) == (False, [625, 0])
    assert (exception.isError(), exception.exception_code) == (True, 2)


def test_the_fakes_here_are_what_they_stand_for():
    assert isinstance(_FakeClient(None), ModbusDevice)
    assert isinstance(_Reply([1]), ModbusReply)
    assert not isinstance(object(), ModbusDevice)
