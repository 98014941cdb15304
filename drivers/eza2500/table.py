"""The EZA2500 command protocol as data (EZA2500.md, "Command table").

One ``Field`` per wire field, one ``Group`` per command group (1..16).  A
group's read fields are the ACK payload of "N-1"; its write fields are the
request payload of "N-4" (``None`` for read-only groups); its write-ACK
fields are the ACK payload of "N-4".  Everything else (codec, commands,
simulator) is driven by this table; the golden vectors of EZA2500.md pin it.

Frame lengths (EZA2500.md, "Frames"): a frame is SFD LEN AD1 AD2 CMD
payload CHK(2), i.e. 7 bytes plus the payload; a NAK carries ERCD (u16) as
its payload and is therefore 9 bytes long.
"""
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

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

#: Wire types: struct code -> (size in bytes, min raw, max raw).
WIRE_TYPES = {
    "H": (2, 0, 0xFFFF),
    "h": (2, -0x8000, 0x7FFF),
    "B": (1, 0, 0xFF),
}

#: Operation modes accepted by 1-4 (EZA2500.md, "Operation modes accepted by 1-4").
MODE_WAITING = 0x0000
MODE_HETERONOMY_DISCHARGE = 0x0002
MODE_GRID_AUTONOMY = 0x0014
MODE_HETERONOMY_CHARGE = 0x0041
MODES = frozenset({MODE_WAITING, MODE_HETERONOMY_DISCHARGE,
                   MODE_GRID_AUTONOMY, MODE_HETERONOMY_CHARGE})


@dataclass(frozen=True)
class Field:
    """One wire field.

    Attributes:
        name: field name from the table ("dvg").
        wire: struct code 'H' (u16), 'h' (i16) or 'B' (u8).
        q: Q-format exponent, or ``None`` for a raw field (value == raw).
        rating: the rating the Q-format is relative to (physical units).
        lo, hi: allowed physical range for writes (inclusive), ``None`` when
            the field is not settable.
        unit: physical unit ("V", "A", "W", "°C", "" for none).
        allowed: for raw fields, the only values a write may carry
            (``mode`` of 1-4), else ``None``.
    """

    name: str
    wire: str
    q: Optional[int] = None
    rating: Optional[float] = None
    lo: Optional[float] = None
    hi: Optional[float] = None
    unit: str = ""
    allowed: Optional[FrozenSet[int]] = None

    @property
    def size(self):
        """Bytes on the wire (1 or 2)."""
        return WIRE_TYPES[self.wire][0]

    @property
    def raw_min(self):
        """Smallest raw value the wire type carries."""
        return WIRE_TYPES[self.wire][1]

    @property
    def raw_max(self):
        """Largest raw value the wire type carries."""
        return WIRE_TYPES[self.wire][2]

    @property
    def bounds(self):
        """(lo, hi) a write may carry, in physical units: the settable range,
        or the wire type's raw range for a field without one."""
        return (self.lo, self.hi) if self.lo is not None else (self.raw_min, self.raw_max)

    @property
    def is_raw(self):
        """True when the field travels unscaled (no Q-format)."""
        return self.q is None

    def range_text(self):
        """Human text of what a write may carry: "[260, 390] V" or "{0x0000, ...}"."""
        if self.allowed is not None:
            return "{%s}" % ", ".join("0x%04x" % v for v in sorted(self.allowed))
        text = "[%s, %s]" % tuple(_num(b) for b in self.bounds)
        return text + (" " + self.unit if self.unit else "")


def _num(x):
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

    def name(self, write):
        """Command name: "6-1" for a read, "6-4" for a write."""
        return "%d-%d" % (self.number, 4 if write else 1)

    def request_fields(self, write):
        """Fields of the request payload (empty for a read); ValueError for a
        write to a read-only group."""
        if not write:
            return ()
        if self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self.write

    def ack_fields(self, write):
        """Fields of the ACK payload; ValueError for a write to a read-only group."""
        if not write:
            return self.read
        if self.write is None:
            raise ValueError("group %d is read only" % self.number)
        return self.write_ack if self.write_ack is not None else self.write

    def request_length(self, write):
        """Total request frame length in bytes (7 + payload)."""
        return FRAME_OVERHEAD + payload_size(self.request_fields(write))

    def ack_length(self, write):
        """Total ACK frame length in bytes (7 + payload)."""
        return FRAME_OVERHEAD + payload_size(self.ack_fields(write))


def payload_size(fields):
    """Bytes taken by ``fields`` on the wire."""
    return sum(f.size for f in fields)


# --- the table (EZA2500.md, "Command table"); one row per field -----------

