"""E-mail delivery through Airflow's SmtpHook (`smtp_default`): HTML plus plain text, one
Message-ID per idempotency key.

`SmtpHook.send_email_smtp` (provider 3.2) builds an HTML-only message, so the MIME message
(multipart/alternative: text, then HTML) is built here and handed to the hook's own
authenticated SMTP client (`hook._smtp_client`, the client `get_conn()` opened; the hook is used,
never patched). Breach mails carry X-Priority: 1, Importance: high and Priority: urgent.

Exactly once, honestly: SMTP cannot be asked "did you get this?". A crash after the server
accepted a message (250 after DATA) and before the outbox row is marked leaves the row pending;
the lease expires and the next run sends it again with the SAME Message-ID, so the receiver
(or its mail client) can drop the copy. That window is measured by tests and the benchmark.

Lease bound (`leadsla.notify.deadline`): a send is started only before the send's deadline, and
a watchdog shuts the session's socket at the deadline, so no byte of a message leaves after it
(an SMTP timeout bounds each socket operation, not a whole session, so it alone would not do).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
import logging
import re
import smtplib
import socket
import threading
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from leadsla.notify.deadline import SendDeadline
from leadsla.notify.outbox import Claimed
from leadsla.notify.outcome import CHANNEL_DOWN, Deferred, Delivered, DeliveryFailed
from leadsla.notify.payloads import parse_payload
from leadsla.notify.render import render_email

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
#: A send attempt is not started with less of its deadline left than this.
MIN_SEND_S = 1.0
DEFAULT_FROM = "lead-sla-monitor@localhost"
#: An address SMTP can carry as it is: one @, no spaces, no list or header punctuation.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+")


def email_cause(code: int | str, recipient: str | None = None) -> str:
    """The cause of a permanent e-mail failure (`leadsla.notify.failure`): the server's reply code,
    with the recipient when the refusal is about one address (``email:550:rep@example.com``)."""
    return f"email:{code}" + (f":{recipient}" if recipient else "")


def malformed(address: str) -> bool:
    """True when `address` is not one plain e-mail address (no server could deliver to it)."""
    return _ADDRESS.fullmatch(address or "") is None


def message_id(key: str, sender: str) -> str:
    """The Message-ID for an idempotency key: the same key always gives the same id."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<leadsla.{key}@{domain}>"


def build_message(row: Claimed, payload: Any, sender: str, at: dt.datetime) -> EmailMessage:
    """The MIME message for one outbox row and its parsed payload (no I/O)."""
    content = render_email(payload)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = content.subject
    msg["From"] = sender
    msg["To"] = row.recipient  # the keyed recipient; the payload only names and places them
    msg["Date"] = format_datetime(at.astimezone(dt.UTC))
    msg["Message-ID"] = message_id(row.idempotency_key, sender)
    msg["X-LeadSLA-Key"] = row.idempotency_key
    if content.high_priority:
        msg["X-Priority"] = "1 (Highest)"
        msg["Importance"] = "high"
        msg["Priority"] = "urgent"
    msg.set_content(content.text)
    msg.add_alternative(content.html, subtype="html")
    return msg


def _unreachable(exc: BaseException) -> bool:
    """Whether opening the session failed because the server could not be reached at all.

    Refused or timed-out connections, a server that hangs up or answers 4xx at connect, and
    SmtpHook's own "Unable to connect" are an outage. A TLS handshake failure is an OSError
    too, but it means the server answered and we distrust it: a configuration fault.
    """
    import ssl

    if isinstance(exc, ssl.SSLError):
        return False
    if isinstance(exc, smtplib.SMTPConnectError):
        return exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    if isinstance(exc, smtplib.SMTPException):  # an OSError too, but the server answered (AUTH, 5xx)
        return False
    if isinstance(exc, OSError):
        return True
    return type(exc).__name__ == "AirflowException" and "Unable to connect" in str(exc)


def _permanent_refusal(exc: BaseException) -> bool:
    """A 5xx answer to opening the session (e.g. 535 bad credentials) will not change by waiting."""
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


