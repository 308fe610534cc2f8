"""An SMS gateway stand-in speaking SMSEagle's JSON-RPC API over HTTP, for the demo and the tests.

Lead SLA Monitor texts through Apprise's SMSEagle plugin (`leadsla.notify.sms`), which POSTs
``{"method": "sms.send_sms", "params": {"access_token", "to", "message", ...}}`` to
``/jsonrpc/sms`` on the host the connection's URL names (``smseagle://TOKEN@127.0.0.1:PORT/``).
This server answers like the gateway: ``{"result": {"message_id": N, "status": "ok"}}``, and
records every accepted text in memory and in ``messages.jsonl`` (the demo's "phone": the number in
full is the gateway's business, never Lead SLA Monitor's logs). A wrong token gets HTTP 401.

Faults on demand (``POST /_sandbox/faults`` or `SmsGateway.inject`), each for ``count`` sends:
``500`` (nothing sent), ``500_after_send`` (recorded, then a 500: the ambiguous case), ``429``,
``401`` and ``reject`` (HTTP 400, the gateway refusing the number). ``reject_number(phone)``
refuses one number for good. ``GET /_sandbox/messages`` lists what was texted.

It sends nothing anywhere and keeps no secrets (the token is a fixed sandbox value).
Run alone: ``python -m sandbox.sms_gateway --port 8027 --data DIR``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: The access token the stand-in accepts (the demo's connection carries it).
SANDBOX_TOKEN = "sandbox-sms-token"
FAULT_KINDS = ("500", "500_after_send", "429", "401", "reject")


class GatewayState:
    """What the gateway has texted, and the faults still to inject."""

    def __init__(self, data_dir: Path | None, token: str) -> None:
        self.data_dir = data_dir
        self.token = token
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.rejected: set[str] = set()
        self.requests = 0
        self._ids = itertools.count(1)
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)

    def take_fault(self) -> str | None:
        with self.lock:
            for fault in self.faults:
                if fault["count"] > 0:
                    fault["count"] -= 1
                    return fault["kind"]
        return None

    def record(self, to: str, message: str, priority: int) -> dict[str, Any]:
        with self.lock:
            entry = {
                "message_id": next(self._ids),
                "to": to,
                "message": message,
                "highpriority": priority,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            self.messages.append(entry)
            if self.data_dir is not None:
                with (self.data_dir / "messages.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
            return entry


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the recorded messages are the log

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        state = self.server.state
        if self.path.startswith("/_sandbox/messages"):
            with state.lock:
                self._send(200, {"messages": list(state.messages)})
        else:
            self._send(404, {"result": {"error_text": "not found", "status": "error"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        state = self.server.state
        body = self._body()
        if self.path.startswith("/_sandbox/faults"):
            with state.lock:
                state.faults += [{"kind": f["kind"], "count": int(f.get("count", 1))} for f in body or []]
            self._send(200, {"ok": True})
            return
        if self.path.rstrip("/") != "/jsonrpc/sms":
            self._send(404, {"result": {"error_text": "no such API", "status": "error"}})
            return
        with state.lock:
            state.requests += 1
        params = (body or {}).get("params") or {}
        if (body or {}).get("method") != "sms.send_sms" or not params.get("to"):
            self._send(400, {"result": {"error_text": "expected sms.send_sms with to", "status": "error"}})
            return
        fault = state.take_fault()
        if fault == "401" or params.get("access_token") != state.token:
            self._send(401, {"result": {"error_text": "Invalid login or token", "status": "error"}})
            return
        if fault == "500":
            self._send(500, {"result": {"error_text": "modem busy", "status": "error"}})
            return
        if fault == "429":
            self._send(429, {"result": {"error_text": "too many requests", "status": "error"}})
            return
        if fault == "reject" or params["to"] in state.rejected:
            self._send(400, {"result": {"error_text": "Invalid phone number", "status": "error"}})
            return
        entry = state.record(
            str(params["to"]), str(params.get("message") or ""), int(params.get("highpriority") or 0)
        )
        if fault == "500_after_send":
            self._send(500, {"result": {"error_text": "internal error", "status": "error"}})
            return
        self._send(200, {"result": {"message_id": entry["message_id"], "status": "ok"}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: GatewayState) -> None:
        super().__init__(address, _Handler)
        self.state = state


class SmsGateway:
    """The stand-in in a background thread: ``with SmsGateway(dir) as gateway: ...``."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = SANDBOX_TOKEN,
    ) -> None:
        self.state = GatewayState(Path(data_dir) if data_dir else None, token)
        self._server = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def apprise_url(self, token: str | None = None) -> str:
        """The Apprise URL a connection's config names to reach this gateway."""
        return f"smseagle://{token or self.state.token}@127.0.0.1:{self.port}/"

    def start(self) -> SmsGateway:
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-gateway", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmsGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}: expected one of {', '.join(FAULT_KINDS)}")
        with self.state.lock:
            self.state.faults.append({"kind": kind, "count": count})

    def reject_number(self, phone: str) -> None:
        with self.state.lock:
            self.state.rejected.add(phone)

    def messages(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.messages)

    @property
    def requests(self) -> int:
        return self.state.requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.sms_gateway", description=__doc__)
    parser.add_argument("--port", type=int, default=8027)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", type=Path, required=True, help="folder for messages.jsonl")
    args = parser.parse_args(argv)
    gateway = SmsGateway(args.data, host=args.host, port=args.port)
    print(
        f"SMS gateway stand-in (SMSEagle JSON-RPC) on http://{args.host}:{gateway.port}/jsonrpc/sms",
        flush=True,
    )
    try:
        gateway._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
