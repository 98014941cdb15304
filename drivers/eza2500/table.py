"""The EZA2500 command protocol as data (EZA2500.md, "Command table").

Every protocol fact of the converter lives here once: frame constants, NAK
codes with their meaning and retry class, operation modes and their names,
the status-word (2-1 ``cst``) decoding, and one ``Field`` per wire field with
its Q-format, rating, settable range and the simulator's initial value.
``Group`` ties the fields to a command group (1..16): its read fields are the
ACK payload of "N-1"; its write fields are the request payload of "N-4"
(``None`` for read-only groups); its write-ACK fields are the ACK payload of
"N-4".  Codec, commands, controller and simulator are driven by this table;
the golden vectors of EZA2500.md pin it.

Frame lengths (EZA2500.md, "Frames"): a frame is SFD LEN AD1 AD2 CMD
payload CHK(2), i.e. 7 bytes plus the payload; a NAK carries ERCD (u16) as
its payload and is therefore 9 bytes long.
"""
import decimal
from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple, Union

#: A physical value as the table writes it (int or float).
Number = Union[int, float]

#: Start of frame of a request (host -> converter) and of a reply.
SFD_REQUEST = 0x05
SFD_REPLY = 0x02
#: Bit set in CMD of a NAK reply.
NAK_BIT = 0x80
#: Bytes of a frame that are not payload: SFD LEN AD1 AD2 CMD CHK(2).
FRAME_OVERHEAD = 7
#: Payload length of a NAK (ERCD, u16).
NAK_PAYLOAD = 2
#: Total length of a NAK frame.
NAK_LENGTH = FRAME_OVERHEAD + NAK_PAYLOAD
#: Addresses AD1/AD2 are one byte each (EZA2500.md, "Frames").
ADDRESS_MIN = 0
ADDRESS_MAX = 0xFF

#: Wire types: struct code -> (size in bytes, min raw, max raw).
WIRE_TYPES: Dict[str, Tuple[int, int, int]] = {
    "H": (2, 0, 0xFFFF),
    "h": (2, -0x8000, 0x7FFF),
    "B": (1, 0, 0xFF),
}


# --- NAK error codes (EZA2500.md, "NAK error codes") ----------------------

ERCD_NOT_SUPPORTED = 0xFFFF
ERCD_PARAMETER_INVALID = 0xFFFE
ERCD_CANNOT_ACCEPT = 0xFFFD
ERCD_BUSY = 0xFFFC
ERCD_INTERNAL = 0xFFFB


@dataclass(frozen=True)
class Nak:
    """One NAK error code.

    Attributes:
        ercd: the code carried by the NAK (u16).
        meaning: its meaning ("system busy").
        retry: True when the driver retries it with the error-retry budget.
    """

    ercd: int
    meaning: str
    retry: bool


#: ercd -> Nak.
#:       ercd                     meaning                           retry
NAKS: Dict[int, Nak] = {n.ercd: n for n in (
    Nak(ERCD_NOT_SUPPORTED,      "command not supported",          False),
    Nak(ERCD_PARAMETER_INVALID,  "parameter invalid",              False),
    Nak(ERCD_CANNOT_ACCEPT,      "normal, but cannot accept now",  True),
    Nak(ERCD_BUSY,               "system busy",                    True),
    Nak(ERCD_INTERNAL,           "internal communication error",   False),
)}

#: Meaning given to a code NAKS does not have.
UNKNOWN_ERCD = "unknown error code"


def nak_meaning(ercd: int) -> str:
    """Meaning of ``ercd`` ("system busy"), or UNKNOWN_ERCD."""
    nak = NAKS.get(ercd)
    return nak.meaning if nak else UNKNOWN_ERCD


def nak_retryable(ercd: int) -> bool:
    """True for the codes NAKS marks for retry with the error-retry budget."""
    nak = NAKS.get(ercd)
    return bool(nak and nak.retry)


# --- operation modes and the status word -----------------------------------

#: Operation modes accepted by 1-4 (EZA2500.md, "Operation modes accepted by 1-4").
MODE_WAITING = 0x0000
MODE_HETERONOMY_DISCHARGE = 0x0002
MODE_GRID_AUTONOMY = 0x0014
MODE_HETERONOMY_CHARGE = 0x0041
#: The settable modes, in this order.
SETTABLE_MODES: Tuple[int, ...] = (MODE_WAITING, MODE_HETERONOMY_DISCHARGE,
                                   MODE_GRID_AUTONOMY, MODE_HETERONOMY_CHARGE)
#: The same as a set (the ``allowed`` of 1-4's ``mode``).
MODES: FrozenSet[int] = frozenset(SETTABLE_MODES)

