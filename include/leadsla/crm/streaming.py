"""Salesforce Change Data Capture over the Streaming API: a CometD (Bayeux 1.0 long-polling) client
in pure asyncio, and the changes it hears gathered into batches.

`listen` logs in (through the caller's `login`, which runs the SalesforceHook in a thread),
handshakes at /cometd/<version> with the REST session's bearer token, subscribes to each channel
with the `replay` extension (the committed replay id per channel, or -1 for new events only) and
long-polls /meta/connect. Each answer becomes one `Heard`: the changes it carried (possibly none: a
keep-alive) and the newest replay id per channel. A replay id the org no longer keeps raises
`ReplayTooOld` (the caller falls back to the watermark query); a refused handshake `StreamRefused`;
an unknown client (the org forgot us) is handshaken again from the last replay ids heard.

No Airflow, no store: the trigger (`tasks.change_events`) wires it to both. The session token is
sent in a header only, never logged nor put in an error.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from leadsla.crm.protocol import CrmError

log = logging.getLogger(__name__)

#: The watched objects' change event channels.
WATCHED_CHANNELS = (
    "/data/LeadChangeEvent",
    "/data/OpportunityChangeEvent",
    "/data/TaskChangeEvent",
    "/data/EventChangeEvent",
    "/data/UserChangeEvent",
)
#: Replay from the tip: only events published after the subscription.
NEW_EVENTS = -1
#: Replay every event the org still keeps.
ALL_RETAINED = -2


class StreamRefused(CrmError):
    """The org refused the stream (handshake denied, authentication invalid after a fresh login)."""


class ReplayTooOld(CrmError):
    """A replay id is outside the org's retention window: events may have been missed."""

    def __init__(self, channel: str, message: str) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel


@dataclass(frozen=True)
class Session:
    """Where the org is and the bearer session to reach it (from the SalesforceHook's client)."""

    instance_url: str
    session_id: str
    version: str

    def __repr__(self) -> str:  # never show the token
        return f"Session({self.instance_url!r}, version={self.version!r})"


@dataclass(frozen=True)
class Change:
    """One change event: which records of which object, how, and its place in the channel."""

    channel: str
    entity: str
    record_ids: tuple[str, ...]
    change_type: str
    replay_id: int
    commit_timestamp: int | None
    changed_fields: tuple[str, ...] = ()

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Change:
        data = message.get("data") or {}
        payload = data.get("payload") or {}
        header = payload.get("ChangeEventHeader") or {}
        return cls(
            channel=str(message.get("channel")),
            entity=str(header.get("entityName") or ""),
            record_ids=tuple(str(i) for i in header.get("recordIds") or ()),
            change_type=str(header.get("changeType") or ""),
            replay_id=int((data.get("event") or {}).get("replayId")),
            commit_timestamp=header.get("commitTimestamp"),
            changed_fields=tuple(header.get("changedFields") or ()),
        )


@dataclass
class Heard:
    """One /meta/connect answer: its changes (none: a keep-alive) and the replay ids heard so far."""

    changes: list[Change]
    replay: dict[str, int]


