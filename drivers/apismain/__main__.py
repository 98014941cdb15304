"""``python3 -m apismain`` / ``apis-main-client``: apis-main's calls against a node.

    apis-main-client --url http://127.0.0.1:8080 poll [--count 3]
    apis-main-client --url URL wait
    apis-main-client --url URL charge --dig 2 [--hold 10]
    apis-main-client --url URL discharge --dig 2
    apis-main-client --url URL voltage-reference [--authorize]
    apis-main-client --url URL scram
    apis-main-client deal --charger URL --discharger URL --wh 10 [--dig 1] [--speed 60]

Every scenario starts as apis-main does (``/version/get``, a poll) and
polls after each command with the local safety checks; the single-unit
scenarios end with WAIT. Exit status 0 when every step passed apis-main's
checks, 1 with the failure on stderr (route, query, expectation, apis-main's
file:line), 2 for a usage mistake.
"""

import argparse
import dataclasses
import logging
import sys
import time
from typing import Callable, List, Optional

from . import commands
from .deal import Deal, GridMaster
from .errors import ApisMainError
from .node import Node
from .policy import Policy
from .safety import DealRole

__all__ = ["main", "parse_args"]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line (argparse exits 2 on a mistake)."""
    p = argparse.ArgumentParser(
        prog="apis-main-client", description="apis-main (interface v2) against a driver node"
    )
    p.add_argument("--url", help="the node, http://HOST:PORT (not for deal)")
    p.add_argument(
        "--period",
        type=float,
        default=None,
        help="seconds between polls (default POLICY's 5; apis-main's dataAcquisitionPeriodMsec)",
    )
    p.add_argument(
        "--no-operation-grid-voltage",
        action="store_true",
        help="a POLICY without operationGridVoltageV: WAIT sends dvg=0.0",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="info shows every request as apis-main logs it ('uri : ...')",
    )
    sub = p.add_subparsers(dest="scenario", required=True)
    poll = sub.add_parser("poll", help="/version/get, then /all/get with the local safety checks")
    poll.add_argument("--count", type=int, default=1)
    sub.add_parser("wait", help="WAIT")
    for name in ("charge", "discharge"):
        s = sub.add_parser(name, help=name.upper() + " with its current ramp, then WAIT")
        s.add_argument("--dig", type=float, required=True, help="grid current, A")
        s.add_argument("--hold", type=float, default=0.0, help="seconds to hold (polling) before WAIT")
    vr = sub.add_parser("voltage-reference", help="VOLTAGE_REFERENCE, then WAIT")
    vr.add_argument("--authorize", action="store_true", help="also the voltage-reference authorization walk")
    vr.add_argument("--hold", type=float, default=0.0, help="seconds to hold (polling) before WAIT")
    sub.add_parser("scram", help="Scram (WAIT without the lock)")
    deal = sub.add_parser("deal", help="a deal between two nodes until its energy (from wb) is done")
    deal.add_argument("--charger", required=True, help="the charge unit, http://HOST:PORT")
    deal.add_argument("--discharger", required=True, help="the discharge unit, http://HOST:PORT")
    deal.add_argument("--wh", type=float, required=True, help="dealAmountWh, Wh")
    deal.add_argument("--dig", type=float, default=None, help="dealGridCurrentA, A (default POLICY's 2)")
    deal.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second of the nodes' batteries (essx-grid --speed)",
    )
    deal.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    args = p.parse_args(argv)
    if args.scenario != "deal" and not args.url:
        p.error("--url is required for %s" % args.scenario)
    return args


def _policy(args: argparse.Namespace) -> Policy:
    changes = {}
    if args.no_operation_grid_voltage:
        changes["operation_grid_voltage_v"] = None
    if args.period is not None:
        changes["data_acquisition_period_s"] = args.period
        changes["main_loop_period_s"] = args.period
    return dataclasses.replace(Policy(), **changes)


def _show(node: Node, what: str) -> None:
    d = node.cache.get("dcdc", {})
    meter, battery = d.get("meter", {}), node.cache.get("battery", {})
    print(
        "%s: %s  mode %s (%s)  vg %s V  ig %s A  wb %s W  rsoc %s %%"
        % (
            node.unit_id,
            what,
            d.get("status", {}).get("status"),
            d.get("status", {}).get("operationMode"),
            meter.get("vg"),
            meter.get("ig"),
            meter.get("wb"),
            battery.get("rsoc"),
        )
    )


def _step(node: Node, what: str, roles: List[DealRole], action: Callable[[], object]) -> None:
    """Run a command with the deal roles apis-main would have, then poll."""
    with node.lock:
        node.deal_roles = roles
        action()
    node.poll()
    _show(node, what)


def _hold(node: Node, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(node.policy.data_acquisition_period_s, max(end - time.monotonic(), 0)))
        node.poll()
        _show(node, "poll")


def _single(args: argparse.Namespace, node: Node) -> None:
    node.negotiate()
    print("%s: comm_interface_version major %s" % (node.unit_id, node.interface_version))
    node.poll()
    _show(node, "poll")
    s = args.scenario
    if s == "poll":
        for _ in range(args.count - 1):
            time.sleep(node.policy.data_acquisition_period_s)
            node.poll()
            _show(node, "poll")
        return
    if s == "scram":
        _step(node, "scram", [], lambda: commands.scram(node))
        return
    if s in ("charge", "discharge"):
        role = [DealRole(discharge=(s == "discharge"))]
        _step(
            node,
            s.upper(),
            role,
            lambda: (commands.charge if s == "charge" else commands.discharge)(node, args.dig),
        )
        _hold(node, args.hold)
    elif s == "voltage-reference":
        role = [DealRole(discharge=False, master_side_active=True, both_sides_active=False)]
        _step(node, "VOLTAGE_REFERENCE", role, lambda: commands.voltage_reference(node))
        if args.authorize:
            _step(
                node,
                "voltageReferenceAuthorization",
                role,
                lambda: commands.voltage_reference_authorization(node),
            )
        _hold(node, args.hold)
    _step(node, "WAIT", [], lambda: commands.wait(node))


def _deal(args: argparse.Namespace, policy: Policy) -> None:
    nodes = {
        "charger": Node(args.charger, unit_id="charger", policy=policy),
        "discharger": Node(args.discharger, unit_id="discharger", policy=policy),
    }
    try:
        for node in nodes.values():
            node.negotiate()
        gm = GridMaster(nodes, policy, speed=args.speed)
        deal = gm.add(
            Deal(
                "discharger",
                "charger",
                args.wh,
                args.dig if args.dig is not None else policy.deal_grid_current_a,
            )
        )
        gm.run(args.timeout)
        print(
            "deal %s done: %.3f Wh of %g Wh (from the charge unit's wb)"
            % (deal.deal_id, deal.cumulated_wh, deal.amount_wh)
        )
    finally:
        for node in nodes.values():
            node.close()


def main(argv: Optional[List[str]] = None) -> int:
    """Run a scenario; the exit status (0 passed, 1 failed, 2 usage)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        policy = _policy(args)
        if args.scenario == "deal":
            _deal(args, policy)
        else:
            node = Node(args.url, policy=policy)
            try:
                _single(args, node)
            finally:
                node.close()
    except ValueError as e:
        print("apis-main-client: %s" % e, file=sys.stderr)
        return 2
    except ApisMainError as e:
        print("apis-main-client: FAILED: %s" % e, file=sys.stderr)
        return 1
    except TimeoutError as e:
        print("apis-main-client: FAILED: %s" % e, file=sys.stderr)
        return 1
    print("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
