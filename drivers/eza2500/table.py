"""The EZA2500 command protocol as data (docs/eza2500-protocol.md, "Command table"); every
protocol fact of the converter lives here once: frame constants, NAK codes,
operation modes and their names, the 2-1 ``cst`` decoding, and one ``Field``
per wire field (Q-format, rating, settable range, the simulator's initial
value) in one ``Group`` per CMD.
"""
import decimal
import struct
from collections import namedtuple
from dataclasses import dataclass, replace
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

#: A physical value as the table writes it (int or float).
Number = Union[int, float]

#: Start of frame of a request (host -> converter) and of a reply (docs/eza2500-protocol.md, "Frames").
SFD_REQUEST = 0x05
SFD_REPLY = 0x02
#: Bit set in CMD of a NAK reply.
NAK_BIT = 0x80
#: Bytes of a frame that are not payload: SFD LEN AD1 AD2 CMD CHK(2).
FRAME_OVERHEAD = 7
#: A NAK's payload is ERCD (u16): a NAK frame is 9 bytes.
NAK_PAYLOAD = 2
NAK_LENGTH = FRAME_OVERHEAD + NAK_PAYLOAD
#: Addresses AD1/AD2 are one byte each.
ADDRESS_MIN = 0
ADDRESS_MAX = 0xFF

