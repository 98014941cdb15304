"""essx.modbus_reply: the valid reply to an RTU read among the junk on the line, on bytes alone
(docs/battery-registers.md, "Junk on the line", "Function code and framing", "CRC")."""
import doctest

import pytest
from pymodbus.framer import FramerRTU

from essx import modbus_reply
from essx.modbus_reply import byte_count, crc, crc_ok, describe, find_reply
from modbus_responder import reply

REQUEST = bytes.fromhex("0104001d0002e1cd")  # unit 1, fc 4, PDU address 29, count 2, CRC
GOOD = reply([555, 0])  # the valid reply to REQUEST
NOISE = bytes(range(0x40, 0x60))  # 32 bytes that hold no frame


def frame(hex_body):
    """``hex_body`` with its CRC."""
    body = bytes.fromhex(hex_body)
    return body + crc(body)


#: Each kind of junk and how describe() names it (docs/battery-registers.md, "Junk on the line").
JUNK = {
    "echo": (REQUEST, "echo of the request"),
    "noise": (NOISE, "32 bytes of noise"),
    "other_unit": (reply([1, 2], unit=2), "reply from unit 2"),
    "other_function": (reply([1, 2], function=3), "function 3 reply"),
    "other_function_exception": (frame("018302"), "function 3 reply"),
    "other_function_write": (frame("0106001d0001"), "function 6 reply"),
    "bad_count": (reply([1, 2, 3]), "byte count 6 for 2 registers"),
    "bad_crc": (GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF]), "a reply with a bad CRC"),
    "nothing": (b"", ""),
}


def test_the_examples_in_the_docstrings_hold():
    failed, attempted = doctest.testmod(modbus_reply)
    assert (failed, attempted > 10) == (0, True)


# -- CRC ---------------------------------------------------------------------------------------
def test_crc_is_crc16_modbus_low_byte_first():
    assert crc(b"123456789") == bytes.fromhex("374b")  # check value 0x4B37
    assert crc(REQUEST[:6]) == REQUEST[6:]
    assert crc(bytes.fromhex("01040402710000")) == bytes.fromhex("aa27")  # the docs' reply
    assert crc(bytes.fromhex("018402")) == bytes.fromhex("c2c1")  # the docs' exception reply
    assert crc(REQUEST[:6]) == FramerRTU.compute_CRC(REQUEST[:6]).to_bytes(2, "big")


def test_crc_ok_checks_the_last_two_bytes():
    assert crc_ok(REQUEST) and crc_ok(GOOD)
    assert not crc_ok(REQUEST[:-1] + b"\x00")
    assert not crc_ok(REQUEST[:3])  # shorter than any frame


# -- byte count --------------------------------------------------------------------------------
@pytest.mark.parametrize("request_hex, expected", [
    ("0104001d0002e1cd", 4),  # 2 input registers
    ("0103000000070000", 14),  # 7 holding registers
    ("0101000000090000", 2),  # 9 coils: 2 bytes
    ("0102000000080000", 1),  # 8 discrete inputs: 1 byte
    ("0106001d00010000", None),  # a write
    ("0104001d0002", None),  # not a whole request
])
def test_byte_count(request_hex, expected):
    assert byte_count(bytes.fromhex(request_hex)) == expected


# -- junk --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(JUNK))
def test_each_kind_of_junk_is_named_and_not_taken(kind):
    junk, named = JUNK[kind]
    assert describe(junk, REQUEST) == named
    assert find_reply(junk, REQUEST) is None


@pytest.mark.parametrize("kind", sorted(JUNK))
def test_the_valid_reply_after_junk_is_found(kind):
    junk, _ = JUNK[kind]
    assert find_reply(junk + GOOD, REQUEST) == GOOD
    assert find_reply(junk + GOOD + reply([1, 1]), REQUEST) == GOOD  # the first one


def test_all_junk_at_once_is_named_in_order_and_the_reply_behind_it_found():
    junk = b"".join(JUNK[kind][0] for kind in ("echo", "noise", "other_unit", "bad_count"))
    assert describe(junk, REQUEST) == ("echo of the request, 32 bytes of noise, reply from "
                                       "unit 2, byte count 6 for 2 registers")
    assert find_reply(junk + GOOD, REQUEST) == GOOD


def test_repeats_are_counted_and_noise_is_summed():
    junk = REQUEST + b"\xff" + REQUEST + b"\xfe\xfd"
    assert describe(junk, REQUEST) == "echo of the request (2 times), 3 bytes of noise"


def test_bits_are_named_for_a_coil_read():
    coils = bytes.fromhex("0101000000090000")  # 9 coils: a reply has byte count 2
    coils = coils[:6] + crc(coils[:6])
    assert describe(frame("01010100"), coils) == "byte count 1 for 9 bits"
    assert find_reply(frame("0101020100"), coils) == frame("0101020100")


def test_an_exception_reply_for_our_unit_and_function_is_the_reply():
    exception = frame("018402")  # illegal data address
    assert find_reply(REQUEST + exception, REQUEST) == exception


def test_an_incomplete_reply_is_not_taken_yet():
    assert find_reply(REQUEST + GOOD[:-1], REQUEST) is None
    assert describe(GOOD[:-1], REQUEST) == "8 bytes of noise"  # not yet a frame, good or bad


def test_a_reply_with_a_bad_crc_is_skipped_for_a_good_one_behind_it():
    bad = GOOD[:-2] + b"\x00\x00"
    assert find_reply(bad, REQUEST) is None
    assert find_reply(bad + GOOD, REQUEST) == GOOD


def test_a_request_to_unit_2_takes_the_reply_of_unit_2():
    request = bytes.fromhex("0204001d0002")
    request += crc(request)
    assert find_reply(reply([1, 2]) + reply([3, 4], unit=2), request) == reply([3, 4], unit=2)
    assert describe(reply([1, 2]), request) == "reply from unit 1"


def test_a_bytearray_is_scanned_and_bytes_returned():
    found = find_reply(bytearray(REQUEST + GOOD), REQUEST)
    assert found == GOOD and type(found) is bytes
