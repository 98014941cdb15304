"""A simulated battery: a pymodbus RTU server behind a pty, with faults.

Register map (battery-modbus.md), input registers, PDU addresses:

====  ===========  ==========================================================
 0-2  30001-30003  protocol version "1","0","0" -> 0x3031, 0x3030, 0x3030
   9  30010        vendor name, ASCII pair (``VENDOR``; not a real vendor)
  29  30030        RSOC in 0.1 %
  30  30031        status: bit 0 = 1 means interchange NOT permitted
====  ===========  ==========================================================

Other addresses answer "illegal data address". The map is one shared block,
so holding-register reads (function 3) see the same values.

Layout: two ptys and a relay thread between their masters::

    client -- slave A (port, or the symlink ``link``) = master A
                        relay thread (framing, faults, pacing)
    pymodbus ModbusSerialServer -- slave B = master B

A pty master has no path, and pymodbus's serial server opens its port by
path, so the server opens slave B. The relay frames requests (unit filter,
CRC check, request count, collision count), applies the faults (silent,
exception replies, bad CRC) and paces every reply at the configured baud
(10 bits a byte) after ``turnaround`` from the request's end on the wire,
deadline-based. The pymodbus server runs in its own thread with its own
asyncio loop.

Needs pymodbus 3.16 (``SimDevice`` with ``action``; the older datastore
contexts are deep-copied into the server in 3.16, so values written to them at
run time would not be seen).

Run as a script: ``python -m battery_emulator.simulator --link /tmp/ttyBAT
[--rsoc 55.5] [--not-permitted] [--baud 9600] [--unit 1]``; serves until
SIGINT/SIGTERM.
"""
import argparse
import asyncio
import collections
import logging
import os
import select
import signal
import threading
import time

from pymodbus.framer import FramerType
from pymodbus.server import ModbusBaseServer, ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from battery_emulator import rtu
from essx.essx_pty import PtyPort

logger = logging.getLogger(__name__)

VERSION_REGISTERS = (0x3031, 0x3030, 0x3030)  # "1", "0", "0"
VENDOR = "SM"  # simulator; ASCII pair in register 30010
RSOC_ADDRESS = 29  # 30030
STATUS_ADDRESS = 30  # 30031
STATUS_NOT_PERMITTED = 0x0001
#: Bits per character on the wire used for pacing (start + 8 + stop).
BITS_PER_CHAR = 10
#: How long start() waits for the server thread to be listening, seconds.
START_TIMEOUT_S = 5.0
#: Raw request frames remembered in ``frames``.
FRAMES_KEPT = 100


class _Reply:
    """A reply frame on its way out, byte by byte at the baud rate."""

    def __init__(self, frame, start):
        self.frame = frame
        self.start = start  # monotonic time the first byte is due
        self.sent = 0


