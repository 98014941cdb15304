"""ESSXRS485: direction pin order, backends, missing GPIO modules, ptys.

Hardware-free: the GPIO modules are fakes injected through sys.modules (or
``pin_driver=``); the port is a pty whose master the test holds.
"""
import os
import sys
import termios
import threading
import time
import tty
import types

import pytest
import serial

from essx.essx_exception import ESSXConfigException
from essx.essx_rs485 import ECHO_MARGIN_S, BBIOPin, ESSXRS485, GpiodPin, NoPin, make_pin, usb_serial


@pytest.fixture
def pty_port():
    """A raw pty: (path of the slave for the port, master fd for the test)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave), master
    os.close(master)
    os.close(slave)


@pytest.fixture
def events():
    return []


@pytest.fixture
def recorded_serial(monkeypatch, events):
    """Record serial.Serial.write and .flush (tcdrain) into ``events``."""
    orig_write, orig_flush = serial.Serial.write, serial.Serial.flush

    def write(self, data):
        count = orig_write(self, data)
        events.append(("write", bytes(data)))
        return count

    def flush(self):
        orig_flush(self)
        events.append(("drained",))

    monkeypatch.setattr(serial.Serial, "write", write)
    monkeypatch.setattr(serial.Serial, "flush", flush)


@pytest.fixture
def fake_bbio(monkeypatch, events):
    """A fake Adafruit_BBIO package whose GPIO records setup/output calls."""
    gpio = types.ModuleType("Adafruit_BBIO.GPIO")
    gpio.OUT, gpio.HIGH, gpio.LOW = "out", 1, 0
    gpio.setup = lambda pin, direction: events.append(("setup", pin, direction))
    gpio.output = lambda pin, level: events.append(("high" if level else "low", pin))
    package = types.ModuleType("Adafruit_BBIO")
    package.GPIO = gpio
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO", package)
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO.GPIO", gpio)
    return gpio


@pytest.fixture
def fake_gpiod(monkeypatch, events):
    """A fake libgpiod 2.x module: request_lines, LineSettings, line.Value."""
    line = types.ModuleType("gpiod.line")

    class Direction:
        OUTPUT = "output"

    class Value:
        ACTIVE, INACTIVE = "active", "inactive"

    line.Direction, line.Value = Direction, Value

    class Request:
        def set_value(self, offset, value):
            events.append(("high" if value == Value.ACTIVE else "low", offset))

        def release(self):
            events.append(("release",))

    def request_lines(path, consumer, config):
        (offset, settings), = config.items()
        events.append(("request", path, offset, settings["direction"], settings["output_value"]))
        return Request()

    gpiod = types.ModuleType("gpiod")
    gpiod.line = line
    gpiod.request_lines = request_lines
    gpiod.LineSettings = lambda **kw: kw
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return gpiod


def test_bbio_pin_order_transmit_write_drain_receive(pty_port, fake_bbio, recorded_serial, events):
    path, master = pty_port
    port = ESSXRS485(path, 9600, dir_pin="P8_9", timeout=0.2)
    assert events == [("setup", "P8_9", "out"), ("low", "P8_9")]  # set up at open, receive
    del events[:]
    assert port.write(b"\x01\x04abc") == 5
    assert events == [("high", "P8_9"), ("write", b"\x01\x04abc"), ("drained",), ("low", "P8_9")]
    assert os.read(master, 100) == b"\x01\x04abc"  # the bytes really went out on the pty
    port.close()
    assert events[-1] == ("low", "P8_9")


def test_gpiod_pin_order_transmit_write_drain_receive(pty_port, fake_gpiod, recorded_serial, events):
    path, master = pty_port
    port = ESSXRS485(path, 9600, dir_pin="gpiochip1:17", timeout=0.2)
    assert events == [("request", "/dev/gpiochip1", 17, "output", "inactive")]
    del events[:]
    port.write(b"xyz")
    assert events == [("high", 17), ("write", b"xyz"), ("drained",), ("low", 17)]
    assert os.read(master, 100) == b"xyz"
    port.close()
    assert events[-2:] == [("low", 17), ("release",)]


def test_pin_is_released_on_close_and_set_up_again_on_reopen(pty_port, fake_gpiod, events):
    path, _ = pty_port
    port = ESSXRS485(path, dir_pin="gpiochip0:line-de")
    port.close()
    port.open()
    port.close()
    kinds = [event[0] for event in events]
    assert kinds == ["request", "low", "release", "request", "low", "release"]
    assert events[0][2] == "line-de"  # a line name is passed through as a name


def test_receive_even_when_the_write_fails(pty_port, fake_bbio, monkeypatch, events):
    path, _ = pty_port
    port = ESSXRS485(path, dir_pin="P8_7")

    def broken(self, data):
        raise serial.SerialException("write failed: [Errno 5] Input/output error")

    monkeypatch.setattr(serial.Serial, "write", broken)
    with pytest.raises(serial.SerialException):
        port.write(b"abc")
    assert events[-2:] == [("high", "P8_7"), ("low", "P8_7")]
    port.close()


def test_injected_driver_with_transmit_receive(pty_port, recorded_serial, events):
    path, master = pty_port

    class Driver:
        def setup(self):
            events.append(("setup",))

        def transmit(self):
            events.append(("transmit",))

        def receive(self):
            events.append(("receive",))

        def close(self):
            events.append(("close",))

    port = ESSXRS485(path, dir_pin="P8_9", pin_driver=Driver())  # no Adafruit_BBIO needed
    port.write(b"\x00\x01")
    port.close()
    assert events == [("setup",), ("transmit",), ("write", b"\x00\x01"), ("drained",),
                      ("receive",), ("close",)]
    assert os.read(master, 10) == b"\x00\x01"


def test_injected_driver_with_set_level(pty_port, recorded_serial, events):
    path, _ = pty_port

    class Driver:
        def set(self, level):
            events.append(("set", level))

        def close(self):
            events.append(("close",))

    port = ESSXRS485(path, pin_driver=Driver())
    port.write(b"A")
    port.close()
    assert events == [("set", 1), ("write", b"A"), ("drained",), ("set", 0), ("close",)]


def test_missing_adafruit_bbio_names_the_bbb_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO", None)
    monkeypatch.setitem(sys.modules, "Adafruit_BBIO.GPIO", None)
    with pytest.raises(ESSXConfigException, match=r"P8_9.*Adafruit_BBIO.*\[bbb\]"):
        ESSXRS485(None)  # the default dir_pin is P8_9 (spec 5.4.1)


def test_missing_gpiod_names_the_gpiod_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)
    with pytest.raises(ESSXConfigException, match=r"gpiochip0:5.*\[gpiod\]"):
        ESSXRS485(None, dir_pin="gpiochip0:5")


def test_old_gpiod_without_request_lines_is_refused(monkeypatch):
    old = types.ModuleType("gpiod")
    old.line = types.ModuleType("gpiod.line")
    monkeypatch.setitem(sys.modules, "gpiod", old)
    monkeypatch.setitem(sys.modules, "gpiod.line", old.line)
    with pytest.raises(ESSXConfigException, match="gpiod 2.x"):
        make_pin("gpiochip0:5")


@pytest.mark.parametrize("name", ["P8_9", "P8_7", "P9_12", "GPIO1_28"])
def test_bbb_pin_names_select_bbio(name, fake_bbio):
    kind, pin = make_pin(name)
    assert kind == "bbio" and isinstance(pin, BBIOPin) and pin.name == name


@pytest.mark.parametrize("name, chip, line", [
    ("gpiochip0:17", "/dev/gpiochip0", 17),
    ("/dev/gpiochip2:DE", "/dev/gpiochip2", "DE"),
])
def test_gpiochip_names_select_gpiod(name, chip, line, fake_gpiod):
    kind, pin = make_pin(name)
    assert kind == "gpiod" and isinstance(pin, GpiodPin)
    assert (pin.chip, pin.line) == (chip, line)


@pytest.mark.parametrize("name", ["not_used", None, "NOT_USED"])
def test_not_used_means_no_pin(name):
    kind, pin = make_pin(name)
    assert kind == "none" and isinstance(pin, NoPin)


@pytest.mark.parametrize("name", ["P10_1", "gpio17", "rs-485", 7])
def test_unknown_dir_pin_is_a_config_error(name):
    with pytest.raises(ESSXConfigException, match="dir_pin"):
        make_pin(name)


def test_not_used_writes_plainly_without_drain(pty_port, recorded_serial, events):
    path, master = pty_port
    port = ESSXRS485(path, dir_pin="not_used")
    port.write(b"plain")
    port.close()
    assert events == [("write", b"plain")]
    assert os.read(master, 10) == b"plain"


def test_rs485_mode_is_requested_from_the_kernel(pty_port):
    path, _ = pty_port
    port = ESSXRS485(None, dir_pin="rs485")
    port.port = path
    with pytest.raises(ESSXConfigException, match="rs485.*kernel RS485 mode"):
        port.open()  # a pty has no TIOCSRS485: the refusal is a clear config error
    assert port.rs485_mode.rts_level_for_tx is True
    assert port.rs485_mode.rts_level_for_rx is False
    assert not port.is_open


def test_drop_echo_reads_back_exactly_the_echo(pty_port, fake_bbio):
    path, master = pty_port
    port = ESSXRS485(path, 9600, dir_pin="P8_9", drop_echo=True, timeout=0.5)
    # The "bus" echoes the request and the reply follows at once.
    os.write(master, b"REQ" + b"REPLY")
    port.write(b"REQ")
    assert os.read(master, 10) == b"REQ"
    assert port.read(5) == b"REPLY"  # the reply behind the echo is kept
    port.close()


def test_drop_echo_without_echo_gives_up_at_its_deadline(pty_port, fake_bbio, caplog):
    path, master = pty_port
    port = ESSXRS485(path, 9600, dir_pin="P8_9", drop_echo=True)
    start = time.monotonic()
    assert port.write(b"Q") == 1  # returns after the echo deadline, with a warning
    elapsed = time.monotonic() - start
    assert ECHO_MARGIN_S <= elapsed < ECHO_MARGIN_S + 1.0  # waited, but did not hang
    assert "does not match" in caplog.text
    assert os.read(master, 10) == b"Q"
    port.close()


def _sysfs_tty(root, name, bus):
    """A fake /sys/class/tty/<name> whose device is on *bus*."""
    (root / "bus" / bus).mkdir(parents=True, exist_ok=True)
    device = root / "devices" / name
    device.mkdir(parents=True)
    (device / "subsystem").symlink_to(root / "bus" / bus)
    (root / "class" / "tty" / name).mkdir(parents=True)
    (root / "class" / "tty" / name / "device").symlink_to(device)
    return str(root / "class" / "tty")


def test_usb_serial_tells_a_usb_adapter_from_a_uart_and_a_pty(tmp_path):
    sysfs = _sysfs_tty(tmp_path, "ttyUSB0", "usb-serial")
    _sysfs_tty(tmp_path, "ttyO2", "platform")
    assert usb_serial("/dev/ttyUSB0", sysfs) is True
    assert usb_serial("/dev/ttyO2", sysfs) is False
    assert usb_serial("/dev/pts/7", sysfs) is False   # a pty has no sysfs entry
    assert usb_serial(None, sysfs) is False
    link = tmp_path / "rs485-dcdc"                    # a udev symlink to the adapter
    link.symlink_to("/dev/ttyUSB0")
    assert usb_serial(str(link), sysfs) is True


def _later(delay, fn, *args):
    timer = threading.Timer(delay, fn, args)
    timer.start()
    return timer


def test_read_at_least_waits_for_the_bytes_and_restores_vmin(pty_port):
    path, master = pty_port
    port = ESSXRS485(path, 19200, dir_pin="not_used", timeout=0.01)
    try:
        assert port.vmin_wait is True                 # a pty: the terminal's VMIN does the wait
        before = termios.tcgetattr(port.fileno())[6][termios.VMIN]
        os.write(master, b"\x02\x02\x00")
        timer = _later(0.2, os.write, master, b"\x10\x00\x00")
        assert port.read_at_least(6, 5.0) == b"\x02\x02\x00\x10\x00\x00"   # not the first 3 alone
        timer.join()
        assert termios.tcgetattr(port.fileno())[6][termios.VMIN] == before
        os.write(master, b"ab")
        assert port.read_at_least(9, 0.2) == b"ab"    # the timeout: what came, no error
        assert port.read_at_least(1, 0.05) == b""
    finally:
        port.close()


def test_read_at_least_on_a_usb_adapter_returns_the_first_bytes(pty_port, monkeypatch):
    path, master = pty_port
    monkeypatch.setattr("essx.essx_rs485.usb_serial", lambda port: True)
    port = ESSXRS485(path, 19200, dir_pin="not_used", timeout=0.01)
    try:
        assert port.vmin_wait is False                # no tcsetattr a wait on a USB adapter
        os.write(master, b"\x02\x02\x00")
        timer = _later(0.2, os.write, master, b"\x10")
        assert port.read_at_least(6, 5.0) == b"\x02\x02\x00"
        timer.join()
        assert port.read_at_least(1, 5.0) == b"\x10"
    finally:
        port.close()
