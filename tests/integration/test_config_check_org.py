"""`leadsla config check --org` against the local Salesforce stand-in: the shipped files match the
demo org, and a picklist changed in the org (its metadata, include/sandbox/sf_schema.py) is
reported as drift, one line per disagreement, naming both places."""

from __future__ import annotations

import dataclasses

import pytest

from leadsla.cli import main
from leadsla.lifecycle import active_lifecycle_path
from sandbox import sf_schema

pytest_plugins = ["tests.sandbox_fixtures"]


def change_picklist(monkeypatch: pytest.MonkeyPatch, object_name: str, field: str, values: list[str]) -> None:
    """The stand-in's describe() of `object_name` offers `values` for `field` (for this test)."""
    obj = sf_schema.sobject(object_name)
    fields = tuple(
        dataclasses.replace(f, picklist=tuple(values)) if f.name == field else f for f in obj.fields
    )
    monkeypatch.setitem(sf_schema.OBJECTS, object_name.lower(), dataclasses.replace(obj, fields=fields))


def test_the_shipped_files_match_the_demo_org(salesforce_sandbox, capsys) -> None:
    assert main(["config", "check", "--org"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("agree (5 SLAs, 2 lifecycles) and match the org")


def test_a_picklist_changed_in_the_org_is_drift(salesforce_sandbox, monkeypatch, capsys) -> None:
    statuses = [s for s in sf_schema.LEAD_STATUSES if s != "SQL"] + ["Working - Contacted"]
    change_picklist(monkeypatch, "Lead", "Status", statuses)
    reasons = [*sf_schema.REJECTION_REASONS, "Spam"]
    change_picklist(monkeypatch, "Lead", "Rejection_Reason__c", reasons)
    assert main(["config", "check", "--org"]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "3 problem(s): the configuration was not accepted"
    problems = sorted(line.removeprefix("problem: ") for line in lines[:-1])
    assert problems[0].startswith(
        f"{active_lifecycle_path()}: Lead status 'SQL' is not a value of the org's "
    )
    assert "the org's Lead.Rejection_Reason__c value 'Spam' is not a signed-off reason in" in problems[1]
    assert "the org's Lead.Status value 'Working - Contacted' is neither a status in" in problems[2]
    assert "crm_fields.yaml status_map.Lead" in problems[2]
