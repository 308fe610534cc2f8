"""The demo's Slack stand-in seed (sandbox.slack_seed): demo org users can be DMed and the
policy's channels exist, through the real slack_sdk client."""

from __future__ import annotations

import json

from slack_sdk import WebClient

from sandbox.sf_store import OrgStore
from sandbox.simulate import DemoOrg
from sandbox.slack_api import SlackSandbox
from sandbox.slack_seed import demo_users, write_seed


def test_seeded_stand_in_dms_demo_people_and_knows_the_policy_channels(tmp_path) -> None:
    counts = write_seed(tmp_path / "slack", org_db=tmp_path / "missing.sqlite3")
    users = json.loads((tmp_path / "slack" / "users.json").read_text())
    titles = len(users)
    assert counts["users"] == titles >= 3 + 3 * 5  # 3 VPs, 3 managers, 12 reps
    assert "#sales-leadership" in json.loads((tmp_path / "slack" / "channels.json").read_text())
    with SlackSandbox(data_dir=tmp_path / "slack", per_channel_interval=0.0) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        rep = users[-1]["email"]
        user = client.users_lookupByEmail(email=rep)["user"]
        dm = client.conversations_open(users=user["id"])["channel"]["id"]
        assert client.chat_postMessage(channel=dm, text="hello")["ok"]
        for channel in ("#sales-leadership", "#revops", "#sdr-east", "C0DATAENG01", "C0REVOPS001"):
            assert client.chat_postMessage(channel=channel, text="hi")["ok"], channel


def test_the_people_are_the_demo_orgs_whether_read_from_its_store_or_reseeded(tmp_path) -> None:
    store = OrgStore(tmp_path / "org.sqlite3")
    DemoOrg(store, seed=7)
    store.close()
    from_store = demo_users(tmp_path / "org.sqlite3")
    assert {u["email"] for u in from_store} == {u["email"] for u in demo_users(None, seed=7)}
    assert (
        sum(u["email"].endswith("@leadsla.example") for u in from_store) == 3 + 3 + 3 * 4 + 3 + 4
    )  # VPs, SDR managers, reps, Customer Success (a manager and two CSMs), AEs (a manager and three)


def test_every_address_is_its_own_slack_user_even_when_the_org_lists_a_person_twice() -> None:
    # The demo org has people in two teams under one e-mail; numbering ids by count once gave
    # all of them (and the next new address) one id, so different people shared one DM.
    from sandbox.slack_api import SlackState

    state = SlackState(data_dir=None, per_channel_interval=0.0)
    state.add_users([{"email": "a@x.example"}, {"email": "b@x.example"}])
    first = {e: u["id"] for e, u in state.users.items()}
    state.add_users(
        [
            {"email": "A@x.example"},
            {"email": "b@x.example"},
            {"email": "c@x.example"},
            {"email": "d@x.example"},
        ]
    )
    ids = {e: u["id"] for e, u in state.users.items()}
    assert {e: ids[e] for e in first} == first  # a repeated address keeps its id
    assert len(set(ids.values())) == len(ids) == 4  # and no two addresses share one
