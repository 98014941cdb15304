"""apis-main's settings that shape what it sends to the driver and checks.

``Policy`` is POLICY (policy.json) and ``HwConfig`` HWCONFIG (hwConfig.json);
their defaults are apis-main's shipped samples, src/main/resources/
sample-policy.json and sample-hwConfig.json (line numbers below), except
where a value is absent from the sample and apis-main's code has a default.
Times are seconds here (the files say milliseconds).
"""

import dataclasses
from typing import Dict, Optional, Tuple

__all__ = ["Policy", "HwConfig", "SAFETY_RANGES"]

#: HWCONFIG.safety.range.dcdc.meter: (min, max) per meter, V / A / degC
#: (sample-hwConfig.json:52-70), checked on every poll (LocalSafetyEvaluation.java:83-97).
SAFETY_RANGES: Dict[str, Tuple[float, float]] = {
    "tmp": (0.0, 45.0),
    "vg": (-4.0, 380.0),
    "vb": (32.0, 58.4),
    "ig": (-2.35, 2.35),
    "ib": (-20.0, 20.0),
}


@dataclasses.dataclass(frozen=True)
class Policy:
    """POLICY values (sample-policy.json line in brackets).

    operation_grid_voltage_v: V [69]; None is a policy without it: WAIT then
        sends dvg=0.0 (WAIT.java:52-62), VOLTAGE_REFERENCE and CHARGE refuse.
    operation_grid_voltage_v_range: (min, max) V [95-98].
    grid_voltage_separation_v: V [115]; grid_voltage_allowance_v: V [127].
    grid_current_step_a: A [142]; grid_voltage_step_v: V, absent from the
        sample: GridVoltageStepping.java:74 takes 350 ("no need to step").
    grid_uvlo_mask_v: V [148].
    sum_of_dealing_unit_grid_current_allowance_per_unit_a: A [161];
        sum_of_deal_grid_current_max_a: A [170].
    checkpoint_retry_limit [251], checkpoint_retry_wait_s: s [255].
    ramp_up_timeout_s: s [266]; authorization_number_of_trials [274].
    data_acquisition_period_s: s [293]; request_timeout_s: s [297];
        retry_limit: attempts [301] (DataAcquisition.java:67-83).
    deal_grid_current_a: A [332]; voltage_reference_side [374];
        voltage_reference_take_over_dvg [380].
    discharge_unit_lower_limit_rsoc, charge_unit_upper_limit_rsoc: % [445, 450].
    reference_side [461]; current_compensation_limit_of_trials [475];
        drift_allowance_a: A [479]; main_loop_period_s: s [507].
    large_capacity_unit_ids: unit ids [50-52] (the sample's ids are E001, E004;
        empty here).
    member_unit_ids: unit ids [40-42]; None: the units the client drives.
    """

    operation_grid_voltage_v: Optional[float] = 350.0
    operation_grid_voltage_v_range: Tuple[float, float] = (300.0, 380.0)
    grid_voltage_separation_v: float = 10.0
    grid_voltage_allowance_v: float = 4.0
    grid_current_step_a: float = 1.0
    grid_voltage_step_v: Optional[float] = None
    grid_uvlo_mask_v: float = 10.0
    sum_of_dealing_unit_grid_current_allowance_per_unit_a: float = 0.125
    sum_of_deal_grid_current_max_a: float = 100.0
    checkpoint_retry_limit: int = 3
    checkpoint_retry_wait_s: float = 0.1
    ramp_up_timeout_s: float = 180.0
    authorization_number_of_trials: int = 3
    data_acquisition_period_s: float = 5.0
    request_timeout_s: float = 5.0
    retry_limit: int = 3
    deal_grid_current_a: float = 2.0
    voltage_reference_side: str = "chargeUnit"
    voltage_reference_take_over_dvg: str = "theoretical"
    discharge_unit_lower_limit_rsoc: float = 20.0
    charge_unit_upper_limit_rsoc: float = 95.0
    reference_side: str = "chargeUnit"
    current_compensation_limit_of_trials: int = 3
    drift_allowance_a: float = 0.03
    main_loop_period_s: float = 5.0
    large_capacity_unit_ids: Tuple[str, ...] = ()
    member_unit_ids: Optional[Tuple[str, ...]] = None


@dataclasses.dataclass(frozen=True)
class HwConfig:
    """HWCONFIG values (sample-hwConfig.json line in brackets).

    battery_nominal_capacity_wh: Wh [14]; grid_current_capacity_a: A [22]
    (the VOLTAGE_REFERENCE dig and the largest dig apis-main sends,
    DcdcDeviceControlling.java:197-211); grid_current_allowance_a: A [29];
    droop_ratio [34] (the handover's drg); safety_ranges [48-70].
    """

    battery_nominal_capacity_wh: float = 4800.0
    grid_current_capacity_a: float = 2.3
    grid_current_allowance_a: float = 0.125
    droop_ratio: float = 0.039
    safety_ranges: Dict[str, Tuple[float, float]] = dataclasses.field(
        default_factory=lambda: dict(SAFETY_RANGES)
    )
