"""A permanent delivery failure, told to data engineering on the other channel, once per cause and day.

A revoked Slack token (or one that lost a scope, or whose account was deactivated) fails every
Slack message the same way; a recipient Slack or the mail server refuses fails every message to
it. Retrying cannot help, so `leadsla.notify.delivery` marks the message failed at once and queues
this notice for data engineering (quality.yaml `incident.slack_channel` and `incident.email`) on
the channel that did not fail: Slack broken -> e-mail, e-mail broken -> Slack, SMS broken -> e-mail.

The notice is keyed on the failure's cause (`DeliveryFailed.cause`: ``slack:token_revoked``,
``email:550:rep@example.com``) and the UTC day, so a revoked token that fails 500 messages is one
notice, with one reminder a day while it lasts. Decides only: the outbox writes it (`mark_failed`
with `notices`). The notice's own lines are escaped like lead text when rendered.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from leadsla.decisions.phones import shown_recipient
from leadsla.decisions.plan import Notice

log = logging.getLogger(__name__)

#: The notices' source: their outbox rows' sla_id, and the first part of their audit actor.
SOURCE = "delivery"
CHANNEL_NAMES = {"slack": "Slack", "email": "E-mail", "sms": "SMS"}
#: What to do about a cause, by its code (the part after the channel).
_FIXES = {
    "invalid_auth": "The bot token in the slack_api_default connection is not accepted: put a working "
    "one there.",
    "not_authed": "The slack_api_default connection holds no bot token: put a working one there.",
    "token_revoked": "The bot token in slack_api_default was revoked: reinstall the Slack app and put "
    "its new token in the connection.",
    "token_expired": "The bot token in slack_api_default expired: put a fresh one in the connection.",
    "account_inactive": "The Slack app's account or workspace was deactivated: reactivate it or "
    "install the app again, then update slack_api_default.",
    "missing_scope": "The Slack app lacks a scope it needs (chat:write, im:write, users:read.email, "
    "and the history scopes of the channels it posts in): add it and reinstall the app.",
    "not_in_channel": "The Slack app is not a member of this channel: invite it, or fix the channel id "
    "in the policy or quality.yaml.",
    "channel_not_found": "Slack knows no such channel (or the app cannot see it): fix the channel id in "
    "the policy or quality.yaml.",
    "is_archived": "The channel is archived: unarchive it or name another one in the policy.",
    "users_not_found": "This person has no Slack account and the alert names no fallback channel: give "
    "their team a slack_channel in the policy.",
    "malformed_recipient": "This is not an e-mail address: fix it where it comes from (the CRM user's "
    "Email, or the policy).",
    "payload": "The stored message does not follow its schema: a bug; see the deliver task's log.",
}
_SMS_FIXES = {
    "no_connection": "There is no Airflow connection for text messages: create the one the policy's "
    'sms.connection names (type apprise, config {"path": "smseagles://TOKEN@host/", "tag": "sms"}).',
    "bad_connection": "The Apprise connection for text messages holds no single usable SMS URL: fix its "
    "config (one path, tagged sms).",
    "auth": "The SMS gateway refuses our login: put a working token in the Apprise connection's URL.",
    "not_found": "The Apprise connection's URL reaches no SMS API: fix its host or port.",
    "rejected": "The SMS gateway refuses this number: fix the CRM user's MobilePhone.",
    "malformed_recipient": "This is no mobile number in international form: fix the CRM user's "
    "MobilePhone (+ and country code).",
}
_EMAIL_FIXES = {
    "535": "The mail server refuses our login: fix the credentials in the smtp_default connection.",
    "530": "The mail server wants a login (or TLS) we do not give: fix the smtp_default connection.",
}


@dataclass(frozen=True)
class Contacts:
    """Data engineering's Slack channel and e-mail address (quality.yaml `incident`)."""

    slack_channel: str | None
    email: str | None

    def other_than(self, channel: str) -> tuple[str, str] | None:
        """(channel, address) to tell about a failure of `channel`; None when there is none."""
        if channel in ("slack", "sms") and self.email:
            return "email", self.email
        if channel in ("email", "sms") and self.slack_channel:
            return "slack", self.slack_channel
        return None


def _fix(cause: str) -> str:
    channel, _, rest = cause.partition(":")
    code = rest.partition(":")[0]
    if channel == "sms" and code in _SMS_FIXES:
        return _SMS_FIXES[code]
    if channel == "email" and code in _EMAIL_FIXES:
        return _EMAIL_FIXES[code]
    if code in _FIXES:
        return _FIXES[code]
    if channel == "email" and code.startswith("5"):
        return (
            f"The mail server refused this with {code}: see the error; it will refuse it again until fixed."
        )
    return "See the error: it will not go away by retrying."


def failure_notice(
    *,
    cause: str,
    channel: str,
    error: str,
    recipient: str,
    outbox_id: int,
    kind: str | None,
    at: dt.datetime,
    contacts: Contacts,
) -> Notice | None:
    """Data engineering's notice of a permanent failure of `channel`, on the other channel.

    Returns:
        None when there is no other channel to tell (the contact is not configured); the caller
        logs that nobody was told.
    """
    to = contacts.other_than(channel)
    if to is None:
        return None
    day = at.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    name = CHANNEL_NAMES.get(channel, channel)
    code = cause.split(":")[1] if ":" in cause else cause
    about = cause.split(":", 2)[2] if cause.count(":") >= 2 else None
    scope = (
        f"Every {name} message to {about} fails this way" if about else f"Every {name} message fails this way"
    )
    lines = (
        f"Error: {error}",
        _fix(cause),
        f"{scope} until it is fixed: each is marked failed at once (outbox status 'failed', "
        "last_error), not retried. The sla_health digest counts them.",
        f"First today: outbox row {outbox_id}, {kind or 'message'} to {shown_recipient(channel, recipient)}.",
    )
    return Notice(
        source=SOURCE,
        subject=cause,
        opened_at=day,
        checkpoint="failed",
        recipients=(to,),
        title=f"{name} delivery failing: {code}" + (f" for {about}" if about else ""),
        severity="critical",
        lines=lines,
        intro=(
            f"Lead SLA Monitor cannot deliver by {name} ({code}). You get this on the other channel "
            "once a day while it lasts."
        ),
        actor=f"{SOURCE}.{to[0]}",
        audit_detail={"kind": "delivery_failure", "cause": cause, "failed_channel": channel},
    )
