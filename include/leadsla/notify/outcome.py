"""What a send attempt came to: delivered (with the channel's own id) or failed (retry or not).

Shared by the Slack and e-mail senders and `deliver_due`; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Delivered:
    """The channel accepted the message: `external_id` is the Slack ts or the e-mail Message-ID."""

    external_id: str
    detail: dict[str, Any] = field(default_factory=dict)


class DeliveryFailed(Exception):
    """A send attempt failed; `permanent` failures are not retried (a person must act).

    The message is one line for the task log and the audit trail; it never holds a secret.
    A permanent failure names its `cause` (`leadsla.notify.failure`): what a person must fix, the
    same for every message it stops (``slack:token_revoked``), or for every message to one
    recipient (``slack:not_in_channel:C0123``); data engineering is told once per cause and day.
    """

    def __init__(self, message: str, *, permanent: bool = False, cause: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.cause = cause


#: Why a send was put back without counting as a failed attempt (`Deferred.reason`).
RATE_LIMITED = "rate_limited"
CHANNEL_DOWN = "channel_down"


class Deferred(DeliveryFailed):
    """Not the row's failure: the channel asked us to wait (HTTP 429 with Retry-After) or cannot
    be reached at all (connection refused). `deliver_due` puts the row back without growing its
    back-off: a rate-limited row after `retry_after_s`, exactly as the server asked; a channel
    outage trips the channel's breaker for the rest of the try instead of failing every row.

    `sent_nothing` is True when this call is certain nothing reached the recipient (a 429 or a
    refused connection before any ambiguous answer); then the attempt is not counted either, so
    the next try does not need to look for an earlier send that never was.
    """

    def __init__(
        self, message: str, *, reason: str, retry_after_s: float = 0.0, sent_nothing: bool = True
    ) -> None:
        super().__init__(message)
        if reason not in (RATE_LIMITED, CHANNEL_DOWN):
            raise ValueError(f"unknown deferral reason {reason!r}")
        self.reason = reason
        self.retry_after_s = max(float(retry_after_s), 0.0)
        self.sent_nothing = sent_nothing
