"""Lead routing under a burst, and how soon an unowned lead reaches its team manager and RevOps.
Prints ONE JSON line.

Starts the local Salesforce API in-process (temp data dir, new CA; REQUESTS_CA_BUNDLE and
AIRFLOW_CONN_SALESFORCE_DEFAULT point at it, as in bench/sync.py), and the Slack and SMTP
stand-ins (as in bench/alerts.py). The routing policy is the shipped one with unequal declared
capacities and an absence, written to a temp dir (LEADSLA_POLICY_PATH).

**The org.** SDR Americas (sdr_east): six reps in the rotation with capacities 1, 1 (default),
2, 1.5, 3 and 1 (the last two Senior SDRs: the hot score tier), one out of office, one inactive,
one absent by the policy, one with capacity 0, and their manager. SDR EMEA (sdr_emea): four reps
(1, 2, 0.5, 1.5), one out of office, a manager. SDR APAC (a watched team, another tool routes
it): a manager and two reps. Six account executives own 300 accounts: 120 customers (a won
opportunity), 80 with an open opportunity, 100 with only a lost one (not kept: their leads go
round robin).

**Phase 1, the burst** (real time). `--leads` new MQLs (default 10,000) wait in the Lead Intake
queue: about 6 % match a kept account by e-mail domain, 3 % by company name (with a free-mail
address), 2 % match a not-kept account, 2 % duplicate an open SAL lead (same e-mail), 10 % are
hot. Besides them: 150 MQLs under a running `SLA_Lock_Until__c` (intake queue, or an inactive
owner) and 150 a person assigned by hand (to reps of either team, two of them out of office). One sync
(org and leads groups), then `run_routing` is timed (`routing_s`, wall time) and the stand-in's
API counter read around it (`api_calls`; `composite_writes` and `records_per_write` from a
counting client). Checked in the CRM afterwards: `reason_missing`, `suppression_errors` (a kept
account's lead not with the account's owner), `false_suppressions`, `duplicate_errors`,
`locked_moved`, and `max_share_deviation`: per team, each rep's share of the round-robin leads
(rule ``territory:...``) minus its weighted share among the reps who can take leads (active, in,
not absent, capacity > 0, not a manager); the worst absolute difference (and the relative one).

**Phase 2, no lead waits unowned** (a simulated clock). The one-minute schedule runs on
simulated minutes T1 + k (T1 a couple of minutes after the burst, in the future of the wall
clock). Leads become unowned at random instants in `--minutes` minutes: an SAL lead put back in
the Lead Intake queue, an SAL lead given to an inactive user (both written through the stand-in
at that instant: the owner change is a LeadHistory row stamped then), a new MQL from a country no
territory covers, and a new MQL of the watched APAC team left in the intake queue. Control: MQLs
put back in the queue, which routing must re-own before any alert (`alerts_for_rerouted` 0). Each
round k: the leads group syncs (the org group when due, every 15 minutes), `run_routing` and
`run_unowned` run at T1 + k, then `deliver_due` (the DAG's budget) sends the outbox through the
Slack and SMTP stand-ins, all in that order in one round. A round's simulated time runs on from
T1 + k with the real time the round spends (sync, routing, alerting, sending), plus the waits of
the deliverer (Slack's one message per second per channel: a 429 and its Retry-After), which
are skipped rather than slept (`SkipClock`; the Slack stand-in runs on that clock, so its rate
limit holds and nothing else could happen during such a wait). A message accepted at clock
time c in round k was accepted at T1 + k + (c - the round's start on that clock).
`unowned_alert_p95_s`: per lead, from the instant it became unowned until the last of its first
alert's messages (every recipient, both channels) was accepted; p95 over the leads
(`unowned_alert_first_copy_p95_s`: until the first copy).

Why a simulated clock works here: the stand-in stamps a write with the given instant, and a
write without one strictly after the latest stamp so far (`OrgStore._stamp`), so with the
simulated clock ahead of the wall clock every stamp (events, routing's writes, their history
rows) is monotonic and the sync's watermarks see them all.

What it does not model: Airflow's own scheduling delays; lead_routing and sla_monitor are
separate DAGs, so in production the deliver task may pass before alert_unowned has queued, and
the message waits for the next minute (up to 60 s more than measured here).

Context: `deactivated_owner_alert_s`: a rep (not in the rotation) deactivated in the CRM at a
random instant; their SAL leads become unowned then, but the store learns it only from the org
group's sync (every 15 minutes), so this one is bounded by that cadence, not by the router.
`minute_*`: wall seconds each simulated minute's sync and routing + alerting took with the
burst's leads in the store (they read every open lead each minute).

Run: ``.venv/bin/python bench/routing.py`` (about two minutes on two cores; `--leads`, `--minutes`,
`--unowned`, `--seed` change the sizes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import email.policy
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

import sqlalchemy as sa  # noqa: E402

from leadsla.crm import mapping as mapping_mod  # noqa: E402
from leadsla.crm import sync  # noqa: E402
from leadsla.crm.salesforce import SalesforceClient  # noqa: E402
from leadsla.notify.delivery import DEFAULT_BUDGET, deliver_due  # noqa: E402
from leadsla.store import open_store, schema  # noqa: E402
from leadsla.store.audit import AuditContext  # noqa: E402
from sandbox import salesforce_api, slack_api  # noqa: E402
from sandbox.slack_api import SlackSandbox  # noqa: E402
from sandbox.smtp_sink import SmtpSink  # noqa: E402

POLICY_FILE = ROOT / "include" / "config" / "sla_policy.yaml"
ROUTE_CTX = AuditContext(dag_id="lead_routing", run_id="bench", task_id="route", try_number=1)
UNOWNED_CTX = AuditContext(dag_id="lead_routing", run_id="bench", task_id="alert_unowned", try_number=1)
DELIVER_CTX = AuditContext(dag_id="sla_monitor", run_id="bench", task_id="deliver", try_number=1)
AMERICAS = ["US"] * 9 + ["CA", "BR", "MX"]
EMEA = ["GB", "GB", "DE", "FR", "NL", "IE", "ES", "IT"]
FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com"]

# (key, first, last, team, capacity (None: default 1), senior, flags)
REPS = [
    ("am01", "Alma", "One", "SDR Americas", 1, False, ""),
    ("am02", "Abe", "Two", "SDR Americas", None, False, ""),
    ("am03", "Ada", "Three", "SDR Americas", 2, False, ""),
    ("am04", "Ari", "Four", "SDR Americas", 1.5, False, ""),
    ("am05", "Ava", "Five", "SDR Americas", 3, True, ""),
    ("am06", "Axel", "Six", "SDR Americas", 1, True, ""),
    ("am07", "Amy", "Seven", "SDR Americas", 2, False, "ooo"),
    ("am08", "Al", "Eight", "SDR Americas", 1, False, "inactive"),
    ("am09", "Ann", "Nine", "SDR Americas", 2, False, "absent"),
    ("am10", "Abby", "Ten", "SDR Americas", 0, False, ""),
    ("em01", "Ebba", "One", "SDR EMEA", 1, False, ""),
    ("em02", "Emil", "Two", "SDR EMEA", 2, False, ""),
    ("em03", "Ella", "Three", "SDR EMEA", 0.5, False, ""),
    ("em04", "Enzo", "Four", "SDR EMEA", 1.5, False, ""),
    ("em05", "Eli", "Five", "SDR EMEA", 1, False, "ooo"),
    ("ap01", "Aiko", "One", "SDR APAC", None, False, ""),
    ("ap02", "Arjun", "Two", "SDR APAC", None, False, ""),
]
MANAGERS = {
    "SDR Americas": ("Mia", "Manager"),
    "SDR EMEA": ("Erik", "Manager"),
    "SDR APAC": ("Asha", "Manager"),
}
TEAM_KEY = {"SDR Americas": "sdr_east", "SDR EMEA": "sdr_emea", "SDR APAC": "sdr_apac"}


def _email(first: str, last: str) -> str:
    return f"{first}.{last}@example.com".lower()


def _user(first: str, last: str, team: str | None, **extra) -> dict:
    return {
        "FirstName": first,
        "LastName": last,
        "Email": _email(first, last),
        "Username": f"{first}.{last}@acme.example".lower(),
        "IsActive": True,
        "TimeZoneSidKey": "America/New_York",
        **({"Team__c": team} if team else {}),
        **extra,
    }


class SkipClock:
    """The wall clock, plus the waits the deliverer skipped.

    In a round, once delivery starts, nothing else runs: when the deliverer would sleep (a Slack
    429's Retry-After, a row falling due), nobody could do anything before it wakes, so the clock
    jumps instead. The Slack stand-in runs on this clock too (its one-message-per-second limit
    and its acceptance stamps), so a retry after a skipped second is as welcome as after a real
    one, and the measured latency includes every wait.
    """

    def __init__(self) -> None:
        self.skipped = 0.0
        self.jumps: list[tuple[float, float]] = []  # (wall clock, skipped so far) after each jump

    def time(self) -> float:
        return time.time() + self.skipped

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.skipped += seconds
            self.jumps.append((time.time(), self.skipped))

    def of_wall(self, wall: float) -> float:
        """A wall-clock instant (a file's mtime) on this clock."""
        return wall + next((skipped for at, skipped in reversed(self.jumps) if at <= wall), 0.0)


class CountingClient(SalesforceClient):
    """The real client, counting composite writes (and their records) and queries."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[int] = []
        self.queries = 0

    def update_records(self, object_name, records, *, if_unmodified_since):
        self.writes.append(len(records))
        return super().update_records(object_name, records, if_unmodified_since=if_unmodified_since)

    def query_pages(self, soql, *, include_deleted=False):
        self.queries += 1
        return super().query_pages(soql, include_deleted=include_deleted)


class Org:
    """What the bench seeded, by role, to check the outcome against (not against the router)."""

    def __init__(self, store, rng: random.Random, leads: int, now: dt.datetime) -> None:
        self.store, self.rng, self.now = store, rng, now
        sdr, senior = store.bulk_insert("UserRole", [{"Name": "SDR"}, {"Name": "Senior SDR"}])
        self.managers = dict(
            zip(
                MANAGERS,
                store.bulk_insert("User", [_user(f, la, team) for team, (f, la) in MANAGERS.items()]),
                strict=True,
            )
        )
        rows = []
        for _key, first, last, team, _cap, is_senior, flags in REPS:
            rows.append(
                _user(
                    first,
                    last,
                    team,
                    ManagerId=self.managers[team],
                    UserRoleId=senior if is_senior else sdr,
                    IsActive="inactive" not in flags,
                    Out_Of_Office__c="ooo" in flags,
                )
            )
        self.rep = dict(zip([r[0] for r in REPS], store.bulk_insert("User", rows), strict=True))
        self.spec = {r[0]: r for r in REPS}
        self.aes = store.bulk_insert("User", [_user(f"Acct{n}", "Exec", None) for n in range(6)])
        # The rep deactivated in phase 2 (SDR Americas, capacity 0: owns SAL leads, takes no new ones).
        self.leaver = self.rep["am10"]
        self.intake, self.breached = store.bulk_insert(
            "Group",
            [
                {"Name": "Lead Intake", "DeveloperName": "Lead_Intake", "Type": "Queue"},
                {"Name": "Breached SLA", "DeveloperName": "Breached_SLA", "Type": "Queue"},
            ],
        )
        self._accounts()
        self._open_leads()
        self._burst(leads)
        self._held()

    # --- seeds ------------------------------------------------------------------------------------
    def _accounts(self) -> None:
        kinds = ["customer"] * 120 + ["open opportunity"] * 80 + ["lost"] * 100
        names = [f"Northwind {n} Systems" for n in range(len(kinds))]
        ids = self.store.bulk_insert(
            "Account",
            [
                {
                    "Name": name + self.rng.choice([" Inc", " GmbH", " Ltd", ""]),
                    "Website": f"https://www.northwind{n}.example",
                    "OwnerId": self.aes[n % len(self.aes)],
                }
                for n, name in enumerate(names)
            ],
        )
        stage = {"customer": "Closed Won", "open opportunity": "Negotiation/Review", "lost": "Closed Lost"}
        self.store.bulk_insert(
            "Opportunity",
            [
                {
                    "Name": f"{names[n]} deal",
                    "AccountId": ids[n],
                    "StageName": stage[kind],
                    "OwnerId": self.aes[n % len(self.aes)],
                    "CloseDate": "2026-10-01",
                }
                for n, kind in enumerate(kinds)
            ],
        )
        self.accounts = [(n, names[n], self.aes[n % len(self.aes)], kind) for n, kind in enumerate(kinds)]

    def _lead(self, n: int, country: str, **extra) -> dict:
        created = self.now - dt.timedelta(minutes=10) + dt.timedelta(milliseconds=40 * n)
        return {
            "LastName": f"Lead {n}",
            "Company": f"Prospect {n} Ltd",
            "Email": f"lead{n}@prospect{n}.example",
            "Status": "MQL",
            "OwnerId": self.intake,
            "LeadSource": "Web",
            "Country": country,
            "Lead_Score__c": float(self.rng.randint(10, 79)),
            "CreatedDate": created,
            "SystemModstamp": created,
            "LastModifiedDate": created,
            **extra,
        }

    def _open_leads(self) -> None:
        """SAL leads reps already work (duplicates match them; phase 2 takes their owners away)."""
        owners = [self.rep[k] for k in ("am01", "am02", "am03", "am04", "em01", "em02")]
        long_ago = self.now - dt.timedelta(days=2)
        rows, self.sal_owner = [], {}
        for n in range(400):
            owner = self.leaver if n < 6 else owners[n % len(owners)]
            country = "US" if owner == self.leaver or owners.index(owner) < 4 else "GB"
            rows.append(
                {
                    **self._lead(-1 - n, country, Status="SAL", OwnerId=owner),
                    "LastName": f"Open {n}",
                    "Email": f"open{n}@customer{n}.example",
                    "Company": f"Open {n} Ltd",
                    "CreatedDate": long_ago,
                    "SystemModstamp": long_ago,
                    "LastModifiedDate": long_ago,
                }
            )
        ids = self.store.bulk_insert("Lead", rows)
        self.sal_owner = {lid: row["OwnerId"] for lid, row in zip(ids, rows, strict=True)}
        self.sal_email = {lid: row["Email"] for lid, row in zip(ids, rows, strict=True)}
        self.leaver_leads = ids[:6]
        self.sal_free = ids[6:]  # phase 2 takes owners away from these

    def _burst(self, count: int) -> None:
        rng = self.rng
        kept = [a for a in self.accounts if a[3] != "lost"]
        lost = [a for a in self.accounts if a[3] == "lost"]
        dup_of = list(self.sal_free[200:])  # leave the first 200 for phase 2
        rows, self.expect_account, self.expect_dup, self.not_kept = [], {}, {}, set()
        kinds = []
        for n in range(count):
            draw = rng.random()
            country = rng.choice(AMERICAS) if rng.random() < 0.6 else rng.choice(EMEA)
            extra: dict = {}
            if rng.random() < 0.10:
                extra["Lead_Score__c"] = float(rng.randint(80, 99))
            if draw < 0.06:
                acct = rng.choice(kept)
                extra.update(Email=f"person{n}@northwind{acct[0]}.example", Company=f"Someone {n}")
                kinds.append(("domain", acct))
            elif draw < 0.09:
                acct = rng.choice(kept)
                spelled = rng.choice([acct[1].upper(), f"{acct[1]}, Inc.", f"{acct[1].lower()} LLC"])
                extra.update(Email=f"person{n}@{rng.choice(FREE_MAIL)}", Company=spelled)
                kinds.append(("name", acct))
            elif draw < 0.11:
                acct = rng.choice(lost)
                extra.update(Email=f"person{n}@northwind{acct[0]}.example", Company=acct[1])
                kinds.append(("lost", acct))
            elif draw < 0.13 and dup_of:
                other = dup_of.pop()
                extra.update(Email=self.sal_email[other].upper())
                kinds.append(("dup", other))
            else:
                kinds.append(("new", None))
            rows.append(self._lead(n, country, **extra))
        self.burst = self.store.bulk_insert("Lead", rows)
        for lead_id, (kind, what) in zip(self.burst, kinds, strict=True):
            if kind in ("domain", "name"):
                self.expect_account[lead_id] = what[2]
            elif kind == "dup":
                self.expect_dup[lead_id] = self.sal_owner[what]
            elif kind == "lost":
                self.not_kept.add(lead_id)

    def _held(self) -> None:
        """Leads routing must leave where they are: a running breach lock, or an owner a person chose."""
        lock = self.now + dt.timedelta(hours=20)
        base = len(self.burst)
        rows = []
        for n in range(150):
            owner = self.intake if n < 100 else self.rep["am08"]  # the inactive rep
            rows.append(self._lead(base + n, "US", OwnerId=owner, SLA_Lock_Until__c=lock))
        manual = ["am01", "am07", "em02", "em05", "am03"]  # am07 and em05 are out of office
        for n in range(150):
            rows.append(self._lead(base + 150 + n, "US", OwnerId=self.rep[manual[n % len(manual)]]))
        ids = self.store.bulk_insert("Lead", rows)
        self.held = {lid: row["OwnerId"] for lid, row in zip(ids, rows, strict=True)}

    # --- what the policy says ---------------------------------------------------------------------
    def policy_text(self, today: dt.date) -> str:
        capacity = {_email(first, last): cap for _k, first, last, _t, cap, _s, _f in REPS if cap is not None}
        am09 = self.spec["am09"]
        absence = (
            f"[{{user: {_email(am09[1], am09[2])}, from: {today - dt.timedelta(days=1)}, "
            f"to: {today + dt.timedelta(days=3)}}}]"
        )
        text = POLICY_FILE.read_text()
        for old, new in (
            (
                "    capacity: {}",
                "    capacity: {" + ", ".join(f"{k}: {v}" for k, v in capacity.items()) + "}",
            ),
            ("    absences: []", f"    absences: {absence}"),
        ):
            if old not in text:
                raise SystemExit(f"the shipped policy has no {old.strip()!r} line to replace")
            text = text.replace(old, new)
        return text

    def weighted_shares(self) -> dict[str, dict[str, float]]:
        """team -> rep user id -> the share of its round-robin leads the policy's weights give."""
        shares: dict[str, dict[str, float]] = {}
        for key, _first, _last, team, cap, _senior, flags in REPS:
            weight = 1.0 if cap is None else float(cap)
            if flags or weight <= 0 or TEAM_KEY[team] == "sdr_apac":
                continue
            shares.setdefault(TEAM_KEY[team], {})[self.rep[key]] = weight
        return {
            team: {rep: w / sum(weights.values()) for rep, w in weights.items()}
            for team, weights in shares.items()
        }


def _sync(client, engine, mapping, now: dt.datetime, *groups: str, force: bool = False) -> None:
    for group in groups:
        summary = sync.sync_group(client, engine, mapping, group, now=now, force=force)
        if summary.status not in ("success", "not_due"):
            raise SystemExit(f"sync {group}: {summary.status} {summary.message}")


def _share_deviation(org: Org, crm: dict[str, dict]) -> tuple[float, float, dict]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for lead_id in org.burst:
        row = crm[lead_id]
        rule = row.get("Routing_Rule__c") or ""
        if rule.startswith("territory:americas"):
            counts["sdr_east"][row["OwnerId"]] += 1
        elif rule.startswith("territory:emea"):
            counts["sdr_emea"][row["OwnerId"]] += 1
    worst_abs = worst_rel = 0.0
    detail = {}
    for team, expected in org.weighted_shares().items():
        total = sum(counts[team].values())
        outsiders = set(counts[team]) - set(expected)
        if outsiders:  # a round-robin lead went to someone who may not take leads
            worst_abs = worst_rel = 1.0
        for rep, share in expected.items():
            got = counts[team][rep] / total if total else 0.0
            worst_abs = max(worst_abs, abs(got - share))
            worst_rel = max(worst_rel, abs(got - share) / share)
        detail[team] = {"round_robin_leads": total, "reps": len(expected), "outside_rotation": len(outsiders)}
    return worst_abs, worst_rel, detail


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _p95(values: list[float]) -> float | None:
    values = sorted(values)
    return round(values[int(0.95 * (len(values) - 1))], 1) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=25, help="simulated minutes leads become unowned in")
    parser.add_argument("--unowned", type=int, default=60, help="leads made unowned in those minutes")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    # Airflow's structlog writes hook logs to stdout; keep stdout for the one JSON line.
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    for name in ("mail.log", "leadsla", "slack_sdk", "airflow", "simple_salesforce"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="leadsla-bench-routing-"))
    running = salesforce_api.start(work / "salesforce", daily_limit=10_000_000)
    slack = SlackSandbox(data_dir=work / "slack").start()  # Slack's 1 message/s per channel holds
    sink = SmtpSink(work / "mail").start()
    os.environ.update(
        REQUESTS_CA_BUNDLE=str(running.ca_path),
        AIRFLOW_CONN_SALESFORCE_DEFAULT=running.connection_json(),
        AIRFLOW_CONN_SLACK_API_DEFAULT=json.dumps(
            {
                "conn_type": "slack",
                "password": "xoxb-bench",
                "extra": {"base_url": slack.base_url, "timeout": 10},
            }
        ),
        AIRFLOW_CONN_SMTP_DEFAULT=json.dumps(
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
        ),
    )
    try:
        result = run(args, rng, work, running, slack, sink)
    finally:
        slack.stop()
        sink.stop()
        running.stop()
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()
    os.dup2(real_stdout, 1)
    print(json.dumps(result), flush=True)


