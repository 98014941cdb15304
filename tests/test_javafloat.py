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
    (0x43AF0000, "350.0"),
    (0x40133333, "2.3"),
    (0x3D1FBE77, "0.039"),
    (0x00000000, "0.0"),
    (0x80000000, "-0.0"),
    (0x3F800000, "1.0"),
    (0x3E000000, "0.125"),
    (0x3FFFEE00, "1.9994507"),
    (0x3A7A0000, "9.536743E-4"),
    (0x3F7FDC00, "0.9994507"),
    (0x43AEFE70, "349.9878"),
    (0x3D1F8000, "0.03894043"),
    (0x401327E0, "2.2993088"),
    (0x439B0000, "310.0"),
    (0x43BE0000, "380.0"),
    (0x3A83126F, "0.001"),
    (0x3A83126E, "9.999999E-4"),
    (0x4B189680, "1.0E7"),
    (0x4B18967F, "9999999.0"),
    (0x3DCCCCCD, "0.1"),
    (0x3E4CCCCD, "0.2"),
    (0x3E99999A, "0.3"),
    (0x42C80000, "100.0"),
    (0x00000001, "1.4E-45"),
    (0x7F7FFFFF, "3.4028235E38"),
    (0x42F6E979, "123.456"),
    (0x39000000, "1.2207031E-4"),
    (0xC0000000, "-2.0"),
    (0xBE000000, "-0.125"),
    (0x40800350, "4.0004044"),
    (0x3727C5AC, "1.0E-5"),
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
    assert number_to_string(0) == "0"  # drg Integer.valueOf(0)
    assert number_to_string(0.0) == "0.0"  # dig 0F
    assert number_to_string(350.0) == "350.0"
    with pytest.raises(TypeError):
        number_to_string(True)
    with pytest.raises(TypeError):
        number_to_string("1")
