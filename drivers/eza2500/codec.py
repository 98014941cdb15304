"""One codec for the EZA2500 protocol, driven by ``table`` (EZA2500.md).

Used by the driver (``build_request``, ``parse_reply``) and by the simulator
(``parse_request``, ``build_ack``, ``build_nak``), so both sides speak from the
same table; the golden vectors of EZA2500.md pin it.

Q-format (EZA2500.md, "Q-format scaling"), with the reference's arithmetic
(``eza2500/eza_util.py`` ``q_normalize``/``q_denormalize``) so that every
value the reference can send goes out as the same bytes:

* encode: ``raw = int((2**Q * Decimal(value)) / Decimal(rating))`` in
  Python's default decimal context (28 digits, ROUND_HALF_EVEN; the product
  and the quotient each rounded), ``int()`` truncating toward zero.
  ``Decimal(value)`` is exact: a float counts with its binary value (52.08 ->
  52.0799999999999982946974341757595539093017578125, so cib 52.08 is raw
  0x1fff), a str with its decimal digits ("52.08" -> raw 0x2000), an int as
  itself; ``rating`` is the decimal the table writes ('52.08').
* decode: ``value = Decimal(raw) * Decimal(rating) / 2**Q`` (exact for every
  field of the table), returned as a ``QValue``: a float (JSON prints it as
  one, e.g. 12934 -> 299.98291015625) carrying the exact Decimal, which
  encode uses, so a value read (6-1's ``dig``) and sent back (6-4) goes out as
  the same raw.

Range checks are on the physical value as written (``repr`` of a float) and
happen before anything is encoded.  Raw fields (``q is None``) travel
unscaled and decode to ``int``.
"""
import decimal
import logging
import struct
from collections import namedtuple
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXParameterException,
    ESSXValueException,
)

from . import table
from .table import (
    ADDRESS_MAX,
    ADDRESS_MIN,
    FRAME_OVERHEAD,
    NAK_BIT,
    NAK_PAYLOAD,
    SFD_REPLY,
    SFD_REQUEST,
    Field,
    Group,
)

log = logging.getLogger(__name__)

#: The reference's context: Python's default (28 digits, ROUND_HALF_EVEN),
#: fixed here so that a caller changing the thread's context changes nothing.
REFERENCE_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)

#: A group given by object or by number (1..16).
GroupLike = Union[Group, int]


def hexdump(data: bytes) -> str:
    """bytes -> "05 00 00 10 00 10 00" (for logs and messages)."""
    return bytes(data).hex(" ")


# --- checksum ---------------------------------------------------------------

def checksum(data: bytes) -> int:
    """Sum of ``data`` modulo 65536 (EZA2500.md, "Frames": AD1..payload)."""
    return sum(data) % 65536


def with_checksum(frame: bytes) -> bytes:
    """Return ``frame`` with its last two bytes replaced by the checksum of
    ``frame[2:-2]`` (little-endian u16).

    This is the reference's helper: ``with_checksum(b"123456789")`` ->
    ``b"1234567\\x09\\x01"`` (EZA2500.md, "Checksum examples").
    """
    frame = bytes(frame)
    return frame[:-2] + struct.pack("<H", checksum(frame[2:-2]))


def checksum_ok(frame: bytes) -> bool:
    """True when the last two bytes of ``frame`` are the checksum of ``frame[2:-2]``."""
    return len(frame) >= 4 and struct.unpack_from("<H", frame, len(frame) - 2)[0] == checksum(frame[2:-2])


# --- Q-format ---------------------------------------------------------------

class QValue(float):
    """A value decoded from a Q-format raw: a float that keeps its exact value.

    It behaves as the float nearest to the exact value (arithmetic, ``repr``,
    ``json.dumps`` give what a float gives: 299.98291015625); ``exact`` is
    the Decimal ``raw * rating / 2**Q``, which ``encode_value`` uses, so the
    value encodes back to the raw it came from.
    """

    __slots__ = ("exact",)

    def __new__(cls, exact: decimal.Decimal) -> "QValue":
        obj = super().__new__(cls, float(exact))
        obj.exact = exact
        return obj

    def __reduce__(self):
        return (QValue, (self.exact,))


