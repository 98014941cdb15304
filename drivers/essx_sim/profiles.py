"""Per-node PV generation and household load over simulated time.

A ``Profile`` is a time series of one quantity in W, linear between its
points and repeating after its ``period`` (a day, or as many days as the
data has).  ``load_profiles`` reads a directory of them:

* ``E001.csv``, ``E002.csv``, ... (node 0, 1, ...) and ``default.csv`` (every
  other node): this project's format, a header ``time,pv,load`` and a row a
  point, ``time`` as ``HH:MM`` or ``HH:MM:SS`` within one day, ``pv`` and
  ``load`` in W;
* ``sample_solar_data.csv``: apis-emulator's solar file, a row a day of 24
  hourly values from 0:00, used as W for every node without a file of its
  own (apis-emulator's inputData.py, old_pvcUpdate_Sample, takes them as W
  directly, although its specification calls them W/m²);
* ``sample_load_data.csv``: apis-emulator's load file, a header row, then
  rows of household id (column 1) and half-hourly kW from column 6; as
  apis-emulator's inputData.py (old_loadDemand_Sample) does, the hourly
  values are columns 6, 8, ..., 52 and household *k*'s rows, in file order,
  are its days; household *k* is unit ``E00k``, node *k* - 1.

``sample_profiles`` makes a small set from a documented model instead
(``--profiles sample``); ``write_profiles`` writes any set in this project's
format.
"""
import bisect
import csv
import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

DAY_S = 86400.0
SOLAR_FILE = "sample_solar_data.csv"
LOAD_FILE = "sample_load_data.csv"
DEFAULT_FILE = "default.csv"
#: Columns of apis-emulator's load file that it reads: household id, then hourly kW.
LOAD_ID_COLUMN = 1
LOAD_HOUR_COLUMNS = tuple(range(6, 53, 2))


class ProfileError(ValueError):
    """A profile file or value that cannot be used (the message names file, line and value)."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """A quantity in W at ``times`` (s from the start of day 0, increasing),
    linear in between, repeating every ``period`` s (> last time).

    Raises (at construction):
        ProfileError: no point, times not increasing, a period too short.
    """

    times: Tuple[float, ...]
    values: Tuple[float, ...]
    period: float = DAY_S

    def __post_init__(self) -> None:
        if not self.times or len(self.times) != len(self.values):
            raise ProfileError("a profile needs as many times as values, at least one")
        if any(b <= a for a, b in zip(self.times, self.times[1:])):
            raise ProfileError("profile times must increase")
        if not self.period > self.times[-1] - self.times[0]:
            raise ProfileError("profile period %r s is shorter than its data" % (self.period,))

    def at(self, seconds: float) -> float:
        """The value (W) ``seconds`` after the start of day 0: linear between
        points, from the last point to the first one a period later."""
        t = seconds % self.period
        times, values = self.times, self.values
        i = bisect.bisect_right(times, t)
        if 0 < i < len(times):
            t0, t1 = times[i - 1], times[i]
            return values[i - 1] + (values[i] - values[i - 1]) * (t - t0) / (t1 - t0)
        # between the last point and the first one of the next period
        t0, v0 = times[-1], values[-1]
        t1, v1 = times[0] + self.period, values[0]
        t = t if t >= t0 else t + self.period
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v0

    @classmethod
    def constant(cls, watts: float) -> "Profile":
        """A profile that is ``watts`` W at every time."""
        return cls((0.0,), (float(watts),))

    @classmethod
    def hourly(cls, days: Sequence[Sequence[float]]) -> "Profile":
        """Rows of 24 hourly values (W) from 0:00, a row a day."""
        values = tuple(float(v) for row in days for v in row)
        return cls(tuple(3600.0 * i for i in range(len(values))), values, DAY_S * len(days))


@dataclasses.dataclass(frozen=True)
class NodeProfile:
    """A node's PV generation and household load (``Profile`` in W each)."""

    pv: Profile
    load: Profile


ZERO = NodeProfile(Profile.constant(0.0), Profile.constant(0.0))


