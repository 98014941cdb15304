"""EZA2500 table and codec: golden vectors (docs/eza2500-protocol.md), Q-format, validation."""
import struct

import pytest
from hypothesis import given, strategies as st

import eza2500
from eza2500 import codec, table
from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXParameterException,
    ESSXValueException,
)

H = bytes.fromhex

# --- golden vectors (docs/eza2500-protocol.md, "Golden vectors", AD1 = 0, AD2 = 16) ------


def test_golden_1_1_request():
    assert eza2500.Command0101(None).pack_senddata(0, 16, None) == H("05 00 00 10 00 10 00")


def test_golden_1_4_request():
    assert eza2500.Command0104(None).pack_senddata(0, 16, {"mode": 0x0014}) == H("05 02 00 10 00 14 00 24 00")


def test_golden_4_4_request():
    frame = eza2500.Command0404(None).pack_senddata(0, 16, {"dvg": 300, "drg": 0.1})
    assert frame == H("05 04 00 10 1a 86 32 33 03 18 01")
    assert struct.unpack("<HH", frame[5:9]) == (12934, 819)


def test_golden_6_4_request():
    params = dict(cib=52, dig=2.5, ubv=40, ugv=300, obv=59, ogv=400)
    frame = eza2500.Command0604(None).pack_senddata(0, 16, params)
    assert frame == H("05 0c 00 10 1c f3 1f 3d 0a 55 35 86 32 aa 4e 5e 43 60 04")
    assert struct.unpack("<6H", frame[5:17]) == (8179, 2621, 13653, 12934, 20138, 17246)


def test_golden_nak():
    frame = codec.build_nak(0, 16, 0x00, table.ERCD_BUSY)
    assert frame == H("02 02 00 10 80 fc ff 8b 02")
    assert len(frame) == table.NAK_LENGTH == 9
    with pytest.raises(ESSXDeviceException) as err:
        codec.parse_reply(frame, table.group(1), False)
    assert err.value.ercd == table.ERCD_BUSY and err.value.command == "1-1" and err.value.retryable


GOLDEN_10_1 = dict(vg=350, ig=2.5, vb=52, ib=-16.5, wg=875, wb=-858, ic=0, tmp=30.5)
GOLDEN_10_1_FRAME = H("02 10 00 10 09 f2 3a 3d 0a 55 45 dd f5 cc 02 42 fd 00 00 40 0f 54 06")


def test_golden_10_1_ack_built():
    assert codec.build_ack(0, 16, 10, False, GOLDEN_10_1) == GOLDEN_10_1_FRAME


def test_golden_10_1_ack_decoded():
    g = table.group(10)
    values = codec.parse_reply(GOLDEN_10_1_FRAME, g, False, 0, 16)
    assert list(values) == [f.name for f in g.read]
    for f in g.read:
        assert abs(values[f.name] - GOLDEN_10_1[f.name]) < codec.q_step(f), f.name


def test_reference_checksum_example():
    assert codec.with_checksum(b"123456789") == b"1234567\x09\x01"
    assert codec.checksum(b"34567") == 0x0109


def test_q_examples_from_spec():
    f_dvg = table.group(4).write[0]
    f_drg = table.group(4).write[1]
    assert codec.encode_value(f_dvg, 300) == 12934
    assert codec.decode_value(f_dvg, 12934) == 299.98291015625
    assert codec.decode_value(f_drg, codec.encode_value(f_drg, 0.1)) == 0.0999755859375


def test_negative_values_truncate_toward_zero():
    f_ib = table.group(10).read[3]
    assert codec.encode_value(f_ib, -16.5) == -2595  # -2595.39...


# --- the table ----------------------------------------------------------------


def test_table_has_every_command_once():
    names = table.command_names()
    assert len(names) == len(set(names)) == 24
    assert set(names) == set(eza2500.COMMANDS)
    assert [g.number for g in table.GROUPS] == list(range(1, 17))
    assert len({g.cmd for g in table.GROUPS}) == 16
    for name, cls in eza2500.COMMANDS.items():
        assert cls.name == name
        assert cls.__name__ == "Command%02d%02d" % (cls.group.number, 4 if cls.write else 1)
        assert getattr(eza2500, cls.__name__) is cls
        assert table.parse_name(name) == (cls.group, cls.write)


def test_read_only_groups():
    assert sorted(g.number for g in table.GROUPS if g.write is None) == [2] + list(range(10, 17))
    with pytest.raises(KeyError):
        table.parse_name("2-4")


def test_lookup_and_lengths():
    g = table.group_by_cmd(0x1C)
    assert g is table.group(6) and g.name(True) == "6-4"
    assert table.group_by_cmd(0x33) is None
    assert g.request_length(False) == 7 and g.request_length(True) == 19
    assert g.ack_length(False) == g.ack_length(True) == 19
    assert table.group(10).ack_length(False) == 23
    g9 = table.group(9)
    assert [f.name for f in g9.write] == [f.name for f in g9.write_ack] == ["d0", "d1"]
    assert g9.request_length(True) == 9 and g9.ack_length(True) == 9 and g9.ack_length(False) == 13


