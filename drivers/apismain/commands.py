"""apis-main's device-controlling commands (interface v2), one function each.

Each is the ``doExecute`` of apis-main's class of the same name under
app/controller/impl/dcdc/device_controlling/, run the way
AbstractDcdcDeviceControllingCommand.execute runs it (:58-85): some start
skipping the dynamic safety check, some stop skipping it once they succeed.
Device control holds the unit's exclusive lock (DeviceControlling.java:363);
``scram`` does not (DeviceControlling.java:303-309). Values are Java
``float`` arithmetic (``javafloat.f32``) on what the cache holds, so the
query strings are apis-main's to the digit. Each returns the unit's
``dcdc`` data after it (AbstractDcdcDeviceControllingCommand.java:118-120).

Errors: ``CheckFailed`` (a check of the command, a missing POLICY value)
and ``CommunicationError`` (3 attempts failed) propagate, except where
apis-main goes on "regardless of success or failure" (WAIT.java:88-90).
"""

import contextlib
import logging
import random
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from .errors import ApisMainError, CheckFailed
from .javafloat import f32, float_to_string as fs
from .node import Node

__all__ = [
    "wait",
    "scram",
    "voltage_reference",
    "charge",
    "discharge",
    "grid_current_stepping",
    "grid_voltage_stepping",
    "checkpoint",
    "voltage_reference_authorization",
    "voltage_reference_will_hand_over",
    "voltage_reference_will_take_over",
    "voltage_reference_did_hand_over",
    "voltage_reference_did_take_over",
    "execute",
]

log = logging.getLogger("apismain.commands")
Dcdc = Dict[str, Any]
_DC = "device_controlling/"


@contextlib.contextmanager
def _command(node: Node, start_ignore: bool, stop_ignore: bool, lock: bool = True) -> Iterator[None]:
    """AbstractDcdcDeviceControllingCommand.execute (:58-85), under the unit's lock."""
    with node.lock if lock else contextlib.nullcontext():
        if start_ignore:
            node.ignore_dynamic_safety_check = True
        yield
        if stop_ignore:  # only when the command succeeded (:76-82)
            node.ignore_dynamic_safety_check = False


def _need(what: str, source: str, **values: Optional[float]) -> None:
    """A POLICY/HWCONFIG value apis-main requires ("data deficiency")."""
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise CheckFailed(
            what,
            expected="POLICY/HWCONFIG %s" % ", ".join(values),
            got="missing %s" % ", ".join(missing),
            source=source,
        )


def _regardless(what: str, step: Callable[[], Any]) -> None:
    """Run ``step``; a failure is logged and the caller goes on (WAIT.java:88, :98)."""
    try:
        step()
    except ApisMainError as e:
        log.warning("%s failed, going on regardless: %s", what, e)


def _text(value: Optional[float]) -> str:
    return "none" if value is None else fs(value)


def _wait(node: Node) -> Dcdc:
    """WAIT.java:51-104."""
    p = node.policy
    if p.operation_grid_voltage_v is None:  # reported, then 0 (WAIT.java:55-62)
        log.warning("data deficiency; POLICY.operationGridVoltageV : null (WAIT.java:58): dvg=0.0")
    dvg = f32(p.operation_grid_voltage_v or 0.0)
    minimum, separation = f32(p.operation_grid_voltage_v_range[0]), f32(p.grid_voltage_separation_v)
    mode = node.mode or "WAIT"  # unknown: WAIT (WAIT.java:68-74)
    if mode == "VOLTAGE_REFERENCE":  # WAIT.java:81-92
        _regardless("GridVoltageStepping", lambda: grid_voltage_stepping(node, f32(minimum + separation)))
    elif mode in ("CHARGE", "DISCHARGE"):  # WAIT.java:93-102
        _regardless("GridCurrentStepping", lambda: grid_current_stepping(node, 0.0))
    return node.set_mode("WAIT", dvg, 0.0)  # setDcdcMode(WAIT, operationGridVoltageV_, 0F): drg 0


