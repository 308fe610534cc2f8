"""`leadsla qa [--policy FILE]`: run the go-live scenarios against a policy and print pass/fail.

For RevOps to sign off a policy change before it goes live: each scenario of seed 002's QA
checklist and of the lead lifecycle (`leadsla.scenarios`) is run against the policy, its
calendars and the lifecycle, through the engine and the monitor's decisions, at fixed instants.
Prints one row per scenario (pass, fail or n/a, and why) and exits 2 when any failed.
Read-only: nothing is stored or sent.
"""

from __future__ import annotations

import argparse

from leadsla.errors import LeadSlaError

#: Exit status when a scenario failed (the same as an error: the change is not ready).
FAILED = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qa",
        help="run the go-live scenarios against a policy (pass/fail table)",
        description="Run the go-live scenarios (seed 002's QA checklist and the lead lifecycle paths) "
        "against an SLA policy and print one row per scenario: pass, fail (expected vs got) or n/a "
        "(what the policy lacks). Exits 2 when a scenario failed.",
    )
    parser.add_argument("--policy", help="policy YAML (default: $LEADSLA_POLICY_PATH or the shipped one)")
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="run only this scenario (repeatable; default: all)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from leadsla.policy import load_policy
    from leadsla.scenarios.run import SCENARIOS, run_scenarios

    policy = load_policy(args.policy)
    known = [s.name for s in SCENARIOS]
    unknown = [name for name in args.scenario or [] if name not in known]
    if unknown:
        raise LeadSlaError(f"no scenario named {', '.join(unknown)}: expected one of {', '.join(known)}")
    results = run_scenarios(policy, args.scenario)
    print(f"policy: {policy.source} (version {policy.version})")
    rows = [[r.name, r.title, r.status, r.detail] for r in results]
    print(
        tabulate(
            rows,
            headers=["scenario", "what it checks", "result", "detail"],
            tablefmt="simple",
            maxcolwidths=[None, 40, None, 80],
        )
    )
    counts = {status: sum(r.status == status for r in results) for status in ("pass", "fail", "n/a")}
    summary = f"{len(results)} scenarios: {counts['pass']} pass, {counts['fail']} fail, {counts['n/a']} n/a"
    if counts["fail"]:
        print(f"{summary}: do not sign this policy off until the failures are understood")
        return FAILED
    print(summary)
    return 0
