"""The CRM field mapping: the shipped file loads; a bad file fails naming file, key, value, expected."""

from __future__ import annotations

import copy

import pytest
import yaml

from leadsla.crm import mapping
from leadsla.crm.protocol import MappingError


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(mapping.DEFAULT_PATH.read_text())


def test_shipped_mapping_loads_with_default_sla_fields():
    m = mapping.load()
    lead = m.objects["Lead"]
    for api in [
        "MQL_Date__c",
        "SAL_Date__c",
        "SQL_Date__c",
        "First_Response_Date__c",
        "Time_to_First_Touch__c",
        "SLA_Status__c",
        "SLA_Due__c",
        "SLA_Breach__c",
        "SLA_Lock_Until__c",
        "Rejection_Reason__c",
        "Lead_Type__c",
        "Account_Tier__c",
    ]:
        assert api in lead.fields
        assert api in m.sla_fields.values()
    assert m.group_of("Lead").every_minutes == 1
    assert m.objects["LeadHistory"].parent == "Lead"


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            lambda r: r["objects"]["Lead"].__setitem__("table", "leads"),
            "objects.Lead.table: got 'leads', expected one of",
        ),
        (
            lambda r: r["objects"]["Lead"]["fields"].__setitem__("Email", "e_mail"),
            "objects.Lead.fields.Email: got 'e_mail'",
        ),
        (
            lambda r: r["sync"].__setitem__("overlap_minutes", "5"),
            "sync.overlap_minutes: got '5', expected a whole number",
        ),
        (
            lambda r: r["groups"]["org"]["objects"].append("Lead"),
            "groups.org.objects: got 'Lead', expected each object in one group",
        ),
        (
            lambda r: r["objects"]["Lead"]["fields"].__setitem__("Name; DROP", "name"),
            "expected a field API name",
        ),
        (lambda r: r["sla_fields"].__setitem__("x", "Nope__c"), "sla_fields.x: got 'Nope__c'"),
        (lambda r: r["objects"]["Lead"].__setitem__("modstamp", "LastModifiedDate"), "objects.Lead.modstamp"),
        (lambda r: r["objects"]["Lead"]["fields"].pop("Id"), "a field mapped to records.record_id"),
    ],
)
def test_invalid_mapping_names_key_value_and_expectation(raw, edit, needle, tmp_path):
    bad = copy.deepcopy(raw)
    edit(bad)
    path = tmp_path / "crm_fields.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(MappingError) as err:
        mapping.load(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(MappingError, match="does not exist"):
        mapping.load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("objects: [unclosed")
    with pytest.raises(MappingError, match="not valid YAML"):
        mapping.load(tmp_path / "bad.yaml")


def test_check_against_org_names_every_missing_field_in_one_error():
    m = mapping.load()
    org = {name: set(obj.fields) | set(obj.filter) | {"UserRoleId"} for name, obj in m.objects.items()}
    assert mapping.check_against_org(m, lambda name: org[name]) == []  # complete org: passes
    org["Lead"] -= {"MQL_Date__c"}
    org["Account"] -= {"Tier__c"}
    with pytest.raises(MappingError) as err:
        mapping.check_against_org(m, lambda name: org[name])
    assert "Lead.MQL_Date__c" in str(err.value) and "Account.Tier__c" in str(err.value)


def test_a_stamp_field_the_org_lacks_is_returned_not_refused():
    """The stamp fields only the raw JSON keeps may be missing: their stamping stops, the sync goes on."""
    m = mapping.load()
    assert mapping.optional_fields(m) == set(m.stamp_fields.values())
    assert "SLA_Lock_Until__c" not in mapping.optional_fields(m)  # mapped to a column: required
    org = {name: set(obj.fields) | set(obj.filter) | {"UserRoleId"} for name, obj in m.objects.items()}
    org["Lead"] -= {"SLA_Colour__c", "SLA_Due__c"}
    assert sorted(mapping.check_against_org(m, lambda name: org[name])) == ["SLA_Colour__c", "SLA_Due__c"]
    org["Lead"] -= {"SLA_Lock_Until__c"}
    with pytest.raises(MappingError, match="Lead.SLA_Lock_Until__c"):
        mapping.check_against_org(m, lambda name: org[name])


def test_the_action_id_field_is_mapped_and_required_in_the_org():
    """Escalation writes its action id on the lead (crash recovery): an org without the field fails
    the mapping check instead of having escalation fail at the first breach."""
    m = mapping.load()
    assert m.sla_fields["sla_action_id"] == "SLA_Action_Id__c"
    assert "SLA_Action_Id__c" in m.objects["Lead"].fields
    assert "SLA_Action_Id__c" not in mapping.optional_fields(m)
    org = {name: set(obj.fields) | set(obj.filter) | {"UserRoleId"} for name, obj in m.objects.items()}
    assert mapping.check_against_org(m, lambda name: org[name]) == []
    org["Lead"] -= {"SLA_Action_Id__c"}
    with pytest.raises(MappingError, match="the org has no field Lead.SLA_Action_Id__c"):
        mapping.check_against_org(m, lambda name: org[name])


def test_the_stamping_budget_share_defaults_to_a_tenth_and_is_checked(raw):
    shipped = mapping.parse(raw)
    assert shipped.stamp_budget_share == 0.10 and shipped.stamp_budget == shipped.daily_api_budget // 10
    del raw["stamping"]
    assert mapping.parse(raw).stamp_budget_share == mapping.DEFAULT_STAMP_BUDGET_SHARE == 0.10
    raw["stamping"] = {"budget_share": 1.5}
    with pytest.raises(MappingError, match="stamping.budget_share: got 1.5, expected a share"):
        mapping.parse(raw)
    raw["stamping"] = {"budget": 0.2}
    with pytest.raises(MappingError, match="stamping: got"):
        mapping.parse(raw)


def test_stamp_fields_are_the_mapped_ones_only(raw):
    del raw["sla_fields"]["sla_colour"]
    m = mapping.parse(raw)
    assert "sla_colour" not in m.stamp_fields and m.stamp_fields["sla_due"] == "SLA_Due__c"
    assert "sla_lock_until" not in m.stamp_fields and "owner" not in m.stamp_fields  # never stamped


def test_digest_changes_with_content(raw):
    a = mapping.parse(raw, "a")
    raw["sync"]["overlap_minutes"] = 7
    assert mapping.parse(raw, "a").digest != a.digest
