"""`leadsla config check`: the shipped files agree (with both shipped policies; `make test` is the CI
that runs it), and one planted mismatch of each kind is caught, one line per disagreement, each
naming both places. The org part runs on fake describe() answers here; against the Salesforce
stand-in in tests/integration/test_config_check_org.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from leadsla.cli import main
from leadsla.configuration import (
    FILES,
    ConfigurationError,
    check_files,
    org_problems,
    read_files,
)
from leadsla.paths import config_dir

SHIPPED_POLICIES = ["sla_policy.yaml", "sla_policy.flat.yaml"]


def planted(tmp_path: Path, role: str, edit: Callable[[dict], None], policy: str = "sla_policy.yaml") -> dict:
    """Copies of the shipped files in `tmp_path` with `edit` applied to one of them (by role);
    returns `check_files`' keyword arguments naming every copy."""
    paths = {}
    for name_role, name in FILES.items():
        source = config_dir() / (policy if name_role == "policy" else name)
        paths[name_role] = tmp_path / name
        shutil.copy(source, paths[name_role])
    raw = yaml.safe_load(paths[role].read_text())
    edit(raw)
    paths[role].write_text(yaml.safe_dump(raw, sort_keys=False))
    return {role: str(path) for role, path in paths.items()}


def only_problem(paths: dict) -> str:
    check = check_files(**paths)
    assert len(check.problems) == 1, check.problems
    return check.problems[0]


def sla(raw: dict, sla_id: str) -> dict:
    return next(s for s in raw["slas"] if s["id"] == sla_id)


# --- the shipped files --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", SHIPPED_POLICIES)
def test_the_shipped_files_agree_with_each_shipped_policy(policy: str) -> None:
    check = check_files(policy=config_dir() / policy)
    assert check.problems == []
    assert check.ok and check.raise_for_problems().policy.slas