def unit_id(index: int) -> str:
    """apis-emulator's unit id of node ``index``: 0 -> "E001" (its startEmul.py, addUnit)."""
    return "E{0:03d}".format(index + 1)


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProfileError("%s: %r is not a number" % (where, text)) from None
    if not math.isfinite(value) or value < 0:
        raise ProfileError("%s: %r: expected a number >= 0" % (where, text))
    return value


def _time_of_day(text: str, where: str) -> float:
    parts = text.strip().split(":")
    try:
        h, m, s = (int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) > 2 else 0.0)
    except (ValueError, IndexError):
        raise ProfileError("%s: time %r: expected HH:MM or HH:MM:SS" % (where, text)) from None
    if len(parts) > 3 or not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
        raise ProfileError("%s: time %r: expected HH:MM or HH:MM:SS within one day" % (where, text))
    return h * 3600.0 + m * 60.0 + s


def read_node_file(path: str) -> NodeProfile:
    """A ``NodeProfile`` from this project's CSV (header ``time,pv,load``).

    Raises:
        ProfileError: unreadable file, wrong header, a bad time or value
            (file and line named), times not increasing.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ProfileError("%s: cannot be read: %s" % (path, e.strerror or e)) from e
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header != ["time", "pv", "load"]:
        raise ProfileError("%s: line 1: expected the header time,pv,load, got %s" % (path, ",".join(header)))
    times, pv, load = [], [], []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        where = "%s: line %d" % (path, n)
        if len(row) != 3:
            raise ProfileError("%s: expected 3 values (time,pv,load), got %d" % (where, len(row)))
        times.append(_time_of_day(row[0], where))
        pv.append(_number(row[1], where + ": pv"))
        load.append(_number(row[2], where + ": load"))
    try:
        return NodeProfile(Profile(tuple(times), tuple(pv)), Profile(tuple(times), tuple(load)))
    except ProfileError as e:
        raise ProfileError("%s: %s" % (path, e)) from e


def read_solar_file(path: str) -> Profile:
    """apis-emulator's solar file: a row a day of 24 hourly values (used as W).

    Raises:
        ProfileError: unreadable, a row without 24 values, a bad value.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except OSError as e:
        raise ProfileError("%s: cannot be read: %s" % (path, e.strerror or e)) from e
    days = []
    for n, row in enumerate(rows, start=1):
        if len(row) != 24:
            raise ProfileError("%s: line %d: expected 24 hourly values, got %d" % (path, n, len(row)))
        days.append([_number(c, "%s: line %d" % (path, n)) for c in row])
    if not days:
        raise ProfileError("%s: no data" % path)
    return Profile.hourly(days)


