"""Test data for reports and the War Room: a small builder for hand-checked cases and a seeded
generator of a realistic org (three teams, leads through MQL -> SAL -> SQL -> Opportunity or
Recycled/Disqualified with reasons, activities, clocks in every state, audit rows).

`Builder.write(engine)` inserts into the store's real tables; `Builder.frames()` gives the same
rows as `ReportData` without a store. The `through_store` fixture is how metric tests read them:
written to a fresh store and loaded back by `leadsla.reports.data.load`, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

UTC = dt.UTC
STATUS_OF_STAGE = {
    "MQL": "MQL",
    "SAL": "SAL",
    "SQL": "SQL",
    "Opportunity": "Converted",
    "Recycled": "Recycled",
    "Disqualified": "Disqualified",
}


def t(text: str) -> dt.datetime:
    """'2026-11-02 14:00' as UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class Builder:
    leads: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    activities: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    clocks: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    queues: list[dict] = field(default_factory=list)

    def user(
        self, user_id: str, name: str, team: str, role: str = "SDR", manager_id: str | None = None
    ) -> Builder:
        self.users.append(
            {
                "user_id": user_id,
                "name": name,
                "email": f"{user_id.lower()}@example.com",
                "manager_id": manager_id,
                "is_active": True,
                "timezone": "America/New_York",
                "team": team,
                "role": role,
                "out_of_office": False,
                "fields": {},
            }
        )
        return self

    def lead(
        self,
        record_id: str,
        *,
        owner: str | None = None,
        source: str = "Web",
        lead_type: str = "Inbound",
        tier: str = "SMB",
        campaign: str | None = None,
        reason: str | None = None,
        stages: dict[str, dt.datetime] | None = None,
        name: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Builder:
        """A lead; `fields` are raw CRM fields beside the campaign (e.g. ``{"Lead_Score__c": 90}``)."""
        stages = stages or {}
        last = max(stages, key=stages.get) if stages else "MQL"
        created = min(stages.values()) if stages else t("2026-01-01 00:00")
        self.leads.append(
            {
                "object_type": "Lead",
                "record_id": record_id,
                "name": name or f"Lead {record_id}",
                "company": f"Company {record_id}",
                "status": STATUS_OF_STAGE[last],
                "owner_id": owner,
                "lead_source": source,
                "lead_type": lead_type,
                "account_tier": tier,
                "is_converted": "Opportunity" in stages,
                "rejection_reason": reason,
                "created_at": created,
                "modified_at": created,
                "is_deleted": False,
                "fields": {**({"Campaign__c": campaign} if campaign else {}), **(fields or {})},
                "synced_at": created,
            }
        )
        prev = None
        for stage, at in sorted(stages.items(), key=lambda kv: kv[1]):
            self.history.append(
                {
                    "history_id": f"H{len(self.history):08d}",
                    "object_type": "Lead",
                    "record_id": record_id,
                    "field": "Status",
                    "old_value": prev,
                    "new_value": STATUS_OF_STAGE[stage],
                    "changed_by": owner,
                    "changed_at": at,
                }
            )
            prev = STATUS_OF_STAGE[stage]
        return self

    def queue(self, queue_id: str, name: str) -> Builder:
        self.queues.append({"queue_id": queue_id, "name": name, "developer_name": name.replace(" ", "_")})
        return self

    def owner_change(
        self,
        lead: str,
        at: dt.datetime,
        old: str | None,
        new: str,
        by: str,
        *,
        names: tuple[str, str] | None = None,
    ) -> Builder:
        """A LeadHistory owner change as the store keeps it: the id row (field ``OwnerId``) and, when
        `names` (old, new) are given, Salesforce's second row with the names (field ``Owner``)."""
        rows = [("OwnerId", old, new)] + ([("Owner", *names)] if names else [])
        for fld, old_value, new_value in rows:
            self.history.append(
                {
                    "history_id": f"H{len(self.history):08d}",
                    "object_type": "Lead",
                    "record_id": lead,
                    "field": fld,
                    "old_value": old_value,
                    "new_value": new_value,
                    "changed_by": by,
                    "changed_at": at,
                }
            )
        return self

    def activity(self, lead: str, at: dt.datetime, owner: str | None = None) -> Builder:
        self.activities.append(
            {
                "activity_id": f"00T{len(self.activities):07d}",
                "kind": "Task",
                "who_id": lead,
                "what_id": None,
                "owner_id": owner,
                "type": "Call",
                "subtype": "Task",
                "subject": "Call",
                "created_at": at,
                "is_deleted": False,
                "synced_at": at,
            }
        )
        return self

    def clock(
        self,
        lead: str,
        start: dt.datetime,
        *,
        target_h: float,
        elapsed_h: float,
        owner: str | None,
        team: str | None,
        tier: str = "standard",
        stopped_at: dt.datetime | None = None,
        breached_at: dt.datetime | None = None,
        now: dt.datetime | None = None,
        policy_version: str = "2026.11-tiered",
        accountable: str | None = None,
        accountable_team: str | None = None,
        handed_on: bool = False,
        sla_id: str = "sales_touch",
        object_type: str = "Lead",
    ) -> Builder:
        """A clock row of SLA `sla_id` on a record of `object_type`; `accountable`/`accountable_team`
        (who answers for it: the owner when it breached, as the engine writes it) default to
        `owner`/`team`. A stopped clock is met by a touch, or `handed_on` (the lead left the watched
        state, e.g. SAL -> SQL)."""
        target, elapsed = int(target_h * 3600), int(elapsed_h * 3600)
        if stopped_at is not None:
            ended = "handed_on" if handed_on else "met"
            state = f"{ended}_late" if breached_at is not None else ended
        else:
            state = "breached" if breached_at is not None else "running"
        pct = elapsed / target * 100
        colour = "red" if breached_at is not None else ("yellow" if pct >= 75 else "green")
        self.clocks.append(
            {
                "sla_id": sla_id,
                "record_id": lead,
                "clock_start": start,
                "object_type": object_type,
                "policy_version": policy_version,
                "tier": tier,
                "calendar": "us_east",
                "target_seconds": target,
                "owner_id": owner,
                "team": team,
                "accountable_owner_id": owner if accountable is None else accountable,
                "accountable_team": team if accountable is None else accountable_team,
                "state": state,
                "elapsed_seconds": elapsed,
                "remaining_seconds": target - elapsed,
                "percent_elapsed": pct,
                "colour": colour,
                "deadline": breached_at
                or start + dt.timedelta(seconds=target - elapsed) + dt.timedelta(hours=elapsed_h),
                "stopped_at": stopped_at,
                "breached_at": breached_at,
                "critical": False,
                "next_checkpoint": None,
                "next_checkpoint_at": None,
                "evaluated_at": now or stopped_at or start,
            }
        )
        return self

    def opportunity(self, lead_id: str, opportunity_id: str, amount: float | None) -> Builder:
        """The Opportunity a converted lead became (`Amount` left out when `amount` is None)."""
        lead = next(r for r in self.leads if r["record_id"] == lead_id)
        lead["converted_opportunity_id"] = opportunity_id
        self.leads.append(
            {
                **lead,
                "object_type": "Opportunity",
                "record_id": opportunity_id,
                "status": "Qualification",
                "is_converted": None,
                "converted_opportunity_id": None,
                "fields": {} if amount is None else {"Amount": amount},
            }
        )
        return self

    def deal(
        self,
        opportunity_id: str,
        *,
        owner: str | None,
        created: dt.datetime,
        amount: float | None = None,
        changes: list[tuple[str, str, dt.datetime]] = (),
    ) -> Builder:
        """An Opportunity of its own (not from a lead) and its OpportunityFieldHistory: `changes` are
        (field, new value, at); its StageName is the last StageName change (Qualification without)."""
        stages = [v for f, v, _ in sorted(changes, key=lambda c: c[2]) if f == "StageName"]
        self.leads.append(
            {
                "object_type": "Opportunity",
                "record_id": opportunity_id,
                "name": f"Deal {opportunity_id}",
                "status": stages[-1] if stages else "Qualification",
                "owner_id": owner,
                "created_at": created,
                "modified_at": created,
                "is_deleted": False,
                "fields": {} if amount is None else {"Amount": amount},
                "synced_at": created,
            }
        )
        for fld, value, at in changes:
            self.history.append(
                {
                    "history_id": f"H{len(self.history):08d}",
                    "object_type": "Opportunity",
                    "record_id": opportunity_id,
                    "field": fld,
                    "old_value": None,
                    "new_value": value,
                    "changed_by": owner,
                    "changed_at": at,
                }
            )
        return self

    def event(self, event: str, at: dt.datetime, record_id: str | None = None, **kw: Any) -> Builder:
        row = {
            "event": event,
            "at": at,
            "recorded_at": at,
            "object_type": "Lead" if record_id else None,
            "record_id": record_id,
            "sla_id": kw.pop("sla_id", "sales_touch" if record_id else None),
            "clock_start": kw.pop("clock_start", None),
            "checkpoint": kw.pop("checkpoint", None),
            "actor": kw.pop("actor", None),
            "policy_version": kw.pop("policy_version", "2026.11-tiered"),
            "detail": kw.pop("detail", {}),
            "dag_id": kw.pop("dag_id", None),
            "run_id": kw.pop("run_id", None),
            "task_id": kw.pop("task_id", None),
            "try_number": kw.pop("try_number", None),
        }
        assert not kw, f"unknown audit fields {kw}"
        self.audit.append(row)
        return self

    def frames(self):
        """The rows as `ReportData`, exactly as `leadsla.reports.data.load` would read them."""
        from leadsla.reports.data import STAGE_OF_STATUS, ReportData

        leads = pd.DataFrame(
            [r for r in self.leads if r["object_type"] == "Lead"] or None,
            columns=[
                "record_id",
                "name",
                "owner_id",
                "lead_source",
                "lead_type",
                "account_tier",
                "status",
                "rejection_reason",
                "created_at",
                "fields",
            ],
        )
        leads["campaign"] = [f.get("Campaign__c") for f in leads["fields"]]
        leads = leads.drop(columns="fields")
        hist = pd.DataFrame(
            [h for h in self.history if h["field"] == "Status"],
            columns=["record_id", "new_value", "changed_at"],
        )
        hist["stage"] = hist["new_value"].map(STAGE_OF_STATUS)
        stages = (
            hist.sort_values("changed_at")
            .drop_duplicates(["record_id", "stage"])
            .rename(columns={"changed_at": "at"})[["record_id", "stage", "at"]]
            .reset_index(drop=True)
        )
        for df, cols in ((leads, ["created_at"]), (stages, ["at"])):
            for col in cols:
                df[col] = pd.to_datetime(df[col], utc=True)
        acts = pd.DataFrame(self.activities, columns=["activity_id", "who_id", "owner_id", "created_at"])
        acts["created_at"] = pd.to_datetime(acts["created_at"], utc=True)
        users = pd.DataFrame(self.users, columns=["user_id", "name", "team", "role", "is_active"])
        clocks = pd.DataFrame(self.clocks)
        for col in (
            "clock_start",
            "deadline",
            "stopped_at",
            "breached_at",
            "evaluated_at",
            "next_checkpoint_at",
        ):
            clocks[col] = (
                pd.to_datetime(clocks[col], utc=True)
                if len(clocks)
                else pd.Series([], dtype="datetime64[us, UTC]")
            )
        visits = pd.DataFrame(
            [a for a in self.audit if a["event"] == "war_room_visit"], columns=["actor", "at"]
        )
        visits["at"] = pd.to_datetime(visits["at"], utc=True)
        return ReportData(leads, stages, acts, users, clocks, visits)

    def write(self, engine: sa.Engine) -> None:
        """Insert every row into the store; audit rows through `store.audit.record_many`, the
        trail's only writer (it chains them), one call per run of rows with the same task run."""
        from leadsla.store import schema as s
        from leadsla.store.audit import AuditContext, record_many

        now = t("2026-01-01 00:00")
        runs = ("dag_id", "run_id", "task_id", "try_number")
        written_by_record_many = {*runs, "recorded_at"}
        with engine.begin() as conn:
            for table, rows in (
                (s.users, [dict(u, synced_at=now) for u in self.users]),
                (s.queues, [dict(q, synced_at=now) for q in self.queues]),
                (s.records, _same_keys(self.leads)),
                (s.field_history, self.history),
                (s.activities, self.activities),
                (s.clocks, self.clocks),
            ):
                for i in range(0, len(rows), 5000):
                    conn.execute(table.insert(), rows[i : i + 5000])
            for context, group in itertools.groupby(self.audit, key=lambda a: tuple(a[k] for k in runs)):
                entries = [{k: v for k, v in a.items() if k not in written_by_record_many} for a in group]
                record_many(conn, entries, context=AuditContext(*context))


def _same_keys(rows: list[dict]) -> list[dict]:
    """The rows with every key any of them has (None where missing): one executemany needs the
    same columns in every row, and an Opportunity row carries keys a lead row may not."""
    keys = dict.fromkeys(k for row in rows for k in row)
    return [{k: row.get(k) for k in keys} for row in rows]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def through_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[Builder], Any]]:
    """A function Builder -> ReportData that writes the builder into a fresh store and reads it back
    with `leadsla.reports.data.load` (keywords go to it), as reports do; each call gets its own store
    (the audit table is append-only, so a changed builder cannot be rewritten into the same one).
    Runs on SQLite and on the embedded PostgreSQL."""
    from leadsla.reports.data import load
    from leadsla.store import open_store
    from tests.conftest import _new_postgres_url

    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    engines: list[sa.Engine] = []

    def write_and_load(builder: Builder, **load_kw: Any):
        url = _new_postgres_url(server) if server else f"sqlite:///{tmp_path / f'store{len(engines)}.db'}"
        engines.append(open_store(url))
        builder.write(engines[-1])
        return load(engines[-1], **load_kw)

    yield write_and_load
    for engine in engines:
        engine.dispose()