class BatterySimulator:
    """A simulated battery on a pty (see module docstring).

    ``BatterySimulator(unit=1, rsoc=55.5, permitted=True, baudrate=9600,
    turnaround=0.005, link=None)``

    Args:
        unit: Modbus unit answered (others are ignored, as on a bus).
        rsoc: RSOC, % (0.0-100.0), stored in 0.1 % steps.
        permitted: interchange permitted (status bit 0 = 0).
        baudrate: pacing of replies, bits/s (10 bits a byte).
        turnaround: seconds from the request's end on the wire to the reply.
        link: path of a symlink to the client side pty (replaced if it is
            already a symlink); ``port`` is this path when given.

    Run-time settable: ``rsoc``, ``permitted``, ``silent`` (no replies at
    all while True); faults by ``inject()``. Counters: ``requests`` (int,
    request frames with a good CRC, any unit, also while silent),
    ``collisions`` (int, request bytes that arrived while a reply was queued
    or being sent); ``frames`` holds the last FRAMES_KEPT such requests
    (bytes). ``start()``/``stop()`` or a ``with`` block.

    Raises:
        ValueError: a value out of range, or ``link`` exists and is not a
            symlink.
        RuntimeError: start() could not bring the server up.
    """

    def __init__(self, unit=1, rsoc=55.5, permitted=True, baudrate=9600,
                 turnaround=0.005, link=None):
        if not 1 <= int(unit) <= 247:
            raise ValueError("unit=%r is not allowed (allowed: 1..247)" % (unit,))
        if baudrate <= 0 or turnaround < 0:
            raise ValueError("baudrate must be > 0 and turnaround >= 0")
        self.unit = int(unit)
        self.baudrate = baudrate
        self.turnaround = turnaround
        self.link = link
        self.rsoc = rsoc
        self.permitted = permitted
        self.silent = False
        self.requests = 0
        self.collisions = 0
        self.frames = collections.deque(maxlen=FRAMES_KEPT)
        self._lock = threading.Lock()
        self._exception_faults = collections.deque()  # exception codes, one per request
        self._crc_faults = 0
        self._running = False
        self._client = self._server_pty = None
        self._wake_r = self._wake_w = None
        self._commands = collections.deque()
        self._relay_thread = self._server_thread = None
        self._loop = self._stop_async = None
        self._server_ready = threading.Event()
        self._server_error = None
        self._reset_relay_state()

    # -- values -----------------------------------------------------------------
    @property
    def rsoc(self):
        """RSOC, % (float); setting it writes register 30030 (0.1 % steps)."""
        return self._rsoc_raw / 10.0

    @rsoc.setter
    def rsoc(self, value):
        raw = int(round(float(value) * 10))
        if not 0 <= raw <= 1000:
            raise ValueError("rsoc=%r is not allowed (allowed: 0.0..100.0 %%)" % (value,))
        self._rsoc_raw = raw

    @property
    def permitted(self):
        """Interchange permitted; setting it writes bit 0 of register 30031."""
        return not self._status & STATUS_NOT_PERMITTED

    @permitted.setter
    def permitted(self, value):
        self._status = 0 if value else STATUS_NOT_PERMITTED

    @property
    def port(self):
        """Path clients open: ``link`` when given, else the pty slave (None when stopped)."""
        return self._client.port if self._client else self.link

    # -- faults -----------------------------------------------------------------
    def inject(self, kind, count=1, code=4):
        """Arm a fault for the next ``count`` requests / replies.

        Args:
            kind: "exception" (answer with Modbus exception ``code`` instead of
                asking the server) or "bad_crc" (corrupt the reply's CRC).
            count: how many requests (exception) or replies (bad_crc).
            code: Modbus exception code for "exception" (1..255).

        Raises:
            ValueError: unknown kind or bad count/code.
        """
        if count < 1:
            raise ValueError("count=%r must be >= 1" % (count,))
        with self._lock:
            if kind == "exception":
                if not 1 <= code <= 255:
                    raise ValueError("code=%r is not allowed (allowed: 1..255)" % (code,))
                self._exception_faults.extend([code] * count)
            elif kind == "bad_crc":
                self._crc_faults += count
            else:
                raise ValueError("fault %r is not known (known: 'exception', 'bad_crc')" % (kind,))

    def clear_faults(self):
        """Disarm every injected fault and leave silent mode."""
        with self._lock:
            self._exception_faults.clear()
            self._crc_faults = 0
        self.silent = False

    # -- life cycle ---------------------------------------------------------------
    def start(self):
        """Create the ptys, start relay and server; return once the server listens.

        Raises:
            RuntimeError: the server did not come up within START_TIMEOUT_S.
        """
        if self._running:
            return self
        self._client = PtyPort(self.link)
        self._server_pty = PtyPort()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._reset_relay_state()
        self._running = True
        try:
            self._server_ready.clear()
            self._server_error = None
            self._server_thread = threading.Thread(
                target=self._serve, name="battery-sim-server", daemon=True)
            self._server_thread.start()
            if not self._server_ready.wait(START_TIMEOUT_S) or self._server_error:
                raise RuntimeError("battery simulator server did not start: %s"
                                   % (self._server_error or "timeout"))
            self._relay_thread = threading.Thread(
                target=self._relay, name="battery-sim-relay", daemon=True)
            self._relay_thread.start()
        except BaseException:
            self.stop()
            raise
        logger.info("battery simulator unit %d on %s", self.unit, self.port)
        return self

    def stop(self):
        """Stop server and relay, close every pty and fd, remove ``link``. Idempotent."""
        if not self._running:
            return
        self._running = False
        if self._loop is not None and self._server_thread is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop_async.set)
            except RuntimeError:  # loop already closed
                pass
        if self._server_thread is not None:
            self._server_thread.join(START_TIMEOUT_S)
            if self._server_thread.is_alive():
                logger.error("battery simulator server thread did not stop")
            self._server_thread = None
        if self._relay_thread is not None:
            self._wake()
            self._relay_thread.join(START_TIMEOUT_S)
            if self._relay_thread.is_alive():
                logger.error("battery simulator relay thread did not stop")
            self._relay_thread = None
        for pty in (self._client, self._server_pty):
            if pty is not None:
                pty.close()
        self._client = self._server_pty = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
        self._loop = self._stop_async = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def reopen(self):
        """Unplug/replug: close the client side pty, open a new one at ``link``.

        Clients holding the old port get I/O errors; a client that opens
        ``port`` again reaches the new one. Returns the new ``port``.

        Raises:
            RuntimeError: the simulator is not running, or the relay did not
                swap the port within START_TIMEOUT_S.
        """
        if not self._running:
            raise RuntimeError("battery simulator is not running")
        done = threading.Event()

        def swap():
            old, self._client = self._client, PtyPort(self.link)
            self._reply_queue.clear()
            self._req_buf.clear()
            old.close()
            done.set()

        self._commands.append(swap)
        self._wake()
        if not done.wait(START_TIMEOUT_S):
            raise RuntimeError("battery simulator relay did not reopen the port")
        return self.port

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (OSError, TypeError) as exc:
            logger.debug("wake relay: %s", exc)

    # -- the pymodbus server thread ------------------------------------------------
    def _device(self):
        vendor = int.from_bytes(VENDOR.encode("ascii")[:2], "big")
        return SimDevice(
            id=self.unit,
            simdata=[
                SimData(0, values=list(VERSION_REGISTERS), datatype=DataType.REGISTERS),
                SimData(9, values=vendor, datatype=DataType.REGISTERS),
                SimData(RSOC_ADDRESS, values=[self._rsoc_raw, self._status],
                        datatype=DataType.REGISTERS),
            ],
            action=self._action,
        )

    async def _action(self, _function_code, start_address, _address, _count,
                      registers, _set_values):
        """Write the run-time values into the server's registers before each access."""
        registers[RSOC_ADDRESS - start_address] = self._rsoc_raw
        registers[STATUS_ADDRESS - start_address] = self._status
        return None

    def _serve(self):
        asyncio.run(self._serve_async())

    async def _serve_async(self):
        server = None
        try:
            server = ModbusSerialServer(
                self._device(), framer=FramerType.RTU, port=self._server_pty.path,
                baudrate=self.baudrate, timeout=1)
            await server.serve_forever(background=True)
            if not server.transport:
                raise RuntimeError("pymodbus could not open %s" % self._server_pty.path)
            self._stop_async = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            await asyncio.sleep(0)  # let the transport register its reader
            self._server_ready.set()
            await self._stop_async.wait()
        except Exception as exc:  # reported to start() across the thread boundary
            self._server_error = exc
            self._server_ready.set()
        finally:
            if server is not None:
                await server.shutdown()
                if ModbusBaseServer.active_server is server:  # pymodbus keeps it globally
                    ModbusBaseServer.active_server = None

    # -- the relay thread ------------------------------------------------------------
    def _char_time(self):
        return BITS_PER_CHAR / float(self.baudrate)

    def _reset_relay_state(self):
        self._req_buf = bytearray()
        self._req_first = self._req_last = 0.0
        self._rep_buf = bytearray()
        self._reply_due = 0.0
        self._reply_queue = collections.deque()

    def _relay(self):
        while self._running:
            timeout = self._next_wakeup()
            try:
                ready, _, _ = select.select(
                    [self._client.master, self._server_pty.master, self._wake_r], [], [], timeout)
            except (OSError, ValueError) as exc:
                logger.debug("relay select: %s", exc)
                ready = []
            if self._wake_r in ready:
                self._drain_wake()
                while self._commands:
                    self._commands.popleft()()
                continue
            now = time.monotonic()
            if self._client.master in ready:
                self._on_request_bytes(self._read(self._client.master), now)
            if self._server_pty.master in ready:
                self._on_reply_bytes(self._read(self._server_pty.master))
            self._frame_requests(time.monotonic())
            self._pump(time.monotonic())

    def _drain_wake(self):
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass

    @staticmethod
    def _read(fd):
        try:
            return os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:  # EIO on a pty whose other side is gone
            logger.debug("relay read fd %d: %s", fd, exc)
            return b""

    def _next_wakeup(self):
        """Seconds until the next paced byte or request gap is due (None: none)."""
        now = time.monotonic()
        times = []
        if self._reply_queue:
            reply = self._reply_queue[0]
            times.append(reply.start + reply.sent * self._char_time())
        if self._req_buf:
            times.append(self._req_last + 3.5 * self._char_time())
        if not times:
            return None
        return max(0.0, min(times) - now)

    # requests: client -> relay -> server
    def _on_request_bytes(self, data, now):
        if not data:
            return
        if self._reply_queue:
            with self._lock:
                self.collisions += len(data)
        if not self._req_buf:
            self._req_first = now
        self._req_last = now
        self._req_buf += data

    def _frame_requests(self, now):
        """Cut complete request frames off the buffer; at a gap, take what is there."""
        while self._req_buf:
            length = rtu.request_length(self._req_buf)
            gap = now - self._req_last >= 3.5 * self._char_time()
            if length and len(self._req_buf) >= length:
                frame = bytes(self._req_buf[:length])
                del self._req_buf[:length]
            elif gap:
                frame = bytes(self._req_buf)
                self._req_buf.clear()
            else:
                return
            self._on_request(frame)
            self._req_first = now

    def _on_request(self, frame):
        wire_end = self._req_first + len(frame) * self._char_time()
        if not rtu.crc_ok(frame):
            logger.debug("relay: request %s has a bad CRC, ignored", frame.hex())
            return
        with self._lock:
            self.requests += 1
            self.frames.append(frame)
            code = None
            if frame[0] == self.unit and not self.silent and self._exception_faults:
                code = self._exception_faults.popleft()
        if frame[0] != self.unit:
            logger.debug("relay: request for unit %d ignored", frame[0])
            return
        if self.silent:
            return
        self._reply_due = wire_end + self.turnaround
        if code is not None:
            self._queue_reply(rtu.exception_reply(self.unit, frame[1], code))
            return
        os.write(self._server_pty.master, frame)

    # replies: server -> relay -> client
    def _on_reply_bytes(self, data):
        self._rep_buf += data
        while self._rep_buf:
            length = rtu.reply_length(self._rep_buf)
            if length is None or (length and len(self._rep_buf) < length):
                return
            length = length or len(self._rep_buf)
            frame = bytes(self._rep_buf[:length])
            del self._rep_buf[:length]
            if not self.silent:
                self._queue_reply(frame)

    def _queue_reply(self, frame):
        with self._lock:
            if self._crc_faults:
                self._crc_faults -= 1
                frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        start = max(self._reply_due, time.monotonic())
        if self._reply_queue:
            last = self._reply_queue[-1]
            start = max(start, last.start + len(last.frame) * self._char_time())
        self._reply_queue.append(_Reply(frame, start))

    def _pump(self, now):
        """Write every reply byte that is due by ``now``."""
        char = self._char_time()
        while self._reply_queue:
            reply = self._reply_queue[0]
            if now < reply.start:
                return
            due = min(len(reply.frame), int((now - reply.start) / char) + 1)
            if due > reply.sent:
                try:
                    reply.sent += os.write(self._client.master, reply.frame[reply.sent:due])
                except BlockingIOError:
                    return  # pty full: the client does not read; try at the next wakeup
                except OSError as exc:
                    logger.debug("relay: reply dropped: %s", exc)
                    self._reply_queue.popleft()
                    continue
            if reply.sent < len(reply.frame):
                return
            self._reply_queue.popleft()


def main(argv=None):
    """Command line: serve a simulated battery until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m battery_emulator.simulator",
        description="Simulated battery (Modbus RTU, battery-modbus.md) on a pty.")
    parser.add_argument("--link", required=True, help="symlink to create, e.g. /tmp/ttyBAT")
    parser.add_argument("--rsoc", type=float, default=55.5, help="RSOC, %% (default 55.5)")
    parser.add_argument("--not-permitted", action="store_true",
                        help="status bit 0 = 1: interchange not permitted")
    parser.add_argument("--baud", type=int, default=9600, help="reply pacing, bits/s")
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with BatterySimulator(unit=args.unit, rsoc=args.rsoc, permitted=not args.not_permitted,
                          baudrate=args.baud, link=args.link) as sim:
        logger.info("serving on %s until SIGINT/SIGTERM", sim.port)
        stop.wait()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