def read_load_file(path: str) -> Dict[int, Profile]:
    """apis-emulator's load file: {household id: hourly load in W} (kW x 1000).

    Raises:
        ProfileError: unreadable, a row too short, a bad value.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    except OSError as e:
        raise ProfileError("%s: cannot be read: %s" % (path, e.strerror or e)) from e
    days: Dict[int, List[List[float]]] = {}
    for n, row in enumerate(rows[1:], start=2):
        where = "%s: line %d" % (path, n)
        if len(row) <= LOAD_HOUR_COLUMNS[-1]:
            raise ProfileError("%s: expected at least %d columns, got %d" % (where, LOAD_HOUR_COLUMNS[-1] + 1, len(row)))
        household = int(_number(row[LOAD_ID_COLUMN], where + ": household id"))
        days.setdefault(household, []).append([_number(row[c], where) * 1000.0 for c in LOAD_HOUR_COLUMNS])
    return {k: Profile.hourly(v) for k, v in days.items()}


def load_profiles(directory: str, nodes: int) -> List[NodeProfile]:
    """Every node's ``NodeProfile`` from ``directory`` (module docstring);
    a node no file speaks of has no PV and no load.

    Raises:
        ProfileError: not a directory, no profile file in it, a bad file.
    """
    if not os.path.isdir(directory):
        raise ProfileError("--profiles %s: not a directory (or 'sample')" % directory)
    names = set(os.listdir(directory))
    if not names & ({SOLAR_FILE, LOAD_FILE, DEFAULT_FILE} | {unit_id(i) + ".csv" for i in range(nodes)}):
        raise ProfileError("--profiles %s: no profile in it (expected E001.csv, ..., %s, %s or %s)"
                           % (directory, DEFAULT_FILE, SOLAR_FILE, LOAD_FILE))
    default = read_node_file(os.path.join(directory, DEFAULT_FILE)) if DEFAULT_FILE in names else ZERO
    solar = read_solar_file(os.path.join(directory, SOLAR_FILE)) if SOLAR_FILE in names else None
    loads = read_load_file(os.path.join(directory, LOAD_FILE)) if LOAD_FILE in names else {}
    result = []
    for i in range(nodes):
        own = unit_id(i) + ".csv"
        if own in names:
            result.append(read_node_file(os.path.join(directory, own)))
        else:
            result.append(NodeProfile(solar or default.pv, loads.get(i + 1, default.load)))
    return result


#: The sample model (``sample_profiles``): PV peak W by node (cycled), load scale by node (cycled).
SAMPLE_PV_PEAK_W = (2000.0, 1000.0, 2400.0, 1500.0, 500.0)
SAMPLE_LOAD_SCALE = (1.0, 1.3, 0.8, 1.1, 0.9)
#: Base load W, and (hour, W, hours wide) of the morning and evening peaks.
SAMPLE_BASE_W = 150.0
SAMPLE_PEAKS = ((7.5, 400.0, 1.0), (19.0, 700.0, 1.5))


def sample_pv(hour: float, peak_w: float) -> float:
    """The sample PV (W) at ``hour`` (0..24): ``peak_w * sin(pi (hour - 6) / 12) ** 1.5``
    between 6:00 and 18:00, 0 at night (a clear day at the equinox, roughly)."""
    if not 6.0 < hour < 18.0:
        return 0.0
    return peak_w * math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.5


def sample_load(hour: float, scale: float) -> float:
    """The sample household load (W) at ``hour``: ``scale`` x (a base of
    ``SAMPLE_BASE_W`` plus a Gaussian morning and evening peak, ``SAMPLE_PEAKS``)."""
    w = SAMPLE_BASE_W + sum(h * math.exp(-0.5 * ((hour - at) / width) ** 2) for at, h, width in SAMPLE_PEAKS)
    return scale * w


def sample_profiles(nodes: int, step_s: float = 900.0) -> List[NodeProfile]:
    """The sample set (``--profiles sample``): node *i* has PV peak
    ``SAMPLE_PV_PEAK_W[i % 5]`` and load ``SAMPLE_LOAD_SCALE[i % 5]`` x the
    sample household (``sample_pv``, ``sample_load``), a point every
    ``step_s`` s of one day; some nodes make more than they use, some less,
    so that apis-main has deals to make."""
    times = tuple(k * step_s for k in range(int(DAY_S // step_s)))
    result = []
    for i in range(nodes):
        peak, scale = SAMPLE_PV_PEAK_W[i % len(SAMPLE_PV_PEAK_W)], SAMPLE_LOAD_SCALE[i % len(SAMPLE_LOAD_SCALE)]
        pv = tuple(round(sample_pv(t / 3600.0, peak), 1) for t in times)
        load = tuple(round(sample_load(t / 3600.0, scale), 1) for t in times)
        result.append(NodeProfile(Profile(times, pv), Profile(times, load)))
    return result


def write_profiles(directory: str, profiles: Sequence[NodeProfile]) -> List[str]:
    """Write one-day ``profiles`` as ``E001.csv``, ... in this project's
    format (the points of the PV profile; load taken at the same times);
    returns the paths.  OSError when the directory cannot be written."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, p in enumerate(profiles):
        path = os.path.join(directory, unit_id(i) + ".csv")
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["time", "pv", "load"])
            for t in sorted(set(p.pv.times) | set(p.load.times)):
                if t >= DAY_S:
                    break
                s = int(t)
                out.writerow(["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60),
                              round(p.pv.at(t), 3), round(p.load.at(t), 3)])
        paths.append(path)
    return paths


def profiles_for(option: Optional[str], nodes: int) -> Optional[List[NodeProfile]]:
    """``--profiles``: None -> None (no household model), "sample" -> ``sample_profiles``,
    else ``load_profiles`` of that directory (ProfileError for a bad one)."""
    if option is None:
        return None
    if option == "sample":
        return sample_profiles(nodes)
    return load_profiles(option, nodes)
