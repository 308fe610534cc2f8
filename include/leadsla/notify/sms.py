"""Text messages through Airflow's Apprise provider: the connection's SMS gateway URL, one text per row.

The Airflow connection (type ``apprise``, id from the policy's `sms.connection`, default
``apprise_sms``) holds the gateway's Apprise URL in its config, e.g.
``{"path": "smseagles://TOKEN@sms.example.com/", "tag": "sms"}``: SMSEagle's JSON-RPC API on a
host of our choosing (a self-hosted gateway; the stand-in in `make run` and the tests is
`sandbox.sms_gateway`, reached by the same URL with another host). The hook (`AppriseHook`) reads
the connection; the send is Apprise's own plugin for that URL with the row's number added as
``to=``: the client is the real one, only connection values differ. `AppriseHook.notify` is not
used: it drops Apprise's result, and a message whose send failed must not be marked sent.

Classification: Apprise answers True/False and says why in its log, so the send runs with the
``apprise`` logger captured (`_AppriseLog`): its records are read for the HTTP status or the
connection error, and re-logged with every phone number masked (Apprise writes the number in
full); nothing of it reaches a log unmasked. 401/403, a gateway refusal naming the login, 404 and
a missing or malformed connection are permanent (`DeliveryFailed.cause` ``sms:...``); 400/422 or
the gateway's refusal of the number is permanent for that number; a refused connection is the
channel being down (`Deferred`); 429 waits; other trouble is retried with back-off.

Exactly once, honestly: an SMS gateway cannot be asked "did you send this?". A send whose answer
was lost (a read timeout after the gateway took it) is retried and may text twice; each text ends
with ``ref`` and the first characters of its idempotency key, so a reader can tell the copy. A
failed send that did not reach the gateway (refused, 5xx before sending) is retried and texts once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from typing import Any

from leadsla.decisions.phones import mask_phone, mask_phones_in, normalise_phone
from leadsla.notify.deadline import SendDeadline
from leadsla.notify.formatting import one_line, short_duration
from leadsla.notify.outbox import Claimed
from leadsla.notify.outcome import CHANNEL_DOWN, RATE_LIMITED, Deferred, Delivered, DeliveryFailed
from leadsla.notify.payloads import AlertPayload, DigestPayload, NoticePayload, parse_payload

log = logging.getLogger(__name__)

SMS_CONN_ID = "apprise_sms"
#: One SMS is 160 GSM characters; a text is kept to two (320), and usually fits one.
SMS_MAX_CHARS = 320
SMS_ONE_PART = 160
#: Apprise's own socket timeouts (connect, read: `cto`/`rto` in the URL, 4 s each by default): a
#: send is started only with both left before the lease's deadline.
DEFAULT_TIMEOUTS_S = 8.0
#: Waited after the gateway's 429 (Apprise passes on no Retry-After).
RATE_LIMIT_WAIT_S = 30.0
#: Where a lead's text could become a link on a phone: a scheme, www., an @, or a dot between
#: letters (``evil.com``). Defused as ``evil[.]com``: lead text is data, the text carries no link.
_LINKISH = re.compile(r"(?i)(://|www\.|@|(?<=[a-z0-9])\.(?=[a-z]))")


# --- what a text says ---------------------------------------------------------------------------


def _plain(text: str | None, limit: int) -> str:
    """Lead or person text for a text message: one line, no link-forming pieces, at most `limit`."""
    flat = one_line(text)
    flat = _LINKISH.sub(lambda m: {"://": "[:]//", "@": "[at]"}.get(m.group(0), "[.]"), flat)
    flat = "".join(ch for ch in flat if ch.isprintable())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "~"


def sms_text(payload: Any, key: str) -> str:
    """The text for a parsed payload: short, plain, under SMS_MAX_CHARS (usually one part).

    Alerts: ``LeadSLA BREACH (critical): Sales touched lead - Ada Lovelace, Analytical Engines,
    overdue 5 min. Owner Rita Rep. To you as owner manager. ref 3f9a1c``. Lead text is defused
    (`_plain`); the only fixed parts are ours. Notices and digests get their title.
    """
    ref = f" ref {key[:6]}"
    if isinstance(payload, AlertPayload):
        p = payload
        head = "LeadSLA BREACH" if p.kind == "breach" else "LeadSLA warning"
        tier = f" ({_plain(p.lead.tier, 20)})" if p.lead.tier else ""
        when = (
            f"overdue {short_duration(p.remaining_seconds)}"
            if p.overdue
            else f"{short_duration(p.remaining_seconds)} left"
        )
        parts = [
            f"{head}{tier}: {_plain(p.sla_name, 40)}",
            f" - {_plain(p.lead.name, 40)}",
            f", {_plain(p.lead.company, 30)}" if p.lead.company else "",
            f", {when}.",
            f" Owner {_plain(p.owner.name, 30)}.",
            f" To you as {_plain(p.roles_text, 40)}." if p.roles else "",
        ]
        # Drop the least needed parts until it fits one SMS (never the lead, the timing or the ref).
        for optional in (5, 2, 4):
            if len("".join(parts) + ref) <= SMS_ONE_PART:
                break
            parts[optional] = ""
        text = "".join(parts)
    elif isinstance(payload, NoticePayload | DigestPayload):
        title = payload.title if isinstance(payload, NoticePayload) else f"{len(payload.items)} SLA warnings"
        text = f"LeadSLA: {_plain(title, 200)}"
    else:  # pragma: no cover - parse_payload knows no other kind
        raise TypeError(type(payload).__name__)
    return (text[: SMS_MAX_CHARS - len(ref)] + ref).strip()


# --- the gateway's URL ----------------------------------------------------------------------------


def service_url(config: Any, conn_id: str) -> str:
    """The one SMS service URL in an Apprise connection's config (a dict, or a list of dicts: the
    one tagged ``sms``, else the only one).

    Raises:
        DeliveryFailed: permanent (``sms:bad_connection``) when there is none or more than one; the
            message names the connection, never its URL (it holds the token).
    """
    entries = config if isinstance(config, list) else [config]
    entries = [e for e in entries if isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"]]
    tagged = [e for e in entries if "sms" in str(e.get("tag") or "").replace(",", " ").split()]
    chosen = tagged or entries
    if len(chosen) != 1:
        raise DeliveryFailed(
            f"the {conn_id} connection's config has {len(chosen)} SMS service URLs (expected one "
            '{"path": "smseagles://TOKEN@host/", "tag": "sms"})',
            permanent=True,
            cause="sms:bad_connection",
        )
    return chosen[0]["path"]


def url_for(base: str, phone: str) -> str:
    """`base` with the number added as the ``to`` argument, and sent at high priority unless the
    connection names a priority itself: a text only goes for what cannot wait (`text_now`)."""
    parts = urllib.parse.urlsplit(base)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "priority" for k, _ in query):
        query.append(("priority", "high"))
    query = [(k, v) for k, v in query if k != "to"] + [("to", phone)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


# --- sending --------------------------------------------------------------------------------------


class _AppriseLog(logging.Handler):
    """Captures the ``apprise`` logger's records during one send (none of them propagates): read to
    classify a failure, then re-logged here with phone numbers masked."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger("apprise")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _AppriseLog:
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.DEBUG)
        self._logger.propagate = False
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]
        for record in self.records:
            if record.levelno >= logging.INFO:
                log.log(record.levelno, "apprise: %s", mask_phones_in(record.getMessage()))

    def lines(self) -> list[str]:
        return [record.getMessage() for record in self.records]


