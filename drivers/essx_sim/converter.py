"""A simulated EZA2500 on a pseudo-terminal.

Importable (``EZA2500Simulator``) and runnable::

    python -m essx_sim.converter --link /tmp/ttyEZA [--baud 19200]
        [--turnaround 0.005] [--ad1 0 --ad2 16]

It answers every command of ``table`` with frames built by ``codec``; the
line (framing, pacing at the baud rate after the request's wire time and a
turnaround, collisions) is ``essx_sim.paced_pty.PacedPty``.

Model of the converter (choices of this simulator, not facts of docs/eza2500-protocol.md):

* The converter is a node of a DC bus (``essx_sim.dcbus``, whose docstring gives
  the physics): its mode, ``dvg``, ``drg``, ``dig`` and ``efficiency`` are
  its setting; the bus gives ``vg``, ``ig``, ``wg`` and ``wb``.  Sign
  convention (the 10-1 meters' as apis-main reads them, docs/grid.md):
  seen from the bus and the battery, charging gives ``ig``, ``wg``, ``ib``
  and ``wb`` > 0, discharging all four < 0; ``wg = vg * ig``,
  ``wb = wg - losses`` (``efficiency`` 0.98: ``wg * 0.98`` charging,
  ``wg / 0.98`` discharging), ``ib = wb / vb``.
* Given no ``bus``, the simulator is alone on a private bus whose external
  grid holds ``grid_v`` (350 V) and whose load draws ``-autonomy_ig``
  (default 1 A): alone, Waiting shows ``vg = grid_v`` and no current,
  Heteronomy CV charge/discharge ``ig = ±dig`` at ``grid_v``, Grid Autonomy
  ``vg = dvg`` (less the droop) feeding the load, limited to ``dig``.
* Given a ``battery`` (``essx_sim.physics.BatteryModel``), the bus
  hands it ``wb`` and ``vb`` is its voltage; else ``vb`` is state (52 V).
* ``cst``: bits 0-1 running state from the sign of ``wg`` (0 off, 1 charge
  when ``wg`` > 0, 2 discharge when ``wg`` < 0); bits 2-3 alarm state 1 ("Light") when any of alm1..alm3 is
  set, else 0.
* ``vg``, ``ig``, ``ib``, ``wg``, ``wb`` and ``cst`` are computed; ``set()``
  of one of them overrides the reported value (the bus and the battery are
  not affected) until ``set(name=None)``; so does ``vb`` with a battery.
* Initial values are the ``initial`` column of ``table``; group 14 ratings
  are given as ``value = n / 2**nq`` (a guess).
* Groups 15 and 16 both have ``min``/``maj``: state keys ``ver15_min``,
  ``ver15_maj``, ``ver16_min``, ``ver16_maj``.
"""
import argparse
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Optional, Tuple

from essx_sim.dcbus import DCBus, Setting, battery_power
from essx_sim.paced_pty import OnLine, PacedPty, wire_time
from eza2500 import codec, table

logger = logging.getLogger(__name__)

__all__ = ["EZA2500Simulator", "Received", "DEFAULT_STATE", "FAULTS", "state_key", "wire_time", "main"]

#: Faults ``inject`` knows (see ``EZA2500Simulator.inject``).
FAULTS = frozenset({"silent", "lost", "bad_checksum", "nak", "garbage", "half", "delay"})

#: A partial request older than this (s) with no new byte is dropped.
FRAME_GAP = 0.05

#: Bytes the "garbage" fault draws from: anything but the reply's SFD.
NOT_SFD = bytes(b for b in range(256) if b != table.SFD_REPLY)

#: Computed state keys (overridable with set()).
COMPUTED = ("vg", "ig", "ib", "wg", "wb", "cst")

#: State keys of the model that the table does not have.
MODEL_STATE = {"grid_v": 350.0, "autonomy_ig": -1.0, "efficiency": 0.98}
#: State keys that change the node's setting on the bus.
BUS_KEYS = frozenset({"mode", "dvg", "drg", "dig", "efficiency", "grid_v", "autonomy_ig"})


def state_key(group, field):
    """State key of ``field`` of ``group``: its name, except ``verNN_min``/
    ``verNN_maj`` for the two version groups (15, 16) that share names."""
    if group.number in (15, 16):
        return "ver%d_%s" % (group.number, field.name)
    return field.name


def _wire_fields():
    """State key -> the first Field it travels in (to check values given to set())."""
    fields = {}
    for g in table.GROUPS:
        for f in g.read + (g.write or ()):
            fields.setdefault(state_key(g, f), f)
    return fields


_WIRE_FIELDS = _wire_fields()
#: The simulator's initial state (physical values): the table's ``initial``
#: column, then MODEL_STATE.
DEFAULT_STATE = {key: f.initial for key, f in _WIRE_FIELDS.items() if f.initial is not None}
DEFAULT_STATE.update(MODEL_STATE)


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


