"""The reply to a Modbus RTU read among the junk on a shared line: pure functions on bytes.

RTU has no transaction id, so what arrives after a request may hold junk before
(or instead of) its reply (docs/battery-registers.md, "Junk on the line"): the
adapter's echo of the request, noise, CRC-valid frames of other units or other
function codes, a reply whose byte count does not fit the request, a reply with
a bad CRC. :func:`find_reply` takes the first valid reply out of the bytes
received so far; :func:`describe` names what came instead when there is none.
Frames are as in docs/battery-registers.md, "Function code and framing" (its
"CRC" and "Exception replies"): unit, function code, data, CRC-16/MODBUS sent
low byte first.

Nothing here touches a port: ``essx.essx_modbus`` feeds the bytes of each try
through pymodbus's public ``trace_packet`` hook, so pymodbus's framer only ever
sees a valid reply (docs/reference-defects.md, D6 and D13: one bad frame no
longer fails the read, and the scan never outlasts the try's reply window).

The examples below use the request of docs/battery-registers.md (unit 1,
function 4, PDU address 29, count 2) and its reply (RSOC 625, status 0):

>>> request = bytes.fromhex("0104001d0002e1cd")
>>> answer = bytes.fromhex("01040402710000aa27")
>>> find_reply(request + answer, request) == answer  # behind the adapter's echo
True
>>> describe(request, request)
'echo of the request'
"""
from typing import Dict, Optional

from pymodbus.framer import FramerRTU

__all__ = ["READ_FUNCTIONS", "WRITE_FUNCTIONS", "crc", "crc_ok", "byte_count", "find_reply",
           "describe"]

#: Function codes whose RTU frames the junk scan recognises (Modbus application
#: protocol 1.1b, 6): reads with a byte count, and single/multiple writes.
READ_FUNCTIONS, WRITE_FUNCTIONS = (1, 2, 3, 4), (5, 6, 15, 16)


def crc(body: bytes) -> bytes:
    """The CRC-16/MODBUS of ``body`` (unit to last data byte) as it is sent: 2 bytes,
    low byte first (docs/battery-registers.md, "CRC").

    >>> crc(bytes.fromhex("0104001d0002")).hex()
    'e1cd'
    >>> crc(b"123456789").hex()  # the check value 0x4B37, low byte first
    '374b'
    """
    return FramerRTU.compute_CRC(bytes(body)).to_bytes(2, "big")


def crc_ok(frame: bytes) -> bool:
    """True when ``frame`` (at least 4 bytes) ends in the CRC of the bytes before it.

    >>> crc_ok(bytes.fromhex("018402c2c1")), crc_ok(bytes.fromhex("018402c2c0"))
    (True, False)
    >>> crc_ok(bytes(2))  # too short to be a frame
    False
    """
    return len(frame) >= 4 and crc(frame[:-2]) == frame[-2:]


def byte_count(request: bytes) -> Optional[int]:
    """The byte count a valid reply to the RTU read ``request`` carries (int, bytes:
    2 per register for functions 3 and 4, 1 per 8 bits for 1 and 2); None when
    ``request`` is not an 8-byte read (function 1-4).

    >>> byte_count(bytes.fromhex("0104001d0002e1cd"))  # 2 input registers
    4
    >>> byte_count(bytes.fromhex("01010000000a0000"))  # 10 coils
    2
    >>> byte_count(bytes.fromhex("0106001d00010000")) is None  # a write
    True
    """
    if len(request) != 8 or request[1] not in READ_FUNCTIONS:
        return None
    count = int.from_bytes(request[4:6], "big")
    return 2 * count if request[1] in (3, 4) else (count + 7) // 8


def _frame_length(buf: bytes, i: int) -> int:
    """Length of the CRC-valid RTU reply frame at ``buf[i:]`` (a known function code
    or its exception, any unit), 0 when there is none."""
    if len(buf) - i < 4:
        return 0
    function = buf[i + 1]
    if function & 0x80 and function & 0x7F in READ_FUNCTIONS + WRITE_FUNCTIONS:
        length = 5
    elif function in READ_FUNCTIONS:
        length = 5 + buf[i + 2]
    elif function in WRITE_FUNCTIONS:
        length = 8
    else:
        return 0
    return length if i + length <= len(buf) and crc_ok(buf[i:i + length]) else 0


