"""A simulated EZA2500 on a pseudo-terminal.

Importable (``EZA2500Simulator``) and runnable::

    python -m eza2500.simulator --link /tmp/ttyEZA [--baud 19200]
        [--turnaround 0.005] [--ad1 0 --ad2 16]

It answers every command of ``table`` with frames built by ``codec`` and
paces each reply at the configured baud rate (10 bits a byte), after the
request's own wire time and a turnaround, so a client sees roughly what a real
RS485 bus would give it.

Model of the converter (choices of this simulator, not facts of EZA2500.md):

* Sign convention (that of EZA2500.md's 10-1 golden vector, a charge): ``ig``
  and ``wg`` are positive when power is drawn from the grid (charging), ``ib``
  and ``wb`` are negative when power goes into the battery.  Always
  ``wg = vg * ig`` and ``ib = wb / vb``.
* Waiting (0x0000): ``ig = wg = ib = wb = 0``; ``vg`` = ``grid_v`` (350 V),
  ``vb`` = 52 V.
* Heteronomy CV charge (0x0041): ``ig = +dig``, ``wb = -wg * efficiency``.
* Heteronomy CV discharge (0x0002): ``ig = -dig``, ``wb = -wg / efficiency``.
* Grid Autonomy (0x0014): ``vg = dvg``; the converter supports the grid with
  ``autonomy_ig`` (default -1.0 A, i.e. discharging 1 A into the grid),
  limited in magnitude to ``dig``.
* ``efficiency`` is 0.98 (so the golden vector's 875 W -> -858 W fits).
* ``cst``: bits 0-1 running state from the sign of ``wg`` (0 off, 1 charge,
  2 discharge); bits 2-3 alarm state 1 ("Light") when any of alm1..alm3 is
  set, else 0.
* ``vg``, ``ig``, ``ib``, ``wg``, ``wb`` and ``cst`` are computed; ``set()``
  of one of them overrides the computed value until ``set(name=None)``.
* Group 14 ratings are given as ``value = n / 2**nq`` (a guess).
* Groups 15 and 16 both have ``min``/``maj``: state keys ``ver15_min``,
  ``ver15_maj``, ``ver16_min``, ``ver16_maj``.
"""
import argparse
import logging
import os
import random
import select
import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional

from essx.essx_exception import ESSXChecksumException, ESSXValueException
from essx.essx_pty import PtyPort

from . import codec, table

logger = logging.getLogger(__name__)

ERCD_NOT_SUPPORTED = 0xFFFF
ERCD_PARAMETER_INVALID = 0xFFFE

#: Faults ``inject`` knows (see ``EZA2500Simulator.inject``).
FAULTS = frozenset({"silent", "lost", "bad_checksum", "nak", "garbage", "half", "delay"})

#: A partial request older than this (s) with no new byte is dropped.
FRAME_GAP = 0.05
#: Serving loop poll period (s): bounds how long stop() waits.
POLL = 0.02
#: Bytes written at once while pacing a reply.
PACE_CHUNK = 4

#: Computed state keys (overridable with set()).
COMPUTED = ("vg", "ig", "ib", "wg", "wb", "cst")

