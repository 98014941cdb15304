"""The sign convention of the 10-1 meters in every simulator (docs/grid.md, "Sign convention"):
seen from the DC grid and the node's battery, charging (power from the bus into the
battery) gives ig, wg, ib, wb > 0, discharging gives all four < 0, and wb = wg - losses.

apis-main relies on it: its safety check wants ig within +dig ± 0.125 A of a
charging unit and -dig ± 0.125 A of a discharging one, and its deal accounting
adds the charging unit's wb × time until the deal's amount is reached.
Every meter here is read through the Web API of the real driver stack.
"""
import time

import pytest
from conftest import set_node

from essx_sim.physics import BatteryModel
from essx_sim.grid import NodeSpec

#: apis-main's tolerance on ig around ±dig (LocalSafetyEvaluation), A.
IG_TOLERANCE = 0.125


class Clock:
    """A hand-driven monotonic clock (s)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def meters(client):
    """The 10-1 meters the driver reads now (``/remote/get``)."""
    status, body = client.get("/remote/get")
    assert status == 200, body
    return body["meter"]


def remote_set(client, mode, dig, dvg=350, drg=0):
    status, body = client.get("/remote/set", mode=mode, dvg=dvg, dig=dig, drg=drg)
    assert status == 200, body


# -- one node, as essx-server --simulate runs it ----------------------------------------
def test_grid_autonomy_delivering_into_the_load_is_negative(http):
    remote_set(http, "0x0014", 2.5)          # alone: feeds the private bus's 1 A load
    m = meters(http)
    assert m["ig"] < 0 and m["wg"] < 0 and m["ib"] < 0 and m["wb"] < 0, m
    assert abs(m["wb"]) > abs(m["wg"]), m    # the battery gives the losses too


@pytest.mark.parametrize("dig", [1.0, 2.5])
def test_heteronomy_charge_draws_plus_dig(http, dig):
    remote_set(http, "0x0041", dig)
    m = meters(http)
    assert dig - IG_TOLERANCE <= m["ig"] <= dig + IG_TOLERANCE, m
    assert m["wg"] > 0 and m["ib"] > 0 and 0 < m["wb"] < m["wg"], m


@pytest.mark.parametrize("dig", [1.0, 2.5])
def test_heteronomy_discharge_delivers_minus_dig(http, dig):
    remote_set(http, "0x0002", dig)
    m = meters(http)
    assert -dig - IG_TOLERANCE <= m["ig"] <= -dig + IG_TOLERANCE, m
    assert m["wg"] < 0 and m["ib"] < 0 and m["wb"] < 0 and abs(m["wb"]) > abs(m["wg"]), m


def test_physics_charging_raises_rsoc_and_discharging_lowers_it():
    clock = Clock()
    model = BatteryModel(capacity_wh=1000, rsoc=50, speed=60, clock=clock)
    model.set_power(600.0)                   # wb > 0: charging 600 W
    clock.now += 10                          # 600 simulated s: 100 Wh into the battery
    assert model.rsoc == pytest.approx(60.0)
    assert model.energy_wh == pytest.approx(100.0)
    model.set_power(-300.0)                  # wb < 0: discharging 300 W
    clock.now += 20                          # 1200 simulated s: 100 Wh out of it
    assert model.rsoc == pytest.approx(50.0)


# -- a grid of two nodes, the real driver stack on each ---------------------------------
def rsoc(g, i):
    status, body = g.node(i).get("/battery/get")
    assert status == 200, body
    return body["rsoc"]


def test_grid_rsoc_follows_the_sign(make_grid):
    """Node 0 holds the bus; node 1 charges 2 A from it, then discharges 2 A into it."""
    g = make_grid([NodeSpec(rsoc=50), NodeSpec(rsoc=50)], speed=2000)   # ~4 %/s at 700 W
    set_node(g, 0, "0x0014", 2.5)
    set_node(g, 1, "0x0041", 2.0)
    before = [rsoc(g, 0), rsoc(g, 1)]
    time.sleep(0.5)
    after = [rsoc(g, 0), rsoc(g, 1)]
    assert after[1] > before[1] and after[0] < before[0], (before, after)
    nodes = g.snapshot()["nodes"]
    assert nodes[1]["wb"] > 0 and nodes[1]["direction"] == "charging"
    assert nodes[0]["wb"] < 0 and nodes[0]["direction"] == "discharging"
    set_node(g, 1, "0x0002", 2.0)
    before = after
    time.sleep(0.5)
    after = [rsoc(g, 0), rsoc(g, 1)]
    assert after[1] < before[1] and after[0] > before[0], (before, after)
    nodes = g.snapshot()["nodes"]
    assert nodes[1]["wb"] < 0 and nodes[1]["direction"] == "discharging"
    assert nodes[0]["wb"] > 0 and nodes[0]["direction"] == "charging"


def test_grid_deal_energy_of_the_charging_unit_grows(make_grid):
    """apis-main's accounting: Σ wb × dt of the charging unit (and -wb × dt of the
    discharging one) grows towards the deal's amount, W·s."""
    g = make_grid([NodeSpec(), NodeSpec()])
    set_node(g, 0, "0x0014", 2.5)            # the discharging unit holds the bus
    set_node(g, 1, "0x0041", 1.5)            # the charging unit draws 1.5 A
    charged, discharged, t = [0.0], [0.0], time.monotonic()
    for _ in range(4):
        time.sleep(0.2)
        wb_charging, wb_discharging = meters(g.node(1))["wb"], meters(g.node(0))["wb"]
        now = time.monotonic()
        charged.append(charged[-1] + wb_charging * (now - t))
        discharged.append(discharged[-1] - wb_discharging * (now - t))
        t = now
    assert all(b > a for a, b in zip(charged, charged[1:])), charged
    assert all(b > a for a, b in zip(discharged, discharged[1:])), discharged
    assert discharged[-1] > charged[-1]      # the losses: the discharging unit gives more
