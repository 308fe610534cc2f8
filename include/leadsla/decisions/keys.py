"""Idempotency keys: the identity of every side effect (DESIGN.md "Clock identity").

An action's key is (clock identity, checkpoint, recipient, channel) hashed; a digest's key is
derived from the keys it replaces. The same decision always hashes the same, whatever timezone
its instants were given in, so a retry, a cleared task or a rerun never acts twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable

from leadsla.decisions.phones import normalise_phone

#: Delivered channels: what `leadsla.notify.delivery` sends (``sms``: through the Apprise gateway).
MESSAGE_CHANNELS = frozenset({"slack", "email", "sms"})
#: Channels a key may name: the delivered ones plus ``crm`` (breach actions, which
#: `leadsla.escalation` performs through the CRM write-back; delivery never claims them).
KEY_CHANNELS = MESSAGE_CHANNELS | {"crm"}
#: The outbox `sla_id`/`checkpoint` of digest rows (they belong to no single clock).
DIGEST = "digest"


def utc_iso(value: dt.datetime) -> str:
    """An aware instant as canonical UTC ISO text (microseconds).

    Raises:
        ValueError: `value` is naive.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no timezone: clock_start must be aware")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def normalise_recipient(recipient: str) -> str:
    """The recipient as keyed: trimmed; e-mail addresses case-folded (they are case-blind in practice);
    phone numbers in international form (`leadsla.decisions.phones.normalise_phone`)."""
    recipient = recipient.strip()
    if "@" in recipient:
        return recipient.casefold()
    return (normalise_phone(recipient) or recipient) if recipient.startswith("+") else recipient


def idempotency_key(
    sla_id: str, record_id: str, clock_start: dt.datetime, checkpoint: str, recipient: str, channel: str
) -> str:
    """The action's identity (DESIGN.md): clock identity + checkpoint + recipient + channel.

    A SHA-256 over a canonical JSON array, so the same action always hashes the same whatever
    timezone `clock_start` was given in.

    Raises:
        ValueError: `clock_start` is naive, or the channel is unknown.
    """
    channel = channel.strip().lower()
    if channel not in KEY_CHANNELS:
        raise ValueError(f"unknown channel {channel!r}: expected one of {sorted(KEY_CHANNELS)}")
    canonical = json.dumps(
        [sla_id, record_id, utc_iso(clock_start), checkpoint, normalise_recipient(recipient), channel],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def digest_key(recipient: str, channel: str, replaced: Iterable[str]) -> str:
    """A digest's idempotency key: derived from the (sorted) keys of the rows it replaces."""
    canonical = json.dumps([DIGEST, recipient, channel, sorted(replaced)], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
