"""Seconds, measured end to end: the real Airflow (`airflow standalone`: scheduler, dag processor,
triggerer, API server, LocalExecutor) with the project's DAGs and the demo policy, against the
stand-ins (Salesforce over HTTPS, Slack, SMTP, SMS), started the way scripts/run.sh starts them,
in a fresh AIRFLOW_HOME under /tmp. Prints ONE JSON line on stdout; progress goes to stderr.

The org: the demo org's seed (`sandbox.simulate`, no backlog, with its follow-the-sun demo-request
desk) plus 48 desk reps under 16 desk managers, in a time zone where it is daytime (no quiet
hours), so the per-person rate limit does not fold most warnings into digests. The simulator is
NOT left running: the bench is the only source of CRM changes, so the idle period is idle.

The workload (written to the org through `sandbox.sf_store.OrgStore`, the store the simulator and
the REST API write through, acting as the rep, so a touch is the owner's): for `--minutes`
(default 20; `--quick`: 5)

* live demo requests: a lead created as MQL and moved to SAL every few seconds (the demo_request
  tier: 5 business minutes on the 24 x 7 desk calendar: 50 % at 2.5 min, 80 % at 4 min, the
  breach at 6 min), until its breach still falls inside the workload;
* leads of the longer tiers (inbound: 2 h; standard: 4 h) created before Airflow starts with
  their SAL entry back-dated so that one of their checkpoints falls inside the workload;
* a quarter of the leads touched (a completed call by the owner) 20 to 40 s before their half
  checkpoint, another quarter as long before the warning: the alerts that must not go out.

Measured (tests/latency_metrics.py computes the figures from the rows):

* `checkpoint_to_post_p50_s` / `_p95_s`: each message of a checkpoint reached in the window, from
  the checkpoint's instant (the engine's final evaluation of the store, from the clock) to the
  stand-in's receive time of its first copy (Slack `received_at`, the .eml file's time, the
  gateway's `at`: whole seconds);
* `crm_change_to_clock_p95_s`: from the SAL update's commit in the org to its `sales_touch` clock
  row in the store (polled every `POLL_S`);
* `touch_cancels` (audit `cancelled_by_touch`), `stale_alerts`, `duplicates`, `lost`;
* `idle_api_calls_per_hour`: the Salesforce stand-in's REST API calls (`/_sandbox/status`
  `api_used`) over `--idle-minutes` with nothing changing in the org, scaled to an hour.

Everything the bench starts runs in its own process group and is killed at the end, on Ctrl-C and
on failure. Run: ``nice .venv/bin/python bench/latency.py [--minutes 20 | --quick] [--keep]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import heapq
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
BIN = ROOT / ".venv" / "bin"

POLL_S = 0.5
DESK_REPS, DESK_MANAGERS = 48, 16
TOUCH_LEAD_S = (20.0, 40.0)  # a touch this long before its checkpoint (STALE_MARGIN is 15 s)
GRACE_S = 150.0  # after the last planned checkpoint: its messages and breach actions
#: tier -> (LeadSource, Lead_Type__c, target seconds) as the shipped policy matches them.
TIERS = {
    "demo_request": ("Demo Request", "Demo Request", 5 * 60),
    "inbound": ("Web", "Inbound", 2 * 3600),
    "standard": ("Partner", "Partner", 4 * 3600),
}
#: sales_touch's checkpoints: id -> (share of the target, plus seconds): 50 %, 80 %, target + 1 min.
CHECKPOINTS = {"half": (0.5, 0), "warning": (0.8, 0), "breach": (1.0, 60)}
DAYTIME_ZONES = (
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Honolulu",
)

_T_START = time.monotonic()


def say(message: str) -> None:
    print(f"[latency +{time.monotonic() - _T_START:6.0f}s] {message}", file=sys.stderr, flush=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the processes --------------------------------------------------------------------------------


class Stack:
    """Every process the bench started, each in its own process group; `stop` ends them all."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        for _name, proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        for _name, proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        for _name, proc in self.procs:
            try:  # the group's stragglers too (task runners forked by the executor)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.clear()