def classify(lines: list[str], masked: str) -> DeliveryFailed:
    """The failure Apprise's log lines describe (module docstring); `masked` is the number as shown."""
    text = "\n".join(lines)
    if "Connection error" in text or "Socket Exception" in text:
        socket_error = next((line for line in lines if "Socket Exception" in line), "")
        if "refused" in socket_error.lower():
            return Deferred("the SMS gateway refused the connection", reason=CHANNEL_DOWN, sent_nothing=True)
        return DeliveryFailed(f"the SMS gateway could not be reached: {mask_phones_in(socket_error)[:200]}")
    status = re.search(r"error=(\d{3})", text)
    code = int(status.group(1)) if status else None
    refusal = re.search(r"error_text['\"]?\s*:\s*['\"]([^'\"]+)", text)
    why = refusal.group(1)[:120] if refusal else ""
    said = f"HTTP {code}" + (f" {why}" if why else "") if code else (why or "no answer Apprise could read")
    if code == 429:
        return Deferred(
            "the SMS gateway is rate limiting (HTTP 429)",
            reason=RATE_LIMITED,
            retry_after_s=RATE_LIMIT_WAIT_S,
        )
    if code in (401, 403) or re.search(r"(?i)login|password|token|auth", why):
        return DeliveryFailed(f"the SMS gateway refused our login: {said}", permanent=True, cause="sms:auth")
    if code in (404, 405):
        return DeliveryFailed(
            f"the SMS gateway URL answers {said}: no SMS API there", permanent=True, cause="sms:not_found"
        )
    if code in (400, 422) or (code == 200 and why):
        return DeliveryFailed(
            f"the SMS gateway refused the text to {masked}: {said}",
            permanent=True,
            cause=f"sms:rejected:{masked}",
        )
    return DeliveryFailed(f"the SMS gateway send failed: {mask_phones_in(said)}")