def run(args, rng: random.Random, work: Path, running, slack, sink) -> dict:
    from leadsla.tasks.routing import run_routing

    started_all = time.perf_counter()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    org = Org(running.store, rng, args.leads, now)
    policy_path = work / "sla_policy.yaml"
    policy_path.write_text(org.policy_text(now.date()))
    os.environ["LEADSLA_POLICY_PATH"] = str(policy_path)
    engine = open_store(f"sqlite:///{work / 'store.db'}")
    mapping = mapping_mod.load()
    client = CountingClient(timeout=30)
    seeded_s = time.perf_counter() - started_all

    # ---- phase 1: the burst ------------------------------------------------------------------------
    t = time.perf_counter()
    _sync(client, engine, mapping, dt.datetime.now(dt.UTC), "org", "leads", force=True)
    sync_s = time.perf_counter() - t
    calls_before, writes_before, queries_before = running.state.api_used, len(client.writes), client.queries
    t = time.perf_counter()
    summary = run_routing(engine, dt.datetime.now(dt.UTC), ROUTE_CTX, client=client)
    routing_s = time.perf_counter() - t
    api_calls = running.state.api_used - calls_before
    writes = client.writes[writes_before:]
    queries = client.queries - queries_before
    crm = running.store.get_many([*org.burst, *org.held])
    with engine.connect() as conn:
        routed_ids = set(
            conn.execute(
                sa.select(schema.audit.c.record_id).where(schema.audit.c.event == "routing")
            ).scalars()
        )
    reason_missing = sum(1 for lid in routed_ids if not (crm.get(lid) or {}).get("Routing_Reason__c"))
    left_in_intake = sum(1 for lid in org.burst if crm[lid]["OwnerId"] == org.intake)
    suppression_errors = sum(1 for lid, owner in org.expect_account.items() if crm[lid]["OwnerId"] != owner)
    false_suppressions = sum(
        1 for lid in org.not_kept if (crm[lid].get("Routing_Rule__c") or "").startswith("suppression")
    )
    duplicate_errors = sum(1 for lid, owner in org.expect_dup.items() if crm[lid]["OwnerId"] != owner)
    locked_moved = sum(
        1
        for lid, owner in org.held.items()
        if crm[lid]["OwnerId"] != owner or crm[lid].get("Routing_Reason__c")
    )
    share_abs, share_rel, share_detail = _share_deviation(org, crm)
    print(f"burst: {summary} in {routing_s:.1f} s, {api_calls} calls", file=sys.stderr, flush=True)

    # ---- phase 2: a simulated one-minute schedule --------------------------------------------------
    unowned = _phase_two(args, rng, org, running, slack, sink, engine, mapping, client)

    engine.dispose()
    return {
        "leads_routed": len(routed_ids),
        "routing_s": round(routing_s, 1),
        "api_calls": api_calls,
        "reason_missing": reason_missing,
        "suppression_errors": suppression_errors,
        "max_share_deviation": round(share_abs, 4),
        "locked_moved": locked_moved,
        "unowned_alert_p95_s": unowned.pop("unowned_alert_p95_s"),
        # context
        "burst_leads": len(org.burst),
        "left_unrouted": left_in_intake,
        "by_rule": summary.get("by_rule"),
        "composite_writes": len(writes),
        "records_per_write": round(sum(writes) / len(writes), 1) if writes else None,
        "soql_queries": queries,
        "leads_per_s": round(len(routed_ids) / routing_s, 1) if routing_s else None,
        "max_share_deviation_relative": round(share_rel, 4),
        "suppression_leads": len(org.expect_account),
        "false_suppressions": false_suppressions,
        "duplicate_leads": len(org.expect_dup),
        "duplicate_errors": duplicate_errors,
        "held_leads": len(org.held),
        "reps_in_rotation": sum(len(s) for s in org.weighted_shares().values()),
        "weights": {
            team: sorted(_weight_of(org, rep) for rep in shares)
            for team, shares in org.weighted_shares().items()
        },
        "rotation": share_detail,
        "score_tiers": {
            "hot": {
                "min": 80,
                "roles": ["Senior SDR"],
                "leads": sum(
                    1 for lid in org.burst if (crm[lid].get("Routing_Rule__c") or "").endswith("/hot")
                ),
            }
        },
        **unowned,
        "sync_before_routing_s": round(sync_s, 1),
        "seed_s": round(seeded_s, 1),
        "total_s": round(time.perf_counter() - started_all, 1),
    }