def free_ports(count: int) -> list[int]:
    """`count` consecutive ports free now, from a random base (other people run stacks too)."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        ports = list(range(base, base + count))
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free ports found")


def run(argv: list[str], env: dict[str, str], what: str, timeout: float = 600) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")
    return done.stdout


def wait_for_port(port: int, timeout: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def git_code() -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    return {
        "code": git("describe", "--always", "--dirty", "--tags"),
        "code_subject": git("log", "-1", "--format=%s")[:120],
    }


# --- the org --------------------------------------------------------------------------------------


def daytime_zone(now: dt.datetime, hours: float) -> str:
    """The zone whose local time is nearest 12:00 now, so `hours` from now is still day."""

    def distance(zone: str) -> float:
        local = now.astimezone(ZoneInfo(zone))
        mid = local.hour + local.minute / 60 + hours / 2
        return abs(mid - 13.0)

    return min(DAYTIME_ZONES, key=distance)


@dataclass
class Desk:
    reps: list[str]
    managers: list[str]
    zone: str


def staff_desk(store, zone: str) -> Desk:
    """Add DESK_REPS reps under DESK_MANAGERS managers to the demo org's desk team (its CRM name,
    reporting to the desk's VP), all in `zone`, each with a fictional mobile number."""
    from sandbox.simulate import DESK_TEAM, demo_mobile

    desk_people = [u for u in store.scan("User") if u.get("Team__c") == DESK_TEAM]
    head = next(u for u in desk_people if "Manager" in (u.get("Title") or ""))
    now = utcnow()

    def person(n: int, title: str, manager: str) -> str:
        first, last = f"Bench{title.split()[-1]}", f"Person{n:03d}"
        return store.bulk_insert(
            "User",
            [
                {
                    "FirstName": first,
                    "LastName": last,
                    "Title": title,
                    "Department": DESK_TEAM,
                    "Team__c": DESK_TEAM,
                    "Email": f"{first}.{last}@leadsla.example".lower(),
                    "MobilePhone": demo_mobile(5, n),
                    "IsActive": True,
                    "TimeZoneSidKey": zone,
                    "ManagerId": manager,
                    "Out_Of_Office__c": False,
                    "CreatedDate": now,
                }
            ],
        )[0]

    managers = [person(i, "Desk Manager", head.get("ManagerId") or head["Id"]) for i in range(DESK_MANAGERS)]
    reps = [person(100 + i, "Desk Rep", managers[i % DESK_MANAGERS]) for i in range(DESK_REPS)]
    return Desk(reps, managers, zone)


def lead_fields(n: int, tier: str, owner: str, at: dt.datetime) -> dict:
    source, lead_type, _target = TIERS[tier]
    return {
        "FirstName": "Bench",
        "LastName": f"Lead {n:04d}",
        "Company": f"Latency Bench {n:04d} Ltd",
        "Email": f"bench.lead{n:04d}@latency-bench.example",
        "Status": "MQL",
        "OwnerId": owner,
        "LeadSource": source,
        "Lead_Type__c": lead_type,
        "Country": "GB",
        "MQL_Date__c": at,
        "Account_Tier__c": "Tier 2",
        "Lead_Score__c": 60.0,
    }


def planned_instants(tier: str, sal_at: dt.datetime) -> dict[str, dt.datetime]:
    """When the policy's checkpoints fall for a clock started at `sal_at` on the 24 x 7 desk."""
    target = TIERS[tier][2]
    return {
        cp: sal_at + dt.timedelta(seconds=share * target + plus) for cp, (share, plus) in CHECKPOINTS.items()
    }


@dataclass
class Lead:
    n: int
    tier: str
    owner: str
    touch_before: str | None  # the checkpoint a touch comes before, or None
    record_id: str | None = None
    sal_at: dt.datetime | None = None  # committed in the org
    touched_at: dt.datetime | None = None
    touch_due: dt.datetime | None = None
    clock_seen_at: dt.datetime | None = None
    live: bool = True


def touch_plan(n: int) -> str | None:
    """A quarter touched before the half checkpoint, a quarter before the warning."""
    return {1: "half", 3: "warning"}.get(n % 4)