#: Name given to a code a mapping below does not have.
UNKNOWN_NAME = "Unknown"

#: mode reported by 1-1 -> ``operationMode`` string (spec 5.1.4.1; web-api.md "Blocks").
#:   code                          operationMode
MODE_NAMES: Dict[int, str] = {
    MODE_WAITING:               "Waiting",
    0x0001:                     "Heteronomy CV Charging",
    MODE_HETERONOMY_DISCHARGE:  "Heteronomy CV",
    0x0022:                     "Heteronomy CV",
    0x0004:                     "Battery Autonomy",
    MODE_GRID_AUTONOMY:         "Grid Autonomy",
    0x0034:                     "Grid Autonomy CC Battery",
    MODE_HETERONOMY_CHARGE:     "Heteronomy CV",
}

#: 2-1 ``cst`` bits 0-1 -> ``runningState`` (EZA2500.md, "Status word decoding").
RUNNING_STATES: Dict[int, str] = {0: "off", 1: "charge", 2: "discharge"}
#: 2-1 ``cst`` bits 2-3 -> ``alarmState``.
ALARM_STATES: Dict[int, str] = {0: "No alarm", 1: "Light alarm", 2: "Heavy alarm"}


def decode_cst(cst: int) -> Tuple[int, int]:
    """2-1 ``cst`` -> (running, alarm_state): bits 0-1 and bits 2-3 as ints
    (keys of RUNNING_STATES and ALARM_STATES; EZA2500.md, "Status word decoding")."""
    return cst & 0x3, (cst >> 2) & 0x3


def mode_name(mode: int) -> str:
    """``operationMode`` string of a 1-1 mode, or UNKNOWN_NAME."""
    return MODE_NAMES.get(mode, UNKNOWN_NAME)


# --- fields and groups -------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One wire field.

    Attributes:
        name: field name from the table ("dvg").
        wire: struct code 'H' (u16), 'h' (i16) or 'B' (u8).
        q: Q-format exponent, or ``None`` for a raw field (value == raw).
        rating: the rating the Q-format is relative to (physical units); the
            reference writes it as a string ('52.08'), see ``rating_decimal``.
        lo, hi: allowed physical range for writes (inclusive), ``None`` when
            the field is not settable.
        unit: physical unit ("V", "A", "W", "°C", "" for none).
        allowed: for raw fields, the only values a write may carry
            (``mode`` of 1-4), else ``None``.
        initial: the simulator's initial physical value of the field, or
            ``None`` when the simulator computes it (meters, ``cst``) or keeps
            no state for it (``d0``/``d1`` of 9-4).
    """

    name: str
    wire: str
    q: Optional[int] = None
    rating: Optional[Number] = None
    lo: Optional[Number] = None
    hi: Optional[Number] = None
    unit: str = ""
    allowed: Optional[FrozenSet[int]] = None
    initial: Optional[Number] = None

    @property
    def size(self) -> int:
        """Bytes on the wire (1 or 2)."""
        return WIRE_TYPES[self.wire][0]

    @property
    def raw_min(self) -> int:
        """Smallest raw value the wire type carries."""
        return WIRE_TYPES[self.wire][1]

    @property
    def raw_max(self) -> int:
        """Largest raw value the wire type carries."""
        return WIRE_TYPES[self.wire][2]

    @property
    def bounds(self) -> Tuple[Number, Number]:
        """(lo, hi) a write may carry, in physical units: the settable range,
        or the wire type's raw range for a field without one."""
        return (self.lo, self.hi) if self.lo is not None else (self.raw_min, self.raw_max)

    @property
    def is_raw(self) -> bool:
        """True when the field travels unscaled (no Q-format)."""
        return self.q is None

    @property
    def rating_decimal(self) -> decimal.Decimal:
        """The rating as the reference writes it: Decimal('52.08'), not the
        binary value of the float; ValueError for a raw field."""
        if self.rating is None:
            raise ValueError("%s has no rating" % self.name)
        return decimal.Decimal(str(self.rating))

    def range_text(self) -> str:
        """Human text of what a write may carry: "[260, 390] V" or "{0x0000, ...}"."""
        if self.allowed is not None:
            return "{%s}" % ", ".join("0x%04x" % v for v in sorted(self.allowed))
        text = "[%s, %s]" % tuple(_num(b) for b in self.bounds)
        return text + (" " + self.unit if self.unit else "")