def open_smtp(conn_id: str = SMTP_CONN_ID):
    """(hook, client): an SmtpHook connected with `get_conn()` and its own SMTP client.

    Shared by alert delivery and the report e-mails, so both send the same way.

    Raises:
        DeliveryFailed: (permanent) the provider no longer exposes its client after get_conn().
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = SmtpHook(smtp_conn_id=conn_id)
    hook.get_conn()
    client = getattr(hook, "_smtp_client", None)
    if client is None:
        raise DeliveryFailed(
            "SmtpHook exposes no SMTP client after get_conn(): provider changed?",
            permanent=True,
            cause=email_cause("provider"),
        )
    return hook, client


@contextlib.contextmanager
def smtp_session(conn_id: str = SMTP_CONN_ID):
    """`open_smtp` as a context manager that quits the session afterwards."""
    hook, client = open_smtp(conn_id)
    try:
        yield hook, client
    finally:
        try:
            client.quit()
        except Exception:  # already gone: nothing to tidy
            client.close()


class EmailSender:
    """Sends claimed outbox rows by SMTP; keeps one SMTP session open across rows, reopening after errors."""

    def __init__(self, conn_id: str = SMTP_CONN_ID, *, send_attempts: int = 5) -> None:
        self.conn_id = conn_id
        self.send_attempts = send_attempts
        self._hook = None

    def _client(self):
        if self._hook is None:
            self._hook, _ = open_smtp(self.conn_id)
        return self._hook, self._hook._smtp_client

    def deliver(self, row: Claimed, at: dt.datetime, deadline: SendDeadline | None = None) -> Delivered:
        """Send one row. `at` stamps the Date header (the delivering attempt's time).

        A session the server dropped (or a 4xx reply) is reopened and the message sent again, up
        to `send_attempts` times in this call: a dropped session is usually one bad connection,
        and waiting for the next run would cost the alert a minute. A server that cannot be
        reached at all fails at once with `Deferred` (channel_down). A resend carries the same Message-ID
        (module docstring).
        With a `deadline`, no send starts within MIN_SEND_S of it and the socket is shut at it.

        Raises:
            DeliveryFailed: transient for connection trouble and 4xx replies (row stays queued),
                permanent (with its cause) for 5xx refusals of the login, recipient or message and
                for a recipient that is not an e-mail address.
        """
        payload = parse_payload(row.payload, where=f"outbox row {row.outbox_id}")
        if malformed(row.recipient):  # no server takes it, and a line break would forge headers
            raise DeliveryFailed(
                f"{row.recipient!r} is not an e-mail address",
                permanent=True,
                cause=email_cause("malformed_recipient", row.recipient),
            )
        last: DeliveryFailed | None = None
        for attempt in range(1, max(self.send_attempts, 1) + 1):
            if deadline is not None:
                deadline.require(MIN_SEND_S, f"e-mail send attempt {attempt}")
            try:
                hook, client = self._client()
            except DeliveryFailed:
                self.close()
                raise
            except Exception as exc:
                self.close()
                if not _unreachable(exc):
                    # Reached, but it refused us (credentials, TLS certificate, a missing
                    # connection): a configuration fault that must surface as failed attempts,
                    # not hide behind the breaker as an outage.
                    permanent = _permanent_refusal(exc)
                    raise DeliveryFailed(
                        f"SMTP session could not be opened: {type(exc).__name__}: {exc}",
                        permanent=permanent,
                        cause=email_cause(exc.smtp_code) if permanent else None,
                    ) from None
                # The server cannot be reached at all: not this row's fault (the deliverer's breaker
                # stops trying e-mail rows until a probe gets through). Uncounted only when no
                # earlier attempt of this call may have been accepted (a dropped 250).
                raise Deferred(
                    f"SMTP unreachable: {type(exc).__name__}: {exc}",
                    reason=CHANNEL_DOWN,
                    sent_nothing=last is None,
                ) from None
            sender = hook.from_email or DEFAULT_FROM
            msg = build_message(row, payload, sender, at)
            watchdog = _cut_at(deadline, client)
            try:
                if deadline is not None:
                    deadline.require(MIN_SEND_S, f"e-mail send attempt {attempt}")  # opening took long
                client.sendmail(sender, [msg["To"]], msg.as_bytes())
            except DeliveryFailed:
                self.close()
                raise
            except smtplib.SMTPRecipientsRefused as exc:
                self.close()
                codes = {code for code, _ in exc.recipients.values()}
                permanent = all(c >= 500 for c in codes)
                last = DeliveryFailed(
                    f"SMTP refused the recipient {row.recipient}: {codes}",
                    permanent=permanent,
                    cause=email_cause(max(codes), row.recipient) if permanent else None,
                )
            except smtplib.SMTPResponseException as exc:
                self.close()
                permanent = 500 <= exc.smtp_code < 600
                last = DeliveryFailed(
                    f"SMTP answered {exc.smtp_code}: {exc.smtp_error!r}",
                    permanent=permanent,
                    cause=email_cause(exc.smtp_code) if permanent else None,
                )
            except Exception as exc:  # OSError, SMTPServerDisconnected mid-session
                self.close()
                last = DeliveryFailed(f"SMTP session dropped: {type(exc).__name__}: {exc}")
            else:
                if watchdog is not None and watchdog.fired.is_set():  # 250 came in as the cut fell
                    self.close()  # the socket is shut: the next row opens a new session
                return Delivered(msg["Message-ID"], {"to": msg["To"], "high_priority": payload.high_priority})
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            if last.permanent:
                raise last
            log.info("outbox %s: %s; reopening the SMTP session", row.outbox_id, last)
        raise last

    def close(self) -> None:
        hook, self._hook = self._hook, None
        client = getattr(hook, "_smtp_client", None) if hook else None
        if client is not None:
            try:
                client.quit()
            except Exception:  # already gone: nothing to tidy
                try:
                    client.close()
                except Exception:
                    pass


class _Watchdog:
    """Shuts an SMTP client's socket at a deadline, so a send cannot transmit past it."""

    def __init__(self, seconds: float, client: smtplib.SMTP) -> None:
        self.fired = threading.Event()
        self._client = client
        self._timer = threading.Timer(max(seconds, 0.0), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.fired.set()
        sock = getattr(self._client, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def cancel(self) -> None:
        self._timer.cancel()


def _cut_at(deadline: SendDeadline | None, client: smtplib.SMTP) -> _Watchdog | None:
    return None if deadline is None else _Watchdog(deadline.remaining(), client)
