"""Battery physics for the simulated battery: energy, RSOC, voltage, limits.

Model (choices of this simulator):

* The battery stores ``capacity_wh`` (Wh) between RSOC 0 % and 100 %.
* Its power ``wb`` (W) is set by the converter side (``set_power``) and held
  until the next call; sign as the converter's 10-1 meter reports it
  (docs/grid.md): positive = into the battery (charging), negative = out of
  it (discharging).  RSOC integrates it exactly (piecewise constant power):
  ``d(rsoc)/dt = wb / capacity_wh * 100 / 3600`` % per simulated second,
  clamped to 0..100 % (energy keeps being counted in ``energy_wh``).
* Simulated time runs ``speed`` times real time (1 = real time).
* ``vb`` (V) follows an open-circuit-voltage curve of RSOC, piecewise linear
  through ``OCV_CURVE`` (a 48 V lithium-ion pack, roughly).
* Interchange is permitted while ``rsoc_min <= rsoc <= rsoc_max`` (%).
* A household side (``set_side``: PV, load, AC in, losses; see
  ``essx_sim.household``) adds ``pv + ac_in - load - loss`` W.  The
  ``ledger`` integrates every flow in Wh; what RSOC's clamp at 100 % refuses
  is counted ``wasted``, what it cannot give at 0 % is taken from AC
  (``ac_in``, as apis-emulator's core.py:139-142 does), so that
  ``pv + ac_in + wg - load - loss - conversion - wasted + adjust = Δstored``
  holds exactly (``conversion`` = ∫(wg - wb) dt, the converter's loss;
  ``adjust`` = energy put in from outside: a new RSOC or capacity).
"""
import bisect
import threading
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

#: The flows the ledger integrates (Wh), see ``BatteryModel.ledger``.
LEDGER_KEYS = ("pv", "load", "ac_in", "loss", "wg", "wb", "wg_in", "wg_out", "wasted", "adjust")

#: (RSOC %, open-circuit voltage V), increasing RSOC, from 0 to 100 %.
OCV_CURVE: Tuple[Tuple[float, float], ...] = (
    (0.0, 44.0), (10.0, 48.0), (50.0, 52.0), (90.0, 54.0), (100.0, 56.0))


def ocv(rsoc: float, curve: Sequence[Tuple[float, float]] = OCV_CURVE) -> float:
    """Open-circuit voltage (V) at ``rsoc`` (%), linear between the curve's points."""
    xs = [x for x, _ in curve]
    i = bisect.bisect_right(xs, rsoc)
    if i <= 0:
        return curve[0][1]
    if i >= len(curve):
        return curve[-1][1]
    (x0, y0), (x1, y1) = curve[i - 1], curve[i]
    return y0 + (y1 - y0) * (rsoc - x0) / (x1 - x0)


