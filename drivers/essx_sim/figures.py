"""The grid's figures: a time series and a row a simulated day, from the
batteries' ledgers (``BatteryModel.ledger``), never from the driver.

Every figure is a difference of ledger totals, so the series integrates to
the day's figures and each day balances:

    pv + ac_in - load - loss - wasted - bus_load + adjust - delta_stored = balance (≈ 0)

* ``pv``, ``load``, ``ac_in``, ``wasted``: Wh, summed over the nodes;
* ``loss``: the households' losses and the converters' conversion losses;
* ``exchanged``: energy the nodes delivered into the DC bus;
* ``bus_load``: energy the bus's own load took (``-Σ wg``; 0 without one);
* ``adjust``: energy set from outside (a new RSOC or capacity);
* ``self_sufficiency``: ``1 - ac_in / load``, the share of the load the
  grid covered without AC; ``ssr_real``: apis-emulator's
  ``(load - ac_in + delta_stored) / load`` (its analyser.py, summaryToMemory).

The series has a row every ``sample_s`` simulated seconds with the mean
power (W) of each flow over that interval.  A day ends at the first sample
taken after midnight.
"""
import csv
import datetime
import io
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional

#: The energy figures of a day (Wh), in CSV column order.
ENERGY_KEYS = ("pv", "load", "ac_in", "loss", "wasted", "exchanged", "bus_load", "adjust", "delta_stored")
#: The series' columns after time: mean W over the interval, then average RSOC (%) and stored Wh.
SERIES_KEYS = ("pv", "load", "ac_in", "loss", "wasted", "exchanged", "bus_load", "rsoc", "stored")
#: Days of series and of daily rows kept.
KEEP_DAYS = 7


def totals(ledgers: Iterable[Mapping[str, float]]) -> Dict[str, float]:
    """Grid-wide totals (Wh) of node ledgers: the ``ENERGY_KEYS`` but
    ``delta_stored``, and ``stored``."""
    out = dict.fromkeys(("pv", "load", "ac_in", "loss", "wasted", "exchanged", "bus_load", "adjust",
                         "stored"), 0.0)
    for ledger in ledgers:
        for key in ("pv", "load", "ac_in", "wasted", "adjust", "stored"):
            out[key] += ledger[key]
        out["loss"] += ledger["loss"] + ledger["wg"] - ledger["wb"]
        out["exchanged"] += ledger["wg_out"]
        out["bus_load"] -= ledger["wg"]
    return out


def day_figures(start: Mapping[str, float], end: Mapping[str, float]) -> Dict[str, float]:
    """The figures (Wh, ratios) between two ``totals``: ``ENERGY_KEYS``,
    ``balance``, ``self_sufficiency`` and ``ssr_real`` (None without load)."""
    d = {k: end[k] - start[k] for k in ENERGY_KEYS if k != "delta_stored"}
    d["delta_stored"] = end["stored"] - start["stored"]
    d["balance"] = (d["pv"] + d["ac_in"] - d["load"] - d["loss"] - d["wasted"] - d["bus_load"]
                    + d["adjust"] - d["delta_stored"])
    load = d["load"]
    d["self_sufficiency"] = 1.0 - d["ac_in"] / load if load > 0 else None
    d["ssr_real"] = (load - d["ac_in"] + d["delta_stored"]) / load if load > 0 else None
    return d


class Figures:
    """The series and daily rows of one grid (thread-safe).

    Args:
        sample_s: simulated seconds between series rows (> 0).
    Raises:
        ValueError: ``sample_s`` is not > 0.
    """

    def __init__(self, sample_s: float = 300.0) -> None:
        if not sample_s > 0:
            raise ValueError("sample_s=%r: expected a number > 0" % (sample_s,))
        self.sample_s = float(sample_s)
        self._lock = threading.Lock()
        self._series: List[Dict[str, Any]] = []
        self._days: List[Dict[str, Any]] = []
        self._day: Optional[datetime.date] = None
        self._day_start: Optional[Dict[str, float]] = None
        self._last: Optional[Dict[str, float]] = None
        self._last_t = 0.0
        self._now: Optional[Dict[str, float]] = None

    def due(self, seconds: float) -> bool:
        """True when a row is due at simulated ``seconds`` (or none was taken yet)."""
        return self._last is None or seconds - self._last_t >= self.sample_s

    def sample(self, seconds: float, moment: datetime.datetime, ledgers: List[Mapping[str, float]]) -> None:
        """Take a row at simulated ``seconds`` (``moment`` its date and time)
        from every node's ledger; closes the day when the date changed."""
        now = totals(ledgers)
        rsoc = [100.0 * lg["stored"] / lg["capacity_wh"] for lg in ledgers if lg.get("capacity_wh")]
        with self._lock:
            if self._last is None:
                self._day, self._day_start = moment.date(), now
            else:
                hours = (seconds - self._last_t) / 3600.0
                row: Dict[str, Any] = {"t": seconds, "time": moment.isoformat(timespec="seconds")}
                for key in SERIES_KEYS[:-2]:
                    row[key] = (now[key] - self._last[key]) / hours if hours > 0 else 0.0
                row["rsoc"] = sum(rsoc) / len(rsoc) if rsoc else None
                row["stored"] = now["stored"]
                self._series.append(row)
                if moment.date() != self._day:
                    self._close_day(now)
                    self._day, self._day_start = moment.date(), now
                keep = int(KEEP_DAYS * 86400 / self.sample_s)
                del self._series[:-keep]
            self._last, self._last_t, self._now = now, seconds, now

    def _close_day(self, now: Mapping[str, float]) -> None:
        row = {"date": self._day.isoformat()}
        row.update(day_figures(self._day_start, now))
        self._days.append(row)
        del self._days[:-KEEP_DAYS]

    def report(self) -> Dict[str, Any]:
        """{"sample_s": s, "today": {"date", figures so far}, "days": [closed
        days, oldest first], "series": [rows, oldest first]}; figures as
        ``day_figures`` gives them (Wh, ratios)."""
        with self._lock:
            today = None
            if self._day is not None and self._now is not None:
                today = {"date": self._day.isoformat()}
                today.update(day_figures(self._day_start, self._now))
            return {"sample_s": self.sample_s, "today": today, "days": [dict(d) for d in self._days],
                    "series": [dict(r) for r in self._series]}

    def series_csv(self) -> str:
        """The series as CSV: ``t,time`` then ``SERIES_KEYS`` (W, %, Wh)."""
        return _csv(("t", "time") + SERIES_KEYS, self.report()["series"])

    def days_csv(self) -> str:
        """The closed days and today so far as CSV: ``date`` then the figures."""
        report = self.report()
        rows = report["days"] + ([report["today"]] if report["today"] else [])
        return _csv(("date",) + ENERGY_KEYS + ("balance", "self_sufficiency", "ssr_real"), rows)


def _csv(columns, rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else (round(row[c], 3) if isinstance(row[c], float) else row[c])
                         for c in columns])
    return out.getvalue()
