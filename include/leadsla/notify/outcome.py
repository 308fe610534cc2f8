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
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