DEFAULT_STATE = {
    # settable fields (physical values)
    "mode": table.MODE_WAITING,
    "cvb": 48.0, "drb": 0.0,
    "dvg": 350.0, "drg": 0.0,
    "pdz": 0.0, "mdz": 0.0,
    "cib": 52.0, "dig": 2.5, "ubv": 40.0, "ugv": 300.0, "obv": 59.0, "ogv": 400.0,
    "bcf": 0x000B, "dlb": 48.0, "cdb": 6.0, "ddb": 1.0,
    "ccr": 0.0, "ddr": 0.0,
    # status and alarms
    "ext": 0, "alm1": 0, "alm2": 0, "alm3": 0,
    # model inputs and meters that are not computed
    "grid_v": 350.0, "vb": 52.0, "ic": 0, "tmp": 30.5,
    "autonomy_ig": -1.0, "efficiency": 0.98,
    # group 11
    "ts": 0, "tp": 0, "v5s": 5.0, "fan1": 0.0, "fan2": 0.0, "fan3": 0.0, "fan4": 0.0, "fan5": 0.0,
    # group 12: Q of each meter
    "vgq": 14, "igq": 13, "vbq": 14, "ibq": 13, "wgq": 11, "wbq": 11, "icq": 0, "tmpq": 7,
    # group 13
    "tsq": 0, "tpq": 0, "v5q": 10, "fn1q": 0, "fn2q": 0, "fn3q": 0, "fn4q": 0, "fn5q": 0,
    # group 14: ratings as n / 2**nq
    "vgn": 380, "vgnq": 0, "ign": 125, "ignq": 4, "vbn": 48, "vbnq": 0,
    "ibn": 1667, "ibnq": 5, "wn": 2500, "wnq": 0,
    # groups 15, 16
    "ver15_min": 0, "ver15_maj": 1, "ver16_min": 0, "ver16_maj": 1,
}


def wire_time(nbytes, baudrate=19200, bits_per_byte=10):
    """Seconds ``nbytes`` take on a serial line (8N1 = 10 bits a byte)."""
    return nbytes * bits_per_byte / baudrate


def state_key(group, field):
    """State key of ``field`` of ``group``: its name, except ``verNN_min``/
    ``verNN_maj`` for the two version groups (15, 16) that share names."""
    if group.number in (15, 16):
        return "ver%d_%s" % (group.number, field.name)
    return field.name


def _wire_fields():
    """State key -> a Field it travels in (to check values given to set())."""
    fields = {}
    for g in table.GROUPS:
        for f in g.read + (g.write or ()):
            fields.setdefault(state_key(g, f), f)
    return fields


_WIRE_FIELDS = _wire_fields()


@dataclass
class Received:
    """One command the simulator received (addressed to it, checksum OK).

    ``name`` is "6-4" (None for an unknown CMD); ``params`` the decoded
    physical values of a write ({} for reads); ``raw`` the request frame;
    ``time`` its arrival (``time.monotonic()``); ``reply`` what was sent back
    (None if nothing); ``fault`` the injected fault applied, if any.
    """

    name: Optional[str]
    cmd: int
    write: bool
    params: dict
    raw: bytes
    time: float
    ad1: int = 0
    ad2: int = 0
    reply: Optional[bytes] = None
    fault: Optional[str] = None

    def __getitem__(self, key):
        """Dict-style access: ``rec['name']``."""
        return getattr(self, key)


