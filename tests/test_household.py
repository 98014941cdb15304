"""The grid's household model without a driver: profiles, the UPS's rules and
losses, the battery's energy ledger, the simulated clock and the day's figures."""
import datetime

import pytest
from conftest import HandClock

from essx_sim.clock import SimClock, emulator_time
from essx_sim.figures import Figures, day_figures, totals
from essx_sim.household import Household, Losses, losses_from
from essx_sim.physics import BatteryModel
from essx_sim.profiles import (DAY_S, Profile, ProfileError, load_profiles, read_node_file, sample_profiles,
                               unit_id, write_profiles)
from eza2500 import table


# --- profiles -------------------------------------------------------------------------

def test_profile_is_linear_between_points_and_repeats_daily():
    p = Profile((0.0, 6 * 3600.0, 12 * 3600.0), (100.0, 100.0, 700.0))
    assert p.at(9 * 3600) == pytest.approx(400.0)
    assert p.at(DAY_S + 9 * 3600) == pytest.approx(400.0)             # the next day
    assert p.at(18 * 3600) == pytest.approx(400.0)                    # from 12:00's 700 to 24:00's 100
    assert Profile.constant(250).at(12345.0) == 250.0


def test_node_file_is_read_and_a_mistake_names_file_line_and_value(tmp_path):
    good = tmp_path / "E001.csv"
    good.write_text("time,pv,load\n00:00,0,300\n12:00,2000,500\n18:30:00,100,900\n")
    p = read_node_file(str(good))
    assert p.pv.at(6 * 3600) == pytest.approx(1000.0) and p.load.at(12 * 3600) == 500.0
    bad = tmp_path / "E002.csv"
    bad.write_text("time,pv,load\n00:00,0,300\n25:00,1,1\n")
    with pytest.raises(ProfileError, match=r"E002.csv: line 3: time '25:00'"):
        read_node_file(str(bad))
    bad.write_text("time,pv,load\n00:00,-5,300\n")
    with pytest.raises(ProfileError, match=r"line 2: pv: '-5': expected a number >= 0"):
        read_node_file(str(bad))
    bad.write_text("hour,pv,load\n")
    with pytest.raises(ProfileError, match="expected the header time,pv,load"):
        read_node_file(str(bad))


def test_apis_emulator_sample_formats(tmp_path):
    """sample_solar_data.csv: a row a day of 24 hourly W; sample_load_data.csv:
    household id in column 1, hourly kW in columns 6, 8, ..., 52."""
    day1 = [0] * 7 + [100, 500, 1000, 1500, 2000, 2500, 2000, 1500, 1000, 500, 100] + [0] * 6
    day2 = [0] * 24
    (tmp_path / "sample_solar_data.csv").write_text(
        "\n".join(",".join(str(v) for v in d) for d in (day1, day2)) + "\n")

    def load_row(household, kw):
        cells = ["x", str(household), "a", "b", "c", "d"] + [""] * 48
        for h in range(24):
            cells[6 + 2 * h] = str(kw + h / 100)      # the hour's value; the half hours are not read
            cells[7 + 2 * h] = "99"
        return ",".join(cells)

    (tmp_path / "sample_load_data.csv").write_text(
        "header\n" + "\n".join([load_row(1, 0.3), load_row(2, 0.5), load_row(1, 0.4), load_row(2, 0.6)]) + "\n")
    nodes = load_profiles(str(tmp_path), 3)
    assert nodes[0].pv.at(12 * 3600) == 2500.0 and nodes[2].pv.at(12 * 3600) == 2500.0   # solar: every node
    assert nodes[0].pv.at(DAY_S + 12 * 3600) == 0.0                                     # row 2: day 2
    assert nodes[0].load.at(3 * 3600) == pytest.approx(330.0)          # household 1 (E001), day 1, 03:00
    assert nodes[1].load.at(DAY_S + 3 * 3600) == pytest.approx(630.0)  # household 2 (E002), day 2
    assert nodes[2].load.at(0) == 0.0                                  # no household 3
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ProfileError, match="no profile in it"):
        load_profiles(str(tmp_path / "nothing"), 1)
    with pytest.raises(ProfileError, match="not a directory"):
        load_profiles(str(tmp_path / "absent"), 1)


