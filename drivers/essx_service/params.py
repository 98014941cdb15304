"""Web-API set parameters: query-string text -> the typed values (float V/A, int mode)
the controller takes as they are (docs/web-api.md)."""
import math
import re
from typing import Any

from essx.essx_exception import ESSXParameterException, ESSXValueException
from eza2500.table import SETTABLE_MODES

#: A plain ASCII decimal number ("350", "-0.5", Java's "1.0E-4"); float() alone would
#: also take "3_50" (350), full-width "\uff13\uff15\uff10" and other Unicode digits.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: "0x" and ASCII hex digits; int(text, 16) alone would also take "0x0_14".
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")
_SPACE = " \t\r\n\f\v"  # ASCII whitespace only
_MODES_TEXT = ", ".join("0x%04x" % m for m in SETTABLE_MODES)


def parse_number(name: str, value: Any) -> float:
    """A request parameter (query-string text, ASCII whitespace around it allowed, or a
    number) as a finite float; ``name`` is for the message.

    Raises:
        ESSXParameterException: *value* is None.
        ESSXValueException: not a finite plain decimal number.
    """
    if value is None:
        raise ESSXParameterException("%s is missing" % name)
    if isinstance(value, bool):
        raise ESSXValueException("%s=%r is not a number" % (name, value))
    text = value.strip(_SPACE) if isinstance(value, str) else value
    try:
        if isinstance(text, str) and not _DECIMAL.fullmatch(text):
            raise ValueError(text)
        number = float(text)
    except (TypeError, ValueError):
        raise ESSXValueException("%s=%r is not a number: expected a decimal number such as 350 or 2.5"
                                 % (name, value)) from None
    if not math.isfinite(number):
        raise ESSXValueException("%s=%r is not a finite number" % (name, value))
    return number


def parse_mode(value: Any) -> int:
    """The ``mode`` parameter ("0x0014") as the converter's mode code, one of ``table.SETTABLE_MODES``.

    Raises:
        ESSXParameterException: missing.
        ESSXValueException: not a "0x" hex string, or not a settable mode.
    """
    if value is None:
        raise ESSXParameterException("mode is missing: expected one of %s" % _MODES_TEXT)
    code = value
    if not isinstance(value, int) or isinstance(value, bool):
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
