"""crm_sync with the change stream: a change event lands the changed lead and commits its replay id;
with the stream healthy an idle org costs no query call (the safety net aside); with the stream
down, or its keep-alive stale, crm_sync polls every minute again, and goes back when it returns.
Against the Salesforce stand-in through the real hook, on both store backends."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import yaml

from leadsla.crm.mapping import DEFAULT_PATH
from leadsla.store import open_store, schema, stream
from leadsla.tasks.change_events import CrmChangeTrigger
from leadsla.tasks.sync import run_commit_replay, run_feed, run_group
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)


@pytest.fixture
def org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, salesforce_sandbox, store_url: str):  # noqa: F811
    raw = yaml.safe_load(Path(DEFAULT_PATH).read_text())
    raw["sync"]["streaming"] = {"enabled": True, "keepalive_seconds": 1, "stale_after_seconds": 5}
    mapping = tmp_path / "crm_fields.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("LEADSLA_STORE_URL", store_url)
    monkeypatch.setenv("LEADSLA_CRM_MAPPING", str(mapping))
    engine = open_store(store_url)
    yield salesforce_sandbox, engine
    engine.dispose()


def _queries(sb) -> int:
    return requests.get(f"{sb.base_url}/_sandbox/status", timeout=10).json()["calls"].get("query", 0)


def _set(engine, mode: str, reason: str, **values) -> None:
    with engine.begin() as conn:
        stream.set_mode(conn, mode, reason, dt.datetime.now(dt.UTC))
        if values:
            conn.execute(schema.crm_stream_status.update().values(**values))


def test_idle_streaming_costs_no_query_and_the_safety_net_still_runs(org):
    sb, engine = org
    _set(engine, stream.STREAMING, "listening")
    assert run_feed([])["query"] is True
    first = run_group("leads", run_id="m1")  # the safety net has never run: it runs now
    assert run_group("org", run_id="m1")["status"] == "success"
    assert first["status"] == "success" and first["feed"]["mode"] == "streaming"
    assert "safety net" in first["feed"]["why"]
    base = _queries(sb)
    for minute in range(5):  # five idle minute runs while the listener keeps alive
        _set(engine, stream.STREAMING, "listening")
        idle = run_group("leads", run_id=f"m{minute + 2}")
        assert idle["status"] == "streaming" and idle["api_calls"] == 0, idle
        assert "no change event" in idle["feed"]["why"]
        feed = run_feed([])  # crm_sync's first task: the whole run ends there
        assert feed["query"] is False and feed["mode"] == "streaming"
        assert run_feed([{"ids": {"Lead": ["00Q1"]}}])["query"] is True
    assert _queries(sb) == base  # not one query call in five minutes

    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    _set(engine, stream.STREAMING, "listening", safety_net_at=past)
    assert run_feed([])["query"] is True
    net = run_group("leads", run_id="m7")
    assert net["status"] == "success" and net["api_calls"] == 4 and _queries(sb) == base + 4
    with engine.connect() as conn:
        assert stream.status(conn).safety_net_at > past


def test_polling_when_the_stream_is_down_or_silent_and_back_when_it_returns(org):
    sb, engine = org
    _set(engine, stream.POLLING, "the change stream failed: handshake refused: 403::Handshake denied")
    assert run_feed([])["query"] is True and run_feed([])["mode"] == "polling"
    down = run_group("leads", run_id="p1")
    assert down["status"] == "success" and down["api_calls"] == 4
    assert down["feed"]["mode"] == "polling" and "Handshake denied" in down["feed"]["why"]

    silent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)  # keep-alive 1 s + stale 5 s
    _set(engine, stream.STREAMING, "listening", heartbeat_at=silent, safety_net_at=dt.datetime.now(dt.UTC))
    stale = run_group("leads", run_id="p2")
    assert stale["feed"]["mode"] == "polling" and "no keep-alive" in stale["feed"]["why"]
    assert stale["api_calls"] == 4

    _set(engine, stream.STREAMING, "listening")
    back = run_group("leads", run_id="p3")
    assert back["status"] == "streaming" and back["api_calls"] == 0


def test_a_change_event_lands_the_changed_lead_then_commits_its_replay_id(org):
    sb, engine = org
    _set(engine, stream.STREAMING, "listening")
    assert run_group("leads", run_id="r0")["status"] == "success"  # the first safety net
    assert run_group("org", run_id="r0")["status"] == "success"

    async def hear() -> dict:
        trigger = CrmChangeTrigger(retry_seconds=0.3)
        events = trigger.run()
        pending = asyncio.ensure_future(anext(events))
        for _ in range(100):  # until it has subscribed (its heartbeat moved)
            await asyncio.sleep(0.1)
            if sb.running.state.cometd.connects >= 1:
                break
        lead = await asyncio.to_thread(
            sb.create, "Lead", {"LastName": "Event", "Company": "Acme", "Status": "SAL"}
        )
        payload = (await asyncio.wait_for(pending, 15)).payload
        await events.aclose()
        await trigger.cleanup()
        return {"lead": lead, "payload": payload}

    heard = asyncio.run(hear())
    lead, payload = heard["lead"], heard["payload"]
    assert payload["ids"] == {"Lead": [lead]}
    before = _queries(sb)
    leads = run_group("leads", run_id="r1", events=[payload])
    org_group = run_group("org", run_id="r1", events=[payload])
    assert leads["status"] == "success" and leads["feed"]["why"] == "change events for Lead"
    assert org_group["status"] == "not_due"  # no Opportunity or User changed: its own cadence
    assert _queries(sb) == before + 4
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(schema.records.c.status).where(schema.records.c.record_id == lead)
        ).scalar()
        assert status is not None
        # The lead's clock is in the store straight from the sync, its start audited by it.
        clock = (
            conn.execute(sa.select(schema.clocks.c.sla_id).where(schema.clocks.c.record_id == lead))
            .scalars()
            .all()
        )
        starts = (
            conn.execute(
                sa.select(schema.audit.c.actor).where(
                    schema.audit.c.record_id == lead, schema.audit.c.event == "clock_start"
                )
            )
            .scalars()
            .all()
        )
    assert clock == ["sales_touch"] and starts == ["crm_sync"]
    assert leads["clocks"]["clocks_written"] >= 1 and "clocks" not in org_group
    committed = run_commit_replay([payload], run_id="r1")["committed"]
    with engine.connect() as conn:
        assert stream.committed(conn) == committed == payload["replay"]


def test_crm_syncs_first_task_checks_the_mapping_only_when_the_run_queries(org):
    sb, engine = org
    polling = run_feed([], run_id="c1", check_mapping=True)  # no listener: polling, the check runs
    assert polling["query"] is True and polling["mapping"]["checked_now"] is True
    _set(engine, stream.STREAMING, "listening", safety_net_at=dt.datetime.now(dt.UTC))
    with engine.begin() as conn:  # the org group ran on its cadence too
        conn.execute(
            schema.sync_runs.insert().values(
                started_at=dt.datetime.now(dt.UTC), status="success", group_name="org", api_calls=0
            )
        )
    quiet = run_feed([], run_id="c2", check_mapping=True)
    assert quiet["query"] is False and quiet["mapping"] is None
    assert quiet["groups"]["org"]["query"] is False and quiet["groups"]["leads"]["query"] is False