def wait(node: Node) -> Dcdc:
    """WAIT: from a voltage reference, first step dvg down to
    operationGridVoltageVRange.min + gridVoltageSeparationV (310 V); from
    CHARGE/DISCHARGE, first step dig down to 0 A; then
    ``mode=0x0000&dvg=<operationGridVoltageV>&dig=0.0&drg=0`` (dvg 0.0 without
    that POLICY value) and operationMode "Waiting" (WAIT.java:51-104).
    Ends skipping the dynamic safety check (WAIT.java:49).

    Raises:
        CheckFailed: operationMode not "Waiting".
        CommunicationError: the final set failed 3 attempts.
    """
    with _command(node, start_ignore=False, stop_ignore=True):
        return _wait(node)


def scram(node: Node, exclude_voltage_reference: bool = False) -> Dcdc:
    """Scram: WAIT (Scram.java:16) without the exclusive lock
    (DeviceControlling.java:303-309); a voltage reference is left alone when
    ``exclude_voltage_reference`` (DcdcDeviceControlling.java:118-126).

    Raises:
        CheckFailed, CommunicationError: as ``wait``.
    """
    if node.mode == "VOLTAGE_REFERENCE" and exclude_voltage_reference:
        return node.dcdc
    with _command(node, start_ignore=False, stop_ignore=True, lock=False):
        return _wait(node)


def voltage_reference(node: Node) -> Dcdc:
    """VOLTAGE_REFERENCE: ``mode=0x0014&dvg=<operationGridVoltageV>&dig=<gridCurrentCapacityA>&drg=0``,
    operationMode "Grid Autonomy" (VOLTAGE_REFERENCE.java:50-61). Starts skipping
    the dynamic safety check (:44).

    Raises:
        CheckFailed: no operationGridVoltageV or gridCurrentCapacityA; wrong operationMode.
        CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=True, stop_ignore=False):
        v, capacity = node.policy.operation_grid_voltage_v, node.hw.grid_current_capacity_a
        _need(
            "VOLTAGE_REFERENCE",
            _DC + "VOLTAGE_REFERENCE.java:53-57",
            operationGridVoltageV=v,
            gridCurrentCapacityA=capacity,
        )
        return node.set_mode("VOLTAGE_REFERENCE", f32(v), f32(capacity))


def _cv(node: Node, mode: str, grid_current_a: float, dvg: Optional[float], source: str) -> Dcdc:
    """CHARGE.java / DISCHARGE.java :73-112 (they differ in mode and dvg)."""
    with _command(node, start_ignore=False, stop_ignore=True):
        step = node.policy.grid_current_step_a
        _need(mode, source, dvg=dvg, gridCurrentStepA=step)
        current, step = f32(grid_current_a), f32(step)
        if current < step:  # :87-96
            node.set_mode(mode, f32(dvg), current)
            return checkpoint(node, None, current)
        node.set_mode(mode, f32(dvg), step)  # :97-110
        return grid_current_stepping(node, current)


def charge(node: Node, grid_current_a: float) -> Dcdc:
    """CHARGE with dig ``grid_current_a`` A: below gridCurrentStepA (1 A) at once
    and a checkpoint; else first ``mode=0x0041&dvg=<operationGridVoltageV>&dig=1.0&drg=0``,
    then current stepping (CHARGE.java:73-112). Ends skipping the dynamic check (:71).

    Raises:
        CheckFailed: missing POLICY value, wrong operationMode, dig out of range, checkpoint.
        CommunicationError: 3 attempts failed.
    """
    return _cv(
        node, "CHARGE", grid_current_a, node.policy.operation_grid_voltage_v, _DC + "CHARGE.java:73-112"
    )


def discharge(node: Node, grid_current_a: float) -> Dcdc:
    """DISCHARGE as ``charge`` with ``mode=0x0002`` and dvg = operationGridVoltageVRange.max
    (380.0) (DISCHARGE.java:73-112).

    Raises:
        CheckFailed, CommunicationError: as ``charge``.
    """
    return _cv(
        node,
        "DISCHARGE",
        grid_current_a,
        node.policy.operation_grid_voltage_v_range[1],
        _DC + "DISCHARGE.java:73-112",
    )


def grid_current_stepping(node: Node, grid_current_a: float) -> Dcdc:
    """GridCurrentStepping: from the cached ``dcdc.param.dig``, ``/dcdc/set?dig=``
    in steps of gridCurrentStepA (old ± step, float) while the difference is
    larger than a step, then the target and a checkpoint on ig
    (GridCurrentStepping.java:70-118). A in, A out.

    Raises:
        CheckFailed: no cached dig, no gridCurrentStepA, a checkpoint.
        CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=False, stop_ignore=False):
        _need(
            "GridCurrentStepping",
            _DC + "GridCurrentStepping.java:72-77",
            gridCurrentStepA=node.policy.grid_current_step_a,
        )
        target, step = f32(grid_current_a), f32(node.policy.grid_current_step_a)
        _step_to(node, "GridCurrentStepping", ("param", "dig"), target, step, node.set_current,
                 _DC + "GridCurrentStepping.java:84, 116")
        return checkpoint(node, None, target)