class EZA2500Simulator:
    """A simulated EZA2500 converter serving on a pty.

    Args:
        ad1, ad2: the addresses it answers to (others are ignored).
        baudrate: wire speed modelled for pacing (bits/s, 10 bits a byte).
        turnaround: seconds between the end of a request and the start of
            its reply.
        link: optional path of a symlink to (re)point at the pty slave.
    """

    def __init__(self, ad1=0, ad2=16, baudrate=19200, turnaround=0.005, link=None):
        self.ad1 = ad1
        self.ad2 = ad2
        self.baudrate = baudrate
        self.turnaround = turnaround
        self.link = link
        self.collisions = 0
        self._lock = threading.RLock()
        self._state = dict(DEFAULT_STATE)
        self._raws = {}        # state key -> raw taken from a write (exact echo)
        self._overrides = {}   # computed key -> value
        self._received = []
        self._fault = None
        self._rng = random.Random()
        self._pty = None
        self._thread = None
        self._stop = threading.Event()

    # --- life cycle ---------------------------------------------------------

    def start(self):
        """Open a pty, point ``link`` at it and start serving; returns self."""
        with self._lock:
            if self._thread is not None:
                return self
            self._open_pty()
            self._start_thread()
        logger.info("EZA2500 simulator on %s (ad1=%d ad2=%d, %d baud)",
                    self.port, self.ad1, self.ad2, self.baudrate)
        return self

    def stop(self):
        """Stop serving, close the pty, remove the link; idempotent."""
        self._stop_thread()
        self._close_pty()

    def reopen(self):
        """Simulate unplug/replug: close the pty (clients now get errors) and
        serve on a new one that ``link`` points to.  Requires ``link``."""
        if not self.link:
            raise ValueError("reopen() needs a link path")
        self._stop_thread()
        self._close_pty()
        self._open_pty()
        self._start_thread()
        logger.info("EZA2500 simulator reopened on %s -> %s", self.link, self._pty.path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        """Path a client opens: the link if given, else the slave's name."""
        return self.link or (self._pty.path if self._pty else None)

    def _open_pty(self):
        self._pty = PtyPort(self.link)

    def _close_pty(self):
        if self._pty is not None:
            self._pty.close()
        self._pty = None

    def _start_thread(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(self._pty.master, self._stop),
                                        name="eza2500-sim %s" % self._pty.path, daemon=True)
        self._thread.start()

    def _stop_thread(self):
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    # --- state ------------------------------------------------------------------

    @property
    def state(self):
        """A snapshot dict of the converter state (physical values), meters
        and ``cst`` computed from the mode and settings."""
        with self._lock:
            snap = dict(self._state)
            snap.update(self._computed())
            return snap

    def set(self, **fields):
        """Set state at run time, e.g. ``sim.set(mode=0x14, dvg=350, alm1=1)``.

        Computed keys (vg, ig, ib, wg, wb, cst) are overridden; ``None``
        returns them to the model.  Values are physical; a value that cannot
        travel in its field (e.g. a raw field given 2.5) raises
        ``ESSXValueException``; an unknown key raises KeyError.
        """
        for key, value in fields.items():
            if key not in COMPUTED and key not in self._state:
                raise KeyError("unknown simulator state key %r" % key)
            if key in _WIRE_FIELDS and value is not None:
                codec.encode_value(_WIRE_FIELDS[key], value, clamp=True)
        with self._lock:
            for key, value in fields.items():
                if key in COMPUTED:
                    if value is None:
                        self._overrides.pop(key, None)
                    else:
                        self._overrides[key] = value
                else:
                    self._state[key] = value
                    self._raws.pop(key, None)

    def _computed(self):
        """Meters and cst from the model (see module doc), then overrides."""
        s = self._state
        mode, dig = s["mode"], s["dig"]
        vg = s["grid_v"]
        if mode == table.MODE_GRID_AUTONOMY:
            vg = s["dvg"]
            a = s["autonomy_ig"]
            ig = max(-dig, min(dig, a))
        elif mode == table.MODE_HETERONOMY_CHARGE:
            ig = dig
        elif mode == table.MODE_HETERONOMY_DISCHARGE:
            ig = -dig
        else:
            ig = 0.0
        vg = self._overrides.get("vg", vg)
        ig = self._overrides.get("ig", ig)
        wg = self._overrides.get("wg", vg * ig)
        eta = s["efficiency"]
        wb = -wg * eta if wg > 0 else -wg / eta
        wb = self._overrides.get("wb", wb if wg else 0.0)
        ib = self._overrides.get("ib", wb / s["vb"] if s["vb"] else 0.0)
        running = 1 if wg > 0 else 2 if wg < 0 else 0
        alarm = 1 if (s["alm1"] or s["alm2"] or s["alm3"]) else 0
        cst = self._overrides.get("cst", running | alarm << 2)
        return {"vg": vg, "ig": ig, "wg": wg, "wb": wb, "ib": ib, "cst": cst}

    def _raw_values(self, group):
        """dict field name -> raw for the read ACK of ``group`` (under lock)."""
        computed = self._computed()
        raws = {}
        for f in group.read:
            key = state_key(group, f)
            if key in self._raws:
                raws[f.name] = self._raws[key]
            else:
                value = computed[key] if key in computed else self._state[key]
                raws[f.name] = codec.encode_value(f, value, clamp=True)
        return raws

    # --- records and faults ----------------------------------------------------------

    @property
    def received(self):
        """List of ``Received`` records, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    def writes(self):
        """The write ("N-4") records only."""
        return [r for r in self.received if r.write]

    def clear(self):
        """Forget the received records."""
        with self._lock:
            self._received.clear()

    def inject(self, fault, count=1, **kw):
        """Apply ``fault`` to the next ``count`` commands (None: until
        ``clear_faults()``); replaces any fault injected before.

        Faults: "silent" (no reply, not applied), "lost" (applied, no reply),
        "bad_checksum" (applied, reply checksum wrong), "nak" (``ercd``,
        default 0xfffc; not applied), "garbage" (``nbytes`` random non-0x02
        bytes, default 8, before the reply), "half" (applied, only the first
        half of the reply), "delay" (applied, reply ``seconds`` (default 0.05)
        later than usual).
        """
        if fault not in FAULTS:
            raise ValueError("unknown fault %r (known: %s)" % (fault, ", ".join(sorted(FAULTS))))
        with self._lock:
            self._fault = {"kind": fault, "remaining": count, "kw": kw}

    def clear_faults(self):
        """Stop injecting faults."""
        with self._lock:
            self._fault = None

    def _take_fault(self):
        with self._lock:
            f = self._fault
            if f is None:
                return None, {}
            if f["remaining"] is not None:
                f["remaining"] -= 1
                if f["remaining"] <= 0:
                    self._fault = None
            return f["kind"], f["kw"]

    # --- protocol ----------------------------------------------------------------------

    def _nak(self, req, ercd):
        return codec.build_nak(self.ad1, self.ad2, req.cmd, ercd)

    def _answer(self, req, apply):
        """The reply frame to ``req``; applies a write when ``apply``."""
        if not req.supported:
            return self._nak(req, ERCD_NOT_SUPPORTED)
        g = req.group
        with self._lock:
            if not req.write:
                return codec.build_ack(self.ad1, self.ad2, g, False, self._raw_values(g), raw=True)
            fields = g.request_fields(True)
            bad = [f.name for f in fields if not codec.raw_acceptable(f, req.raws[f.name])]
            if bad:
                logger.info("%s: refusing %s", req.name, ", ".join("%s=%s" % (n, req.params[n]) for n in bad))
                return self._nak(req, ERCD_PARAMETER_INVALID)
            if apply:
                if g.number == 9:
                    self._state.update(alm1=0, alm2=0, alm3=0)
                else:
                    for f in fields:
                        key = state_key(g, f)
                        self._state[key] = req.params[f.name]
                        self._raws[key] = req.raws[f.name]
            ack_raws = {f.name: req.raws[f.name] for f in g.ack_fields(True)}
            return codec.build_ack(self.ad1, self.ad2, g, True, ack_raws, raw=True)

    def _handle(self, frame, arrived):
        """Handle one complete request frame; returns (reply bytes or None, extra delay)."""
        try:
            req = codec.parse_request(frame)
        except (ESSXChecksumException, ESSXValueException) as exc:
            logger.info("ignoring request: %s", exc)
            return None, 0.0
        if (req.ad1, req.ad2) != (self.ad1, self.ad2):
            logger.debug("ignoring request for %d/%d", req.ad1, req.ad2)
            return None, 0.0
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sim <- %s", codec.hexdump(frame))
        kind, kw = self._take_fault()
        rec = Received(req.name, req.cmd, req.write, dict(req.params), bytes(frame), arrived,
                       req.ad1, req.ad2, fault=kind)
        with self._lock:
            self._received.append(rec)
        if kind == "silent":
            return None, 0.0
        if kind == "nak":
            reply = self._nak(req, kw.get("ercd", 0xFFFC))
        else:
            reply = self._answer(req, apply=True)
        delay = 0.0
        if kind == "lost":
            reply = None
        elif kind == "bad_checksum":
            reply = reply[:-1] + bytes(((reply[-1] + 1) & 0xFF,))
        elif kind == "garbage":
            junk = bytes(self._rng.choice([b for b in range(256) if b != table.SFD_REPLY])
                         for _ in range(kw.get("nbytes", 8)))
            reply = junk + reply
        elif kind == "half":
            reply = reply[:len(reply) // 2]
        elif kind == "delay":
            delay = kw.get("seconds", 0.05)
        rec.reply = reply
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sim -> %s%s", codec.hexdump(reply or b""), " (%s)" % kind if kind else "")
        return reply, delay

    # --- serving ------------------------------------------------------------------------

    def _read(self, master):
        try:
            return os.read(master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            logger.debug("pty read: %s", exc)
            return None

    def _write(self, master, data):
        try:
            n = os.write(master, data)
        except OSError as exc:  # BlockingIOError: nobody drains the slave
            logger.debug("pty write dropped %d bytes: %s", len(data), exc)
            return
        if n < len(data):
            logger.debug("pty write dropped %d bytes", len(data) - n)

    def _serve(self, master, stop):
        """Serving loop: collect request bytes, answer complete frames."""
        buf = bytearray()
        t0 = last = 0.0  # arrival of the buffer's first byte / of its last chunk
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], POLL)
            now = time.monotonic()
            if ready:
                data = self._read(master)
                if data is None:
                    stop.wait(POLL)
                    continue
                if data:
                    if not buf:
                        t0 = now
                    buf += data
                    last = now
            elif buf and now - last > FRAME_GAP:
                logger.info("dropping partial request: %s", codec.hexdump(buf))
                buf.clear()
            while buf:
                i = buf.find(table.SFD_REQUEST)
                if i != 0:
                    del buf[:len(buf) if i < 0 else i]
                    continue
                if len(buf) < 2 or len(buf) < buf[1] + table.FRAME_OVERHEAD:
                    break
                n = buf[1] + table.FRAME_OVERHEAD
                frame = bytes(buf[:n])
                del buf[:n]
                if not codec.checksum_ok(frame):
                    logger.info("bad request checksum, resyncing: %s", codec.hexdump(frame))
                    buf[0:0] = frame[1:]
                    continue
                arrived = time.monotonic()
                try:
                    reply, delay = self._handle(frame, arrived)
                except Exception:  # noqa: BLE001 - a simulator bug must not kill the server
                    logger.exception("simulator failed on %s", codec.hexdump(frame))
                    continue
                if reply:
                    start = max(arrived, t0 + wire_time(n, self.baudrate)) + self.turnaround + delay
                    t0 = self._send_paced(master, reply, start, buf, stop)
                    last = time.monotonic()
                elif buf:
                    t0 = arrived

    def _send_paced(self, master, reply, start, buf, stop):
        """Send ``reply`` as a wire at ``self.baudrate`` would, starting at
        ``start`` (monotonic); bytes arriving meanwhile go to ``buf``.
        Returns the arrival time of the first byte now in ``buf``."""
        byte_time = wire_time(1, self.baudrate)
        end = start + len(reply) * byte_time
        sent = 0
        collided = False
        first_rx = time.monotonic()
        while sent < len(reply) and not stop.is_set():
            now = time.monotonic()
            due = len(reply) if now >= end else max(0, int((now - start) / byte_time))
            if due > sent:
                self._write(master, reply[sent:due])
                sent = due
                continue
            target = start + min(sent + PACE_CHUNK, len(reply)) * byte_time
            ready, _, _ = select.select([master], [], [], min(POLL, max(0.0, target - now)))
            if ready:
                data = self._read(master)
                if data:
                    now = time.monotonic()
                    if not buf:
                        first_rx = now
                    buf += data
                    if now >= start and not collided:
                        collided = True
                        with self._lock:
                            self.collisions += 1
                        logger.info("collision: request bytes arrived while a reply was on the line")
        return first_rx


def main(argv=None):
    """Command line: serve a simulated EZA2500 until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Simulated EZA2500 on a pty")
    parser.add_argument("--link", help="symlink to create for the pty (e.g. /tmp/ttyEZA)")
    parser.add_argument("--baud", type=int, default=19200)
    parser.add_argument("--turnaround", type=float, default=0.005)
    parser.add_argument("--ad1", type=int, default=0)
    parser.add_argument("--ad2", type=int, default=16)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every frame")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sim = EZA2500Simulator(args.ad1, args.ad2, args.baud, args.turnaround, args.link)
    with sim:
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