TEAMS = {
    "sdr_east": ["Ava East", "Ben East", "Cy East", "Dee East"],
    "sdr_west": ["Eli West", "Fay West", "Gus West", "Hal West"],
    "sdr_emea": ["Ida Emea", "Jo Emea", "Kai Emea", "Lu Emea"],
}
SOURCES = [
    ("Web", "Inbound", 0.30),
    ("Webinar", "Webinar", 0.20),
    ("Content", "Content Download", 0.20),
    ("Event", "Event", 0.10),
    ("Chat", "Demo Request", 0.10),
    ("Partner", "Standard", 0.10),
]
CAMPAIGNS = ["Q4 Webinar Series", "Pricing Guide", "Spring Launch", "Partner Summit", "Brand Search"]
REASONS = ["No budget", "Wrong contact", "Not a fit", "Duplicate", "Student / personal"]


def generate(
    n_leads: int,
    *,
    seed: int = 7,
    start: dt.datetime = dt.datetime(2026, 10, 1, tzinfo=UTC),
    days: int = 120,
    slow_rep: str = "Dee East",
    now: dt.datetime | None = None,
) -> Builder:
    """A realistic org: 12 reps in three teams (+ managers), `n_leads` MQLs spread over `days` days.

    sdr_west misses its SLA on Monday mornings (a capacity problem: the whole team at the same
    hours); `slow_rep` is individually slow at normal load. Deterministic for a seed.
    """
    rnd = random.Random(seed)
    now = now or start + dt.timedelta(days=days)
    b = Builder()
    reps: list[tuple[str, str, str]] = []
    for ti, (team, names) in enumerate(TEAMS.items()):
        mgr = f"005M{ti:014d}"
        b.user(mgr, f"{team} Manager", team, role="SDR Manager")
        for ri, name in enumerate(names):
            uid = f"005R{ti:07d}{ri:07d}"
            b.user(uid, name, team, manager_id=mgr)
            reps.append((uid, name, team))
    b.user("005V00000000000001", "Vera VP", "leadership", role="VP Sales")
    b.user("005V00000000000002", "Vic VP", "leadership", role="VP Marketing")
    weights = [w for *_, w in SOURCES]
    for i in range(n_leads):
        lid = f"00Q{i:015d}"
        uid, name, team = reps[rnd.randrange(len(reps))]
        source, lead_type, _ = rnd.choices(SOURCES, weights)[0]
        mql = start + dt.timedelta(seconds=rnd.randrange(days * 86400))
        target_h = 4.0
        monday_morning = mql.weekday() == 0 and mql.hour < 18
        slow = name == slow_rep or (team == "sdr_west" and monday_morning)
        elapsed_h = rnd.uniform(3.0, 12.0) if slow and rnd.random() < 0.8 else rnd.uniform(0.1, 4.5)
        sal = mql + dt.timedelta(minutes=rnd.randrange(5, 240))
        stages = {"MQL": mql}
        reason = None
        fate = rnd.random()
        touched = sal + dt.timedelta(hours=elapsed_h * 2)
        never_touched = rnd.random() < 0.06
        if fate < 0.25:  # sales rejects it
            stages["SAL" if fate < 0.1 else "Recycled"] = sal
            if fate < 0.1:
                stages["Disqualified"] = touched + dt.timedelta(days=1)
            reason = rnd.choices(REASONS, [5, 3, 2, 1, 1])[0]
        else:
            stages["SAL"] = sal
            if fate > 0.45 and not never_touched:
                stages["SQL"] = touched + dt.timedelta(days=rnd.uniform(1, 10))
                if fate > 0.75:
                    stages["Opportunity"] = stages["SQL"] + dt.timedelta(days=rnd.uniform(2, 20))
        stages = {k: v for k, v in stages.items() if v < now}
        tier = rnd.choice(["SMB", "Mid-Market"])
        campaign = rnd.choice(CAMPAIGNS) if rnd.random() < 0.8 else None
        if not stages:  # not an MQL yet at `now`: the lead does not exist (same random draws either way)
            continue
        b.lead(
            lid,
            owner=uid,
            source=source,
            lead_type=lead_type,
            tier=tier,
            campaign=campaign,
            reason=reason,
            stages=stages,
            name=f"Lead {i} <{source}>",
        )
        if "SAL" in stages:
            done = touched if not never_touched and touched < now else None
            breached = sal + dt.timedelta(hours=target_h * 2) if elapsed_h > target_h else None
            if done is None and breached is None and (now - sal).total_seconds() > 2 * 86400:
                breached = sal + dt.timedelta(hours=target_h * 2)
            if breached is not None and breached >= now:
                breached = None
            b.clock(
                lid,
                sal,
                target_h=target_h,
                elapsed_h=min(elapsed_h, 99.0) if done else min(elapsed_h, target_h * 0.9),
                owner=uid,
                team=team,
                stopped_at=done,
                breached_at=breached,
                now=now,
            )
            b.event(
                "clock_start",
                sal,
                lid,
                clock_start=sal,
                actor="sales_touch.start",
                dag_id="sla_monitor",
                run_id=f"scheduled__{sal:%Y-%m-%dT%H:%M}",
                task_id="evaluate",
                try_number=1,
            )
            if done:
                b.activity(lid, done, uid)
                b.event(
                    "clock_stop",
                    done,
                    lid,
                    clock_start=sal,
                    actor="sales_touch.stop.activity_by_owner",
                    dag_id="sla_monitor",
                    run_id=f"scheduled__{done:%Y-%m-%dT%H:%M}",
                    task_id="evaluate",
                    try_number=1,
                )
            if breached:
                b.event(
                    "escalation",
                    breached,
                    lid,
                    clock_start=sal,
                    checkpoint="breach",
                    actor="sales_touch.breach",
                    detail={"reassign_to": "Breached SLA"},
                    dag_id="sla_monitor",
                    run_id=f"scheduled__{breached:%Y-%m-%dT%H:%M}",
                    task_id="escalate",
                    try_number=1,
                )
    for k in range(3):
        b.event("war_room_visit", start + dt.timedelta(days=3 + k), actor=f"005M{k:014d}")
    return b


