"""Modbus RTU framing helpers for the simulator's relay (no port needed).

Facts: Modbus over Serial Line 1.02 (CRC-16/MODBUS, low byte first; frame
lengths by function code). Only what the relay needs to find frame ends,
count requests and forge or corrupt replies.
"""


def crc16(data):
    """CRC-16/MODBUS of ``data`` as the two bytes sent on the wire (low first).

    >>> crc16(bytes.fromhex("01040000000a")).hex()
    '700d'
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


def crc_ok(frame):
    """True when the last two bytes of ``frame`` are the CRC of the rest."""
    return len(frame) >= 4 and crc16(frame[:-2]) == bytes(frame[-2:])


def request_length(buf):
    """Length of the request frame at the start of ``buf``.

    Returns:
        int > 0 when known, None when more bytes are needed to tell, 0 for a
        function code whose length is not derivable (frame ends at a gap).
    """
    if len(buf) < 2:
        return None
    function = buf[1]
    if function in (1, 2, 3, 4, 5, 6):
        return 8
    if function in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return 0


def reply_length(buf):
    """Length of the reply frame at the start of ``buf`` (same returns as above)."""
    if len(buf) < 2:
        return None
    function = buf[1]
    if function & 0x80:
        return 5
    if function in (1, 2, 3, 4):
        return 5 + buf[2] if len(buf) >= 3 else None
    if function in (5, 6, 15, 16):
        return 8
    return 0


def exception_reply(unit, function, code):
    """An exception response frame: unit, function | 0x80, code, CRC."""
    body = bytes((unit, (function | 0x80) & 0xFF, code & 0xFF))
    return body + crc16(body)
