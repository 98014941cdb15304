"""ESSXModbusClient: kwparams through the one validator, ESSXRS485 as the port,
port changes, exclusive open, stale and late replies, wrong function codes
(docs/battery-registers.md, "Line settings", "Retries and deadlines", "Junk on the line";
docs/reference-defects.md, D16 and D18). The junk scan on bytes alone: test_modbus_reply.py."""
import logging
import os
import pathlib
import select
import sys
import time

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from essx.essx_config import modbus_params
from essx.essx_exception import ESSXConfigException
from essx import deadline
from essx.essx_modbus import ESSXModbusClient, NoValidReply, NotSent, client_arguments
from essx.essx_rs485 import ESSXRS485
from modbus_responder import Responder, reply

DRIVERS = pathlib.Path(__file__).resolve().parent.parent / "drivers"
REFERENCE_KWPARAMS = {"method": "rtu", "port": "/dev/ttyO5", "timeout": 1,
                      "baudrate": 9600, "dir_pin": "P8_9"}
#: Timeout of the late-reply tests, s; the late battery answers 1.5 timeouts
#: after the request, as in the field report (1.5 s late with a 1 s timeout).
LATE_TIMEOUT = 0.5


def mine(caplog):
    """The log records of the client's module."""
    return [r for r in caplog.records if r.name == "essx.essx_modbus"]


@pytest.fixture
def sim(battery_sim):
    """A running battery simulator; no thread or fd is left behind (conftest)."""
    return battery_sim


