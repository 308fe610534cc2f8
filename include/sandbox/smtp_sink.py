"""An SMTP sink on aiosmtpd (real SMTP over TCP): every accepted message becomes a .eml file.

Used by the demo, the tests and the benchmark through the `smtp_default` connection (host
127.0.0.1, the sink's port, extras ``disable_ssl`` and ``disable_tls``: plain SMTP, local only).
Fault switches: ``down(seconds)`` stops listening (connections refused) for a period;
``disconnect(count)`` / ``disconnect_for(seconds)`` hang up in the DATA phase before accepting;
``disconnect_after_accept(count)`` stores the message and then hangs up before the 250 reply:
the sender cannot tell it arrived (the crash window the Message-ID exists for);
``reject(address, code)`` refuses a recipient at RCPT TO (550: no such mailbox, a permanent
refusal; a 4xx code is a temporary one).

It relays nothing anywhere and keeps no credentials.
Run alone: ``python -m sandbox.smtp_sink --port 8026 --dir DIR``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that was free a moment ago (aiosmtpd cannot listen on port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(  # noqa: N802 - aiosmtpd API
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        code = self.sink._refusal(address)
        if code is not None:
            return f"{code} {'5.1.1' if code >= 500 else '4.2.1'} <{address}>: recipient refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        sink = self.sink
        mode = sink._take_fault()
        if mode == "disconnect":
            server.transport.close()
            return "421 closing connection"
        path = sink._store(envelope)
        if mode == "disconnect_after_accept":
            server.transport.close()  # stored, but the client never hears "250"
            return "421 closing connection"
        return f"250 Message accepted as {path.name}"


class SmtpSink:
    """The sink in a background thread: ``with SmtpSink(dir) as sink: ...``."""

    def __init__(self, directory: str | Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self._lock = threading.Lock()
        self._seq = itertools.count(len(list(self.directory.glob("*.eml"))) + 1)
        self._controller: Controller | None = None
        self._disconnects = 0
        self._disconnects_after_accept = 0
        self._disconnect_until = 0.0
        self._refused: dict[str, int] = {}
        self._timer: threading.Timer | None = None
        self.stats: Counter[str] = Counter()

    # --- life -------------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        with self._lock:
            if self._controller is None:
                self._controller = Controller(
                    _Handler(self), hostname=self.host, port=self.port, server_hostname="smtp-sink.local"
                )
                self._controller.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults -----------------------------------------------------------------------------

    def down(self, seconds: float | None = None) -> None:
        """Stop listening (connection refused); come back by itself after `seconds` if given."""
        self.stop()
        self.stats["downs"] += 1
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.start)
            self._timer.daemon = True
            self._timer.start()

    def up(self) -> None:
        self.start()

    def disconnect(self, count: int = 1) -> None:
        """Hang up in DATA, before accepting, for the next `count` messages."""
        with self._lock:
            self._disconnects += count

    def disconnect_for(self, seconds: float) -> None:
        with self._lock:
            self._disconnect_until = time.monotonic() + seconds

    def disconnect_after_accept(self, count: int = 1) -> None:
        """Store the next `count` messages, then hang up before the 250 reply."""
        with self._lock:
            self._disconnects_after_accept += count

    def reject(self, address: str, code: int = 550) -> None:
        """Refuse `address` at RCPT TO with `code` (5xx permanent, 4xx temporary) until `accept`."""
        with self._lock:
            self._refused[address.casefold()] = code

    def accept(self, address: str) -> None:
        with self._lock:
            self._refused.pop(address.casefold(), None)

    def _refusal(self, address: str) -> int | None:
        with self._lock:
            code = self._refused.get(address.casefold())
            if code is not None:
                self.stats["recipients_refused"] += 1
            return code

    def _take_fault(self) -> str | None:
        with self._lock:
            if self._disconnects > 0:
                self._disconnects -= 1
                self.stats["disconnects"] += 1
                return "disconnect"
            if time.monotonic() < self._disconnect_until:
                self.stats["disconnects"] += 1
                return "disconnect"
            if self._disconnects_after_accept > 0:
                self._disconnects_after_accept -= 1
                self.stats["disconnects_after_accept"] += 1
                return "disconnect_after_accept"
        return None

    # --- messages ---------------------------------------------------------------------------

    def _store(self, envelope: Any) -> Path:
        data: bytes = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        mid = re.sub(r"[^A-Za-z0-9]+", "_", str(parsed.get("Message-ID", "no-id")))[:80]
        with self._lock:
            path = self.directory / f"{next(self._seq):06d}_{mid}.eml"
            self.stats["accepted"] += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)  # readers never see half a message
        return path

    def messages(self) -> list[email.message.EmailMessage]:
        """Every accepted message, oldest first, parsed."""
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(self.directory.glob("*.eml"))
        ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.smtp_sink", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8026)
    parser.add_argument("--dir", required=True, help="folder that receives one .eml file per message")
    args = parser.parse_args(argv)
    sink = SmtpSink(args.dir, args.host, args.port).start()
    print(f"SMTP sink on {args.host}:{sink.port}, messages in {Path(args.dir).resolve()}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
