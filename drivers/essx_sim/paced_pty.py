"""One engine for the simulators' serial lines: a pty served by a thread that
frames requests, paces replies at the baud rate and logs collisions.

Both simulated devices (the EZA2500 converter and the Modbus battery) are
"request in, reply out" devices on a half-duplex line.  ``PacedPty`` is what
they share:

* a ``PtyPort`` the client opens (optionally through a symlink);
* one serving thread: a loop waiting (``essx.essx_rs485.wait_ready``: select,
  poll above descriptor 1023, as in a hundred-node grid) on the pty master, a
  wake-up pipe and any extra descriptors the device watches (the battery's
  pymodbus side);
* framing: a device-supplied ``framer`` cuts request frames off the input;
  after ``gap`` seconds of silence it is told so (flush or drop a partial);
* pacing: a reply starts no earlier than asked (request's end on the wire +
  turnaround) and after the previous reply, and each byte is written when it
  has crossed the wire at ``baudrate`` (10 bits a byte), deadline-based;
* a collision log: request bytes arriving while a reply is queued or on the
  line.

Timing model only (no protocol here); the devices keep their own framing and
answers.
"""
import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Deque, Dict, List, Optional

from essx.essx_rs485 import wait_ready
from essx_sim.ptyport import PtyPort

log = logging.getLogger(__name__)

#: Bits on the wire per byte: start + 8 data + stop (8N1).
BITS_PER_BYTE = 10
#: Bytes written at once while pacing (fewer wake-ups; a byte is at most
#: this many byte times late, never early).
PACE_CHUNK = 4
#: Collisions kept in ``collision_log``.
COLLISIONS_KEPT = 1000
#: Seconds stop()/reopen() wait for the serving thread.
JOIN_TIMEOUT_S = 5.0
#: Seconds to back off after an I/O error on a descriptor.
ERROR_BACKOFF_S = 0.02

#: framer(buf, at_gap) -> complete frames cut off the front of ``buf``.
Framer = Callable[[bytearray, bool], List[bytes]]
#: on_frame(frame, wire_end): wire_end = monotonic s the frame's last bit ended.
FrameHandler = Callable[[bytes, float], None]


def wire_time(nbytes: float, baudrate: float) -> float:
    """Seconds ``nbytes`` (may be fractional, e.g. 3.5 for a Modbus gap) take on a
    serial line at ``baudrate`` bits/s (8N1 = BITS_PER_BYTE bits a byte)."""
    return nbytes * BITS_PER_BYTE / baudrate


@dataclass(frozen=True)
class Collision:
    """Request bytes that arrived while a reply was queued or on the line.

    Attributes:
        time: arrival, ``time.monotonic()`` s.
        nbytes: how many bytes arrived in that read.
        reply: sequence number of the reply they collided with (1, 2, ...).
    """

    time: float
    nbytes: int
    reply: int


class _Reply:
    """A reply frame on its way out, byte by byte."""

    def __init__(self, frame: bytes, start: float, seq: int):
        self.frame = frame
        self.start = start  # monotonic s the first byte goes on the wire
        self.sent = 0
        self.seq = seq