def _num(x: Number) -> str:
    """Format a range bound without a useless '.0'."""
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Group:
    """One command group: the CMD code shared by "N-1" and "N-4".

    Attributes:
        number: group number 1..16 (the N of "N-1").
        cmd: CMD byte.
        title: short description.
        read: fields of the "N-1" ACK payload, in wire order.
        write: fields of the "N-4" request payload, or ``None`` if read-only.
        write_ack: fields of the "N-4" ACK payload (same as ``write`` except
            where the table says otherwise), or ``None``.
    """

    number: int
    cmd: int
    title: str
    read: Tuple[Field, ...]
    write: Optional[Tuple[Field, ...]] = None
    write_ack: Optional[Tuple[Field, ...]] = None

    def name(self, write: bool) -> str:
        """Command name: "6-1" for a read, "6-4" for a write."""
        return "%d-%d" % (self.number, 4 if write else 1)

    def request_fields(self, write: bool) -> Tuple[Field, ...]:
        """Fields of the request payload (empty for a read); ValueError for a
        write to a read-only group."""
        if not write:
            return ()
        if self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self.write

    def ack_fields(self, write: bool) -> Tuple[Field, ...]:
        """Fields of the ACK payload; ValueError for a write to a read-only group."""
        if not write:
            return self.read
        if self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self.write_ack if self.write_ack is not None else self.write

    def request_length(self, write: bool) -> int:
        """Total request frame length in bytes (7 + payload)."""
        return FRAME_OVERHEAD + payload_size(self.request_fields(write))

    def ack_length(self, write: bool) -> int:
        """Total ACK frame length in bytes (7 + payload)."""
        return FRAME_OVERHEAD + payload_size(self.ack_fields(write))


def payload_size(fields: Tuple[Field, ...]) -> int:
    """Bytes taken by ``fields`` on the wire."""
    return sum(f.size for f in fields)


# --- the table (EZA2500.md, "Command table"); one row per field -----------
#
# Legend of a row:  (name, wire, Q, rating, lo, hi, unit, initial)
#   wire     H u16, h i16, B u8
#   Q        Q-format exponent; None = raw (value travels unscaled)
#   rating   the Q-format is relative to it: value = raw * rating / 2**Q
#   lo, hi   settable physical range (None: not settable)
#   initial  the simulator's initial value (None: computed / no state)

_ = None


def _rows(*rows) -> Tuple[Field, ...]:
    """Fields from rows of the legend above (a Field passes through)."""
    return tuple(r if isinstance(r, Field) else Field(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None, r[7])
                 for r in rows)


def _raws(names: str, wire: str, initials: Tuple[Number, ...]) -> Tuple[Field, ...]:
    """Read-only raw fields named by ``names`` with their initial values."""
    return tuple(Field(n, wire, initial=v) for n, v in zip(names.split(), initials))


