"""`leadsla policy check [FILE]`: validate the SLA policy and print its matrix for people to sign off.

Read-only: it never writes the store or the policy file.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("policy", help="work with the SLA policy file")
    actions = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the SLA policy and print the SLA matrix",
        description="Validate an SLA policy file (default: the shipped include/config/sla_policy.yaml) "
        "and print one row per SLA tier: handoff, team, tier, target, checkpoints, escalation path.",
    )
    check.add_argument("file", nargs="?", help="policy YAML (default: the shipped policy)")
    check.set_defaults(handler=run_check)


def _escalation(sla) -> str:
    b = sla.breach
    parts = [f"at {b.at}"]
    if b.reassign:
        parts.append("reassign " + " > ".join(b.reassign))
    if b.lock_hours:
        parts.append(f"lock {b.lock_hours:g}h")
    if b.notify:
        parts.append(f"{b.priority} {'+'.join(b.channels)} to " + ", ".join(b.notify))
    parts += _ladder(sla)
    return "; ".join(parts)


def _ladder(sla) -> list[str]:
    """The escalation ladder's rungs beyond `breach.notify`, for sign-off (`decisions.ladder`)."""
    if not sla.laddered:
        return ["ladder: flat (every breach to all of them at once)"]
    ladder, parts = sla.ladder, []
    if ladder.repeat is not None:
        r = ladder.repeat
        what = "any SLA" if r.across == "all_slas" else "this SLA"
        parts.append(f"breach #{r.breach}+ in {r.within_days}d ({what}) -> " + ", ".join(r.notify))
    if ladder.critical_notify():
        parts.append("critical tier at once -> " + ", ".join(ladder.critical_notify()))
    if ladder.digest is not None:
        d = ladder.digest
        parts.append(f"daily digest {d.hour:02d}:00 [{'+'.join(d.channels)}] -> " + ", ".join(d.notify))
    return parts


def matrix(policy) -> list[list[str]]:
    """One row per (SLA, tier), in priority order."""
    rows = []
    for sla in policy.slas:
        checkpoints = "; ".join(
            f"{cp.id} {cp.at} -> {', '.join(cp.notify)} [{'+'.join(cp.channels)}]" for cp in sla.checkpoints
        )
        for tier in sla.tiers:
            when = (
                "default"
                if tier.default
                else " & ".join(f"{k} in {'/'.join(v)}" for k, v in (tier.when or {}).items())
            )
            rows.append(
                [
                    f"{sla.id}{'' if sla.enabled else ' (disabled)'}",
                    sla.handoff,
                    sla.team or "-",
                    f"{tier.id}{' (critical)' if tier.critical else ''}: {when}",
                    tier.target.describe(),
                    checkpoints or "-",
                    _escalation(sla),
                ]
            )
    return rows


def run_check(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from leadsla.policy import load_policy

    policy = load_policy(args.file)
    print(
        f"{policy.source}: valid SLA policy version {policy.version}, effective from "
        f"{policy.effective_from.isoformat()}: {len(policy.slas)} SLAs, {len(policy.calendars)} calendars, "
        f"{len(policy.teams)} teams"
    )
    headers = ["sla", "handoff", "team", "tier (match)", "target", "checkpoints", "escalation"]
    print(
        tabulate(
            matrix(policy), headers=headers, tablefmt="simple", maxcolwidths=[None, 28, None, 34, 30, 48, 52]
        )
    )
    teams = [
        [name, t.calendar, policy.calendar(t.calendar).timezone, t.queue or "-"]
        for name, t in policy.teams.items()
    ]
    print()
    print(tabulate(teams, headers=["team", "calendar", "timezone", "queue"], tablefmt="simple"))
    return 0
