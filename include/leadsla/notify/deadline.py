"""How long one send may take: until its lease ends, minus a margin. No I/O here.

Why a send can never outlive its lease (the argument `deliver_due` and both senders rely on):

1. `deliver_due` starts a `SendDeadline` ending at ``t0 + lease - LEASE_MARGIN``, then renews
   the row's lease to ``(t0 or later) + lease`` right before the send, conditionally: if another
   worker took the row meanwhile (its `claimed_until` changed) nothing is renewed and the row is
   not sent. A lease that lapsed but that nobody took is renewed: no one else can be sending it.
2. The only network calls with an effect are Slack's ``chat.postMessage`` and SMTP's
   ``sendmail``. Slack: a post (and any SDK retry of a 429) starts only if the deadline leaves
   room for the wait plus two request timeouts (urllib bounds the connect and the write of the
   small request body by the client timeout each), so its bytes are out before the deadline.
   SMTP: a send starts only before the deadline, and a watchdog shuts the session's socket at
   the deadline, so no byte of the message leaves later. Reads (lookups, history) may run late;
   they change nothing.
3. Another deliverer can take the row only once ``claimed_until < its now``, i.e. after
   ``t0 + lease``: LEASE_MARGIN later than our last byte, which covers the server's processing
   of it and clock skew between the two workers' hosts.

What the margin cannot cover (a server that holds a request for longer and acts on it later,
or clocks skewed by more than the margin) falls back on the reconciliation before any resend:
the Slack history lookup by key, the e-mail's key-derived Message-ID. `deliver_due` also checks
after each send and audits ``lease_overrun`` if a send ever ended after its lease.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from leadsla.notify.outcome import DeliveryFailed


class SendDeadline:
    """The instant (on a monotonic clock) after which a send must not transmit anything."""

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.ends = monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (negative once over)."""
        return self.ends - self._monotonic()

    def allows(self, seconds: float) -> bool:
        """True when something taking up to `seconds` would end before the deadline."""
        return self.remaining() >= seconds

    def require(self, seconds: float, doing: str) -> None:
        """Raise a transient `DeliveryFailed` unless `seconds` still fit: the row stays queued and
        the next try (a later lease) does it.

        Raises:
            DeliveryFailed: not enough of the lease is left for `doing`.
        """
        if not self.allows(seconds):
            raise DeliveryFailed(
                f"lease nearly over ({max(self.remaining(), 0):.1f} s left, {doing} may take "
                f"{seconds:.0f} s):"
                " not started, the row stays queued"
            )