@dataclass
class Workload:
    store: object
    desk: Desk
    rng: random.Random
    window_stop: dt.datetime
    leads: list[Lead] = field(default_factory=list)
    seq: itertools.count = field(default_factory=itertools.count)
    events: list = field(default_factory=list)

    def owner(self, n: int) -> str:
        return self.desk.reps[n % len(self.desk.reps)]

    def backdated(self, count: int, start: dt.datetime, stop: dt.datetime) -> None:
        """Leads of the longer tiers whose SAL entry is in the past, so that one of their checkpoints
        falls at a random instant in [start, stop]; written before Airflow's first sync reads the org."""
        for i in range(count):
            n = len(self.leads)
            tier = ("inbound", "standard")[i % 2]
            cp = ("half", "warning", "breach")[(i // 2) % 3]
            lands = start + (stop - start) * self.rng.random()
            share, plus = CHECKPOINTS[cp]
            sal_at = lands - dt.timedelta(seconds=share * TIERS[tier][2] + plus)
            lead = Lead(n, tier, self.owner(n), touch_plan(n) if cp != "breach" else None, live=False)
            if lead.touch_before is not None:
                lead.touch_before = cp  # the very checkpoint that lands in the window
            mql_at = sal_at - dt.timedelta(seconds=30)
            row = self.store.create(
                "Lead", lead_fields(n, tier, lead.owner, mql_at), now=mql_at, user_id=lead.owner
            )
            lead.record_id = row["Id"]
            self.store.update(
                "Lead",
                lead.record_id,
                {"Status": "SAL", "SAL_Date__c": sal_at},
                now=sal_at,
                user_id=lead.owner,
            )
            lead.sal_at = sal_at
            self.leads.append(lead)
            if lead.touch_before:
                self.plan_touch(lead)

    def plan_touch(self, lead: Lead) -> None:
        instant = planned_instants(lead.tier, lead.sal_at)[lead.touch_before]
        lead.touch_due = instant - dt.timedelta(seconds=self.rng.uniform(*TOUCH_LEAD_S))
        self.schedule(lead.touch_due, "touch", lead)

    def schedule(self, at: dt.datetime, what: str, lead: Lead) -> None:
        heapq.heappush(self.events, (at, next(self.seq), what, lead))

    def live(self, t0: dt.datetime, span_s: float, every_s: float) -> None:
        k = 0
        while k * every_s <= span_s:
            n = len(self.leads)
            lead = Lead(n, "demo_request", self.owner(n), touch_plan(n))
            self.leads.append(lead)
            self.schedule(t0 + dt.timedelta(seconds=k * every_s), "create", lead)
            k += 1

    def due(self, now: dt.datetime) -> None:
        """Do every event due by `now`, in order."""
        while self.events and self.events[0][0] <= now:
            _at, _seq, what, lead = heapq.heappop(self.events)
            getattr(self, f"_{what}")(lead)

    def _create(self, lead: Lead) -> None:
        row = self.store.create(
            "Lead", lead_fields(lead.n, lead.tier, lead.owner, utcnow()), user_id=lead.owner
        )
        lead.record_id = row["Id"]
        self.schedule(utcnow() + dt.timedelta(seconds=5), "accept", lead)

    def _accept(self, lead: Lead) -> None:
        at = utcnow()
        self.store.update("Lead", lead.record_id, {"Status": "SAL", "SAL_Date__c": at}, user_id=lead.owner)
        lead.sal_at = utcnow()  # committed: the change is in the org from here
        if lead.touch_before:
            self.plan_touch(lead)

    def _touch(self, lead: Lead) -> None:
        at = utcnow()
        self.store.create(
            "Task",
            {
                "WhoId": lead.record_id,
                "OwnerId": lead.owner,
                "Subject": f"Call: Bench Lead {lead.n:04d}",
                "Type": "Call",
                "TaskSubtype": "Call",
                "Status": "Completed",
                "CompletedDateTime": at,
                "ActivityDate": at.date().isoformat(),
                "CallDurationInSeconds": 120.0,
            },
            user_id=lead.owner,
        )
        lead.touched_at = utcnow()

    def last_instant(self) -> dt.datetime:
        """The latest checkpoint any lead is planned to reach (untouched leads reach the breach)."""
        out = []
        for lead in self.leads:
            if lead.sal_at is None:
                continue
            instants = planned_instants(lead.tier, lead.sal_at)
            if lead.live:
                out.append(instants["breach"])
            else:
                out.extend(i for i in instants.values() if i <= self.window_stop)
        return max(out)


# --- the store, read-only -------------------------------------------------------------------------


def store_reader(path: Path):
    import sqlalchemy as sa

    return sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": 30})


def clocks_seen(engine, record_ids: list[str]) -> set[str]:
    import sqlalchemy as sa

    from leadsla.store.schema import clocks

    if not record_ids:
        return set()
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(clocks.c.record_id)
                .distinct()
                .where(clocks.c.sla_id == "sales_touch", clocks.c.record_id.in_(record_ids))
            ).scalars()
        )


