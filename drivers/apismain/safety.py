"""apis-main's safety checks on the driver's data.

``LocalSafety.check`` is LocalSafetyEvaluation.check (LocalSafetyEvaluation.java:69-110),
run on every poll of a unit (DataAcquisition.java:475); ``GlobalSafety.check``
is GlobalSafetyEvaluation's current balance (GlobalSafetyEvaluation.java:147-229),
run by the GridMaster each main loop (MainLoop.java:191).

A check yields a ``Finding`` where apis-main calls ``ErrorUtil.report``: ERROR
findings stop the unit or the deal in apis-main (ErrorCollection.java:160),
WARN ones are only logged. Checks that apis-main counts (``errors.add`` /
``errors.remove``) are a WARN the first time and an ERROR when they fail
again on the next check (e.g. LocalSafetyEvaluation.java:335-346).
"""

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .javafloat import f32, float_to_string as fs
from .policy import HwConfig, Policy

__all__ = ["DealRole", "Finding", "LocalSafety", "GlobalSafety", "DealCurrents"]

_LSE = "LocalSafetyEvaluation.java:"
_GSE = "GlobalSafetyEvaluation.java:"

#: DDCon.Mode of each status code (DDCon.java:210-216) and the operationMode it requires (:351-359).
_MODES = {
    "0x0000": ("WAIT", "Waiting"),
    "0x0014": ("VOLTAGE_REFERENCE", "Grid Autonomy"),
    "0x0041": ("CHARGE", "Heteronomy CV"),
    "0x0002": ("DISCHARGE", "Heteronomy CV"),
}


@dataclass(frozen=True)
class DealRole:
    """How a unit takes part in one deal, as LocalSafetyEvaluation reads it.

    discharge: the unit is the deal's discharge unit (``Deal.isDischargeUnit``).
    master_side_active: ``Deal.masterSideUnitMustBeActive`` (activated, not deactivated).
    both_sides_active: ``Deal.bothSideUnitsMustBeActive`` (warmed up, not stopped).
    """

    discharge: bool
    master_side_active: bool = True
    both_sides_active: bool = True


@dataclass(frozen=True)
class Finding:
    """One reported problem: key (apis-main's error key or the check), level
    ("WARN" or "ERROR"), what was expected, what was found, apis-main's file:line."""

    key: str
    level: str
    expected: str
    got: str
    source: str


