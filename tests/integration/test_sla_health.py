"""sla_health on a store with every failure mode planted reports each one; a clean store reports none."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.policy import load_policy
from leadsla.quality.rules import load
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.health import run_health

NOW = dt.datetime(2026, 11, 10, 15, 0, tzinfo=dt.UTC)
ALL = {
    "timer_not_starting",
    "notifications_failing",
    "notifications_queued",
    "reps_unreachable",
    "calendar_without_hours",
    "holidays_running_out",
    "stale_data",
    "rejection_reason_not_required",
    "round_robin_unavailable_reps",
    "round_robin_uneven",
    "unowned_leads",
    "mql_leakage",
    "breach_not_escalating",
    "config_drift",
    "config_rejected",
}


def _user(uid, **kw):
    return {
        "user_id": uid,
        "name": uid,
        "email": f"{uid}@example.com",
        "manager_id": "005MGR000000001AAA",
        "is_active": True,
        "team": "sdr_east",
        "out_of_office": False,
        "fields": {},
        "synced_at": NOW,
        **kw,
    }


def _lead(n, status, **kw):
    return {
        "object_type": "Lead",
        "record_id": f"00Q{n:015d}",
        "status": status,
        "owner_id": "005000000000001AAA",
        "created_at": NOW - dt.timedelta(days=1),
        "modified_at": NOW - dt.timedelta(hours=1),
        "is_deleted": False,
        "fields": {},
        "synced_at": NOW,
        **kw,
    }


def _clock(n, state):
    return {
        "sla_id": "mql_to_sal",
        "record_id": f"00Q{n:015d}",
        "clock_start": NOW - dt.timedelta(days=1),
        "object_type": "Lead",
        "policy_version": "v",
        "tier": "t",
        "calendar": "us_east",
        "target_seconds": 3600,
        "state": state,
        "elapsed_seconds": 0,
        "remaining_seconds": 0,
        "percent_elapsed": 0,
        "colour": "green",
        "evaluated_at": NOW,
    }


def _healthy(conn, policy):
    watched = {
        s.start.becomes
        for s in policy.slas
        if s.enabled and s.object == "Lead" and s.start.field == "Status" and s.start.becomes
    }
    conn.execute(schema.users.insert(), [_user("005000000000001AAA"), _user("005000000000002AAA")])
    conn.execute(
        schema.sync_runs.insert().values(
            started_at=NOW - dt.timedelta(minutes=2),
            finished_at=NOW - dt.timedelta(minutes=1),
            status="success",
        )
    )
    return watched


def _findings(store, policy, settings):
    run_health(store, NOW, policy, settings, AuditContext(run_id="t"))
    with store.connect() as conn:
        return set(conn.execute(sa.select(schema.health_findings.c.check_name)).scalars())


def test_clean_store_reports_nothing(store):
    policy, settings = load_policy(), load().health
    with store.begin() as conn:
        _healthy(conn, policy)
        conn.execute(
            schema.records.insert(), [_lead(1, "Working"), _lead(2, "Working", owner_id="005000000000002AAA")]
        )
    assert _findings(store, policy, settings) == set()
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.outbox)).scalar() == 0


def test_every_planted_failure_is_reported_once_per_run(store):
    policy, settings = load_policy(), load().health
    policy.calendars["us_east"] = {
        "timezone": "America/New_York",
        "hours": {},
        "holidays": {"dates": ["2026-12-01"]},
    }
    with store.begin() as conn:
        watched = _healthy(conn, policy)
        conn.execute(schema.sync_runs.update().values(finished_at=NOW - dt.timedelta(hours=2)))
        conn.execute(
            schema.users.insert(),
            [_user("005000000000003AAA", is_active=False), _user("005000000000004AAA", email=None)],
        )
        start = sorted(watched)[0]
        old = NOW - dt.timedelta(days=10)
        conn.execute(
            schema.records.insert(),
            [
                _lead(1, start),
                _lead(2, "Recycled"),
                _lead(3, "Disqualified"),
                _lead(4, "MQL", created_at=old, modified_at=old),
                *[_lead(10 + i, "Working") for i in range(8)],
                _lead(6, "MQL", owner_id=None),  # nobody owns it
            ],
        )  # all to one rep: uneven
        conn.execute(schema.clocks.insert(), [_clock(5, "breached")])
        _drift(conn, ["the org's Lead.Status value 'Working' is neither a status in lifecycle.yaml nor ..."])
        settings = {
            **settings,
            "config_problems": ["sla_policy.yaml: slas[0].start.becomes: 'Accepted': ..."],
        }
        conn.execute(
            schema.outbox.insert(),
            [
                {
                    "idempotency_key": k,
                    "checkpoint": "c",
                    "recipient": "r",
                    "channel": "slack",
                    "payload": {},
                    "status": s,
                    "created_at": old,
                    "not_before": old,
                }
                for k, s in (("a", "failed"), ("b", "pending"))
            ],
        )
    found = _findings(store, policy, settings)
    assert ALL <= found, ALL - found
    with store.connect() as conn:
        notices = conn.execute(
            sa.select(schema.outbox.c.channel, schema.outbox.c.payload).where(
                schema.outbox.c.sla_id == "sla_health"
            )
        ).all()
    assert sorted(c for c, _ in notices) == ["email", "slack"]  # one digest per run, both channels
    assert all(p["kind"] == "notice" and len(p["lines"]) >= len(ALL) for _, p in notices)


def _drift(conn, problems, at=NOW - dt.timedelta(hours=3), digest="m1"):
    conn.execute(
        schema.crm_mapping_checks.insert().values(
            mapping_digest=digest, checked_at=at, objects=["Lead"], lifecycle_digest="l1", drift=problems
        )
    )


def test_config_drift_reports_the_latest_picklist_check_and_the_refused_files(store):
    from leadsla.health import config_drift

    with store.begin() as conn:
        _drift(conn, ["old drift"], at=NOW - dt.timedelta(days=2), digest="old")
        _drift(conn, ["org value 'Working' is neither ...", "status 'SQL' is not a value ..."])
        conn.execute(  # a check that did not compare picklists says nothing about drift
            schema.crm_mapping_checks.insert().values(
                mapping_digest="fields-only", checked_at=NOW, objects=["Lead"], drift=None
            )
        )
    with store.connect() as conn:
        findings = config_drift.check(conn, NOW, load_policy(), {"config_problems": ["a.yaml: x: y"]})
    assert [(f.check, f.severity) for f in findings] == [
        ("config_rejected", "critical"),
        ("config_drift", "warning"),
        ("config_drift", "warning"),
    ]
    assert findings[0].summary == "configuration refused: a.yaml: x: y"
    assert "last good configuration" in findings[0].how_to_fix
    assert findings[1].summary == (
        "picklist drift (crm_sync's check of 2026-11-10 12:00 UTC): org value 'Working' is neither ..."
    )
    assert "leadsla config check --org" in findings[1].how_to_fix
    with store.connect() as conn:
        assert config_drift.check(conn, NOW, load_policy(), {}) == findings[1:]


def _stale(store, now, settings):
    from leadsla.health import freshness

    with store.connect() as conn:
        return freshness.check(conn, now, load_policy(), settings)


def _created(store):
    with store.connect() as conn:
        return conn.execute(sa.select(sa.func.min(schema.schema_meta.c.upgraded_at))).scalar()


def test_a_fresh_deployment_whose_first_sync_is_still_running_is_not_stale(store):
    settings = load().health
    created = _created(store)
    assert (
        _stale(store, created + dt.timedelta(minutes=5), settings) == []
    )  # nothing synced yet, just deployed
    with store.begin() as conn:  # the first sync started and is still running
        conn.execute(
            schema.sync_runs.insert().values(started_at=created + dt.timedelta(minutes=1), status="running")
        )
    assert _stale(store, created + dt.timedelta(minutes=29), settings) == []
    # A run scheduled before the store existed (the demo's first morning run) finds nothing either.
    assert _stale(store, created - dt.timedelta(hours=8), settings) == []


def test_never_synced_for_31_minutes_is_critical_and_worded_for_a_person(store):
    settings = load().health
    start = NOW - dt.timedelta(minutes=31)
    with store.begin() as conn:
        conn.execute(schema.sync_runs.insert().values(started_at=start, status="failed"))
        conn.execute(
            schema.sync_runs.insert().values(started_at=NOW - dt.timedelta(minutes=2), status="running")
        )
    (finding,) = _stale(store, NOW, settings)
    assert finding.severity == "critical"
    assert finding.summary.startswith(
        "no CRM sync has succeeded yet, 31 min after syncing began (2026-11-10 14:29 UTC"
    )
    run_health(store, NOW, load_policy(), settings, AuditContext(run_id="t"))
    with store.connect() as conn:
        payloads = conn.execute(
            sa.select(schema.outbox.c.channel, schema.outbox.c.payload).where(
                schema.outbox.c.sla_id == "sla_health"
            )
        ).all()
    assert sorted(c for c, _ in payloads) == ["email", "slack"]
    notice = payloads[0][1]
    assert notice["title"] == f"SLA health: {finding.summary}"  # one finding: the title says what it is
    assert "1 problem;" in notice["intro"] and "digest" not in notice["intro"]
    assert notice["lines"] == [
        f"[critical] {finding.summary}. Fix: {finding.how_to_fix}"
    ]  # no "(0 affected)"
    from leadsla.notify.notice import notice_email_message, notice_slack_message
    from leadsla.notify.payloads import NoticePayload

    parsed = NoticePayload.parse(notice)
    mail = notice_email_message(parsed)
    assert mail.subject.startswith("[CRITICAL] SLA health: no CRM sync has succeeded yet")
    assert "about digest" not in mail.text and "1 problem;" in mail.text
    assert "about" not in notice_slack_message(parsed, "k")["blocks"][1]["text"]["text"]


def test_digest_lines_and_title_count_in_words():
    from leadsla.health.finding import Finding
    from leadsla.health.run import digest_line, digest_title

    many = [
        Finding("a", "critical", "x", ["00Q1"]),
        Finding("b", "warning", "y", ["00Q1", "00Q2"]),
        Finding("c", "warning", "z"),
    ]
    assert digest_title(many) == "SLA health: 3 problems (1 critical, 2 warnings)"
    assert [digest_line(f) for f in many] == [
        "[critical] x (1 record affected).",
        "[warning] y (2 records affected).",
        "[warning] z.",
    ]


QUEUE = "00G000000000001AAA"


def test_unowned_leads_are_listed_one_line_each_with_owner_wait_and_team(store):
    from leadsla.health import unowned

    policy, settings = load_policy(), load().health
    with store.begin() as conn:
        _healthy(conn, policy)
        conn.execute(schema.users.insert(), [_user("005000000000009AAA", name="Ian Gone", is_active=False)])
        conn.execute(
            schema.queues.insert(),
            [
                {"queue_id": QUEUE, "name": "Lead Intake", "synced_at": NOW},
                {"queue_id": "00G000000000002AAA", "name": "Breached SLA", "synced_at": NOW},
            ],
        )
        minutes = dt.timedelta(minutes=1)
        conn.execute(
            schema.records.insert(),
            [
                # In the intake queue for 30 min, a US lead: sdr_east's territory. A warning.
                _lead(
                    1,
                    "MQL",
                    name="Ann <Acme>",
                    owner_id=QUEUE,
                    created_at=NOW - 30 * minutes,
                    fields={"Country": "US"},
                ),
                # Its owner left the company 3 hours ago (the owner change is in the history). Critical.
                _lead(
                    2,
                    "SAL",
                    name="Bo Beta",
                    owner_id="005000000000009AAA",
                    created_at=NOW - dt.timedelta(days=2),
                    fields={"Country": "DE"},
                ),
                # Nobody owns it, for 1 minute: inside the policy's 2-minute grace, routing takes it.
                _lead(3, "New", name="Cy Gamma", owner_id=None, created_at=NOW - minutes),
                # Owned by a working rep; and a lead in Breached SLA whose 24 h lock still runs.
                _lead(4, "MQL", name="Di Delta", created_at=NOW - dt.timedelta(hours=5)),
                # Nobody owns it, but it is closed (Disqualified): not waiting for anyone.
                _lead(
                    6, "Disqualified", name="Flo Phi", owner_id=None, created_at=NOW - dt.timedelta(hours=5)
                ),
            ],
        )
        conn.execute(  # its own insert: an executemany takes its columns from the first row
            schema.records.insert(),
            _lead(
                5,
                "MQL",
                name="Ed Eps",
                owner_id="00G000000000002AAA",
                created_at=NOW - dt.timedelta(hours=5),
                lock_until=NOW + dt.timedelta(hours=19),
            ),
        )
        conn.execute(
            schema.field_history.insert(),
            [
                {
                    "history_id": "017000000000001AAA",
                    "object_type": "Lead",
                    "record_id": f"00Q{2:015d}",
                    "field": "OwnerId",
                    "old_value": "005000000000001AAA",
                    "new_value": "005000000000009AAA",
                    "changed_by": "005000000000001AAA",
                    "changed_at": NOW - dt.timedelta(hours=3, minutes=5),
                }
            ],
        )
    with store.connect() as conn:
        found = unowned.check(conn, NOW, policy, settings)
    assert [(f.check, f.severity, f.record_ids) for f in found] == [
        ("unowned_leads", "critical", [f"00Q{2:015d}"]),  # oldest first
        ("unowned_leads", "warning", [f"00Q{1:015d}"]),
    ]
    bo, ann = found
    assert bo.summary == (
        f"lead Bo Beta (00Q{2:015d}, SAL) is owned by inactive user Ian Gone and has waited 3 h 05 min "
        "for an owner (since 2026-11-10 11:55 UTC); team sdr_emea"
    )
    assert "inactive user's other open leads" in bo.how_to_fix
    assert ann.summary == (
        f"lead Ann <Acme> (00Q{1:015d}, MQL) is owned by queue Lead Intake and has waited 0 h 30 min "
        "for an owner (since 2026-11-10 14:30 UTC); team sdr_east"
    )
    assert ann.how_to_fix.startswith("Assign it to a rep of sdr_east in the CRM; lead_routing could not")
    # Half an hour's wait is critical under a 20-minute limit.
    with store.connect() as conn:
        tighter = unowned.check(conn, NOW, policy, {**settings, "unowned_critical_minutes": 20})
    assert [f.severity for f in tighter] == ["critical", "critical"]
    # The digest lists each of them on its own line (lead text escaped when rendered).
    run_health(store, NOW, policy, settings, AuditContext(run_id="t"))
    with store.connect() as conn:
        (payload,) = conn.execute(
            sa.select(schema.outbox.c.payload).where(
                schema.outbox.c.sla_id == "sla_health", schema.outbox.c.channel == "email"
            )
        ).scalars()
    assert [line for line in payload["lines"] if "waited" in line] == [
        f"[critical] {bo.summary} (1 record affected). Fix: {bo.how_to_fix}",
        f"[warning] {ann.summary} (1 record affected). Fix: {ann.how_to_fix}",
    ]
    from leadsla.notify.notice import notice_email_message, notice_slack_message
    from leadsla.notify.payloads import NoticePayload

    parsed = NoticePayload.parse(payload)
    assert "Ann &lt;Acme&gt;" in notice_email_message(parsed).html
    assert "Ann &lt;Acme&gt;" in str(notice_slack_message(parsed, "k")["blocks"])


def test_no_unowned_lead_findings_without_a_routing_section(store):
    from leadsla.health import unowned

    policy = load_policy()
    with store.begin() as conn:
        _healthy(conn, policy)
        conn.execute(schema.records.insert(), [_lead(1, "MQL", owner_id=None)])
    with store.connect() as conn:
        assert len(unowned.check(conn, NOW, policy, {})) == 1
        assert unowned.check(conn, NOW, policy.model_copy(update={"routing": None}), {}) == []