class SmsSender:
    """Sends claimed outbox rows as text messages through the Apprise connection's gateway."""

    def __init__(self, conn_id: str = SMS_CONN_ID) -> None:
        self.conn_id = conn_id
        self._url: str | None = None

    def _service_url(self) -> str:
        if self._url is None:
            from airflow.providers.apprise.hooks.apprise import AppriseHook

            hook = AppriseHook(apprise_conn_id=self.conn_id)
            try:
                conn = hook.get_connection(self.conn_id)
            except Exception as exc:  # AirflowNotFoundException, or a secrets backend error
                if type(exc).__name__ != "AirflowNotFoundException":
                    raise DeliveryFailed(f"the {self.conn_id} connection could not be read: {exc}") from None
                raise DeliveryFailed(
                    f"there is no Airflow connection {self.conn_id} (type apprise) for text messages",
                    permanent=True,
                    cause="sms:no_connection",
                ) from None
            try:
                config = hook.get_config_from_conn(conn)
            except (KeyError, ValueError, TypeError):
                raise DeliveryFailed(
                    f"the {self.conn_id} connection has no readable config (extra.config)",
                    permanent=True,
                    cause="sms:bad_connection",
                ) from None
            self._url = service_url(config, self.conn_id)
        return self._url

    def deliver(
        self, row: Claimed, at: dt.datetime | None = None, deadline: SendDeadline | None = None
    ) -> Delivered:
        """Text one claimed row; `at` is unused (same shape as the other senders).

        Raises:
            DeliveryFailed: transient (retried with back-off), permanent (with its cause) or
                `Deferred` (gateway down, rate limited).
        """
        import apprise

        payload = parse_payload(row.payload, where=f"outbox row {row.outbox_id}")
        phone = normalise_phone(row.recipient)
        masked = mask_phone(row.recipient)
        if phone is None:
            raise DeliveryFailed(
                f"{masked} is not a mobile number in international form (+ and country code)",
                permanent=True,
                cause=f"sms:malformed_recipient:{masked}",
            )
        base = self._service_url()
        text = sms_text(payload, row.idempotency_key)
        if deadline is not None:
            deadline.require(DEFAULT_TIMEOUTS_S, "the text message")
        with _AppriseLog() as seen:
            service = apprise.Apprise.instantiate(url_for(base, phone))
            sent = service.notify(body=text, title="") if service else None
        if service is None:
            raise DeliveryFailed(
                f"the {self.conn_id} connection's URL is not one Apprise can send with",
                permanent=True,
                cause="sms:bad_connection",
            )
        if not sent:
            raise classify(seen.lines(), masked)
        return Delivered(f"sms:{row.idempotency_key[:12]}", {"to": masked, "chars": len(text)})

    def close(self) -> None:
        self._url = None