def _h(name, q=None, rating=None, lo=None, hi=None, unit=""):
    return Field(name, "H", q, rating, lo, hi, unit)


def _s(name, q=None, rating=None, unit=""):
    return Field(name, "h", q, rating, unit=unit)


def _b(name, lo=None, hi=None):
    return Field(name, "B", lo=lo, hi=hi)


_MODE_READ = _h("mode")
_MODE_WRITE = Field("mode", "H", allowed=MODES)
_CVB = _h("cvb", 14, 48, 32, 62, "V")
_D0D1 = (_b("d0", 0, 0xFF), _b("d1", 0, 0xFF))

_G3 = (_CVB, _h("drb", 13, 1, 0, 3.999))
_G4 = (_h("dvg", 14, 380, 260, 390, "V"), _h("drg", 13, 1, 0, 3.999))
_G5 = (_h("pdz", 14, 380, 0, 57, "V"), _h("mdz", 14, 380, 0, 57, "V"))
_G6 = (
    _h("cib", 13, 52.08, 0, 56.77, "A"),
    _h("dig", 13, 7.8125, 0, 8.5162, "A"),
    _h("ubv", 14, 48, 32, 68, "V"),
    _h("ugv", 14, 380, 260, 425, "V"),
    _h("obv", 14, 48, 32, 68, "V"),
    _h("ogv", 14, 380, 260, 425, "V"),
)
_G7 = (
    _h("bcf", lo=0, hi=0xFFFF),
    _CVB,
    _h("dlb", 14, 48, 32, 64, "V"),
    _h("cdb", 14, 48, 0, 12, "V"),
    _h("ddb", 14, 48, 0, 12, "V"),
)
_G8 = (_h("ccr", 14, 48, 0, 12, "V"), _h("ddr", 14, 48, 0, 12, "V"))
_G10 = (
    _s("vg", 14, 380, "V"),
    _s("ig", 13, 7.8125, "A"),
    _s("vb", 14, 48, "V"),
    _s("ib", 13, 52.08, "A"),
    _s("wg", 11, 2500, "W"),
    _s("wb", 11, 2500, "W"),
    _s("ic"),
    _s("tmp", 7, 1, "°C"),
)
_G11 = (_s("ts"), _s("tp"), _s("v5s", 10, 1, "V")) + tuple(
    _s("fan%d" % i, 0, 1) for i in range(1, 6))
_G12 = tuple(_h(n) for n in ("vgq", "igq", "vbq", "ibq", "wgq", "wbq", "icq", "tmpq"))
_G13 = tuple(_h(n) for n in ("tsq", "tpq", "v5q", "fn1q", "fn2q", "fn3q", "fn4q", "fn5q"))
_G14 = tuple(_h(n) for n in ("vgn", "vgnq", "ign", "ignq", "vbn", "vbnq",
                             "ibn", "ibnq", "wn", "wnq"))
_VERSION = (_b("min"), _b("maj"))

GROUPS = (
    Group(1, 0x00, "operation mode", (_MODE_READ,), (_MODE_WRITE,)),
    Group(2, 0x01, "status", (_h("cst"), _h("ext"))),
    Group(3, 0x18, "battery CV", _G3, _G3),
    Group(4, 0x1A, "grid voltage", _G4, _G4),
    Group(5, 0x17, "dead zone", _G5, _G5),
    Group(6, 0x1C, "protection", _G6, _G6),
    Group(7, 0x1D, "battery setup", _G7, _G7),
    Group(8, 0x16, "battery deviation", _G8, _G8),
    Group(9, 0x12, "alarms", (_h("alm1"), _h("alm2"), _h("alm3")), _D0D1, _D0D1),
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


def group(number):
    """The ``Group`` with this number (1..16); KeyError if there is none."""
    return _BY_NUMBER[number]


def group_by_cmd(cmd):
    """The ``Group`` with this CMD code, or ``None`` (unknown code)."""
    return _BY_CMD.get(cmd)


def parse_name(name):
    """("6-4") -> (Group 6, True); KeyError for a command the table lacks."""
    try:
        number, kind = (int(x) for x in name.split("-"))
    except (ValueError, AttributeError):
        raise KeyError(name) from None
    g = _BY_NUMBER.get(number)
    if g is None or kind not in (1, 4) or (kind == 4 and g.write is None):
        raise KeyError(name)
    return g, kind == 4


def command_names():
    """Every command name in table order: "1-1", "1-4", "2-1", "3-1", "3-4", ..."""
    names = []
    for g in GROUPS:
        names.append(g.name(False))
        if g.write is not None:
            names.append(g.name(True))
    return names
