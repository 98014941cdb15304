"""EZA2500Device and the reply reader over fake port objects (no pty)."""
import time

import pytest
from fake_ports import FakePort, NoisePort

import eza2500
from eza2500 import codec, table
from eza2500.reader import read_reply
from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXIOException,
    ESSXTimeoutException,
    ESSXValueException,
)

ACK_1_1 = codec.build_ack(0, 16, 1, False, {"mode": 0x14})


# --- EZA2500Device ------------------------------------------------------------------


def test_defaults_and_low_level_timeout():
    port = FakePort()
    dev = eza2500.EZA2500Device(port)
    assert dev.timeout == 0.1 and port.timeout == 0.01
    assert eza2500.EZA2500Device(FakePort(), timeout=0.25).timeout == 0.25


def test_read_collects_exactly_size_bytes():
    dev = eza2500.EZA2500Device(FakePort([b"\x01", b"\x02\x03", b"\x04\x05\x06"]))
    assert dev.read(4) == b"\x01\x02\x03\x04"
    assert dev.read(2) == b"\x05\x06"


def test_read_timeout():
    dev = eza2500.EZA2500Device(FakePort([b"\x01"]), timeout=0.03)
    with pytest.raises(ESSXTimeoutException) as err:
        dev.read(4)
    assert not isinstance(err.value, ESSXIOException)


def test_write_resets_input_first_and_opens_closed_port():
    port = FakePort()
    port.is_open = False
    dev = eza2500.EZA2500Device(port)
    dev.write(b"\x05\x00")
    assert [c[0] for c in port.calls] == ["open", "reset", "write"]


def test_partial_writes_are_completed():
    class Slow(FakePort):
        def write(self, data):
            self.written.append(bytes(data[:1]))
            return 1

    port = Slow()
    eza2500.EZA2500Device(port).write(b"abc")
    assert port.written == [b"a", b"b", b"c"]


def test_io_error_closes_port_and_next_write_reopens():
    port = FakePort(fail_read=OSError(5, "Input/output error"))
    dev = eza2500.EZA2500Device(port)
    with pytest.raises(ESSXIOException) as err:
        dev.read(2)
    assert "/dev/fake" in str(err.value)
    assert not port.is_open
    port.fail_read = None
    dev.write(b"x")
    assert ("open",) in port.calls


def test_close_errors_are_ignored():
    class BadClose(FakePort):
        def close(self):
            raise OSError("close failed")

    dev = eza2500.EZA2500Device(BadClose(fail_read=OSError("gone")))
    with pytest.raises(ESSXIOException) as err:
        dev.read(1)
    assert "gone" in str(err.value)  # the read's error, not the close's


# --- reader ---------------------------------------------------------------------------------


def _reader(chunks, group=1, write=False, timeout=0.05):
    dev = eza2500.EZA2500Device(FakePort(chunks), timeout=timeout)
    return read_reply(dev, table.group(group), write, None, 0, 16)


def test_reader_reads_a_split_frame():
    assert _reader([ACK_1_1[:1], ACK_1_1[1:4], ACK_1_1[4:]]) == ACK_1_1


def test_reader_skips_noise_and_wrong_len():
    junk = bytes([0x11, 0x02, 0x55, 0x02, 0x77, 0x99])  # SFDs followed by impossible LENs
    assert _reader([junk + ACK_1_1]) == ACK_1_1


def test_reader_resyncs_past_a_frame_like_false_start():
    false = bytes([0x02, 0x02, 0x00, 0x10, 0x80, 0x00])  # looks like a NAK but isn't
    assert _reader([false + ACK_1_1]) == ACK_1_1


def test_reader_bad_checksum_on_quiet_line():
    with pytest.raises(ESSXChecksumException):
        _reader([ACK_1_1[:-1] + bytes([ACK_1_1[-1] ^ 0xFF])])


def test_reader_unexpected_cmd():
    other = codec.build_ack(0, 16, 15, False, {"min": 1, "maj": 2})  # same LEN as 1-1
    with pytest.raises(ESSXValueException, match="unexpected CMD"):
        _reader([other])


def test_reader_nak_is_returned_for_parse():
    nak = codec.build_nak(0, 16, 0x00, 0xFFFD)
    assert _reader([nak]) == nak


def test_reader_9_4_ack_and_nak_share_len():
    ack = codec.build_ack(0, 16, 9, True, {"d0": 0, "d1": 0})
    assert codec.parse_reply(_reader([ack], 9, True), table.group(9), True) == {"d0": 0, "d1": 0}
    with pytest.raises(ESSXDeviceException):
        codec.parse_reply(_reader([codec.build_nak(0, 16, 0x12, 0xFFFE)], 9, True), table.group(9), True)


def test_reader_timeout_on_half_frame():
    with pytest.raises(ESSXTimeoutException):
        _reader([ACK_1_1[:4]])


def test_continuous_noise_times_out_at_the_deadline():
    """A reader facing continuous noise raises ESSXTimeoutException at its
    deadline, not later (one low-level read past it at most; the overrun
    itself, ~10 ms, is measured by bench/reader_overrun.py)."""
    dev = eza2500.EZA2500Device(NoisePort(), timeout=0.1)
    for group, write in ((table.group(10), False), (table.group(1), False), (table.group(9), True)):
        t0 = time.monotonic()
        with pytest.raises(ESSXTimeoutException):
            read_reply(dev, group, write, t0 + dev.timeout, 0, 16)
        assert time.monotonic() - t0 <= dev.timeout + 0.1


# --- commands ---------------------------------------------------------------------------------


def test_command_send_recv_and_nak_response():
    port = FakePort([ACK_1_1])
    dev = eza2500.EZA2500Device(port)
    cmd = eza2500.Command0101(dev)
    assert cmd.response == {} and cmd.name == "1-1" and cmd.group.number == 1 and not cmd.write
    cmd.send(0, 16, None)
    assert port.written == [bytes.fromhex("05 00 00 10 00 10 00")]
    assert cmd.recv() == {"mode": 0x14} == cmd.response
    port.chunks.append(codec.build_nak(0, 16, 0x00, 0xFFFC))
    cmd.send(0, 16)
    with pytest.raises(ESSXDeviceException) as err:
        cmd.recv()
    assert err.value.ercd == 0xFFFC and err.value.command == "1-1"
    assert cmd.response == {"ercd": 0xFFFC}


def test_command_validation_before_any_io():
    port = FakePort()
    with pytest.raises(ESSXValueException):
        eza2500.Command0404(eza2500.EZA2500Device(port)).send(0, 16, {"dvg": 1000, "drg": 0})
    assert port.written == [] and port.calls == []


def test_reply_from_other_address_is_accepted():
    """As the reference: a reply's AD1/AD2 are not compared with the request's."""
    port = FakePort([codec.build_ack(0, 17, 1, False, {"mode": 0x14})])
    cmd = eza2500.Command0101(eza2500.EZA2500Device(port, timeout=0.05))
    cmd.send(0, 16)
    cmd.recv()
    assert cmd.response == {"mode": 0x14}


def test_reopen_sets_low_level_timeout_and_wraps_its_errors():
    class Reconfig(FakePort):
        fail = False

        def __setattr__(self, name, value):
            if name == "timeout" and self.fail:
                raise OSError("cannot configure")
            super().__setattr__(name, value)

    port = Reconfig()
    dev = eza2500.EZA2500Device(port)
    port.is_open, port.timeout = False, None
    dev.write(b"x")
    assert port.timeout == 0.01
    port.is_open, port.fail = False, True
    with pytest.raises(ESSXIOException, match="cannot configure"):
        dev.write(b"x")
    assert not port.is_open
