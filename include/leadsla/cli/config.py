"""`leadsla config check`: every configuration file checked together, and with --org against the org.

Prints one line per problem, each naming both places that disagree, and exits 2 when there is
any; prints what was checked and exits 0 when the files agree. Read-only.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="check the configuration files together")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate lifecycle, policy, quality, field mapping and reports together",
        description="Load every configuration file (the active ones unless named) and check that a "
        "status, rejection reason, field or SLA named in one is declared in the others. With --org, "
        "also compare the field mapping and the lifecycle with the org's describe() (through the "
        "salesforce_default connection): mapped fields must exist and the Status, StageName and "
        "rejection-reason picklists must match the lifecycle.",
    )
    check.add_argument("--policy", help="SLA policy YAML (default: $LEADSLA_POLICY_PATH or the shipped one)")
    check.add_argument(
        "--lifecycle", help="lifecycle YAML (default: $LEADSLA_LIFECYCLE_PATH or the shipped one)"
    )
    check.add_argument(
        "--mapping", help="CRM field mapping YAML (default: $LEADSLA_CRM_MAPPING or the shipped one)"
    )
    check.add_argument("--quality", help="quality.yaml (default: the shipped one)")
    check.add_argument("--reports", help="reports.yaml (default: the shipped one)")
    check.add_argument("--org", action="store_true", help="also check against the org's describe()")
    check.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from leadsla.configuration import check_files, org_problems

    result = check_files(
        policy=args.policy,
        lifecycle=args.lifecycle,
        mapping=args.mapping,
        quality=args.quality,
        reports=args.reports,
    )
    problems = list(result.problems)
    if args.org and result.configuration is not None:
        from leadsla.crm.salesforce import SalesforceClient, conn_id_from_env

        client = SalesforceClient(conn_id_from_env())
        problems += org_problems(result.configuration, client.describe_fields, client.describe_picklists)
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(f"{len(problems)} problem(s): the configuration was not accepted")
        return 2
    cfg = result.configuration
    print(
        f"ok: {cfg.lifecycle.source}, {cfg.policy.source}, {cfg.mapping.path}, quality.yaml and "
        f"reports.yaml agree ({len(cfg.policy.slas)} SLAs, {len(cfg.lifecycle.objects)} lifecycles)"
        + (" and match the org" if args.org else "")
    )
    return 0