class _Counted:
    """``errors.add`` / ``errors.remove``: WARN the first time, ERROR when repeated."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = {}

    def fail(self, key: str, expected: str, got: str, source: str) -> Finding:
        self.counts[key] = self.counts.get(key, 0) + 1
        return Finding(key, "ERROR" if self.counts[key] > 1 else "WARN", expected, got, source)

    def ok(self, *keys: str) -> None:
        for key in keys:
            self.counts.pop(key, None)


def _get(data: Optional[Dict[str, Any]], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _float(data: Optional[Dict[str, Any]], *path: str) -> Optional[float]:
    value = _get(data, *path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f32(value)


class LocalSafety:
    """LocalSafetyEvaluation for one unit (its error counters included)."""

    def __init__(self, policy: Policy, hw: HwConfig) -> None:
        self.policy, self.hw = policy, hw
        self._counted = _Counted()

    def check(
        self,
        unit_data: Dict[str, Any],
        deals: Sequence[DealRole],
        *,
        operation_mode: str = "autonomous",
        ignore_dynamic: bool = False,
    ) -> List[Finding]:
        """The findings on ``unit_data`` (``{"dcdc": ..., "battery": ...}``) for a unit
        in ``deals`` with apis-main's ``operation_mode`` ("autonomous",
        "heteronomous", "stop", "manual"); ``ignore_dynamic`` is
        ``DeviceControlling.ignoreDynamicSafetyCheck()``."""
        found: List[Finding] = []
        alarm = _get(unit_data, "dcdc", "status", "alarmState")
        if alarm == "Heavy alarm":
            found.append(
                Finding(
                    "alarmState",
                    "ERROR",
                    "dcdc.status.alarmState not 'Heavy alarm'",
                    repr(alarm),
                    _LSE + "112-119",
                )
            )
        battery = unit_data.get("battery") or {}
        if battery.get("battery_operation_status") is not None and battery["battery_operation_status"] != 3:
            found.append(
                Finding(
                    "battery_operation_status",
                    "ERROR",
                    "battery.battery_operation_status 3",
                    repr(battery["battery_operation_status"]),
                    _LSE + "121-130",
                )
            )
        found += self._mode_and_deal(unit_data, deals, operation_mode)
        for name in ("tmp", "vg", "vb", "ig", "ib"):
            value = _float(unit_data, "dcdc", "meter", name)
            low, high = self.hw.safety_ranges[name]
            if value is None:
                found.append(
                    Finding(
                        "meter." + name,
                        "ERROR",
                        "dcdc.meter.%s in unit data" % name,
                        "none",
                        _LSE + "252-261",
                    )
                )
            elif value < f32(low) or f32(high) < value:
                found.append(
                    Finding(
                        "meter." + name,
                        "ERROR",
                        "%s <= dcdc.meter.%s <= %s" % (fs(low), name, fs(high)),
                        fs(value),
                        _LSE + "273-276 (range: hwConfig safety.range)",
                    )
                )
        if operation_mode != "manual" and not ignore_dynamic:
            found += self._dynamic(unit_data)
        return found

    def _mode_and_deal(
        self, unit_data: Dict[str, Any], deals: Sequence[DealRole], operation_mode: str
    ) -> List[Finding]:
        """checkModeAndDeal_ (LocalSafetyEvaluation.java:132-250)."""
        code = _get(unit_data, "dcdc", "status", "status")
        if code not in _MODES:
            return [
                Finding(
                    "status",
                    "ERROR",
                    "dcdc.status.status one of %s" % sorted(_MODES),
                    repr(code),
                    _LSE + "137-139",
                )
            ]
        mode, operation = _MODES[code]
        found = []
        got = _get(unit_data, "dcdc", "status", "operationMode")
        if got != operation:
            found.append(
                Finding(
                    "operationMode",
                    "ERROR",
                    "dcdc.status.operationMode %r for status %s" % (operation, code),
                    repr(got),
                    _LSE + "141-145",
                )
            )
        c = self._counted
        if not deals:
            if operation_mode != "manual":
                if mode != "WAIT":
                    found.append(
                        c.fail(
                            "ERROR_DDCON_ACTIVE_BUT_NO_DEAL", "mode WAIT (no deal)", code, _LSE + "155-163"
                        )
                    )
                else:
                    c.ok("ERROR_DDCON_ACTIVE_BUT_NO_DEAL")
            c.ok("ERROR_INVALID_DEALS_DIRECTION", "ERROR_INVALID_DDCON_MODE")
            return found
        if operation_mode in ("stop", "manual"):
            return found + [
                Finding(
                    "operationMode",
                    "ERROR",
                    "no deal in operation mode %r" % operation_mode,
                    "%d deals" % len(deals),
                    _LSE + "171-173",
                )
            ]
        active = [d for d in deals if d.master_side_active]
        if len({d.discharge for d in active}) > 1:
            found.append(
                c.fail(
                    "ERROR_INVALID_DEALS_DIRECTION",
                    "the unit on one side of all its deals",
                    "both sides",
                    _LSE + "175-183, 213-228",
                )
            )
        else:
            c.ok("ERROR_INVALID_DEALS_DIRECTION")
        if not _correct_mode(active, mode):
            found.append(
                c.fail("ERROR_INVALID_DDCON_MODE", "a mode its deals allow", code, _LSE + "187-195, 229-250")
            )
        else:
            c.ok("ERROR_INVALID_DDCON_MODE")
        c.ok("ERROR_DDCON_ACTIVE_BUT_NO_DEAL")
        return found

    def _dynamic(self, unit_data: Dict[str, Any]) -> List[Finding]:
        """checkDynamic_ (LocalSafetyEvaluation.java:280-428)."""
        code = _get(unit_data, "dcdc", "status", "status")
        vg, ig = _float(unit_data, "dcdc", "meter", "vg"), _float(unit_data, "dcdc", "meter", "ig")
        if code not in _MODES or vg is None or ig is None:
            return []  # returns false without a report (:288-297)
        c, p = self._counted, self.policy
        low, high = (f32(v) for v in p.operation_grid_voltage_v_range)
        allow_v, allow_a = f32(p.grid_voltage_allowance_v), f32(self.hw.grid_current_allowance_a)
        dig, dvg = _float(unit_data, "dcdc", "param", "dig"), _float(unit_data, "dcdc", "vdis", "dvg")
        if dig is None or dvg is None:
            return [
                c.fail("ERROR_NO_DDCON_DIG_DVG", "dcdc.param.dig and dcdc.vdis.dvg", "none", _LSE + "314-324")
            ]
        c.ok("ERROR_NO_DDCON_DIG_DVG")
        mode = _MODES[code][0]
        keys = {
            "WAIT": ["ERROR_WAIT_INVALID_METER_IG"],
            "VOLTAGE_REFERENCE": ["ERROR_VR_INVALID_METER_VG"],
            "CHARGE": ["ERROR_CHARGE_INVALID_METER_IG", "ERROR_CHARGE_INVALID_METER_VG"],
            "DISCHARGE": ["ERROR_DISCHARGE_INVALID_METER_IG", "ERROR_DISCHARGE_INVALID_METER_VG"],
        }
        c.ok(*[k for m, ks in keys.items() if m != mode for k in ks])
        if mode == "WAIT":
            checks = [("ERROR_WAIT_INVALID_METER_IG", "ig", ig, f32(-allow_a), allow_a, "335-346")]
        elif mode == "VOLTAGE_REFERENCE":
            checks = [
                ("ERROR_VR_INVALID_METER_VG", "vg", vg, f32(dvg - allow_v), f32(dvg + allow_v), "354-365")
            ]
        elif mode == "CHARGE":
            checks = [
                (
                    "ERROR_CHARGE_INVALID_METER_IG",
                    "ig",
                    ig,
                    f32(dig - allow_a),
                    f32(dig + allow_a),
                    "372-383",
                ),
                ("ERROR_CHARGE_INVALID_METER_VG", "vg", vg, low, high, "384-395"),
            ]
        else:
            checks = [
                (
                    "ERROR_DISCHARGE_INVALID_METER_IG",
                    "ig",
                    ig,
                    f32(-dig - allow_a),
                    f32(-dig + allow_a),
                    "402-413",
                ),
                ("ERROR_DISCHARGE_INVALID_METER_VG", "vg", vg, low, high, "414-425"),
            ]
        for key, name, value, lo, hi, lines in checks:
            if value < lo or hi < value:
                return [
                    c.fail(
                        key,
                        "dcdc mode %s: %s <= dcdc.meter.%s <= %s" % (mode, fs(lo), name, fs(hi)),
                        fs(value),
                        _LSE + lines,
                    )
                ]
            c.ok(key)
        return []


def _correct_mode(active: Iterable[DealRole], mode: str) -> bool:
    """isCorrectDDConMode_ (LocalSafetyEvaluation.java:229-250)."""
    any_active = False
    for role in active:
        any_active = True
        cv = "DISCHARGE" if role.discharge else "CHARGE"
        allowed = {"VOLTAGE_REFERENCE", cv} if role.both_sides_active else {"VOLTAGE_REFERENCE", cv, "WAIT"}
        if mode not in allowed:
            return False
    return mode == "WAIT" if not any_active else True


@dataclass(frozen=True)
class DealCurrents:
    """A deal as the global check reads it: its two units and whether both
    must be active (``Deal.bothSideUnitsMustBeActive``)."""

    discharge_unit: str
    charge_unit: str
    both_sides_active: bool


class GlobalSafety:
    """GlobalSafetyEvaluation's member list and current balance (its counter included).
    The grid-topology branch check (GridBranchCurrentCapacity) applies only
    with POLICY.safety.gridTopologyBasedEvaluation.enabled, which this client
    does not model."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._counted = _Counted()

    def check(
        self,
        unit_data: Dict[str, Dict[str, Any]],
        deals: Iterable[DealCurrents],
        member_unit_ids: Optional[Iterable[str]] = None,
    ) -> List[Finding]:
        """Findings on all units' data (unit id -> unit data)."""
        found = []
        if member_unit_ids is not None and sorted(member_unit_ids) != sorted(unit_data):
            found.append(
                Finding(
                    "memberUnitIds",
                    "WARN",
                    "unit data of POLICY.memberUnitIds %s" % sorted(member_unit_ids),
                    str(sorted(unit_data)),
                    _GSE + "109-133",
                )
            )
        total, units = f32(0.0), []
        for deal in deals:
            if not deal.both_sides_active:
                continue
            for unit in (deal.discharge_unit, deal.charge_unit):
                if unit in units:
                    continue
                units.append(unit)
                ig = _float(unit_data.get(unit), "dcdc", "meter", "ig")
                if ig is None:
                    found.append(
                        Finding(
                            "ig", "ERROR", "dcdc.meter.ig of dealing unit %s" % unit, "none", _GSE + "170-187"
                        )
                    )
                else:
                    total = f32(total + ig)
        allowance = f32(f32(self.policy.sum_of_dealing_unit_grid_current_allowance_per_unit_a) * len(units))
        if allowance < abs(total):
            found.append(
                self._counted.fail(
                    "ERROR_SUM_OF_METER_IG_EXCEEDS_ALLOWANCE",
                    "|sum of dcdc.meter.ig of dealing units %s| <= %s A" % (units, fs(allowance)),
                    fs(total),
                    _GSE + "194-211",
                )
            )
        else:
            self._counted.ok("ERROR_SUM_OF_METER_IG_EXCEEDS_ALLOWANCE")
        return found
