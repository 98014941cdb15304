"""Deals between units, executed as apis-main's GridMaster executes them.

A ``Deal`` is apis-common's DEAL object reduced to what the execution reads.
``GridMaster.loop_once`` is one main loop (MainLoop.java:185-199): fresh unit
data of every unit (DealExecution.java:161, :233-243), each deal's next step
by its state (DealExecution.java:513-552), then the global current balance
(MainLoop.java:191). The steps (app/gridmaster/deal_execution/):

* DealActivation: the first deal starts a voltage reference on its master
  side (the charge unit by POLICY.gridMaster.voltageReferenceSide) once the
  bus is low enough; a later deal starts the master side's converter, or
  moves the voltage reference to a large-capacity unit in four steps
  (voltageReferenceWillHandOver / WillTakeOver / DidHandOver / DidTakeOver,
  DealActivation.java:597-640) with drg = HWCONFIG.droopRatio (0.039);
* DealRampingUp, DealMasterAuthorization (the voltage walk);
* DealCompensation: the slave side's converter, current compensation on
  the voltage reference, the start;
* DealCumulation: energy from ``wb`` of the reference side (the charge
  unit's ``wb``, or the discharge unit's ``-wb``, AbstractDealExecution.java:140-142)
  times the time between its data (DealUtil.java:545-571), until it exceeds
  ``dealAmountWh``; then the slave side stops (AbstractStoppableDealExecution.java:68-91);
* DealDeactivation: the master side stops, or hands the voltage reference on.

``speed`` multiplies the time between the data as the simulated grid
accelerates its batteries (essx-grid --speed, docs/grid.md), so the energy
counted matches the batteries'. Differences from apis-main: a failure
raises (after a best-effort WAIT of the deal's units) where apis-main would
abort, reset or retry the deal in a later loop (DealAbortion.java:60-86,
DealMasterAuthorization.java:75-84).
"""

import copy
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import commands
from .errors import ApisMainError, CheckFailed, SafetyError
from .javafloat import f32, float_to_string as fs
from .node import Node, get_float, merge
from .policy import Policy
from .safety import DealCurrents, DealRole, Finding, GlobalSafety

__all__ = ["Deal", "GridMaster"]

log = logging.getLogger("apismain.deal")
_DE = "deal_execution/"


@dataclass
class Deal:
    """A deal: ``discharge_unit`` sends to ``charge_unit`` ``amount_wh`` Wh at
    ``grid_current_a`` A (dealAmountWh, dealGridCurrentA). Times are the
    reference unit's data times (s); None until the step happened."""

    discharge_unit: str
    charge_unit: str
    amount_wh: float
    grid_current_a: float
    deal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    is_master: bool = False
    activated: Optional[float] = None
    ramped_up: Optional[float] = None
    warmed_up: Optional[float] = None
    started: Optional[float] = None
    stopped: Optional[float] = None
    deactivated: Optional[float] = None
    cumulate_time: Optional[float] = None
    cumulated_wh: float = 0.0
    compensation_target_a: Optional[float] = None
    compensated_a: Dict[str, float] = field(default_factory=dict)

    # apis-common Deal's predicates
    @property
    def master_side_active(self) -> bool:
        """activated and not deactivated (Deal.masterSideUnitMustBeActive)."""
        return self.activated is not None and self.deactivated is None

    @property
    def both_sides_active(self) -> bool:
        """warmed up and not stopped (Deal.bothSideUnitsMustBeActive)."""
        return self.warmed_up is not None and self.stopped is None

    @property
    def transitional(self) -> bool:
        """Deal.isTransitionalState."""
        return not self.both_sides_active and self.master_side_active

    def involves(self, unit: Optional[str]) -> bool:
        """Deal.isInvolved."""
        return unit in (self.discharge_unit, self.charge_unit)

    def master_unit(self, side: str) -> str:
        """Deal.masterSideUnitId."""
        return self.discharge_unit if side == "dischargeUnit" else self.charge_unit

    def slave_unit(self, side: str) -> str:
        """Deal.slaveSideUnitId."""
        return self.charge_unit if side == "dischargeUnit" else self.discharge_unit


