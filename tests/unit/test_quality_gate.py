"""The GX gate's row-level verdicts, a generated corpus of malformed rows, and the CLI on the same suite.

GX takes seconds to import: these tests share one xdist worker (group "gx") and one context per
process (leadsla.quality.suites caches it).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadsla.cli import main
from leadsla.quality import rules as quality_rules
from leadsla.quality.frame import Lookups
from leadsla.quality.gate import validate

pytestmark = pytest.mark.xdist_group("gx")

NOW = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
RULES = quality_rules.load(status_map={"Open": "Open", "Working": "Working"})
GOOD = {
    "Id": "00Q000000000001AAA",
    "Status": "MQL",
    "Email": "a@example.com",
    "CreatedDate": "2026-11-10T10:00:00.000+0000",
    "SystemModstamp": "2026-11-10T10:00:00Z",
}


def verdict(**changes):
    return validate("leads", [{**GOOD, **changes}], NOW, RULES).verdicts[0]


def test_clean_row_passes_and_each_error_is_named():
    assert verdict().errors == [] and verdict().warnings == []
    assert any("Id is missing" in e for e in verdict(Id=None).errors)
    assert any("15 or 18" in e for e in verdict(Id="00Q12345").errors)
    assert any("picklist" in e for e in verdict(Status="Nurture").errors)
    assert verdict(Status="Working").errors == []  # the CRM mapping widens the picklist
    assert any("not a readable timestamp" in e for e in verdict(CreatedDate="31/12/2026").errors)
    assert any("no timezone" in e for e in verdict(CreatedDate="2026-11-10T10:00:00").errors)
    assert verdict(CreatedDate="2026-11-10T12:04:00Z").errors == []  # within the 5 min tolerance
    assert any("future" in e for e in verdict(CreatedDate="2026-11-10T12:06:00Z").errors)


def test_warnings_flag_without_quarantining():
    v = verdict(Status="Recycled")
    assert not v.quarantined and any("rejection reason" in w for w in v.warnings)
    assert any(
        "configured values" in w for w in verdict(Status="Disqualified", Rejection_Reason__c="Meh").warnings
    )
    assert verdict(Status="Disqualified", Rejection_Reason__c="No budget").warnings == []
    assert any(
        "MQL date is after SAL" in w
        for w in verdict(MQL_Date__c="2026-11-05", SAL_Date__c="2026-11-04").warnings
    )
    assert any(
        "SAL date is after SQL" in w
        for w in verdict(SAL_Date__c="2026-11-05", SQL_Date__c="2026-11-04").warnings
    )
    assert any("email" in w for w in verdict(Email="a@@b").warnings)
    owners = Lookups(owners={"005000000000001AAA": (None, False)})
    v = validate("leads", [{**GOOD, "OwnerId": "005000000000001AAA"}], NOW, RULES, owners).verdicts[0]
    assert not v.quarantined and len(v.warnings) == 2  # no manager, inactive


def test_activity_pointing_at_no_known_record_is_an_error():
    rows = [
        {"Id": "00T000000000001AAA", "WhoId": "00Q000000000001AAA", "CreatedDate": "2026-11-10T10:00:00Z"},
        {"Id": "00T000000000002AAA", "WhoId": "00Q00000000000XAAA", "CreatedDate": "2026-11-10T10:00:00Z"},
    ]
    out = validate("activities", rows, NOW, RULES, Lookups(known_records={"00Q000000000001AAA"})).verdicts
    assert not out[0].quarantined and any("no known record" in e for e in out[1].errors)


TEXT = st.one_of(
    st.none(),
    st.text(max_size=25),
    st.sampled_from(
        ["<b>x</b>", "<!channel>", "O'Brien", "' OR 1=1 --", "2026-11-10T10:00:00Z", "Ünïcødé 🚀"]
    ),
)
ROW = st.fixed_dictionaries(
    {},
    optional={
        "Id": st.one_of(TEXT, st.from_regex(r"\A[A-Za-z0-9]{15}([A-Za-z0-9]{3})?\Z"), st.integers()),
        "Status": st.one_of(TEXT, st.sampled_from(["MQL", "SAL", "Recycled", "Bogus"])),
        "CreatedDate": TEXT,
        "MQL_Date__c": TEXT,
        "SAL_Date__c": TEXT,
        "Email": TEXT,
        "Rejection_Reason__c": TEXT,
        "Name": TEXT,
        "Unknown__c": TEXT,
    },
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ROW, min_size=1, max_size=30))
def test_generated_malformed_rows_are_all_accounted_for(rows):
    result = validate("leads", rows, NOW, RULES)
    assert [v.row for v in result.verdicts] == list(range(len(rows)))
    for raw, v in zip(rows, result.verdicts, strict=True):
        ident = raw.get("Id")
        bad_id = not (
            isinstance(ident, str) and len(ident) in (15, 18) and ident.isascii() and ident.isalnum()
        )
        assert v.quarantined == bool(v.errors)
        if bad_id or raw.get("Status") not in set(RULES.allowed_statuses):
            assert v.quarantined, (raw, v)
    assert result.errors + result.warnings + sum(
        not v.errors and not v.warnings for v in result.verdicts
    ) == len(rows)


def _export(tmp_path, rows, header=None):
    import csv

    path = tmp_path / "leads.csv"
    header = header or ["Id", "Status", "Email", "CreatedDate", "Rejection_Reason__c", "Extra__c"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.DictWriter(handle, header)
        out.writeheader()
        out.writerows(rows)
    return path


def test_cli_json_shape_and_agreement_with_the_sync_gate(tmp_path, capsys):
    from leadsla.crm.mapping import load
    from leadsla.quality.quarantine import SyncGate

    rows = [
        {"Id": "00Q000000000001AAA", "Status": "MQL", "CreatedDate": "2026-11-10T10:00:00Z", "Extra__c": "x"},
        {"Id": "short", "Status": "MQL", "CreatedDate": "2026-11-10T10:00:00Z"},
        {
            "Id": "00Q000000000003AAA",
            "Status": "Recycled",
            "Email": "<b>bad",
            "CreatedDate": "2026-11-10T10:00:00Z",
        },
        {"Id": "00Q000000000004AAA", "Status": "Nurture", "CreatedDate": "tomorrow"},
    ]
    path = _export(tmp_path, rows)
    assert main(["validate-leads", str(path), "--json", "--at", NOW.isoformat()]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"total", "valid", "quarantined", "flagged"}
    assert report["total"] == 4 and report["valid"] == 1
    assert [q["row"] for q in report["quarantined"]] == [2, 4]
    assert [(f["row"], f["Id"]) for f in report["flagged"]] == [(3, "00Q000000000003AAA")]
    assert all(q["reasons"] for q in report["quarantined"] + report["flagged"])
    # The DAG path: the same rows through the sync gate with the real mapping quarantine the same rows.
    mapping = load()
    gate = SyncGate(quality_rules.load(status_map=mapping.status_map.get("Lead")))

    class NoStore:
        def connect(self):
            import contextlib

            return contextlib.nullcontext(None)

    import leadsla.quality.quarantine as q

    original = q.lookups_for
    q.lookups_for = lambda conn, suite, rows, rules: Lookups(status_map=rules.status_map)
    try:
        crm_rows = [{k: (v or None) for k, v in r.items()} for r in rows]
        keep, rejected = gate.screen(NoStore(), mapping.objects["Lead"], crm_rows, NOW)
    finally:
        q.lookups_for = original
    assert [r.get("Id") for r, _ in rejected] == [q_["Id"] for q_ in report["quarantined"]]
    assert [exc.reasons for _, exc in rejected] == [q_["reasons"] for q_ in report["quarantined"]]


def test_cli_missing_file_and_missing_id_column_are_one_line(tmp_path, capsys):
    assert main(["validate-leads", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such file" in err and "\n" not in err
    path = _export(tmp_path, [{"Name": "x"}], header=["Name", "Status"])
    assert main(["validate-leads", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Id column" in err and "\n" not in err


def test_data_engineering_contacts_come_from_the_incident_section(tmp_path):
    assert quality_rules.data_engineering() == ("C0DATAENG01", "data-engineering@example.com")
    assert quality_rules.load().incident_email == "data-engineering@example.com"
    shipped = (quality_rules.config_dir() / "quality.yaml").read_text()
    without = tmp_path / "quality.yaml"
    without.write_text(shipped.replace("  email: data-engineering@example.com", "  # no e-mail"))
    assert quality_rules.data_engineering(without) == ("C0DATAENG01", None)
    for bad in ("data-engineering", "a@b@c", "two words@example.com"):
        broken = tmp_path / "broken.yaml"
        broken.write_text(shipped.replace("data-engineering@example.com", bad))
        for read in (quality_rules.data_engineering, quality_rules.load):
            with pytest.raises(quality_rules.QualityConfigError, match="incident.email"):
                read(broken)
    with pytest.raises(
        quality_rules.QualityConfigError,
        match="cannot read the data-quality configuration: the file does not exist",
    ):
        quality_rules.data_engineering(tmp_path / "missing.yaml")
