"""The reference's bytes for every value it can send (issue 9 point 5).

The reference (eza2500/eza_util.py ``q_normalize``) encodes with
``int((2 ** q) * Decimal(val) / Decimal(ratings))`` in Python's default
decimal context, ``ratings`` a string such as '52.08' and ``val`` whatever
the caller passed (a float exactly in binary, a str by its digits, an int as
itself).  ``reference_raw`` below is that formula written again, independently
of the codec: it is the specification of the bytes.
"""
import copy
import decimal
import json
import pickle
import random
import struct

import pytest

import eza2500
from essx.essx_exception import ESSXValueException
from eza2500 import codec, table

H = bytes.fromhex

#: Ratings as the reference writes them (docs/eza2500-protocol.md, "Command table").
RATINGS = {
    "cvb": "48", "drb": "1", "dvg": "380", "drg": "1", "pdz": "380", "mdz": "380",
    "cib": "52.08", "dig": "7.8125", "ubv": "48", "ugv": "380", "obv": "48", "ogv": "380",
    "dlb": "48", "cdb": "48", "ddb": "48", "ccr": "48", "ddr": "48",
}
SETTABLE_Q = {f.name: f for g in table.GROUPS for f in (g.write or ()) if not f.is_raw}
CIB, DIG = SETTABLE_Q["cib"], SETTABLE_Q["dig"]
GOLDEN_6_4 = dict(cib=52, dig=2.5, ubv=40, ugv=300, obv=59, ogv=400)


def reference_raw(val, q, ratings):
    """The reference's arithmetic: default context, product then quotient."""
    with decimal.localcontext(decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)):
        return int((2 ** q) * decimal.Decimal(val) / decimal.Decimal(ratings))


def test_ratings_are_the_references():
    assert set(SETTABLE_Q) == set(RATINGS)
    for name, f in SETTABLE_Q.items():
        assert f.rating_decimal == decimal.Decimal(RATINGS[name]), name


@pytest.mark.parametrize("value, raw, wire", [
    (52.08, 0x1FFF, "ff 1f"),      # float: binary 52.0799999... truncates below 8192
    (26.04, 0x0FFF, "ff 0f"),
    (13.02, 0x07FF, "ff 07"),
    ("52.08", 0x2000, "00 20"),    # str: exactly 8192
    ("26.04", 0x1000, "00 10"),
    ("13.02", 0x0800, "00 08"),
    (52, 8179, "f3 1f"),           # int: the golden vector's cib
    (26, 4089, "f9 0f"),
    ("52", 8179, "f3 1f"),
    (decimal.Decimal("52.08"), 0x2000, "00 20"),
])
def test_cib_bytes(value, raw, wire):
    assert codec.encode_value(CIB, value) == raw == reference_raw(value, 13, "52.08")
    frame = eza2500.Command0604(None).pack_senddata(0, 16, dict(GOLDEN_6_4, cib=value))
    assert frame[5:7] == H(wire)
    assert frame[7:17] == H("3d 0a 55 35 86 32 aa 4e 5e 43")   # the other fields as golden
    assert codec.checksum_ok(frame)


def test_cib_52_08_whole_frame():
    frame = eza2500.Command0604(None).pack_senddata(0, 16, dict(GOLDEN_6_4, cib=52.08))
    assert frame == codec.with_checksum(H("05 0c 00 10 1c ff 1f 3d 0a 55 35 86 32 aa 4e 5e 43 00 00"))


@pytest.mark.parametrize("field", [CIB, DIG], ids=["cib", "dig"])
def test_every_raw_decodes_and_encodes_back(field):
    for raw in range(field.raw_min, field.raw_max + 1):
        value = codec.decode_value(field, raw)
        assert codec.encode_value(field, value) == raw
        assert value.exact == decimal.Decimal(raw) * decimal.Decimal(RATINGS[field.name]) / 2 ** field.q


def test_6_1_read_then_6_4_sent_back_is_the_same_raw():
    g = table.group(6)
    raws = {f.name: codec.raw_range(f)[1] for f in g.write}   # the highest each may carry
    raws["cib"] = 0x1FFF                                        # what the reference sends for 52.08
    assert raws == dict(cib=0x1FFF, dig=8929, ubv=23210, ugv=18324, obv=23210, ogv=18324)
    ack = codec.build_ack(0, 16, g, False, raws, raw=True)
    values = codec.parse_reply(ack, g, False, 0, 16)
    frame = eza2500.Command0604(None).pack_senddata(0, 16, values)
    assert struct.unpack("<6H", frame[5:17]) == tuple(raws[f.name] for f in g.write)


def _random_values(rng, f):
    lo, hi = float(f.lo), float(f.hi)
    x = rng.uniform(lo, hi)
    short = round(x, rng.randint(0, 4))
    short = min(max(short, lo), hi)
    return [x, short, str(short), repr(x), int(short) if lo <= int(short) <= hi else int(lo)]


def test_random_values_against_the_reference_formula():
    rng = random.Random(20261124)
    checked = 0
    for _ in range(300):
        f = SETTABLE_Q[rng.choice(sorted(SETTABLE_Q))]
        for value in _random_values(rng, f):
            assert codec.encode_value(f, value) == reference_raw(value, f.q, RATINGS[f.name]), (f.name, value)
            checked += 1
    assert checked == 1500


def test_bounds_encode_alike_as_float_and_as_str():
    """A float bound (56.77) passes the range check and encodes as the bound
    written as a string: the binary value's excess never reaches a raw step."""
    for f in SETTABLE_Q.values():
        for bound in (f.lo, f.hi):
            assert codec.encode_value(f, float(bound)) == codec.encode_value(f, str(bound)), (f.name, bound)
            codec.validate((f,), {f.name: float(bound)})


def test_range_check_on_the_value_as_written():
    assert codec.validate((CIB,), {"cib": 56.77}) == {"cib": reference_raw(56.77, 13, "52.08")}
    with pytest.raises(ESSXValueException, match=r"cib=56.7700001 is out of range \[0, 56.77\] A"):
        codec.validate((CIB,), {"cib": 56.7700001})
    with pytest.raises(ESSXValueException, match="out of range"):
        codec.validate((CIB,), {"cib": "-0.001"})


def test_decoded_value_prints_as_a_float():
    value = codec.decode_value(DIG, 2621)
    assert isinstance(value, float) and value == float(value.exact)
    assert json.dumps({"dig": value}) == json.dumps({"dig": float(value)}) == '{"dig": 2.4995803833007812}'
    assert repr(value) == repr(float(value))
    assert value.exact == decimal.Decimal("2.49958038330078125")


def test_decoded_value_survives_copy_and_pickle():
    value = codec.decode_value(CIB, 0x1FFF)
    for clone in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert type(clone) is codec.QValue and clone.exact == value.exact
        assert codec.encode_value(CIB, clone) == 0x1FFF


def test_plain_float_of_a_decoded_value_is_encoded_as_the_reference_would():
    """Only the exact value carries the raw back; a plain float (e.g. after
    JSON) is encoded as the reference encodes that float."""
    value = float(codec.decode_value(CIB, 0x1FFF))
    assert codec.encode_value(CIB, value) == reference_raw(value, 13, "52.08")


def test_encoding_ignores_the_callers_decimal_context():
    with decimal.localcontext(decimal.Context(prec=5, rounding=decimal.ROUND_UP)):
        assert codec.encode_value(CIB, 52.08) == 0x1FFF
        assert codec.decode_value(CIB, 0x1FFF).exact == decimal.Decimal("52.073642578125")
