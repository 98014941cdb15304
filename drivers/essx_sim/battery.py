"""A simulated battery: a pymodbus RTU server behind a pty, with faults.

Register map (docs/battery-registers.md), input registers, PDU addresses:

====  ===========  ==========================================================
 0-2  30001-30003  protocol version "1","0","0" -> 0x3031, 0x3030, 0x3030
   9  30010        vendor name, ASCII pair (``VENDOR``; not a real vendor)
  29  30030        RSOC in 0.1 %
  30  30031        status: bit 0 = 1 means interchange NOT permitted
====  ===========  ==========================================================

Other addresses answer "illegal data address". The map is one shared block,
so holding-register reads (function 3) see the same values.

RSOC and the status follow a ``BatteryModel`` (``physics.py``): a converter
simulator given the same model moves its RSOC with the power it carries.

Layout: two ptys and one line engine between their masters::

    client -- slave A (port, or the symlink ``link``) = master A
                        PacedPty thread (framing, faults, pacing)
    pymodbus ModbusSerialServer -- slave B = master B

A pty master has no path, and pymodbus's serial server opens its port by
path, so the server opens slave B. The line (``essx_sim.paced_pty.PacedPty``,
shared with the converter simulator) frames requests; this module filters
the unit, checks the CRC, counts requests, applies the faults and has every
reply paced at the configured baud (10 bits a byte) after ``turnaround``
from the request's end on the wire, deadline-based. The pymodbus server
runs in its own thread with its own asyncio loop.

Faults: ``silent = True`` (no reply at all), or ``inject(kind, count)`` for
the next ``count`` requests to this unit (kinds may be combined):

=================  ============================================================
 ``exception``     a Modbus exception reply (``code``) instead of the reply
 ``bad_crc``       the reply with its last CRC byte inverted
 ``echo``          the request's own bytes sent back first, then the reply
                   (an RS485 adapter that hears itself)
 ``noise``         ``nbytes`` (default 300) random bytes first, then the reply
 ``noise_only``    ``nbytes`` random bytes instead of the reply
 ``other_unit``    the reply as if from unit ``unit % 247 + 1`` (CRC valid)
 ``other_function`` the reply with function code 3 for 4 (else 4), CRC valid
 ``bad_count``     a read reply with one register more than asked for (byte
                   count + 2, CRC valid)
=================  ============================================================

Noise comes from a ``random.Random(NOISE_SEED)``: the same bytes on every run.

Needs pymodbus 3.16 (``SimDevice`` with ``action``; the older datastore
contexts are deep-copied into the server in 3.16, so values written to them at
run time would not be seen).

Run as a script: ``python -m essx_sim.battery --link /tmp/ttyBAT
[--rsoc 55.5] [--not-permitted] [--baud 9600] [--unit 1]``; serves until
SIGINT/SIGTERM.
"""
import argparse
import asyncio
import collections
import logging
import os
import random
import signal
import threading
from typing import List, Optional

from pymodbus.framer import FramerType
from pymodbus.server import ModbusBaseServer, ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from essx_sim.paced_pty import OnLine, PacedPty, wire_time
from essx_sim.physics import BatteryModel
from essx_sim.ptyport import PtyPort

from . import rtu

logger = logging.getLogger(__name__)

VERSION_REGISTERS = (0x3031, 0x3030, 0x3030)  # "1", "0", "0"
VENDOR = "SM"  # simulator; ASCII pair in register 30010
RSOC_ADDRESS = 29  # 30030
STATUS_ADDRESS = 30  # 30031
STATUS_NOT_PERMITTED = 0x0001
#: pyserial URL pymodbus's server opens slave B by: pyserial's ``VTIMESerial`` (its
#: alt:// handler), whose read is a plain os.read with VMIN 0, VTIME 0 (pymodbus reads
#: only when its loop saw the port readable).  pyserial's ``Serial.read`` waits in
#: select(), which raises ValueError for a descriptor above 1023: an essx-grid of a
#: hundred nodes has such descriptors.
SERVER_PORT_URL = "alt://%s?class=VTIMESerial"
#: How long start() waits for the server thread to be listening, seconds.
START_TIMEOUT_S = 5.0
#: Raw request frames remembered in ``frames``.
FRAMES_KEPT = 100
#: Fault kinds of ``inject()`` (module docstring).
FAULTS = ("exception", "bad_crc", "echo", "noise", "noise_only", "other_unit", "other_function",
          "bad_count")
#: Default size of a "noise" or "noise_only" fault, bytes (0.31 s at 9600 baud).
NOISE_BYTES = 300
#: Seed of the noise bytes: the same noise on every run.
NOISE_SEED = 485


def cut_requests(buf: bytearray, at_gap: bool) -> List[bytes]:
    """Framer for ``PacedPty``: complete RTU request frames off the front of
    ``buf`` (length by function code); at a gap, whatever is left is a frame."""
    frames = []
    while buf:
        length = rtu.request_length(buf)
        if length and len(buf) >= length:
            frames.append(bytes(buf[:length]))
            del buf[:length]
        elif at_gap:
            frames.append(bytes(buf))
            buf.clear()
        else:
            break
    return frames