def sandbox_status(port: int, ca: Path) -> dict:
    """The Salesforce stand-in's own counters (`/_sandbox/status`): `api_used` (REST calls), and
    where the stand-in has them, calls per endpoint and the Streaming API's counters."""
    context = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}/_sandbox/status"
    with urllib.request.urlopen(url, context=context, timeout=10) as r:
        return json.load(r)


def counter_change(before: dict, after: dict) -> dict[str, int]:
    """What each numeric counter in `after` gained since `before` (nested one level), nonzero only."""
    out = {}
    for key, value in after.items():
        if isinstance(value, dict):
            for sub, gained in counter_change(before.get(key) or {}, value).items():
                out[f"{key}.{sub}"] = gained
        elif isinstance(value, int | float) and not isinstance(value, bool):
            gained = value - (before.get(key) or 0)
            if gained:
                out[key] = gained
    return out


def crm_mode(store_path: Path) -> dict[str, str] | None:
    """How crm_sync heard of CRM changes at the end, where the store records it (stream -> mode)."""
    import sqlalchemy as sa

    engine = store_reader(store_path)
    try:
        if not sa.inspect(engine).has_table("crm_stream_status"):
            return None
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("SELECT stream, mode FROM crm_stream_status")).all())
    finally:
        engine.dispose()


# --- what the people received ---------------------------------------------------------------------


def received(sandbox: Path) -> tuple[dict[str, list[float]], dict[str, list[tuple[float, str]]], list[dict]]:
    """(Slack key -> receive times, e-mail key -> [(file time, Message-ID)], SMS texts)."""
    slack: dict[str, list[float]] = {}
    path = sandbox / "slack" / "messages.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        m = json.loads(line)
        key = ((m.get("metadata") or {}).get("event_payload") or {}).get("idempotency_key")
        if key:
            slack.setdefault(key, []).append(float(m["received_at"]))
    mail: dict[str, list[tuple[float, str]]] = {}
    for eml in sorted((sandbox / "mail").glob("*.eml")):
        with eml.open("rb") as fh:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parse(fh)
        key = str(headers.get("X-LeadSLA-Key") or "").strip()
        if key:
            mail.setdefault(key, []).append((eml.stat().st_mtime, str(headers.get("Message-ID"))))
    sms_path = sandbox / "sms" / "messages.jsonl"
    texts = [json.loads(line) for line in sms_path.read_text().splitlines()] if sms_path.exists() else []
    return slack, mail, texts