@pytest.mark.parametrize("policy", SHIPPED_POLICIES)
def test_config_check_command_is_clean_on_the_shipped_files(policy: str, capsys) -> None:
    assert main(["config", "check", "--policy", str(config_dir() / policy)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "agree (5 SLAs, 2 lifecycles)" in out


def test_config_check_command_prints_one_line_per_problem_and_exits_2(tmp_path: Path, capsys) -> None:
    def two_problems(raw: dict) -> None:
        raw["sla_id"] = "sales_touches"
        raw["campaign_field"] = "Campaign_Name__c"

    paths = planted(tmp_path, "reports", two_problems)
    args = [f"--{role}={path}" for role, path in paths.items()]
    assert main(["config", "check", *args]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["problem", "problem", "2 problem(s)"]
    assert "'sales_touches' is not an SLA of" in lines[0] and "'Campaign_Name__c'" in lines[1]


# --- one planted mismatch of each kind ----------------------------------------------------------


def test_a_policy_status_missing_from_the_lifecycle(tmp_path: Path) -> None:
    paths = planted(
        tmp_path, "policy", lambda raw: sla(raw, "sales_touch")["start"].update(becomes="Accepted")
    )
    problem = only_problem(paths)
    assert problem.startswith(f"{paths['policy']}: slas[0].start.becomes: 'Accepted': not a Lead Status in ")
    assert paths["lifecycle"] in problem and "expected one of New, MQL, SAL" in problem


def test_a_pause_status_that_is_not_paused_in_the_lifecycle(tmp_path: Path) -> None:
    paths = planted(
        tmp_path, "policy", lambda raw: sla(raw, "sales_touch")["pause"][0].update({"in": ["New"]})
    )
    problem = only_problem(paths)
    assert problem == (
        f"{paths['policy']}: slas[0].pause[0].in: 'New': a pause status must have stage: paused in "
        f"{paths['lifecycle']} (it is open)"
    )


def test_a_status_map_value_that_is_no_lifecycle_status(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["status_map"] = {"Lead": {"Open - Not Contacted": "New", "Working - Contacted": "Working"}}

    paths = planted(tmp_path, "mapping", edit)
    problem = only_problem(paths)
    assert problem.startswith(
        f"{paths['mapping']}: status_map.Lead.Working - Contacted: 'Working' is not a Lead status in "
        f"{paths['lifecycle']}"
    )


def test_a_field_a_rule_reads_that_is_not_synced(tmp_path: Path) -> None:
    paths = planted(tmp_path, "mapping", lambda raw: raw["objects"]["Lead"]["fields"].pop("Lead_Replied__c"))
    assert check_files(**paths).problems == [  # the pause rule and the recycling rule both read it
        f"{paths['policy']}: slas[0].pause[1]: reads Lead.Lead_Replied__c, which {paths['mapping']} does not "
        "sync (objects.Lead.fields)",
        f"{paths['policy']}: recycle.replied_field: reads Lead.Lead_Replied__c, which {paths['mapping']} "
        "does not sync (objects.Lead.fields)",
    ]


def test_a_field_a_rule_reads_that_sla_monitor_stamps(tmp_path: Path) -> None:
    """A clock must never follow our own stamps: a rule on a stamped field is refused."""
    paths = planted(
        tmp_path, "mapping", lambda raw: raw["sla_fields"].__setitem__("sla_breach", "Lead_Replied__c")
    )
    assert only_problem(paths) == (
        f"{paths['policy']}: slas[0].pause[1]: reads Lead.Lead_Replied__c, which sla_monitor stamps itself "
        f"({paths['mapping']} sla_fields.sla_breach): a clock must never follow its own stamps"
    )


def test_a_field_a_rule_reads_whose_history_is_not_synced(tmp_path: Path) -> None:
    paths = planted(
        tmp_path,
        "mapping",
        lambda raw: raw["objects"]["LeadHistory"]["filter"]["Field"].remove("Lead_Replied__c"),
    )
    assert check_files(**paths).problems == [
        f"{paths['policy']}: slas[0].pause[1]: Lead.Lead_Replied__c changes are not synced: add it to "
        f"{paths['mapping']} objects.LeadHistory.filter.Field",
        f"{paths['policy']}: recycle.replied_field: Lead.Lead_Replied__c changes are not synced: add it to "
        f"{paths['mapping']} objects.LeadHistory.filter.Field",
    ]


def test_a_touch_option_whose_activity_field_is_not_mapped(tmp_path: Path) -> None:
    paths = planted(tmp_path, "mapping", lambda raw: raw["objects"]["Task"]["fields"].pop("Type"))
    assert only_problem(paths) == (
        f"{paths['policy']}: slas[0].stop[0].touch.types: reads Task.Type, which {paths['mapping']} does not "
        "sync (objects.Task.fields)"
    )


def test_a_field_recycling_stamps_that_is_not_a_write_back_field(tmp_path: Path) -> None:
    paths = planted(tmp_path, "mapping", lambda raw: raw["sla_fields"].pop("contact_attempts"))
    assert only_problem(paths) == (
        f"{paths['policy']}: recycle: stamps 'contact_attempts', which {paths['mapping']} does not name "
        "(sla_fields)"
    )


def test_escalation_needs_the_action_id_field(tmp_path: Path) -> None:
    """A breach write carries its action id, so a retry after a crash knows its own write."""
    paths = planted(tmp_path, "mapping", lambda raw: raw["sla_fields"].pop("sla_action_id"))
    assert only_problem(paths) == (
        f"{paths['policy']}: slas[0].breach: writes 'sla_action_id' on the lead, which {paths['mapping']} "
        "does not name (sla_fields)"
    )


def test_the_re_entry_needs_the_mql_and_sal_dates_only_when_the_policy_re_enters(tmp_path: Path) -> None:
    def without_dates(raw: dict) -> None:
        raw["sla_fields"].pop("mql_date")
        raw["sla_fields"].pop("sal_date")

    paths = planted(tmp_path, "mapping", without_dates)
    assert check_files(**paths).problems == [
        f"{paths['policy']}: recycle: stamps '{name}', which {paths['mapping']} does not name (sla_fields)"
        for name in ("mql_date", "sal_date")
    ]
    (tmp_path / "stays").mkdir()
    paths = planted(tmp_path / "stays", "mapping", without_dates)
    policy = yaml.safe_load(Path(paths["policy"]).read_text())
    policy["recycle"]["nurture"]["reenter"] = None
    Path(paths["policy"]).write_text(yaml.safe_dump(policy, sort_keys=False))
    assert check_files(**paths).problems == []


def test_the_lifecycle_reason_field_not_synced(tmp_path: Path) -> None:
    paths = planted(
        tmp_path, "lifecycle", lambda raw: raw["objects"]["Lead"].update(reason_field="Reject_Reason__c")
    )
    assert only_problem(paths) == (
        f"{paths['lifecycle']}: objects.Lead.reason_field: 'Reject_Reason__c' is not read by "
        f"{paths['mapping']} (objects.Lead.fields)"
    )


def test_the_lifecycle_field_not_synced(tmp_path: Path) -> None:
    paths = planted(tmp_path, "lifecycle", lambda raw: raw["objects"]["Opportunity"].update(field="Stage__c"))
    assert only_problem(paths) == (
        f"{paths['lifecycle']}: objects.Opportunity.field: 'Stage__c' is not read by {paths['mapping']} "
        "(objects.Opportunity.fields)"
    )


def test_reports_naming_an_unknown_sla(tmp_path: Path) -> None:
    paths = planted(tmp_path, "reports", lambda raw: raw.update(sla_id="sales_touches"))
    problem = only_problem(paths)
    assert problem.startswith(f"reports.yaml: sla_id: 'sales_touches' is not an SLA of {paths['policy']} (")


def test_reports_campaign_field_not_mapped(tmp_path: Path) -> None:
    paths = planted(tmp_path, "reports", lambda raw: raw.update(campaign_field="Campaign_Name__c"))
    assert only_problem(paths) == (
        f"reports.yaml: campaign_field: 'Campaign_Name__c' is not read by {paths['mapping']} "
        "(objects.Lead.fields)"
    )


def test_a_team_manager_the_policy_cannot_resolve_is_one_line_per_place(tmp_path: Path) -> None:
    paths = planted(tmp_path, "policy", lambda raw: raw["teams"]["cs"].pop("manager"))
    problems = check_files(**paths).problems
    where = [p.split(": ")[1] for p in problems]
    assert where == [
        "slas[2].checkpoints[1].notify[1]",
        "slas[2].breach.notify[1]",
        "slas[3].checkpoints[1].notify[1]",
        "slas[3].breach.notify[1]",
    ]
    assert all(
        p.startswith(paths["policy"]) and "cannot resolve this role: teams.cs.manager is not set" in p
        for p in problems
    )


def test_several_mismatches_in_several_files_are_all_listed_at_once(tmp_path: Path) -> None:
    paths = planted(
        tmp_path, "policy", lambda raw: sla(raw, "sales_touch")["start"].update(becomes="Accepted")
    )
    reports = yaml.safe_load(Path(paths["reports"]).read_text())
    reports["campaign_field"] = "Campaign_Name__c"
    Path(paths["reports"]).write_text(yaml.safe_dump(reports))
    check = check_files(**paths)
    assert len(check.problems) == 2 and check.configuration is None  # the policy did not load
    with pytest.raises(ConfigurationError) as err:
        check.raise_for_problems()
    lines = str(err.value).splitlines()
    assert lines[0] == "the configuration has 2 problem(s):"
    assert (
        lines[1].startswith(f"- {paths['policy']}: slas[0].start.becomes") and "Campaign_Name__c" in lines[2]
    )


def test_a_policy_naming_another_lifecycle_file(tmp_path: Path) -> None:
    paths = planted(tmp_path, "policy", lambda raw: raw.update(lifecycle="other_lifecycle.yaml"))
    shutil.copy(paths["lifecycle"], tmp_path / "other_lifecycle.yaml")
    problem = only_problem(paths)
    assert problem.startswith(f"{paths['policy']}: lifecycle: names {tmp_path / 'other_lifecycle.yaml'}")
    assert problem.endswith(f"the active lifecycle is {paths['lifecycle']}: point both at one file")


def test_the_files_digest_changes_with_any_file(tmp_path: Path) -> None:
    paths = planted(tmp_path, "reports", lambda raw: None)
    before = read_files(**paths).digest
    assert read_files(**paths).digest == before
    Path(paths["quality"]).write_text(Path(paths["quality"]).read_text() + "\n# edited\n")
    assert read_files(**paths).digest != before


# --- the org: fake describe() -------------------------------------------------------------------


def _org(configuration, *, drop_fields=(), statuses=None, reasons=None):
    """describe() answers of an org that matches the configuration, but for what is changed."""
    lifecycle = configuration.lifecycle

    def describe_fields(name: str) -> set[str]:
        obj = configuration.mapping.objects[name]
        fields = {f.split(".")[0] + "Id" if "." in f else f for f in [*obj.fields, *obj.filter]}
        return fields - {f.split(".")[1] for f in drop_fields if f.startswith(f"{name}.")}

    def describe_picklists(name: str) -> dict[str, list[str]]:
        lc = lifecycle.of(name)
        if lc is None:
            return {}
        found = {lc.field: list(lc.names)}
        if name == "Lead":
            found[lc.field] = list(statuses if statuses is not None else lc.names)
            found[lc.reason_field] = list(reasons if reasons is not None else lc.rejection_reasons)
        return found

    return describe_fields, describe_picklists


@pytest.fixture(scope="module")
def shipped():
    return check_files().raise_for_problems()


def test_an_org_that_matches_has_no_problems(shipped) -> None:
    assert org_problems(shipped, *_org(shipped)) == []


def test_an_org_status_that_is_neither_a_status_nor_mapped(shipped) -> None:
    statuses = [*shipped.lifecycle.lead().names, "Working"]
    problems = org_problems(shipped, *_org(shipped, statuses=statuses))
    assert problems == [
        f"the org's Lead.Status value 'Working' is neither a status in {shipped.lifecycle.source} nor mapped "
        f"to one in {shipped.mapping.path} status_map.Lead"
    ]


def test_a_lifecycle_status_the_org_lacks(shipped) -> None:
    statuses = [s for s in shipped.lifecycle.lead().names if s != "Nurture - contact later"]
    assert org_problems(shipped, *_org(shipped, statuses=statuses)) == [
        f"{shipped.lifecycle.source}: Lead status 'Nurture - contact later' is not a value of the org's "
        f"Lead.Status (nor mapped from one in {shipped.mapping.path} status_map.Lead)"
    ]


def test_a_rejection_reason_on_one_side_only(shipped) -> None:
    reasons = [r for r in shipped.lifecycle.lead().rejection_reasons if r != "Duplicate"] + ["Spam"]
    assert org_problems(shipped, *_org(shipped, reasons=reasons)) == [
        f"the org's Lead.Rejection_Reason__c value 'Spam' is not a signed-off reason in "
        f"{shipped.lifecycle.source}",
        f"{shipped.lifecycle.source}: rejection reason 'Duplicate' is not a value of the org's "
        "Lead.Rejection_Reason__c",
    ]


def test_a_mapped_field_the_org_lacks(shipped) -> None:
    (problem,) = org_problems(shipped, *_org(shipped, drop_fields=["Lead.Lead_Type__c"]))
    assert problem.startswith(f"{shipped.mapping.path}: the org has no field Lead.Lead_Type__c: ")


def test_a_stamp_field_the_org_lacks_is_named_with_what_still_runs(shipped) -> None:
    (problem,) = org_problems(shipped, *_org(shipped, drop_fields=["Lead.SLA_Colour__c"]))
    assert problem == (
        f"{shipped.mapping.path}: the org has no field Lead.SLA_Colour__c: its SLA stamping stops (the sync "
        "and the other SLA fields go on)"
    )


def test_an_org_value_the_status_map_maps_is_no_problem(tmp_path: Path) -> None:
    def edit(raw: dict) -> None:
        raw["status_map"] = {"Lead": {"Open - Not Contacted": "New"}}

    configuration = check_files(**planted(tmp_path, "mapping", edit)).raise_for_problems()
    org_statuses = ["Open - Not Contacted", *configuration.lifecycle.lead().names[1:]]  # no "New" itself
    assert org_problems(configuration, *_org(configuration, statuses=org_statuses)) == []


def test_reports_conversion_not_in_the_synced_history(tmp_path: Path) -> None:
    def plant(raw: dict) -> None:
        raw["conversions"] = {"demo_to_proposal": {"label": "won", "field": "IsClosed", "in": ["true"]}}

    paths = planted(tmp_path, "reports", plant)
    assert only_problem(paths) == (
        f"reports.yaml: conversions.demo_to_proposal.field: 'IsClosed' is not in {paths['mapping']}'s "
        "synced Opportunity field history (objects.Opportunity.fields and the history's filter)"
    )


def test_reports_conversion_of_a_lead_handoff_reads_status(tmp_path: Path) -> None:
    def plant(raw: dict) -> None:
        raw["conversions"] = {"sales_touch": {"label": "hot", "field": "Lead_Score__c", "in": ["90"]}}

    paths = planted(tmp_path, "reports", plant)
    assert only_problem(paths) == (
        "reports.yaml: conversions.sales_touch.field: 'Lead_Score__c': a Lead handoff's conversion is "
        "read from Status (its funnel stages)"
    )