_MODE_READ = Field("mode", "H", initial=MODE_WAITING)
_MODE_WRITE = Field("mode", "H", allowed=MODES, initial=MODE_WAITING)
#      name   wire  Q   rating  lo     hi       unit  initial
_CVB = _rows(
    ("cvb", "H",  14, 48,     32,    62,      "V",  48.0),
)[0]
_G3 = _rows(
    _CVB,
    ("drb", "H",  13, 1,      0,     3.999,   "",   0.0),
)
_G4 = _rows(
    ("dvg", "H",  14, 380,    260,   390,     "V",  350.0),
    ("drg", "H",  13, 1,      0,     3.999,   "",   0.0),
)
_G5 = _rows(
    ("pdz", "H",  14, 380,    0,     57,      "V",  0.0),
    ("mdz", "H",  14, 380,    0,     57,      "V",  0.0),
)
_G6 = _rows(
    ("cib", "H",  13, 52.08,  0,     56.77,   "A",  52.0),
    ("dig", "H",  13, 7.8125, 0,     8.5162,  "A",  2.5),
    ("ubv", "H",  14, 48,     32,    68,      "V",  40.0),
    ("ugv", "H",  14, 380,    260,   425,     "V",  300.0),
    ("obv", "H",  14, 48,     32,    68,      "V",  59.0),
    ("ogv", "H",  14, 380,    260,   425,     "V",  400.0),
)
_G7 = _rows(
    ("bcf", "H",  _,  _,      0,     0xFFFF,  "",   0x000B),
    _CVB,
    ("dlb", "H",  14, 48,     32,    64,      "V",  48.0),
    ("cdb", "H",  14, 48,     0,     12,      "V",  6.0),
    ("ddb", "H",  14, 48,     0,     12,      "V",  1.0),
)
_G8 = _rows(
    ("ccr", "H",  14, 48,     0,     12,      "V",  0.0),
    ("ddr", "H",  14, 48,     0,     12,      "V",  0.0),
)
_G2 = _rows(
    ("cst", "H",  _,  _,      _,     _,       "",   _),
    ("ext", "H",  _,  _,      _,     _,       "",   0),
)
_G9_READ = _raws("alm1 alm2 alm3", "H", (0, 0, 0))
_G9_WRITE = _rows(
    ("d0",  "B",  _,  _,      0,     0xFF,    "",   _),
    ("d1",  "B",  _,  _,      0,     0xFF,    "",   _),
)
_G10 = _rows(
    ("vg",  "h",  14, 380,    _,     _,       "V",  _),
    ("ig",  "h",  13, 7.8125, _,     _,       "A",  _),
    ("vb",  "h",  14, 48,     _,     _,       "V",  52.0),
    ("ib",  "h",  13, 52.08,  _,     _,       "A",  _),
    ("wg",  "h",  11, 2500,   _,     _,       "W",  _),
    ("wb",  "h",  11, 2500,   _,     _,       "W",  _),
    ("ic",  "h",  _,  _,      _,     _,       "",   0),
    ("tmp", "h",  7,  1,      _,     _,       "°C", 30.5),
)
_G11 = _rows(
    ("ts",   "h", _,  _,      _,     _,       "",   0),
    ("tp",   "h", _,  _,      _,     _,       "",   0),
    ("v5s",  "h", 10, 1,      _,     _,       "V",  5.0),
    ("fan1", "h", 0,  1,      _,     _,       "",   0.0),
    ("fan2", "h", 0,  1,      _,     _,       "",   0.0),
    ("fan3", "h", 0,  1,      _,     _,       "",   0.0),
    ("fan4", "h", 0,  1,      _,     _,       "",   0.0),
    ("fan5", "h", 0,  1,      _,     _,       "",   0.0),
)
#: Group 12: the Q of each meter; group 13 of each internal value.
_G12 = _raws("vgq igq vbq ibq wgq wbq icq tmpq", "H", (14, 13, 14, 13, 11, 11, 0, 7))
_G13 = _raws("tsq tpq v5q fn1q fn2q fn3q fn4q fn5q", "H", (0, 0, 10, 0, 0, 0, 0, 0))
#: Group 14: ratings as n / 2**nq (a guess of the simulator).
_G14 = _raws("vgn vgnq ign ignq vbn vbnq ibn ibnq wn wnq", "H",
             (380, 0, 125, 4, 48, 0, 1667, 5, 2500, 0))
_VERSION = _raws("min maj", "B", (0, 1))

GROUPS: Tuple[Group, ...] = (
    Group(1, 0x00, "operation mode", (_MODE_READ,), (_MODE_WRITE,)),
    Group(2, 0x01, "status", _G2),
    Group(3, 0x18, "battery CV", _G3, _G3),
    Group(4, 0x1A, "grid voltage", _G4, _G4),
    Group(5, 0x17, "dead zone", _G5, _G5),
    Group(6, 0x1C, "protection", _G6, _G6),
    Group(7, 0x1D, "battery setup", _G7, _G7),
    Group(8, 0x16, "battery deviation", _G8, _G8),
    Group(9, 0x12, "alarms", _G9_READ, _G9_WRITE, _G9_WRITE),
    Group(10, 0x09, "meters", _G10),
    Group(11, 0x0A, "internal", _G11),
    Group(12, 0x0D, "meter Q", _G12),
    Group(13, 0x0E, "internal Q", _G13),
    Group(14, 0x11, "ratings", _G14),
    Group(15, 0x1E, "version", _VERSION),
    Group(16, 0x1F, "version", _VERSION),
)

_BY_NUMBER = {g.number: g for g in GROUPS}
_BY_CMD = {g.cmd: g for g in GROUPS}
assert len(_BY_NUMBER) == len(_BY_CMD) == 16


def group(number: int) -> Group:
    """The ``Group`` with this number (1..16); KeyError if there is none."""
    return _BY_NUMBER[number]


def group_by_cmd(cmd: int) -> Optional[Group]:
    """The ``Group`` with this CMD code, or ``None`` (unknown code)."""
    return _BY_CMD.get(cmd)


def parse_name(name: str) -> Tuple[Group, bool]:
    """("6-4") -> (Group 6, True); KeyError for a command the table lacks."""
    try:
        number, kind = (int(x) for x in name.split("-"))
    except (ValueError, AttributeError):
        raise KeyError(name) from None
    g = _BY_NUMBER.get(number)
    if g is None or kind not in (1, 4) or (kind == 4 and g.write is None):
        raise KeyError(name)
    return g, kind == 4


def command_names() -> list:
    """Every command name in table order: "1-1", "1-4", "2-1", "3-1", "3-4", ..."""
    names = []
    for g in GROUPS:
        names.append(g.name(False))
        if g.write is not None:
            names.append(g.name(True))
    return names
