"""Numbers as apis-main writes them into a URL: Java's ``Float.toString``.

apis-main builds the driver's query strings by string concatenation
(``"/dcdc/set?mode=" + ... + "&dvg=" + voltage + ...``,
DcdcV2DeviceControlling.java:227, 241, 253), so a ``Float`` argument is
written by ``Float.toString`` and an ``Integer`` by ``Integer.toString``:
``350.0``, ``2.3``, ``1.9994507``, ``9.536743E-4``, and the droop ratio
``0`` where apis-main passes ``Integer.valueOf(0)`` (DcdcDeviceControlling.java:305, 368).

The values apis-main computes are ``float`` (32-bit) arithmetic on values
read from JSON with ``JsonObject.getFloat`` (a ``Double`` narrowed to
``float``), e.g. ``oldValue + gridCurrentStepA_`` (GridCurrentStepping.java:90);
``f32`` rounds a Python float the same way, and ``f32`` of a sum of two
``f32`` values is Java's ``float`` sum.
"""

import math
import struct
from typing import Union

__all__ = ["f32", "float_to_string", "number_to_string"]


def f32(x: float) -> float:
    """``x`` rounded to the nearest IEEE 754 single (Java's ``(float) x``).

    Raises:
        OverflowError: ``x`` beyond the float range (Java would give Infinity;
            apis-main never sends such a value).
    """
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _shortest_digits(v: float) -> tuple:
    """(digits, exponent) of the shortest decimal that reads back as the float
    ``v`` (> 0): ``v ~ 0.d1d2... x 10**(exponent + 1)``, i.e. d1 is 10**exponent."""
    for precision in range(2, 10):
        text = "%.*e" % (precision - 1, v)
        try:
            if f32(float(text)) == v:
                break
        except OverflowError:  # rounded up past the largest float
            continue
    mantissa, exponent = text.split("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    return digits, int(exponent)


def float_to_string(x: float) -> str:
    """Java's ``Float.toString((float) x)``: the shortest decimal that
    identifies the float, plain (``350.0``, ``0.039``) for 1e-3 <= |x| < 1e7,
    else computerized scientific notation (``9.536743E-4``, ``1.0E7``);
    always at least one digit after the point.

    Raises:
        OverflowError: ``x`` beyond the float range.
    """
    v = f32(x)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, v) < 0 else ""
    if v == 0:
        return sign + "0.0"
    digits, exp = _shortest_digits(abs(v))
    if 1e-3 <= abs(v) < 1e7:
        if exp >= 0:
            whole = digits[: exp + 1].ljust(exp + 1, "0")
            return sign + whole + "." + (digits[exp + 1 :] or "0")
        return sign + "0." + "0" * (-exp - 1) + digits
    return sign + digits[0] + "." + (digits[1:] or "0") + "E" + str(exp)


def number_to_string(value: Union[int, float]) -> str:
    """A ``java.lang.Number`` as apis-main concatenates it: an ``int`` as
    ``Integer.toString`` (``0``), a ``float`` as ``Float.toString``.

    Raises:
        TypeError: ``value`` is a bool or not a number.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("expected an int (Java Integer) or a float (Java Float), got %r" % (value,))
    if isinstance(value, int):
        return str(value)
    return float_to_string(value)