@dataclass
class ChangeBatch:
    """Changes gathered for one crm_sync run: record ids per object, the newest replay id per channel."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    replay: dict[str, int] = field(default_factory=dict)
    events: int = 0
    first_commit_ms: int | None = None

    def add(self, change: Change) -> None:
        known = self.ids.setdefault(change.entity, [])
        known.extend(i for i in change.record_ids if i not in known)
        self.replay[change.channel] = max(self.replay.get(change.channel, 0), change.replay_id)
        self.events += 1
        if change.commit_timestamp is not None:
            self.first_commit_ms = min(
                self.first_commit_ms or change.commit_timestamp, change.commit_timestamp
            )

    def to_payload(self) -> dict[str, Any]:
        """Small JSON for the trigger event (the asset event's extra)."""
        return {
            "ids": {k: sorted(v) for k, v in self.ids.items()},
            "replay": dict(self.replay),
            "events": self.events,
            "first_commit_ms": self.first_commit_ms,
        }


class CometdClient:
    """One Bayeux long-polling client of /cometd/<version> (cookies kept, as the org requires)."""

    def __init__(self, session: Session, *, verify: Any = True, keepalive_s: float = 110.0) -> None:
        """`verify`: True, False, or a CA bundle's path (the stand-in's, from REQUESTS_CA_BUNDLE)."""
        self.session = session
        self.keepalive_s = keepalive_s
        self.client_id: str | None = None
        self._next_id = 0
        self._http = httpx.AsyncClient(
            base_url=session.instance_url.rstrip("/"),
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
            timeout=httpx.Timeout(keepalive_s + 30.0, connect=15.0),
            headers={"Authorization": f"Bearer {session.session_id}", "Content-Type": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for m in messages:
            self._next_id += 1
            m["id"] = str(self._next_id)
        try:
            resp = await self._http.post(f"/cometd/{self.session.version}", json=messages)
        except httpx.HTTPError as exc:
            raise CrmError(f"the Streaming API did not answer ({type(exc).__name__})") from None
        if resp.status_code != 200:
            raise StreamRefused(f"the Streaming API answered HTTP {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        return body if isinstance(body, list) else [body]

    async def handshake(self) -> None:
        (reply,) = [
            m
            for m in await self._post(
                [
                    {
                        "channel": "/meta/handshake",
                        "version": "1.0",
                        "minimumVersion": "1.0",
                        "supportedConnectionTypes": ["long-polling"],
                        "ext": {"replay": True},
                    }
                ]
            )
            if m.get("channel") == "/meta/handshake"
        ]
        if not reply.get("successful"):
            reason = ((reply.get("ext") or {}).get("sfdc") or {}).get("failureReason") or ""
            raise StreamRefused(f"handshake refused: {reply.get('error')} {reason}".strip())
        self.client_id = str(reply["clientId"])

    async def subscribe(self, channel: str, replay_from: int) -> None:
        replies = await self._post(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": self.client_id,
                    "subscription": channel,
                    "ext": {"replay": {channel: replay_from}},
                }
            ]
        )
        reply = next(m for m in replies if m.get("channel") == "/meta/subscribe")
        if not reply.get("successful"):
            error = str(reply.get("error") or "")
            if "replayId" in error:
                raise ReplayTooOld(channel, error)
            raise StreamRefused(f"subscribe to {channel} refused: {error}")

    async def connect(self) -> list[dict[str, Any]]:
        """One long poll: the event messages it brought (raises on an unsuccessful connect)."""
        replies = await self._post(
            [
                {
                    "channel": "/meta/connect",
                    "clientId": self.client_id,
                    "connectionType": "long-polling",
                    "advice": {"timeout": int(self.keepalive_s * 1000)},
                }
            ]
        )
        meta = [m for m in replies if m.get("channel") == "/meta/connect"]
        if meta and not meta[0].get("successful"):
            error = str(meta[0].get("error") or "")
            if error.startswith("403::Unknown client"):
                raise _UnknownClient(error)
            if error.startswith("401::"):
                raise _AuthenticationInvalid(error)
            raise StreamRefused(f"connect refused: {error}")
        return [m for m in replies if not str(m.get("channel", "")).startswith("/meta/")]

    async def disconnect(self) -> None:
        if self.client_id:
            try:
                await self._post([{"channel": "/meta/disconnect", "clientId": self.client_id}])
            except CrmError:
                pass
            self.client_id = None


class _UnknownClient(CrmError):
    """The org forgot this client (a restart, a timeout): handshake again."""


class _AuthenticationInvalid(CrmError):
    """The session ended while connected (revoked, expired): log in again once, then handshake."""


async def listen(
    login: Callable[[], Awaitable[Session]],
    replay_from: Mapping[str, int],
    *,
    channels: Sequence[str] = WATCHED_CHANNELS,
    verify: Any = True,
    keepalive_s: float = 110.0,
) -> AsyncIterator[Heard]:
    """Yield one `Heard` per /meta/connect answer, for ever (see the module docstring).

    Args:
        login: a fresh Session (called again once when authentication fails).
        replay_from: the replay id to resume each channel after; a channel missing starts at -1.
    """
    replay = {c: int(replay_from.get(c, NEW_EVENTS)) for c in channels}
    relogged = False
    session = await login()
    while True:
        client = CometdClient(session, verify=verify, keepalive_s=keepalive_s)
        try:
            try:
                await client.handshake()
            except StreamRefused as exc:
                if relogged or "401" not in str(exc):
                    raise
                log.warning("Streaming API: authentication invalid, logging in again once")
                relogged = True
                session = await login()
                continue
            for channel in channels:
                await client.subscribe(channel, replay[channel])
            log.info("Streaming API: subscribed to %d channels from replay ids %s", len(channels), replay)
            while True:
                messages = await client.connect()
                changes = [Change.from_message(m) for m in messages]
                for change in changes:
                    replay[change.channel] = max(replay.get(change.channel, NEW_EVENTS), change.replay_id)
                relogged = False
                yield Heard(changes, {c: r for c, r in replay.items() if r >= 0})
        except _UnknownClient:
            log.warning("Streaming API: the org forgot this client, handshaking again")
            continue
        except _AuthenticationInvalid:
            if relogged:
                raise StreamRefused("the session was refused again after a fresh login (401)") from None
            log.warning("Streaming API: authentication invalid while connected, logging in again once")
            relogged = True
            session = await login()
            continue
        finally:
            await client.disconnect()
            await client.aclose()