def shipped_handoffs():
    """The shipped policy's SLAs as report sections (`reports.run.handoffs`), sales touch first."""
    from leadsla.policy import load_policy
    from leadsla.reports.run import handoffs

    return handoffs(load_policy(), "sales_touch")


#: The AE and CS teams of `add_handoffs` (team -> people), beside `generate`'s SDR teams.
HANDOFF_TEAMS = {"ae": ["Amy AE", "Bo AE", "Cal AE"], "cs": ["Cora CS", "Dan CS"]}
#: The business hours a day has in the demo calendars: elapsed business time -> calendar time.
DAY_HOURS = 8


def add_handoffs(b: Builder, *, seed: int = 11, now: dt.datetime | None = None) -> Builder:
    """Clocks of every handoff of the shipped policy beside `generate`'s sales touches: MQL
    acceptance on every lead, and on every converted lead's Opportunity (made here when the lead
    has none, most with an Amount) demo to proposal, then - when won - closed-won to CS kickoff and
    CS onboarding, each met or breached at random, with the StageName, CS_Kickoff_Date__c and
    Onboarding_Complete__c history the conversions read. Deterministic for a seed, and the same org
    whatever `now` is (each lead draws from its own generator, every draw made before `now` cuts):
    a past period reads the same from a store written earlier or later."""
    starts = [r["created_at"] for r in b.leads]
    now = now or (max(starts) + dt.timedelta(days=1) if starts else t("2026-12-01 00:00"))
    people: dict[str, list[str]] = {}
    for ti, (team, names) in enumerate(HANDOFF_TEAMS.items()):
        mgr = f"005N{ti:014d}"
        b.user(mgr, f"{team.upper()} Manager", team, role=f"{team.upper()} Manager")
        people[team] = []
        for ri, name in enumerate(names):
            uid = f"005P{ti:07d}{ri:07d}"
            b.user(uid, name, team, role=team.upper(), manager_id=mgr)
            people[team].append(uid)

    def clock(sla_id, record, obj, start, target_h, owner, team, slow=0.25, business=True):
        """A clock met in time or breached (and then met late or left open); business time runs
        DAY_HOURS a day."""
        late = rnd.random() < slow
        elapsed = target_h * (rnd.uniform(1.1, 2.5) if late else rnd.uniform(0.1, 0.95))
        if start >= now:
            return None
        per_hour = 24 / DAY_HOURS if business else 1.0
        ended = start + dt.timedelta(hours=elapsed * per_hour)
        breached = start + dt.timedelta(hours=target_h * per_hour) if late else None
        breached = breached if breached is not None and breached < now else None
        stopped = ended if ended < now else None
        b.clock(
            record,
            start,
            target_h=target_h,
            elapsed_h=elapsed if stopped else min(elapsed, target_h * 0.9) if breached is None else elapsed,
            owner=owner,
            team=team,
            stopped_at=stopped,
            breached_at=breached,
            now=now,
            sla_id=sla_id,
            object_type=obj,
        )
        return stopped

    by_lead = {r["record_id"]: r for r in b.leads if r["object_type"] == "Lead"}
    status_rows = [h for h in b.history if h["object_type"] == "Lead" and h["field"] == "Status"]
    first = {}
    for h in sorted(status_rows, key=lambda h: h["changed_at"]):
        first.setdefault((h["record_id"], h["new_value"]), h["changed_at"])
    for lead_id, lead in list(by_lead.items()):
        rnd = random.Random(f"{seed}:{lead_id}")
        mql = first.get((lead_id, "MQL"))
        if mql is not None:
            clock("mql_acceptance", lead_id, "Lead", mql, 8.0, lead["owner_id"], None, slow=0.2)
        no_amount, amount = rnd.random() < 0.2, float(rnd.randrange(5, 120) * 1000)
        ae, cs = rnd.choice(people["ae"]), rnd.choice(people["cs"])
        demo_days, closed_days, won = rnd.uniform(1, 5), rnd.uniform(1, 6), rnd.random() < 0.5
        if lead["status"] != "Converted":
            continue
        opp = lead.get("converted_opportunity_id")
        if opp is None:
            opp = f"006{lead_id[3:]}"
            b.opportunity(lead_id, opp, None if no_amount else amount)
        row = next(r for r in b.leads if r["record_id"] == opp)
        converted = first.get((lead_id, "Converted"), lead["created_at"])
        row["owner_id"] = ae
        demo = converted + dt.timedelta(days=demo_days)
        changes = [("StageName", "Demo Completed", demo)] if demo < now else []
        proposal = clock("demo_to_proposal", opp, "Opportunity", demo, 24.0, ae, "ae")
        if proposal is not None:
            changes.append(("StageName", "Proposal/Price Quote", proposal))
            closed = proposal + dt.timedelta(days=closed_days)
            if closed < now:
                changes.append(("StageName", "Closed Won" if won else "Closed Lost", closed))
                if won:
                    kickoff = clock("cs_kickoff", opp, "Opportunity", closed, 16.0, cs, "cs", slow=0.3)
                    if kickoff is not None:
                        changes.append(("CS_Kickoff_Date__c", f"{kickoff:%Y-%m-%d}", kickoff))
                        done = clock(
                            "cs_onboarding", opp, "Opportunity", kickoff, 14 * 24.0, cs, "cs", business=False
                        )
                        if done is not None:
                            changes.append(("Onboarding_Complete__c", "true", done))
        for fld, value, at in changes:
            b.history.append(
                {
                    "history_id": f"H{len(b.history):08d}",
                    "object_type": "Opportunity",
                    "record_id": opp,
                    "field": fld,
                    "old_value": None,
                    "new_value": value,
                    "changed_by": ae,
                    "changed_at": at,
                }
            )
        stages = [v for f, v, _ in changes if f == "StageName"]
        row["status"] = stages[-1] if stages else "Qualification"
    return b