@pytest.fixture
def make_client(no_leaks):
    """Build ESSXModbusClients (dir_pin not_used) that are closed after the test."""
    clients = []

    def make(port, timeout=1.0, **kwargs):
        client = ESSXModbusClient(method="rtu", port=str(port), timeout=timeout,
                                  dir_pin="not_used", **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_reference_kwparams_map_to_the_3x_api():
    client, rs485 = client_arguments(modbus_params(REFERENCE_KWPARAMS))
    assert client["framer"] == FramerType.RTU
    assert client["port"] == "/dev/ttyO5"
    assert (client["timeout"], client["baudrate"]) == (1, 9600)
    assert (client["parity"], client["stopbits"], client["bytesize"]) == ("N", 1, 8)
    assert client["retries"] == 0  # tries are made by execute(), after the line settled
    assert rs485 == {"dir_pin": "P8_9", "drop_echo": False}


def test_ascii_and_optional_keys_are_accepted():
    client, _ = client_arguments(modbus_params(dict(REFERENCE_KWPARAMS, parity="E", stopbits=2,
                                                    bytesize=7, method="ascii")))
    assert (client["parity"], client["stopbits"], client["bytesize"]) == ("E", 2, 7)
    assert client["framer"] == FramerType.ASCII


@pytest.mark.parametrize("key, value", [
    ("method", "socket"), ("parity", "X"), ("stopbits", 3), ("baudrate", "fast"), ("timeout", 0),
])
def test_client_and_configuration_refuse_with_the_same_message(key, value):
    """One validator: the client's error is the configuration model's, key path named."""
    kwparams = dict(REFERENCE_KWPARAMS, **{key: value})
    with pytest.raises(ESSXConfigException) as config_error:
        modbus_params(kwparams)
    with pytest.raises(ESSXConfigException) as client_error:
        ESSXModbusClient(**kwparams)
    assert str(client_error.value) == str(config_error.value)
    assert "kwparams.%s" % key in str(client_error.value)


def test_missing_port_is_a_config_error():
    with pytest.raises(ESSXConfigException, match="port"):
        ESSXModbusClient(method="rtu", dir_pin="not_used")


def test_missing_gpio_module_is_reported_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO", None)
    with pytest.raises(ESSXConfigException, match=r"\[bbb\]"):
        ESSXModbusClient(**REFERENCE_KWPARAMS)


def test_nothing_imports_the_2x_sync_module_or_pymodbus_private_names():
    source = (DRIVERS / "essx" / "essx_modbus.py").read_text(encoding="utf-8")
    offenders = [str(path) for path in DRIVERS.rglob("*.py")
                 if "pymodbus.client.sync" in path.read_text(encoding="utf-8")]
    assert offenders == []
    assert "_wait_for_data" not in source and "_in_waiting" not in source
    assert "def send(" not in source   # recv, a public method of ModbusSerialClient, is overridden


def test_construction_opens_nothing_and_connect_opens_an_essxrs485(sim, make_client):
    client = make_client(sim.port)
    assert (client.port, client.is_open, client.timeout, client.ready_at) == (sim.port, False, 1.0, 0.0)
    assert client.connect()
    assert isinstance(client.socket, ESSXRS485) and client.is_open
    assert client.socket.dir_pin == "not_used"
    assert client.read_input_registers(29, count=2, device_id=1).registers == [555, 0]
    client.close()
    assert not client.is_open


def test_absent_port_is_logged_once_and_opened_when_it_appears(tmp_path, make_client, caplog):
    link = tmp_path / "ttyLATE"
    client = make_client(link, timeout=0.3)
    caplog.set_level(logging.INFO, logger="essx.essx_modbus")
    for _ in range(3):
        with pytest.raises(ConnectionException, match="ttyLATE.*No such file"):
            client.read_input_registers(29, count=1, device_id=1)
    warnings = [r for r in mine(caplog) if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ttyLATE" in warnings[0].getMessage()
    with Responder(link, lambda n, frame: [(0, reply([n]))]) as responder:
        assert client.read_input_registers(29, count=1, device_id=1).registers == [1]
        assert client.read_input_registers(29, count=1, device_id=1).registers == [2]
        assert len(responder.requests) == 2
    infos = [r.getMessage() for r in mine(caplog) if r.levelno == logging.INFO]
    assert infos == ["battery port %s is open again" % link]


def test_second_client_on_the_same_port_gets_a_clear_error(sim, make_client):
    first, second = make_client(sim.port), make_client(sim.port)
    assert first.read_input_registers(29, count=1, device_id=1).registers == [555]
    with pytest.raises(ConnectionException, match="%s.*in use by another program" % sim.port):
        second.read_input_registers(29, count=1, device_id=1)
    assert first.read_input_registers(29, count=1, device_id=1).registers == [555]


def test_io_error_closes_the_port_and_the_next_request_reopens_it(sim, make_client, caplog):
    client = make_client(sim.port, timeout=0.3)
    caplog.set_level(logging.INFO, logger="essx.essx_modbus")
    assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
    first = client.socket
    sim.reopen()  # unplug/replug: the open port is dead now
    with pytest.raises(ConnectionException, match="%s: .*" % sim.port):
        client.read_input_registers(29, count=1, device_id=1)
    assert not client.is_open
    assert client.read_input_registers(29, count=1, device_id=1).registers == [555]
    assert client.socket is not first
    messages = [(r.levelname, r.getMessage()) for r in mine(caplog)]
    assert [level for level, _ in messages] == ["WARNING", "INFO"]
    assert "lost" in messages[0][1] and "open again" in messages[1][1]


def test_stale_bytes_are_dropped_before_a_request(tmp_path, make_client):
    with Responder(tmp_path / "ttyR", lambda n, frame: [(0, reply([n]))]) as responder:
        client = make_client(responder.link)
        client.connect()
        os.write(responder.master, reply([999]))  # unsolicited bytes on the line
        deadline = time.monotonic() + 5  # a pty delivers asynchronously: wait until they are there
        while client.socket.in_waiting < 7 and time.monotonic() < deadline:
            select.select([client.socket.fileno()], [], [], 0.01)
        assert client.read_input_registers(29, count=1, device_id=1).registers == [1]


def test_a_late_reply_is_never_taken_for_the_next_request(tmp_path, make_client):
    """Request 1 is answered 1.5 timeouts late, request 2 after 0.7 timeouts (so
    the late reply would come first if request 2 went out at once), request 3
    at once: each read gets its own reply or none."""
    timeout = 1.0
    delays = {1: 1.5 * timeout, 2: 0.7 * timeout}

    def answer(n, frame):
        return [(delays.get(n, 0.0), reply([n]))]

    with Responder(tmp_path / "ttyR", answer) as responder:
        client = make_client(responder.link, timeout=timeout)
        with pytest.raises(ModbusIOException):
            client.read_input_registers(29, count=1, device_id=1)
        assert client.read_input_registers(29, count=1, device_id=1).registers == [2]
        assert client.read_input_registers(29, count=1, device_id=1).registers == [3]


def test_an_always_late_battery_never_answers_a_later_request(tmp_path, make_client):
    """The field report: 1.5 s late with a 1 s timeout returned the previous value."""
    with Responder(tmp_path / "ttyR", lambda n, frame: [(1.5 * LATE_TIMEOUT, reply([n]))]) as responder:
        client = make_client(responder.link, timeout=LATE_TIMEOUT)
        for _ in range(4):
            with pytest.raises(ModbusIOException):
                client.read_input_registers(29, count=1, device_id=1)
        assert len(responder.requests) == 4


def test_a_function_3_reply_to_a_function_4_request_is_skipped(tmp_path, make_client):
    def answer(n, frame):
        return [(0, reply([777], function=3) if n == 1 else reply([n]))]

    with Responder(tmp_path / "ttyR", answer) as responder:
        client = make_client(responder.link, timeout=0.3)
        with pytest.raises(NoValidReply, match="no valid reply within 0.3 s: function 3 reply only"):
            client.read_input_registers(29, count=1, device_id=1)
        assert client.read_input_registers(29, count=1, device_id=1).registers == [2]
        assert [frame[1] for frame in responder.requests] == [4, 4]


def test_retries_are_extra_tries_after_the_line_settled(tmp_path, make_client):
    def answer(n, frame):
        return [(1.5 * LATE_TIMEOUT, reply([n]))] if n == 1 else [(0, reply([n]))]

    with Responder(tmp_path / "ttyR", answer) as responder:
        client = make_client(responder.link, timeout=LATE_TIMEOUT, retries=1)
        assert client.read_input_registers(29, count=1, device_id=1).registers == [2]
        assert len(responder.requests) == 2


# -- the deadline -------------------------------------------------------------------------------
def test_the_reply_window_is_shortened_to_the_deadline(tmp_path, make_client):
    with Responder(tmp_path / "ttyR", lambda n, frame: []):
        client = make_client(tmp_path / "ttyR", timeout=1.0)
        start = time.monotonic()
        with deadline.within(0.3), pytest.raises(
                NoValidReply,   # the window left when the try began: opening the port took a moment
                match=r"within 0\.(?:3|29\d*) s \(the request's deadline\): nothing received"):
            client.read_input_registers(29, count=1, device_id=1)
        assert time.monotonic() - start < 0.3 + 0.5


def test_no_request_is_sent_after_the_deadline(tmp_path, make_client):
    with Responder(tmp_path / "ttyR", lambda n, frame: []) as responder:
        client = make_client(tmp_path / "ttyR", timeout=1.0)
        with deadline.within(0.0), pytest.raises(NotSent, match="nothing was sent"):
            client.read_input_registers(29, count=1, device_id=1)
        assert responder.requests == []
