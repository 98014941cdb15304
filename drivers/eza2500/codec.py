"""One codec for the EZA2500 protocol, driven by ``table`` (EZA2500.md).

Used by the driver (``build_request``, ``parse_reply``) and by the simulator
(``parse_request``, ``build_ack``, ``build_nak``), so both sides speak from the
same table; the golden vectors of EZA2500.md pin it.

Q-format (EZA2500.md, "Q-format scaling"):

* encode: ``raw = trunc(value * 2**Q / rating)`` toward zero, computed with
  ``decimal.Decimal`` from ``str(value)`` exactly like the reference
  (300 V at Q14/380 -> 12934);
* decode: ``value = raw * rating / 2**Q`` computed exactly with ``Decimal``
  and returned as a ``float`` (12934 -> 299.98291015625).  For the ratings of
  the table the result is exact in binary except for rating 52.08, where it is
  the nearest float.

Raw fields (``q is None``) travel unscaled and decode to ``int``.
"""
import decimal
import struct
from collections import namedtuple

from essx.essx_exception import (
    ESSXChecksumException,
    ESSXDeviceException,
    ESSXParameterException,
    ESSXValueException,
)

from . import table
from .table import FRAME_OVERHEAD, NAK_BIT, NAK_PAYLOAD, SFD_REPLY, SFD_REQUEST

#: A private context: exact for every product/quotient the table needs.
_CTX = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)


def hexdump(data):
    """bytes -> "05 00 00 10 00 10 00" (for logs and messages)."""
    return bytes(data).hex(" ")


# --- checksum ---------------------------------------------------------------

def checksum(data):
    """Sum of ``data`` modulo 65536 (EZA2500.md, "Frames": AD1..payload)."""
    return sum(data) & 0xFFFF


def with_checksum(frame):
    """Return ``frame`` with its last two bytes replaced by the checksum of
    ``frame[2:-2]`` (little-endian u16).

    This is the reference's helper: ``with_checksum(b"123456789")`` ->
    ``b"1234567\\x09\\x01"`` (EZA2500.md, "Checksum examples").
    """
    frame = bytes(frame)
    return frame[:-2] + struct.pack("<H", checksum(frame[2:-2]))


def checksum_ok(frame):
    """True when the last two bytes of ``frame`` are the checksum of ``frame[2:-2]``."""
    return len(frame) >= 4 and struct.unpack_from("<H", frame, len(frame) - 2)[0] == checksum(frame[2:-2])


# --- Q-format ---------------------------------------------------------------

def _decimal(value):
    """A number as Decimal, from its str() like the reference; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, decimal.Decimal):
        d = value
    elif isinstance(value, (int, float)):
        d = decimal.Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        try:
            d = decimal.Decimal(text)
        except decimal.InvalidOperation:
            try:
                d = decimal.Decimal(int(text, 0))  # "0x0014"
            except ValueError:
                return None
    else:
        return None
    return d if d.is_finite() else None


#: Distance (in raw steps) below which a scaled value counts as the next raw.
_SNAP = decimal.Decimal("1e-6")


def encode_value(field, value, clamp=False):
    """Physical value -> raw integer for ``field`` (no range check).

    Args:
        field: a ``table.Field``.
        value: int, float, Decimal or numeric string (physical units).
        clamp: saturate the raw to the wire type instead of raising.
    Returns:
        int raw (``trunc(value * 2**Q / rating)``, or the value itself for a
        raw field).
    Raises:
        ESSXValueException: not a number, a raw field given a non-integer, or
            the raw does not fit the wire type (unless ``clamp``).
    """
    d = _decimal(value)
    if d is None:
        raise ESSXValueException("%s=%r is not a number" % (field.name, value))
    if field.is_raw:
        if d != d.to_integral_value():
            raise ESSXValueException("%s=%s is not an integer" % (field.name, value))
        raw = int(d)
    else:
        scaled = _CTX.divide(_CTX.multiply(d, 2 ** field.q), decimal.Decimal(str(field.rating)))
        raw = int(scaled)  # int() of a Decimal truncates toward zero
        # A value that was itself decoded from a raw (e.g. 6-1's dig sent back
        # in 6-4) can print a hair below that raw; truncating it would drift
        # one Q step per round trip.  Snap such float noise, nothing larger.
        if abs(scaled - raw) > _SNAP and abs(abs(scaled - raw) - 1) < _SNAP:
            raw += 1 if scaled > 0 else -1
    if not field.raw_min <= raw <= field.raw_max:
        if clamp:
            return max(field.raw_min, min(field.raw_max, raw))
        raise ESSXValueException("%s=%s does not fit the wire type %s" % (field.name, value, field.wire))
    return raw


def decode_value(field, raw):
    """Raw integer -> physical value (units of ``field.unit``): ``raw * rating
    / 2**Q`` as float (computed exactly with Decimal), or the raw int for a raw
    field.  Never raises for an int ``raw``."""
    if field.is_raw:
        return int(raw)
    exact = _CTX.divide(_CTX.multiply(decimal.Decimal(raw), decimal.Decimal(str(field.rating))), 2 ** field.q)
    return float(exact)


def q_step(field):
    """Physical value of one raw step (rating / 2**Q); 1 for raw fields."""
    return 1 if field.is_raw else field.rating / 2 ** field.q


def raw_range(field):
    """(lo, hi) raws a write of ``field`` may carry: the encoded physical
    range (encode is monotonic), or the wire range for a raw field without one."""
    if field.lo is None:
        return field.raw_min, field.raw_max
    return encode_value(field, field.lo), encode_value(field, field.hi)


def raw_acceptable(field, raw):
    """True when a converter should take ``raw`` for ``field`` in a write."""
    if field.allowed is not None:
        return raw in field.allowed
    lo, hi = raw_range(field)
    return lo <= raw <= hi


# --- validation --------------------------------------------------------------

def validate(fields, params, command=None):
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
            range; the message names the field, the value and the range, e.g.
            "dvg=1000 is out of range [260, 390] V".
    """
    params = params or {}
    where = " for %s" % command if command else ""
    raws = {}
    for f in fields:
        if f.name not in params or params[f.name] is None:
            raise ESSXParameterException("missing parameter %r%s" % (f.name, where))
        value = params[f.name]
        d = _decimal(value)
        if d is None:
            raise ESSXValueException("%s=%r is not a number; allowed %s%s"
                                     % (f.name, value, f.range_text(), where))
        if f.allowed is not None:
            if d != d.to_integral_value() or int(d) not in f.allowed:
                raise ESSXValueException("%s=%s is not one of %s%s"
                                         % (f.name, _shown(value), f.range_text(), where))
        else:
            lo, hi = f.bounds
            if not decimal.Decimal(str(lo)) <= d <= decimal.Decimal(str(hi)):
                raise ESSXValueException("%s=%s is out of range %s%s"
                                         % (f.name, _shown(value), f.range_text(), where))
        raws[f.name] = encode_value(f, d)
    return raws


