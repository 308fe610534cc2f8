"""Slack delivery through Airflow's SlackHook (`slack_api_default`), exactly once in effect.

A person gets a direct message (``users.lookupByEmail`` -> ``conversations.open`` ->
``chat.postMessage``); without a Slack account (``users_not_found``) the alert goes to the
payload's fallback channel. Every message carries its idempotency key in Slack message metadata.
Before re-sending a row that was attempted before, and after any answer that leaves it unknown
whether Slack posted (5xx, dropped connection), the conversation's history is searched for the
key; a hit is marked delivered with that ts instead of posting again.

Retry policy, deliberately split: reads use connection and server-error retry handlers with short
waits (READ_RETRY_WAITS_S, not the SDK's 0.5 s * 2^n plus up to 1 s of jitter); ``chat.postMessage``
uses no SDK retry handler and retries 5xx/connection errors itself, after looking in the history,
because a blind SDK retry of an ambiguous 5xx could post twice. Nothing here ever sleeps on a 429:
the SDK's rate-limit handler would hold the whole deliverer for Retry-After plus jitter per 429,
although Slack limits per method and channel. A 429 (read or post) raises `Deferred`
(rate_limited, Retry-After): `deliver_due` puts that row back for exactly as long as Slack asked
and goes on with other rows. A refused connection raises `Deferred` (channel_down): the
deliverer's breaker stops trying Slack rows until a probe gets through. An error no retry can fix
(a revoked or invalid token, a missing scope, a channel the app is not in, a message Slack
rejects: `PERMANENT_ERRORS`) raises a permanent `DeliveryFailed` naming its cause at once, so
the row fails and data engineering is told by e-mail (`leadsla.notify.failure`) instead of the row
being retried forever. This module never patches the hook.

Lease bound (`leadsla.notify.deadline`): every request's timeout is at most
REQUEST_TIMEOUT_CAP_S (a connection's longer ``timeout`` is lowered to it), and a post starts only
while the send's deadline leaves room for two request timeouts; otherwise the row stays queued
for the next try.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import urllib.error
from http.client import HTTPException
from typing import Any

from leadsla.notify.deadline import SendDeadline
from leadsla.notify.formatting import METADATA_EVENT_TYPE
from leadsla.notify.outbox import Claimed
from leadsla.notify.outcome import CHANNEL_DOWN, RATE_LIMITED, Deferred, Delivered, DeliveryFailed
from leadsla.notify.payloads import parse_payload
from leadsla.notify.render import render_slack

log = logging.getLogger(__name__)

SLACK_CONN_ID = "slack_api_default"
#: Slack errors that no retry can fix, by what they stop. The row fails at once, the audit says
#: why, and data engineering hears of it by e-mail (`leadsla.notify.failure`), once per cause.
#: The token or the app (every Slack message fails until someone fixes the connection or the app):
CREDENTIAL_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "no_permission",
        "not_allowed_token_type",
        "team_access_not_granted",
        "ekm_access_denied",
        "access_denied",
    }
)
#: One recipient (every message to that channel or person fails):
RECIPIENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "cannot_dm_bot",
        "user_disabled",
        "user_not_found",
        "user_not_visible",
        "users_not_found",
        "invalid_email",
    }
)
#: This message (what we sent is wrong: a bug in rendering):
MESSAGE_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "invalid_arguments",
        "invalid_arg_name",
    }
)
PERMANENT_ERRORS = CREDENTIAL_ERRORS | RECIPIENT_ERRORS | MESSAGE_ERRORS
#: Longest a single Slack API request may take (client timeout); bounds a send within its lease.
REQUEST_TIMEOUT_CAP_S = 5
#: A post is started only with this many request timeouts left before the deadline: urllib bounds
#: the connect and the write of the request, each by the timeout.
POST_TIMEOUTS = 2
#: Waits between the SDK's retries of a read (5xx, connection error), then the last one repeats.
READ_RETRY_WAITS_S = (0.2, 0.5)
#: Retry-After assumed when a 429 carries none (or an unreadable one).
DEFAULT_RETRY_AFTER_S = 1.0
#: The shortest wait after a 429, whatever Retry-After says (see `_retry_after_s`).
MIN_RETRY_AFTER_S = 1.0
#: Look this far before the row's creation for its message (clock skew between hosts).
HISTORY_SKEW_S = 300


class SlackSender:
    """Sends claimed outbox rows to Slack. One per delivery run; caches lookups for its life."""

    def __init__(
        self,
        conn_id: str = SLACK_CONN_ID,
        *,
        server_error_retries: int = 3,
        post_attempts: int = 5,
    ) -> None:
        from airflow.providers.slack.hooks.slack import SlackHook
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler

        waits = _ShortWaits(READ_RETRY_WAITS_S)
        self._reads = SlackHook(
            slack_conn_id=conn_id,
            retry_handlers=[
                ConnectionErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=waits),
                ServerErrorRetryHandler(max_retry_count=server_error_retries, interval_calculator=waits),
            ],
        )
        # An empty list, not None: None would give the SDK's default (connection-error) handler.
        self._posts = SlackHook(slack_conn_id=conn_id, retry_handlers=[])
        self.post_attempts = post_attempts
        self._conversations: dict[str, tuple[str, str]] = {}
        self._deadline: SendDeadline | None = None
        self._timeouts_capped = False

    def _cap_timeouts(self) -> None:
        """Lower each client's request timeout to REQUEST_TIMEOUT_CAP_S (once; builds the clients)."""
        if not self._timeouts_capped:
            for hook in (self._reads, self._posts):
                hook.client.timeout = min(hook.client.timeout or REQUEST_TIMEOUT_CAP_S, REQUEST_TIMEOUT_CAP_S)
            self._timeouts_capped = True

    def warm_up(self) -> None:
        """Build the clients now (the connection read, the SDK set up): a delivery loop does it while
        it waits, so its first message at a checkpoint's instant does not pay for it."""
        self._cap_timeouts()

    @property
    def request_s(self) -> float:
        """The longest one request to Slack may take (its client timeout)."""
        self._cap_timeouts()
        return float(self._posts.client.timeout)

    def post_allowed(self) -> bool:
        """True when a post starting now would be written before this send's deadline."""
        return self._deadline is None or self._deadline.allows(POST_TIMEOUTS * self.request_s)

    # --- where ------------------------------------------------------------------------------

    def conversation_for(self, row: Claimed, payload: Any) -> tuple[str, str]:
        """The channel id to post in and how it was chosen (``dm``, ``fallback`` or ``channel``).

        A recipient with an ``@`` is a person (DM, else the payload's fallback channel); any
        other recipient is a channel id posted to directly.

        Raises:
            DeliveryFailed: permanent when the person has no Slack account and no fallback
                channel is given; transient for Slack errors a retry may fix.
        """
        from slack_sdk.errors import SlackApiError

        address = row.recipient  # the keyed recipient: an e-mail address, or a channel id
        if "@" not in address:
            return address, "channel"
        fallback = payload.fallback_channel
        cache_key = f"{address}|{fallback}"
        if cache_key in self._conversations:
            return self._conversations[cache_key]
        try:
            user = self._reads.client.users_lookupByEmail(email=address)
            opened = self._reads.client.conversations_open(users=user["user"]["id"])
            found = (opened["channel"]["id"], "dm")
        except SlackApiError as exc:
            error = _error_of(exc)
            if error == "users_not_found":
                if not fallback:
                    raise DeliveryFailed(
                        f"{address} has no Slack account and the alert names no fallback channel",
                        permanent=True,
                        cause=slack_cause(error, address),
                    ) from None
                found = (fallback, "fallback")
            else:
                raise _failure("finding the conversation", exc, address) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise _unreachable("finding the conversation", exc) from None
        self._conversations[cache_key] = found
        return found

    # --- reconcile --------------------------------------------------------------------------

    def find_posted(
        self, channel: str, key: str, oldest: float, field: str = "idempotency_key"
    ) -> str | None:
        """The ts of a message in `channel` carrying `key` as metadata `field`, or None."""
        cursor = None
        while True:
            resp = self._reads.client.conversations_history(
                channel=channel,
                oldest=f"{oldest:.6f}",
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            for message in resp.get("messages", []):
                meta = message.get("metadata") or {}
                if (
                    meta.get("event_type") == METADATA_EVENT_TYPE
                    and (meta.get("event_payload") or {}).get(field) == key
                ):
                    return message["ts"]
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not resp.get("has_more") or not cursor:
                return None

    def _reconcile(
        self, channel: str, row: Claimed, *, sent_nothing: bool = True, topic: str | None = None
    ) -> str | None:
        """Look in `channel`'s history for this row's message (or, with `topic`, any message about
        the same clock checkpoint)."""
        from slack_sdk.errors import SlackApiError

        try:
            if topic is not None:
                return self.find_posted(channel, topic, row.created_at.timestamp() - HISTORY_SKEW_S, "topic")
            return self.find_posted(channel, row.idempotency_key, row.created_at.timestamp() - HISTORY_SKEW_S)
        except SlackApiError as exc:
            raise _failure(
                "reading the conversation history", exc, channel, sent_nothing=sent_nothing
            ) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise _unreachable("reading the conversation history", exc, sent_nothing=sent_nothing) from None

    # --- send -------------------------------------------------------------------------------

    def deliver(
        self, row: Claimed, at: dt.datetime | None = None, deadline: SendDeadline | None = None
    ) -> Delivered:
        """Post one claimed row (or find it already posted); `at` is unused (same shape as e-mail).

        Args:
            deadline: no post is started that could still be written after it (module docstring);
                None (tests, one-off sends) means unbounded.

        Raises:
            DeliveryFailed: the row stays queued (transient) or fails for good (permanent).
        """
        self._cap_timeouts()
        self._deadline = deadline
        try:
            return self._deliver(row)
        finally:
            self._deadline = None

    def _deliver(self, row: Claimed) -> Delivered:
        from slack_sdk.errors import SlackApiError

        payload = parse_payload(row.payload, where=f"outbox row {row.outbox_id}")
        channel, via = self.conversation_for(row, payload)
        detail: dict[str, Any] = {"via": via, "channel_id": channel}
        if row.attempted_before and (ts := self._reconcile(channel, row)):
            log.info("outbox %s: already in Slack (ts %s), not posting again", row.outbox_id, ts)
            return Delivered(ts, {**detail, "reconciled": True})
        message = render_slack(payload, row.idempotency_key)
        topic = message_topic(row)
        if topic is not None:
            message["metadata"]["event_payload"]["topic"] = topic
            # Several people without a Slack account fall back to the same team channel: it gets
            # the alert once (the first row to arrive posts, the others find it and say so).
            if via == "fallback" and (ts := self._reconcile(channel, row, topic=topic)):
                log.info(
                    "outbox %s: %s already has this alert (ts %s), not posting it again",
                    row.outbox_id,
                    channel,
                    ts,
                )
                return Delivered(ts, {**detail, "reconciled": False, "same_destination": True})
        last = ""
        for attempt in range(1, self.post_attempts + 1):
            if not self.post_allowed():
                raise DeliveryFailed(
                    f"lease nearly over, post attempt {attempt} not started"
                    + (f" (last: {last})" if last else "")
                )
            try:
                resp = self._posts.client.chat_postMessage(channel=channel, **message)
                return Delivered(resp["ts"], {**detail, "reconciled": False, "post_attempts": attempt})
            except SlackApiError as exc:
                status = exc.response.status_code
                if status < 500:  # a 429 is a guaranteed non-post: nothing new to reconcile
                    raise _failure("posting the message", exc, channel, sent_nothing=not last) from None
                last = f"HTTP {status} {_error_of(exc)}"
            except (urllib.error.URLError, HTTPException, OSError) as exc:
                if _refused(exc):  # nothing was sent on this attempt; Slack cannot be reached
                    raise _unreachable("posting the message", exc, sent_nothing=not last) from None
                last = f"{type(exc).__name__}: {exc}"
            # Slack may or may not have posted: look before trying again.
            if ts := self._reconcile(channel, row, sent_nothing=False):
                log.info("outbox %s: posted despite %s (ts %s)", row.outbox_id, last, ts)
                return Delivered(ts, {**detail, "reconciled": True, "post_attempts": attempt})
            log.warning(
                "outbox %s: Slack post attempt %s failed (%s), retrying", row.outbox_id, attempt, last
            )
        raise DeliveryFailed(f"Slack kept failing after {self.post_attempts} attempts: {last}")

    def close(self) -> None:
        self._conversations.clear()


class _ShortWaits:
    """A slack_sdk retry interval calculator: the given waits in turn, then the last one again."""

    def __init__(self, waits: tuple[float, ...]) -> None:
        self.waits = waits

    def calculate_sleep_duration(self, current_attempt: int) -> float:
        return self.waits[min(current_attempt, len(self.waits) - 1)]


def message_topic(row: Claimed) -> str | None:
    """What an alert is about, whoever it is for: SHA-256 over (sla_id, record_id, clock_start,
    checkpoint); None for rows that name no clock (notices, digests)."""
    if not (row.sla_id and row.record_id and row.clock_start) or row.payload.get("kind") not in (
        "warning",
        "breach",
    ):
        return None
    canonical = json.dumps(
        [
            row.sla_id,
            row.record_id,
            row.clock_start.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            row.checkpoint,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _retry_after_s(response: Any) -> float:
    """The Retry-After of a 429 answer in seconds (DEFAULT_RETRY_AFTER_S when absent or unreadable).

    Never below MIN_RETRY_AFTER_S: a server answering "Retry-After: 0" again and again would
    otherwise have the row claimed and posted in a tight loop for the whole delivery budget.
    """
    for name, values in (getattr(response, "headers", None) or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(
                    float(values[0] if isinstance(values, list | tuple) else values), MIN_RETRY_AFTER_S
                )
            except (TypeError, ValueError, IndexError):
                return DEFAULT_RETRY_AFTER_S
    return DEFAULT_RETRY_AFTER_S


def _refused(exc: BaseException) -> bool:
    """True when the connection was refused (nothing sent): urllib wraps it in URLError.reason."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError) or isinstance(exc, ConnectionRefusedError)


def _unreachable(doing: str, exc: BaseException, *, sent_nothing: bool = True) -> DeliveryFailed:
    """A refused connection is the channel being down (`Deferred`); other network trouble is a
    transient failure of this row."""
    if _refused(exc):
        return Deferred(
            f"Slack refused the connection {doing}: {exc}", reason=CHANNEL_DOWN, sent_nothing=sent_nothing
        )
    return DeliveryFailed(f"Slack unreachable {doing}: {exc}")


def _error_of(exc: Any) -> str:
    try:
        return str(exc.response.get("error") or "")
    except Exception:
        return ""


def slack_cause(error: str, where: str) -> str | None:
    """The cause of a permanent Slack failure (`leadsla.notify.failure`), None for a transient one.

    A token, app or message error is the same whatever the recipient (``slack:token_revoked``); a
    recipient error names the channel or address it is about (``slack:not_in_channel:C0123``).
    """
    if error in CREDENTIAL_ERRORS or error in MESSAGE_ERRORS:
        return f"slack:{error}"
    if error in RECIPIENT_ERRORS:
        return f"slack:{error}:{where}"
    return None


def _failure(doing: str, exc: Any, where: str, *, sent_nothing: bool = True) -> DeliveryFailed:
    """The failure for a Slack error answer: `Deferred` for a 429, else permanent or transient.

    Args:
        where: the channel id (or, before there is one, the address) the call was about.
        sent_nothing: False when an earlier answer in this send left it unknown whether Slack
            posted (the deferral then keeps the attempt counted, so the next try reconciles).
    """
    error = _error_of(exc)
    status = getattr(exc.response, "status_code", None)
    if status == 429:
        wait = _retry_after_s(exc.response)
        return Deferred(
            f"Slack rate-limited {doing} (Retry-After {wait:g} s)",
            reason=RATE_LIMITED,
            retry_after_s=wait,
            sent_nothing=sent_nothing,
        )
    cause = slack_cause(error, where)
    return DeliveryFailed(
        f"Slack refused {doing}: HTTP {status} {error}".strip(), permanent=cause is not None, cause=cause
    )
