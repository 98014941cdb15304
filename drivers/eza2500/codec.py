"""Frames and Q-format of the EZA2500 protocol, driven by ``table`` (docs/eza2500-protocol.md),
for the driver and the simulator alike.  Q-format ("Q-format scaling") uses the
reference's arithmetic (``eza_util.py`` ``q_normalize``/``q_denormalize``), so
every value the reference can send goes out as the same bytes:

* encode: ``raw = int(2**Q * Decimal(value) / Decimal(rating))``, 28 digits,
  ROUND_HALF_EVEN, product and quotient each rounded, ``int()`` truncating
  toward zero.  ``Decimal(value)`` is exact: a float by its binary value (cib
  52.08 -> raw 0x1fff), a str by its digits ("52.08" -> 0x2000); ``rating``
  is the decimal the table writes.
* decode: ``Decimal(raw) * Decimal(rating) / 2**Q`` (exact), as a ``QValue``:
  a float that keeps the exact Decimal, so a value read and sent back goes
  out as the same raw.

Range checks are on the value as written (``repr`` of a float), before
anything is encoded.  Raw fields (``q`` None) travel unscaled, as ``int``.
"""
import decimal
import logging
import struct
from collections import namedtuple
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from essx.essx_exception import (ESSXChecksumException, ESSXDeviceException, ESSXParameterException,
                                  ESSXValueException)

from . import table
from .table import (ADDRESS_MAX, ADDRESS_MIN, FRAME_OVERHEAD, NAK_BIT, NAK_PAYLOAD, SFD_REPLY, SFD_REQUEST,
                    Field, Group)

log = logging.getLogger(__name__)

#: Python's default context, which the reference computes in, fixed here so
#: that a caller changing the thread's context changes nothing.
REFERENCE_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)

#: A group given by object or by number (1..16).
GroupLike = Union[Group, int]


def hexdump(data: bytes) -> str:
    """bytes -> "05 00 00 10 00 10 00"."""
    return bytes(data).hex(" ")


def checksum(data: bytes) -> int:
    """Sum of ``data`` modulo 65536 (docs/eza2500-protocol.md, "Frames": AD1..payload)."""
    return sum(data) % 65536


def with_checksum(frame: bytes) -> bytes:
    """``frame`` with its last two bytes replaced by the u16 LE checksum of
    ``frame[2:-2]``: ``b"123456789"`` -> ``b"1234567\\x09\\x01"`` (the reference's helper)."""
    frame = bytes(frame)
    return frame[:-2] + struct.pack("<H", checksum(frame[2:-2]))


def checksum_ok(frame: bytes) -> bool:
    """True when the last two bytes of ``frame`` are the checksum of ``frame[2:-2]``."""
    return len(frame) >= 4 and struct.unpack_from("<H", frame, len(frame) - 2)[0] == checksum(frame[2:-2])


class QValue(float):
    """A decoded Q-format value: the nearest float (arithmetic, ``repr``,
    JSON: 299.98291015625), with ``exact``, the Decimal ``raw * rating / 2**Q``
    that ``encode_value`` uses."""

    __slots__ = ("exact",)

    def __new__(cls, exact: decimal.Decimal) -> "QValue":
        obj = super().__new__(cls, float(exact))
        obj.exact = exact
        return obj

    def __reduce__(self):
        return (QValue, (self.exact,))


def _exact(value: Any, written: bool = False) -> Optional[decimal.Decimal]:
    """``Decimal(value)`` as the reference computes it ("0x14" as hex), or
    with ``written`` as the user wrote it (a float by its ``repr``: 56.77, not
    its binary expansion); None if not a finite number."""
    if isinstance(value, QValue):
        d = value.exact
    elif written and isinstance(value, float):
        d = decimal.Decimal(str(value))
    elif isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        d = decimal.Decimal(value)
    elif isinstance(value, str):
        d = _from_text(value.strip())
    else:
        return None
    return d if d is not None and d.is_finite() else None


def _from_text(text: str) -> Optional[decimal.Decimal]:
    try:
        return decimal.Decimal(text)
    except decimal.InvalidOperation:
        try:
            return decimal.Decimal(int(text, 0))
        except ValueError:
            return None


def encode_value(field: Field, value: Any, clamp: bool = False) -> int:
    """Physical value (int, float, Decimal, QValue or numeric str) -> raw int
    of ``field``, without a range check (see the module doc).

    ``clamp`` saturates the raw to the wire type.  ESSXValueException: not a
    number, a raw field given a non-integer, or a raw the wire type cannot carry.
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
        raw = int(REFERENCE_CONTEXT.divide(scaled, field.rating_decimal))
    if not clamp and not field.raw_min <= raw <= field.raw_max:
        raise ESSXValueException("%s=%s does not fit the wire type %s" % (field.name, value, field.wire))
    return max(field.raw_min, min(field.raw_max, raw))


def decode_value(field: Field, raw: int) -> Union[QValue, int]:
    """Raw int -> ``QValue`` in ``field.unit`` (exact), or the int of a raw field."""
    if field.is_raw:
        return int(raw)
    rating, scale = field.scaling
    return QValue(REFERENCE_CONTEXT.divide(REFERENCE_CONTEXT.multiply(decimal.Decimal(raw), rating), scale))


def q_step(field: Field) -> float:
    """Physical value of one raw step (rating / 2**Q); 1 for raw fields."""
    return 1 if field.is_raw else field.rating / 2 ** field.q


def raw_range(field: Field) -> Tuple[int, int]:
    """(lo, hi) raws a write of ``field`` may carry: the settable range
    encoded (encode is monotonic), else the wire type's range."""
    if field.lo is None:
        return field.raw_min, field.raw_max
    return encode_value(field, _exact(field.lo, True)), encode_value(field, _exact(field.hi, True))


