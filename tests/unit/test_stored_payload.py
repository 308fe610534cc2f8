"""`notify.stored_payload`: an outbox payload's text read as the mapping `json.loads` gives,
its head keys without decoding the rest."""

from __future__ import annotations

import json

import pytest

from leadsla.notify.stored_payload import StoredPayload, stored_payload

PAYLOAD = {
    "kind": "breach",
    "planned": True,
    "due_at": "2026-12-02T14:01:00Z",
    "team": {"name": "Account Executives", "timezone": "America/New_York"},
    "lead": {"id": "00Q000000000000001", "kind": "nested, not the head", "score": 1.5e-7},
    "recipient": {"name": "Rep \u00e9 \U0001f600", "email": "rep@example.com"},
    "items": [1, 2.5, None, True, "x"],
}


def test_every_key_reads_as_json_loads_gives_it_and_the_head_alone_leaves_the_rest_undecoded() -> None:
    text = json.dumps(PAYLOAD)
    payload = StoredPayload(text)
    assert payload["kind"] == "breach" and payload.get("planned") is True
    assert payload.get("team") == PAYLOAD["team"] and payload.get("due_at") == PAYLOAD["due_at"]
    assert payload._whole is None  # the head keys only: the rest still text
    assert payload["lead"] == PAYLOAD["lead"] and payload._whole == json.loads(text)
    assert dict(payload) == PAYLOAD and payload == PAYLOAD and len(payload) == len(PAYLOAD)


@pytest.mark.parametrize("whole", [False, True])
def test_an_absent_head_key_is_absent_before_and_after_decoding(whole: bool) -> None:
    payload = StoredPayload(json.dumps({"kind": "warning", "lead": {"planned": True}}))
    if whole:
        dict(payload)
    assert payload.get("planned") is None and "planned" not in payload and "kind" in payload
    with pytest.raises(KeyError):
        payload["due_at"]
    assert payload.get("due_at", "none") == "none"


def test_a_null_head_value_is_present_and_none() -> None:
    payload = StoredPayload('{"kind": null, "due_at": null}')
    assert "kind" in payload and payload["kind"] is None and payload.get("due_at", 1) is None


def test_truthiness_follows_the_object_and_text_json_loads_alone_reads_is_read() -> None:
    assert not StoredPayload(" { } ") and StoredPayload('{"a": 1}')
    nan = StoredPayload('{"kind": "warning", "remaining_seconds": NaN}')  # json.dumps writes NaN
    assert nan["kind"] == "warning" and nan["remaining_seconds"] != nan["remaining_seconds"]
    assert stored_payload(None) == {} and stored_payload("null") == {}


@pytest.mark.parametrize("text", ["[1, 2]", '"breach"', "{not json"])
def test_text_that_is_not_a_json_object_is_refused_naming_the_row(text: str) -> None:
    with pytest.raises(ValueError, match="outbox row 'k1'"):
        StoredPayload(text, where="outbox row 'k1'")
