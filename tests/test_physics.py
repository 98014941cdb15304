"""Battery physics and the DC-bus model, without ptys (exact arithmetic)."""
import pytest

from essx_sim.physics import OCV_CURVE, BatteryModel, ocv
from essx_sim.dcbus import DCBus, Setting, battery_power, solve
from eza2500 import table

GA, CHARGE, DISCHARGE, WAITING = (table.MODE_GRID_AUTONOMY, table.MODE_HETERONOMY_CHARGE,
                                  table.MODE_HETERONOMY_DISCHARGE, table.MODE_WAITING)


class Clock:
    """A hand-driven monotonic clock (s)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


# -- the battery ----------------------------------------------------------------------
def test_rsoc_integrates_the_power_at_the_speed():
    clock = Clock()
    model = BatteryModel(capacity_wh=1000, rsoc=50, speed=60, clock=clock)
    model.set_power(600.0)             # charging 600 W (wb > 0: into the battery)
    clock.now += 10                    # 10 s real = 600 s simulated = 100 Wh
    assert model.rsoc == pytest.approx(60.0)
    assert model.energy_wh == pytest.approx(100.0)
    assert model.elapsed == pytest.approx(600.0)
    model.set_power(-300.0)            # discharging 300 W for 20 simulated minutes
    clock.now += 20
    assert model.rsoc == pytest.approx(50.0)
    assert model.energy_wh == pytest.approx(0.0, abs=1e-9)


def test_rsoc_is_clamped_and_limits_forbid_interchange():
    clock = Clock()
    model = BatteryModel(capacity_wh=100, rsoc=12, rsoc_min=10, rsoc_max=90, clock=clock)
    assert model.permitted
    model.set_power(-100.0)            # discharging 100 W
    clock.now += 36                    # 1 Wh = 1 %
    assert model.rsoc == pytest.approx(11.0) and model.permitted
    clock.now += 36 * 2
    assert model.rsoc == pytest.approx(9.0) and not model.permitted
    clock.now += 3600
    assert model.rsoc == 0.0
    model.rsoc = 95.0
    assert not model.permitted
    model.rsoc = 90.0
    assert model.permitted


def test_vb_follows_the_open_circuit_voltage_curve():
    assert [ocv(x) for x, _ in OCV_CURVE] == [v for _, v in OCV_CURVE]
    assert ocv(30.0) == pytest.approx(50.0)
    assert ocv(-5) == OCV_CURVE[0][1] and ocv(105) == OCV_CURVE[-1][1]
    values = [ocv(x / 2) for x in range(201)]
    assert values == sorted(values)
    assert BatteryModel(rsoc=70).vb == pytest.approx(53.0)


@pytest.mark.parametrize("kwargs, name", [
    ({"capacity_wh": 0}, "capacity_wh"), ({"speed": -1}, "speed"), ({"rsoc": 101}, "rsoc"),
    ({"rsoc_min": -1}, "rsoc_min"), ({"rsoc_min": 60, "rsoc_max": 40}, "rsoc_min"),
])
def test_bad_battery_values_are_refused(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BatteryModel(**kwargs)


# -- the bus ------------------------------------------------------------------------
def test_scripted_exchange_balances():
    v, ig, load = solve({0: Setting(GA, 350, 0, 2.5), 1: Setting(DISCHARGE, 350, 0, 2.0),
                         2: Setting(CHARGE, 350, 0, 1.5)})
    assert v == 350.0
    assert ig == pytest.approx({0: 0.5, 1: -2.0, 2: 1.5})
    assert abs(sum(ig.values())) < 1e-9 and load == 0


def test_voltage_sources_share_by_their_droop():
    v, ig, _ = solve({"a": Setting(GA, 350, 1.0, 5), "b": Setting(GA, 350, 3.0, 5),
                      "c": Setting(CHARGE, 350, 0, 4.0)})
    assert v == pytest.approx(347.0)                  # 3 A through 1 V/A, 1 A through 3 V/A
    assert ig == pytest.approx({"a": -3.0, "b": -1.0, "c": 4.0})


def test_a_source_is_limited_to_its_dig_and_the_others_take_the_rest():
    v, ig, _ = solve({"a": Setting(GA, 352, 0.1, 1.0), "b": Setting(GA, 350, 0.1, 5),
                      "c": Setting(CHARGE, 0, 0, 3.0)})
    assert ig == pytest.approx({"a": -1.0, "b": -2.0, "c": 3.0})
    assert v == pytest.approx(350 - 0.1 * 2)


def test_demand_beyond_the_sources_is_curtailed():
    v, ig, _ = solve({"a": Setting(GA, 350, 0, 1.0), "c": Setting(CHARGE, 0, 0, 3.0),
                      "d": Setting(DISCHARGE, 0, 0, 1.0)})
    assert ig == pytest.approx({"a": -1.0, "c": 2.0, "d": -1.0})
    assert abs(sum(ig.values())) < 1e-9


def test_bus_is_down_without_a_voltage_source():
    v, ig, load = solve({0: Setting(CHARGE, 350, 0, 2), 1: Setting(DISCHARGE, 350, 0, 2),
                         2: Setting(WAITING)}, load=1.0)
    assert (v, ig, load) == (0.0, {0: 0.0, 1: 0.0, 2: 0.0}, 0.0)


def test_external_grid_holds_the_bus_and_a_source_feeds_the_load():
    v, ig, load = solve({0: Setting(CHARGE, 0, 0, 2)}, load=1.0, external_v=340.0)
    assert (v, ig, load) == (340.0, {0: 2.0}, 1.0)
    v, ig, load = solve({0: Setting(GA, 360, 0, 2.5)}, load=1.0, external_v=340.0)
    assert (v, ig, load) == (360.0, {0: -1.0}, 1.0)


def test_battery_power_through_the_efficiency():
    """wb = wg - losses, the sign of wg: + charging, - discharging."""
    assert battery_power(875.0, 0.98) == pytest.approx(857.5)
    assert battery_power(-700.0, 0.98) == pytest.approx(-714.2857, abs=1e-4)
    assert battery_power(0.0, 0.98) == 0.0


def test_bus_hands_every_battery_its_power():
    class Battery:
        power = grid = None

        def set_power(self, wb, wg):
            self.power, self.grid = wb, wg

    bus = DCBus()
    batteries = [Battery(), Battery()]
    a, b = (bus.attach(i, batteries[i]) for i in range(2))
    bus.update(a, Setting(GA, 350, 0, 2.5, 0.98))
    bus.update(b, Setting(DISCHARGE, 350, 0, 2.0, 0.98))
    snap = bus.snapshot()
    assert snap["voltage"] == 350.0 and abs(snap["sum_ig"]) < 1e-9
    assert batteries[0].power == pytest.approx(700 * 0.98)       # the source takes the 2 A: charging
    assert batteries[1].power == pytest.approx(-700 / 0.98)      # discharging 2 A at 350 V
    assert [x.grid for x in batteries] == pytest.approx([700.0, -700.0])   # wg: the bus side
    with pytest.raises(ValueError, match="already"):
        bus.attach(0)
    bus.detach(b)
    assert batteries[1].power == 0.0 and batteries[0].power == 0.0