def test_mode_allowed_values():
    assert table.group(1).write[0].allowed == {0x0000, 0x0002, 0x0014, 0x0041}
    assert table.SETTABLE_MODES == (0x0000, 0x0002, 0x0014, 0x0041)
    assert frozenset(table.SETTABLE_MODES) == table.MODES
    assert all(table.mode_name(m) != table.UNKNOWN_NAME for m in table.SETTABLE_MODES)
    assert table.mode_name(0x0003) == table.UNKNOWN_NAME


def test_nak_rows():
    codes = [table.ERCD_NOT_SUPPORTED, table.ERCD_PARAMETER_INVALID, table.ERCD_CANNOT_ACCEPT,
             table.ERCD_BUSY, table.ERCD_INTERNAL]
    assert codes == list(range(0xFFFF, 0xFFFA, -1)) and list(table.NAKS) == codes
    assert all(table.NAKS[c].ercd == c and table.NAKS[c].meaning for c in codes)
    assert [table.nak_retryable(c) for c in codes] == [False, False, True, True, False]
    assert table.nak_meaning(0x1234) == table.UNKNOWN_ERCD and not table.nak_retryable(0x1234)


@pytest.mark.parametrize("cst, running, alarm", [(0, 0, 0), (1, 1, 0), (2, 2, 0), (0b0110, 2, 1),
                                                 (0b1001, 1, 2), (0xFFF0, 0, 0), (0b1111, 3, 3)])
def test_decode_cst(cst, running, alarm):
    assert table.decode_cst(cst) == (running, alarm)


def test_status_names():
    assert table.RUNNING_STATES == {0: "off", 1: "charge", 2: "discharge"}
    assert table.ALARM_STATES == {0: "No alarm", 1: "Light alarm", 2: "Heavy alarm"}


COMPUTED = {"vg", "ig", "ib", "wg", "wb", "cst"}


def test_every_read_field_has_an_initial_value_or_is_computed():
    for g in table.GROUPS:
        for f in g.read:
            assert (f.initial is None) == (f.name in COMPUTED), (g.number, f.name)


def test_initial_values_are_settable():
    for g in table.GROUPS:
        if g.write is not None and g.number != 9:
            params = {f.name: f.initial for f in g.write}
            expected = {f.name: codec.encode_value(f, f.initial) for f in g.write}
            assert codec.validate(g.write, params) == expected
    assert table.group(1).read[0].initial == table.MODE_WAITING


# --- Q-format round trip -----------------------------------------------------------

SETTABLE_Q = [f for g in table.GROUPS for f in (g.write or ()) if not f.is_raw]


@given(st.data())
def test_encode_decode_round_trip_within_one_step(data):
    f = data.draw(st.sampled_from(SETTABLE_Q))
    value = data.draw(st.floats(min_value=f.lo, max_value=f.hi, allow_nan=False))
    decoded = codec.decode_value(f, codec.encode_value(f, value))
    step = f.rating / 2 ** f.q
    assert decoded <= value + 1e-9
    assert value - decoded < step


@given(st.sampled_from(SETTABLE_Q), st.integers(0, 0xFFFF))
def test_decode_encode_raw_is_stable(f, raw):
    """A decoded raw encodes back to itself: the decoded value carries its
    exact Decimal, so a value read and written back does not drift."""
    assert codec.encode_value(f, codec.decode_value(f, raw)) == raw


# --- validation ----------------------------------------------------------------------


def test_out_of_range_message_names_field_value_and_range():
    with pytest.raises(ESSXValueException) as err:
        eza2500.Command0404(None).pack_senddata(0, 16, {"dvg": 1000, "drg": 0})
    text = str(err.value)
    assert "dvg" in text and "1000" in text and "[260, 390] V" in text


def test_missing_value_raises_parameter_exception():
    with pytest.raises(ESSXParameterException) as err:
        eza2500.Command0404(None).pack_senddata(0, 16, {"dvg": 300})
    assert "drg" in str(err.value)


@pytest.mark.parametrize("bad", ["abc", None, [1], True, float("nan"), float("inf")])
def test_non_numeric_values(bad):
    with pytest.raises((ESSXValueException, ESSXParameterException)) as err:
        eza2500.Command0404(None).pack_senddata(0, 16, {"dvg": bad, "drg": 0})
    assert "dvg" in str(err.value)


def test_numeric_strings_and_bounds_accepted():
    cmd = eza2500.Command0404(None)
    assert cmd.pack_senddata(0, 16, {"dvg": "300", "drg": "0.1"}) == H("05 04 00 10 1a 86 32 33 03 18 01")
    cmd.pack_senddata(0, 16, {"dvg": 260, "drg": 3.999})
    cmd.pack_senddata(0, 16, {"dvg": 390, "drg": 0})
    with pytest.raises(ESSXValueException):
        cmd.pack_senddata(0, 16, {"dvg": 259.99, "drg": 0})


@pytest.mark.parametrize("mode, raw", [(0x0000, 0), (0x0002, 2), (0x0014, 0x14), (0x0041, 0x41),
                                       ("0x0014", 0x14)])