def collect(
    store_path: Path, sandbox: Path, policy_path: Path, ids: set[str], end: dt.datetime
) -> tuple[list, list, list, dict[str, str], tuple[int, int]]:
    """Reached checkpoints (the engine's final evaluation), messages with what arrived of them,
    (checkpoint, audit event) pairs, each clock's tier, and the `cancelled_by_touch` counts
    (checkpoints, messages)."""
    import pandas as pd
    import sqlalchemy as sa
    from tests.latency_metrics import EXCUSING_EVENTS, Message, Reached, clock_id

    from leadsla.engine import evaluate
    from leadsla.policy import load_policy
    from leadsla.store.mirror import load_frames
    from leadsla.store.schema import audit, outbox

    engine = store_reader(store_path)
    with engine.connect() as conn:
        frames = load_frames(conn)
        rows = conn.execute(
            sa.select(
                outbox.c.idempotency_key,
                outbox.c.sla_id,
                outbox.c.record_id,
                outbox.c.clock_start,
                outbox.c.checkpoint,
                outbox.c.channel,
                outbox.c.status,
                outbox.c.not_before,
                outbox.c.payload,
            ).where(outbox.c.record_id.in_(sorted(ids)))
        ).all()
        audits = conn.execute(
            sa.select(
                audit.c.sla_id, audit.c.record_id, audit.c.clock_start, audit.c.checkpoint, audit.c.event
            ).where(audit.c.record_id.in_(sorted(ids)), audit.c.event.in_(sorted(EXCUSING_EVENTS)))
        ).all()
    engine.dispose()
    evaluation = evaluate(
        records=frames["records"],
        field_history=frames["field_history"],
        activities=frames["activities"],
        users=frames["users"],
        policy=load_policy(policy_path),
        now=end,
    )
    cps = evaluation.checkpoints
    cps = cps[cps["record_id"].astype(str).isin(ids)]
    reached = [
        Reached(
            clock_id(r.sla_id, r.record_id, pd.Timestamp(r.clock_start).to_pydatetime()),
            str(r.checkpoint),
            pd.Timestamp(r.reached_at).to_pydatetime(),
        )
        for r in cps.itertuples()
    ]
    tiers = {
        clock_id(r.sla_id, r.record_id, pd.Timestamp(r.clock_start).to_pydatetime()): str(r.tier)
        for r in evaluation.clocks[evaluation.clocks["record_id"].astype(str).isin(ids)].itertuples()
    }
    slack, mail, texts = received(sandbox)
    sms_by_ref: dict[str, list[float]] = {}
    for t in texts:
        ref = re.search(r" ref ([0-9a-f]{6})\s*$", t.get("message", ""))
        if ref:
            sms_by_ref.setdefault(ref.group(1), []).append(dt.datetime.fromisoformat(t["at"]).timestamp())
    messages = []
    for r in rows:
        if r.channel not in ("slack", "email", "sms"):
            continue
        if r.channel == "slack":
            times = slack.get(r.idempotency_key, [])
            distinct = len(times)
        elif r.channel == "email":
            copies = mail.get(r.idempotency_key, [])
            times, distinct = [t for t, _ in copies], len({mid for _, mid in copies})
        else:
            times = sms_by_ref.get(r.idempotency_key[:6], [])
            distinct = len(times)
        due = (r.payload or {}).get("due_at")
        clock = (
            clock_id(r.sla_id, r.record_id, r.clock_start)
            if r.sla_id and r.record_id and r.clock_start
            else None
        )
        messages.append(
            Message(
                key=r.idempotency_key,
                clock=clock,
                checkpoint=r.checkpoint,
                channel=r.channel,
                status=r.status,
                due_at=dt.datetime.fromisoformat(due) if due else None,
                not_before=r.not_before
                if r.not_before is None or r.not_before.tzinfo
                else r.not_before.replace(tzinfo=dt.UTC),
                received=tuple(dt.datetime.fromtimestamp(t, dt.UTC) for t in times),
                distinct_copies=distinct,
            )
        )
    events = [
        ((clock_id(a.sla_id, a.record_id, a.clock_start), a.checkpoint), a.event)
        for a in audits
        if a.sla_id and a.clock_start
    ]
    # Checkpoints a touch cancelled (the audit has one entry per planned message), and the messages.
    cancels = (
        len({cp for cp, event in events if event == "cancelled_by_touch"}),
        sum(1 for a in audits if a.event == "cancelled_by_touch"),
    )
    return reached, messages, events, tiers, cancels


