"""The Salesforce stand-in's Streaming API on its own: Bayeux long-polling at /cometd/<version> with
Change Data Capture events for every change the org makes (the simulator's through OrgStore, the
write-back's through REST), replay ids, retention and the real error shapes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import requests

from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

V = "59.0"


class Bayeux:
    """A minimal synchronous CometD client over requests (the production client is async)."""

    def __init__(self, sb, token: str | None = None) -> None:
        self.sb = sb
        self.http = requests.Session()
        self.http.verify = str(sb.ca_path)
        sf = sb.hook().get_conn()
        self.http.headers["Authorization"] = f"Bearer {token or sf.session_id}"
        self.client_id = None

    def post(self, *messages: dict) -> list[dict]:
        resp = self.http.post(f"{self.sb.base_url}/cometd/{V}", json=list(messages), timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def handshake(self) -> dict:
        (reply,) = self.post(
            {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["long-polling"]}
        )
        self.client_id = reply.get("clientId")
        return reply

    def subscribe(self, channel: str, replay: int) -> dict:
        (reply,) = self.post(
            {
                "channel": "/meta/subscribe",
                "clientId": self.client_id,
                "subscription": channel,
                "ext": {"replay": {channel: replay}},
            }
        )
        return reply

    def connect(self, timeout_ms: int = 300) -> tuple[list[dict], dict]:
        replies = self.post(
            {
                "channel": "/meta/connect",
                "clientId": self.client_id,
                "connectionType": "long-polling",
                "advice": {"timeout": timeout_ms},
            }
        )
        return [m for m in replies if not m["channel"].startswith("/meta/")], replies[-1]


def _lead(sb, **fields) -> str:
    return sb.create("Lead", {"LastName": "Ada", "Company": "Acme", "Status": "MQL", **fields})


def test_handshake_subscribe_and_events_for_every_kind_of_change(salesforce_sandbox):  # noqa: F811
    sb = salesforce_sandbox
    client = Bayeux(sb)
    hs = client.handshake()
    assert (
        hs["successful"]
        and hs["ext"]["replay"] is True
        and hs["supportedConnectionTypes"] == ["long-polling"]
    )
    assert client.subscribe("/data/LeadChangeEvent", -1)["successful"]
    assert client.subscribe("/data/UserChangeEvent", -1)["successful"]
    assert client.connect()[0] == []  # the first connect establishes; nothing new yet

    lead = _lead(sb)  # the simulator's way: OrgStore directly
    sb.update("Lead", lead, {"Status": "SAL"}, now=datetime.now(UTC))
    sf = sb.hook().get_conn()
    sf.Lead.update(
        lead, {"OwnerId": sb.create("User", {"LastName": "Rep", "Email": "r@x.test", "IsActive": True})}
    )
    sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [{"attributes": {"type": "Lead"}, "id": lead, "SLA_Status__c": "Green"}],
        },
    )
    sf.Lead.delete(lead)

    events, meta = client.connect()
    assert meta["channel"] == "/meta/connect" and meta["successful"]
    leads = [e for e in events if e["channel"] == "/data/LeadChangeEvent"]
    headers = [e["data"]["payload"]["ChangeEventHeader"] for e in leads]
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE", "UPDATE", "UPDATE", "DELETE"]
    assert all(h["entityName"] == "Lead" and h["recordIds"] == [lead] for h in headers)
    assert "Status" in headers[1]["changedFields"] and leads[1]["data"]["payload"]["Status"] == "SAL"
    assert "OwnerId" in headers[2]["changedFields"]
    assert (
        "SLA_Status__c" in headers[3]["changedFields"] and "LastModifiedDate" in headers[3]["changedFields"]
    )
    assert leads[0]["data"]["payload"]["LastName"] == "Ada"
    replay_ids = [e["data"]["event"]["replayId"] for e in leads]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 5
    assert [h["commitNumber"] for h in headers] == sorted(h["commitNumber"] for h in headers)
    assert all(isinstance(h["commitTimestamp"], int) for h in headers)
    users = [e for e in events if e["channel"] == "/data/UserChangeEvent"]
    assert [e["data"]["payload"]["ChangeEventHeader"]["changeType"] for e in users] == ["CREATE"]

    # Replaying from an id gives exactly what came after it, on a new client.
    again = Bayeux(sb)
    again.handshake()
    assert again.subscribe("/data/LeadChangeEvent", replay_ids[2])["successful"]
    replayed, _ = again.connect()
    assert [e["data"]["event"]["replayId"] for e in replayed] == replay_ids[3:]
    everything = Bayeux(sb)
    everything.handshake()
    assert everything.subscribe("/data/ChangeEvents", -2)["successful"]
    all_events, _ = everything.connect()
    assert {e["data"]["payload"]["ChangeEventHeader"]["entityName"] for e in all_events} >= {"Lead", "User"}


def test_connect_is_held_until_an_event_and_streaming_costs_no_rest_calls(salesforce_sandbox):  # noqa: F811
    sb = salesforce_sandbox
    client = Bayeux(sb)
    client.handshake()
    client.subscribe("/data/LeadChangeEvent", -1)
    client.connect()
    used = sb.api_used
    started = time.monotonic()
    events, meta = client.connect(timeout_ms=700)
    assert events == [] and meta["successful"] and time.monotonic() - started >= 0.6  # a keep-alive
    assert sb.api_used == used  # the Streaming API does not spend the REST allowance
    status = requests.get(f"{sb.base_url}/_sandbox/status", timeout=10).json()
    assert status["cometd"]["connects"] == 2 and status["calls"].get("query", 0) == 0


def test_errors_have_the_real_shapes(salesforce_sandbox):  # noqa: F811
    sb = salesforce_sandbox
    denied = Bayeux(sb, token="00Dxx!not-a-session").handshake()
    assert denied["successful"] is False and denied["error"] == "403::Handshake denied"
    assert denied["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"

    client = Bayeux(sb)
    client.handshake()
    (unknown,) = client.post(
        {"channel": "/meta/connect", "clientId": "nobody", "connectionType": "long-polling"}
    )
    assert unknown["error"] == "403::Unknown client" and unknown["advice"]["reconnect"] == "handshake"
    missing = client.subscribe("/data/AccountChangeEvent", -1)
    assert missing["error"].startswith("400::The channel you requested to subscribe to does not exist")

    _lead(sb)
    # Past retention: a replay id the org no longer keeps is refused with the documented message.
    requests.post(f"{sb.base_url}/_sandbox/config", json={"cdc_retention_s": 0.2}, timeout=10)
    time.sleep(0.4)
    _lead(sb)
    old = client.subscribe("/data/LeadChangeEvent", 1)
    assert old["successful"] is False
    assert old["error"] == (
        "400::The replayId {1} you provided was invalid.  Please provide a valid ID, -2 to replay all "
        "events, or -1 to replay only new events."
    )
    assert client.subscribe("/data/LeadChangeEvent", -2)["successful"]  # what is kept is still there
    kept, _ = client.connect()
    assert len(kept) == 1

    requests.post(f"{sb.base_url}/_sandbox/config", json={"streaming": False}, timeout=10)
    down = Bayeux(sb).handshake()
    assert down["error"] == "403::Handshake denied"