def grid_voltage_stepping(node: Node, grid_voltage_v: float) -> Dcdc:
    """GridVoltageStepping: as the current stepping on the cached ``dcdc.vdis.dvg``
    with ``/dcdc/set?dvg=&drg=0`` and gridVoltageStepV (350 V when absent: one
    step), then a checkpoint on vg (GridVoltageStepping.java:72-120). V.

    Raises:
        CheckFailed: no cached dvg, a checkpoint.
        CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=False, stop_ignore=False):
        target = f32(grid_voltage_v)
        step = f32(node.policy.grid_voltage_step_v if node.policy.grid_voltage_step_v is not None else 350.0)
        _step_to(node, "GridVoltageStepping", ("vdis", "dvg"), target, step, node.set_voltage,
                 _DC + "GridVoltageStepping.java:86, 118")
        return checkpoint(node, target, None)


def _cached(node: Node, command: str, key: Tuple[str, str], source: str) -> float:
    """The unit data's ``dcdc.<block>.<name>`` (*key*; V or A) a command starts from.
    CheckFailed naming *command* and apis-main's *source* when there is none."""
    value = node.value(*key)
    if value is None:
        raise CheckFailed(command, expected="dcdc.%s.%s in unit data" % key, got=node.dcdc, source=source)
    return value


def _step_to(node: Node, command: str, key: Tuple[str, str], target: float, step: float,
             send: Callable[[float], Any], source: str) -> None:
    """The stepping loop both steppings share: from the cached ``dcdc.<key>`` value,
    ``send(old ± step)`` (float arithmetic) while the difference exceeds a step, then
    ``send(target)``. CheckFailed: no cached value (V or A, as *key*)."""
    while True:
        old = _cached(node, command, key, source)
        if step < abs(f32(target - old)):
            send(f32(old + step) if old < target else f32(old - step))
            continue
        send(target)
        return


def checkpoint(
    node: Node, grid_voltage_v: Optional[float] = None, grid_current_a: Optional[float] = None
) -> Dcdc:
    """Checkpoint: up to checkpoint.retryLimit (3) times, retryWaitMsec (0.1 s)
    after the last, ``/dcdc/get/status`` and vg within grid_voltage_v ±
    gridVoltageAllowanceV (4 V), ig within ±grid_current_a (the sign of ig) ±
    gridCurrentAllowanceA (0.125 A) (Checkpoint.java:86-179). V, A; None: not checked.

    Raises:
        CheckFailed: still out after the last check ("checkpoint failed", :167).
        CommunicationError: the status request failed 3 attempts.
    """
    with _command(node, start_ignore=False, stop_ignore=False):
        p = node.policy
        allow_v, allow_a = f32(p.grid_voltage_allowance_v), f32(node.hw.grid_current_allowance_a)
        got = ""
        for _ in range(max(1, p.checkpoint_retry_limit)):  # 0 < --retryLimit_ (:160)
            time.sleep(p.checkpoint_retry_wait_s)  # vertx.setTimer (:113): a schedule
            dcdc = node.get_device_status()
            vg, ig = node.value("meter", "vg"), node.value("meter", "ig")
            problems = []
            if grid_voltage_v is not None:
                target = f32(grid_voltage_v)
                if vg is None or not f32(target - allow_v) <= vg <= f32(target + allow_v):
                    problems.append(
                        "vg %s not within %s ± %s V" % (_text(vg), fs(target), fs(allow_v))
                    )
            if grid_current_a is not None:
                target = f32(-grid_current_a) if ig is not None and ig < 0 else f32(grid_current_a)
                if ig is None or not f32(target - allow_a) <= ig <= f32(target + allow_a):
                    problems.append(
                        "ig %s not within %s ± %s A" % (_text(ig), fs(target), fs(allow_a))
                    )
            if not problems:
                return dcdc
            got = "; ".join(problems)
        raise CheckFailed(
            "checkpoint of %s" % node.unit_id,
            route="/dcdc/get/status",
            got=got,
            expected="vg/ig at the set values within the allowance after %d checks"
            % p.checkpoint_retry_limit,
            source=_DC + "Checkpoint.java:121-168",
        )


