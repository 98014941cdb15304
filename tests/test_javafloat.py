"""apismain.javafloat: Java's Float.toString, as apis-main writes numbers into the driver's URLs.

The expected strings were printed by Float.toString of OpenJDK 17 (the
FloatingDecimal algorithm of Java 8, which apis-main runs on) and of
OpenJDK 25 (the shortest-decimal algorithm of JDK 19+); they agree on every
value here. For |x| >= 1e9 the two differ (2.5107479E9 vs 2.510748E9): apis-main
sends nothing that large, and this module writes the JDK 19+ form."""
import struct

import pytest

from apismain.javafloat import f32, float_to_string, number_to_string

#: (IEEE 754 single bits, Float.toString of JDK 17 and 25)
VECTORS = [
    (0x43af0000, "350.0"), (0x40133333, "2.3"), (0x3d1fbe77, "0.039"), (0x00000000, "0.0"),
    (0x80000000, "-0.0"), (0x3f800000, "1.0"), (0x3e000000, "0.125"), (0x3fffee00, "1.9994507"),
    (0x3a7a0000, "9.536743E-4"), (0x3f7fdc00, "0.9994507"), (0x43aefe70, "349.9878"),
    (0x3d1f8000, "0.03894043"), (0x401327e0, "2.2993088"), (0x439b0000, "310.0"), (0x43be0000, "380.0"),
    (0x3a83126f, "0.001"), (0x3a83126e, "9.999999E-4"), (0x4b189680, "1.0E7"), (0x4b18967f, "9999999.0"),
    (0x3dcccccd, "0.1"), (0x3e4ccccd, "0.2"), (0x3e99999a, "0.3"), (0x42c80000, "100.0"),
    (0x00000001, "1.4E-45"), (0x7f7fffff, "3.4028235E38"), (0x42f6e979, "123.456"),
    (0x39000000, "1.2207031E-4"), (0xc0000000, "-2.0"), (0xbe000000, "-0.125"), (0x40800350, "4.0004044"),
    (0x3727c5ac, "1.0E-5"),
]


@pytest.mark.parametrize("bits, text", VECTORS, ids=[t for _, t in VECTORS])
def test_float_to_string_is_javas(bits, text):
    value = struct.unpack("<f", struct.pack("<I", bits))[0]
    assert float_to_string(value) == text


def test_values_are_rounded_to_float_first():
    # JsonObject.getFloat narrows the driver's double: 349.98779296875 -> 349.9878
    assert float_to_string(349.98779296875) == "349.9878"
    # float arithmetic, as GridCurrentStepping adds the step to the cached dig
    assert float_to_string(f32(f32(0.99945068359375) + f32(1.0))) == "1.9994507"
    assert f32(0.1) != 0.1 and f32(f32(0.1)) == f32(0.1)


def test_special_values():
    assert float_to_string(float("nan")) == "NaN"
    assert float_to_string(float("inf")) == "Infinity"
    assert float_to_string(float("-inf")) == "-Infinity"


def test_number_to_string_keeps_integers_integers():
    assert number_to_string(0) == "0"           # drg Integer.valueOf(0)
    assert number_to_string(0.0) == "0.0"       # dig 0F
    assert number_to_string(350.0) == "350.0"
    with pytest.raises(TypeError):
        number_to_string(True)
    with pytest.raises(TypeError):
        number_to_string("1")
