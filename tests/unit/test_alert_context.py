"""Context in every alert (leadsla.decisions.context, the alert and digest renderers): score, deal
value, source, campaign and the rep's open clocks, "not set" where missing, lead text escaped, and
idempotency keys unchanged by the context. Pure: no store, no servers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.context import ContextFields, converted_leads, describe, record_context
from leadsla.decisions.digest import digest_of
from leadsla.decisions.plan import Message, queued_message
from leadsla.decisions.recipients import Directory
from leadsla.notify.alert import alert_email_message, alert_slack_message
from leadsla.notify.digest import digest_email_message, digest_slack_message
from leadsla.notify.payloads import AlertPayload, DigestPayload, PayloadError
from tests.notify_fixtures import alert_payload
from tests.unit.test_checkpoint_actions import POLICY, START, USERS, _checkpoints, _clock

FIELDS = ContextFields(deal_value=25000.0)
FULL = {"score": "87", "amount": 25000.0, "amount_basis": "estimate", "campaign": "Spring Webinar"}
EVIL = "<!channel> *Free* <https://evil.example|win> & _more_"


def _lead(**fields) -> dict:
    return {"object_type": "Lead", "record_id": "00Q000000000001AAA", "fields": fields}


def test_a_lead_carries_its_score_campaign_and_the_expected_deal_value_as_an_estimate() -> None:
    assert record_context(_lead(Lead_Score__c=87.0, Campaign__c="Spring  Webinar\n"), FIELDS) == FULL
    assert record_context(_lead(Lead_Score__c=0, Campaign__c=""), FIELDS)["score"] == "0"  # 0 is a score
    bare = record_context(_lead(Lead_Score__c=float("nan")), ContextFields())
    assert bare == {"score": None, "amount": None, "amount_basis": None, "campaign": None}
    assert record_context(_lead(Lead_Score__c="A"), FIELDS)["score"] == "A"  # a text score, verbatim


def test_an_opportunity_carries_its_amount_and_its_lead_s_score_and_campaign() -> None:
    opp = {"object_type": "Opportunity", "record_id": "006000000000001AAA", "fields": {"Amount": 48000}}
    lead = _lead(Lead_Score__c=92, Campaign__c="Trade show", ConvertedOpportunityId="006000000000001AAA")
    other = _lead(ConvertedOpportunityId="006000000000009AAA")
    records = pd.DataFrame([lead | {"record_id": "00Q000000000002AAA"}, other, opp])
    origin = converted_leads(records, ["006000000000001AAA"])
    assert list(origin) == ["006000000000001AAA"]
    ctx = record_context(opp, FIELDS, lead=origin["006000000000001AAA"])
    assert ctx == {"score": "92", "amount": 48000.0, "amount_basis": "amount", "campaign": "Trade show"}
    assert dict(describe(ctx, source="Partner", open_clocks=4, object_type="Opportunity")) == {
        "Score": "92",
        "Deal value": "$48,000 (Opportunity Amount)",
        "Source": "Partner",
        "Campaign": "Trade show",
        "Rep's open clocks": "4",
    }
    # No Amount on the opportunity: it says so; the reports' estimate is for leads only.
    no_amount = record_context({**opp, "fields": {}}, FIELDS)
    assert dict(describe(no_amount, source=None, open_clocks=0, object_type="Opportunity"))["Deal value"] == (
        "not set (no Amount)"
    )


@pytest.mark.parametrize("missing", ["score", "amount", "campaign", "source"])
def test_each_missing_value_says_not_set_in_slack_and_e_mail(missing: str) -> None:
    context = {**FULL, **({missing: None} if missing != "source" else {})}
    if missing == "amount":
        context["amount_basis"] = None
    lead = {**alert_payload()["lead"], **({"source": None} if missing == "source" else {})}
    label = {"score": "Score", "amount": "Deal value", "campaign": "Campaign", "source": "Source"}[missing]
    for kind in ("warning", "breach"):
        p = AlertPayload.parse(alert_payload(kind, lead=lead, context=context))
        slack = json.dumps(alert_slack_message(p, "k")["blocks"])
        mail = alert_email_message(p)
        assert f"*{label}*\\nnot set" in slack
        assert f'<th align="left">{label}</th><td>not set</td>' in mail.html
        assert any(
            line.startswith(f"{label}:") and line.endswith(" not set") for line in mail.text.splitlines()
        )
        for shown in (slack, mail.html, mail.text):
            assert "None" not in shown and "nan" not in shown
        # The values that are there are shown.
        present = {
            "score": "87",
            "amount": "$25,000 (estimated: a typical deal)",
            "campaign": "Spring Webinar",
        }
        for key, text in present.items():
            if key != missing:
                assert text in slack and text in mail.text and text in mail.html


def test_every_value_reaches_slack_and_both_e_mail_parts_within_slack_s_field_limit() -> None:
    p = AlertPayload.parse(alert_payload("breach", context=FULL))
    blocks = alert_slack_message(p, "k")["blocks"]
    fields = next(b["fields"] for b in blocks if "fields" in b)
    assert len(fields) <= 10  # Slack refuses a section with more
    texts = [f["text"] for f in fields]
    for expected in (
        "*Score*\n87",
        "*Deal value*\n$25,000 (estimated: a typical deal)",
        "*Source*\nWebinar",
        "*Campaign*\nSpring Webinar",
        "*Owner's open clocks*\n3",
    ):
        assert expected in texts, expected
    mail = alert_email_message(p)
    for expected in ("Score:             87", "Campaign:          Spring Webinar", "Rep's open clocks: 3"):
        assert expected in mail.text
    assert "<td>$25,000 (estimated: a typical deal)</td>" in mail.html


def test_a_malicious_campaign_name_is_plain_text_in_slack_and_escaped_in_html() -> None:
    p = AlertPayload.parse(alert_payload("breach", context={**FULL, "campaign": EVIL}))
    message = alert_slack_message(p, "k")
    everything = json.dumps([message["text"], message["blocks"]])
    for raw in ("<!channel>", "<https://evil", "*Free*", "_more_"):
        assert raw not in everything
    assert "&lt;!channel&gt;" in everything and "&amp;" in everything
    links = [seg.split("|")[0] for seg in everything.split("<")[1:]]
    assert all(link.startswith("https://acme.my.salesforce.com/lightning/r/Lead/") for link in links)
    mail = alert_email_message(p)
    assert "&lt;!channel&gt; *Free* &lt;https://evil.example|win&gt; &amp; _more_" in mail.html
    assert "<!channel>" not in mail.html and 'href="https://evil' not in mail.html
    assert f"Campaign:          {EVIL}" in mail.text  # the text part shows it as typed


def test_a_row_queued_before_context_renders_as_it_did() -> None:
    p = AlertPayload.parse(alert_payload())  # no "context" key
    slack = json.dumps(alert_slack_message(p, "k")["blocks"])
    mail = alert_email_message(p)
    assert "*Lead*\\nAda Lovelace" in slack and "*Source*\\nWebinar" in slack
    assert "Score" not in slack and "Score" not in mail.text and "Campaign" not in mail.html


def test_a_non_finite_amount_is_refused_by_the_schema() -> None:
    with pytest.raises(PayloadError, match="context.amount"):
        AlertPayload.parse(alert_payload(context={**FULL, "amount": float("nan")}), where="row 1")


def test_context_is_data_the_keys_are_the_same_with_or_without_it() -> None:
    d = Directory(POLICY, USERS)
    now = (START + pd.Timedelta(hours=4, minutes=5)).to_pydatetime()
    bare = pd.DataFrame(
        [{"record_id": "00Q000000000001AAA", "name": "Ada", "company": "AE", "lead_source": "Web"}]
    )
    rich = bare.assign(object_type="Lead", fields=[{"Lead_Score__c": 87.0, "Campaign__c": "Spring Webinar"}])

    def decide(records, fields):
        return decide_checkpoints(
            _clock(),
            _checkpoints(("breach", 14460)),
            records,
            d,
            now=now,
            handled=[],
            instance_url="https://acme.my.salesforce.com",
            context=fields,
        ).messages

    without, with_context = decide(bare, ContextFields()), decide(rich, FIELDS)
    assert [m.key for m in without] == [m.key for m in with_context] and with_context
    assert {m.payload["context"]["campaign"] for m in with_context} == {"Spring Webinar"}
    assert {m.payload["context"]["score"] for m in without} == {None}
    # The payload stays small: the context adds four values.
    assert len(json.dumps(with_context[0].payload["context"])) < 120


def test_digest_lines_carry_each_warning_s_context_and_escape_it() -> None:
    now = START.to_pydatetime()
    rows = [
        queued_message(
            _message(i, alert_payload(context={**FULL, "campaign": EVIL} if i else FULL)), now, i + 1
        )
        for i in range(2)
    ] + [queued_message(_message(2, alert_payload()), now, 3)]  # a row from before context
    digest = DigestPayload.parse(
        digest_of("rita@example.com", "slack", rows, max_alerts=3, window_minutes=60).payload
    )
    slack = json.dumps(digest_slack_message(digest, "k")["blocks"], ensure_ascii=False)
    assert slack.count("score 87 · deal value $25,000 (estimated: a typical deal)") == 2
    assert slack.count("rep's open clocks 3") == 2
    assert "<!channel>" not in slack and "campaign &lt;!channel&gt;" in slack
    mail = digest_email_message(digest)
    assert mail.text.count("campaign Spring Webinar") == 1 and "campaign <!channel>" in mail.text
    assert "campaign &lt;!channel&gt;" in mail.html and "<!channel>" not in mail.html


def _message(i: int, payload: dict) -> Message:
    return Message(
        sla_id="sales_touch",
        record_id=f"00Q00000000000{i}AAA".ljust(18, "A")[:18],
        clock_start=START.to_pydatetime(),
        checkpoint="warning",
        recipient="rita@example.com",
        channel="slack",
        payload=payload,
    )


def test_an_opportunity_breach_says_its_amount_and_its_lead_s_score_in_the_e_mail() -> None:
    opp = "006000000000001AAA"
    records = pd.DataFrame(
        [
            {"object_type": "Opportunity", "record_id": opp, "name": "Big deal", "company": None,
             "lead_source": "Partner", "fields": {"Amount": 120000}},
            {"object_type": "Lead", "record_id": "00Q000000000001AAA", "name": "L", "company": "C",
             "lead_source": "Web",
             "fields": {"Lead_Score__c": 77, "Campaign__c": "Expo", "ConvertedOpportunityId": opp}},
        ]
    )  # fmt: skip
    messages = decide_checkpoints(
        _clock(sla_id="demo_to_proposal", record_id=opp, object_type="Opportunity"),
        _checkpoints(("breach", 14460)).assign(sla_id="demo_to_proposal", record_id=opp),
        records,
        Directory(POLICY, USERS),
        now=(START + pd.Timedelta(hours=4, minutes=5)).to_pydatetime(),
        handled=[],
        instance_url="https://acme.my.salesforce.com",
        context=FIELDS,
    ).messages
    assert messages
    text = alert_email_message(AlertPayload.parse(messages[0].payload)).text
    for line in (
        "Score:             77",
        "Deal value:        $120,000 (Opportunity Amount)",
        "Source:            Partner",
        "Campaign:          Expo",
    ):
        assert line in text, line
