"""How crm_sync hears of changes (`crm.change_feed.plan`), `sync.streaming` in crm_fields.yaml, the
change event batches crm_sync reads from its triggering asset events, and the CometD messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml

from leadsla.crm import change_feed
from leadsla.crm.mapping import DEFAULT_PATH, StreamingSettings, load, parse
from leadsla.crm.protocol import MappingError
from leadsla.crm.streaming import Change, ChangeBatch
from leadsla.store.stream import POLLING, STREAMING, StreamStatus
from leadsla.tasks.sync import change_events

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
ON = replace(load(), streaming=StreamingSettings(enabled=True, safety_net_minutes=15, keepalive_seconds=30))
OFF = replace(load(), streaming=StreamingSettings())


def _status(mode=STREAMING, heartbeat_s=5, net_min=3, reason="listening") -> StreamStatus:
    return StreamStatus(
        mode,
        NOW - dt.timedelta(hours=1),
        reason,
        None if heartbeat_s is None else NOW - dt.timedelta(seconds=heartbeat_s),
        None if net_min is None else NOW - dt.timedelta(minutes=net_min),
    )


def test_a_healthy_stream_without_events_skips_the_minute_query():
    feed = change_feed.plan(ON, "leads", _status(), [], NOW)
    assert (feed.mode, feed.query) == (STREAMING, False)
    assert feed.why == "no change event; the safety net is due at 10:12:00 UTC"


@pytest.mark.parametrize(
    ("settings", "status", "allows", "why"),
    [
        (OFF, _status(), True, "streaming is off in crm_fields.yaml sync.streaming"),
        (ON, _status(), False, "streaming is off in the connection's extra"),
        (ON, None, True, "no change stream listener has reported yet"),
        (ON, _status(POLLING, reason="handshake refused"), True, "handshake refused"),
        (
            ON,
            _status(heartbeat_s=91),
            True,
            "no keep-alive from the change stream since 2026-12-07T09:58:29+00:00",
        ),
        (ON, _status(heartbeat_s=None), True, "no keep-alive from the change stream since never"),
    ],
)
def test_polling_whenever_the_stream_is_off_down_or_silent(settings, status, allows, why):
    feed = change_feed.plan(settings, "leads", status, [], NOW, connection_allows=allows)
    assert (feed.mode, feed.query, feed.why) == (POLLING, True, why)


def test_events_sync_the_groups_of_the_objects_they_name_and_the_safety_net_comes_due():
    events = [{"ids": {"Lead": ["00Q1"], "Opportunity": []}}, {"ids": {"User": ["0051"]}}]
    assert change_feed.plan(ON, "leads", _status(), events, NOW).why == "change events for Lead"
    assert change_feed.plan(ON, "org", _status(), events, NOW).why == "change events for User"
    net = change_feed.plan(ON, "leads", _status(net_min=15), [], NOW)
    assert net.query and net.safety_net and net.mode == STREAMING
    assert change_feed.plan(ON, "leads", _status(net_min=None), [], NOW).safety_net
    slow = change_feed.plan(ON, "org", _status(), [], NOW)  # every 15 min: its own cadence decides
    assert slow.query and not slow.safety_net


def test_the_streaming_section_is_checked():
    raw = yaml.safe_load(DEFAULT_PATH.read_text())
    assert load().streaming.enabled is True  # the shipped mapping streams
    raw["sync"]["streaming"] = {"enabled": "yes"}
    with pytest.raises(MappingError, match=r"sync.streaming.enabled: got 'yes', expected true or false"):
        parse(raw)
    raw["sync"]["streaming"] = {"enabled": True, "safety_net_minutes": 0}
    with pytest.raises(MappingError, match=r"sync.streaming.safety_net_minutes: got 0"):
        parse(raw)
    raw["sync"]["streaming"] = {"enabled": True, "every": 1}
    with pytest.raises(MappingError, match=r"sync.streaming: got"):
        parse(raw)
    del raw["sync"]["streaming"]
    assert parse(raw).streaming == StreamingSettings()  # absent: off


def test_change_messages_gather_into_one_batch_and_back_out_of_asset_events():
    def message(channel, entity, ids, replay):
        header = {
            "entityName": entity,
            "recordIds": ids,
            "changeType": "UPDATE",
            "commitTimestamp": replay * 10,
        }
        return {
            "channel": channel,
            "data": {"payload": {"ChangeEventHeader": header}, "event": {"replayId": replay}},
        }

    batch = ChangeBatch()
    for m in (
        message("/data/LeadChangeEvent", "Lead", ["00Q1"], 7),
        message("/data/LeadChangeEvent", "Lead", ["00Q1", "00Q2"], 9),
        message("/data/TaskChangeEvent", "Task", ["00T1"], 3),
    ):
        batch.add(Change.from_message(m))
    payload = batch.to_payload()
    assert payload == {
        "ids": {"Lead": ["00Q1", "00Q2"], "Task": ["00T1"]},
        "replay": {"/data/LeadChangeEvent": 9, "/data/TaskChangeEvent": 3},
        "events": 3,
        "first_commit_ms": 30,
    }
    asset_events = {
        "asset": [
            SimpleNamespace(extra={"from_trigger": True, "payload": payload}),
            SimpleNamespace(extra={}),
        ]
    }
    assert change_events(asset_events) == [payload]
    assert change_events(None) == []
