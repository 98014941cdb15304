"""apis-main (drivers/apismain) as the client of real driver stacks on the simulators.

Every request goes through waitress, bottle, the controller, the EZA2500 and
battery simulators on ptys; the client sends what apis-main sends (its query
strings to the digit) and checks what apis-main checks (docs/apis-main.md).
The expected query strings follow from the converter's Q-format values the
driver reports (dig 1.0 A reads back as 0.99945068359375 A, dvg 350 V as
349.98779296875 V) and apis-main's float arithmetic on them.
"""

import dataclasses
import subprocess
import sys
import time

import pytest
from conftest import DRIVERS, SPEED, free_port

import essx_sim.battery as battery_simulator
import essx_sim.converter as eza2500_simulator
from apismain import CheckFailed, CommunicationError, Node, Policy, commands
from apismain.deal import Deal, GridMaster
from apismain.poller import Poller
from apismain.safety import DealCurrents, DealRole, GlobalSafety, LocalSafety
from apismain.policy import HwConfig
from essx_sim.grid import NodeSpec

#: apis-main's POLICY with a shorter data acquisition and main loop period (s).
FAST = Policy(data_acquisition_period_s=0.2, main_loop_period_s=0.2)
CHARGER, DISCHARGER, WAITING = [DealRole(False)], [DealRole(True)], []
#: A unit that is the master side (voltage reference) of a deal not yet warmed up.
REFERENCE = [DealRole(False, master_side_active=True, both_sides_active=False)]
#: Battery faults: every kind of the battery simulator.
BATTERY_FAULTS = battery_simulator.FAULTS
#: Converter tries per command (the shipped configuration's 3 retries) and battery tries per read.
DCDC_TRIES, BATTERY_TRIES = 4, 2


def sets(node, since=0):
    """The /dcdc/set paths the node's control connection sent (from attempt ``since`` on)."""
    return [a.path for a in list(node.control_link.attempts)[since:]]


def attempts(*nodes):
    return [a for n in nodes for link in (n.data_link, n.control_link) for a in link.attempts]


def step(node, roles, action):
    """A command with the deal roles apis-main has meanwhile, then a poll (local safety checked)."""
    with node.lock:
        node.deal_roles = roles
        action()
    return node.poll()


@pytest.fixture
def make_node(http):
    """``make(policy=FAST) -> Node`` on the simulated server of ``http``; closed afterwards."""
    made = []

    def make(policy=FAST):
        node = Node(http.base, policy=policy)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


@pytest.fixture
def node(make_node):
    return make_node()


# --- 1. one node (essx-server --simulate) ------------------------------------------------


def test_version_then_polls_every_period_on_one_keep_alive_connection(node):
    assert node.negotiate() == "2"
    poller = Poller(node).start()
    try:
        deadline = time.monotonic() + 10
        while poller.polls < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        poller.stop()
    poller.raise_if_failed()
    assert poller.polls >= 3
    paths = [a.path for a in node.data_link.attempts]
    assert paths[0] == "/version/get" and set(paths[1:]) == {"/all/get"}
    starts = [a.started for a in node.data_link.attempts][1:]
    assert all(b - a >= FAST.data_acquisition_period_s for a, b in zip(starts, starts[1:]))
    assert node.data_link.connections == 1 and node.control_link.connections == 0
    assert node.cache["battery"]["battery_operation_status"] == 3 and "rsoc" not in node.cache["dcdc"]
    assert node.warnings == []


def test_wait_without_operation_grid_voltage_sends_dvg_0(make_node):
    node = make_node(dataclasses.replace(FAST, operation_grid_voltage_v=None))
    node.poll()
    step(node, WAITING, lambda: commands.wait(node))
    assert sets(node) == ["/dcdc/set?mode=0x0000&dvg=0.0&dig=0.0&drg=0"]  # answered 200: the stop stops
    assert node.mode == "WAIT" and node.cache["dcdc"]["status"]["operationMode"] == "Waiting"


