"""How crm_sync hears of CRM changes this run: from the change stream (`crm.streaming`, through the
listener in the triggerer) or by polling, and therefore whether a group queries Salesforce now.

- **Polling** (streaming off in crm_fields.yaml or the connection's extra, no listener has
  reported, the listener says the stream is refused, or its last keep-alive is older than
  `keepalive_seconds + stale_after_seconds`): every group syncs on its own cadence, as always.
- **Streaming** (healthy): a group queries when change events named one of its objects, when its
  safety net is due (the watermark query every `safety_net_minutes`), or, for a group slower than
  every minute, when its own cadence is due. An idle org then costs no query per minute.

Pure: reads nothing, decides from what the caller read (the stream's row, the events, the time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from leadsla.crm.mapping import CrmMapping
from leadsla.store.stream import POLLING, STREAMING, StreamStatus


@dataclass(frozen=True)
class FeedPlan:
    """This run's mode for one group, and whether the group queries Salesforce."""

    mode: str  # streaming or polling
    since: str | None  # ISO instant the mode began (the listener's row), None when unknown
    why: str
    query: bool
    safety_net: bool = False  # the query is the streaming safety net (its time is recorded)
    cadence: bool = False  # the group queries only if its own cadence is due (`crm.sync.is_due`)

    def to_xcom(self) -> dict[str, Any]:
        return {"mode": self.mode, "since": self.since, "why": self.why, "query": self.query}


def changed_objects(events: Sequence[Mapping[str, Any]]) -> set[str]:
    """The objects the triggering change events named (their payloads' `ids`)."""
    return {obj for e in events for obj, ids in (e.get("ids") or {}).items() if ids}


def plan(
    mapping: CrmMapping,
    group: str,
    status: StreamStatus | None,
    events: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    *,
    connection_allows: bool = True,
) -> FeedPlan:
    """This run's `FeedPlan` for `group` (see the module docstring)."""
    settings = mapping.streaming
    since = status.since.isoformat() if status is not None else None
    if not settings.enabled or not connection_allows:
        where = "crm_fields.yaml sync.streaming" if not settings.enabled else "the connection's extra"
        return FeedPlan(POLLING, since, f"streaming is off in {where}", True)
    if status is None:
        return FeedPlan(POLLING, None, "no change stream listener has reported yet", True)
    if status.mode != STREAMING:
        return FeedPlan(POLLING, since, status.reason or "the change stream is down", True)
    stale = dt.timedelta(seconds=settings.keepalive_seconds + settings.stale_after_seconds)
    if status.heartbeat_at is None or now - status.heartbeat_at > stale:
        heard = status.heartbeat_at.isoformat() if status.heartbeat_at else "never"
        return FeedPlan(POLLING, since, f"no keep-alive from the change stream since {heard}", True)
    objects = set(mapping.groups[group].objects)
    named = sorted(changed_objects(events) & objects)
    if named:
        return FeedPlan(STREAMING, since, f"change events for {', '.join(named)}", True)
    net = dt.timedelta(minutes=settings.safety_net_minutes)
    if status.safety_net_at is None or now - status.safety_net_at >= net:
        return FeedPlan(
            STREAMING, since, f"the safety net (every {settings.safety_net_minutes} min)", True, True
        )
    if mapping.groups[group].every_minutes > 1:
        return FeedPlan(STREAMING, since, "its own cadence", True, cadence=True)
    due = (status.safety_net_at + net).astimezone(dt.UTC)
    return FeedPlan(STREAMING, since, f"no change event; the safety net is due at {due:%H:%M:%S} UTC", False)
