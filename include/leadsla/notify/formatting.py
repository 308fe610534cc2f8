"""How message text is written: escaping, durations, local times, and the e-mail templates.

Shared by the renderers of every payload kind. Lead text is data: `slack_escape` makes it inert
in Slack, and the Jinja environment autoescapes HTML. Pure functions; no store, no clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from leadsla.paths import templates_dir

TEMPLATES_DIR = templates_dir()
#: Slack message metadata event type carrying the idempotency key (reconciliation looks for it).
METADATA_EVENT_TYPE = "leadsla_alert"
#: A message decided this long after its checkpoint says so (catch-up after downtime).
LATE_AFTER = dt.timedelta(minutes=5)


def slack_post(text: str, blocks: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments: the fallback text, the blocks, and the idempotency key in the
    message metadata (delivery looks for it in the channel's history before posting again)."""
    return {
        "text": text,
        "blocks": blocks,
        "metadata": {"event_type": METADATA_EVENT_TYPE, "event_payload": {"idempotency_key": key}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


@dataclass(frozen=True)
class EmailContent:
    """What an e-mail says: subject, HTML and plain-text bodies, and whether it is urgent."""

    subject: str
    html: str
    text: str
    high_priority: bool


def slack_escape(text: str | None) -> str:
    """Escape text for Slack (mrkdwn and plain_text): only &, < and > are control characters.

    With them escaped, ``<!channel>``, ``<@U123>`` and ``<https://x|y>`` show as literal text.
    """
    if text is None:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line(text: str | None) -> str:
    """Collapse line breaks (e-mail subjects and headers must not contain any)."""
    return " ".join((text or "").split())


def short_duration(seconds: int) -> str:
    """``2 h 05 min`` / ``45 min`` (absolute value; the caller says whether it is overdue)."""
    minutes = abs(int(seconds)) // 60
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def words_duration(seconds: int) -> str:
    """``2 hours``, ``1 hour 30 minutes``, ``45 minutes`` (absolute value)."""
    minutes = abs(int(seconds)) // 60
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def local_time(instant: dt.datetime, timezone: str) -> str:
    """``Mon 9 Mar 2026, 14:00 EDT`` in the given IANA zone."""
    local = instant.astimezone(ZoneInfo(timezone))
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def utc_time(instant: dt.datetime) -> str:
    return f"{instant.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


@lru_cache(maxsize=1)
def templates():
    """The Jinja environment over include/templates/ (HTML autoescaped; StrictUndefined)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        # HTML templates escape every variable; the .txt twins are plain text and need none.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