def test_sample_set_has_days_and_nights_and_nodes_unlike_each_other(tmp_path):
    nodes = sample_profiles(5)
    noon, night = 12 * 3600, 2 * 3600
    assert all(n.pv.at(night) == 0 for n in nodes) and all(n.pv.at(noon) > 0 for n in nodes)
    surplus = [n.pv.at(noon) - n.load.at(noon) for n in nodes]
    assert max(surplus) > 1000 and min(surplus) < 500
    assert all(n.load.at(19 * 3600) > n.load.at(night) for n in nodes)      # the evening peak
    paths = write_profiles(str(tmp_path), nodes)
    assert [p.rsplit("/", 1)[1] for p in paths] == [unit_id(i) + ".csv" for i in range(5)]
    again = load_profiles(str(tmp_path), 5)
    assert again[2].pv.at(noon) == pytest.approx(nodes[2].pv.at(noon), abs=0.01)


# --- the household ----------------------------------------------------------------------

def test_losses_and_ac_in_in_battery_mode_as_apis_emulator():
    h = Household(Losses())
    side = h.side(pv=1000.0, load=200.0, rsoc=60.0, mode=table.MODE_WAITING)
    # DC: 17.5 system + 4.5 converter waiting + 129 + 0.14 x 200 UPS; AC: 57 transformer
    assert side.loss == pytest.approx(17.5 + 4.5 + 129 + 28 + 57)
    assert side.ac_in == pytest.approx(57.0) and not side.bypass and side.ups_mode == 2
    assert side.battery_w == pytest.approx(1000 - 200 - 236 + 57)      # AC in covers the AC losses
    charging = h.side(0.0, 0.0, 60.0, table.MODE_HETERONOMY_CHARGE)
    discharging = h.side(0.0, 0.0, 60.0, table.MODE_GRID_AUTONOMY)
    assert charging.loss - side.loss == pytest.approx(71 - 4.5 - 28)
    assert discharging.loss - side.loss == pytest.approx(55 - 4.5 - 28)


def test_bypass_and_ac_charging_with_their_hysteresis():
    h = Household(Losses())
    assert not h.side(0, 400.0, 31.0, table.MODE_WAITING).bypass
    low = h.side(0, 400.0, 30.0, table.MODE_WAITING)
    assert low.bypass and low.ups_mode == 5 and not low.ac_charging
    # in bypass the load comes from AC: the battery loses only the DC side's constant losses
    assert low.battery_w == pytest.approx(-(17.5 + 4.5))
    assert h.side(0, 400.0, 34.0, table.MODE_WAITING).bypass            # until 35 %
    assert not h.side(0, 400.0, 35.0, table.MODE_WAITING).bypass
    empty = h.side(0, 400.0, 20.0, table.MODE_WAITING)
    assert empty.ac_charging and empty.battery_w == pytest.approx(150.0 - 22.0)
    assert h.side(0, 400.0, 24.0, table.MODE_WAITING).ac_charging       # until 25 %
    assert not h.side(0, 400.0, 25.0, table.MODE_WAITING).ac_charging
    off = Household(backup=False).side(300.0, 100.0, 5.0, table.MODE_WAITING)
    assert off.battery_w == 200.0 and off.loss == 0 and not off.bypass


def test_grid_file_household_section_is_checked():
    assert losses_from({"batt_mode_loss_w": 50}).batt_mode_loss_w == 50.0
    with pytest.raises(ValueError, match="unknown key batt_loss"):
        losses_from({"batt_loss": 1})
    with pytest.raises(ValueError, match=r"household.trans_loss_w=-1: expected a number >= 0"):
        losses_from({"trans_loss_w": -1})


# --- the ledger -------------------------------------------------------------------------

def balance(start, end):
    return day_figures(totals([start]), totals([end]))["balance"]