def raw_acceptable(field: Field, raw: int) -> bool:
    """True when a converter should take ``raw`` for ``field`` in a write."""
    if field.allowed is not None:
        return raw in field.allowed
    lo, hi = raw_range(field)
    return lo <= raw <= hi


def validate(fields: Sequence[Field], params: Optional[Mapping[str, Any]],
             command: Optional[str] = None) -> Dict[str, int]:
    """Check ``params`` (name -> physical value; extra keys ignored) against
    ``fields`` and encode them: name -> raw int, in wire order.

    Raises:
        ESSXParameterException: a field is missing (named, with ``command``).
        ESSXValueException: not a number, or outside the allowed range as
            written: "dvg=1000 is out of range [260, 390] V".
    """
    params = params or {}
    where = " for %s" % command if command else ""
    return {f.name: _checked_raw(f, params.get(f.name), where) for f in fields}


def _checked_raw(f: Field, value: Any, where: str) -> int:
    if value is None:
        raise ESSXParameterException("missing parameter %r%s" % (f.name, where))
    d = _exact(value, written=True)
    if d is None:
        raise ESSXValueException("%s=%r is not a number; allowed %s%s"
                                 % (f.name, value, f.range_text(), where))
    if f.allowed is not None:
        ok, refused = d == d.to_integral_value() and int(d) in f.allowed, "is not one of"
    else:
        lo, hi = (_exact(b, True) for b in f.bounds)
        ok, refused = lo <= d <= hi, "is out of range"
    if not ok:
        shown = int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else value
        raise ESSXValueException("%s=%s %s %s%s" % (f.name, shown, refused, f.range_text(), where))
    return encode_value(f, value)


def _unpack(fields: Sequence[Field], raws: Sequence[int], decode: bool = True) -> Dict[str, Union[QValue, int]]:
    """{name: value} of ``fields`` from their ``raws`` (decoded, or the raws themselves)."""
    return {f.name: decode_value(f, raw) if decode else raw for f, raw in zip(fields, raws)}


def check_address(name: str, value: Any) -> int:
    """``value`` if it is an int 0..255, else ESSXValueException naming
    ``name`` ("ad1"): the frame would go to another unit (the reference fails here too)."""
    if isinstance(value, bool) or not isinstance(value, int) or not ADDRESS_MIN <= value <= ADDRESS_MAX:
        raise ESSXValueException("address %s=%r is out of range: an integer %d..%d is expected"
                                 % (name, value, ADDRESS_MIN, ADDRESS_MAX))
    return value


def _shape_ok(frame: bytes, sfd: int) -> bool:
    """True when ``frame`` starts with ``sfd`` and is as long as its LEN says."""
    return len(frame) >= FRAME_OVERHEAD and frame[0] == sfd and frame[1] + FRAME_OVERHEAD == len(frame)


def _frame(sfd: int, ad1: int, ad2: int, cmd: int, fields: Sequence[Field], raws: Sequence[int]) -> bytes:
    body = bytes((check_address("ad1", ad1), check_address("ad2", ad2), cmd))
    body += struct.pack(table.wire_format(fields), *raws)
    return bytes((sfd, len(body) - 3)) + body + struct.pack("<H", checksum(body))


def _group(group: GroupLike) -> Group:
    return group if isinstance(group, Group) else table.group(group)


def build_request(ad1: int, ad2: int, group: GroupLike, write: bool,
                  params: Optional[Mapping[str, Any]] = None) -> bytes:
    """Request frame SFD(0x05) LEN AD1 AD2 CMD payload CHK of "N-1", or of
    "N-4" carrying ``params`` (physical values).

    Raises:
        ESSXValueException: an address is not an int 0..255 (checked first),
            or ``validate`` refuses a value.
        ESSXParameterException: see ``validate``.
    """
    check_address("ad1", ad1)
    check_address("ad2", ad2)
    g = _group(group)
    raws = validate(g.request_fields(True), params, g.name(True)) if write else {}
    return _frame(SFD_REQUEST, ad1, ad2, g.cmd, g.request_fields(write), list(raws.values()))