def test_voltage_reference_then_wait(node):
    node.poll()
    step(node, REFERENCE, lambda: commands.voltage_reference(node))
    assert node.mode == "VOLTAGE_REFERENCE" and node.ignore_dynamic_safety_check
    step(node, WAITING, lambda: commands.wait(node))
    assert sets(node) == [
        "/dcdc/set?mode=0x0014&dvg=350.0&dig=2.3&drg=0",
        "/dcdc/set?dvg=310.0&drg=0",  # down to min + separation
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]
    assert node.mode == "WAIT" and not node.ignore_dynamic_safety_check and node.warnings == []


@pytest.mark.parametrize(
    "command, mode, roles",
    [("charge", "0x0041&dvg=350.0", CHARGER), ("discharge", "0x0002&dvg=380.0", DISCHARGER)],
)
def test_charge_and_discharge_ramp_up_and_down(node, command, mode, roles):
    node.poll()
    data = step(node, roles, lambda: getattr(commands, command)(node, 2.0))
    ig = data["dcdc"]["meter"]["ig"]
    assert (ig > 0) == (command == "charge") and abs(abs(ig) - 2.0) <= 0.125
    step(node, WAITING, lambda: commands.wait(node))
    assert sets(node) == [
        "/dcdc/set?mode=%s&dig=1.0&drg=0" % mode,  # the step first
        "/dcdc/set?dig=1.9994507",  # cached 0.99945068 + 1.0
        "/dcdc/set?dig=2.0",
        "/dcdc/set?dig=0.99985504",  # WAIT steps down
        "/dcdc/set?dig=0.0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]
    assert node.warnings == []


def test_charged_battery_power_is_positive(node):
    """apis-main counts a deal's energy from the charge unit's wb (AbstractDealExecution.java:140-142)."""
    node.poll()
    data = step(node, CHARGER, lambda: commands.charge(node, 1.5))
    assert data["dcdc"]["meter"]["wb"] > 0 and data["dcdc"]["meter"]["ib"] > 0  # charging: wb, ib > 0
    data = step(node, WAITING, lambda: commands.wait(node))
    data = step(node, DISCHARGER, lambda: commands.discharge(node, 1.5))
    assert data["dcdc"]["meter"]["wb"] < 0 and data["dcdc"]["meter"]["ib"] < 0
    step(node, WAITING, lambda: commands.wait(node))


def test_current_and_voltage_stepping(make_node):
    node = make_node(dataclasses.replace(FAST, grid_voltage_step_v=10.0))
    node.poll()
    step(node, CHARGER, lambda: commands.charge(node, 0.5))  # below a step: at once
    step(node, CHARGER, lambda: commands.grid_current_stepping(node, 2.2))
    step(node, WAITING, lambda: commands.wait(node))
    step(node, REFERENCE, lambda: commands.voltage_reference(node))
    step(node, REFERENCE, lambda: commands.grid_voltage_stepping(node, 325.0))
    assert node.value("meter", "vg") == pytest.approx(325.0, abs=0.05)
    step(node, WAITING, lambda: commands.wait(node))
    assert sets(node) == [
        "/dcdc/set?mode=0x0041&dvg=350.0&dig=0.5&drg=0",
        "/dcdc/set?dig=1.4997253",
        "/dcdc/set?dig=2.2",
        "/dcdc/set?dig=1.199173",
        "/dcdc/set?dig=0.19876862",
        "/dcdc/set?dig=0.0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
        "/dcdc/set?mode=0x0014&dvg=350.0&dig=2.3&drg=0",
        "/dcdc/set?dvg=339.9878&drg=0",
        "/dcdc/set?dvg=329.96826&drg=0",
        "/dcdc/set?dvg=325.0&drg=0",
        "/dcdc/set?dvg=314.98535&drg=0",
        "/dcdc/set?dvg=310.0&drg=0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]


def test_authorization_walk_and_handover_steps_on_one_node(node):
    node.poll()
    step(node, REFERENCE, lambda: commands.voltage_reference(node))
    picks = iter([0.0, 0.99, 0.5])
    step(node, REFERENCE, lambda: commands.voltage_reference_authorization(node, rng=lambda: next(picks)))
    assert not node.ignore_dynamic_safety_check
    step(node, REFERENCE, lambda: commands.voltage_reference_will_hand_over(node))
    assert node.cache["dcdc"]["vdis"]["drg"] == pytest.approx(0.039, abs=1e-3)
    step(node, REFERENCE, lambda: commands.voltage_reference_did_take_over(node))
    step(node, WAITING, lambda: commands.wait(node))
    assert sets(node)[1:6] == [
        "/dcdc/set?dvg=330.0&drg=0",
        "/dcdc/set?dvg=370.0&drg=0",
        "/dcdc/set?dvg=350.0&drg=0",  # 350.0 is a candidate: the cached dvg is 349.9878
        "/dcdc/set?dvg=349.9878&drg=0",
        "/dcdc/set?dvg=349.9878&drg=0.039",
    ]
    assert sets(node)[6] == "/dcdc/set?dvg=349.9878&drg=0"


def test_scram_and_checkpoint(node):
    node.poll()
    step(node, CHARGER, lambda: commands.charge(node, 1.0))
    assert commands.checkpoint(node, 350.0, 1.0)["meter"]["ig"] == pytest.approx(1.0, abs=0.125)
    with pytest.raises(
        CheckFailed, match=r"checkpoint.*ig 0\.99945\d* not within 2\.0 ± 0\.125 A.*Checkpoint\.java"
    ):
        commands.checkpoint(node, None, 2.0)
    step(node, WAITING, lambda: commands.scram(node))
    assert sets(node)[-1] == "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0" and node.mode == "WAIT"
    step(node, REFERENCE, lambda: commands.voltage_reference(node))
    before = len(node.control_link.attempts)
    commands.scram(node, exclude_voltage_reference=True)  # a voltage reference stays
    assert len(node.control_link.attempts) == before and node.mode == "VOLTAGE_REFERENCE"
    step(node, WAITING, lambda: commands.scram(node))


def test_a_current_above_capacity_is_refused_before_it_is_sent(node):
    node.poll()
    with pytest.raises(CheckFailed) as e:
        commands.charge(node, 3.0)  # the ramp reaches 2.9989014 > gridCurrentCapacityA 2.3
    assert "expected 0 <= dig <= gridCurrentCapacityA 2.3 A; got dig 2.9989014" in str(e.value)
    assert "DcdcDeviceControlling.java:185-211" in str(e.value)
    assert sets(node) == ["/dcdc/set?mode=0x0041&dvg=350.0&dig=1.0&drg=0", "/dcdc/set?dig=1.9994507"]
    step(node, WAITING, lambda: commands.wait(node))


def test_three_failed_attempts_are_a_clear_failure(http, node):
    node.poll()
    http.system.dcdc_sim.inject("silent", count=None)
    try:
        with pytest.raises(CommunicationError) as e:
            commands.wait(node)
    finally:
        http.system.dcdc_sim.clear_faults()
    text = str(e.value)
    assert text.startswith(
        "request /dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0: expected 200 with a JSON "
        "object within 5 s, in 3 attempts; got attempt 1: 400 "
    )
    assert "attempt 3: 400" in text and text.endswith("(apis-main DeviceControlling.java:499-551)")
    failed = [a for a in node.control_link.attempts if not a.ok]
    assert len(failed) == 3 and all(a.seconds < 5 for a in failed)


def test_local_safety_is_apis_mains():
    """Synthetic unit data: a dynamic check warns once, then fails (LocalSafetyEvaluation.java:335-346)."""
    safety = LocalSafety(Policy(), HwConfig())
    meter = {"tmp": 30.0, "vg": 350.0, "vb": 52.0, "ig": 0.2, "ib": 0.0}
    data = {
        "dcdc": {
            "status": {"status": "0x0000", "operationMode": "Waiting", "alarmState": "No alarm"},
            "meter": meter,
            "param": {"dig": 0.0},
            "vdis": {"dvg": 350.0},
        },
        "battery": {"rsoc": 50.0, "battery_operation_status": 3},
    }
    assert [(f.key, f.level) for f in safety.check(data, [])] == [("ERROR_WAIT_INVALID_METER_IG", "WARN")]
    assert [(f.key, f.level) for f in safety.check(data, [])] == [("ERROR_WAIT_INVALID_METER_IG", "ERROR")]
    meter["ig"] = 0.1
    assert safety.check(data, []) == []
    data["dcdc"]["status"] = {"status": "0x0041", "operationMode": "Heteronomy CV", "alarmState": "No alarm"}
    data["dcdc"]["param"]["dig"], meter["ig"] = 1.0, -1.0  # charging with ig < 0: apis-main's sign is wrong
    found = safety.check(data, CHARGER)
    assert [f.key for f in found] == [
        "ERROR_CHARGE_INVALID_METER_IG"
    ] and "0.875 <= dcdc.meter.ig <= 1.125" in found[0].expected
    assert [f.key for f in safety.check(data, [])] == [
        "ERROR_DDCON_ACTIVE_BUT_NO_DEAL",
        "ERROR_CHARGE_INVALID_METER_IG",
    ]
    data["battery"]["battery_operation_status"] = 0
    meter["vg"] = 390.0
    keys = {(f.key, f.level) for f in safety.check(data, CHARGER, ignore_dynamic=True)}
    assert keys == {("battery_operation_status", "ERROR"), ("meter.vg", "ERROR")}


def test_global_current_balance_is_apis_mains():
    safety = GlobalSafety(Policy())
    data = {u: {"dcdc": {"meter": {"ig": ig}}} for u, ig in (("a", 1.0), ("b", -1.0), ("c", 0.3))}
    deals = [DealCurrents("b", "a", True), DealCurrents("b", "c", False)]
    assert safety.check(data, deals) == []  # c's deal is not running on both sides
    deals = [DealCurrents("b", "a", True), DealCurrents("b", "c", True)]
    assert safety.check(data, deals) == []  # |0.3| A <= 3 units x 0.125 A
    data["c"]["dcdc"]["meter"]["ig"] = 0.4
    assert [f.level for f in safety.check(data, deals)] == ["WARN"]
    assert [f.level for f in safety.check(data, deals)] == ["ERROR"]


def test_command_line_against_a_server_process(process):
    server = process("--simulate", "--host", "127.0.0.1")
    server.wait_ready()
    url = "http://127.0.0.1:%d" % server.port
    done = subprocess.run(
        [sys.executable, "-m", "apismain", "--url", url, "--period", "0.2", "charge", "--dig", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DRIVERS,
    )
    assert done.returncode == 0, done.stderr
    assert "CHARGE  mode 0x0041 (Heteronomy CV)" in done.stdout and done.stdout.strip().endswith("passed")
    done = subprocess.run(
        [sys.executable, "-m", "apismain", "--url", "http://127.0.0.1:%d" % free_port(), "poll"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=DRIVERS,
    )
    assert done.returncode == 1
    assert (
        "FAILED: request /version/get: expected 200" in done.stderr
        and "DataAcquisition.java:713-762" in done.stderr
    )


# --- 2. a deal on a 3-node essx-grid ------------------------------------------------------

#: node 2 is the large-capacity unit the voltage reference moves to (DealActivation.java:484-493).
GRID_POLICY = dataclasses.replace(FAST, large_capacity_unit_ids=("n2",), member_unit_ids=("n0", "n1", "n2"))


@pytest.fixture
def grid3(make_grid):
    """A 3-node grid (SPEED x real time) and apis-main's view of each node (n0, n1, n2)."""
    g = make_grid([NodeSpec()] * 3)
    nodes = {"n%d" % i: Node(g.urls[i], unit_id="n%d" % i, policy=GRID_POLICY) for i in range(3)}
    try:
        for n in nodes.values():
            assert n.negotiate() == "2"
        yield g, nodes
    finally:
        for n in nodes.values():
            n.close()


def run_deals(g, nodes, before_loop=None):
    """n1 discharges 1 A into n0 (20 Wh), then into n2 (40 Wh): the voltage reference starts
    on n0 and moves to n2; the authorization walk always picks 330 V."""
    gm = GridMaster(nodes, GRID_POLICY, speed=SPEED, rng=lambda: 0.0)
    first, second = gm.add(Deal("n1", "n0", 20, 1.0)), gm.add(Deal("n1", "n2", 40, 1.0))
    before = {n["node"]: n["rsoc"] for n in g.snapshot()["nodes"]}
    gm.run(90, before_loop)
    assert gm.finished == [first, second] and gm.deals == []
    # each deal ended once the energy from its charge unit's wb passed its amount (DealCumulation.java:71)
    for deal in (first, second):
        assert deal.amount_wh < deal.cumulated_wh < deal.amount_wh * 4, deal
    assert gm.global_findings == []  # sum of ig of the dealing units within 0.125 A per unit
    body = g.snapshot()
    assert [n["mode"] for n in body["nodes"]] == ["0x0000"] * 3 and not body["bus"]["up"]
    after = {n["node"]: n["rsoc"] for n in body["nodes"]}
    assert after[0] > before[0] and after[2] > before[2] and after[1] < before[1]
    return gm


HANDOVER = [
    ("n0", "/dcdc/set?dvg=349.9878&drg=0.039"),  # WillHandOver
    ("n2", "/dcdc/set?mode=0x0014&dvg=349.9878&dig=2.3&drg=0.039"),  # WillTakeOver
    ("n0", "/dcdc/set?mode=0x0041&dvg=350.0&dig=0.9994507&drg=0"),  # DidHandOver: CHARGE at |ig|
    ("n2", "/dcdc/set?dvg=349.9878&drg=0"),
]  # DidTakeOver


def test_deal_with_voltage_reference_handover_until_its_energy(grid3):
    g, nodes = grid3
    run_deals(g, nodes)
    assert sets(nodes["n0"]) == [
        "/dcdc/set?mode=0x0014&dvg=350.0&dig=2.3&drg=0",  # the first deal's voltage reference
        "/dcdc/set?dvg=330.0&drg=0",
        "/dcdc/set?dvg=330.0&drg=0",
        "/dcdc/set?dvg=330.0&drg=0",
        "/dcdc/set?dvg=349.9878&drg=0",  # authorization walk and back
        HANDOVER[0][1],
        HANDOVER[2][1],
        "/dcdc/set?dig=0.0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]
    assert sets(nodes["n1"]) == [
        "/dcdc/set?mode=0x0002&dvg=380.0&dig=1.0&drg=0",
        "/dcdc/set?dig=1.0",  # DISCHARGE 1 A
        "/dcdc/set?dig=1.9994507",  # + 1 A for the second deal
        "/dcdc/set?dig=0.9994507",  # the first deal stops
        "/dcdc/set?dig=0.0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]
    assert sets(nodes["n2"]) == [
        HANDOVER[1][1],
        HANDOVER[3][1],
        "/dcdc/set?dvg=310.0&drg=0",
        "/dcdc/set?mode=0x0000&dvg=350.0&dig=0.0&drg=0",
    ]
    ordered = sorted((a.started, unit, a.path) for unit, n in nodes.items() for a in n.control_link.attempts)
    assert [(u, p) for _, u, p in ordered if (u, p) in HANDOVER] == HANDOVER
    assert all(n.warnings == [] for n in nodes.values())
    assert all(n.data_link.connections == 1 and n.control_link.connections == 1 for n in nodes.values())


# --- 3. the same under the simulators' faults -----------------------------------------------


def arm_dcdc(sim, kind, count=DCDC_TRIES):
    """``kind`` for the converter's next ``count`` commands: one failed HTTP attempt."""
    kw = {"seconds": 0.2} if kind == "delay" else {"ercd": 0xFFFE} if kind == "nak_invalid" else {}
    sim.inject("nak" if kind == "nak_invalid" else kind, count=1 if kind == "nak_invalid" else count, **kw)


def arm_battery(sim, kind, count=BATTERY_TRIES):
    """``kind`` for the battery's next ``count`` requests."""
    sim.inject(kind, count=count, nbytes=NOISE_BYTES)


def single_node_scenario(node, arm, arm_commands=True):
    """poll, CHARGE 1.5 A (and a poll), poll, WAIT (and a poll); ``arm()`` before each
    step, or only before the two plain polls when not ``arm_commands``."""
    for roles, action in (
        (None, None),
        (CHARGER, lambda: commands.charge(node, 1.5)),
        (None, None),
        (WAITING, lambda: commands.wait(node)),
    ):
        if action is None:
            arm()
            node.poll()
        else:
            if arm_commands:
                arm()
            step(node, roles, action)


#: Faults the driver cannot absorb in one request, so apis-main's second attempt is needed.
NEED_A_RETRY = {"silent", "lost", "half", "bad_checksum", "nak", "nak_invalid"}
#: Battery faults the driver's reader absorbs within one read: it skips the echo of its
#: request and noise before the reply (NOISE_BYTES of it: 0.1 s at 9600 baud, well inside
#: the tests' 0.3 s battery timeout).
BATTERY_ABSORBED = {"echo", "noise"}
NOISE_BYTES = 100


@pytest.mark.parametrize("kind", sorted(eza2500_simulator.FAULTS) + ["nak_invalid"])
def test_converter_faults_are_carried_by_apis_mains_attempts(http, node, kind):
    sim = http.system.dcdc_sim
    try:
        single_node_scenario(node, lambda: arm_dcdc(sim, kind))
    finally:
        sim.clear_faults()
    assert node.mode == "WAIT"
    tried = attempts(node)
    assert max(a.seconds for a in tried) < 5.0
    if kind in NEED_A_RETRY:
        assert any(not a.ok for a in tried)


@pytest.mark.parametrize("kind", BATTERY_FAULTS)
def test_battery_faults_are_carried_by_apis_mains_attempts(http, node, kind):
    sim = http.system.battery_sim
    try:
        single_node_scenario(node, lambda: arm_battery(sim, kind), arm_commands=False)
    finally:
        sim.clear_faults()
    assert node.mode == "WAIT"
    tried = attempts(node)
    assert max(a.seconds for a in tried) < 5.0
    if kind not in BATTERY_ABSORBED:
        assert any(
            not a.ok for a in node.data_link.attempts
        )  # the driver answered 400; apis-main tried again


def test_deal_under_faults(grid3):
    """Each main loop arms a converter fault (even loops) or a battery fault (odd loops) on every node."""
    g, nodes = grid3
    dcdc_kinds = sorted(NEED_A_RETRY - {"nak_invalid"})
    battery_kinds = list(BATTERY_FAULTS)
    loop = [0]

    def arm():
        i = loop[0]
        loop[0] += 1
        for grid_node in g.grid.nodes:
            if i % 2 == 0:
                arm_dcdc(grid_node.dcdc_sim, dcdc_kinds[(i // 2) % len(dcdc_kinds)])
            else:
                arm_battery(grid_node.battery_sim, battery_kinds[(i // 2) % len(battery_kinds)])

    try:
        run_deals(g, nodes, arm)
    finally:
        for grid_node in g.grid.nodes:
            grid_node.dcdc_sim.clear_faults()
            grid_node.battery_sim.clear_faults()
    tried = attempts(*nodes.values())
    assert max(a.seconds for a in tried) < 5.0
    assert sum(not a.ok for a in tried) >= 3