class GridMaster:
    """apis-main's GridMaster over ``nodes`` (unit id -> ``Node``).

    Args:
        nodes: the units; their ``deal_roles`` are set to follow the deals.
        policy: POLICY (main loop period, side choices, allowances ...).
        speed: simulated seconds per real second of the units' batteries (1 for real nodes).
        rng: the authorization's random source (VoltageReferenceAuthorization.java:105).
    Attributes:
        deals: deals not yet disposed; finished: disposed ones; unit_data:
            DealExecution.unitDataCache (unit id -> unit data); loops: main loops run;
        global_findings: every finding of the global safety checks so far.
    """

    def __init__(
        self,
        nodes: Mapping[str, Node],
        policy: Policy = Policy(),
        *,
        speed: float = 1.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.nodes, self.policy, self.speed, self.rng = dict(nodes), policy, float(speed), rng
        self.deals: List[Deal] = []
        self.finished: List[Deal] = []
        self.unit_data: Dict[str, Dict[str, Any]] = {}
        self.global_safety = GlobalSafety(policy)
        self.loops = 0
        self.global_findings: List[Finding] = []
        for unit, node in self.nodes.items():
            node.deal_roles = lambda u=unit: self.roles(u)

    def roles(self, unit: str) -> List[DealRole]:
        """The ``DealRole``s of ``unit`` in the current deals (for its local safety check)."""
        return [
            DealRole(d.discharge_unit == unit, d.master_side_active, d.both_sides_active)
            for d in self.deals
            if d.involves(unit)
        ]

    def add(self, deal: Deal) -> Deal:
        """Register a deal (apis-main: a deal agreed by the Mediator).

        Raises:
            ValueError: a unit of the deal is not one of ``nodes``, or both are the same.
        """
        for unit in (deal.discharge_unit, deal.charge_unit):
            if unit not in self.nodes:
                raise ValueError("deal unit %r is not one of %s" % (unit, sorted(self.nodes)))
        if deal.discharge_unit == deal.charge_unit:
            raise ValueError("a deal needs two units, got %r twice" % deal.charge_unit)
        self.deals.append(deal)
        return deal

    # --- the main loop -----------------------------------------------------------------

    def run(self, timeout_s: float, before_loop: Optional[Callable[[], None]] = None) -> None:
        """Main loops every POLICY.gridMaster.mainLoopPeriodMsec until every deal is
        disposed (``before_loop`` runs before each); on a failure, WAIT every unit
        of the remaining deals and raise.

        Raises:
            ApisMainError: a step of apis-main failed (the deal is not done).
            TimeoutError: deals still running after ``timeout_s`` s.
        """
        deadline = time.monotonic() + timeout_s
        try:
            while self.deals:
                if time.monotonic() > deadline:
                    raise TimeoutError("deals not done after %g s: %s" % (timeout_s, self.describe()))
                if before_loop is not None:
                    before_loop()
                self.loop_once()
                if self.deals:
                    time.sleep(self.policy.main_loop_period_s)  # the main loop's timer: a schedule
        except (ApisMainError, TimeoutError):
            self.stop_all()
            raise

    def describe(self) -> str:
        """One line per deal: units, state, energy."""
        return "; ".join(
            "%s->%s %s %.2f/%g Wh" % (d.discharge_unit, d.charge_unit, _state(d), d.cumulated_wh, d.amount_wh)
            for d in self.deals
        )

    def stop_all(self) -> None:
        """WAIT every unit of the deals (best effort: failures are logged)."""
        units = {u for d in self.deals for u in (d.discharge_unit, d.charge_unit)}
        for unit in sorted(units):
            try:
                commands.scram(self.nodes[unit])
            except ApisMainError as e:
                log.error("could not stop %s: %s", unit, e)

    def loop_once(self) -> None:
        """One main loop (MainLoop.java:185-199).

        Raises:
            ApisMainError: a step failed, or a local or global safety ERROR.
        """
        for unit in self.nodes:
            self._fetch(unit)
        for deal in list(self.deals):
            self._execute(deal)
        findings = self.global_safety.check(
            self.unit_data,
            [DealCurrents(d.discharge_unit, d.charge_unit, d.both_sides_active) for d in self.deals],
            self.policy.member_unit_ids,
        )
        errors = [f for f in findings if f.level == "ERROR"]
        self.global_findings += findings
        for f in findings:
            log.warning("global safety %s: expected %s; got %s (%s)", f.level, f.expected, f.got, f.source)
        self.loops += 1
        if errors:
            raise SafetyError(
                "global safety check",
                expected="; ".join(f.expected for f in errors),
                got="; ".join(f.got for f in errors),
                source=", ".join(f.source for f in errors),
            )

    def _execute(self, deal: Deal) -> None:
        """DealExecution.java:513-552 (AbstractDealExecution.execute first fetches both units, :380-393)."""
        self._fetch(deal.discharge_unit)
        self._fetch(deal.charge_unit)
        others = [d for d in self.deals if d is not deal]
        if deal.deactivated is not None:
            self._dispose(deal)
        elif deal.stopped is not None:
            self._deactivate(deal, others)
        elif deal.started is not None:
            self._cumulate(deal, others)
        elif deal.activated is not None:
            if not deal.is_master:
                self._compensate(deal, others)
            elif deal.ramped_up is not None:
                self._authorize(deal, others)
            else:
                self._ramp_up(deal, others)
        else:
            self._activate(deal, others)

    # --- data ----------------------------------------------------------------------------

    def _fetch(self, unit: str) -> None:
        """Fresh unit data (the unit polls its driver and checks local safety)."""
        self.unit_data[unit] = copy.deepcopy(self.nodes[unit].poll())

    def _refresh(self, unit: str) -> None:
        """updateUnitDcdcStatus_ (AbstractDealExecution.java:290-306): ``/dcdc/get/status``."""
        merge(
            self.unit_data.setdefault(unit, {}).setdefault("dcdc", {}),
            copy.deepcopy(self.nodes[unit].get_device_status()),
        )

    def _control(self, unit: str, command: str, params: Optional[Dict[str, Any]] = None) -> None:
        """controlDcdc_ (AbstractDealExecution.java:255-277) and mergeUnitDcdc_ (:317-338)."""
        log.info("%s <- %s %s", unit, command, params or "")
        dcdc = commands.execute(self.nodes[unit], command, params)
        merge(self.unit_data.setdefault(unit, {}).setdefault("dcdc", {}), copy.deepcopy(dcdc))

    def _mode(self, unit: str) -> Optional[str]:
        code = self.unit_data.get(unit, {}).get("dcdc", {}).get("status", {}).get("status")
        return {
            "0x0000": "WAIT",
            "0x0014": "VOLTAGE_REFERENCE",
            "0x0041": "CHARGE",
            "0x0002": "DISCHARGE",
        }.get(code)

    def _value(self, unit: str, *path: str) -> Optional[float]:
        return get_float(self.unit_data.get(unit), *path)

    def _time(self, deal: Deal) -> float:
        """referenceDateTimeString_ (AbstractDealExecution.java:137-139): the reference unit's data time."""
        return self.unit_data[self._reference_unit(deal)]["time"]

    def _reference_unit(self, deal: Deal) -> str:
        """referenceUnitId_ (AbstractDealExecution.java:131-133)."""
        return deal.discharge_unit if self.policy.reference_side == "dischargeUnit" else deal.charge_unit

    def voltage_reference_unit(self) -> Optional[str]:
        """The unit in VOLTAGE_REFERENCE mode (DealExecution.java:392-408)."""
        return next((u for u in self.unit_data if self._mode(u) == "VOLTAGE_REFERENCE"), None)

    def _master_side(self) -> str:
        """DealExecution.masterSide (DealExecution.java:420-443)."""
        vr = self.voltage_reference_unit()
        for d in self.deals:
            if d.is_master and vr is not None and d.involves(vr):
                return "dischargeUnit" if d.discharge_unit == vr else "chargeUnit"
        return self.policy.voltage_reference_side

    def _others_of(self, others: List[Deal], unit: str) -> List[Deal]:
        return [d for d in others if d.involves(unit)]

    def _sum_other_compensated(self, others: List[Deal], unit: str) -> float:
        """sumOfOtherDealCompensatedGridCurrentAs_ (AbstractDealExecution.java:191-202)."""
        total = f32(0.0)
        for d in self._others_of(others, unit):
            if d.both_sides_active and unit in d.compensated_a:
                total = f32(total + d.compensated_a[unit])
        return total

    def _fail(self, what: str, expected: str, got: Any, source: str) -> CheckFailed:
        return CheckFailed(what, expected=expected, got=got, source=_DE + source)

    # --- DealActivation ----------------------------------------------------------------

    def _activate(self, deal: Deal, others: List[Deal]) -> None:
        """DealActivation.doExecute (DealActivation.java:75-134)."""
        side = self._master_side()
        master = deal.master_unit(side)
        for o in others:  # checkDealDirection_ (:196-220)
            if o.master_side_active and (
                o.charge_unit == deal.discharge_unit or o.discharge_unit == deal.charge_unit
            ):
                raise self._fail(
                    "DealActivation",
                    "no deal in the other direction on its units",
                    o,
                    "DealActivation.java:196-220",
                )
        total = f32(sum(o.grid_current_a for o in others if o.master_side_active) + deal.grid_current_a)
        if f32(self.policy.sum_of_deal_grid_current_max_a) < total:  # GridBranchCurrentCapacity.java:247-272
            raise self._fail(
                "DealActivation",
                "sum of dealGridCurrentA <= %s A" % self.policy.sum_of_deal_grid_current_max_a,
                fs(total),
                "../../evaluation/safety/GridBranchCurrentCapacity.java:247-272",
            )
        first = not any(o.master_side_active for o in others)  # :242-251
        if first and not self._can_activate_first(master):
            return
        if not first and not any(o.started is not None and o.deactivated is None for o in others):  # :301-313
            log.info("can not start master side unit yet ( other deal should be ramping up ) ...")
            return
        vr = self.voltage_reference_unit()  # prepareVoltageReference_ (:425-456)
        if vr is not None and not deal.involves(vr):
            self._refresh(vr)
        will_move, side = self._flip_and_move(deal, others, first, vr, side)
        master = deal.master_unit(side)
        old_mode = self._mode(master)  # prepareMode_ (:566-588)
        new_mode = (
            "VOLTAGE_REFERENCE"
            if first or will_move
            else ("DISCHARGE" if side == "dischargeUnit" else "CHARGE")
            if old_mode == "WAIT"
            else old_mode
        )
        take_over_dvg = None
        old_vr_mode, old_vr_ig, current_master = None, f32(0.0), None
        if will_move:
            current_master = next((d for d in self.deals if d.is_master), None)
            for o in self._others_of(others, vr):  # :529-547
                if old_vr_mode is None or o.both_sides_active:
                    old_vr_mode = "DISCHARGE" if o.discharge_unit == vr else "CHARGE"
            ig = self._value(vr, "dcdc", "meter", "ig")
            if old_vr_mode is None or ig is None:
                raise self._fail(
                    "DealActivation",
                    "the old voltage reference's deal and ig",
                    (old_vr_mode, ig),
                    "DealActivation.java:548-556",
                )
            old_vr_ig = ig
            if self.policy.voltage_reference_take_over_dvg == "theoretical":  # :338-346
                take_over_dvg = self._value(vr, "dcdc", "vdis", "dvg")
        current = f32(deal.grid_current_a)
        if first or (will_move and old_mode == "WAIT"):  # :353-366
            deal.compensation_target_a = f32(-current) if side == "dischargeUnit" else current
        else:
            target_vr = master if will_move else vr  # :370-405
            ig = self._value(target_vr, "dcdc", "meter", "ig") if target_vr else None
            if ig is None:
                raise self._fail(
                    "DealActivation",
                    "dcdc.meter.ig of the voltage reference",
                    None,
                    "DealActivation.java:375-404",
                )
            if target_vr == master:
                ig = f32(ig - current) if side == "dischargeUnit" else f32(ig + current)
            deal.compensation_target_a = ig
        if will_move:  # activateDcdc_ (:597-640)
            self._control(vr, "voltageReferenceWillHandOver")
            self._control(master, "voltageReferenceWillTakeOver", {"gridVoltageV": take_over_dvg})
            self._control(
                vr, "voltageReferenceDidHandOver", {"mode": old_vr_mode, "gridCurrentA": f32(abs(old_vr_ig))}
            )
            self._control(master, "voltageReferenceDidTakeOver")
        elif old_mode == "WAIT":  # :654-665
            self._control(master, new_mode, {"gridCurrentA": current})
        elif old_mode != "VOLTAGE_REFERENCE":  # :666-681
            dig = f32(abs(self._sum_other_compensated(others, master)) + current)
            self._control(master, "current", {"gridCurrentA": dig})
        deal.activated = self._time(deal)  # activateDeal_ (:711-723)
        deal.is_master = first or will_move
        if will_move and current_master is not None:  # moveMasterDeal_ (:692-702)
            current_master.is_master = False
        if first:
            self._ramp_up(deal, others)
        else:
            self._compensate(deal, others)

    def _can_activate_first(self, master: str) -> bool:
        """canActivateFirstDeal_ (DealActivation.java:259-293): the bus at most
        operationGridVoltageVRange.min + 2 x gridVoltageSeparationV and outside
        min ± gridUvloMaskV.

        Raises:
            CheckFailed: vg missing, or above that maximum (apis-main: a GLOBAL ERROR).
        """
        vg = self._value(master, "dcdc", "meter", "vg")
        p = self.policy
        low, sep, mask = (
            f32(p.operation_grid_voltage_v_range[0]),
            f32(p.grid_voltage_separation_v),
            f32(p.grid_uvlo_mask_v),
        )
        maximum = f32(low + f32(sep * 2))
        if vg is None or vg > maximum:
            raise self._fail(
                "DealActivation (first deal)",
                "grid voltage <= %s V before a voltage reference starts" % fs(maximum),
                vg if vg is None else fs(vg),
                "DealActivation.java:260-285",
            )
        if f32(low - mask) <= vg <= f32(low + mask):
            log.info("can not start voltage reference yet ( grid voltage : %s )", fs(vg))
            return False
        return True

    def _flip_and_move(
        self, deal: Deal, others: List[Deal], first: bool, vr: Optional[str], side: str
    ) -> tuple:
        """prepareFlipAndMove_ (DealActivation.java:462-560):
        (will the voltage reference move, the master side)."""
        large = self.policy.large_capacity_unit_ids
        can_flip = not any(
            o.transitional for o in others
        )  # canFlipMasterSide_ (AbstractDealExecution.java:213-223)
        flipped = "chargeUnit" if side == "dischargeUnit" else "dischargeUnit"
        if not large:
            return False, side
        master, slave = deal.master_unit(side), deal.slave_unit(side)
        if first:
            if master not in large and slave in large and can_flip:
                return False, flipped
            return False, side
        if vr is None or vr in large:
            return False, side
        if master in large:
            return True, side
        if slave in large and can_flip:
            return True, flipped
        return False, side

    # --- DealRampingUp, DealMasterAuthorization ------------------------------------

    def _ramp_up(self, deal: Deal, others: List[Deal]) -> None:
        """DealRampingUp.doExecute (DealRampingUp.java:64-123)."""
        side = self._master_side()
        master, slave = deal.master_unit(side), deal.slave_unit(side)
        self._expect_modes(deal, master, "VOLTAGE_REFERENCE", slave, "WAIT", "DealRampingUp.java:65-66")
        vg, dvg = self._value(master, "dcdc", "meter", "vg"), self._value(master, "dcdc", "vdis", "dvg")
        if vg is None or dvg is None:
            raise self._fail(
                "DealRampingUp", "dcdc.meter.vg and dcdc.vdis.dvg", (vg, dvg), "DealRampingUp.java:70, 115"
            )
        if f32(dvg - f32(self.policy.grid_voltage_allowance_v)) <= vg:  # :73-74
            deal.ramped_up = self._time(deal)
            self._authorize(deal, others)
        elif (self._time(deal) - deal.activated) * self.speed >= self.policy.ramp_up_timeout_s:  # :89-106
            raise self._fail(
                "DealRampingUp",
                "vg >= dvg - gridVoltageAllowanceV within %g s" % self.policy.ramp_up_timeout_s,
                fs(vg),
                "DealRampingUp.java:95-105",
            )

    def _authorize(self, deal: Deal, others: List[Deal]) -> None:
        """DealMasterAuthorization.doExecute (DealMasterAuthorization.java:57-104)."""
        side = self._master_side()
        master, slave = deal.master_unit(side), deal.slave_unit(side)
        self._expect_modes(
            deal, master, "VOLTAGE_REFERENCE", slave, "WAIT", "DealMasterAuthorization.java:58-59"
        )
        log.info("%s <- voltageReferenceAuthorization", master)
        dcdc = commands.voltage_reference_authorization(self.nodes[master], self.rng)
        merge(self.unit_data[master].setdefault("dcdc", {}), copy.deepcopy(dcdc))
        self._compensate(deal, others)

    def _expect_modes(
        self, deal: Deal, master: str, master_mode: str, slave: str, slave_mode: str, source: str
    ) -> None:
        got = (self._mode(master), self._mode(slave))
        if got != (master_mode, slave_mode):
            raise self._fail(
                "deal %s" % deal.deal_id,
                "master side %s %s, slave side %s %s" % (master, master_mode, slave, slave_mode),
                got,
                source,
            )

    # --- DealCompensation ------------------------------------------------------------

    def _compensate(self, deal: Deal, others: List[Deal]) -> None:
        """DealCompensation.doExecute (DealCompensation.java:63-104)."""
        side = self._master_side()
        master, slave = deal.master_unit(side), deal.slave_unit(side)
        if self._mode(master) in (None, "WAIT"):
            raise self._fail(
                "DealCompensation",
                "the master side %s running" % master,
                self._mode(master),
                "DealCompensation.java:64, 101-103",
            )
        current = f32(deal.grid_current_a)
        if deal.warmed_up is None:  # warmUpDcdc_ (:113-160)
            if self._mode(slave) == "WAIT":
                self._control(
                    slave, "CHARGE" if side == "dischargeUnit" else "DISCHARGE", {"gridCurrentA": current}
                )
            else:
                dig = f32(abs(self._sum_other_compensated(others, slave)) + current)
                self._control(slave, "current", {"gridCurrentA": dig})
            deal.warmed_up = self._time(deal)  # warmUpDeal_ (:169-175)
        self._current_compensation(deal, side, master)
        for unit in (deal.discharge_unit, deal.charge_unit):  # saveCompensatedGridCurrentA_ (:184-220)
            self._refresh(unit)
        for unit in (deal.discharge_unit, deal.charge_unit):
            ig = self._value(unit, "dcdc", "meter", "ig")
            if ig is None:
                raise self._fail(
                    "DealCompensation", "dcdc.meter.ig of %s" % unit, None, "DealCompensation.java:197-215"
                )
            deal.compensated_a[unit] = f32(ig - self._sum_other_compensated(others, unit))
        deal.started = deal.cumulate_time = self._time(deal)  # DealUtil.start (DealUtil.java:515-521)
        deal.cumulated_wh = 0.0
        log.info("deal %s started: compensated ig %s", deal.deal_id, deal.compensated_a)

    def _current_compensation(self, deal: Deal, side: str, master: str) -> None:
        """doCompensate_ and CurrentCompensationExecutor_ (DealCompensation.java:229-439)."""
        reference = self.policy.reference_side
        if self._mode(master) == "VOLTAGE_REFERENCE":
            if side != reference:
                return  # :264-275
            vr = master
        else:
            master_deal = next((d for d in self.deals if d.is_master), None)
            if master_deal is None:
                raise self._fail("DealCompensation", "a master deal", None, "DealCompensation.java:279-304")
            vr = master_deal.master_unit(side)
        minus = reference != "dischargeUnit"
        adjuster = deal.discharge_unit if minus else deal.charge_unit
        target, drift = f32(deal.compensation_target_a), f32(self.policy.drift_allowance_a)
        trials = self.policy.current_compensation_limit_of_trials
        while True:
            self._refresh(vr)
            ig = self._value(vr, "dcdc", "meter", "ig")
            if ig is None:
                raise self._fail(
                    "DealCompensation",
                    "dcdc.meter.ig of the voltage reference",
                    None,
                    "DealCompensation.java:379-434",
                )
            if f32(abs(f32(ig - target))) <= drift:  # :384-390
                return
            if trials <= 0:  # :395, 429
                raise self._fail(
                    "current compensation",
                    "|ig of %s - %s| <= %s A" % (vr, fs(target), fs(drift)),
                    fs(ig),
                    "DealCompensation.java:384-430",
                )
            trials -= 1
            dig = self._value(adjuster, "dcdc", "param", "dig")
            if dig is None:
                raise self._fail(
                    "DealCompensation",
                    "dcdc.param.dig of %s" % adjuster,
                    None,
                    "DealCompensation.java:398-425",
                )
            dig = f32(dig - f32(ig - target)) if minus else f32(dig + f32(ig - target))  # :403-407
            self._control(adjuster, "current", {"gridCurrentA": dig})

    # --- DealCumulation ----------------------------------------------------------------

    def _cumulate(self, deal: Deal, others: List[Deal]) -> None:
        """DealCumulation.doExecute (DealCumulation.java:62-133)."""
        side = self._master_side()
        master, slave = deal.master_unit(side), deal.slave_unit(side)
        if "WAIT" in (self._mode(master), self._mode(slave)) or None in (
            self._mode(master),
            self._mode(slave),
        ):
            raise self._fail(
                "DealCumulation",
                "both units running",
                (self._mode(master), self._mode(slave)),
                "DealCumulation.java:63-64, 127-131",
            )
        ref = self._reference_unit(deal)
        wb = self._value(ref, "dcdc", "meter", "wb")  # referenceUnitWb_ (AbstractDealExecution.java:140-142)
        if wb is None:
            raise self._fail(
                "DealCumulation",
                "dcdc.meter.wb of the reference unit %s" % ref,
                None,
                "DealCumulation.java:145-173",
            )
        if ref == deal.discharge_unit:
            wb = f32(-wb)
        active_others = [
            d
            for d in self._others_of(others, ref)  # existOtherActiveDealsOnReferenceUnit_ (:183-196)
            if (d.master_side_active if d.master_unit(side) == ref else d.both_sides_active)
        ]
        if active_others:  # :148-164
            mine, rest = deal.compensated_a.get(ref), self._sum_other_compensated(others, ref)
            if mine is None or f32(rest + mine) == 0:
                raise self._fail(
                    "DealCumulation",
                    "compensated ig of the reference unit",
                    (mine, rest),
                    "DealCumulation.java:152-164",
                )
            wb = f32(f32(wb * mine) / f32(rest + mine))
        now = self._time(deal)
        milliseconds = int(
            (now - deal.cumulate_time) * self.speed * 1000
        )  # Duration.toMillis (DealUtil.java:553-554)
        deal.cumulated_wh = f32(
            f32(f32(wb * milliseconds) / 3600000) + f32(deal.cumulated_wh)
        )  # DealUtil.java:555
        deal.cumulate_time = now
        log.info("deal %s cumulated : %s / %g", deal.deal_id, fs(deal.cumulated_wh), deal.amount_wh)
        if deal.amount_wh < deal.cumulated_wh:  # :71
            self._stop_slave(deal, others, side)
            deal.stopped = self._time(deal)  # stopDeal_ (AbstractStoppableDealExecution.java:119-121)
            self._deactivate(deal, others)
            return
        p = self.policy
        d_rsoc = _rsoc(self.unit_data.get(deal.discharge_unit))
        c_rsoc = _rsoc(self.unit_data.get(deal.charge_unit))
        if (
            d_rsoc is not None
            and d_rsoc < p.discharge_unit_lower_limit_rsoc
            or c_rsoc is not None
            and p.charge_unit_upper_limit_rsoc < c_rsoc
        ):  # :96-111
            raise self._fail(
                "DealCumulation",
                "discharge unit RSOC >= %g %%, charge unit RSOC <= %g %%"
                % (p.discharge_unit_lower_limit_rsoc, p.charge_unit_upper_limit_rsoc),
                (d_rsoc, c_rsoc),
                "DealCumulation.java:96-111",
            )

    def _stop_slave(self, deal: Deal, others: List[Deal], side: str) -> None:
        """stopDcdc_ (AbstractStoppableDealExecution.java:68-108)."""
        slave = deal.slave_unit(side)
        if not any(d.both_sides_active for d in self._others_of(others, slave)):
            self._control(slave, "WAIT")
        else:
            self._control(
                slave, "current", {"gridCurrentA": f32(abs(self._sum_other_compensated(others, slave)))}
            )

    # --- DealDeactivation ----------------------------------------------------------------

    def _deactivate(self, deal: Deal, others: List[Deal]) -> None:
        """DealDeactivation.doExecute (DealDeactivation.java:69-113), then DealDisposition."""
        side = self._master_side()
        master = deal.master_unit(side)
        if self._mode(master) != "WAIT":
            new_master, new_vr, flip, take_over_dvg = None, None, False, None
            if deal.is_master:  # prepareDeactivate_ (:122-149)
                new_master, new_vr, flip = self._new_master_deal(others, side)
                if new_master is not None and self.policy.voltage_reference_take_over_dvg == "theoretical":
                    take_over_dvg = self._value(master, "dcdc", "vdis", "dvg")
            can_stop = not any(d.master_side_active for d in self._others_of(others, master))  # :422-431
            if deal.is_master:  # deactivateDcdc_ (:276-414)
                if new_master is None:
                    self._control(master, "WAIT")
                elif new_vr == master:
                    self._refresh(master)
                elif can_stop:  # :299-335
                    self._control(master, "voltageReferenceWillHandOver")
                    self._control(new_vr, "voltageReferenceWillTakeOver", {"gridVoltageV": take_over_dvg})
                    self._control(master, "voltageReferenceDidHandOver")
                    self._control(new_vr, "voltageReferenceDidTakeOver")
                else:
                    raise self._fail(
                        "DealDeactivation",
                        "the old voltage reference free to stop",
                        deal,
                        "DealDeactivation.java:336-346",
                    )
            elif self._mode(master) == "VOLTAGE_REFERENCE":
                if can_stop:
                    raise self._fail(
                        "DealDeactivation",
                        "a non-master deal's voltage reference serving other deals",
                        deal,
                        "DealDeactivation.java:361-373",
                    )
                self._refresh(master)
            elif can_stop:
                self._control(master, "WAIT")
            else:
                self._control(
                    master, "current", {"gridCurrentA": f32(abs(self._sum_other_compensated(others, master)))}
                )
            if new_master is not None:  # moveMasterDeal_ (:440-452)
                new_master.is_master = True
        deal.deactivated = self._time(deal)  # deactivateDeal_ (:461-470)
        self._dispose(deal)

    def _new_master_deal(self, others: List[Deal], side: str) -> tuple:
        """newMasterDeal_ (DealDeactivation.java:157-274), for the default strategy
        (newestDeal): (deal, its new voltage reference unit, flip)."""
        active = [d for d in others if d.master_side_active]
        if not active:
            return None, None, False
        running_vr = [d for d in active if self._mode(d.master_unit(side)) == "VOLTAGE_REFERENCE"]
        newest = lambda ds: max(ds, key=lambda d: d.activated)  # noqa: E731
        if running_vr:
            d = newest(running_vr)
            return d, d.master_unit(side), False
        large = self.policy.large_capacity_unit_ids
        with_large = [d for d in active if d.master_unit(side) in large or d.slave_unit(side) in large]
        if with_large:
            d = newest(with_large)
            if d.master_unit(side) in large:
                return d, d.master_unit(side), False
            return d, d.slave_unit(side), True
        d = newest(active)
        return d, d.master_unit(side), False

    def _dispose(self, deal: Deal) -> None:
        """DealDisposition: the deal leaves the list."""
        if deal in self.deals:
            self.deals.remove(deal)
            self.finished.append(deal)


def _rsoc(unit_data: Optional[Dict[str, Any]]) -> Optional[float]:
    return get_float(unit_data, "battery", "rsoc")


def _state(deal: Deal) -> str:
    for name in ("deactivated", "stopped", "started", "warmed_up", "ramped_up", "activated"):
        if getattr(deal, name) is not None:
            return name
    return "new"
