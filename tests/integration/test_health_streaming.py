"""sla_health's `health.streaming`: the digest says when CRM changes are polled instead of streamed
(and why, since when) or the stream went silent; nothing while it streams or was never set up. And
the replay ids it resumes from only move forward. On both store backends."""

from __future__ import annotations

import datetime as dt

from leadsla.health import streaming
from leadsla.health.run import run_checks
from leadsla.policy import load_policy
from leadsla.store import stream

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


def test_the_digest_names_polling_and_a_silent_stream(store):
    policy = load_policy()
    with store.begin() as conn:
        assert streaming.check(conn, NOW, policy, {}) == []  # never set up: silent
        stream.set_mode(conn, stream.STREAMING, "listening", NOW - dt.timedelta(minutes=1))
        assert streaming.check(conn, NOW, policy, {}) == []
        assert streaming.check(conn, NOW + dt.timedelta(minutes=7), policy, {})[0].summary == (
            "the CRM change stream has not answered since 2026-12-07 09:59 UTC: crm_sync polls every minute"
        )
        stream.set_mode(conn, stream.POLLING, "the change stream failed: 403::Handshake denied", NOW)
        (finding,) = [
            f for f in run_checks(conn, NOW + dt.timedelta(hours=2), policy, {}) if f.check == "crm_streaming"
        ]
    assert finding.severity == "warning"
    assert finding.summary == (
        "CRM changes are polled every minute, not streamed, since 2026-12-07 10:00 UTC (2 h 00 min): "
        "the change stream failed: 403::Handshake denied"
    )


def test_replay_ids_only_move_forward(store):
    with store.begin() as conn:
        assert stream.commit(conn, {"/data/LeadChangeEvent": 9, "/data/TaskChangeEvent": 2}, NOW, "r1") == {
            "/data/LeadChangeEvent": 9,
            "/data/TaskChangeEvent": 2,
        }
        stream.commit(conn, {"/data/LeadChangeEvent": 5}, NOW, "r0")  # a late, older run
        assert stream.committed(conn) == {"/data/LeadChangeEvent": 9, "/data/TaskChangeEvent": 2}
        stream.forget(conn, ["/data/TaskChangeEvent"])
        assert stream.committed(conn) == {"/data/LeadChangeEvent": 9}