def voltage_reference_authorization(node: Node, rng: Callable[[], float] = random.random) -> Dcdc:
    """VoltageReferenceAuthorization: numberOfTrials (3) voltage steppings to
    targets drawn at random from operationGridVoltageVRange.min + 3 ×
    gridVoltageSeparationV to max − separation in steps of the separation
    (330.0 … 370.0 V) but the cached dvg, then back to that dvg
    (VoltageReferenceAuthorization.java:66-126). Skips the dynamic check meanwhile.

    Raises:
        CheckFailed: no cached dvg, a checkpoint.
        CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=True, stop_ignore=True):
        dvg = _cached(node, "VoltageReferenceAuthorization", ("vdis", "dvg"),
                      _DC + "VoltageReferenceAuthorization.java:67-100")
        p = node.policy
        separation = f32(p.grid_voltage_separation_v)
        low = f32(f32(p.operation_grid_voltage_v_range[0]) + f32(separation * 3))
        high = f32(f32(p.operation_grid_voltage_v_range[1]) - separation)
        targets, target = [], low
        while target <= high:  # :79-92
            if target != dvg:
                targets.append(target)
            target = f32(target + separation)
        trials = p.authorization_number_of_trials
        while True:
            index = min(int(len(targets) * rng()), len(targets) - 1)  # :105-106
            grid_voltage_stepping(node, targets[index])
            trials -= 1
            if trials <= 0:  # :113-116
                return grid_voltage_stepping(node, dvg)


def voltage_reference_will_hand_over(node: Node) -> Dcdc:
    """VoltageReferenceWillHandOver: ``/dcdc/set?dvg=<cached dvg>&drg=<droopRatio 0.039>``,
    still a voltage reference (VoltageReferenceWillHandOver.java:63-80). Starts
    skipping the dynamic check.

    Raises:
        CheckFailed: no cached dvg. CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=True, stop_ignore=False):
        dvg = _cached(node, "voltageReferenceWillHandOver", ("vdis", "dvg"),
                      _DC + "VoltageReferenceWillHandOver.java:64-74")
        return node.set_voltage(dvg, f32(node.hw.droop_ratio))