class BatterySimulator(OnLine):
    """A simulated battery on a pty (see module docstring; ``port``,
    ``write_raw`` and ``with`` blocks: ``OnLine``).

    Args:
        unit: Modbus unit answered (others are ignored, as on a bus).
        rsoc: initial RSOC, % (0.0-100.0), served in 0.1 % steps (ignored
            when ``model`` is given).
        permitted: False forbids interchange whatever the RSOC (status
            bit 0 = 1); True: permitted within the model's RSOC limits.
        baudrate: pacing of replies, bits/s (10 bits a byte).
        turnaround: seconds from the request's end on the wire to the reply.
        link: path of a symlink to the client side pty (replaced if it is
            already a symlink); ``port`` is this path when given.
        model: the ``BatteryModel`` behind the registers (RSOC, limits,
            capacity, speed); default ``BatteryModel(rsoc=rsoc)`` (4800 Wh,
            limits 0..100 %: always permitted).  A converter simulator
            given the same model moves its RSOC.

    Run-time settable: ``rsoc`` (writes the model's RSOC), ``permitted``,
    ``silent`` (no replies at all while True); faults by ``inject()``.
    Counters: ``requests`` (int, request frames with a good CRC, any unit,
    also while silent), ``collisions`` (int, request bytes that arrived while
    a reply was queued or being sent); ``frames`` holds the last FRAMES_KEPT
    such requests (bytes). ``start()``/``stop()`` or a ``with`` block.

    Raises:
        ValueError: a value out of range, or ``link`` exists and is not a
            symlink.
        RuntimeError: start() could not bring the server up.
    """

    def __init__(self, unit: int = 1, rsoc: float = 55.5, permitted: bool = True,
                 baudrate: float = 9600, turnaround: float = 0.005, link: Optional[str] = None,
                 *, model: Optional[BatteryModel] = None):
        if not 1 <= int(unit) <= 247:
            raise ValueError("unit=%r is not allowed (allowed: 1..247)" % (unit,))
        if baudrate <= 0 or turnaround < 0:
            raise ValueError("baudrate must be > 0 and turnaround >= 0")
        self.unit = int(unit)
        self.baudrate = baudrate
        self.turnaround = turnaround
        self.link = link
        self.model = model if model is not None else BatteryModel(rsoc=rsoc)
        self.permitted = permitted
        self.silent = False
        self.requests = 0
        self.frames = collections.deque(maxlen=FRAMES_KEPT)
        self._lock = threading.Lock()
        self._exception_faults = collections.deque()  # exception codes, one per request
        self._faults = collections.Counter()  # other kinds: requests left
        self._noise_bytes = NOISE_BYTES
        self._random = random.Random(NOISE_SEED)
        self._pending = collections.deque()  # faults of each forwarded request's reply
        self._server_pty = None
        self._server_thread = None
        self._loop = self._stop_async = None
        self._server_ready = threading.Event()
        self._server_error = None
        self._reply_due = 0.0
        self._rep_buf = bytearray()
        self._line = PacedPty(cut_requests, self._on_request, baudrate,
                              gap=wire_time(3.5, baudrate), link=link, name="battery-sim")

    # -- values -----------------------------------------------------------------
    @property
    def rsoc(self) -> float:
        """RSOC, % (float, the model's); setting it writes the model's RSOC
        (ValueError outside 0.0..100.0)."""
        return self.model.rsoc

    @rsoc.setter
    def rsoc(self, value: float) -> None:
        self.model.rsoc = value

    @property
    def _rsoc_raw(self) -> int:
        return int(round(self.model.rsoc * 10))

    @property
    def permitted(self) -> bool:
        """Interchange permitted: not forbidden by a set False, and the
        model's RSOC within its limits.  Register 30031 bit 0 is its negation."""
        return not self._forbidden and self.model.permitted

    @permitted.setter
    def permitted(self, value: bool) -> None:
        self._forbidden = not value

    @property
    def _status(self) -> int:
        return 0 if self.permitted else STATUS_NOT_PERMITTED

    @property
    def collisions(self) -> int:
        """Request bytes that arrived while a reply was queued or on the line."""
        return self._line.collision_bytes

    # -- faults -----------------------------------------------------------------
    def inject(self, kind: str, count: int = 1, code: int = 4, nbytes: int = NOISE_BYTES) -> None:
        """Arm a fault for the next ``count`` requests to this unit (while not silent).

        Args:
            kind: one of FAULTS, see the module docstring.
            count: how many requests get it.
            code: Modbus exception code for "exception" (1..255).
            nbytes: bytes of noise for "noise" and "noise_only" (>= 1; the
                last value given is used).

        Raises:
            ValueError: unknown kind or bad count/code/nbytes.
        """
        if count < 1:
            raise ValueError("count=%r must be >= 1" % (count,))
        if kind not in FAULTS:
            raise ValueError("fault %r is not known (known: %s)"
                             % (kind, ", ".join(repr(k) for k in FAULTS)))
        with self._lock:
            if kind == "exception":
                if not 1 <= code <= 255:
                    raise ValueError("code=%r is not allowed (allowed: 1..255)" % (code,))
                self._exception_faults.extend([code] * count)
                return
            if kind in ("noise", "noise_only"):
                if nbytes < 1:
                    raise ValueError("nbytes=%r must be >= 1" % (nbytes,))
                self._noise_bytes = nbytes
            self._faults[kind] += count

    def clear_faults(self) -> None:
        """Disarm every injected fault and leave silent mode."""
        with self._lock:
            self._exception_faults.clear()
            self._faults.clear()
        self.silent = False

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> "BatterySimulator":
        """Create the ptys, start the line and the server; return once the server listens.

        Raises:
            ValueError: ``link`` exists and is not a symlink.
            RuntimeError: the server did not come up within START_TIMEOUT_S.
        """
        if self._line.running:
            return self
        self._server_pty = PtyPort()
        self._rep_buf.clear()
        self._pending.clear()
        try:
            self._line.watch(self._server_pty.master, self._on_reply_bytes)
            self._line.start()
            self._server_ready.clear()
            self._server_error = None
            self._server_thread = threading.Thread(
                target=self._serve, name="battery-sim-server", daemon=True)
            self._server_thread.start()
            if not self._server_ready.wait(START_TIMEOUT_S) or self._server_error:
                raise RuntimeError("battery simulator server did not start: %s"
                                   % (self._server_error or "timeout"))
        except BaseException:
            self.stop()
            raise
        logger.info("battery simulator unit %d on %s", self.unit, self.port)
        return self

    def stop(self) -> None:
        """Stop server and line, close every pty and fd, remove ``link``. Idempotent."""
        if self._server_pty is None:
            return
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
        self._line.stop()
        self._server_pty.close()
        self._server_pty = None
        self._loop = self._stop_async = None

    def reopen(self) -> str:
        """Unplug/replug: close the client side pty, open a new one at ``link``.

        Clients holding the old port get I/O errors; a client that opens
        ``port`` again reaches the new one. Returns the new ``port``.

        Raises:
            RuntimeError: the simulator is not running, or the line did not
                swap the port within its time limit.
        """
        return self._line.reopen()

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
                self._device(), framer=FramerType.RTU, port=SERVER_PORT_URL % self._server_pty.path,
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

    # -- the line (PacedPty callbacks, its thread) ------------------------------------
    def _on_request(self, frame: bytes, wire_end: float):
        """A request frame from the client: count it, fault it or forward it."""
        if not rtu.crc_ok(frame):
            logger.debug("relay: request %s has a bad CRC, ignored", frame.hex())
            return
        with self._lock:
            self.requests += 1
            self.frames.append(frame)
            code, faults = None, set()
            if frame[0] == self.unit and not self.silent:
                if self._exception_faults:
                    code = self._exception_faults.popleft()
                faults = {kind for kind, left in self._faults.items() if left > 0}
                self._faults.subtract(faults)
            noise = self._noise() if faults & {"noise", "noise_only"} else b""
        if frame[0] != self.unit:
            logger.debug("relay: request for unit %d ignored", frame[0])
            return
        if self.silent:
            return
        self._reply_due = wire_end + self.turnaround
        if "echo" in faults:
            self._line.reply(frame, wire_end)
        if noise:
            self._line.reply(noise, self._reply_due)
        if code is not None:
            self._queue_reply(rtu.exception_reply(self.unit, frame[1], code), faults)
        elif "noise_only" not in faults:
            self._pending.append(faults)
            os.write(self._server_pty.master, frame)

    def _noise(self) -> bytes:
        """``_noise_bytes`` bytes from the seeded generator (under ``_lock``)."""
        return bytes(self._random.getrandbits(8) for _ in range(self._noise_bytes))

    def _on_reply_bytes(self, data: bytes):
        """Bytes from the pymodbus server: queue each complete reply."""
        self._rep_buf += data
        while self._rep_buf:
            length = rtu.reply_length(self._rep_buf)
            if length is None or (length and len(self._rep_buf) < length):
                return
            length = length or len(self._rep_buf)
            frame = bytes(self._rep_buf[:length])
            del self._rep_buf[:length]
            faults = self._pending.popleft() if self._pending else set()
            if not self.silent:
                self._queue_reply(frame, faults)

    def _queue_reply(self, frame: bytes, faults: set):
        """Queue ``frame`` changed by the reply faults in ``faults`` (module docstring)."""
        body = bytearray(frame[:-2])
        if "other_unit" in faults:
            body[0] = self.unit % 247 + 1
        if "other_function" in faults:
            body[1] = (body[1] & 0x80) | (3 if body[1] & 0x7F == 4 else 4)
        if "bad_count" in faults and body[1] in (1, 2, 3, 4) and body[2] <= 253:
            body[2] += 2
            body += b"\x00\x00"
        frame = bytes(body) + rtu.crc16(body)
        if "bad_crc" in faults:
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        self._line.reply(frame, self._reply_due)


def main(argv=None):
    """Command line: serve a simulated battery until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m essx_sim.battery",
        description="Simulated battery (Modbus RTU, docs/battery-registers.md) on a pty.")
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
