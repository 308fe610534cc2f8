"""The stand-in org's Streaming API: Bayeux 1.0 long-polling at POST /cometd/<api version>, as a
real org serves Change Data Capture to CometD clients.

- `/meta/handshake` (the REST session's bearer token; a bad one is `403::Handshake denied` with
  `ext.sfdc.failureReason` `401::Authentication invalid`), `/meta/subscribe` to
  `/data/<Object>ChangeEvent` or `/data/ChangeEvents` with the `replay` extension (-1: new events
  only, -2: every retained event, an id: the events after it; an id outside the retention window
  is `400::The replayId {N} you provided was invalid. ...`), `/meta/connect` (held until an event
  arrives or the advice's timeout passes; an unknown client is `403::Unknown client` with advice
  reconnect=handshake) and `/meta/disconnect`.
- Events are `{"channel", "data": {"schema", "payload", "event": {"replayId"}}}` read from the
  org's event log (`sf_events`), so the simulator's writes in another process arrive too.

Streaming calls do not count against the REST API allowance (`SandboxState.api_used`), as in a
real org; they are counted apart (`CometdState.requests`).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox import sf_events
from sandbox.sf_store import OrgStore

VERSION_MIN = 36.0
#: What one /meta/connect answer carries at most.
BATCH = 1000


@dataclass
class Client:
    """One handshaken CometD client: its subscriptions and, per channel, the last replay id sent."""

    client_id: str
    session: str
    cursors: dict[str, int] = field(default_factory=dict)
    connected: bool = False  # the first /meta/connect answers at once (it establishes the connection)
    last_seen: float = field(default_factory=time.monotonic)


@dataclass
class CometdState:
    """The Streaming API's knobs (changed through /_sandbox/config) and its clients."""

    retention_s: float = sf_events.DEFAULT_RETENTION_S
    timeout_s: float = 110.0  # how long a /meta/connect is held (a real org: 110 s)
    enabled: bool = True  # False: every handshake is refused (the stream is down)
    poll_s: float = 0.1  # how often a held connect looks for new events
    clients: dict[str, Client] = field(default_factory=dict)
    requests: int = 0
    connects: int = 0
    events_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "retention_s": self.retention_s,
            "timeout_s": self.timeout_s,
            "clients": len(self.clients),
            "requests": self.requests,
            "connects": self.connects,
            "events_sent": self.events_sent,
        }


def _fail(message: dict[str, Any], error: str, **extra: Any) -> dict[str, Any]:
    out = {"channel": message.get("channel"), "successful": False, "error": error, **extra}
    if "id" in message:
        out["id"] = message["id"]
    return out