def voltage_reference_will_take_over(node: Node, grid_voltage_v: Optional[float] = None) -> Dcdc:
    """VoltageReferenceWillTakeOver: ``mode=0x0014&dvg=<grid_voltage_v, else the cached
    vg>&dig=<gridCurrentCapacityA>&drg=<droopRatio>``, operationMode "Grid Autonomy"
    (VoltageReferenceWillTakeOver.java:84-107). V. Starts skipping the dynamic check.

    Raises:
        CheckFailed: no voltage, wrong operationMode. CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=True, stop_ignore=False):
        v = f32(grid_voltage_v) if grid_voltage_v is not None else node.value("meter", "vg")
        if v is None:
            raise CheckFailed(
                "voltageReferenceWillTakeOver",
                expected="gridVoltageV or dcdc.meter.vg",
                got=None,
                source=_DC + "VoltageReferenceWillTakeOver.java:85-101",
            )
        return node.set_mode(
            "VOLTAGE_REFERENCE", v, f32(node.hw.grid_current_capacity_a), f32(node.hw.droop_ratio)
        )


def voltage_reference_did_hand_over(
    node: Node, mode: Optional[str] = None, grid_current_a: Optional[float] = None
) -> Dcdc:
    """VoltageReferenceDidHandOver: the old voltage reference becomes ``mode``:
    "DISCHARGE" (dvg operationGridVoltageVRange.max), "CHARGE" (dvg
    operationGridVoltageV) at ``grid_current_a`` A with drg=0, or (None) WAIT after
    stepping dig to 0 (VoltageReferenceDidHandOver.java:92-144). Ends skipping the
    dynamic check.

    Raises:
        CheckFailed: mode VOLTAGE_REFERENCE or unknown, no current, wrong operationMode.
        CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=False, stop_ignore=True):
        p, source = node.policy, _DC + "VoltageReferenceDidHandOver.java:92-144"
        _need("voltageReferenceDidHandOver", source, operationGridVoltageV=p.operation_grid_voltage_v)
        if mode is None or mode == "WAIT":
            _regardless("GridCurrentStepping", lambda: grid_current_stepping(node, 0.0))
            return node.set_mode("WAIT", f32(p.operation_grid_voltage_v), 0.0)
        if mode not in ("CHARGE", "DISCHARGE") or grid_current_a is None:
            raise CheckFailed(
                "voltageReferenceDidHandOver",
                expected="mode CHARGE, DISCHARGE or WAIT with a current",
                got="mode %r, gridCurrentA %r" % (mode, grid_current_a),
                source=source,
            )
        dvg = p.operation_grid_voltage_v if mode == "CHARGE" else p.operation_grid_voltage_v_range[1]
        return node.set_mode(mode, f32(dvg), f32(grid_current_a))


def voltage_reference_did_take_over(node: Node) -> Dcdc:
    """VoltageReferenceDidTakeOver: ``/dcdc/set?dvg=<cached dvg>&drg=0``, droop back to 0
    (VoltageReferenceDidTakeOver.java:61-75). Ends skipping the dynamic check.

    Raises:
        CheckFailed: no cached dvg. CommunicationError: 3 attempts failed.
    """
    with _command(node, start_ignore=False, stop_ignore=True):
        dvg = _cached(node, "voltageReferenceDidTakeOver", ("vdis", "dvg"),
                      _DC + "VoltageReferenceDidTakeOver.java:62-67")
        return node.set_voltage(dvg)


def execute(node: Node, command: str, params: Optional[Dict[str, Any]] = None) -> Dcdc:
    """A command by apis-main's name with its JSON params (``gridCurrentA`` A,
    ``gridVoltageV`` V, ``mode``), as DcdcDeviceControlling dispatches it (:232-281).

    Raises:
        CheckFailed: unknown command, or the command's own failures.
        CommunicationError: 3 attempts failed.
    """
    params = params or {}
    current, voltage = params.get("gridCurrentA"), params.get("gridVoltageV")
    table: Dict[str, Callable[[], Dcdc]] = {
        "WAIT": lambda: wait(node),
        "VOLTAGE_REFERENCE": lambda: voltage_reference(node),
        "CHARGE": lambda: charge(node, current),
        "DISCHARGE": lambda: discharge(node, current),
        "voltageReferenceAuthorization": lambda: voltage_reference_authorization(node),
        "voltageReferenceWillHandOver": lambda: voltage_reference_will_hand_over(node),
        "voltageReferenceWillTakeOver": lambda: voltage_reference_will_take_over(node, voltage),
        "voltageReferenceDidHandOver": lambda: voltage_reference_did_hand_over(
            node, params.get("mode"), current
        ),
        "voltageReferenceDidTakeOver": lambda: voltage_reference_did_take_over(node),
        "scram": lambda: scram(node),
        "voltage": lambda: grid_voltage_stepping(node, voltage),
        "current": lambda: grid_current_stepping(node, current),
    }
    if command not in table:
        raise CheckFailed(
            "device controlling",
            expected="one of %s" % sorted(table),
            got=repr(command),
            source="DcdcDeviceControlling.java:235-277",
        )
    if (
        command in ("CHARGE", "DISCHARGE", "current")
        and current is None
        or command == "voltage"
        and voltage is None
    ):
        raise CheckFailed(
            command,
            expected="params gridCurrentA / gridVoltageV",
            got=params,
            source="DcdcDeviceControlling.java:232-281",
        )
    return table[command]()