def test_ledger_balances_exactly_through_clamps_and_sets():
    clock = HandClock()
    m = BatteryModel(capacity_wh=1000.0, rsoc=50.0, clock=clock)
    start = m.ledger()
    m.set_side(pv=600.0, load=100.0, ac_in=57.0, loss=200.0)      # +357 W
    m.set_power(-490.0, -500.0)                                   # discharging into the bus, 10 W conversion loss
    clock.t = 3600.0
    after = m.ledger()
    assert after["stored"] == pytest.approx(500.0 + 357.0 - 490.0)
    assert after["wg_out"] == pytest.approx(500.0) and after["wg"] == pytest.approx(-500.0)
    assert balance(start, after) == pytest.approx(0.0, abs=1e-9)
    m.set_power(0.0, 0.0)
    clock.t = 3 * 3600.0                                          # +357 W for 2 h: full, the rest wasted
    full = m.ledger()
    assert m.rsoc == 100.0 and full["wasted"] == pytest.approx(367.0 + 714.0 - 1000.0)
    m.set_side(0.0, 1000.0)
    clock.t = 5 * 3600.0                                          # -1000 W for 2 h: empty, AC covers the rest
    empty = m.ledger()
    assert m.rsoc == 0.0 and empty["ac_in"] - full["ac_in"] == pytest.approx(1000.0)
    m.rsoc = 40.0                                                 # set from outside: counted as adjust
    m.set_capacity(2000.0)
    adjusted = m.ledger()
    assert adjusted["adjust"] == pytest.approx(400.0 + 400.0) and adjusted["stored"] == pytest.approx(800.0)
    assert balance(start, adjusted) == pytest.approx(0.0, abs=1e-9)


def test_an_idle_battery_keeps_its_rsoc_exactly():
    """The Modbus register serves RSOC x 10: 55.5 % must stay 55.5, not 55.50000000000001."""
    clock = HandClock()
    m = BatteryModel(capacity_wh=4800.0, rsoc=55.5, clock=clock)
    clock.t = 3600.0
    assert m.rsoc == 55.5 and m.ledger()["stored"] == pytest.approx(0.555 * 4800)


# --- the clock --------------------------------------------------------------------------

def test_clock_pace_changes_from_the_moment_it_is_set():
    real = HandClock()
    c = SimClock(datetime.datetime(2020, 3, 1, 6, 0), speed=60.0, real=real)
    real.t = 10.0
    assert c.seconds() == 600.0
    c.speed = 3600
    real.t = 11.0
    assert c.seconds() == 4200.0 and c.now() == datetime.datetime(2020, 3, 1, 7, 10)
    assert c.year_seconds(0.0) == (31 + 29) * DAY_S + 6 * 3600
    assert emulator_time(c.now()) == "2020/03/01-07:10:00"
    with pytest.raises(ValueError, match="speed=0"):
        c.speed = 0
    c.set_seconds(0.0)
    assert c.seconds() == 0.0


# --- figures ----------------------------------------------------------------------------

def test_figures_close_a_day_whose_series_integrates_to_it():
    clock = HandClock()
    m = BatteryModel(capacity_wh=50000.0, rsoc=50.0, clock=clock)    # never empty: no AC shortfall
    f = Figures(sample_s=3600.0)
    day = datetime.datetime(2020, 1, 1)
    for hour in range(0, 26):
        clock.t = hour * 3600.0
        m.set_side(pv=max(0.0, 1000.0 - abs(hour % 24 - 12) * 150.0), load=300.0, ac_in=57.0, loss=150.0)
        f.sample(clock.t, day + datetime.timedelta(hours=hour), [m.ledger()])
    report = f.report()
    assert len(report["days"]) == 1
    d = report["days"][0]
    assert d["date"] == "2020-01-01" and d["balance"] == pytest.approx(0.0, abs=1e-6)
    rows = [r for r in report["series"] if r["time"] <= "2020-01-02T00:00:00"]
    assert sum(r["pv"] for r in rows) == pytest.approx(d["pv"])          # 1 h rows: W x 1 h = Wh
    assert d["load"] == pytest.approx(24 * 300.0)
    assert d["self_sufficiency"] == pytest.approx(1 - 24 * 57.0 / (24 * 300.0))
    assert f.series_csv().splitlines()[0] == "t,time,pv,load,ac_in,loss,wasted,exchanged,bus_load,rsoc,stored"
    assert f.days_csv().splitlines()[1].startswith("2020-01-01,")