def _weight_of(org: Org, rep_id: str) -> float:
    key = next(k for k, v in org.rep.items() if v == rep_id)
    cap = org.spec[key][4]
    return 1.0 if cap is None else float(cap)


def _phase_two(args, rng, org, running, slack, sink, engine, mapping, client) -> dict:
    from leadsla.tasks.routing import run_routing, run_unowned

    store = running.store
    by_manager = org.managers["SDR Americas"]
    clock = SkipClock()
    slack_api.time = clock  # the stand-in's rate limit and acceptance stamps run on the same clock
    # Who the alerts reach in Slack: the managers (DMs) and RevOps' channel.
    slack.add_users([{"email": _email(*MANAGERS[team])} for team in MANAGERS])
    slack.add_channel("#revops", "revops")
    t1 = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)
    span = args.minutes * 60

    def instant() -> dt.datetime:
        return t1 + dt.timedelta(seconds=rng.uniform(0, span))

    events: list[tuple[dt.datetime, str, str | None]] = []  # (at, kind, lead id or None)
    free = list(org.sal_free[:200])
    rng.shuffle(free)
    n_queue = round(args.unowned * 0.4)
    n_inactive = round(args.unowned * 0.25)
    n_nowhere = round(args.unowned * 0.25)
    n_apac = args.unowned - n_queue - n_inactive - n_nowhere
    events += [(instant(), "sal_to_queue", free.pop()) for _ in range(n_queue)]
    events += [(instant(), "sal_to_inactive", free.pop()) for _ in range(n_inactive)]
    events += [(instant(), "new_no_territory", None) for _ in range(n_nowhere)]
    events += [(instant(), "new_watched_team", None) for _ in range(n_apac)]
    back = [lid for lid in org.burst if lid not in org.expect_account and lid not in org.expect_dup]
    events += [(instant(), "mql_to_queue", lid) for lid in rng.sample(back, max(10, args.unowned // 3))]
    deactivated_at = t1 + dt.timedelta(seconds=rng.uniform(60, min(span, 600)))
    events.append((deactivated_at, "deactivate", org.leaver))
    events.sort(key=lambda e: e[0])

    became: dict[str, tuple[dt.datetime, str]] = {}  # lead id -> (unowned since, kind)
    anchors: list[tuple[float, dt.datetime]] = []  # (skip clock, simulated time) at each round's start
    inactive = org.rep["am08"]
    counter = 0
    k = 0
    deliveries = Counter()
    work_s: list[tuple[float, float]] = []  # per round: (sync, routing + unowned) wall seconds
    while True:
        k += 1
        at = t1 + dt.timedelta(minutes=k)
        while events and events[0][0] <= at:
            when, kind, lead = events.pop(0)
            counter += 1
            if kind == "sal_to_queue":
                store.update("Lead", lead, {"OwnerId": org.intake}, now=when, user_id=by_manager)
            elif kind == "sal_to_inactive":
                store.update("Lead", lead, {"OwnerId": inactive}, now=when, user_id=by_manager)
            elif kind == "mql_to_queue":
                store.update("Lead", lead, {"OwnerId": org.intake}, now=when, user_id=by_manager)
            elif kind == "deactivate":
                store.update("User", lead, {"IsActive": False}, now=when)
                for lid in org.leaver_leads:
                    became[lid] = (when, kind)
                continue
            else:
                country = (
                    rng.choice(["ZA", "KE", "AR"]) if kind == "new_no_territory" else rng.choice(["AU", "SG"])
                )
                lead = store.create(
                    "Lead",
                    {
                        "LastName": f"Late {counter}",
                        "Company": f"Late {counter} Pty",
                        "Email": f"late{counter}@late{counter}.example",
                        "Status": "MQL",
                        "OwnerId": org.intake,
                        "LeadSource": "Web",
                        "Country": country,
                    },
                    now=when,
                )["Id"]
            became[lead] = (when, kind)
        wall0, wall_perf = clock.time(), time.perf_counter()
        anchors.append((wall0, at))
        _sync(client, engine, mapping, at, "leads")
        _sync(client, engine, mapping, at, "org")  # when due (every 15 minutes)
        t_route = time.perf_counter()
        run_routing(engine, at, ROUTE_CTX, client=client)
        run_unowned(engine, at, UNOWNED_CTX)
        work_s.append((t_route - wall_perf, time.perf_counter() - t_route))
        sent = deliver_due(
            engine,
            at + dt.timedelta(seconds=clock.time() - wall0),
            DELIVER_CTX,
            budget=DEFAULT_BUDGET,
            monotonic=clock.monotonic,
            sleep=clock.sleep,
        )
        deliveries.update({key: n for key, n in sent.items() if n})
        with engine.connect() as conn:
            pending = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.outbox)
                .where(schema.outbox.c.status != "delivered")
            ).scalar()
        print(
            f"minute {k}: {len(became)} made unowned so far, {pending} messages pending, "
            f"round {time.perf_counter() - wall_perf:.1f} s (+{clock.skipped:.0f} s skipped in all)",
            file=sys.stderr,
            flush=True,
        )
        done = _first_alerts(engine, became)
        waiting_on = [lid for lid, (_, kind) in became.items() if kind != "mql_to_queue" and lid not in done]
        if k * 60 >= span and not events and not waiting_on and not pending:
            break
        if k * 60 >= span + 20 * 60:
            break  # twenty minutes past the last event: whatever is missing is reported missing

    def simulated(at: float) -> dt.datetime:
        """Simulated time of an instant on the skip clock."""
        start, sim = next((a for a in reversed(anchors) if a[0] <= at), anchors[0])
        return sim + dt.timedelta(seconds=at - start)

    accepted: dict[str, list[dt.datetime]] = defaultdict(list)
    for m in slack.messages():
        if m.get("metadata"):
            key = m["metadata"]["event_payload"]["idempotency_key"]
            accepted[key].append(simulated(m["received_at"]))  # stamped on the skip clock
    for path in sink.directory.glob("*.eml"):
        with path.open("rb") as fh:
            headers = email.parser.BytesHeaderParser(policy=email.policy.default).parse(fh)
        key = str(headers["X-LeadSLA-Key"]).strip()
        accepted[key].append(simulated(clock.of_wall(path.stat().st_mtime)))  # a file's time is wall time
    keys = _first_alerts(engine, became)
    by_kind, first_by_kind = defaultdict(list), defaultdict(list)
    missing = 0
    for lead, (since, kind) in became.items():
        if kind == "mql_to_queue":
            continue
        lead_keys = keys.get(lead, [])
        if not lead_keys or any(not accepted.get(key) for key in lead_keys):
            missing += 1
            continue
        times = [min(accepted[key]) for key in lead_keys]
        by_kind[kind].append((max(times) - since).total_seconds())
        first_by_kind[kind].append((min(times) - since).total_seconds())
    rerouted = [lid for lid, (_, kind) in became.items() if kind == "mql_to_queue"]
    crm = store.get_many(rerouted)
    duplicates = sum(len(v) - 1 for v in accepted.values() if len(v) > 1)
    deactivated = by_kind.pop("deactivate", [])
    first_by_kind.pop("deactivate", None)
    return {
        "unowned_alert_p95_s": _p95([v for vs in by_kind.values() for v in vs]),
        "unowned_alert_first_copy_p95_s": _p95([v for vs in first_by_kind.values() for v in vs]),
        "unowned_alert_max_s": _rounded(max((v for vs in by_kind.values() for v in vs), default=None)),
        "unowned_alert_p95_s_by_kind": {kind: _p95(vs) for kind, vs in sorted(by_kind.items())},
        "unowned_leads": sum(1 for _, kind in became.values() if kind not in ("mql_to_queue", "deactivate")),
        "unowned_alerts_missing": missing,
        "alert_messages_duplicated": duplicates,
        "rerouted_leads": len(rerouted),
        "rerouted_not_owned": sum(1 for lid in rerouted if crm[lid]["OwnerId"] == org.intake),
        "alerts_for_rerouted": sum(1 for lid in rerouted if keys.get(lid)),
        "deactivated_owner_alert_s": _rounded(max(deactivated, default=None)),
        "unowned_after_s": 120,
        "simulated_minutes": k,
        # what each minute's run costs with the burst's leads in the store (wall seconds)
        "minute_sync_s_max": round(max(w[0] for w in work_s), 2),
        "minute_route_and_alert_s_median": round(sorted(w[1] for w in work_s)[len(work_s) // 2], 2),
        "minute_route_and_alert_s_max": round(max(w[1] for w in work_s), 2),
        "deliver_results": dict(deliveries),
    }


def _first_alerts(engine, became) -> dict[str, list[str]]:
    """Lead id -> the idempotency keys of its first unowned alert (every recipient and channel)."""
    o = schema.outbox
    found: dict[str, list[str]] = defaultdict(list)
    with engine.connect() as conn:
        for key, payload in conn.execute(
            sa.select(o.c.idempotency_key, o.c.payload).where(o.c.checkpoint == "unowned:0")
        ):
            subject = (payload or {}).get("subject")
            if subject in became:
                found[subject].append(key)
    return found


if __name__ == "__main__":
    main()