def _exact(value: Any) -> Optional[decimal.Decimal]:
    """``Decimal(value)`` as the reference computes it (a float exactly in
    binary, a str from its digits, a QValue from its exact value; "0x14" as
    hexadecimal); None if not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, QValue):
        d = value.exact
    elif isinstance(value, (int, float, decimal.Decimal)):
        d = decimal.Decimal(value)
    elif isinstance(value, str):
        d = _from_text(value.strip())
    else:
        return None
    return d if d is not None and d.is_finite() else None


def _from_text(text: str) -> Optional[decimal.Decimal]:
    """A numeric string as Decimal ("2.5", "0x0014"), None if not a number."""
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        try:
            return decimal.Decimal(int(text, 0))
        except ValueError:
            return None


def _written(value: Any) -> Optional[decimal.Decimal]:
    """The value as the user wrote it, for range checks and messages: a plain
    float by its ``repr`` (56.77, not its binary expansion), anything else as
    ``_exact``."""
    if isinstance(value, float) and not isinstance(value, QValue):
        return _exact(str(value))   # "nan"/"inf" are not finite: None
    return _exact(value)


def encode_value(field: Field, value: Any, clamp: bool = False) -> int:
    """Physical value -> raw integer for ``field`` (no range check).

    Args:
        field: a ``table.Field``.
        value: int, float, Decimal, QValue or numeric string (physical units).
        clamp: saturate the raw to the wire type instead of raising.
    Returns:
        int raw: ``int(2**Q * Decimal(value) / Decimal(rating))`` in the
        reference's context (see the module doc), or the value itself for a
        raw field.
    Raises:
        ESSXValueException: not a number, a raw field given a non-integer, or
            the raw does not fit the wire type (unless ``clamp``).
    """
    d = _exact(value)
    if d is None:
        raise ESSXValueException("%s=%r is not a number" % (field.name, value))
    if field.is_raw:
        if d != d.to_integral_value():
            raise ESSXValueException("%s=%s is not an integer" % (field.name, value))
        raw = int(d)
    else:
        scaled = REFERENCE_CONTEXT.multiply(decimal.Decimal(2 ** field.q), d)
        raw = int(REFERENCE_CONTEXT.divide(scaled, field.rating_decimal))  # toward zero
    if not field.raw_min <= raw <= field.raw_max:
        if clamp:
            return max(field.raw_min, min(field.raw_max, raw))
        raise ESSXValueException("%s=%s does not fit the wire type %s" % (field.name, value, field.wire))
    return raw


def decode_value(field: Field, raw: int) -> Union[QValue, int]:
    """Raw integer -> physical value (units of ``field.unit``).

    Returns:
        ``QValue`` of ``Decimal(raw) * Decimal(rating) / 2**Q`` (exact; the
        reference's formula), or the raw int for a raw field.  Never raises
        for an int ``raw``.
    """
    if field.is_raw:
        return int(raw)
    product = REFERENCE_CONTEXT.multiply(decimal.Decimal(raw), field.rating_decimal)
    return QValue(REFERENCE_CONTEXT.divide(product, decimal.Decimal(2 ** field.q)))


def q_step(field: Field) -> float:
    """Physical value of one raw step (rating / 2**Q); 1 for raw fields."""
    return 1 if field.is_raw else field.rating / 2 ** field.q


def raw_range(field: Field) -> Tuple[int, int]:
    """(lo, hi) raws a write of ``field`` may carry: the physical range as
    the table writes it, encoded (encode is monotonic), or the wire range for
    a raw field without one."""
    if field.lo is None:
        return field.raw_min, field.raw_max
    return encode_value(field, _written(field.lo)), encode_value(field, _written(field.hi))


def raw_acceptable(field: Field, raw: int) -> bool:
    """True when a converter should take ``raw`` for ``field`` in a write."""
    if field.allowed is not None:
        return raw in field.allowed
    lo, hi = raw_range(field)
    return lo <= raw <= hi


# --- validation --------------------------------------------------------------

def validate(fields: Sequence[Field], params: Optional[Mapping[str, Any]],
             command: Optional[str] = None) -> Dict[str, int]:
    """Check ``params`` against ``fields`` and encode them.

    Args:
        fields: sequence of ``table.Field`` (a command's request fields).
        params: dict name -> physical value; extra keys are ignored.
        command: command name for messages ("4-4"), optional.
    Returns:
        dict name -> raw int, in wire order.
    Raises:
        ESSXParameterException: a field is missing (message names it).
        ESSXValueException: a value is not a number or is outside the allowed
            range (checked on the value as written); the message names the
            field, the value and the range, e.g.
            "dvg=1000 is out of range [260, 390] V".
    """
    params = params or {}
    where = " for %s" % command if command else ""
    raws = {}
    for f in fields:
        if f.name not in params or params[f.name] is None:
            raise ESSXParameterException("missing parameter %r%s" % (f.name, where))
        value = params[f.name]
        _check_written(f, value, where)
        raws[f.name] = encode_value(f, value)
    return raws


def _check_written(f: Field, value: Any, where: str) -> None:
    """ESSXValueException unless ``value`` is a number ``f`` may carry."""
    d = _written(value)
    if d is None:
        raise ESSXValueException("%s=%r is not a number; allowed %s%s"
                                 % (f.name, value, f.range_text(), where))
    if f.allowed is not None:
        if d != d.to_integral_value() or int(d) not in f.allowed:
            raise ESSXValueException("%s=%s is not one of %s%s"
                                     % (f.name, _shown(value), f.range_text(), where))
        return
    lo, hi = (_written(b) for b in f.bounds)
    if not lo <= d <= hi:
        raise ESSXValueException("%s=%s is out of range %s%s"
                                 % (f.name, _shown(value), f.range_text(), where))


def _shown(value: Any) -> str:
    """A value as the user would write it: 1000.0 -> "1000"."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# --- payloads and frames -------------------------------------------------------

def _fmt(fields: Sequence[Field]) -> str:
    return "<" + "".join(f.wire for f in fields)


def pack_payload(fields: Sequence[Field], raws: Mapping[str, int]) -> bytes:
    """dict name -> raw  ->  payload bytes in wire order."""
    return struct.pack(_fmt(fields), *(raws[f.name] for f in fields))


def unpack_payload(fields: Sequence[Field], payload: bytes) -> Dict[str, int]:
    """Payload bytes -> dict name -> raw (``struct.error`` if the size is wrong)."""
    return dict(zip((f.name for f in fields), struct.unpack(_fmt(fields), payload)))


def decode_fields(fields: Sequence[Field], raws: Mapping[str, int]) -> Dict[str, Union[QValue, int]]:
    """dict name -> raw  ->  dict name -> physical value (see ``decode_value``)."""
    return {f.name: decode_value(f, raws[f.name]) for f in fields}


def check_address(name: str, value: Any) -> int:
    """``value`` if it is an int address 0..255, else ESSXValueException
    naming ``name`` ("ad1"), the value and the range: the frame would
    otherwise go to another unit (the reference fails here too)."""
    if isinstance(value, bool) or not isinstance(value, int) or not ADDRESS_MIN <= value <= ADDRESS_MAX:
        raise ESSXValueException("address %s=%r is out of range: an integer %d..%d is expected"
                                 % (name, value, ADDRESS_MIN, ADDRESS_MAX))
    return value


def _shape_ok(frame: bytes, sfd: int) -> bool:
    """True when ``frame`` starts with ``sfd`` and is as long as its LEN says."""
    return len(frame) >= FRAME_OVERHEAD and frame[0] == sfd and frame[1] + FRAME_OVERHEAD == len(frame)


def _frame(sfd: int, ad1: int, ad2: int, cmd: int, payload: bytes) -> bytes:
    body = bytes((check_address("ad1", ad1), check_address("ad2", ad2), cmd)) + payload
    return bytes((sfd, len(payload))) + body + struct.pack("<H", checksum(body))


def _group(group: GroupLike) -> Group:
    return group if isinstance(group, Group) else table.group(group)


def build_request(ad1: int, ad2: int, group: GroupLike, write: bool,
                  params: Optional[Mapping[str, Any]] = None) -> bytes:
    """Request frame for "N-1" (``write`` False) or "N-4".

    Args:
        ad1, ad2: addresses, int 0..255 (reference 0 and 16).
        group: ``table.Group`` or its number.
        write: True for "N-4".
        params: dict of physical values for a write; ignored for a read.
    Returns:
        bytes: SFD(0x05) LEN AD1 AD2 CMD payload CHK.
    Raises:
        ESSXValueException: an address outside 0..255 or not an int (checked
            first), or a value refused by ``validate``.
        ESSXParameterException: see ``validate``.
    """
    check_address("ad1", ad1)
    check_address("ad2", ad2)
    g = _group(group)
    payload = b""
    if write:
        fields = g.request_fields(True)
        payload = pack_payload(fields, validate(fields, params, g.name(True)))
    return _frame(SFD_REQUEST, ad1, ad2, g.cmd, payload)


def build_ack(ad1: int, ad2: int, group: GroupLike, write: bool,
              values: Mapping[str, Any], raw: bool = False) -> bytes:
    """ACK frame of "N-1"/"N-4" carrying ``values`` (simulator side).

    Args:
        ad1, ad2: addresses, int 0..255.
        group: ``table.Group`` or its number.
        write: True for the ACK of "N-4".
        values: dict name -> physical value (encoded with saturation to the
            wire type), or name -> raw int when ``raw`` is True; every ACK
            field must be present, extra keys are ignored.
    Returns:
        bytes: SFD(0x02) LEN AD1 AD2 CMD payload CHK.
    Raises:
        KeyError: a field is missing from ``values`` (or no such group).
        ValueError: ``write`` for a read-only group.
        ESSXValueException: a value is not a number (an integer for a raw
            field), or an address outside 0..255.
        struct.error: a raw value does not fit its wire type (``raw`` only).
    """
    g = _group(group)
    fields = g.ack_fields(write)
    raws = values if raw else {f.name: encode_value(f, values[f.name], clamp=True) for f in fields}
    return _frame(SFD_REPLY, ad1, ad2, g.cmd, pack_payload(fields, raws))


def build_nak(ad1: int, ad2: int, cmd: int, ercd: int) -> bytes:
    """NAK frame: SFD(0x02) 02 AD1 AD2 (cmd|0x80) ERCD(u16) CHK; 9 bytes.
    ESSXValueException for an address outside 0..255."""
    return _frame(SFD_REPLY, ad1, ad2, cmd | NAK_BIT, struct.pack("<H", ercd))


def check_reply(frame: bytes, group: GroupLike, write: bool,
                ad1: Optional[int] = None, ad2: Optional[int] = None) -> bool:
    """Validate a complete reply frame of "N-1"/"N-4" without decoding it.

    Args:
        frame: bytes of one whole frame (SFD .. CHK).
        group: ``table.Group`` or its number.
        write: True for a reply to "N-4".
        ad1, ad2: the request's addresses, or None.  A reply from other
            addresses is accepted, as the reference does; the mismatch is
            logged at DEBUG.
    Returns:
        True for an ACK, False for a NAK.
    Raises:
        ESSXValueException: wrong SFD/LEN/size or unexpected CMD.
        ESSXChecksumException: checksum mismatch.
    """
    g = _group(group)
    name = g.name(write)
    ack_payload = table.payload_size(g.ack_fields(write))
    if not _shape_ok(frame, SFD_REPLY):
        raise ESSXValueException("malformed reply to %s: %s" % (name, hexdump(frame)))
    if frame[1] not in (ack_payload, NAK_PAYLOAD):
        raise ESSXValueException("unexpected LEN %d in reply to %s (ACK %d, NAK %d)"
                                 % (frame[1], name, ack_payload, NAK_PAYLOAD))
    if not checksum_ok(frame):
        raise ESSXChecksumException("bad checksum in reply to %s: %s" % (name, hexdump(frame)))
    if (ad1 is not None and frame[2] != ad1) or (ad2 is not None and frame[3] != ad2):
        log.debug("reply to %s from address %d/%d, request went to %s/%s; accepted as the reference does",
                  name, frame[2], frame[3], ad1, ad2)
    cmd = frame[4]
    if cmd == g.cmd and frame[1] == ack_payload:
        return True
    if cmd == g.cmd | NAK_BIT and frame[1] == NAK_PAYLOAD:
        return False
    raise ESSXValueException("unexpected CMD 0x%02x (LEN %d) in reply to %s (CMD 0x%02x)"
                             % (cmd, frame[1], name, g.cmd))


def parse_reply(frame: bytes, group: GroupLike, write: bool,
                ad1: Optional[int] = None, ad2: Optional[int] = None) -> Dict[str, Union[QValue, int]]:
    """Decode a reply frame.

    Returns:
        dict name -> physical value (the ACK fields of the command; Q fields
        as ``QValue``, raw fields as int).
    Raises:
        ESSXDeviceException: the frame is a NAK (``.ercd`` carries the code).
        ESSXValueException, ESSXChecksumException: see ``check_reply``.
    """
    g = _group(group)
    if not check_reply(frame, g, write, ad1, ad2):
        raise ESSXDeviceException(struct.unpack_from("<H", frame, 5)[0], g.name(write))
    fields = g.ack_fields(write)
    return decode_fields(fields, unpack_payload(fields, bytes(frame[5:-2])))


#: A decoded request (simulator side).  ``group`` is None for an unknown CMD;
#: ``supported`` is False for an unknown CMD, a write to a read-only group or
#: a LEN that fits neither the read nor the write of the group; ``raws`` and
#: ``params`` are {} unless it is a supported write.
Request = namedtuple("Request", "ad1 ad2 cmd group write supported name raws params frame")


def parse_request(frame: bytes) -> Request:
    """Decode a complete request frame (SFD 0x05).

    Read or write is told by LEN (0 = "N-1").
    Returns:
        ``Request``.
    Raises:
        ESSXValueException: wrong SFD or a size that disagrees with LEN.
        ESSXChecksumException: checksum mismatch.
    """
    frame = bytes(frame)
    if not _shape_ok(frame, SFD_REQUEST):
        raise ESSXValueException("malformed request: %s" % hexdump(frame))
    if not checksum_ok(frame):
        raise ESSXChecksumException("bad checksum in request: %s" % hexdump(frame))
    ad1, ad2, cmd = frame[2], frame[3], frame[4]
    write = frame[1] > 0
    g = table.group_by_cmd(cmd)
    if g is None:
        return Request(ad1, ad2, cmd, None, write, False, None, {}, {}, frame)
    name = g.name(write)
    if write and (g.write is None or frame[1] != table.payload_size(g.write)):
        return Request(ad1, ad2, cmd, g, write, False, name, {}, {}, frame)
    if not write:
        return Request(ad1, ad2, cmd, g, False, True, name, {}, {}, frame)
    fields = g.request_fields(True)
    raws = unpack_payload(fields, frame[5:-2])
    return Request(ad1, ad2, cmd, g, True, True, name, raws, decode_fields(fields, raws), frame)