def test_modes_accepted(mode, raw):
    frame = eza2500.Command0104(None).pack_senddata(0, 16, {"mode": mode})
    assert frame == codec.with_checksum(H("05 02 00 10 00") + struct.pack("<H", raw) + b"\0\0")


@pytest.mark.parametrize("mode", [1, 0x0003, 0x0040, 0xFFFF, -1, 0x10000, 2.5])
def test_other_modes_refused(mode):
    with pytest.raises(ESSXValueException) as err:
        eza2500.Command0104(None).pack_senddata(0, 16, {"mode": mode})
    assert "mode" in str(err.value) and "0x0014" in str(err.value)


def test_raw_field_must_fit_wire_type():
    params = dict(bcf=0x10000, cvb=48, dlb=48, cdb=6, ddb=1)
    with pytest.raises(ESSXValueException) as err:
        eza2500.Command0704(None).pack_senddata(0, 16, params)
    assert "bcf" in str(err.value) and "65535" in str(err.value)
    params["bcf"] = 0xFFFF
    eza2500.Command0704(None).pack_senddata(0, 16, params)


def test_reads_ignore_params():
    for cls in eza2500.COMMANDS.values():
        if not cls.write:
            assert cls(None).pack_senddata(0, 16, None) == cls(None).pack_senddata(0, 16, {"x": 1})


def test_9_4_request():
    assert eza2500.Command0904(None).pack_senddata(0, 16, {"d0": 0, "d1": 0}) == \
        codec.with_checksum(H("05 02 00 10 12 00 00 00 00"))


# --- reply checks and request parsing -------------------------------------------------------


def test_parse_reply_checksum_and_cmd_errors():
    g = table.group(10)
    bad = GOLDEN_10_1_FRAME[:-1] + b"\x07"
    with pytest.raises(ESSXChecksumException):
        codec.parse_reply(bad, g, False)
    wrong_cmd = codec.with_checksum(GOLDEN_10_1_FRAME[:4] + b"\x0a" + GOLDEN_10_1_FRAME[5:])
    with pytest.raises(ESSXValueException, match="unexpected CMD"):
        codec.parse_reply(wrong_cmd, g, False)


def test_reply_from_other_addresses_is_accepted_and_logged(caplog):
    """As the reference: the reply's AD1/AD2 are not compared (DEBUG line)."""
    g = table.group(10)
    with caplog.at_level("DEBUG", logger="eza2500.codec"):
        assert codec.check_reply(GOLDEN_10_1_FRAME, g, False, 0, 17) is True
        values = codec.parse_reply(GOLDEN_10_1_FRAME, g, False, 1, 16)
    assert values == codec.parse_reply(GOLDEN_10_1_FRAME, g, False, 0, 16)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert len(lines) == 2 and "0/16" in lines[0] and "0/17" in lines[0] and "1/16" in lines[1]
    nak = codec.build_nak(3, 4, 0x00, table.ERCD_BUSY)
    with pytest.raises(ESSXDeviceException):
        codec.parse_reply(nak, table.group(1), False, 0, 16)


@pytest.mark.parametrize("ad1, ad2, bad", [
    (256, 16, "ad1=256"), (-1, 16, "ad1=-1"), (0, 0x110, "ad2=272"), (16.0, 16, "ad1=16.0"),
    ("0", 16, "ad1='0'"), (True, 16, "ad1=True"), (0, None, "ad2=None"),
])
def test_addresses_outside_a_byte_are_refused(ad1, ad2, bad):
    for build in (lambda: eza2500.Command0101(None).pack_senddata(ad1, ad2, None),
                  lambda: eza2500.Command0404(None).pack_senddata(ad1, ad2, {"dvg": 300, "drg": 0}),
                  lambda: codec.build_ack(ad1, ad2, 1, False, {"mode": 0}),
                  lambda: codec.build_nak(ad1, ad2, 0x00, table.ERCD_BUSY)):
        with pytest.raises(ESSXValueException) as err:
            build()
        assert bad in str(err.value) and "0..255" in str(err.value)


def test_address_bounds_accepted():
    frame = eza2500.Command0101(None).pack_senddata(255, 0, None)
    assert frame == codec.with_checksum(H("05 00 ff 00 00 00 00"))


def test_parse_request_round_trip():
    for name, cls in eza2500.COMMANDS.items():
        params = {}
        if cls.write:
            params = {f.name: (f.hi if f.hi is not None else min(f.allowed)) for f in cls.group.write}
        req = codec.parse_request(cls(None).pack_senddata(0, 16, params))
        assert (req.name, req.group, req.write, req.supported) == (name, cls.group, cls.write, True)
        if cls.write:
            assert req.raws == codec.validate(cls.group.write, params)


def test_parse_request_unknown_and_unsupported():
    unknown = codec.parse_request(codec.with_checksum(H("05 00 00 10 33 00 00")))
    assert unknown.group is None and not unknown.supported
    ro_write = codec.parse_request(codec.with_checksum(H("05 02 00 10 01 00 00 00 00")))
    assert ro_write.group is table.group(2) and ro_write.write and not ro_write.supported
    with pytest.raises(ESSXChecksumException):
        codec.parse_request(H("05 00 00 10 00 00 00"))