def find_reply(buf: bytes, request: bytes) -> Optional[bytes]:
    """The first valid reply to the RTU read ``request`` (8 bytes, function 1-4)
    anywhere in ``buf`` (the bytes received so far): a frame of the request's unit
    with its function code and the byte count it asked for, or its exception reply
    (function code | 0x80, 5 bytes), with a good CRC. None when there is none (yet):
    an incomplete reply is not taken.

    >>> request = bytes.fromhex("0104001d0002e1cd")
    >>> answer = bytes.fromhex("01040402710000aa27")
    >>> find_reply(bytes.fromhex("ffff00") + answer, request).hex()  # behind noise
    '01040402710000aa27'
    >>> find_reply(bytes.fromhex("018402c2c1"), request).hex()  # exception 2
    '018402c2c1'
    >>> find_reply(answer[:-1], request) is None  # not complete yet
    True
    """
    expected = byte_count(request)
    unit, function = request[0], request[1]
    for i in range(len(buf) - 4):
        if buf[i] != unit:
            continue
        if buf[i + 1] == function | 0x80:
            length = 5
        elif buf[i + 1] == function and buf[i + 2] == expected:
            length = 5 + expected
        else:
            continue
        if i + length <= len(buf) and crc_ok(buf[i:i + length]):
            return bytes(buf[i:i + length])
    return None


def describe(buf: bytes, request: bytes) -> str:
    """What ``buf`` (received after the RTU read ``request``, 8 bytes, function 1-4)
    holds instead of a valid reply, in the words of docs/battery-registers.md,
    "Junk on the line"; "" when ``buf`` is empty. Each kind is named once, in the
    order first seen, with "(N times)" when repeated:

    - "echo of the request": the request's own bytes;
    - "reply from unit N", "function N reply", "byte count N for M registers"
      (or "bits"): CRC-valid frames of another unit, another function code, or
      a byte count that does not fit the request;
    - "a reply with a bad CRC": the request's unit, function and byte count,
      complete, with a CRC that does not match;
    - "N bytes of noise": every other byte.

    >>> request = bytes.fromhex("0104001d0002e1cd")
    >>> describe(request + bytes(3), request)
    'echo of the request, 3 bytes of noise'
    >>> describe(bytes.fromhex("020404027100009927") * 2, request)
    'reply from unit 2 (2 times)'
    >>> describe(bytes.fromhex("01030402710000ab90"), request)
    'function 3 reply'
    >>> describe(bytes.fromhex("0104060271000000075cb8"), request)
    'byte count 6 for 2 registers'
    >>> describe(bytes.fromhex("01040402710000aa28"), request)
    'a reply with a bad CRC'
    >>> describe(b"", request)
    ''
    """
    expected = byte_count(request)
    unit, function = request[0], request[1]
    counts: Dict[str, int] = {}  # label -> times seen, in order of first sight
    noise, i = 0, 0
    while i < len(buf):
        length, label = _frame_length(buf, i), None
        if buf[i:i + len(request)] == request:
            length, label = len(request), "echo of the request"
        elif length and buf[i] != unit:
            label = "reply from unit %d" % buf[i]
        elif length and buf[i + 1] & 0x7F != function:
            label = "function %d reply" % (buf[i + 1] & 0x7F)
        elif length:
            what = "registers" if function in (3, 4) else "bits"
            label = "byte count %d for %d %s" % (buf[i + 2], int.from_bytes(request[4:6], "big"),
                                                  what)
        elif buf[i:i + 3] == bytes((unit, function, expected)) and i + 5 + expected <= len(buf):
            length, label = 5 + expected, "a reply with a bad CRC"
        if label is None:
            counts.setdefault("noise", 0)
            noise, i = noise + 1, i + 1
            continue
        counts[label] = counts.get(label, 0) + 1
        i += length
    parts = ["%d bytes of noise" % noise if label == "noise" else
             label + (" (%d times)" % times if times > 1 else "") for label, times in counts.items()]
    return ", ".join(parts)
