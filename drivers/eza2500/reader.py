"""Reply reader: one reply frame off the line within one deadline
(docs/eza2500-protocol.md, "Reading a reply")."""
import logging
import time
from typing import Optional, Protocol

from essx.essx_exception import ESSXChecksumException, ESSXTimeoutException, ESSXValueException

from .codec import check_reply, hexdump
from .table import FRAME_OVERHEAD, NAK_PAYLOAD, SFD_REPLY, Group

logger = logging.getLogger(__name__)


class ReplySource(Protocol):
    """What ``read_reply`` needs of its device (an ``EZA2500Device``)."""

    #: Whole-read timeout, s: the default deadline is now + this.
    timeout: float

    @property
    def port(self) -> str:
        """The port's name, for messages ("/dev/ttyO2")."""

    def in_waiting(self) -> int:
        """Bytes received and not read yet.  Raises ESSXIOException."""

    def read_some(self, size: int, deadline: float) -> bytes:
        """What has been received once ``size`` more bytes are in or at
        ``deadline``, whichever comes first (maybe fewer or more bytes, maybe
        b"").  Raises ESSXIOException, or ESSXTimeoutException once
        ``deadline`` has passed."""


def read_reply(device: ReplySource, group: Group, write: bool, deadline: Optional[float] = None,
               ad1: Optional[int] = None, ad2: Optional[int] = None) -> bytes:
    """The whole reply frame to "N-1" (``write`` False) or "N-4" of ``group``
    from ``device``, for ``codec.parse_reply``: bytes SFD .. CHK, 7 + LEN long,
    an ACK or a 9-byte NAK (docs/eza2500-protocol.md, "Frames").  ``ad1``,
    ``ad2``: the request's addresses, only for the DEBUG log of a reply from
    others ("Addresses").

    As docs/eza2500-protocol.md, "Reading a reply": bytes before SFD 0x02 are
    dropped; so is an SFD followed by a LEN that is neither the ACK's nor the
    NAK's.  A candidate frame that fails ``codec.check_reply`` is noise when
    more bytes wait behind it (resync), else the reply, and its error is
    raised.  Resync and frame share one ``deadline`` (``time.monotonic()`` s;
    default now + ``device.timeout``), so noise ends at it, or on a port
    without ``read_at_least`` at most one low-level read (~10 ms, "Timing")
    after it, never later.

    Raises:
        ESSXTimeoutException: no complete reply by the deadline.
        ESSXChecksumException: the reply's checksum is wrong.
        ESSXValueException: the reply has an unexpected LEN or CMD.
        ESSXIOException: the port failed.
    """
    if deadline is None:
        deadline = time.monotonic() + device.timeout
    name = group.name(write)
    lengths = (group.ack_shape(write)[1], NAK_PAYLOAD)
    shortest = min(lengths) + FRAME_OVERHEAD   # no reply is complete before this many bytes
    buf, received, last_error = bytearray(), 0, None
    while True:
        del buf[:buf.find(SFD_REPLY) if SFD_REPLY in buf else len(buf)]
        if len(buf) >= 2 and buf[1] not in lengths:
            del buf[:1]
            continue
        total = buf[1] + FRAME_OVERHEAD if len(buf) >= 2 else shortest
        if len(buf) >= total:
            frame = bytes(buf[:total])
            try:
                check_reply(frame, group, write, ad1, ad2)
            except (ESSXChecksumException, ESSXValueException) as exc:
                if len(buf) == total and device.in_waiting() == 0:
                    raise
                last_error = exc   # more bytes behind it: noise that looked like a frame
                del buf[:1]
                continue
            if received > len(buf):
                logger.debug("discarded %d bytes before the reply to %s", received - len(buf), name)
            return frame
        if time.monotonic() >= deadline:
            detail = "; last frame-like bytes: %s" % last_error if last_error else ""
            raise ESSXTimeoutException("no complete reply to %s from %s in time (%d bytes pending: %s; "
                                       "%d discarded%s)" % (name, device.port, len(buf), hexdump(buf),
                                                            received - len(buf), detail))
        chunk = device.read_some(total - len(buf), deadline)
        received += len(chunk)
        buf += chunk