def plant_cherry_picking(b: Builder, month: dt.datetime) -> Builder:
    """Two cases for the monthly review's cherry-picking audit, in the month starting at `month`, on
    `generate`'s org: Ava East takes a lead from the Lead Intake queue for herself, and a lead
    routed to Ben East is moved to Cy East by Cy three hours later."""
    queue, integration = "00G000000000001AAA", "005INTEGRATION0001"
    ava, ben, cy = (f"005R{0:07d}{ri:07d}" for ri in range(3))
    at = month + dt.timedelta(days=3, hours=14)
    b.queue(queue, "Lead Intake")
    taken, moved = "00QCHERRY000000001", "00QCHERRY000000002"
    b.lead(taken, owner=ava, name="Cherry <self-assigned>", stages={"MQL": at - dt.timedelta(hours=1)})
    b.owner_change(taken, at, queue, ava, ava, names=("Lead Intake", "Ava East"))
    b.lead(moved, owner=cy, name="Cherry <moved>", stages={"MQL": at})
    routed = at + dt.timedelta(hours=1)
    b.event(
        "routing",
        routed,
        moved,
        sla_id=None,
        actor="routing",
        detail={"owner": ben, "from_owner": queue, "team": "sdr_east", "rule": "territory:americas"},
    )
    b.owner_change(moved, routed + dt.timedelta(seconds=5), queue, ben, integration)
    return b.owner_change(moved, routed + dt.timedelta(hours=3), ben, cy, cy, names=("Ben East", "Cy East"))


def synced(
    engine: sa.Engine,
    started: dt.datetime,
    groups: tuple[str, ...] = ("leads", "org"),
    *,
    evaluated: bool = True,
) -> None:
    """Record a successful CRM sync of every object group (crm_fields.yaml) that started at `started`,
    as `leadsla.crm.sync.sync_group` does, and (unless `evaluated` is False) the monitor evaluation
    that follows it, as `leadsla.tasks.monitor.run_monitor` does: reports are built only on a mirror synced
    past their period and clocks evaluated since."""
    from leadsla.store import schema as s

    finished = started + dt.timedelta(seconds=20)
    with engine.begin() as conn:
        conn.execute(
            s.sync_runs.insert(),
            [
                {"started_at": started, "finished_at": finished, "status": "success", "group_name": g}
                for g in groups
            ],
        )
        if evaluated:
            conn.execute(
                s.evaluations.insert().values(
                    evaluated_at=finished, read_at=finished + dt.timedelta(seconds=1), clocks=0, run_id="test"
                )
            )