def cut_requests(buf: bytearray, at_gap: bool) -> List[bytes]:
    """Framer for ``PacedPty``: complete, checksum-good request frames off
    the front of ``buf``; junk before an SFD is skipped, a frame with a bad
    checksum is resynced past its SFD, a partial frame is dropped at a gap."""
    frames = []
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
        frames.append(frame)
    if at_gap and buf:
        logger.info("dropping partial request: %s", codec.hexdump(buf))
        buf.clear()
    return frames


class EZA2500Simulator(OnLine):
    """A simulated EZA2500 converter serving on a pty (``port``,
    ``write_raw`` and ``with`` blocks: ``OnLine``).

    Args:
        ad1, ad2: the addresses it answers to (others are ignored).
        baudrate: wire speed modelled for pacing (bits/s, 10 bits a byte).
        turnaround: seconds between the end of a request and the start of
            its reply.
        link: optional path of a symlink to (re)point at the pty slave.
        bus: the ``DCBus`` it is a node of; None: a private bus (module doc).
        battery: a ``BatteryModel`` the bus feeds (``wb``, W) and that gives
            ``vb``; None: ``vb`` is state.
        name: its node name on ``bus`` (default "ad1/ad2").
    Raises:
        ValueError: ``name`` is already a node of ``bus``.
    """

    def __init__(self, ad1: int = 0, ad2: int = 16, baudrate: float = 19200,
                 turnaround: float = 0.005, link: Optional[str] = None, *,
                 bus: Optional[DCBus] = None, battery=None, name: Optional[Hashable] = None):
        self.ad1 = ad1
        self.ad2 = ad2
        self.baudrate = baudrate
        self.turnaround = turnaround
        self.link = link
        self.battery = battery
        self._lock = threading.RLock()
        self._state = dict(DEFAULT_STATE)
        self._raws = {}        # state key -> raw taken from a write (exact echo)
        self._overrides = {}   # computed key -> value
        self._received = []
        self._fault = None
        self._rng = random.Random()
        self._private_bus = bus is None
        self.bus = DCBus() if bus is None else bus
        self.node = self.bus.attach("%d/%d" % (ad1, ad2) if name is None else name, battery)
        self._sync_bus()
        self._line = PacedPty(cut_requests, self._on_frame, baudrate, gap=FRAME_GAP,
                              link=link, name="eza2500-sim")

    # --- life cycle ---------------------------------------------------------

    def start(self) -> "EZA2500Simulator":
        """Open a pty, point ``link`` at it and start serving; returns self."""
        with self._lock:
            if self._line.running:
                return self
            self._line.start()
        logger.info("EZA2500 simulator on %s (ad1=%d ad2=%d, %d baud)",
                    self.port, self.ad1, self.ad2, self.baudrate)
        return self

    def stop(self) -> None:
        """Stop serving, close the pty, remove the link; idempotent."""
        self._line.stop()

    def reopen(self) -> None:
        """Simulate unplug/replug: close the pty (clients now get errors) and
        serve on a new one that ``link`` points to.

        Raises:
            ValueError: no ``link``; RuntimeError: not running, or the line
                did not swap the port in time.
        """
        if not self.link:
            raise ValueError("reopen() needs a link path")
        self._line.reopen()
        logger.info("EZA2500 simulator reopened on %s -> %s", self.link, self._line.path)

    @property
    def collisions(self) -> int:
        """Replies that request bytes collided with (see ``PacedPty``)."""
        return self._line.collided_replies

    # --- state ------------------------------------------------------------------

    @property
    def state(self) -> Dict[str, Any]:
        """A snapshot dict of the converter state (physical values), meters
        and ``cst`` computed from the bus, the battery and the settings."""
        with self._lock:
            snap = dict(self._state)
            snap.update(self._computed())
            return snap

    def set(self, **fields) -> None:
        """Set state at run time, e.g. ``sim.set(mode=0x14, dvg=350, alm1=1)``.

        Computed keys (vg, ig, ib, wg, wb, cst; vb with a battery) are
        overridden; ``None`` returns them to the model.  Values are physical;
        a value that cannot travel in its field (e.g. a raw field given 2.5)
        raises ``ESSXValueException``; an unknown key raises KeyError.
        """
        for key, value in fields.items():
            if key not in COMPUTED and key not in self._state:
                raise KeyError("unknown simulator state key %r" % key)
            if key in _WIRE_FIELDS and value is not None:
                codec.encode_value(_WIRE_FIELDS[key], value, clamp=True)
        with self._lock:
            for key, value in fields.items():
                if key in COMPUTED or (key == "vb" and self.battery is not None):
                    if value is None:
                        self._overrides.pop(key, None)
                    else:
                        self._overrides[key] = value
                else:
                    self._state[key] = value
                    self._raws.pop(key, None)
            if BUS_KEYS.intersection(fields):
                self._sync_bus()

    def _sync_bus(self):
        """Hand the bus this node's setting (and, alone, the grid and load)."""
        s = self._state
        with self._lock:
            if self._private_bus:
                self.bus.configure(load=-s["autonomy_ig"], external_v=s["grid_v"])
            self.bus.update(self.node, Setting(s["mode"], s["dvg"], s["drg"], s["dig"], s["efficiency"]))

    def _computed(self) -> Dict[str, Any]:
        """Meters and cst from the bus (see module doc), then overrides."""
        s, ov, flow = self._state, self._overrides, self.node.flow
        vg = ov.get("vg", flow.vg)
        ig = ov.get("ig", flow.ig)
        wg = ov.get("wg", vg * ig)
        wb = ov.get("wb", battery_power(wg, s["efficiency"]))
        vb = ov.get("vb", self.battery.vb if self.battery is not None else s["vb"])
        ib = ov.get("ib", wb / vb if vb else 0.0)
        running = 1 if wg > 0 else 2 if wg < 0 else 0
        alarm = 1 if (s["alm1"] or s["alm2"] or s["alm3"]) else 0
        cst = ov.get("cst", running | alarm << 2)
        return {"vg": vg, "ig": ig, "wg": wg, "wb": wb, "ib": ib, "vb": vb, "cst": cst}

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
    def received(self) -> List[Received]:
        """List of ``Received`` records, in arrival order (a copy)."""
        with self._lock:
            return list(self._received)

    def writes(self) -> List[Received]:
        """The write ("N-4") records only."""
        return [r for r in self.received if r.write]

    def clear(self) -> None:
        """Forget the received records."""
        with self._lock:
            self._received.clear()

    def inject(self, fault: str, count: Optional[int] = 1, **kw) -> None:
        """Apply ``fault`` to the next ``count`` commands (None: until
        ``clear_faults()``); replaces any fault injected before.

        Faults: "silent" (no reply, not applied), "lost" (applied, no reply),
        "bad_checksum" (applied, reply checksum wrong), "nak" (``ercd``,
        default ``table.ERCD_BUSY``; not applied), "garbage" (``nbytes``
        random non-SFD bytes, default 8, before the reply), "half" (applied,
        only the first half of the reply), "delay" (applied, reply
        ``seconds`` (default 0.05) later than usual).

        Raises:
            ValueError: unknown fault.
        """
        if fault not in FAULTS:
            raise ValueError("unknown fault %r (known: %s)" % (fault, ", ".join(sorted(FAULTS))))
        with self._lock:
            self._fault = {"kind": fault, "remaining": count, "kw": kw}

    def clear_faults(self) -> None:
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

    def _answer(self, req):
        """The reply frame to ``req``; applies a write."""
        if not req.supported:
            return self._nak(req, table.ERCD_NOT_SUPPORTED)
        g = req.group
        with self._lock:
            if not req.write:
                return codec.build_ack(self.ad1, self.ad2, g, False, self._raw_values(g), raw=True)
            fields = g.request_fields(True)
            bad = [f.name for f in fields if not codec.raw_acceptable(f, req.raws[f.name])]
            if bad:
                logger.info("%s: refusing %s", req.name, ", ".join("%s=%s" % (n, req.params[n]) for n in bad))
                return self._nak(req, table.ERCD_PARAMETER_INVALID)
            self._apply(g, fields, req)
            return codec.build_ack(self.ad1, self.ad2, g, True, req.raws, raw=True)  # echoes the request

    def _apply(self, g, fields, req):
        """Take a write's values (9-4: clear the alarms) (under lock)."""
        if g.number == 9:
            self._state.update(alm1=0, alm2=0, alm3=0)
            return
        for f in fields:
            key = state_key(g, f)
            self._state[key] = req.params[f.name]
            self._raws[key] = req.raws[f.name]
        self._sync_bus()

    def _handle(self, frame: bytes, arrived: float) -> Tuple[Optional[bytes], float]:
        """Handle one request frame from ``cut_requests`` (whole, checksum good, so
        ``parse_request`` cannot refuse it); returns (reply bytes or None, extra delay s)."""
        req = codec.parse_request(frame)
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
        reply = self._nak(req, kw.get("ercd", table.ERCD_BUSY)) if kind == "nak" else self._answer(req)
        reply, delay = self._spoil(reply, kind, kw)
        rec.reply = reply
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sim -> %s%s", codec.hexdump(reply or b""), " (%s)" % kind if kind else "")
        return reply, delay

    def _spoil(self, reply, kind, kw):
        """Apply a reply fault: returns (reply or None, extra delay s)."""
        if kind == "lost":
            return None, 0.0
        if kind == "bad_checksum":
            return reply[:-1] + bytes(((reply[-1] + 1) & 0xFF,)), 0.0
        if kind == "garbage":
            junk = bytes(self._rng.choice(NOT_SFD) for _ in range(kw.get("nbytes", 8)))
            return junk + reply, 0.0
        if kind == "half":
            return reply[:len(reply) // 2], 0.0
        if kind == "delay":
            return reply, kw.get("seconds", 0.05)
        return reply, 0.0

    def _on_frame(self, frame: bytes, wire_end: float):
        """``PacedPty`` callback: answer a request that ended at ``wire_end``."""
        reply, delay = self._handle(frame, time.monotonic())
        if reply:
            self._line.reply(reply, wire_end + self.turnaround + delay)


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
