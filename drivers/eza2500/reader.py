"""Reply reader: one reply frame off the line within one deadline.

Resync, LEN and the rest of the frame share a single deadline, so a line full
of noise ends in ``ESSXTimeoutException`` at the deadline (plus at most one
low-level read, ~10 ms), never later.
"""
import logging
import time
from typing import Any, Optional, Tuple

from essx.essx_exception import ESSXChecksumException, ESSXTimeoutException, ESSXValueException

from .codec import check_reply, hexdump
from .table import FRAME_OVERHEAD, NAK_PAYLOAD, SFD_REPLY, Group, payload_size

logger = logging.getLogger(__name__)


class _Scan:
    """The bytes read so far for one reply, and what was thrown away."""

    def __init__(self, device: Any, group: Group, write: bool, ad1: Optional[int], ad2: Optional[int]):
        self.device, self.group, self.write, self.ad1, self.ad2 = device, group, write, ad1, ad2
        self.name = group.name(write)
        self.lengths = (payload_size(group.ack_fields(write)), NAK_PAYLOAD)
        self.buf = bytearray()
        self.discarded = 0
        self.last_error: Optional[Exception] = None

    def _drop(self, n: int) -> None:
        self.discarded += n
        del self.buf[:n]

    def step(self) -> Tuple[Optional[bytes], int]:
        """(frame, 0) once the buffer starts with a good frame, else (None,
        bytes still needed); resyncs past noise; raises the checksum/CMD error
        of a frame the line is quiet after."""
        buf = self.buf
        while True:
            if buf and buf[0] != SFD_REPLY:
                i = buf.find(SFD_REPLY)
                self._drop(len(buf) if i < 0 else i)
            if len(buf) < 2:
                return None, 2 - len(buf)
            if buf[1] not in self.lengths:
                self._drop(1)
                continue
            total = buf[1] + FRAME_OVERHEAD
            if len(buf) < total:
                return None, total - len(buf)
            frame = bytes(buf[:total])
            try:
                check_reply(frame, self.group, self.write, self.ad1, self.ad2)
            except (ESSXChecksumException, ESSXValueException) as exc:
                if len(buf) == total and self.device.in_waiting() == 0:
                    raise
                self.last_error = exc   # more bytes behind it: noise that looked like a frame
                self._drop(1)
                continue
            if self.discarded:
                logger.debug("discarded %d bytes before the reply to %s", self.discarded, self.name)
            return frame, 0

    def timeout(self) -> ESSXTimeoutException:
        detail = "; last frame-like bytes: %s" % self.last_error if self.last_error else ""
        return ESSXTimeoutException(
            "no complete reply to %s from %s in time (%d bytes pending: %s; %d discarded%s)"
            % (self.name, self.device.port, len(self.buf), hexdump(self.buf), self.discarded, detail))


def read_reply(device: Any, group: Group, write: bool, deadline: Optional[float] = None,
               ad1: Optional[int] = None, ad2: Optional[int] = None) -> bytes:
    """The whole reply frame (ACK or NAK) to "N-1"/"N-4" from ``device`` (an
    ``EZA2500Device``), for ``codec.parse_reply``.

    Bytes before SFD 0x02 are dropped; so is an SFD followed by a LEN that is
    neither the ACK's nor the NAK's.  A candidate frame that fails
    ``codec.check_reply`` is noise when more bytes wait behind it (resync),
    else the reply, and its error is raised.  ``deadline`` is a
    ``time.monotonic()`` limit (default now + ``device.timeout``).

    Raises:
        ESSXTimeoutException: no complete reply by the deadline.
        ESSXChecksumException: the reply's checksum is wrong.
        ESSXValueException: the reply has an unexpected LEN or CMD.
        ESSXIOException: the port failed.
    """
    if deadline is None:
        deadline = time.monotonic() + device.timeout
    scan = _Scan(device, group, write, ad1, ad2)
    while True:
        frame, need = scan.step()
        if frame is not None:
            return frame
        if time.monotonic() >= deadline:
            raise scan.timeout()
        scan.buf += device.read_some(max(need, device.in_waiting()), deadline)