#: Wire types: struct code -> (min raw, max raw).
WIRE_TYPES: Dict[str, Tuple[int, int]] = {"H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF), "B": (0, 0xFF)}


#: NAK codes (docs/eza2500-protocol.md, "NAK codes").
ERCD_NOT_SUPPORTED = 0xFFFF
ERCD_PARAMETER_INVALID = 0xFFFE
ERCD_CANNOT_ACCEPT = 0xFFFD
ERCD_BUSY = 0xFFFC
ERCD_INTERNAL = 0xFFFB


#: One NAK code (u16), its meaning, and whether the driver retries it with
#: the error-retry budget.
Nak = namedtuple("Nak", "ercd meaning retry")

#: ercd -> Nak.
#:       ercd                     meaning                           retry
NAKS: Dict[int, Nak] = {n.ercd: n for n in (
    Nak(ERCD_NOT_SUPPORTED,      "command not supported",          False),
    Nak(ERCD_PARAMETER_INVALID,  "parameter invalid",              False),
    Nak(ERCD_CANNOT_ACCEPT,      "normal, but cannot accept now",  True),
    Nak(ERCD_BUSY,               "system busy",                    True),
    Nak(ERCD_INTERNAL,           "internal communication error",   False),
)}

UNKNOWN_ERCD = "unknown error code"


def nak_meaning(ercd: int) -> str:
    """Meaning of ``ercd`` ("system busy"), or UNKNOWN_ERCD."""
    return NAKS[ercd].meaning if ercd in NAKS else UNKNOWN_ERCD


def nak_retryable(ercd: int) -> bool:
    """True for the codes NAKS marks for retry."""
    return ercd in NAKS and NAKS[ercd].retry


#: Operation modes accepted by 1-4 (docs/eza2500-protocol.md, "Operation modes accepted by 1-4").
MODE_WAITING = 0x0000
MODE_HETERONOMY_DISCHARGE = 0x0002
MODE_GRID_AUTONOMY = 0x0014
MODE_HETERONOMY_CHARGE = 0x0041
SETTABLE_MODES: Tuple[int, ...] = (MODE_WAITING, MODE_HETERONOMY_DISCHARGE,
                                   MODE_GRID_AUTONOMY, MODE_HETERONOMY_CHARGE)
MODES: FrozenSet[int] = frozenset(SETTABLE_MODES)

#: Name given to a code a mapping below does not have.
UNKNOWN_NAME = "Unknown"

#: mode reported by 1-1 -> ``operationMode`` string (spec 5.1.4.1; docs/web-api.md "Blocks").
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

#: 2-1 ``cst`` bits 0-1 -> ``runningState``, bits 2-3 -> ``alarmState``
#: (docs/eza2500-protocol.md, "Status word decoding").
RUNNING_STATES: Dict[int, str] = {0: "off", 1: "charge", 2: "discharge"}
ALARM_STATES: Dict[int, str] = {0: "No alarm", 1: "Light alarm", 2: "Heavy alarm"}


def decode_cst(cst: int) -> Tuple[int, int]:
    """2-1 ``cst`` -> (running, alarm_state): keys of RUNNING_STATES and ALARM_STATES."""
    return cst & 0x3, (cst >> 2) & 0x3


def cst_names(cst: int) -> Tuple[str, str]:
    """2-1 ``cst`` -> (``runningState``, ``alarmState``) strings, UNKNOWN_NAME for a
    code the tables lack (docs/eza2500-protocol.md, "Status word decoding")."""
    running, alarm_state = decode_cst(cst)
    return RUNNING_STATES.get(running, UNKNOWN_NAME), ALARM_STATES.get(alarm_state, UNKNOWN_NAME)


def mode_name(mode: int) -> str:
    """``operationMode`` string of a 1-1 mode, or UNKNOWN_NAME."""
    return MODE_NAMES.get(mode, UNKNOWN_NAME)


@dataclass(frozen=True)
class Field:
    """One wire field: a row of _ROWS (see its legend).

    ``q`` None marks a raw field (value == raw); ``lo``/``hi`` None a field
    that is not settable; ``allowed`` the only raws a write may carry
    (``mode``); ``initial`` None a value the simulator computes or keeps none of.
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
    def raw_min(self) -> int:
        """Smallest raw the wire type carries (WIRE_TYPES)."""
        return WIRE_TYPES[self.wire][0]

    @property
    def raw_max(self) -> int:
        """Largest raw the wire type carries (WIRE_TYPES)."""
        return WIRE_TYPES[self.wire][1]

    @property
    def bounds(self) -> Tuple[Number, Number]:
        """(lo, hi) a write may carry, physical: the settable range, else the raw range."""
        return (self.lo, self.hi) if self.lo is not None else (self.raw_min, self.raw_max)

    @property
    def is_raw(self) -> bool:
        """True when the field travels unscaled (no Q-format)."""
        return self.q is None

    @property
    def rating_decimal(self) -> decimal.Decimal:
        """The rating as the reference writes it: Decimal('52.08'), not the float's binary value
        (decimal.InvalidOperation for a raw field)."""
        return decimal.Decimal(str(self.rating))

    def __post_init__(self) -> None:
        # Worked out once, as Group does: every reply decodes with it
        # (not a dataclass field: equality and hash stay those of the table row).
        scaling = None if self.q is None else (self.rating_decimal, decimal.Decimal(2 ** self.q))
        object.__setattr__(self, "_scaling", scaling)

    @property
    def scaling(self) -> Tuple[decimal.Decimal, decimal.Decimal]:
        """(rating as ``rating_decimal``, 2**Q) as Decimals, worked out when the
        field is made: every reply decodes with them (decimal.InvalidOperation
        for a raw field)."""
        if self._scaling is None:
            raise decimal.InvalidOperation("%s travels raw: it has no scaling" % self.name)
        return self._scaling

    def range_text(self) -> str:
        """What a write may carry: "[260, 390] V" or "{0x0000, ...}"."""
        if self.allowed is not None:
            return "{%s}" % ", ".join("0x%04x" % v for v in sorted(self.allowed))
        text = "[%s, %s]" % tuple(str(int(b)) if float(b).is_integer() else str(b) for b in self.bounds)
        return text + (" " + self.unit if self.unit else "")


def wire_format(fields: Sequence[Field]) -> str:
    """struct format of ``fields`` in wire order ("<HH")."""
    return "<" + "".join(f.wire for f in fields)


def payload_size(fields: Sequence[Field]) -> int:
    """Bytes taken by ``fields`` on the wire."""
    return struct.calcsize(wire_format(fields))


@dataclass(frozen=True)
class Group:
    """One command group: number 1..16 (the N of "N-1"), the CMD byte shared
    by "N-1" and "N-4", a title, and its fields in wire order: ``read`` of the
    "N-1" ACK, ``write`` of the "N-4" request and its ACK (None if read-only)."""

    number: int
    cmd: int
    title: str
    read: Tuple[Field, ...]
    write: Optional[Tuple[Field, ...]] = None

    def __post_init__(self) -> None:
        # Worked out once: every command asks for its name, formats and sizes
        # (not dataclass fields: equality and hash stay those of the table row).
        shapes = {False: (wire_format(self.read), payload_size(self.read))}
        if self.write is not None:
            shapes[True] = (wire_format(self.write), payload_size(self.write))
        object.__setattr__(self, "_names", ("%d-1" % self.number, "%d-4" % self.number))
        object.__setattr__(self, "_shapes", shapes)

    @property
    def write_ack(self) -> Optional[Tuple[Field, ...]]:
        """Fields of the "N-4" ACK: those of the request (docs/eza2500-protocol.md)."""
        return self.write

    def name(self, write: bool) -> str:
        """Command name: "6-1" for a read, "6-4" for a write."""
        return self._names[1 if write else 0]

    def ack_shape(self, write: bool) -> Tuple[str, int]:
        """(struct format, bytes) of the ACK payload of "N-1"/"N-4"; ValueError
        for a write to a read-only group."""
        if write and self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self._shapes[bool(write)]

    def request_fields(self, write: bool) -> Tuple[Field, ...]:
        """Fields of the request payload (none for a read); ValueError for a
        write to a read-only group."""
        if write and self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self.write if write else ()

    def ack_fields(self, write: bool) -> Tuple[Field, ...]:
        """Fields of the ACK payload; ValueError as ``request_fields``."""
        return self.request_fields(True) if write else self.read

    def request_length(self, write: bool) -> int:
        """Total request frame length, bytes."""
        return FRAME_OVERHEAD + payload_size(self.request_fields(write))

    def ack_length(self, write: bool) -> int:
        """Total ACK frame length, bytes."""
        return FRAME_OVERHEAD + self.ack_shape(write)[1]


# --- the table (docs/eza2500-protocol.md, "Command table"); one row per field -----------
#
# Legend (one row per field, in wire order within each group):
#   group    command group number (15,16: the same field in both groups)
#   name     field name (docs/eza2500-protocol.md)
#   wire     H u16, h i16, B u8
#   Q        Q-format exponent; "-" = raw field (value travels unscaled)
#   rating   the Q-format is relative to it: value = raw * rating / 2**Q
#   in       r: in the "N-1" ACK; w: in the "N-4" request and its ACK
#   =        the same field as the row of that name above (not a second fact)
#   lo hi    settable physical range, inclusive ("-": not settable)
#   unit     V, A, W, °C ("-": none)
#   initial  the simulator's initial value ("-": computed by the simulator,
#            or no state kept); "48.0" is a float, "48" an int
#   Group 12 holds the Q of each meter, group 13 of each internal value;
#   group 14 the ratings as n / 2**nq (a guess of the simulator).
#   1-4 takes only SETTABLE_MODES in ``mode`` (``Field.allowed``).
_ROWS = """
  group name  in  wire  Q   rating  lo    hi      unit  initial
  1     mode  rw  H     -   -       -     -       -     0
  2     cst   r   H     -   -       -     -       -     -
  2     ext   r   H     -   -       -     -       -     0
  3     cvb   rw  H     14  48      32    62      V     48.0
  3     drb   rw  H     13  1       0     3.999   -     0.0
  4     dvg   rw  H     14  380     260   390     V     350.0
  4     drg   rw  H     13  1       0     3.999   -     0.0
  5     pdz   rw  H     14  380     0     57      V     0.0
  5     mdz   rw  H     14  380     0     57      V     0.0
  6     cib   rw  H     13  52.08   0     56.77   A     52.0
  6     dig   rw  H     13  7.8125  0     8.5162  A     2.5
  6     ubv   rw  H     14  48      32    68      V     40.0
  6     ugv   rw  H     14  380     260   425     V     300.0
  6     obv   rw  H     14  48      32    68      V     59.0
  6     ogv   rw  H     14  380     260   425     V     400.0
  7     bcf   rw  H     -   -       0     0xFFFF  -     0x000B
  7     cvb   rw  =
  7     dlb   rw  H     14  48      32    64      V     48.0
  7     cdb   rw  H     14  48      0     12      V     6.0
  7     ddb   rw  H     14  48      0     12      V     1.0
  8     ccr   rw  H     14  48      0     12      V     0.0
  8     ddr   rw  H     14  48      0     12      V     0.0
  9     alm1  r   H     -   -       -     -       -     0
  9     alm2  r   H     -   -       -     -       -     0
  9     alm3  r   H     -   -       -     -       -     0
  9     d0    w   B     -   -       0     0xFF    -     -
  9     d1    w   B     -   -       0     0xFF    -     -
  10    vg    r   h     14  380     -     -       V     -
  10    ig    r   h     13  7.8125  -     -       A     -
  10    vb    r   h     14  48      -     -       V     52.0
  10    ib    r   h     13  52.08   -     -       A     -
  10    wg    r   h     11  2500    -     -       W     -
  10    wb    r   h     11  2500    -     -       W     -
  10    ic    r   h     -   -       -     -       -     0
  10    tmp   r   h     7   1       -     -       °C    30.5
  11    ts    r   h     -   -       -     -       -     0
  11    tp    r   h     -   -       -     -       -     0
  11    v5s   r   h     10  1       -     -       V     5.0
  11    fan1  r   h     0   1       -     -       -     0.0
  11    fan2  r   h     0   1       -     -       -     0.0
  11    fan3  r   h     0   1       -     -       -     0.0
  11    fan4  r   h     0   1       -     -       -     0.0
  11    fan5  r   h     0   1       -     -       -     0.0
  12    vgq   r   H     -   -       -     -       -     14
  12    igq   r   H     -   -       -     -       -     13
  12    vbq   r   H     -   -       -     -       -     14
  12    ibq   r   H     -   -       -     -       -     13
  12    wgq   r   H     -   -       -     -       -     11
  12    wbq   r   H     -   -       -     -       -     11
  12    icq   r   H     -   -       -     -       -     0
  12    tmpq  r   H     -   -       -     -       -     7
  13    tsq   r   H     -   -       -     -       -     0
  13    tpq   r   H     -   -       -     -       -     0
  13    v5q   r   H     -   -       -     -       -     10
  13    fn1q  r   H     -   -       -     -       -     0
  13    fn2q  r   H     -   -       -     -       -     0
  13    fn3q  r   H     -   -       -     -       -     0
  13    fn4q  r   H     -   -       -     -       -     0
  13    fn5q  r   H     -   -       -     -       -     0
  14    vgn   r   H     -   -       -     -       -     380
  14    vgnq  r   H     -   -       -     -       -     0
  14    ign   r   H     -   -       -     -       -     125
  14    ignq  r   H     -   -       -     -       -     4
  14    vbn   r   H     -   -       -     -       -     48
  14    vbnq  r   H     -   -       -     -       -     0
  14    ibn   r   H     -   -       -     -       -     1667
  14    ibnq  r   H     -   -       -     -       -     5
  14    wn    r   H     -   -       -     -       -     2500
  14    wnq   r   H     -   -       -     -       -     0
  15,16 min   r   B     -   -       -     -       -     0
  15,16 maj   r   B     -   -       -     -       -     1
"""


def _cell(text: str) -> Optional[Number]:
    """A cell of _ROWS: "-" -> None, "0x000B"/"48" -> int, "48.0" -> float."""
    if text == "-":
        return None
    try:
        return int(text, 0)
    except ValueError:
        return float(text)


def _parse_rows() -> Dict[Tuple[int, str], Tuple[Field, ...]]:
    """_ROWS -> {(group number, "r" or "w"): fields in wire order}."""
    parts: Dict[Tuple[int, str], Tuple[Field, ...]] = {}
    by_name: Dict[str, Field] = {}
    for line in _ROWS.strip().splitlines()[1:]:
        numbers, name, used, *cells = line.split()
        if cells != ["="]:
            wire, q, rating, lo, hi, unit, initial = cells
            by_name[name] = Field(name, wire, _cell(q), _cell(rating), _cell(lo), _cell(hi),
                                  "" if unit == "-" else unit, None, _cell(initial))
        for number in numbers.split(","):
            for part in used:
                f = replace(by_name[name], allowed=MODES) if (name, part) == ("mode", "w") else by_name[name]
                parts[int(number), part] = parts.get((int(number), part), ()) + (f,)
    return parts


_PARTS = _parse_rows()

#: Legend:  number, CMD, title  (docs/eza2500-protocol.md, "Command table").
GROUPS: Tuple[Group, ...] = tuple(Group(n, cmd, title, _PARTS[n, "r"], _PARTS.get((n, "w")))
                                  for n, cmd, title in (
    (1,  0x00, "operation mode"),
    (2,  0x01, "status"),
    (3,  0x18, "battery CV"),
    (4,  0x1A, "grid voltage"),
    (5,  0x17, "dead zone"),
    (6,  0x1C, "protection"),
    (7,  0x1D, "battery setup"),
    (8,  0x16, "battery deviation"),
    (9,  0x12, "alarms"),
    (10, 0x09, "meters"),
    (11, 0x0A, "internal"),
    (12, 0x0D, "meter Q"),
    (13, 0x0E, "internal Q"),
    (14, 0x11, "ratings"),
    (15, 0x1E, "version"),
    (16, 0x1F, "version"),
))

_BY_NUMBER = {g.number: g for g in GROUPS}
_BY_CMD = {g.cmd: g for g in GROUPS}
_BY_NAME = {g.name(w): (g, w) for g in GROUPS for w in (False, True) if not w or g.write is not None}


def group(number: int) -> Group:
    """The ``Group`` with this number (1..16); KeyError if there is none."""
    return _BY_NUMBER[number]


def group_by_cmd(cmd: int) -> Optional[Group]:
    """The ``Group`` with this CMD code, or ``None``."""
    return _BY_CMD.get(cmd)


def parse_name(name: str) -> Tuple[Group, bool]:
    """("6-4") -> (Group 6, True); KeyError for a command the table lacks."""
    return _BY_NAME[name]


def command_names() -> List[str]:
    """Every command name in table order: "1-1", "1-4", "2-1", "3-1", "3-4", ..."""
    return list(_BY_NAME)
