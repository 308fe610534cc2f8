"""Fixtures for notification tests: the Slack stand-in, the SMTP sink and the SMS gateway on ephemeral
ports, with the Airflow connections (`slack_api_default`, `smtp_default`, `apprise_sms`) pointed at
them via environment.

Use with ``from tests.notify_fixtures import *  # noqa: F403`` or pytest_plugins. Every server
is stopped and every environment variable restored after the test.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.slack_api import SlackSandbox
from sandbox.sms_gateway import SmsGateway
from sandbox.smtp_sink import SmtpSink

FALLBACK_CHANNEL = "C0SLAALERTS"
REP = {"email": "rita.rep@example.com", "name": "rita", "real_name": "Rita Rep", "tz": "America/New_York"}
MANAGER = {
    "email": "max.manager@example.com",
    "name": "max",
    "real_name": "Max Manager",
    "tz": "Europe/London",
}


def slack_connection(base_url: str) -> str:
    """`AIRFLOW_CONN_SLACK_API_DEFAULT` JSON for a stand-in at `base_url` (a dummy bot token)."""
    return json.dumps(
        {
            "conn_type": "slack",
            "password": "xoxb-sandbox-token",
            "extra": {"base_url": base_url, "timeout": 10},
        }
    )


def smtp_connection(port: int, *, timeout: int = 5) -> str:
    """`AIRFLOW_CONN_SMTP_DEFAULT` JSON for a plain local sink (no SSL, no STARTTLS)."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "timeout": timeout,
                "retry_limit": 0,
                "from_email": "sla-monitor@leadsla.example",
            },
        }
    )


@pytest.fixture
def slack_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    """The Slack stand-in with a rep, a manager and the fallback channel; 50 ms per channel between posts."""
    sandbox = SlackSandbox(data_dir=tmp_path / "slack", per_channel_interval=0.05)
    sandbox.add_users([REP, MANAGER])
    sandbox.add_channel(FALLBACK_CHANNEL, "sla-alerts")
    with sandbox:
        monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", slack_connection(sandbox.base_url))
        yield sandbox


@pytest.fixture
def smtp_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    sink = SmtpSink(tmp_path / "mail")
    with sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
        yield sink


def apprise_connection(url: str) -> str:
    """`AIRFLOW_CONN_APPRISE_SMS` JSON: an Apprise connection whose config is one SMS gateway URL."""
    return json.dumps({"conn_type": "apprise", "extra": {"config": {"path": url, "tag": "sms"}}})


@pytest.fixture
def sms_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmsGateway]:
    """The SMS gateway stand-in (SMSEagle's API), reached through the `apprise_sms` connection."""
    with SmsGateway(tmp_path / "sms") as gateway:
        monkeypatch.setenv("AIRFLOW_CONN_APPRISE_SMS", apprise_connection(gateway.apprise_url()))
        yield gateway


def alert_payload(
    kind: str = "warning", *, name: str = "Ada Lovelace", recipient: dict | None = None, **over: Any
) -> dict[str, Any]:
    """A valid `AlertPayload` dict: a 4 h SLA, 2 h elapsed (warning) or 4 h 05 (breach)."""
    breach = kind == "breach"
    payload = {
        "kind": kind,
        "sla_name": "MQL to SAL",
        "lead": {
            "id": "00Q000000000001AAA",
            "object_type": "Lead",
            "name": name,
            "company": "Analytical Engines Ltd",
            "source": "Webinar",
            "tier": "High-Intent",
        },
        "owner": {"id": "005000000000001AAA", "name": "Rita Rep", "email": REP["email"]},
        "recipient": recipient
        or {
            "name": "Rita Rep",
            "email": REP["email"],
            "timezone": "America/New_York",
            "slack_fallback_channel": FALLBACK_CHANNEL,
        },
        "team": {"name": "SDR East", "timezone": "America/New_York"},
        "target_seconds": 4 * 3600,
        "elapsed_seconds": (4 * 3600 + 300) if breach else 2 * 3600,
        "remaining_seconds": -300 if breach else 2 * 3600,
        "deadline": "2026-03-09T18:00:00Z",
        "due_at": "2026-03-09T18:05:00Z" if breach else "2026-03-09T16:00:00Z",
        "breached_at": "2026-03-09T18:00:00Z" if breach else None,
        "open_clocks": 3,
        "instance_url": "https://acme.my.salesforce.com",
    }
    payload.update(over)
    return payload


CLOCK_START = dt.datetime(2026, 3, 9, 14, 0, tzinfo=dt.UTC)  # 10:00 New York (EDT)


class SimClock:
    """Real monotonic time plus the waits skipped by `sleep`, for `deliver_due(monotonic=, sleep=)`:
    a delivery budget's waiting is simulated, so those tests take seconds. `on_sleep(total slept)`
    runs after each wait (e.g. to end an outage some simulated seconds in)."""

    def __init__(self, on_sleep: Callable[[float], None] | None = None) -> None:
        self.skipped = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.skipped += seconds
        if self.on_sleep:
            self.on_sleep(sum(self.sleeps))
