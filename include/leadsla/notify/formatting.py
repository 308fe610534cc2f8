"""How message text is written: escaping, durations, local times, and the e-mail templates.

Shared by the renderers of every payload kind. Lead text is data: `slack_escape` makes it plain
text in Slack (no mention, link or formatting), every mrkdwn text object is `mrkdwn(...)` (verbatim:
Slack turns no bare URL or #channel into a link), and the Jinja environment autoescapes HTML. Pure
functions; no store, no clock.
"""

from __future__ import annotations

import datetime as dt
import re
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


#: mrkdwn's formatting characters: *bold*, _italic_, ~strike~, `code` (and ```blocks```).
_FORMATTING = re.compile(r"([*_~`])")
#: A quote (`>` at a line's start, escaped as &gt;) in lead text.
_QUOTE = re.compile(r"^(?=&gt;)", re.M)
#: Zero-width joiner: invisible, and not a word boundary.
ZERO_WIDTH_JOINER = "\u200d"


def slack_escape(text: str | None) -> str:
    """Lead or person text as plain text in Slack (mrkdwn and plain_text objects).

    &, < and > are escaped, so ``<!channel>``, ``<@U123>`` and ``<https://x|y>`` show as literal
    text. Each formatting character (``* _ ~ ` ``) gets a zero-width joiner on both sides and a
    line starting with ``>`` one in front: mrkdwn opens or closes a span only at a character with
    a word boundary on one side and text on the other, which a joiner on both sides never is - so
    ``*bold*`` from a lead field shows as typed, never bold. (Bare URLs are left to `mrkdwn`'s
    verbatim flag.)
    """
    if text is None:
        return ""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    joiner = ZERO_WIDTH_JOINER
    return _QUOTE.sub(joiner, _FORMATTING.sub(rf"{joiner}\1{joiner}", escaped))


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object that Slack shows verbatim: no bare URL, #channel or @mention in it is
    turned into a link (our own ``<url|label>`` links and *formatting* still work)."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


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
