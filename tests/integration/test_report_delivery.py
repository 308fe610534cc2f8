"""Report e-mails go out on complete data and exactly once per report and period.

`send_report` against a real store (SQLite and PostgreSQL) and the SMTP sink: before the CRM mirror
is synced past the period it refuses with a clear, retryable error and sends nothing; after, it
sends; a second run for the same period sends nothing and audits the skip; `resend` sends again
with the same Message-ID; a period reported to date is its own period.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.cli import main
from leadsla.reports.readiness import MirrorNotSynced
from leadsla.reports.run import send_report
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from tests.notify_fixtures import smtp_sink  # noqa: F401 - fixture
from tests.reports_data import generate, synced

UTC = dt.UTC
MONDAY = dt.datetime(2026, 11, 16, 13, tzinfo=UTC)  # 08:00 in New York: the weekly run for 2026-W46
W46_END = dt.datetime(2026, 11, 16, 5, tzinfo=UTC)  # Monday 00:00 in New York


def _mails(sink) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(Path(sink.directory).glob("*.eml"))
    ]


def _audit(engine, event: str) -> list[dict]:
    a = schema.audit
    with engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(sa.select(a).where(a.c.event == event).order_by(a.c.audit_id)).mappings()
        ]


def _ctx(run_id: str, try_number: int = 1) -> AuditContext:
    return AuditContext(dag_id="sla_reports_weekly", run_id=run_id, task_id="send", try_number=try_number)


def test_waits_for_a_sync_past_the_period_then_sends_once(store, smtp_sink):  # noqa: F811
    generate(120).write(store)

    with pytest.raises(MirrorNotSynced) as never:
        send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled"))
    assert str(never.value) == (
        "weekly report 2026-W46: CRM mirror not synced past 2026-11-16T05:00+00:00 "
        "(end of 2026-W46) yet (last successful sync of every object group started: never); "
        "the report waits"
    )

    # One group synced after the week, the other only before it: still incomplete, and it says since when.
    synced(store, W46_END + dt.timedelta(minutes=1), groups=("leads",))
    synced(store, W46_END - dt.timedelta(minutes=10), groups=("org",))
    with pytest.raises(
        MirrorNotSynced, match=r"last successful sync of every object group started: 2026-11-16T04:50"
    ):
        send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled", 2))
    assert _mails(smtp_sink) == [] and _audit(store, "report_sent") == []

    synced(store, W46_END + dt.timedelta(minutes=2), groups=("org",))
    first = send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled", 3))
    assert first["result"] == "sent" and first["period"] == "2026-W46"
    (mail,) = _mails(smtp_sink)
    assert mail["Subject"] == "Weekly SLA summary 2026-W46" and mail["Message-ID"] == first["message_id"]
    (sent,) = _audit(store, "report_sent")
    assert (sent["dag_id"], sent["run_id"], sent["task_id"], sent["try_number"]) == (
        "sla_reports_weekly",
        "scheduled",
        "send",
        3,
    )
    assert sent["detail"]["report"] == "weekly" and sent["detail"]["period"] == "2026-W46"
    assert sent["detail"]["message_id"] == first["message_id"] and sent["at"] == MONDAY

    # A manual run for the same week, later: nothing sent, the skip audited with who sent it before.
    again = send_report(
        "weekly",
        at=MONDAY + dt.timedelta(hours=2),
        period="2026-W46",
        engine=store,
        context=_ctx("manual__1"),
    )
    assert (
        again["result"].startswith("skipped: already sent at ") and again["message_id"] == first["message_id"]
    )
    assert len(_mails(smtp_sink)) == 1
    (skipped,) = _audit(store, "report_skipped")
    assert skipped["run_id"] == "manual__1" and skipped["detail"]["period"] == "2026-W46"
    assert skipped["detail"]["sent_by"]["run_id"] == "scheduled"
    # The feedback digest of the same week is another report: not skipped.
    assert send_report("feedback", at=MONDAY, engine=store, context=_ctx("fb"))["result"] == "sent"


def test_resend_sends_again_with_the_same_message_id(store, smtp_sink):  # noqa: F811
    generate(60).write(store)
    synced(store, W46_END + dt.timedelta(hours=1))
    first = send_report("weekly", at=MONDAY, engine=store, context=_ctx("a"))
    second = send_report("weekly", at=MONDAY, engine=store, resend=True, context=_ctx("b"))
    assert second["result"] == "resent"
    mails = _mails(smtp_sink)
    assert len(mails) == 2 and {m["Message-ID"] for m in mails} == {first["message_id"]}
    assert [(e["run_id"], e["detail"]["resend"]) for e in _audit(store, "report_sent")] == [
        ("a", False),
        ("b", True),
    ]
    assert _audit(store, "report_skipped") == []


def test_a_period_to_date_is_its_own_period_and_tolerates_a_short_lag(store, smtp_sink):  # noqa: F811
    generate(60).write(store)
    at = dt.datetime(2026, 11, 23, 14, 40, tzinfo=UTC)  # W48 is not over: reported to date
    synced(store, at - dt.timedelta(minutes=10))
    with pytest.raises(MirrorNotSynced, match="not synced past 2026-11-23T14:35"):
        send_report("weekly", at=at, period="2026-W48", engine=store)
    synced(store, at - dt.timedelta(minutes=3))  # within the 5-minute lag a running sync has
    to_date = send_report("weekly", at=at, period="2026-W48", engine=store)
    later = send_report("weekly", at=at + dt.timedelta(minutes=1), period="2026-W48", engine=store)
    same = send_report("weekly", at=at + dt.timedelta(minutes=1), period="2026-W48", engine=store)
    assert to_date["result"] == later["result"] == "sent" and same["result"].startswith("skipped")
    assert to_date["message_id"] != later["message_id"] == same["message_id"]
    assert [m["Subject"] for m in _mails(smtp_sink)] == [
        "Weekly SLA summary 2026-W48 to 23 Nov 09:40",
        "Weekly SLA summary 2026-W48 to 23 Nov 09:41",
    ]


def test_cli_builds_offline_and_warns_when_the_mirror_is_incomplete(store_url, tmp_path, capsys):
    from leadsla.store import open_store

    engine = open_store(store_url)
    generate(60).write(engine)
    engine.dispose()
    assert (
        main(["report", "weekly", "--period", "2026-W46", "--store", store_url, "--out", str(tmp_path)]) == 0
    )
    out = capsys.readouterr()
    assert (tmp_path / "weekly_2026-W46.html").exists()
    assert out.err.startswith("warning: CRM mirror not synced past 2026-11-16T05:00+00:00")
    assert "figures may be incomplete" in out.err


def test_waits_for_the_clocks_to_be_evaluated_after_the_completing_sync(store, smtp_sink):  # noqa: F811
    from leadsla.store import schema as s

    generate(60).write(store)
    synced(store, W46_END + dt.timedelta(minutes=1), evaluated=False)  # finished at W46_END + 1 min 20 s
    with pytest.raises(
        MirrorNotSynced,
        match=r"SLA clocks not evaluated since the CRM sync that completed "
        r"2026-W46 \(finished 2026-11-16T05:01:20\+00:00; last evaluation "
        r"read the store: never\); the report waits for sla_monitor",
    ):
        send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled"))
    with store.begin() as conn:  # an evaluation that read the store while that sync was still running
        conn.execute(
            s.evaluations.insert().values(
                evaluated_at=W46_END + dt.timedelta(minutes=1),
                read_at=W46_END + dt.timedelta(minutes=1, seconds=10),
            )
        )
    with pytest.raises(MirrorNotSynced, match=r"last evaluation read the store: 2026-11-16T05:01:10"):
        send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled", 2))
    assert _mails(smtp_sink) == []
    with store.begin() as conn:
        conn.execute(
            s.evaluations.insert().values(
                evaluated_at=W46_END + dt.timedelta(minutes=2), read_at=W46_END + dt.timedelta(minutes=2)
            )
        )
    assert send_report("weekly", at=MONDAY, engine=store, context=_ctx("scheduled", 3))["result"] == "sent"
