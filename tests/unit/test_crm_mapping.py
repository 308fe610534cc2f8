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
    mapping.check_against_org(m, lambda name: org[name])  # complete org: passes
    org["Lead"] -= {"SLA_Due__c"}
    org["Account"] -= {"Tier__c"}
    with pytest.raises(MappingError) as err:
        mapping.check_against_org(m, lambda name: org[name])
    assert "Lead.SLA_Due__c" in str(err.value) and "Account.Tier__c" in str(err.value)


def test_digest_changes_with_content(raw):
    a = mapping.parse(raw, "a")
    raw["sync"]["overlap_minutes"] = 7
    assert mapping.parse(raw, "a").digest != a.digest