class PacedPty:
    """A device's end of a simulated serial line (see module docstring).

    Args:
        framer: ``framer(buf, at_gap) -> [frame, ...]`` cuts complete request
            frames off the front of ``buf`` (a bytearray it may edit: drop
            junk, resync); ``at_gap`` is True after ``gap`` s of silence (the
            framer then flushes or drops what is left).
        on_frame: ``on_frame(frame, wire_end)``, called in the serving thread
            for every frame; it answers with ``reply()``.
        baudrate: wire speed, bits/s (10 bits a byte).
        gap: seconds of silence that end a partial frame.
        link: optional symlink to point at the pty (see ``PtyPort``).
        name: thread name.
    Raises:
        ValueError: baudrate <= 0 or gap <= 0.
    """

    def __init__(self, framer: Framer, on_frame: FrameHandler, baudrate: float, *,
                 gap: float, link: Optional[str] = None, name: str = "paced-pty"):
        if baudrate <= 0 or gap <= 0:
            raise ValueError("baudrate=%r and gap=%r must be > 0" % (baudrate, gap))
        self.framer, self.on_frame = framer, on_frame
        self.baudrate, self.gap, self.link, self.name = baudrate, gap, link, name
        self.collision_bytes = 0     # request bytes that collided (total)
        self.collided_replies = 0    # replies that saw at least one collision
        self._log: Deque[Collision] = collections.deque(maxlen=COLLISIONS_KEPT)
        self._lock = threading.Lock()
        self._watched: Dict[int, Callable[[bytes], None]] = {}
        self._commands: Deque[Callable[[], None]] = collections.deque()
        self._pty: Optional[PtyPort] = None
        self._wake_r = self._wake_w = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._seq = 0  # sequence number of the last reply queued
        self._reset_line()

    # -- life cycle ------------------------------------------------------------
    @property
    def port(self) -> Optional[str]:
        """What a client opens: ``link`` if given, else ``/dev/pts/N`` (None when stopped)."""
        return self._pty.port if self._pty else self.link

    @property
    def path(self) -> Optional[str]:
        """The pty slave's device name (None when stopped)."""
        return self._pty.path if self._pty else None

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._thread is not None

    def watch(self, fd: int, callback: Callable[[bytes], None]) -> None:
        """Also read ``fd`` in the serving loop: ``callback(data)`` in that
        thread for every chunk read.  Call before start(); stop() forgets it."""
        self._watched[fd] = callback

    def start(self) -> "PacedPty":
        """Open the pty (and link) and start serving; returns self.

        Raises:
            OSError: no pty; ValueError: ``link`` exists and is not a symlink.
        """
        if self._thread is not None:
            return self
        self._pty = PtyPort(self.link)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._reset_line()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name="%s %s" % (self.name, self._pty.path), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the pty and pipe, remove the link; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._wake()
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.error("%s: serving thread did not stop", self.name)
        if self._pty is not None:
            self._pty.close()
        self._pty = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
        self._watched.clear()

    def reopen(self) -> str:
        """Unplug/replug: serve on a new pty (``link`` moves to it); clients
        holding the old one get I/O errors.  Queued replies and partial input
        are dropped.  Returns the new ``port``.

        Raises:
            RuntimeError: not running, or the serving thread did not swap in time;
            OSError: no pty; ValueError: ``link`` exists and is not a symlink.
        """
        if self._thread is None:
            raise RuntimeError("%s is not running" % self.name)
        new = PtyPort(self.link)  # here, so that a failure reaches the caller, not the thread
        done = threading.Event()

        def swap():
            old, self._pty = self._pty, new
            self._reset_line()
            old.close()
            done.set()

        self._commands.append(swap)
        self._wake()
        if not done.wait(JOIN_TIMEOUT_S):
            raise RuntimeError("%s did not reopen its port" % self.name)
        return self.port

    # -- output ----------------------------------------------------------------
    def reply(self, frame: bytes, not_before: float) -> None:
        """Queue ``frame`` to go out paced, its first bit at ``not_before``
        (monotonic s) at the earliest and after any reply already queued.
        Call from ``on_frame`` or a ``watch`` callback (the serving thread)."""
        start = max(not_before, time.monotonic())
        if self._queue:
            last = self._queue[-1]
            start = max(start, last.start + wire_time(len(last.frame), self.baudrate))
        self._seq += 1
        self._queue.append(_Reply(bytes(frame), start, self._seq))

    def write_raw(self, data: bytes) -> int:
        """Put ``data`` on the line now, unpaced (noise a test injects);
        returns the bytes written (0 when the pty is full or closed)."""
        pty = self._pty
        if pty is None:
            return 0
        try:
            return os.write(pty.master, data)
        except OSError as exc:
            log.debug("%s: raw write dropped: %s", self.name, exc)
            return 0

    @property
    def collision_log(self) -> List[Collision]:
        """The last COLLISIONS_KEPT collisions, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    # -- the serving thread ----------------------------------------------------
    def _reset_line(self):
        self._buf = bytearray()
        self._first = self._last = 0.0  # arrival of the buffer's first / last byte
        self._queue: Deque[_Reply] = collections.deque()
        self._collided = 0  # seq of the last reply counted in collided_replies

    def _wake(self):
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"x")
            except OSError as exc:
                log.debug("%s: wake: %s", self.name, exc)

    def _run(self, stop: threading.Event):
        while not stop.is_set():
            fds = (self._pty.master, self._wake_r, *self._watched)
            try:  # a ready fd is readable or failed: _read handles both
                ready = wait_ready(fds, (), self._timeout())
            except (OSError, ValueError) as exc:
                log.debug("%s: wait: %s", self.name, exc)
                stop.wait(ERROR_BACKOFF_S)
                continue
            if self._wake_r in ready:
                self._read(self._wake_r)
                while self._commands:
                    self._commands.popleft()()
                continue
            if self._pty.master in ready:
                self._on_input(self._read(self._pty.master), time.monotonic())
            for fd, callback in self._watched.items():
                if fd in ready:
                    callback(self._read(fd))
            self._frame(time.monotonic())
            self._pump(time.monotonic())

    def _read(self, fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:  # EIO on a pty whose other side is gone
            log.debug("%s: read fd %d: %s", self.name, fd, exc)
            self._stop.wait(ERROR_BACKOFF_S)
            return b""

    def _timeout(self) -> Optional[float]:
        """Seconds until the next paced chunk or frame gap is due (None: none)."""
        times = []
        if self._queue:
            r = self._queue[0]
            times.append(r.start + wire_time(min(r.sent + PACE_CHUNK, len(r.frame)), self.baudrate))
        if self._buf:
            times.append(self._last + self.gap)
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def _on_input(self, data: bytes, now: float):
        if not data:
            return
        if self._queue:
            self._log_collision(data, now)
        if not self._buf:
            self._first = now
        self._last = now
        self._buf += data

    def _log_collision(self, data: bytes, now: float):
        seq = self._queue[0].seq
        with self._lock:
            self.collision_bytes += len(data)
            if seq != self._collided:
                self._collided = seq
                self.collided_replies += 1
            self._log.append(Collision(now, len(data), seq))
        log.info("%s: collision: %d request bytes while a reply was on the line", self.name, len(data))

    def _frame(self, now: float):
        """Cut frames off the input and hand them to ``on_frame``."""
        if not self._buf:
            return
        frames = self.framer(self._buf, now - self._last >= self.gap)
        offset = 0
        for frame in frames:
            offset += len(frame)
            wire_end = self._first + wire_time(offset, self.baudrate)
            try:
                self.on_frame(frame, wire_end)
            except Exception:  # noqa: BLE001 - a device bug must not kill the line
                log.exception("%s: failed on frame %s", self.name, frame.hex(" "))
        if frames and self._buf:
            self._first += wire_time(offset, self.baudrate)

    def _pump(self, now: float):
        """Write every reply byte that has crossed the wire by ``now``."""
        while self._queue:
            r = self._queue[0]
            due = min(len(r.frame), int((now - r.start) * self.baudrate / BITS_PER_BYTE))
            if due > r.sent:
                try:
                    r.sent += os.write(self._pty.master, r.frame[r.sent:due])
                except OSError as exc:  # BlockingIOError: nobody drains the client side
                    log.debug("%s: reply dropped after %d bytes: %s", self.name, r.sent, exc)
                    r.sent = len(r.frame)
            if r.sent < len(r.frame):
                return
            self._queue.popleft()


class OnLine:
    """Mixin for a simulated device served by a ``PacedPty`` in ``self._line``:
    ``port``, ``write_raw``, ``collision_log`` and ``with`` blocks (``start()``/``stop()``)."""

    _line: PacedPty

    @property
    def port(self) -> Optional[str]:
        """Path a client opens: ``link`` if given, else the pty slave's name
        (None when stopped without a link)."""
        return self._line.port

    @property
    def collision_log(self) -> List[Collision]:
        """When request bytes met a reply on the line, oldest first (``Collision``)."""
        return self._line.collision_log

    def write_raw(self, data: bytes) -> int:
        """Put ``data`` on the line now, as if the device sent it (noise);
        returns the bytes written."""
        return self._line.write_raw(data)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