# --- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/latency.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="the workload's length (default 20)")
    parser.add_argument("--quick", action="store_true", help="a 5-minute workload, for development")
    parser.add_argument("--idle-minutes", type=float, help="the quiet period (default 4; --quick 2)")
    parser.add_argument("--live-every", type=float, help="seconds between live demo requests (default 10)")
    parser.add_argument("--backdated", type=int, help="leads of the longer tiers (default 5 per minute)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the AIRFLOW_HOME (logs, store, stand-ins)")
    args = parser.parse_args(argv)
    minutes = 5.0 if args.quick else args.minutes
    if minutes < 1:
        parser.error("--minutes must be at least 1")
    idle_minutes = args.idle_minutes or (2.0 if args.quick else 4.0)
    every = args.live_every or 10.0
    backdated = args.backdated if args.backdated is not None else int(5 * minutes)
    rng = random.Random(args.seed)

    real_stdout = os.dup(1)
    os.dup2(2, 1)  # anything the imported code prints goes to stderr; stdout is the JSON line's

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    home = Path(tempfile.mkdtemp(prefix="leadsla-latency-", dir="/tmp"))
    (home / "logs").mkdir()
    stack = Stack(home / "logs")
    try:
        result = bench(home, stack, minutes, idle_minutes, every, backdated, rng)
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    finally:
        stack.stop()
        if args.keep:
            say(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    sys.stdout.flush()
    os.dup2(real_stdout, 1)
    print(json.dumps(result), flush=True)
    return 0


def bench(
    home: Path,
    stack: Stack,
    minutes: float,
    idle_minutes: float,
    every: float,
    backdated: int,
    rng: random.Random,
) -> dict:
    load_at_start = os.getloadavg()[0]
    code = git_code()  # what runs: the checkout as it is now (the tasks import it all along)
    sf_port, slack_port, smtp_port, sms_port, api_port = free_ports(5)
    sandbox = home / "sandbox"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "LEADSLA_SANDBOX_DIR": str(sandbox),
        "PYTHONPATH": str(ROOT / "include"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "LEADSLA_SALESFORCE_PORT": str(sf_port),
        "LEADSLA_SLACK_PORT": str(slack_port),
        "LEADSLA_SMTP_PORT": str(smtp_port),
        "LEADSLA_SMS_PORT": str(sms_port),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AIRFLOW_HOME", "LEADSLA_"))})
    sandbox.mkdir(parents=True)
    py = str(BIN / "python")
    say(
        f"AIRFLOW_HOME {home}; ports: salesforce {sf_port}, slack {slack_port}, smtp {smtp_port}, "
        f"sms {sms_port}, api {api_port}"
    )

    say("migrating the Airflow metadata database")
    run([str(BIN / "airflow"), "db", "migrate"], env, "airflow db migrate")
    (home / "connections.json").write_text(
        run([py, "-m", "sandbox.devstack", "connections"], env, "connections")
    )
    run(
        [str(BIN / "airflow"), "connections", "import", "--overwrite", str(home / "connections.json")],
        env,
        "connections import",
    )
    policy_path = Path(run([py, "-m", "sandbox.devstack", "demo-policy"], env, "demo-policy").strip())
    env["LEADSLA_POLICY_PATH"] = os.environ["LEADSLA_POLICY_PATH"] = str(policy_path)
    run([str(BIN / "leadsla"), "store"], env, "leadsla store")

    say("seeding the demo org (no backlog, the desk) and staffing the desk")
    from sandbox import devstack
    from sandbox.sf_store import OrgStore
    from sandbox.slack_seed import write_seed

    sf_dir = devstack.salesforce_dir()
    run(
        [
            py,
            "-m",
            "sandbox.simulate",
            "--data",
            str(sf_dir),
            "--backlog-hours",
            "0",
            "--for-hours",
            "0",
            "--desk",
            "--seed",
            "7",
        ],
        env,
        "seeding the demo org",
    )
    org = OrgStore(sf_dir / "org.sqlite3")
    warmup_guess = dt.timedelta(minutes=4)
    # The workload window, as first planned (Airflow's start moves T0; the back-dated checkpoints stay).
    planned_t0 = utcnow() + warmup_guess
    run_hours = (minutes + idle_minutes + 15) / 60
    desk = staff_desk(org, daytime_zone(utcnow(), run_hours))
    work = Workload(org, desk, rng, planned_t0 + dt.timedelta(minutes=minutes))
    work.backdated(backdated, planned_t0 + dt.timedelta(seconds=30), work.window_stop)
    write_seed(sandbox / "slack", org_db=sf_dir / "org.sqlite3", desk=True)
    say(
        f"desk: {len(desk.reps)} reps, {len(desk.managers)} managers in {desk.zone}; "
        f"{backdated} back-dated leads"
    )

    say("starting the stand-ins (devstack's services, without the demo simulator)")
    for service in devstack.services():
        if service.name != "demo":
            stack.start(service.name, service.argv, {**env, **service.env})
    for port in (sf_port, slack_port, smtp_port, sms_port):
        wait_for_port(port, 60, stack)
    ca = devstack.ca_bundle()
    env["REQUESTS_CA_BUNDLE"] = str(ca)

    say("starting airflow standalone")
    stack.start("standalone", [str(BIN / "airflow"), "standalone"], env)
    store_path = home / "leadsla_store.db"
    reader = None
    old_ids = [lead.record_id for lead in work.leads]
    deadline = time.monotonic() + 900
    while True:
        stack.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no clocks in the store after 15 minutes: see {home / 'logs'}")
        if store_path.exists():
            reader = reader or store_reader(store_path)
            try:
                seen = clocks_seen(reader, old_ids)
            except Exception:  # noqa: BLE001 - the schema may not be there yet
                seen = set()
            if len(seen) >= 0.9 * len(old_ids):
                break
        time.sleep(2)
    t0 = utcnow()
    say(f"warm: the monitor has evaluated the back-dated leads; the workload runs {minutes:g} min from now")

    live_span = max(minutes * 60 - 6 * 60 - 30, min(minutes * 60 / 2, 150))
    work.live(t0, live_span, every)
    work.window_stop = max(work.window_stop, t0 + dt.timedelta(minutes=minutes))
    pending: dict[str, Lead] = {}
    last_note = time.monotonic()
    while True:
        now = utcnow()
        work.due(now)
        for lead in work.leads:
            if lead.live and lead.sal_at is not None and lead.clock_seen_at is None:
                pending[lead.record_id] = lead
        if pending:
            for rid in clocks_seen(reader, list(pending)):
                pending.pop(rid).clock_seen_at = utcnow()
        if not work.events and now >= work.window_stop:
            break
        if time.monotonic() - last_note > 60:
            stack.check()
            last_note = time.monotonic()
            say(
                f"workload: {sum(lead.sal_at is not None for lead in work.leads)} leads in SAL, "
                f"{sum(lead.touched_at is not None for lead in work.leads)} touched, "
                f"{len(pending)} clocks awaited"
            )
        time.sleep(POLL_S)
    tail_until = work.last_instant() + dt.timedelta(seconds=GRACE_S)
    say(f"workload done; waiting for the last checkpoints' messages until {tail_until:%H:%M:%S}")
    while utcnow() < tail_until:
        if pending:
            for rid in clocks_seen(reader, list(pending)):
                pending.pop(rid).clock_seen_at = utcnow()
        time.sleep(POLL_S)
    stack.check()
    judged_until = tail_until - dt.timedelta(seconds=GRACE_S)

    say(f"idle: {idle_minutes:g} min with nothing changing in the org")
    before = sandbox_status(sf_port, ca)
    idle_start = time.monotonic()
    time.sleep(idle_minutes * 60)
    after = sandbox_status(sf_port, ca)
    idle_s = time.monotonic() - idle_start
    idle_calls = int(after["api_used"]) - int(before["api_used"])
    idle_counters = {k: v for k, v in counter_change(before, after).items() if k != "api_used"}
    end = utcnow()

    say("collecting: the store, the audit trail and the stand-ins' messages")
    from tests.latency_metrics import compute, percentile

    ids = {lead.record_id for lead in work.leads if lead.record_id}
    reached, messages, events, tiers, cancels = collect(store_path, sandbox, policy_path, ids, end)
    touched = {lead.record_id: lead.touched_at for lead in work.leads if lead.touched_at}
    figures = compute(reached, messages, events, window=(t0, judged_until), end=end, touched_at=touched)
    to_clock = [
        (lead.clock_seen_at - lead.sal_at).total_seconds()
        for lead in work.leads
        if lead.live and lead.sal_at and lead.clock_seen_at
    ]
    by_tier = Counter(tiers.get(cp.clock, "?") for cp in reached if t0 <= cp.at <= judged_until)
    reader.dispose()
    org.close()
    out = figures.as_json()
    return {
        "checkpoint_to_post_p50_s": out.pop("checkpoint_to_post_p50_s"),
        "checkpoint_to_post_p95_s": out.pop("checkpoint_to_post_p95_s"),
        "crm_change_to_clock_p50_s": percentile(to_clock, 0.50),
        "crm_change_to_clock_p95_s": percentile(to_clock, 0.95),
        "touch_cancels": cancels[0],
        "stale_alerts": out.pop("stale_alerts"),
        "idle_api_calls_per_hour": round(idle_calls * 3600 / idle_s, 1),
        "duplicates": out.pop("duplicates"),
        "lost": out.pop("lost"),
        "checkpoints": out.pop("checkpoints"),
        "minutes": round((judged_until - t0).total_seconds() / 60, 1),
        **code,
        "checkpoints_by_tier": dict(sorted(by_tier.items())),
        **out,
        "sal_changes_timed": len(to_clock),
        "clocks_never_seen": sum(
            1 for lead in work.leads if lead.live and lead.sal_at and not lead.clock_seen_at
        ),
        "touches": len(touched),
        "touch_cancelled_messages": cancels[1],
        "leads": len(ids),
        "idle_minutes": round(idle_s / 60, 1),
        "idle_api_calls": idle_calls,
        "idle_counters": idle_counters,
        "api_calls_total": int(after["api_used"]),
        "crm_mode": crm_mode(store_path),
        "desk_zone": work.desk.zone,
        # The machine's 1-minute load average at the start and the end (Airflow's tasks share it).
        "load_avg": [round(load_at_start, 1), round(os.getloadavg()[0], 1)],
    }


if __name__ == "__main__":
    sys.exit(main())
