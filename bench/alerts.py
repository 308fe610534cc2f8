"""Alert delivery under fire: 600 warnings and breaches through the Slack stand-in and the SMTP
sink with 1,000+ injected faults (429 storms, 5xx before and after posting, dropped
connections, SMTP disconnects and lost 250 replies, deliverers killed between send and mark),
three overlapping deliverers per one-minute round. Prints ONE JSON line.

Simulated time: round k runs at T0 + k minutes (what the monitor's schedule would do); inside a
round, time runs on in real time, and the three deliverers each run `deliver_due` with the DAG's
budget (DEFAULT_BUDGET), as the `deliver` task does. When all three are waiting for a row to
fall due (a quick retry, a lapsed lease), the round's clock jumps to the earliest wake-up instead
of sleeping it out (`RoundClock`; never while any of them is working), and each jump is an anchor
of the wall -> simulated mapping, so the latency measured is what real waiting would give.
Latency = checkpoint due -> the stand-in accepting the first copy (Slack `received_at`, the .eml
file's time, mapped to simulated time). A killed deliverer's message reached the person when it
was sent, although the row is only marked a lease later: that later mark is reported as
`p95_due_to_marked_delivered_s` (an earlier version reported it as the latency).

``duplicates`` counts copies a person could not tell apart: a second Slack post of one key, or
two e-mails of one key with different Message-IDs. E-mail resends with the SAME Message-ID (the
documented crash window after SMTP accepted) are reported separately as
``email_resends_same_message_id``.

``--spread`` is today's path with checkpoints at their own seconds: each alert falls due at its
second of minute k and is queued by the monitor's run at minute k + 1 (so the wait for that run
counts), then delivered for `DEFAULT_BUDGET` of the minute. ``--on-time`` measures delivery at
the checkpoint's instant: the same seconds, each alert queued a round ahead with its instant (the
monitor's planning, payload ``planned``), and the three deliverers cover the whole minute each
round (the `sla_delivery` loop: budget 60 s, waking at each row's instant and polling every
`LOOP_POLL`; the killer takes rows at their instants), under the same faults. Without either:
every alert due at its minute's start and queued then (the earlier figures' setting).

Run: ``.venv/bin/python bench/alerts.py [--spread | --on-time]`` (about a minute or two on a busy laptop).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

import sqlalchemy as sa  # noqa: E402

from leadsla.decisions.plan import Message  # noqa: E402
from leadsla.notify.delivery import DEFAULT_BUDGET, LOOP_POLL, deliver_due  # noqa: E402
from leadsla.notify.email import EmailSender  # noqa: E402
from leadsla.notify.outbox import DEFAULT_LEASE, claim, enqueue  # noqa: E402
from leadsla.notify.slack import SlackSender  # noqa: E402
from leadsla.store import open_store  # noqa: E402
from leadsla.store.audit import AuditContext  # noqa: E402
from leadsla.store.schema import audit, outbox  # noqa: E402
from sandbox.slack_api import SlackSandbox  # noqa: E402
from sandbox.smtp_sink import SmtpSink  # noqa: E402

T0 = dt.datetime(2026, 3, 9, 14, 0, tzinfo=dt.UTC)
ALERTS_PER_CHANNEL = 300
DUE_ROUNDS = 10  # alerts fall due over the first ten minutes
FALLBACK = "C0SLAALERTS"
CTX = AuditContext(dag_id="sla_monitor", run_id="bench", task_id="deliver_alerts", try_number=1)


class RoundClock:
    """One round's clock for its deliverers: real time, plus jumps over waits all of them share.

    A deliverer's `sleep` returns when the round's clock reaches its wake-up; if every registered
    deliverer is asleep, nobody could do anything before the earliest wake-up, so the clock jumps
    there (and records a (wall, simulated) anchor). While any deliverer works, time is real.
    """

    def __init__(self, sim_start: dt.datetime, anchors: list[tuple[float, dt.datetime]]) -> None:
        self.cond = threading.Condition()
        self.skipped = 0.0
        self.base = time.monotonic()
        self.sim_start = sim_start
        self.anchors = anchors
        self.active = 0
        self.sleepers: dict[int, float] = {}

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def now(self) -> dt.datetime:
        return self.sim_start + dt.timedelta(seconds=self.monotonic() - self.base)

    def run(self, target, *args, **kwargs) -> threading.Thread:
        with self.cond:
            self.active += 1

        def body():
            try:
                target(*args, **kwargs)
            finally:
                with self.cond:
                    self.active -= 1
                    self.cond.notify_all()

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        with self.cond:
            wake = self.monotonic() + seconds
            self.sleepers[me] = wake
            try:
                while self.monotonic() < wake:
                    if len(self.sleepers) >= self.active:
                        jump = min(self.sleepers.values()) - self.monotonic()
                        if jump > 0:
                            self.skipped += jump
                            self.anchors.append((time.time(), self.now()))
                            self.cond.notify_all()
                            continue
                    # (an earlier sleeper due already needs the lock to wake: wait, never spin)
                    self.cond.wait(timeout=min(max(wake - self.monotonic(), 0.001), 0.05))
            finally:
                del self.sleepers[me]
                self.cond.notify_all()


def payload(i: int, kind: str, email: str, due: dt.datetime, tz: str, planned: bool = False) -> dict:
    return {
        **({"planned": True} if planned else {}),
        "kind": kind,
        "sla_name": "MQL to SAL",
        "lead": {
            "id": f"00Q{i:015d}",
            "name": f"Lead {i} <!channel>",
            "company": f"Co {i}",
            "source": "Web",
            "tier": "High-Intent",
        },
        "owner": {"name": f"Rep {i % 40}"},
        "recipient": {"name": email, "email": email, "timezone": tz, "slack_fallback_channel": FALLBACK},
        "team": {"name": "SDR East", "timezone": "America/New_York"},
        "target_seconds": 14400,
        "elapsed_seconds": 7200 if kind == "warning" else 14460,
        "remaining_seconds": 7200 if kind == "warning" else -60,
        "deadline": (due + dt.timedelta(hours=2)).isoformat(),
        "due_at": due.isoformat(),
        "breached_at": due.isoformat() if kind == "breach" else None,
        "open_clocks": i % 7,
        "instance_url": "https://acme.my.salesforce.com",
    }


def main() -> None:
    on_time = "--on-time" in sys.argv[1:]
    spread = on_time or "--spread" in sys.argv[1:]
    budget = dt.timedelta(seconds=60) if on_time else DEFAULT_BUDGET
    # Airflow's structlog writes hook logs to stdout; keep stdout for the one JSON line.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    for name in ("mail.log", "leadsla", "slack_sdk", "airflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="bench_alerts_"))
    slack = SlackSandbox(data_dir=tmp / "slack", per_channel_interval=0.0).start()
    sink = SmtpSink(tmp / "mail").start()
    os.environ["AIRFLOW_CONN_SLACK_API_DEFAULT"] = json.dumps(
        {"conn_type": "slack", "password": "xoxb-bench", "extra": {"base_url": slack.base_url, "timeout": 10}}
    )
    os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": sink.port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "timeout": 5,
                "retry_limit": 0,
                "from_email": "sla-monitor@leadsla.example",
            },
        }
    )
    slack.add_channel(FALLBACK, "sla-alerts")
    people = [f"rep{n}@example.com" for n in range(60)]
    slack.add_users([{"email": p} for p in people[:50]])  # ten people have no Slack account: fallback
    engine = open_store(f"sqlite:///{tmp / 'store.db'}")

    faults = Counter()
    slack.inject("429", count=200, retry_after=0)
    faults["slack_429"] = 200  # noqa: E702
    slack.inject("500", count=200)
    faults["slack_500"] = 200  # noqa: E702
    slack.inject("503", count=100)
    faults["slack_503"] = 100  # noqa: E702
    slack.inject("500_after_post", count=50)
    faults["slack_500_after_post"] = 50  # noqa: E702
    slack.inject("drop", count=50)
    faults["slack_drop"] = 50  # noqa: E702
    slack.inject("500", method="users.lookupByEmail", count=30)
    faults["slack_lookup_500"] = 30  # noqa: E702

    zones = ["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Kolkata"]
    plan: dict[int, list[Message]] = {}
    for i in range(2 * ALERTS_PER_CHANNEL):
        rnd = i % DUE_ROUNDS
        # On time: each alert at its own second of the minute (a planned checkpoint's instant).
        due = T0 + dt.timedelta(minutes=rnd, seconds=(i * 7) % 60 if spread else 0)
        channel = "slack" if i % 2 == 0 else "email"
        kind = "breach" if i % 3 == 0 else "warning"
        person = people[i % len(people)]
        plan.setdefault(rnd, []).append(
            Message(
                "mql_to_sal",
                f"00Q{i:015d}",
                T0 - dt.timedelta(hours=2),
                kind,
                person,
                channel,
                payload(i, kind, person, due, zones[i % len(zones)], planned=on_time),
                not_before=due if on_time else None,  # at reach: due when the run queues it
            )
        )

    killed_target = {"slack": 50, "email": 50}
    killed = Counter()
    killed_keys: set[str] = set()
    smtp_faults_left = {"disconnect": 250, "after_accept": 50}
    rnd = 0
    rounds: list[tuple[float, dt.datetime]] = []  # (wall clock at the round's start, its simulated time)
    while rnd < 240:  # four simulated hours at most
        now = T0 + dt.timedelta(minutes=rnd)
        rounds.append((time.time(), now))
        round_clock = RoundClock(now, rounds)
        # At the checkpoint's minute; on time: a round ahead (the first round's just before it).
        # Spread without planning: a checkpoint inside minute k is queued by the run of k + 1.
        queue_round = rnd + 1 if on_time else rnd - 1 if spread else rnd
        for ahead in [0, 1] if on_time and rnd == 0 else [queue_round]:
            if ahead in plan:
                with engine.begin() as conn:
                    enqueue(conn, plan[ahead], now, CTX)
        # SMTP faults spread over the first rounds: disconnects before accept, and lost 250s.
        if rnd < 8:
            sink.disconnect(40)
            smtp_faults_left["disconnect"] -= 40  # noqa: E702
            faults["smtp_disconnect"] += 40
            if rnd < 5:
                sink.disconnect_after_accept(10)
                faults["smtp_lost_250"] += 10  # noqa: E702
        # SMTP down for one simulated minute (round 3's whole delivery). Rounds run back to back in
        # real time, so an outage timed in real seconds would span a varying number of simulated
        # minutes: it is switched by the simulated clock instead.
        if rnd == 3:
            sink.down()
            faults["smtp_down_1min"] += 1  # noqa: E702
        elif rnd == 4:
            sink.up()

        # Killed deliverers: claim, send, then die before marking (the lease runs out DEFAULT_LEASE
        # later). Each channel's killer claims only rows it will kill, so every row held by a dead
        # worker is a counted fault (an earlier version claimed 30 rows a round whatever the target
        # left, holding uncounted rows hostage for a lease).
        # On time, rows fall due through the minute: the killer takes them at their instants
        # instead (a thread on the round's clock, waking just before the deliverers do).
        def kill(at: dt.datetime, channel: str, take: int, senders: dict) -> None:
            with engine.begin() as conn:
                victims = claim(conn, at, DEFAULT_LEASE, take, channels=[channel])
            for row in victims:
                killed[channel] += 1
                killed_keys.add(row.idempotency_key)
                faults[f"killed_{channel}"] += 1
                try:
                    senders[channel].deliver(row, at)
                except Exception:
                    pass  # the fault storm may fail the send too; the lease still lapses

        killer = None
        if rnd < DUE_ROUNDS and killed.total() < sum(killed_target.values()):
            senders = {"slack": SlackSender(), "email": EmailSender()}
            if not on_time:
                for channel, target in killed_target.items():
                    if (take := min(15, target - killed[channel])) > 0:
                        kill(now, channel, take, senders)
                senders["email"].close()
            else:
                instants = sorted({m.not_before for m in plan.get(rnd, [])})

                def killing(senders=senders, instants=instants, clock=round_clock, cap=15 * rnd + 15) -> None:
                    for at in instants:
                        clock.sleep(max((at - clock.now()).total_seconds(), 0.0))
                        for channel, target in killed_target.items():
                            if (take := min(2, target - killed[channel], cap - killed[channel])) > 0:
                                kill(clock.now(), channel, take, senders)
                    senders["email"].close()

                killer = round_clock.run(killing)
        # The deliverers start now (after the killer's real seconds), on the round's clock.
        threads = [
            round_clock.run(
                deliver_due,
                engine,
                round_clock.now(),
                CTX,
                batch=10,
                budget=budget,
                poll=LOOP_POLL if on_time else None,
                monotonic=round_clock.monotonic,
                sleep=round_clock.sleep,
            )
            for _ in range(3)
        ]
        for t in threads + ([killer] if killer else []):
            t.join()
        with engine.connect() as conn:
            open_rows = conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status != "delivered")
            ).scalar()
        if rnd >= DUE_ROUNDS and open_rows == 0:
            break
        print(
            f"round {rnd}: {open_rows} open, clock +{round_clock.monotonic() - round_clock.base:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        rnd += 1  # the one-minute schedule, to the end (idle rounds are cheap)

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(outbox.c.idempotency_key, outbox.c.channel, outbox.c.status, outbox.c.payload)
        ).all()
        sent = conn.execute(
            sa.select(audit.c.at, audit.c.detail).where(audit.c.event == "message_sent")
        ).all()
    expected = {r.idempotency_key for r in rows}
    due_at = {r.idempotency_key: dt.datetime.fromisoformat(r.payload["due_at"]) for r in rows}
    slack_keys = Counter(
        m["metadata"]["event_payload"]["idempotency_key"] for m in slack.messages() if m.get("metadata")
    )
    mails = sink.messages()
    mail_ids: dict[str, set[str]] = {}
    mail_copies = Counter()
    for m in mails:
        mail_ids.setdefault(str(m["X-LeadSLA-Key"]).strip(), set()).add(m["Message-ID"])
        mail_copies[str(m["X-LeadSLA-Key"]).strip()] += 1  # unfold
    arrived = set(slack_keys) | set(mail_ids)
    missing = sorted(expected - arrived)
    if missing:
        print(
            f"missing e.g. {missing[:2]}; slack keys e.g. {list(slack_keys)[:2]}; mail e.g. "
            f"{list(mail_ids)[:2]}",
            file=sys.stderr,
        )

    # Latency as the issue defines it: checkpoint due -> accepted by the stand-in (the first copy).
    # The stand-ins stamp acceptance with the wall clock; a round's simulated time runs on from
    # its start with real elapsed time (as `deliver_due`'s own clock does), so wall -> simulated
    # is: the round that had started by then, plus the real time since its start.
    # Anchors: each round's start and each jump of its clock (appended in wall-clock order).
    def simulated(wall: float) -> dt.datetime:
        start, sim = next((r for r in reversed(rounds) if r[0] <= wall), rounds[0])
        return sim + dt.timedelta(seconds=wall - start)

    accepted: dict[str, dt.datetime] = {}
    for m in slack.messages():
        if m.get("metadata"):
            key = m["metadata"]["event_payload"]["idempotency_key"]
            at = simulated(m["received_at"])
            accepted[key] = min(at, accepted.get(key, at))
    for path in sink.directory.glob("*.eml"):
        with path.open("rb") as fh:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parse(fh)
        key = str(headers["X-LeadSLA-Key"]).strip()
        at = simulated(path.stat().st_mtime)
        accepted[key] = min(at, accepted.get(key, at))

    def p95_of(values: list[float]) -> float | None:
        values = sorted(values)
        return round(values[int(0.95 * (len(values) - 1))], 1) if values else None

    first_sent: dict[str, dt.datetime] = {}  # when the outbox row was marked delivered (first)
    for at, detail in sent:
        key = detail["idempotency_key"]
        first_sent[key] = min(at, first_sent.get(key, at))
    latencies = sorted((accepted[k] - due_at[k]).total_seconds() for k in accepted if k in due_at)
    p95 = p95_of(latencies)
    p50 = round(latencies[len(latencies) // 2], 1) if latencies else None
    p95_calm = p95_of(
        [(accepted[k] - due_at[k]).total_seconds() for k in accepted if k in due_at and k not in killed_keys]
    )
    p95_marked = p95_of([(first_sent[k] - due_at[k]).total_seconds() for k in first_sent])
    with engine.connect() as conn:
        failed_runs = Counter(
            d["idempotency_key"]
            for (d,) in conn.execute(sa.select(audit.c.detail).where(audit.c.event == "message_failed"))
        )
    slow = Counter(
        (f"killed={k in killed_keys}", f"failed_runs={failed_runs[k]}")
        for k in accepted
        if k in due_at and (accepted[k] - due_at[k]).total_seconds() > 75
    )
    print(f"over 75 s by cause: {sorted(slow.items())}", file=sys.stderr)
    stats = slack.stats()
    injected = (
        stats.get("faults", 0)
        + sink.stats["disconnects"]
        + sink.stats["disconnects_after_accept"]
        + sink.stats["downs"]
        + killed["slack"]
        + killed["email"]
    )
    result = {
        "alerts_expected": len(expected),
        "alerts_delivered": sum(r.status == "delivered" for r in rows),
        "duplicates": sum(c - 1 for c in slack_keys.values())
        + sum(len(ids) - 1 for ids in mail_ids.values()),
        # Lost = a key no person ever received (whatever the outbox says); a row that arrived but
        # is not marked delivered is a bookkeeping gap, reported on its own (not counted twice).
        "lost": len(expected - arrived),
        "not_marked_delivered": sum(r.status != "delivered" for r in rows),
        "faults_injected": injected,
        "p50_latency_s": p50,
        "p95_latency_s": p95,
        "p95_latency_s_excluding_killed": p95_calm,
        "p95_due_to_marked_delivered_s": p95_marked,
        "email_resends_same_message_id": sum(c - 1 for c in mail_copies.values()),
        "slack_reconciled_from_history": sum(bool(d.get("reconciled")) for _, d in sent),
        "faults_by_kind": {
            **{k: v for k, v in stats.items() if k.startswith("fault_")},
            "smtp_disconnect": sink.stats["disconnects"],
            "smtp_lost_250": sink.stats["disconnects_after_accept"],
            "smtp_down": sink.stats["downs"],
            "killed_slack": killed["slack"],
            "killed_email": killed["email"],
        },
        "simulated_minutes": rnd,
        "delivery_budget_s": budget.total_seconds(),
        "mode": "on_time" if on_time else "at_reach_spread" if spread else "at_reach",
        "lease_s": DEFAULT_LEASE.total_seconds(),
    }
    slack.stop()
    sink.stop()
    engine.dispose()
    sys.stdout.flush()
    os.dup2(real_stdout, 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