def _ok(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    out = {"channel": message.get("channel"), "successful": True, **extra}
    if "id" in message:
        out["id"] = message["id"]
    return out


def handle(
    cometd: CometdState, store: OrgStore, version: str, session: str | None, messages: list[Any]
) -> list[dict[str, Any]]:
    """Answer one POST's Bayeux messages (`session`: the bearer token when it is a live session)."""
    with cometd.lock:
        cometd.requests += 1
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            out.append({"successful": False, "error": "400::Invalid message"})
            continue
        channel = message.get("channel")
        if channel == "/meta/handshake":
            out.append(_handshake(cometd, session, message))
            continue
        client = cometd.clients.get(str(message.get("clientId")))
        if client is None:
            out.append(
                _fail(message, "403::Unknown client", advice={"reconnect": "handshake", "interval": 0})
            )
            continue
        if session is None or session != client.session:
            out.append(
                _fail(
                    message,
                    "401::Authentication invalid",
                    clientId=client.client_id,
                    advice={"reconnect": "none", "interval": 0},
                )
            )
            continue
        client.last_seen = time.monotonic()
        if channel == "/meta/subscribe":
            out.append(_subscribe(cometd, store, client, message))
        elif channel == "/meta/unsubscribe":
            client.cursors.pop(str(message.get("subscription")), None)
            out.append(_ok(message, clientId=client.client_id, subscription=message.get("subscription")))
        elif channel == "/meta/connect":
            out.extend(_connect(cometd, store, client, message))
        elif channel == "/meta/disconnect":
            with cometd.lock:
                cometd.clients.pop(client.client_id, None)
            out.append(_ok(message, clientId=client.client_id))
        else:
            out.append(
                _fail(message, f"400::The channel you requested to subscribe to does not exist {channel}")
            )
    return out


def check_version(version: str) -> str | None:
    """The error for an unsupported /cometd/<version>, None when it is fine."""
    try:
        ok = float(version) >= VERSION_MIN
    except ValueError:
        ok = False
    if not ok:
        return "400::Unsupported API version. Only API versions '23.0' and above are supported."
    return None


def _handshake(cometd: CometdState, session: str | None, message: dict[str, Any]) -> dict[str, Any]:
    if session is None or not cometd.enabled:
        reason = "401::Authentication invalid" if session is None else "503::Streaming is unavailable"
        return _fail(
            message,
            "403::Handshake denied",
            ext={"sfdc": {"failureReason": reason}},
            advice={"reconnect": "none"},
        )
    client = Client(client_id=secrets.token_urlsafe(18), session=session)
    with cometd.lock:
        cometd.clients[client.client_id] = client
        while len(cometd.clients) > 200:  # forget the oldest clients, like an org's client limit
            cometd.clients.pop(next(iter(cometd.clients)))
    return _ok(
        message,
        version="1.0",
        minimumVersion="1.0",
        clientId=client.client_id,
        supportedConnectionTypes=["long-polling"],
        advice={"interval": 0, "timeout": int(cometd.timeout_s * 1000), "reconnect": "retry"},
        ext={"replay": True, "payload.format": True},
    )


def _subscribe(
    cometd: CometdState, store: OrgStore, client: Client, message: dict[str, Any]
) -> dict[str, Any]:
    channel = str(message.get("subscription") or "")
    base = {"clientId": client.client_id, "subscription": channel}
    if not channel:
        return _fail(message, "400::Channel name not specified", **base)
    if not channel.startswith("/"):
        return _fail(message, "400::Channel subscriptions must start with a leading '/'", **base)
    if not sf_events.is_channel(channel):
        return _fail(
            message, f"400::The channel you requested to subscribe to does not exist {channel}", **base
        )
    asked = ((message.get("ext") or {}).get("replay") or {}).get(channel, -1)
    try:
        replay: int | None = int(asked)
    except (TypeError, ValueError):
        replay = None
    oldest, newest = store.change_event_bounds(cometd.retention_s)
    if replay == -1:
        cursor = newest
    elif replay == -2:
        cursor = (oldest - 1) if oldest is not None else newest
    elif (
        replay is not None
        and replay >= 0
        and (replay == newest == 0 or (oldest is not None and oldest <= replay <= newest))
    ):
        cursor = replay
    else:
        return _fail(
            message,
            f"400::The replayId {{{asked}}} you provided was "
            "invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.",
            **base,
        )
    client.cursors[channel] = cursor
    return _ok(message, **base)


def _pending(cometd: CometdState, store: OrgStore, client: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for channel, cursor in list(client.cursors.items()):
        entity = sf_events.entity_of(channel)
        events = store.change_events(
            cursor, {entity} if entity else None, cometd.retention_s, limit=BATCH - len(out)
        )
        for event in events:
            out.append(
                {
                    "channel": channel,
                    "data": {
                        "schema": f"sandbox-{event['entity']}ChangeEvent-v1",
                        "payload": event["payload"],
                        "event": {"replayId": event["replay_id"]},
                    },
                }
            )
        if events:
            client.cursors[channel] = events[-1]["replay_id"]
        if len(out) >= BATCH:
            break
    return out


def _connect(
    cometd: CometdState, store: OrgStore, client: Client, message: dict[str, Any]
) -> list[dict[str, Any]]:
    with cometd.lock:
        cometd.connects += 1
    timeout_ms = (message.get("advice") or {}).get("timeout")
    hold = (
        cometd.timeout_s if timeout_ms is None else min(cometd.timeout_s, max(0.0, float(timeout_ms) / 1000))
    )
    deadline = time.monotonic() + (hold if client.connected else 0.0)
    client.connected = True
    events = _pending(cometd, store, client)
    while not events and time.monotonic() < deadline:
        if client.client_id not in cometd.clients:  # disconnected meanwhile
            break
        time.sleep(cometd.poll_s)
        events = _pending(cometd, store, client)
    with cometd.lock:
        cometd.events_sent += len(events)
    reply = _ok(
        message,
        clientId=client.client_id,
        advice={"interval": 0, "timeout": int(cometd.timeout_s * 1000), "reconnect": "retry"},
    )
    return [*events, reply]
