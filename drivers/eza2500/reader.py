"""Reply reader: find one reply frame on the line within one deadline.

The whole exchange (resync, LEN, rest of the frame) shares a single deadline,
so a line full of noise ends in ``ESSXTimeoutException`` at the deadline (plus
at most one low-level read, ~10 ms), never later.
"""
import logging
import time
from typing import Any, Optional

from essx.essx_exception import ESSXChecksumException, ESSXTimeoutException, ESSXValueException

from .codec import check_reply, hexdump
from .table import FRAME_OVERHEAD, NAK_PAYLOAD, SFD_REPLY, Group, payload_size

logger = logging.getLogger(__name__)


def read_reply(device: Any, group: Group, write: bool, deadline: Optional[float] = None,
               ad1: Optional[int] = None, ad2: Optional[int] = None) -> bytes:
    """Read the reply to "N-1"/"N-4" from ``device``.

    Bytes before SFD 0x02 are discarded; a LEN that is neither the ACK's nor
    the NAK's (2) drops that SFD and resyncs.  A complete candidate frame is
    checked with ``codec.check_reply``; if it is wrong but more bytes are
    already waiting behind it, it was noise that looked like a frame and the
    reader resyncs; if the line is quiet after it, it was the reply and its
    error is raised.

    Args:
        device: an ``EZA2500Device`` (uses ``read_some`` and ``in_waiting``).
        group: ``table.Group``.
        write: True for "N-4".
        deadline: ``time.monotonic()`` limit for the whole reply; default
            now + ``device.timeout``.
        ad1, ad2: expected addresses, or None not to check.
    Returns:
        bytes: the whole frame (ACK or NAK), for ``codec.parse_reply``.
    Raises:
        ESSXTimeoutException: no complete reply by the deadline.
        ESSXChecksumException: the reply's checksum is wrong.
        ESSXValueException: the reply has an unexpected CMD or address.
        ESSXIOException: the port failed.
    """
    if deadline is None:
        deadline = time.monotonic() + device.timeout
    name = group.name(write)
    lengths = (payload_size(group.ack_fields(write)), NAK_PAYLOAD)
    buf = bytearray()
    discarded = 0
    last_error = None
    while True:
        if buf and buf[0] != SFD_REPLY:
            i = buf.find(SFD_REPLY)
            n = len(buf) if i < 0 else i
            discarded += n
            del buf[:n]
        if len(buf) >= 2:
            if buf[1] not in lengths:
                discarded += 1
                del buf[:1]
                continue
            total = buf[1] + FRAME_OVERHEAD
            if len(buf) >= total:
                frame = bytes(buf[:total])
                try:
                    check_reply(frame, group, write, ad1, ad2)
                except (ESSXChecksumException, ESSXValueException) as exc:
                    if len(buf) > total or device.in_waiting() > 0:
                        last_error = exc
                        discarded += 1
                        del buf[:1]
                        continue
                    raise
                if discarded:
                    logger.debug("discarded %d bytes before the reply to %s", discarded, name)
                return frame
            need = total - len(buf)
        else:
            need = 2 - len(buf)
        if time.monotonic() >= deadline:
            detail = "; last frame-like bytes: %s" % last_error if last_error else ""
            raise ESSXTimeoutException(
                "no complete reply to %s from %s in time (%d bytes pending: %s; %d discarded%s)"
                % (name, device.port, len(buf), hexdump(buf), discarded, detail))
        buf += device.read_some(max(need, device.in_waiting()), deadline)