def build_ack(ad1: int, ad2: int, group: GroupLike, write: bool,
              values: Mapping[str, Any], raw: bool = False) -> bytes:
    """ACK frame SFD(0x02) LEN AD1 AD2 CMD payload CHK of "N-1"/"N-4"
    (simulator side) carrying ``values``: name -> physical value (saturated
    to the wire type), or name -> raw int when ``raw``; extra keys ignored.

    Raises:
        KeyError: a field is missing (or no such group).
        ValueError: ``write`` for a read-only group.
        ESSXValueException: not a number (an integer for a raw field), or an
            address outside 0..255.
        struct.error: a raw does not fit its wire type (``raw`` only).
    """
    g = _group(group)
    fields = g.ack_fields(write)
    raws = [values[f.name] if raw else encode_value(f, values[f.name], clamp=True) for f in fields]
    return _frame(SFD_REPLY, ad1, ad2, g.cmd, fields, raws)


def build_nak(ad1: int, ad2: int, cmd: int, ercd: int) -> bytes:
    """NAK frame SFD(0x02) 02 AD1 AD2 (cmd|0x80) ERCD(u16) CHK, 9 bytes;
    ESSXValueException for an address outside 0..255."""
    return _frame(SFD_REPLY, ad1, ad2, cmd | NAK_BIT, [Field("ercd", "H")], [ercd])


def check_reply(frame: bytes, group: GroupLike, write: bool,
                ad1: Optional[int] = None, ad2: Optional[int] = None) -> bool:
    """Validate one whole reply frame of "N-1"/"N-4": True for an ACK, False
    for a NAK.  A reply from other addresses than ``ad1``/``ad2`` is
    accepted, as the reference does (logged at DEBUG).

    Raises:
        ESSXValueException: wrong SFD/LEN/size or unexpected CMD.
        ESSXChecksumException: checksum mismatch.
    """
    g = _group(group)
    name = g.name(write)
    ack_payload = g.ack_shape(write)[1]
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
    if frame[4] == g.cmd and frame[1] == ack_payload:
        return True
    if frame[4] == g.cmd | NAK_BIT and frame[1] == NAK_PAYLOAD:
        return False
    raise ESSXValueException("unexpected CMD 0x%02x (LEN %d) in reply to %s (CMD 0x%02x)"
                             % (frame[4], frame[1], name, g.cmd))


def nak_error(ercd: int, command: Optional[str] = None) -> ESSXDeviceException:
    """The ``ESSXDeviceException`` of a NAK with code *ercd* (u16) to *command*
    ("1-1"...), its meaning and retry class from ``table.NAKS``
    (docs/eza2500-protocol.md, NAK codes)."""
    return ESSXDeviceException(ercd, command, table.nak_meaning(ercd), table.nak_retryable(ercd))


def parse_reply(frame: bytes, group: GroupLike, write: bool,
                ad1: Optional[int] = None, ad2: Optional[int] = None) -> Dict[str, Union[QValue, int]]:
    """Decode a reply frame: name -> physical value of the ACK fields (see
    ``decode_value``).  ESSXDeviceException for a NAK (``.ercd``), else as
    ``check_reply``."""
    g = _group(group)
    return decode_reply(frame, g, write, check_reply(frame, g, write, ad1, ad2))


def decode_reply(frame: bytes, group: Group, write: bool, ack: bool) -> Dict[str, Union[QValue, int]]:
    """The values of a reply frame that ``check_reply`` has accepted (``ack``:
    what it returned), as ``parse_reply`` gives them; ESSXDeviceException for
    a NAK.  (The link decodes what the reader has checked: no second check.)"""
    if not ack:
        raise nak_error(struct.unpack_from("<H", frame, 5)[0], group.name(write))
    return _unpack(group.ack_fields(write), struct.unpack_from(group.ack_shape(write)[0], frame, 5))


#: A decoded request (simulator side).  ``group`` and ``name`` are None for an
#: unknown CMD; ``supported`` is False for an unknown CMD, a write to a
#: read-only group or a LEN that fits neither the read nor the write;
#: ``raws`` and ``params`` are {} unless it is a supported write.
Request = namedtuple("Request", "ad1 ad2 cmd group write supported name raws params frame")


def parse_request(frame: bytes) -> Request:
    """Decode a whole request frame (SFD 0x05); LEN 0 is "N-1", else "N-4".

    Raises:
        ESSXValueException: wrong SFD or a size that disagrees with LEN.
        ESSXChecksumException: checksum mismatch.
    """
    frame = bytes(frame)
    if not _shape_ok(frame, SFD_REQUEST):
        raise ESSXValueException("malformed request: %s" % hexdump(frame))
    if not checksum_ok(frame):
        raise ESSXChecksumException("bad checksum in request: %s" % hexdump(frame))
    g = table.group_by_cmd(frame[4])
    write = frame[1] > 0
    fields = (g.write if write else ()) if g else None
    supported = fields is not None and frame[1] == table.payload_size(fields)
    fields, payload = (fields, frame[5:-2]) if supported else ((), b"")
    raws = struct.unpack(table.wire_format(fields), payload)
    return Request(frame[2], frame[3], frame[4], g, write, supported, g.name(write) if g else None,
                   _unpack(fields, raws, False), _unpack(fields, raws), frame)
