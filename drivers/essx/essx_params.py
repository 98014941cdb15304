"""Web-API set parameters: text from the query string -> typed values (web-api.md).

The server parses each set parameter once with these functions; the
controller takes the typed values (float V/A, int mode) as they are.
"""
import math
import re
from typing import Any

from essx.essx_exception import ESSXParameterException, ESSXValueException
from eza2500.table import SETTABLE_MODES

#: A plain ASCII decimal number as clients write it ("350", "2.5", "-0.5",
#: Java's "1.0E-4").  float() alone would also take "3_50" (350), "\uff13\uff15\uff10"
#: (full-width 350) and other Unicode digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: "0x" and ASCII hex digits; int(text, 16) alone would also take "0x0_14".
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
#: Whitespace tolerated around a parameter (ASCII only).
_SPACE = " \t\r\n\f\v"
_NUMBER_HINT = "expected a decimal number such as 350 or 2.5"
#: The settable modes as a message lists them: "0x0000, 0x0002, 0x0014, 0x0041".
_MODES_TEXT = ", ".join("0x%04x" % m for m in SETTABLE_MODES)


def parse_number(name: str, value: Any) -> float:
    """Turn a request parameter into a float.

    Args:
        name: the parameter name, for the message.
        value: a str from the query string (a plain ASCII decimal number,
            optionally with an exponent and surrounding ASCII whitespace), or
            a number.
    Returns:
        float (finite).
    Raises:
        ESSXParameterException: *value* is None.
        ESSXValueException: not a finite decimal number.
    """
    if value is None:
        raise ESSXParameterException("%s is missing" % name)
    if isinstance(value, bool):
        raise ESSXValueException("%s=%r is not a number" % (name, value))
    text = value.strip(_SPACE) if isinstance(value, str) else value
    if isinstance(text, str) and not _DECIMAL.fullmatch(text):
        raise ESSXValueException("%s=%r is not a number: %s" % (name, value, _NUMBER_HINT))
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise ESSXValueException("%s=%r is not a number: %s" % (name, value, _NUMBER_HINT)) from None
    if not math.isfinite(number):
        raise ESSXValueException("%s=%r is not a finite number" % (name, value))
    return number


def parse_mode(value: Any) -> int:
    """Turn the ``mode`` parameter ("0x0014") into the converter's mode code.

    Returns:
        int, one of ``table.SETTABLE_MODES``.
    Raises:
        ESSXParameterException: missing.
        ESSXValueException: not a "0x" hex string, or not a settable mode.
    """
    if value is None:
        raise ESSXParameterException("mode is missing: expected one of %s" % _MODES_TEXT)
    if isinstance(value, int) and not isinstance(value, bool):
        code = value
    else:
        text = str(value).strip(_SPACE)
        if not text.lower().startswith("0x"):
            raise ESSXValueException("mode=%r: expected a hex string starting with 0x, one of %s"
                                     % (value, _MODES_TEXT))
        if not _HEX.fullmatch(text):
            raise ESSXValueException("mode=%r is not a hex number: expected one of %s" % (value, _MODES_TEXT))
        code = int(text, 16)
    if code not in SETTABLE_MODES:
        raise ESSXValueException("mode=%r is not a settable mode: expected one of %s" % (value, _MODES_TEXT))
    return code