def _check_rsoc(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 100.0:
        raise ValueError("%s=%r is not allowed (allowed: 0.0..100.0 %%)" % (name, value))
    return value


class BatteryModel:
    """A battery whose RSOC follows the power the converter puts through it.

    Args:
        capacity_wh: usable energy between 0 and 100 % RSOC, Wh (> 0).
        rsoc: initial RSOC, % (0..100).
        rsoc_min, rsoc_max: interchange permitted between these, % (inclusive).
        speed: simulated seconds per real second (> 0; 1 = real time).
        clock: monotonic clock in s (tests may pass their own).
    Raises:
        ValueError: a value out of range (the message names it).
    """

    def __init__(self, capacity_wh: float = 4800.0, rsoc: float = 55.5, rsoc_min: float = 0.0,
                 rsoc_max: float = 100.0, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        if not capacity_wh > 0:
            raise ValueError("capacity_wh=%r is not allowed (allowed: > 0 Wh)" % (capacity_wh,))
        if not speed > 0:
            raise ValueError("speed=%r is not allowed (allowed: > 0)" % (speed,))
        self.rsoc_min = _check_rsoc("rsoc_min", rsoc_min)
        self.rsoc_max = _check_rsoc("rsoc_max", rsoc_max)
        if self.rsoc_min > self.rsoc_max:
            raise ValueError("rsoc_min=%r > rsoc_max=%r" % (rsoc_min, rsoc_max))
        self.capacity_wh = float(capacity_wh)
        self.speed = float(speed)
        self._clock = clock
        self._lock = threading.Lock()
        self._rsoc = _check_rsoc("rsoc", rsoc)
        self._power = 0.0    # wb, W
        self._wg = 0.0       # the converter's grid side, W
        self._side = (0.0, 0.0, 0.0, 0.0)   # pv, load, ac_in, loss, W
        self._energy = 0.0   # Wh into the battery from the converter since creation (simulated)
        self._elapsed = 0.0  # simulated s since creation
        self._ledger = dict.fromkeys(LEDGER_KEYS, 0.0)
        self._t = clock()

    def _advance(self):
        """Integrate the held powers up to now (under the lock)."""
        now = self._clock()
        dt = (now - self._t) * self.speed
        self._t = now
        if dt <= 0:
            return
        h = dt / 3600.0
        pv, load, ac_in, loss = self._side
        ledger = self._ledger
        wh = self._power * h
        self._energy += wh
        self._elapsed += dt
        ledger["wb"] += wh
        ledger["wg"] += self._wg * h
        ledger["wg_in" if self._wg > 0 else "wg_out"] += abs(self._wg) * h
        ledger["pv"] += pv * h
        ledger["load"] += load * h
        ledger["ac_in"] += ac_in * h
        ledger["loss"] += loss * h
        rsoc = self._rsoc + (wh + (pv + ac_in - load - loss) * h) / self.capacity_wh * 100.0
        if rsoc > 100.0:
            ledger["wasted"] += (rsoc - 100.0) / 100.0 * self.capacity_wh
            rsoc = 100.0
        elif rsoc < 0.0:
            ledger["ac_in"] -= rsoc / 100.0 * self.capacity_wh   # the AC side covers what the battery cannot give
            rsoc = 0.0
        self._rsoc = rsoc

    def set_power(self, wb: float, wg: Optional[float] = None) -> None:
        """From now on the battery takes ``wb`` W (positive: charging; negative:
        it gives ``-wb`` W, discharging) through a converter whose grid side
        carries ``wg`` W (same sign; default ``wb``: no conversion loss)."""
        with self._lock:
            self._advance()
            self._power = float(wb)
            self._wg = float(wb if wg is None else wg)

    def set_side(self, pv: float, load: float, ac_in: float = 0.0, loss: float = 0.0) -> None:
        """From now on the household side adds ``pv + ac_in - load - loss`` W
        (each >= 0: PV generated, load served, AC taken in, losses)."""
        with self._lock:
            self._advance()
            self._side = (float(pv), float(load), float(ac_in), float(loss))

    def ledger(self) -> Dict[str, float]:
        """The flows since creation, Wh (simulated time), brought up to now:
        ``pv``, ``load``, ``ac_in``, ``loss`` (household), ``wg`` (grid side,
        + drawn from the bus), ``wb`` (into the battery from the converter),
        ``wg_in``/``wg_out`` (∫ of wg's positive/negative part, >= 0),
        ``wasted`` (refused by a full battery), ``adjust`` (set from outside),
        ``stored`` (Wh in the battery now) and ``capacity_wh``."""
        with self._lock:
            self._advance()
            out = dict(self._ledger)
            out["stored"] = self._rsoc / 100.0 * self.capacity_wh
            out["capacity_wh"] = self.capacity_wh
            return out

    def set_capacity(self, capacity_wh: float) -> None:
        """A new capacity (Wh, > 0) at the same RSOC; the stored energy's change
        is counted ``adjust``.  ValueError for a capacity <= 0."""
        if isinstance(capacity_wh, bool) or not float(capacity_wh) > 0:
            raise ValueError("capacity_wh=%r is not allowed (allowed: > 0 Wh)" % (capacity_wh,))
        with self._lock:
            self._advance()
            self._ledger["adjust"] += self._rsoc / 100.0 * (float(capacity_wh) - self.capacity_wh)
            self.capacity_wh = float(capacity_wh)

    @property
    def power(self) -> float:
        """The battery power held now, W (positive: charging; negative: discharging)."""
        return self._power

    def _now(self, attribute: str) -> float:
        """An integrated quantity brought up to now."""
        with self._lock:
            self._advance()
            return getattr(self, attribute)

    @property
    def rsoc(self) -> float:
        """RSOC now, % (float, 0..100); setting it: ValueError outside 0..100."""
        return self._now("_rsoc")

    @rsoc.setter
    def rsoc(self, value: float) -> None:
        value = _check_rsoc("rsoc", value)
        with self._lock:
            self._advance()
            self._ledger["adjust"] += (value - self._rsoc) / 100.0 * self.capacity_wh
            self._rsoc = value

    @property
    def vb(self) -> float:
        """Battery voltage now, V (open-circuit voltage of RSOC)."""
        return ocv(self.rsoc)

    @property
    def permitted(self) -> bool:
        """True while RSOC is within [rsoc_min, rsoc_max]."""
        return self.rsoc_min <= self.rsoc <= self.rsoc_max

    @property
    def energy_wh(self) -> float:
        """Energy into the battery from the converter since creation, Wh (∫ wb
        dt, simulated time; negative when it gave more than it took)."""
        return self._now("_energy")

    @property
    def elapsed(self) -> float:
        """Simulated seconds since creation."""
        return self._now("_elapsed")
