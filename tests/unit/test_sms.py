"""Text messages, pure parts: numbers (form and masking), the text itself, how Apprise's answer is
read, the policy's `sms` rules, and which breaches are texted (critical tier, someone off work,
nobody else; a person without a number gets it by e-mail at once)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.phones import mask_phone, mask_phones_in, normalise_phone, shown_recipient
from leadsla.notify.outcome import CHANNEL_DOWN, RATE_LIMITED, Deferred
from leadsla.notify.payloads import parse_payload
from leadsla.notify.sms import SMS_MAX_CHARS, SMS_ONE_PART, classify, service_url, sms_text, url_for
from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy
from tests.notify_fixtures import alert_payload

POLICY = load_policy()
KEY = "3f9a1c" + "0" * 58
REP, MANAGER = "005000000000001AAA", "005000000000002AAA"


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+1 (555) 123-4567", "+15551234567"),
        ("+44 7700 900123", "+447700900123"),
        ("+49.151.2345.6789", "+4915123456789"),
        ("555 123 4567", None),  # no country code: never guessed
        ("+0 555 1234", None),
        ("+1 555", None),
        ("call me", None),
        ("", None),
        (None, None),
    ],
)
def test_a_mobile_number_is_kept_in_international_form_or_not_at_all(typed, expected) -> None:
    assert normalise_phone(typed) == expected


def test_a_number_is_shown_by_its_last_digits_only() -> None:
    assert mask_phone("+1 (555) 123-4567") == "***567"
    assert mask_phone("12") == "***"
    assert shown_recipient("sms", "+15551234567") == "***567"
    assert shown_recipient("email", "rita@example.com") == "rita@example.com"
    line = "Sent 1 SMSEagle phone notification to +15551234567 and 44 7700 900123."
    assert mask_phones_in(line) == "Sent 1 SMSEagle phone notification to ***567 and ***123."


# --- the text -----------------------------------------------------------------------------------


def test_a_breach_text_fits_one_sms_and_says_lead_timing_owner_roles_and_ref() -> None:
    payload = parse_payload(alert_payload("breach", roles=["owner_manager"]))
    assert sms_text(payload, KEY) == (
        "LeadSLA BREACH (High-Intent): MQL to SAL - Ada Lovelace, Analytical Engines Ltd, overdue 5 min. "
        "Owner Rita Rep. To you as owner manager. ref 3f9a1c"
    )
    # A longer name: the roles go first, so it still fits one SMS with the lead, timing and ref.
    longer = parse_payload(
        alert_payload("breach", name="Bartholomew Featherstonehaugh-Smythe", roles=["owner", "team_manager"])
    )
    text = sms_text(longer, KEY)
    assert len(text) <= SMS_ONE_PART and "To you as" not in text
    assert "Featherstonehaugh-Smythe" in text and "overdue 5 min" in text and text.endswith("ref 3f9a1c")


def test_lead_text_forms_no_link_and_a_long_lead_still_fits_two_parts() -> None:
    hostile = "Visit https://evil.example/x or www.evil.com, mail boss@evil.com\nnow " + "A" * 300
    payload = parse_payload(
        alert_payload("breach", name=hostile, roles=["owner", "owner_manager", "team_manager"])
    )
    text = sms_text(payload, KEY)
    assert len(text) <= SMS_MAX_CHARS and "\n" not in text
    for linkish in ("://", "www.", "@", "evil.example", "evil.com"):
        assert linkish not in text, linkish
    assert "evil[.]example" in text and text.endswith("ref 3f9a1c")


def test_a_warning_says_how_long_is_left() -> None:
    text = sms_text(parse_payload(alert_payload("warning")), KEY)
    assert text.startswith("LeadSLA warning") and "2 h 00 min left" in text


# --- the connection and Apprise's answer --------------------------------------------------------


def test_the_connection_names_one_sms_url_and_the_number_goes_as_to() -> None:
    assert service_url({"path": "smseagles://t@gw/"}, "c") == "smseagles://t@gw/"
    both = [{"path": "slack://a/b", "tag": "alerts"}, {"path": "smseagles://t@gw/", "tag": "sms"}]
    assert service_url(both, "c") == "smseagles://t@gw/"
    with pytest.raises(Exception, match="2 SMS service URLs") as failed:
        service_url([{"path": "a://x"}, {"path": "b://y"}], "c")
    assert failed.value.cause == "sms:bad_connection" and "a://x" not in str(failed.value)
    assert url_for("smseagles://t@gw:8443/?priority=normal&to=+1", "+15551234567") == (
        "smseagles://t@gw:8443/?priority=normal&to=%2B15551234567"
    )
    # A text is for what cannot wait: high priority unless the connection says otherwise.
    assert url_for("smseagle://t@gw:8443/", "+15551234567") == (
        "smseagle://t@gw:8443/?priority=high&to=%2B15551234567"
    )


@pytest.mark.parametrize(
    ("lines", "cause", "permanent"),
    [
        (
            [
                "Failed to send 1 to +15551234567 SMSEagle phone notification: {'error_text': "
                "'Invalid login or token', 'status': 'error'}, error=401."
            ],
            "sms:auth",
            True,
        ),
        (
            [
                "Failed to send 1 to +15551234567 SMSEagle phone notification: {'error_text': "
                "'Invalid phone number', 'status': 'error'}, error=400."
            ],
            "sms:rejected:***567",
            True,
        ),
        (
            ["Failed to send 1 to +15551234567 SMSEagle phone notification: Not Found, error=404."],
            "sms:not_found",
            True,
        ),
        (
            [
                "Failed to send 1 to +15551234567 SMSEagle phone notification: {'error_text': "
                "'modem busy', 'status': 'error'}, error=500."
            ],
            None,
            False,
        ),
        (
            [
                "A Connection error occured sending 1 SMSEagle phone notification(s).",
                "Socket Exception: ReadTimeout(...)",
            ],
            None,
            False,
        ),
    ],
)
def test_apprise_log_lines_say_permanent_or_transient(lines, cause, permanent) -> None:
    failure = classify(lines, "***567")
    assert (failure.cause, failure.permanent, type(failure).__name__) == (cause, permanent, "DeliveryFailed")
    assert "5551234567" not in str(failure)


def test_a_refused_connection_is_the_gateway_down_and_a_429_waits() -> None:
    down = classify(
        [
            "A Connection error occured sending 1 SMSEagle phone notification(s).",
            "Socket Exception: HTTPConnectionPool: [Errno 111] Connection refused",
        ],
        "***567",
    )
    assert isinstance(down, Deferred) and down.reason == CHANNEL_DOWN and down.sent_nothing
    busy = classify(["Failed to send 1 to ***567 SMSEagle phone notification: x, error=429."], "***567")
    assert isinstance(busy, Deferred) and busy.reason == RATE_LIMITED and busy.retry_after_s == 30


# --- the policy ---------------------------------------------------------------------------------


def _policy_file(tmp_path, *, sms_section: bool, on: str):
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    if not sms_section:
        text = text.replace("sms: {connection: apprise_sms, off_hours_breaches: true}", "")
    if on == "warning":
        text = text.replace(
            '- {id: warning, at: "80%", notify: [owner, owner_manager], channels: [slack, email]}',
            '- {id: warning, at: "80%", notify: [owner, owner_manager], channels: [slack, sms]}',
            1,
        )
    path = tmp_path / f"policy_{sms_section}_{on}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sms_is_listed_on_breaches_only_and_needs_the_sms_section(tmp_path) -> None:
    no_section = _policy_file(tmp_path, sms_section=False, on="breach")
    with pytest.raises(PolicyError, match=r"slas\[0\]\.breach\.channels\[2\]: 'sms': the policy has no sms"):
        load_policy(no_section)
    on_warning = _policy_file(tmp_path, sms_section=True, on="warning")
    with pytest.raises(
        PolicyError, match=r"slas\[0\]\.checkpoints\[1\]\.channels\[1\]: 'sms': a warning can"
    ):
        load_policy(on_warning)
    assert load_policy(_policy_file(tmp_path, sms_section=True, on="breach")).sms.connection == "apprise_sms"


# --- which breaches are texted ------------------------------------------------------------------


def _users(rep_phone: str | None = "+1 555 123 4567", manager_phone: str | None = "+44 7700 900123"):
    def user(uid, name, email, manager, team, tz, phone):
        return {
            "user_id": uid,
            "name": name,
            "email": email,
            "manager_id": manager,
            "team": team,
            "timezone": tz,
            "is_active": True,
            "fields": {"MobilePhone": phone},
        }

    return pd.DataFrame(
        [
            user(REP, "Rita Rep", "rita@example.com", MANAGER, "sdr_east", "America/New_York", rep_phone),
            user(
                MANAGER, "Max Manager", "max@example.com", None, "sdr_east", "America/New_York", manager_phone
            ),
        ]
    )


def _breach(now: pd.Timestamp, *, critical: bool, users: pd.DataFrame | None = None):
    start = now - pd.Timedelta(hours=4, minutes=5)
    clocks = pd.DataFrame(
        [
            {
                "sla_id": "sales_touch",
                "record_id": "00Q000000000001AAA",
                "clock_start": start,
                "object_type": "Lead",
                "tier": "enterprise" if critical else "standard",
                "target_seconds": 14400,
                "owner_id": REP,
                "team": "sdr_east",
                "state": "breached",
                "deadline": start + pd.Timedelta(hours=4),
                "critical": critical,
                "elapsed_seconds": 14700,
            }
        ]
    )
    checkpoints = pd.DataFrame(
        [
            {
                "sla_id": "sales_touch",
                "record_id": "00Q000000000001AAA",
                "clock_start": start,
                "policy_version": "v",
                "checkpoint": "breach",
                "offset_seconds": 14460,
                "reached_at": start + pd.Timedelta(seconds=14460),
                "status": "due",
            }
        ]
    )
    from leadsla.decisions.recipients import Directory

    records = pd.DataFrame(
        [{"record_id": "00Q000000000001AAA", "name": "Ada", "company": "AE", "lead_source": "Web"}]
    )
    return decide_checkpoints(
        clocks,
        checkpoints,
        records,
        Directory(POLICY, _users() if users is None else users),
        now=now.to_pydatetime(),
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )


TUESDAY_NOON = pd.Timestamp("2026-11-17T17:00:00Z")  # 12:00 in New York: everyone at work
TUESDAY_NIGHT = pd.Timestamp("2026-11-18T03:00:00Z")  # 22:00 in New York: off work


def _texts(found) -> dict[str, dt.datetime]:
    return {m.recipient: m.not_before for m in found.messages if m.channel == "sms"}


def test_a_critical_breach_texts_owner_and_manager_at_once_day_or_night() -> None:
    for now in (TUESDAY_NOON, TUESDAY_NIGHT):
        found = _breach(now, critical=True)
        assert _texts(found) == {"+15551234567": now.to_pydatetime(), "+447700900123": now.to_pydatetime()}
        assert not any(m.channel == "sms" and "vp" in str(m.payload["roles"]) for m in found.messages)


def test_a_breach_in_working_hours_that_is_not_critical_is_not_texted() -> None:
    found = _breach(TUESDAY_NOON, critical=False)
    assert _texts(found) == {} and {m.channel for m in found.messages} == {"email", "slack"}


def test_a_breach_reaching_someone_off_work_is_texted_now_while_slack_and_email_wait() -> None:
    found = _breach(TUESDAY_NIGHT, critical=False)
    now = TUESDAY_NIGHT.to_pydatetime()
    assert _texts(found) == {"+15551234567": now, "+447700900123": now}
    held = [
        m.not_before
        for m in found.messages
        if m.channel in ("email", "slack") and m.recipient == "rita@example.com"
    ]
    assert held and all(t > now + dt.timedelta(hours=8) for t in held)  # the morning


def test_off_hours_texts_can_be_turned_off() -> None:
    policy = POLICY.model_copy(update={"sms": POLICY.sms.model_copy(update={"off_hours_breaches": False})})
    from leadsla.decisions import checkpoints

    assert not checkpoints.text_now(policy, breach=True, critical=False, off_work=True)
    assert checkpoints.text_now(policy, breach=True, critical=True, off_work=False)
    assert not checkpoints.text_now(POLICY, breach=False, critical=True, off_work=True)


def test_someone_without_a_number_gets_the_text_by_email_at_once_and_is_listed() -> None:
    found = _breach(TUESDAY_NIGHT, critical=False, users=_users(rep_phone=None))
    now = TUESDAY_NIGHT.to_pydatetime()
    assert _texts(found) == {"+447700900123": now}
    rita_mail = [m for m in found.messages if m.channel == "email" and m.recipient == "rita@example.com"]
    assert [m.not_before for m in rita_mail] == [now]  # the e-mail carries the text, now
    rita_slack = [m for m in found.messages if m.channel == "slack" and m.recipient == "rita@example.com"]
    assert all(m.not_before > now for m in rita_slack)  # Slack still waits for the morning
    assert found.no_phone == [f"sales_touch/00Q000000000001AAA/breach: Rita Rep ({REP})"]
