"""Per-recipient rate limit: beyond N messages to one person in M minutes, one digest instead.

Per (recipient, channel), what that person already got or will surely get in the window
(delivered rows, plus pending rows that cannot be digested: breaches, notices, digests, rows
already attempted) counts first; the remaining allowance goes to the oldest due warnings; the
rest become ONE digest, keyed on the keys of the rows it replaces, so a rerun finds nothing left
to roll up. Never digests a breach (breaches are never held back), a row a worker may have sent
(attempts > 0 or a live lease), or a row held by quiet hours (it is not due yet). A single extra
warning goes as itself: a digest of one is no saving. Pure: every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from leadsla.decisions.keys import MESSAGE_CHANNELS
from leadsla.decisions.plan import Digest, Queued


def decide_digests(
    queued: Sequence[Queued],
    now: dt.datetime,
    *,
    max_alerts: int,
    window_minutes: int,
    counted: Mapping[tuple[str, str], int] | None = None,
) -> list[Digest]:
    """The digests each person's queue calls for (module docstring).

    Args:
        queued: the outbox's pending rows and rows delivered within the window, plus what this
            run adds, in outbox order (rows rolled up elsewhere already left out).
        now: the run's time; a row with a later `not_before` is not due and not digested.
        counted: more rows of each person's queue (recipient, channel), none of them digestible,
            given as a count (`QueueState.counted`): they count as what the person already got.

    Returns:
        One digest per person and channel over the limit by two or more warnings.
    """
    by_person: dict[tuple[str, str], list[Queued]] = defaultdict(list)
    for row in sorted(queued, key=lambda r: (r.created_at, r.seq)):
        if row.channel in MESSAGE_CHANNELS:
            by_person[(row.recipient, row.channel)].append(row)
    digests: list[Digest] = []
    for (recipient, channel), group in sorted(by_person.items()):
        digestible = [r for r in group if _digestible(r, now)]
        committed = len(group) - len(digestible) + (counted or {}).get((recipient, channel), 0)
        extra = digestible[max(max_alerts - committed, 0) :]
        if len(extra) < 2:
            continue
        digests.append(
            digest_of(recipient, channel, extra, max_alerts=max_alerts, window_minutes=window_minutes)
        )
    return digests


def digest_of(
    recipient: str, channel: str, rows: Sequence[Queued], *, max_alerts: int, window_minutes: int
) -> Digest:
    """The digest replacing `rows` (at least two warnings to one person on one channel)."""
    payload = {
        "kind": "digest",
        "recipient": rows[0].payload["recipient"],
        "window_minutes": window_minutes,
        "max_alerts": max_alerts,
        "items": [_item(r.payload) for r in rows],
        "replaces": [r.key for r in rows],
    }
    return Digest(
        recipient=recipient,
        channel=channel,
        replaces=tuple(rows),
        payload=payload,
        max_alerts=max_alerts,
        window_minutes=window_minutes,
    )


def _digestible(row: Queued, now: dt.datetime) -> bool:
    """A due warning no worker has touched (so it certainly has not reached anyone)."""
    return row.untouched and row.kind == "warning" and row.not_before <= now


def _item(payload: Mapping[str, Any]) -> dict[str, Any]:
    lead = payload["lead"]
    base = payload["instance_url"].rstrip("/")
    url = f"{base}/lightning/r/{lead.get('object_type', 'Lead')}/{lead['id']}/view"
    return {
        "lead": lead,
        "sla_name": payload["sla_name"],
        "remaining_seconds": payload["remaining_seconds"],
        "deadline": payload["deadline"],
        "owner": payload["owner"]["name"],
        "record_url": url,
        # The warning's triage context travels with its line (data, not part of the digest's key).
        **({"context": payload["context"]} if payload.get("context") is not None else {}),
        **({"open_clocks": payload["open_clocks"]} if payload.get("open_clocks") is not None else {}),
    }
