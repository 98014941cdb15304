"""A node's household side: PV, load, the UPS's AC backup and the losses,
after apis-emulator's model (its core.py, stateUpdate and
lossesAndBatteryFlow; its config.py for the figures).

The battery of a node takes, besides what its converter carries (``wb``):

    pv + ac_in - load - loss          (W, + into the battery)

* **Bypass.** At RSOC <= ``bypass_on_rsoc`` (30 %) the UPS goes to bypass
  mode and serves the load from AC until RSOC >= ``bypass_off_rsoc`` (35 %)
  (core.py:56-61; ``ups_operation_mode.mode`` 5 in bypass, 2 otherwise).
* **AC charging.** At RSOC <= ``ac_charge_on_rsoc`` (20 %) the UPS charges
  the battery with ``ac_charge_w`` (150 W) from AC until RSOC >=
  ``ac_charge_off_rsoc`` (25 %) (core.py:63-68, 91-93).
* **Losses** (core.py:76-93, 253-262):

  - DC side, from the battery: ``system_loss_w`` (17.5 W), the converter's
    loss by mode (``converter_waiting_w`` 4.5 W in Waiting,
    ``converter_charge_w`` 71 W charging, ``converter_discharge_w`` 55 W in
    any other mode), and out of bypass the UPS's battery-mode loss
    ``batt_mode_loss_w + batt_mode_loss_ratio * load`` (129 W + 0.140 x load);
  - AC side, from AC: ``trans_loss_w`` (57 W), in bypass also
    ``bypass_loss_w + (bypass_loss_ratio + trans_loss_ratio) * load``
    (67 W + 0.060 x load), while AC charging ``ac_charge_loss_w`` (10 W).

  AC in (apis-emulator's ``powermeter.p2``) is what the AC side takes: its
  losses, the load in bypass, the AC charge.  The converter's conversion
  loss (its meters' ``wg - wb``) is counted apart, by the battery model.

Every figure is a field of ``Losses``; the grid file's ``household:``
section overrides them (docs/grid.md).
"""
import dataclasses
from typing import Any, Mapping, Optional

from eza2500 import table


@dataclasses.dataclass(frozen=True)
class Losses:
    """apis-emulator's household figures (its config.py): W, W per W of load, RSOC %."""

    system_loss_w: float = 17.5          # constantSystemLoss
    converter_waiting_w: float = 4.5     # DCCstLoss
    converter_charge_w: float = 71.0     # DCChargeLoss
    converter_discharge_w: float = 55.0  # DCDischargeLoss
    batt_mode_loss_w: float = 129.0      # battModeLoss_c
    batt_mode_loss_ratio: float = 0.140  # battModeLoss_a
    trans_loss_w: float = 57.0           # transLoss_c
    trans_loss_ratio: float = 0.027      # transLoss_a
    bypass_loss_w: float = 67.0          # bypassModeLoss_c
    bypass_loss_ratio: float = 0.033     # bypassModeLoss_a
    ac_charge_w: float = 150.0           # ACChargeAmount
    ac_charge_loss_w: float = 10.0       # ACChargeLoss
    bypass_on_rsoc: float = 30.0         # UPS_TRIGGER_BATT_OFF
    bypass_off_rsoc: float = 35.0        # UPS_TRIGGER_BATT_ON
    ac_charge_on_rsoc: float = 20.0      # UPS_TRIGGER_AC_ON
    ac_charge_off_rsoc: float = 25.0     # UPS_TRIGGER_AC_OFF


def losses_from(doc: Optional[Mapping[str, Any]], where: str = "household") -> Losses:
    """``Losses`` with the keys of ``doc`` (the grid file's ``household:``) replaced.

    Raises:
        ValueError: an unknown key or a value that is not a number >= 0
            (``where`` and the key named).
    """
    doc = doc or {}
    if not isinstance(doc, Mapping):
        raise ValueError("%s: expected a mapping, got %r" % (where, doc))
    known = [f.name for f in dataclasses.fields(Losses)]
    unknown = sorted(set(map(str, doc)) - set(known))
    if unknown:
        raise ValueError("%s: unknown key %s (known: %s)" % (where, ", ".join(unknown), ", ".join(known)))
    for key, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError("%s.%s=%r: expected a number >= 0" % (where, key, value))
    return Losses(**{k: float(v) for k, v in doc.items()})


@dataclasses.dataclass(frozen=True)
class Side:
    """What the household does to the battery now, W each (>= 0): ``pv``
    generated, ``load`` served, ``ac_in`` taken from AC, ``loss`` (AC and DC
    losses, not the converter's conversion loss); the battery takes
    ``pv + ac_in - load - loss``.  ``bypass`` and ``ac_charging`` are the UPS's state."""

    pv: float = 0.0
    load: float = 0.0
    ac_in: float = 0.0
    loss: float = 0.0
    bypass: bool = False
    ac_charging: bool = False

    @property
    def battery_w(self) -> float:
        """The household's power into the battery, W (negative: out of it)."""
        return self.pv + self.ac_in - self.load - self.loss

    @property
    def ups_mode(self) -> int:
        """apis-emulator's ``emu.ups_operation_mode.mode``: 5 in bypass, 2 otherwise (core.py:58, 61)."""
        return 5 if self.bypass else 2


class Household:
    """The UPS state of one node (bypass, AC charging: with hysteresis) and
    its ``Side`` for the PV, load, RSOC and converter mode of the moment.

    Args:
        losses: the figures (``Losses``); with ``backup=False`` no loss and no
            AC backup: the battery takes ``pv - load`` (the grid without profiles).
    """

    def __init__(self, losses: Losses = Losses(), backup: bool = True) -> None:
        self.losses, self.backup = losses, backup
        self.bypass = self.ac_charging = False

    def side(self, pv: float, load: float, rsoc: float, mode: int) -> Side:
        """The ``Side`` at ``pv`` W, ``load`` W, ``rsoc`` %, converter ``mode``
        (a ``table.MODE_*`` code); updates the UPS state first."""
        if not self.backup:
            return Side(pv, load)
        c = self.losses
        if rsoc <= c.bypass_on_rsoc:
            self.bypass = True
        elif rsoc >= c.bypass_off_rsoc:
            self.bypass = False
        if rsoc <= c.ac_charge_on_rsoc:
            self.ac_charging = True
        elif rsoc >= c.ac_charge_off_rsoc:
            self.ac_charging = False
        dc_loss = c.system_loss_w + self.converter_loss(mode)
        ac_loss = c.trans_loss_w
        if self.bypass:
            ac_loss += c.bypass_loss_w + (c.bypass_loss_ratio + c.trans_loss_ratio) * load
            ac_in = load + ac_loss
        else:
            dc_loss += c.batt_mode_loss_w + c.batt_mode_loss_ratio * load
            ac_in = ac_loss
        if self.ac_charging:
            ac_loss += c.ac_charge_loss_w
            ac_in += c.ac_charge_w + c.ac_charge_loss_w
        return Side(pv, load, ac_in, ac_loss + dc_loss, self.bypass, self.ac_charging)

    def converter_loss(self, mode: int) -> float:
        """The converter's own loss (W) in ``mode``: Waiting, charging, else discharging (core.py:253-262)."""
        if mode == table.MODE_WAITING:
            return self.losses.converter_waiting_w
        if mode == table.MODE_HETERONOMY_CHARGE:
            return self.losses.converter_charge_w
        return self.losses.converter_discharge_w