def _shown(value):
    """A value as the user would write it: 1000.0 -> "1000"."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# --- payloads and frames -------------------------------------------------------

def _fmt(fields):
    return "<" + "".join(f.wire for f in fields)


def pack_payload(fields, raws):
    """dict name -> raw  ->  payload bytes in wire order."""
    return struct.pack(_fmt(fields), *(raws[f.name] for f in fields))


def unpack_payload(fields, payload):
    """Payload bytes -> dict name -> raw (``struct.error`` if the size is wrong)."""
    return dict(zip((f.name for f in fields), struct.unpack(_fmt(fields), payload)))


def decode_fields(fields, raws):
    """dict name -> raw  ->  dict name -> physical value."""
    return {f.name: decode_value(f, raws[f.name]) for f in fields}


def _shape_ok(frame, sfd):
    """True when ``frame`` starts with ``sfd`` and is as long as its LEN says."""
    return len(frame) >= FRAME_OVERHEAD and frame[0] == sfd and frame[1] + FRAME_OVERHEAD == len(frame)


def _frame(sfd, ad1, ad2, cmd, payload):
    body = bytes((ad1 & 0xFF, ad2 & 0xFF, cmd & 0xFF)) + payload
    return bytes((sfd, len(payload))) + body + struct.pack("<H", checksum(body))


def _group(group):
    return group if isinstance(group, table.Group) else table.group(group)


def build_request(ad1, ad2, group, write, params=None):
    """Request frame for "N-1" (``write`` False) or "N-4".

    Args:
        ad1, ad2: addresses (0..255; reference 0 and 16).
        group: ``table.Group`` or its number.
        write: True for "N-4".
        params: dict of physical values for a write; ignored for a read.
    Returns:
        bytes: SFD(0x05) LEN AD1 AD2 CMD payload CHK.
    Raises:
        ESSXParameterException, ESSXValueException: see ``validate``.
    """
    g = _group(group)
    payload = b""
    if write:
        fields = g.request_fields(True)
        payload = pack_payload(fields, validate(fields, params, g.name(True)))
    return _frame(SFD_REQUEST, ad1, ad2, g.cmd, payload)


def build_ack(ad1, ad2, group, write, values, raw=False):
    """ACK frame of "N-1"/"N-4" carrying ``values`` (simulator side).

    Args:
        ad1, ad2: addresses (0..255).
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
        ESSXValueException: a value is not a number (an integer for a raw field).
        struct.error: a raw value does not fit its wire type (``raw`` only).
    """
    g = _group(group)
    fields = g.ack_fields(write)
    raws = values if raw else {f.name: encode_value(f, values[f.name], clamp=True) for f in fields}
    return _frame(SFD_REPLY, ad1, ad2, g.cmd, pack_payload(fields, raws))


def build_nak(ad1, ad2, cmd, ercd):
    """NAK frame: SFD(0x02) 02 AD1 AD2 (cmd|0x80) ERCD(u16) CHK; 9 bytes."""
    return _frame(SFD_REPLY, ad1, ad2, cmd | NAK_BIT, struct.pack("<H", ercd))


def check_reply(frame, group, write, ad1=None, ad2=None):
    """Validate a complete reply frame of "N-1"/"N-4" without decoding it.

    Args:
        frame: bytes of one whole frame (SFD .. CHK).
        group: ``table.Group`` or its number.
        write: True for a reply to "N-4".
        ad1, ad2: expected addresses, or None not to check.
    Returns:
        True for an ACK, False for a NAK.
    Raises:
        ESSXValueException: wrong SFD/LEN/size, unexpected address or CMD.
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
        raise ESSXValueException("reply to %s from address %d/%d, expected %d/%d"
                                 % (name, frame[2], frame[3], ad1, ad2))
    cmd = frame[4]
    if cmd == g.cmd and frame[1] == ack_payload:
        return True
    if cmd == g.cmd | NAK_BIT and frame[1] == NAK_PAYLOAD:
        return False
    raise ESSXValueException("unexpected CMD 0x%02x (LEN %d) in reply to %s (CMD 0x%02x)"
                             % (cmd, frame[1], name, g.cmd))


def parse_reply(frame, group, write, ad1=None, ad2=None):
    """Decode a reply frame.

    Returns:
        dict name -> physical value (the ACK fields of the command).
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


def parse_request(frame):
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
