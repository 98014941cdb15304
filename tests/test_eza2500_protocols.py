"""The Protocols state what the device and the link use: every kind of port
given to ``EZA2500Device`` (pyserial's Serial, ESSXRS485, the tests' fakes) has
every ``SerialPort`` member, ``EZA2500Device`` has every ``LinkDevice`` member,
and a port offering nothing but ``SerialPort`` serves a whole command."""
from typing import List, Set

import pytest
import serial
from conftest import protocol_members

import eza2500
from eza2500 import codec, table
from eza2500.eza2500_device import SerialPort
from eza2500.link import EZA2500Link, LinkDevice
from eza2500.reader import ReplySource, read_reply
from essx.essx_rs485 import ESSXRS485
from fake_ports import FakePort, NoisePort


def missing(obj: object, protocol: type) -> Set[str]:
    """Members of ``protocol`` that ``obj`` lacks (``dir``: no property is evaluated)."""
    return protocol_members(protocol) - set(dir(obj))


def test_the_protocols_state_these_members():
    assert protocol_members(SerialPort) == {"port", "timeout", "is_open", "in_waiting", "open", "close", "read",
                                   "write", "reset_input_buffer"}
    assert protocol_members(ReplySource) == {"timeout", "port", "in_waiting", "read_some"}
    assert protocol_members(LinkDevice) == protocol_members(ReplySource) | {"is_open", "ensure_open", "write"}


@pytest.mark.parametrize("make", [
    lambda: serial.Serial(),
    lambda: ESSXRS485(None, 19200, dir_pin="not_used"),
    FakePort,
    NoisePort,
], ids=["serial.Serial", "ESSXRS485", "FakePort", "NoisePort"])
def test_every_port_given_to_the_device_is_a_serial_port(make):
    port = make()
    try:
        assert missing(port, SerialPort) == set()
        device = eza2500.EZA2500Device(port)
        assert missing(device, LinkDevice) == set() and missing(device, ReplySource) == set()
    finally:
        if isinstance(port, serial.Serial):
            port.close()


class StrictPort:
    """A port with nothing but the ``SerialPort`` members; any other attribute
    the device asks for fails the test.  Replies ``reply`` to each write."""

    ALLOWED = protocol_members(SerialPort) | {"reply", "pending", "seen"}
    #: What the device may ask for and do without (ESSXRS485 has it; this port has not).
    OPTIONAL = {"read_at_least"}

    def __init__(self, reply: bytes) -> None:
        self.reply, self.pending, self.seen = reply, b"", []
        self.port, self.timeout, self.is_open = "/dev/strict", None, False

    def __getattribute__(self, name: str):
        if name in StrictPort.OPTIONAL:
            raise AttributeError(name)
        if not name.startswith("__"):
            assert name in StrictPort.ALLOWED, "EZA2500Device used %r, not in SerialPort" % name
            object.__getattribute__(self, "seen").append(name)
        return object.__getattribute__(self, name)

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False

    def read(self, size: int) -> bytes:
        out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def write(self, data: bytes) -> int:
        self.pending = self.reply
        return len(data)

    def reset_input_buffer(self) -> None:
        self.pending = b""


def test_a_port_with_only_the_protocol_serves_a_command():
    ack = codec.build_ack(0, 16, 1, False, {"mode": 0x14})
    port = StrictPort(ack)
    device = eza2500.EZA2500Device(port, timeout=0.2)
    link = EZA2500Link(device, 0, 16, command_interval=0.0)
    assert link.transact("1-1") == {"mode": 0x14}
    assert link.is_open and link.port == "/dev/strict"
    device.close()
    used: List[str] = port.seen
    assert {"is_open", "open", "reset_input_buffer", "write", "in_waiting", "read", "close"} <= set(used)
    assert port.timeout == 0.01


def test_the_reader_needs_only_a_reply_source():
    class Source:
        timeout, port = 0.05, "memory"

        def __init__(self, data: bytes) -> None:
            self.data = data

        def in_waiting(self) -> int:
            return len(self.data)

        def read_some(self, size: int, deadline: float) -> bytes:
            out, self.data = self.data[:size], self.data[size:]
            return out

    ack = codec.build_ack(0, 16, 1, False, {"mode": 0})
    source = Source(b"\x11" + ack)
    assert missing(source, ReplySource) == set()
    assert read_reply(source, table.group(1), False) == ack
