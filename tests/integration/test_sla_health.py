"""sla_health on a store with every failure mode planted reports each one; a clean store reports none."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.health.run import run_health
from leadsla.policy import load_policy
from leadsla.quality.rules import load
from leadsla.store import schema

NOW = dt.datetime(2026, 11, 10, 15, 0, tzinfo=dt.UTC)
ALL = {"timer_not_starting", "notifications_failing", "notifications_queued", "reps_unreachable",
       "calendar_without_hours", "holidays_running_out", "stale_data", "rejection_reason_not_required",
       "round_robin_unavailable_reps", "round_robin_uneven", "mql_leakage", "breach_not_escalating"}


def _user(uid, **kw):
    return {"user_id": uid, "name": uid, "email": f"{uid}@example.com", "manager_id": "005MGR000000001AAA",
            "is_active": True, "team": "sdr_east", "out_of_office": False, "fields": {}, "synced_at": NOW, **kw}


def _lead(n, status, **kw):
    return {"object_type": "Lead", "record_id": f"00Q{n:015d}", "status": status, "owner_id": "005000000000001AAA",
            "created_at": NOW - dt.timedelta(days=1), "modified_at": NOW - dt.timedelta(hours=1),
            "is_deleted": False, "fields": {}, "synced_at": NOW, **kw}


def _clock(n, state):
    return {"sla_id": "mql_to_sal", "record_id": f"00Q{n:015d}", "clock_start": NOW - dt.timedelta(days=1),
            "object_type": "Lead", "policy_version": "v", "tier": "t", "calendar": "us_east", "target_seconds": 3600,
            "state": state, "elapsed_seconds": 0, "remaining_seconds": 0, "percent_elapsed": 0, "colour": "green",
            "evaluated_at": NOW}


def _healthy(conn, policy):
    watched = {s.start.becomes for s in policy.slas
               if s.enabled and s.object == "Lead" and s.start.field == "Status" and s.start.becomes}
    conn.execute(schema.users.insert(), [_user("005000000000001AAA"), _user("005000000000002AAA")])
    conn.execute(schema.sync_runs.insert().values(started_at=NOW - dt.timedelta(minutes=2),
                                                  finished_at=NOW - dt.timedelta(minutes=1), status="success"))
    return watched


def _findings(store, policy, settings):
    run_health(store, NOW, policy, settings, run_id="t")
    with store.connect() as conn:
        return set(conn.execute(sa.select(schema.health_findings.c.check_name)).scalars())


def test_clean_store_reports_nothing(store):
    policy, settings = load_policy(), load().health
    with store.begin() as conn:
        _healthy(conn, policy)
        conn.execute(schema.records.insert(), [_lead(1, "Working"), _lead(2, "Working", owner_id="005000000000002AAA")])
    assert _findings(store, policy, settings) == set()
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.outbox)).scalar() == 0


def test_every_planted_failure_is_reported_once_per_run(store):
    policy, settings = load_policy(), load().health
    policy.calendars["us_east"] = {"timezone": "America/New_York", "hours": {}, "holidays": {"dates": ["2026-12-01"]}}
    with store.begin() as conn:
        watched = _healthy(conn, policy)
        conn.execute(schema.sync_runs.update().values(finished_at=NOW - dt.timedelta(hours=2)))
        conn.execute(schema.users.insert(), [_user("005000000000003AAA", is_active=False),
                                             _user("005000000000004AAA", email=None)])
        start = sorted(watched)[0]
        old = NOW - dt.timedelta(days=10)
        conn.execute(schema.records.insert(), [
            _lead(1, start), _lead(2, "Recycled"), _lead(3, "Disqualified"),
            _lead(4, "MQL", created_at=old, modified_at=old),
            *[_lead(10 + i, "Working") for i in range(8)]])  # all to one rep: uneven
        conn.execute(schema.clocks.insert(), [_clock(5, "breached")])
        conn.execute(schema.outbox.insert(), [
            {"idempotency_key": k, "checkpoint": "c", "recipient": "r", "channel": "slack", "payload": {},
             "status": s, "created_at": old, "not_before": old} for k, s in (("a", "failed"), ("b", "pending"))])
    found = _findings(store, policy, settings)
    assert ALL <= found, ALL - found
    with store.connect() as conn:
        notices = conn.execute(sa.select(schema.outbox.c.channel, schema.outbox.c.payload).where(
            schema.outbox.c.sla_id == "sla_health")).all()
    assert sorted(c for c, _ in notices) == ["email", "slack"]  # one digest per run, both channels
    assert all(p["kind"] == "notice" and len(p["lines"]) >= len(ALL) for _, p in notices)
