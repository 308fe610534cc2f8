"""A Slack Web API stand-in over HTTP, for the demo, tests and benchmark.

Speaks enough of the real API for the real `slack_sdk` client (through Airflow's SlackHook,
pointed here by the connection's ``base_url`` = ``http://127.0.0.1:PORT/api/``): ``auth.test``,
``users.lookupByEmail``, ``conversations.open``, ``chat.postMessage`` (keeps ``metadata``) and
``conversations.history`` (metadata only with ``include_all_metadata``, cursor pages). It records
every accepted message in memory and in ``messages.jsonl``, enforces about one message per
second per channel with HTTP 429 + Retry-After, and injects faults on demand (5xx before or after
the post, 429 storms, slow answers, dropped connections, and Slack's error answers such as a
revoked token or a channel the app is not in).

Control endpoints (not Slack): ``POST /_sandbox/users`` (list of users), ``POST /_sandbox/faults``
(list of fault rules), ``GET /_sandbox/messages``, ``GET /_sandbox/stats``.

It never talks to the real Slack and keeps no secrets; any ``xox*`` bearer token is accepted.
Run alone: ``python -m sandbox.slack_api --port 8025 --data DIR`` (DIR/users.json seeds users,
DIR/channels.json channels; `sandbox.slack_seed` writes both for the demo).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAULT_KINDS = ("500", "503", "500_after_post", "429", "slow", "drop", "drop_after_post", "error")


@dataclass
class Fault:
    """One injected fault, used `count` times on matching calls (method None = any Slack method;
    `channel` set: only calls about that channel).

    Kinds: ``500``/``503`` (error, nothing posted), ``500_after_post`` (message posted, then a
    500: the ambiguous case), ``429`` (rate limited with Retry-After ``retry_after``), ``slow``
    (answer after ``delay`` seconds), ``drop`` (connection closed, nothing posted),
    ``drop_after_post`` (message posted, connection closed before the answer), ``error`` (Slack's
    HTTP 200 ``{"ok": false, "error": error}``, nothing posted: ``invalid_auth``,
    ``token_revoked``, ``account_inactive``, ``missing_scope``, ``not_in_channel``...).
    """

    kind: str
    method: str | None = "chat.postMessage"
    count: int = 1
    retry_after: int = 1
    delay: float = 0.0
    error: str = "invalid_auth"
    channel: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")


@dataclass
class SlackState:
    """Everything the stand-in knows; thread-safe behind one lock."""

    data_dir: Path | None = None
    per_channel_interval: float = 1.0  # Slack's "about 1 message per second per channel"
    users: dict[str, dict] = field(default_factory=dict)  # email -> user
    channels: dict[str, dict] = field(default_factory=dict)  # id -> {"id", "name", "user"}
    messages: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    faults: list[Fault] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_post: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))

    def add_users(self, users: list[dict]) -> None:
        with self.lock:
            for user in users:
                # One Slack user per e-mail (as in Slack): adding an address again keeps its id, and a
                # new address never takes an id in use (numbering by len() gave every repeated
                # address, then the next new one, the same id: several people, one DM).
                known = self.users.get(user["email"].casefold())
                uid = user.get("id") or (known["id"] if known else self._free_user_id())
                self.users[user["email"].casefold()] = {
                    "id": uid,
                    "name": user.get("name", user["email"].split("@")[0]),
                    "real_name": user.get("real_name", user.get("name", "")),
                    "tz": user.get("tz", "America/New_York"),
                    "profile": {"email": user["email"]},
                }

    def _free_user_id(self) -> str:
        taken = {u["id"] for u in self.users.values()}
        n = len(taken) + 1
        while f"U{n:08d}" in taken:
            n += 1
        return f"U{n:08d}"

    def add_channel(self, channel_id: str, name: str) -> None:
        with self.lock:
            self.channels[channel_id] = {"id": channel_id, "name": name, "user": None}

    def add_faults(self, faults: list[Fault]) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take_fault(self, method: str, channel: str | None = None) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.method in (None, method) and fault.channel in (None, channel):
                    fault.count -= 1
                    if fault.count <= 0:
                        del self.faults[i]
                    self.stats[f"fault_{fault.kind}"] += 1
                    self.stats["faults"] += 1
                    return Fault(fault.kind, fault.method, 1, fault.retry_after, fault.delay, fault.error)
        return None

    def all_messages(self) -> list[dict]:
        with self.lock:
            return sorted((m for msgs in self.messages.values() for m in msgs), key=lambda m: float(m["ts"]))

    def record(self, channel: str, body: dict) -> dict:
        """Store an accepted message; caller holds the lock."""
        ts = f"{time.time():.0f}.{next(self._ts):06d}"
        message = {
            "type": "message",
            "ts": ts,
            "channel": channel,
            "text": body.get("text", ""),
            "blocks": _maybe_json(body.get("blocks")) or [],
            "metadata": _maybe_json(body.get("metadata")),
            "received_at": time.time(),
        }
        self.messages[channel].append(message)
        self.stats["messages"] += 1
        if self.data_dir is not None:
            with (self.data_dir / "messages.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(message) + "\n")
        return message


#: What Slack adds to a ``missing_scope`` answer (the scope asked for, the token's scopes).
_SCOPES = "chat:write,im:write,users:read,users:read.email,channels:history,groups:history,im:history"


def _error_answer(error: str) -> dict[str, Any]:
    """Slack's answer for an error code (HTTP 200, ``ok`` false)."""
    answer: dict[str, Any] = {"ok": False, "error": error}
    if error == "missing_scope":
        answer.update(needed="chat:write", provided=_SCOPES.replace("chat:write,", ""))
    return answer


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: tests and the bench would drown in access lines

    # --- plumbing ---------------------------------------------------------------------------

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if raw and ctype.startswith("application/json"):
            params.update(json.loads(raw))
        elif raw:
            params.update(dict(urllib.parse.parse_qsl(raw.decode("utf-8"))))
        return params

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True
        try:
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch()

    def _dispatch(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        state = self.server.state
        try:
            body = self._body()
        except ValueError:
            return self._send(200, {"ok": False, "error": "invalid_json"})
        if path.startswith("/_sandbox/"):
            return self._control(path[len("/_sandbox/") :], body)
        if not path.startswith("/api/"):
            return self._send(404, {"ok": False, "error": "unknown_method"})
        method = path[len("/api/") :]
        with state.lock:
            state.stats[f"call_{method}"] += 1
        if not self.headers.get("Authorization", "").startswith("Bearer xox"):
            return self._send(200, {"ok": False, "error": "not_authed"})
        fault = state.take_fault(method, str(body.get("channel", "")) or None)
        if fault is not None:
            if fault.kind == "error":
                return self._send(200, _error_answer(fault.error))
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind in ("500", "503"):
                return self._send(int(fault.kind), {"ok": False, "error": "internal_error"})
            elif fault.kind == "429":
                return self._send(
                    429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(fault.retry_after)}
                )
            elif fault.kind == "drop":
                return self._drop()
        handler = getattr(self, "api_" + method.replace(".", "_"), None)
        if handler is None:
            return self._send(200, {"ok": False, "error": "unknown_method"})
        after = fault.kind if fault is not None and fault.kind.endswith("_after_post") else None
        return handler(body, after)

    def _control(self, what: str, body: dict) -> None:
        state = self.server.state
        if what == "users" and self.command == "POST":
            state.add_users(body.get("users", []))
            return self._send(200, {"ok": True})
        if what == "faults" and self.command == "POST":
            state.add_faults([Fault(**f) for f in body.get("faults", [])])
            return self._send(200, {"ok": True})
        if what == "messages":
            return self._send(200, {"ok": True, "messages": state.all_messages()})
        if what == "stats":
            with state.lock:
                return self._send(200, {"ok": True, "stats": dict(state.stats)})
        return self._send(404, {"ok": False, "error": "unknown_control"})

    # --- Slack methods ----------------------------------------------------------------------

    def api_auth_test(self, body: dict, after: str | None) -> None:
        self._send(
            200,
            {
                "ok": True,
                "url": "https://sandbox.slack.local/",
                "team": "Sandbox",
                "user": "leadsla",
                "team_id": "T00000001",
                "user_id": "U00000000",
            },
        )

    def api_users_lookupByEmail(self, body: dict, after: str | None) -> None:  # noqa: N802 - Slack's name
        user = self.server.state.users.get(str(body.get("email", "")).casefold())
        if user is None:
            return self._send(200, {"ok": False, "error": "users_not_found"})
        self._send(200, {"ok": True, "user": user})

    def api_conversations_open(self, body: dict, after: str | None) -> None:
        state = self.server.state
        users = str(body.get("users", "")).split(",")
        if len(users) != 1 or not any(u["id"] == users[0] for u in state.users.values()):
            return self._send(200, {"ok": False, "error": "user_not_found"})
        channel_id = "D" + users[0][1:]
        with state.lock:
            state.channels.setdefault(channel_id, {"id": channel_id, "name": None, "user": users[0]})
        self._send(200, {"ok": True, "channel": {"id": channel_id}})

    def api_chat_postMessage(self, body: dict, after: str | None) -> None:  # noqa: N802 - Slack's name
        state = self.server.state
        channel = str(body.get("channel", ""))
        if channel not in state.channels:
            return self._send(200, {"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return self._send(200, {"ok": False, "error": "no_text"})
        with state.lock:
            now = time.monotonic()
            last = state.last_post.get(channel)
            if last is not None and now - last < state.per_channel_interval:
                state.stats["rate_limited"] += 1
                wait = max(1, math.ceil(state.per_channel_interval - (now - last)))
                self._send(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(wait)})
                return
            state.last_post[channel] = now
            message = state.record(channel, body)
        if after == "500_after_post":
            return self._send(500, {"ok": False, "error": "internal_error"})
        if after == "drop_after_post":
            return self._drop()
        self._send(200, {"ok": True, "channel": channel, "ts": message["ts"], "message": message})

    def api_conversations_history(self, body: dict, after: str | None) -> None:
        state = self.server.state
        channel = str(body.get("channel", ""))
        if channel not in state.channels:
            return self._send(200, {"ok": False, "error": "channel_not_found"})
        with_meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        oldest = float(body.get("oldest") or 0)
        limit = max(1, min(int(body.get("limit") or 100), 999))
        offset = int(body.get("cursor") or 0)
        with state.lock:
            # Newest first, as Slack returns them.
            msgs = [m for m in reversed(state.messages.get(channel, [])) if float(m["ts"]) > oldest]
        page = msgs[offset : offset + limit]
        out = []
        for m in page:
            item = {k: v for k, v in m.items() if k not in ("channel", "received_at", "metadata")}
            if with_meta and m.get("metadata"):
                item["metadata"] = m["metadata"]
            out.append(item)
        more = offset + limit < len(msgs)
        self._send(
            200,
            {
                "ok": True,
                "messages": out,
                "has_more": more,
                "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SlackState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class SlackSandbox:
    """The stand-in, run in a background thread: ``with SlackSandbox(port=0) as slack: ...``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: str | Path | None = None,
        per_channel_interval: float = 1.0,
    ) -> None:
        data = Path(data_dir) if data_dir else None
        if data is not None:
            data.mkdir(parents=True, exist_ok=True)
        self.state = SlackState(data_dir=data, per_channel_interval=per_channel_interval)
        if data is not None and (data / "users.json").exists():
            self.state.add_users(json.loads((data / "users.json").read_text(encoding="utf-8")))
        if data is not None and (data / "channels.json").exists():  # {"C0123": "name", "#team": "team"}
            for channel_id, name in json.loads((data / "channels.json").read_text(encoding="utf-8")).items():
                self.state.add_channel(channel_id, name)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"  # trailing slash: slack_sdk appends the method

    def start(self) -> SlackSandbox:
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # conveniences for tests and the bench
    def add_users(self, users: list[dict]) -> None:
        self.state.add_users(users)

    def add_channel(self, channel_id: str, name: str) -> None:
        self.state.add_channel(channel_id, name)

    def inject(self, kind: str, method: str | None = "chat.postMessage", count: int = 1, **kw: Any) -> None:
        self.state.add_faults([Fault(kind, method, count, **kw)])

    def messages(self, channel: str | None = None) -> list[dict]:
        msgs = self.state.all_messages()
        return [m for m in msgs if channel is None or m["channel"] == channel]

    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.stats)

    def fault_rules(self) -> list[dict]:
        with self.state.lock:
            return [asdict(f) for f in self.state.faults]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.slack_api", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument(
        "--data",
        default=None,
        help="folder for messages.jsonl; users.json and channels.json there seed users and channels",
    )
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="ID=NAME",
        help="a public channel, e.g. C0SLAALERTS=sla-alerts (repeatable)",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between posts per channel")
    args = parser.parse_args(argv)
    sandbox = SlackSandbox(args.host, args.port, args.data, args.interval)
    for spec in args.channel:
        cid, _, name = spec.partition("=")
        sandbox.add_channel(cid, name or cid)
    print(f"Slack stand-in on {sandbox.base_url} (messages in {args.data or 'memory'})", flush=True)
    try:
        sandbox._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox._server.server_close()


if __name__ == "__main__":
    main()
