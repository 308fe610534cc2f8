"""Any payload to what its channel sends: Slack `chat.postMessage` arguments or e-mail content.

One table maps each payload schema to its two renderers, so a new kind is one line here and no
`if kind ==` chain elsewhere. Renders only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadsla.notify.alert import alert_email_message, alert_slack_message
from leadsla.notify.digest import digest_email_message, digest_slack_message
from leadsla.notify.formatting import EmailContent
from leadsla.notify.notice import notice_email_message, notice_slack_message
from leadsla.notify.payloads import AlertPayload, DigestPayload, NoticePayload, Payload

#: payload schema -> (Slack renderer(payload, idempotency key), e-mail renderer(payload))
RENDERERS: dict[type[Payload], tuple[Callable[[Any, str], dict[str, Any]], Callable[[Any], EmailContent]]] = {
    AlertPayload: (alert_slack_message, alert_email_message),
    NoticePayload: (notice_slack_message, notice_email_message),
    DigestPayload: (digest_slack_message, digest_email_message),
}


def render_slack(payload: Payload, key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments for a parsed payload (`leadsla.notify.payloads.parse_payload`)."""
    return RENDERERS[type(payload)][0](payload, key)


def render_email(payload: Payload) -> EmailContent:
    """Subject and bodies for a parsed payload."""
    return RENDERERS[type(payload)][1](payload)
