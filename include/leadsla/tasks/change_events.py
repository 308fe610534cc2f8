"""The CRM change listener: an event-driven trigger (`BaseEventTrigger`) that runs in Airflow's
triggerer, listens to Salesforce Change Data Capture (`crm.streaming`) and fires one TriggerEvent per
batch of changes. The `AssetWatcher` on `CRM_CHANGES` turns each into an asset event, and crm_sync,
scheduled on that asset, starts a run within seconds.

- It resumes each channel after the replay id crm_sync committed (`store.stream`; crm_sync commits
  only after landing), or after the newest it fired itself in this process, so a restart of the
  triggerer misses nothing: it may fire again what a run has not committed yet (a sync is
  idempotent), never less.
- A replay id older than the org's retention forgets that channel's id, fires a `fallback` event
  (crm_sync then runs the watermark query: the safety net) and goes on with every event the org
  still keeps on that channel.
- Its mode is in the store: `streaming` with a heartbeat at every answer (events or keep-alive),
  or `polling` with the reason (streaming off, handshake refused, the org unreachable); crm_sync's
  minute runs query Salesforce only while it is not streaming (`crm.change_feed`).

The token comes from the SalesforceHook (run in a thread) and is sent as a header only; it is never
logged, put in an event or stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

CLASSPATH = "leadsla.tasks.change_events.CrmChangeTrigger"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CrmChangeTrigger(BaseEventTrigger):
    """Fire a TriggerEvent per batch of CRM change events (see the module docstring).

    Args:
        conn_id: the Salesforce connection (its extra `"streaming": false` turns streaming off).
        retry_seconds: wait before listening again after the stream failed or while it is off.
        mapping_path: crm_fields.yaml to read `sync.streaming` from (default: the active one).
    """

    def __init__(
        self,
        conn_id: str = "salesforce_default",
        retry_seconds: float = 30.0,
        mapping_path: str | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.retry_seconds = retry_seconds
        self.mapping_path = mapping_path
        self._engine: Any = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "conn_id": self.conn_id,
            "retry_seconds": self.retry_seconds,
            "mapping_path": self.mapping_path,
        }

    # --- the store and the connection, in threads --------------------------------------------

    def _settings(self) -> tuple[Any, str | None]:
        """(`sync.streaming`, why streaming is off or None)."""
        from leadsla.crm.mapping import load
        from leadsla.crm.salesforce import streaming_allowed

        settings = load(self.mapping_path).streaming
        if not settings.enabled:
            return settings, "streaming is off in crm_fields.yaml sync.streaming"
        if not streaming_allowed(self.conn_id):
            return settings, f"streaming is off in the connection {self.conn_id}'s extra"
        return settings, None

    def _login(self) -> Any:
        from leadsla.crm.salesforce import streaming_session

        return streaming_session(self.conn_id)

    def _store(self, action: Any) -> Any:
        # One engine for the trigger's life (opened, and the schema checked, at its first use).
        from leadsla.store import open_store

        if self._engine is None:
            self._engine = open_store()
        with self._engine.begin() as conn:
            return action(conn)

    async def cleanup(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _set_mode(self, mode: str, reason: str) -> None:
        from leadsla.store import stream

        changed = self._store(lambda conn: stream.set_mode(conn, mode, reason, _now()))
        if changed:
            self.log.info("CRM changes: %s since now (%s)", mode, reason)

    def _committed(self) -> dict[str, int]:
        from leadsla.store import stream

        return self._store(stream.committed)

    def _forget(self, channel: str) -> None:
        from leadsla.store import stream

        self._store(lambda conn: stream.forget(conn, [channel]))

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from leadsla.crm.protocol import CrmError
        from leadsla.crm.streaming import (
            ALL_RETAINED,
            NEW_EVENTS,
            WATCHED_CHANNELS,
            ChangeBatch,
            ReplayTooOld,
            listen,
        )

        fired: dict[str, int] = {}  # the newest replay id fired per channel by this process
        expired: set[str] = set()  # channels whose replay id fell out of retention: replay what is kept
        while True:
            settings, off = await asyncio.to_thread(self._settings)
            if off:
                await asyncio.to_thread(self._set_mode, "polling", off)
                await asyncio.sleep(self.retry_seconds)
                continue
            committed = await asyncio.to_thread(self._committed)
            resume = {c: max(committed.get(c, -1), fired.get(c, -1)) for c in WATCHED_CHANNELS}
            # Nothing committed yet: begin at new events (the watermark query covers the past);
            # a channel without an id beside others that have one replays what the org keeps.
            started = any(r >= 0 for r in resume.values())
            replay_from = {
                c: r if r >= 0 else (ALL_RETAINED if started or c in expired else NEW_EVENTS)
                for c, r in resume.items()
            }

            async def login() -> Any:
                return await asyncio.to_thread(self._login)

            try:
                async for heard in listen(
                    login,
                    replay_from,
                    verify=os.environ.get("REQUESTS_CA_BUNDLE") or True,
                    keepalive_s=float(settings.keepalive_seconds),
                ):
                    await asyncio.to_thread(
                        self._set_mode,
                        "streaming",
                        f"listening to {len(WATCHED_CHANNELS)} change event channels",
                    )
                    if heard.changes:
                        batch = ChangeBatch()
                        for change in heard.changes:
                            batch.add(change)
                        fired.update(batch.replay)
                        expired.difference_update(batch.replay)
                        self.log.info(
                            "CRM changes: %d events, ids per object %s",
                            batch.events,
                            {k: len(v) for k, v in batch.ids.items()},
                        )
                        yield TriggerEvent(batch.to_payload())
            except ReplayTooOld as exc:
                self.log.warning("CRM changes: %s; the watermark query catches up", exc)
                await asyncio.to_thread(self._forget, exc.channel)
                fired.pop(exc.channel, None)
                expired.add(exc.channel)
                yield TriggerEvent({"ids": {}, "replay": {}, "events": 0, "fallback": str(exc)[:300]})
                continue
            except (CrmError, OSError) as exc:
                await asyncio.to_thread(self._set_mode, "polling", f"the change stream failed: {exc}")
            await asyncio.sleep(self.retry_seconds)
