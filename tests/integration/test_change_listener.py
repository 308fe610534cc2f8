"""The CRM change listener (the triggerer's `CrmChangeTrigger`) against the Salesforce stand-in:
changes become trigger events, a restart resumes after the committed replay id and misses nothing,
a replay id past retention falls back to the watermark query, and a refused stream is polling
until it comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from leadsla.crm.mapping import DEFAULT_PATH
from leadsla.store import open_store, stream
from leadsla.tasks.change_events import CrmChangeTrigger
from leadsla.tasks.sync import run_commit_replay
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
def listening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, salesforce_sandbox):  # noqa: F811
    """The stand-in, a SQLite store and a mapping whose stream keeps alive every second."""
    raw = yaml.safe_load(Path(DEFAULT_PATH).read_text())
    raw["sync"]["streaming"] = {"enabled": True, "keepalive_seconds": 1, "stale_after_seconds": 5}
    mapping = tmp_path / "crm_fields.yaml"
    mapping.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("LEADSLA_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("LEADSLA_CRM_MAPPING", str(mapping))
    return salesforce_sandbox


class Listener:
    """One trigger's run() driven by hand: start it, take its events, stop it (a triggerer going away)."""

    def __init__(self, **kw: Any) -> None:
        self.trigger = CrmChangeTrigger(retry_seconds=0.3, **kw)
        self.events = self.trigger.run()

    async def next(self, timeout: float = 15) -> dict:
        event = await asyncio.wait_for(anext(self.events), timeout)
        return event.payload

    async def stop(self) -> None:
        await self.events.aclose()
        await self.trigger.cleanup()


async def _until(check, timeout: float = 15) -> None:
    for _ in range(int(timeout / 0.1)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


def _status():
    engine = open_store()
    try:
        with engine.connect() as conn:
            return stream.status(conn)
    finally:
        engine.dispose()


def _streaming() -> bool:
    s = _status()
    return s is not None and s.mode == stream.STREAMING


def _lead(sb, name: str) -> str:
    return sb.create("Lead", {"LastName": name, "Company": "Acme", "Status": "MQL"})


async def _collect(listener: Listener, wanted: set[str]) -> list[dict]:
    """Events until every id in `wanted` has been named."""
    got: list[dict] = []
    seen: set[str] = set()
    while not wanted <= seen:
        payload = await listener.next()
        got.append(payload)
        seen |= {i for ids in payload["ids"].values() for i in ids}
    return got


def test_changes_fire_events_and_a_restart_resumes_after_the_committed_replay_id(listening):
    sb = listening

    async def scenario() -> None:
        first = Listener()
        # Start it in the background: it subscribes from new events, then streams.
        pending = asyncio.ensure_future(first.next())
        await _until(_streaming)
        a = await asyncio.to_thread(_lead, sb, "A")
        payload = await pending
        assert payload["ids"] == {"Lead": [a]} and payload["events"] == 1
        assert set(payload["replay"]) == {"/data/LeadChangeEvent"}
        await asyncio.to_thread(run_commit_replay, [payload], run_id="run-1")

        # Fired but never committed (the run that would land it never happened) ...
        c = await asyncio.to_thread(_lead, sb, "C")
        assert (await first.next())["ids"] == {"Lead": [c]}
        await first.stop()

        # ... and changes while nobody listens.
        await asyncio.to_thread(sb.update, "Lead", a, {"Status": "SAL"})
        b = await asyncio.to_thread(_lead, sb, "B")
        task = await asyncio.to_thread(
            sb.create, "Task", {"Subject": "Call", "WhoId": a, "Status": "Completed", "Type": "Call"}
        )

        second = Listener()
        got = await _collect(second, {a, b, c, task})
        await second.stop()
        ids = {obj: {i for p in got for i in p["ids"].get(obj, [])} for obj in ("Lead", "Task")}
        assert ids == {"Lead": {a, b, c}, "Task": {task}}  # nothing missed, C fired again
        replay = {ch: max(p["replay"].get(ch, 0) for p in got) for ch in ("/data/LeadChangeEvent",)}
        assert replay["/data/LeadChangeEvent"] > payload["replay"]["/data/LeadChangeEvent"]

    asyncio.run(scenario())


def test_a_replay_id_past_retention_falls_back_to_the_watermark_query(listening):
    sb = listening

    async def scenario() -> None:
        first = Listener()
        pending = asyncio.ensure_future(first.next())
        await _until(_streaming)
        await asyncio.to_thread(_lead, sb, "Old")
        payload = await pending
        await asyncio.to_thread(run_commit_replay, [payload], run_id="run-1")
        await first.stop()

        requests.post(f"{sb.base_url}/_sandbox/config", json={"cdc_retention_s": 0.3}, timeout=10)
        await asyncio.sleep(0.5)
        second = Listener()
        fallback = await second.next()
        assert fallback["fallback"].startswith("/data/LeadChangeEvent: 400::The replayId {")
        assert fallback["ids"] == {}
        requests.post(f"{sb.base_url}/_sandbox/config", json={"cdc_retention_s": 3600}, timeout=10)
        engine = open_store()
        with engine.connect() as conn:
            assert "/data/LeadChangeEvent" not in stream.committed(conn)  # forgotten: resume from new
        engine.dispose()
        fresh = await asyncio.to_thread(_lead, sb, "Fresh")  # before the listener subscribes again
        await _collect(second, {fresh})  # the channel replays what the org keeps: not lost
        await second.stop()

    asyncio.run(scenario())


def test_a_refused_stream_is_polling_with_its_reason_until_it_comes_back(listening):
    sb = listening
    requests.post(f"{sb.base_url}/_sandbox/config", json={"streaming": False}, timeout=10)

    async def scenario() -> None:
        listener = Listener()
        pending = asyncio.ensure_future(listener.next(timeout=30))
        await _until(lambda: _status() is not None)
        status = _status()
        assert status.mode == stream.POLLING and "Handshake denied" in status.reason
        requests.post(f"{sb.base_url}/_sandbox/config", json={"streaming": True}, timeout=10)
        await _until(_streaming)
        back = _status()
        assert back.since > status.since and back.heartbeat_at is not None
        lead = await asyncio.to_thread(_lead, sb, "After")
        assert (await pending)["ids"] == {"Lead": [lead]}
        await listener.stop()

    asyncio.run(scenario())


def test_an_expired_session_is_renewed_without_leaving_streaming(listening):
    sb = listening

    async def scenario() -> None:
        listener = Listener()
        pending = asyncio.ensure_future(listener.next())
        await _until(_streaming)
        logins, since = sb.logins, _status().since
        await asyncio.to_thread(sb.expire_sessions)  # the org revokes the session mid-stream
        await asyncio.sleep(1.5)  # the held connect answers 401::Authentication invalid
        lead = await asyncio.to_thread(_lead, sb, "Renewed")
        assert (await pending)["ids"] == {"Lead": [lead]}
        assert sb.logins == logins + 1
        assert _status().since == since  # never left streaming: one login and a new handshake
        await listener.stop()

    asyncio.run(scenario())
