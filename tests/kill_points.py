"""Kill the escalate task at every step boundary, retry it, and say what the retry left wrong.

Shared by tests/integration/test_crash_safe_escalation.py and bench/kill_points.py. A case runs the
escalate task's body (`leadsla.tasks.monitor.run_escalation`) against the Salesforce stand-in in a
child process forked from a warm fork server; the child stops at one named barrier and the parent
kills it there with SIGKILL: no `finally`, no rollback by Python, the store sees a dropped
connection, as when a worker dies. The barriers sit on the code's own module attributes (the
write-back's record of a write, the store update, the audit, the outbox mark), never on a provider
hook. Then, like the next runs would, the parent optionally syncs, retries (a breach action after
its lease expired), and checks: the lock is where the action wrote it and is enforced, the audit
has each entry of the action exactly once (crm_write, escalation, reassignment, lock_set;
lock_restored, lock_released), no crm_write_conflict, and the CRM was not written twice.

Scenarios: ``escalation`` (a breach action: claim, CRM write, store update, audit, outbox mark),
``restore`` (lock keeping puts the holder back after an assignment rule took the lead) and
``release`` (the holder's own change ends the lock).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

#: The barriers of each scenario, in the order the task meets them.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "escalation": (
        "claimed",  # the lease is committed, nothing else
        "crm_written",  # the CRM took the write; nothing of it recorded
        "crm_write_recorded",  # crm_write and the store's copy of the fields committed
        "store_updated",  # the lead's owner and lock updated, in the uncommitted settle transaction
        "audited",  # + the outcome's audit entries, uncommitted
        "marked_delivered",  # + the outbox row delivered, uncommitted
        "settled",  # all of it committed
    ),
    "restore": (
        "lock_read",  # about to read the lead before putting the holder back
        "crm_written",
        "crm_write_recorded",
        "store_updated",
        "audited",
        "notice_queued",  # + the holder's notice, uncommitted
        "settled",
    ),
    "release": ("lock_read", "crm_written", "crm_write_recorded", "store_updated", "audited", "settled"),
}
KILL_POINTS: list[tuple[str, str]] = [(s, b) for s, barriers in SCENARIOS.items() for b in barriers]


def sync_between(backend: str, point_no: int) -> bool:
    """Whether kill point `point_no` syncs the CRM between the kill and the retry on `backend`:
    alternately over the points, swapped between SQLite and PostgreSQL, so every point is retried
    both ways and on both backends in one pass over each."""
    return (point_no + (backend != "sqlite")) % 2 == 1


#: Children are forked from a server that imported the project once (a fresh interpreter each
#: would spend ~3.5 s importing Airflow's Salesforce provider).
_MP = multiprocessing.get_context("forkserver")
_MP.set_forkserver_preload(
    [
        "tests.kill_points",
        "leadsla.tasks.monitor",
        "airflow.providers.salesforce.hooks.salesforce",
        "airflow.sdk",
        "simple_salesforce",
    ]
)

_CTX_FIELDS = {"dag_id": "sla_monitor", "run_id": "scheduled__kill", "task_id": "escalate", "try_number": 1}


# -- the child --------------------------------------------------------------------------------


def _install(target: str, hit: Callable[[str], None]) -> None:
    """Stop at barrier `target`: wrap the module attributes the task calls between its steps."""
    from leadsla.crm import writeback
    from leadsla.escalation import breach, locks

    def wrap(module: Any, attr: str, before: str | None = None, after: str | None = None) -> None:
        original = getattr(module, attr)

        def barrier(*args: Any, **kwargs: Any) -> Any:
            if before == target:
                hit(before)
            result = original(*args, **kwargs)
            if after == target:
                hit(after)
            return result

        setattr(module, attr, barrier)

    wrap(breach, "perform", before="claimed")
    wrap(locks, "read_lead", before="lock_read")
    wrap(writeback, "_record_writes", before="crm_written", after="crm_write_recorded")
    wrap(breach, "recorded", before="store_updated")  # the settle's first read after its update
    wrap(locks, "recorded", before="store_updated")
    wrap(breach, "record_many", after="audited")
    wrap(locks, "record_many", after="audited")
    wrap(breach, "mark_delivered", after="marked_delivered")
    wrap(locks, "queue_notices", after="notice_queued")


def _child(spec: dict[str, Any], pipe: Any) -> None:
    """Run the escalate task's body, stopping (and waiting to be killed) at spec["barrier"]."""
    os.environ.update(spec["env"])
    from leadsla.crm import mapping as mapping_mod
    from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
    from leadsla.policy import load_policy
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext
    from leadsla.tasks.monitor import run_escalation

    def hit(name: str) -> None:
        pipe.send(name)
        time.sleep(600)  # killed here

    try:
        _install(spec["barrier"], hit)
        engine = open_store(spec["store_url"])
        policy = load_policy().model_copy(update={"automation_user_ids": spec["automation"]})
        client = SalesforceClient(
            retry=RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005), timeout=10
        )
        run_escalation(
            engine,
            dt.datetime.fromisoformat(spec["now"]),
            AuditContext(**_CTX_FIELDS),
            client=client,
            mapping=mapping_mod.load(),
            policy=policy,
        )
        if spec["barrier"] == "settled":
            hit("settled")
        pipe.send("done")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the case
        pipe.send(f"error: {type(exc).__name__}: {exc}")


def _start_fork_server() -> None:
    """Start the fork server (once) on this process's sys.path: it imports the preloaded modules
    before any child is prepared, so it must find this checkout's code, not an installed copy."""
    from multiprocessing import forkserver

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def kill_at(spec: dict[str, Any], timeout: float = 120.0) -> str:
    """Run the child until it reaches spec["barrier"], then SIGKILL it; what it reported."""
    _start_fork_server()
    receive, send = _MP.Pipe(duplex=False)
    child = _MP.Process(target=_child, args=(spec, send), daemon=True)
    child.start()
    send.close()
    try:
        said = receive.recv() if receive.poll(timeout) else "timeout"
    except EOFError:
        said = "died"
    if child.pid is not None and child.is_alive():
        os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    receive.close()
    return said


# -- the parent -------------------------------------------------------------------------------


@dataclass
class Org:
    """The Salesforce stand-in a case runs against: its data (`sandbox.sf_store.OrgStore`) and the
    environment a client needs (REQUESTS_CA_BUNDLE, AIRFLOW_CONN_SALESFORCE_DEFAULT)."""

    store: Any
    env: dict[str, str]


def seed(org: Org) -> dict[str, str]:
    """A manager, an assignment-rule user, their rep and one SAL lead of the rep; their ids."""
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
    user = {"IsActive": True, "TimeZoneSidKey": "America/New_York"}
    manager, rule_user = org.store.bulk_insert(
        "User",
        [
            {**user, "FirstName": "Max", "LastName": "Manager", "Email": "max.manager@example.com"},
            {**user, "FirstName": "Rule", "LastName": "Bot", "Email": "rules@example.com"},
        ],
    )
    (rep,) = org.store.bulk_insert(
        "User",
        [{**user, "FirstName": "Rita", "LastName": "Rep", "Email": "rita@example.com", "ManagerId": manager}],
    )
    (lead,) = org.store.bulk_insert(
        "Lead",
        [
            {
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Company": "AE",
                "Status": "SAL",
                "OwnerId": rep,
                "CreatedDate": t0,
                "SystemModstamp": t0,
                "LastModifiedDate": t0,
            }
        ],
    )
    return {"manager": manager, "rep": rep, "rule_user": rule_user, "lead": lead}


class Case:
    """One kill point of one scenario on one store: run, kill, (sync), retry, check."""

    def __init__(self, org: Org, store_url: str, scenario: str, barrier: str, *, sync_between: bool) -> None:
        from leadsla.crm import mapping as mapping_mod
        from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
        from leadsla.policy import load_policy
        from leadsla.store import open_store
        from leadsla.store.audit import AuditContext

        self.org, self.store_url, self.scenario, self.barrier = org, store_url, scenario, barrier
        self.sync_between = sync_between
        self.engine = open_store(store_url)
        self.mapping = mapping_mod.load()
        self.client = SalesforceClient(
            retry=RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005), timeout=10
        )
        self.context = AuditContext(**_CTX_FIELDS)
        self.ids = seed(org)
        self.policy = load_policy().model_copy(update={"automation_user_ids": [self.ids["rule_user"]]})
        self.problems: list[str] = []

    # steps ----------------------------------------------------------------------------------
    def resync(self, groups: tuple[str, ...] = ("leads",)) -> None:
        """What crm_sync lands (by default the leads group: leads and their history)."""
        from leadsla.crm import sync

        for group in groups:
            summary = sync.sync_group(self.client, self.engine, self.mapping, group, force=True)
            assert summary.status == "success", summary

    def escalate(self, now: dt.datetime) -> dict[str, Any]:
        from leadsla.tasks.monitor import run_escalation

        return run_escalation(
            self.engine, now, self.context, client=self.client, mapping=self.mapping, policy=self.policy
        )

    def queue_breach(self, now: dt.datetime) -> None:
        """Queue the lead's breach action as the monitor would."""
        from leadsla.decisions.breach import decide_breach_actions
        from leadsla.decisions.plan import Plan
        from leadsla.decisions.recipients import Directory
        from leadsla.notify import outbox
        from leadsla.store import schema
        from leadsla.store.mirror import load_frames

        with self.engine.begin() as conn:
            conn.execute(schema.users.update().values(team="sdr_east"))
            frames = load_frames(conn)
            directory = Directory(self.policy, frames["users"], frames["queues"])
            clock = {
                "sla_id": "sales_touch",
                "record_id": self.ids["lead"],
                "object_type": "Lead",
                "owner_id": self.ids["rep"],
                "team": "sdr_east",
                "clock_start": pd.Timestamp(now - dt.timedelta(hours=5)),
                "tier": "standard",
                "breached_at": pd.Timestamp(now - dt.timedelta(minutes=1)),
            }
            plan = Plan(breach_actions=decide_breach_actions([clock], directory))
            assert outbox.apply(conn, plan, now, self.context)["breaches"] == 1

    def kill(self, now: dt.datetime) -> None:
        spec = {
            "env": self.org.env,
            "store_url": self.store_url,
            "barrier": self.barrier,
            "now": now.isoformat(),
            "automation": [self.ids["rule_user"]],
        }
        said = kill_at(spec)
        if said != self.barrier:
            self.problems.append(f"the task never stopped at {self.barrier}: it said {said!r}")

    def lead(self) -> dict[str, Any]:
        return self.org.store.get("Lead", self.ids["lead"])

    def owner_writes(self, to: str) -> int:
        """How many times the lead's owner was set to `to` in the CRM (its history)."""
        return sum(
            1
            for h in self.org.store.scan("LeadHistory")
            if h.get("LeadId") == self.ids["lead"]
            and h.get("Field") in ("Owner", "OwnerId")
            and h.get("NewValue") == to
        )

    def audit(self, *events: str) -> list[tuple[str, dict, dt.datetime]]:
        from leadsla.store import schema

        a = schema.audit
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(a.c.event, a.c.detail, a.c.at)
                .where(a.c.record_id == self.ids["lead"], a.c.event.in_(events))
                .order_by(a.c.audit_id)
            ).all()
        return [(r.event, r.detail or {}, r.at) for r in rows]

    def store_lead(self) -> Any:
        from leadsla.store import schema

        r = schema.records
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(r.c.owner_id, r.c.lock_until).where(r.c.record_id == self.ids["lead"])
            ).one()

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)

    def once(self, event: str, action: str) -> None:
        """Exactly one `event` entry of `action` (a crm_write names it among its fields)."""
        found = [
            d
            for _, d, _ in self.audit(event)
            if (
                action in (d.get("fields") or {}).values()
                if event == "crm_write"
                else d.get("action_id") == action
            )
        ]
        self.expect(len(found) == 1, f"{len(found)} {event} entries of {action}, not 1")

    def no_conflicts(self) -> None:
        conflicts = self.audit("crm_write_conflict")
        self.expect(not conflicts, f"crm_write_conflict recorded: {[d for _, d, _ in conflicts]}")

    # scenarios --------------------------------------------------------------------------------
    def run(self) -> list[str]:
        """Run the scenario to its kill point, retry, and return what is wrong (empty: nothing)."""
        try:
            getattr(self, f"_{self.scenario}")()
        finally:
            self.engine.dispose()
        return self.problems

    def _after_kill(self) -> None:
        if self.sync_between:  # the next crm_sync ran before the next escalate
            self.resync()

    def _escalation(self) -> None:
        from leadsla.escalation.breach import LEASE
        from leadsla.escalation.own_writes import action_id
        from leadsla.store import schema

        ids, lock_field = self.ids, self.mapping.sla_fields["sla_lock_until"]
        self.resync(("org", "leads"))
        t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - LEASE - dt.timedelta(minutes=1)
        self.queue_breach(t0)
        with self.engine.connect() as conn:
            key = conn.execute(
                sa.select(schema.outbox.c.idempotency_key).where(schema.outbox.c.channel == "crm")
            ).scalar_one()
        action = action_id("breach", key)
        self.kill(t0)
        written = self.lead()
        wrote_before = written["OwnerId"] == ids["manager"]
        self._after_kill()
        t1 = t0 + LEASE + dt.timedelta(seconds=1)  # the lease has expired: the row is due again
        self.escalate(t1)
        after = self.lead()
        lock_end = (t0 if wrote_before else t1) + dt.timedelta(hours=24)
        from leadsla.crm.landing import parse_datetime

        self.expect(after["OwnerId"] == ids["manager"], f"CRM owner {after['OwnerId']}, not the manager")
        self.expect(
            parse_datetime(after[lock_field]) == lock_end, f"CRM lock {after[lock_field]}, not {lock_end}"
        )
        if wrote_before:
            self.expect(after["SystemModstamp"] == written["SystemModstamp"], "the retry wrote the CRM again")
        writes = self.owner_writes(ids["manager"])
        self.expect(writes == 1, f"the manager was made owner {writes} times in the CRM, not once")
        store = self.store_lead()
        self.expect(store.lock_until == lock_end, f"store lock_until {store.lock_until}, not {lock_end}")
        self.expect(store.owner_id == ids["manager"], f"store owner {store.owner_id}")
        outcomes = [d for _, d, _ in self.audit("escalation") if "outcome" in d]
        self.expect(
            [d["outcome"] for d in outcomes] == ["reassigned"],
            f"escalation outcomes {outcomes}, not one reassigned",
        )
        for event in ("crm_write", "reassignment", "lock_set"):
            self.once(event, action)
        sets = [d for _, d, _ in self.audit("lock_set")]
        self.expect(
            [parse_datetime(d["until"]) for d in sets] == [lock_end],
            f"lock_set says {sets}, not until {lock_end}",
        )
        self.no_conflicts()
        # The lock is enforced: the assignment rule hands the lead back to the rep, the lock keeper
        # puts the manager back.
        self.org.store.update("Lead", ids["lead"], {"OwnerId": ids["rep"]}, user_id=ids["rule_user"])
        self.resync()
        locks = self.escalate(dt.datetime.now(dt.UTC))["locks"]
        self.expect(locks.get("restored") == 1, f"lock not enforced: {locks}")
        self.expect(self.lead()["OwnerId"] == ids["manager"], "the lead stayed with the rep during the lock")
        self.no_conflicts()

    def _locked(self) -> None:
        """Escalate the lead (no crash): the manager holds it under a 24-hour lock."""
        self.resync(("org", "leads"))
        now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        self.queue_breach(now)
        assert self.escalate(now)["escalations"] == {"reassigned": 1}

    def _restore(self) -> None:
        from leadsla.store import schema

        ids = self.ids
        self._locked()
        self.org.store.update("Lead", ids["lead"], {"OwnerId": ids["rule_user"]}, user_id=ids["rule_user"])
        self.resync()
        (change,) = [
            h
            for h in self.org.store.scan("LeadHistory")
            if h.get("LeadId") == ids["lead"]
            and h.get("Field") in ("Owner", "OwnerId")
            and h.get("NewValue") == ids["rule_user"]
        ]
        from leadsla.escalation.own_writes import action_id

        action = action_id("restore", f"{ids['lead']}:{change['Id']}")
        self.kill(dt.datetime.now(dt.UTC))
        written = self.lead()
        wrote_before = written["OwnerId"] == ids["manager"]
        self._after_kill()
        self.escalate(dt.datetime.now(dt.UTC))
        after = self.lead()
        self.expect(after["OwnerId"] == ids["manager"], f"CRM owner {after['OwnerId']}, not the holder")
        if wrote_before:
            self.expect(after["SystemModstamp"] == written["SystemModstamp"], "the retry wrote the CRM again")
        writes = self.owner_writes(ids["manager"])
        self.expect(writes == 2, f"the holder was made owner {writes} times in the CRM, not twice")
        self.expect(self.store_lead().owner_id == ids["manager"], "the store's owner is not the holder")
        for event in ("crm_write", "lock_restored"):
            self.once(event, action)
        with self.engine.connect() as conn:
            notices = conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.outbox)
                .where(schema.outbox.c.checkpoint == f"lock_restored:{change['Id']}")
            ).scalar()
        self.expect(notices == 2, f"{notices} notices to the holder, not 2 (e-mail, Slack)")
        self.no_conflicts()
        # Still enforced: the rule takes it again, and is undone again.
        self.org.store.update("Lead", ids["lead"], {"OwnerId": ids["rep"]}, user_id=ids["rule_user"])
        self.resync()
        locks = self.escalate(dt.datetime.now(dt.UTC))["locks"]
        self.expect(locks.get("restored") == 1, f"lock not enforced after the retry: {locks}")
        self.expect(self.lead()["OwnerId"] == ids["manager"], "the lead stayed with the rep during the lock")
        self.no_conflicts()

    def _release(self) -> None:
        from leadsla.escalation.own_writes import action_id
        from leadsla.store import schema

        ids, lock_field = self.ids, self.mapping.sla_fields["sla_lock_until"]
        self._locked()
        self.org.store.update("Lead", ids["lead"], {"Status": "Working"}, user_id=ids["manager"])
        self.resync()
        with self.engine.connect() as conn:
            lock_set_id = conn.execute(
                sa.select(schema.audit.c.audit_id).where(
                    schema.audit.c.event == "lock_set", schema.audit.c.record_id == ids["lead"]
                )
            ).scalar_one()
        action = action_id("release", f"{ids['lead']}:{lock_set_id}")
        self.kill(dt.datetime.now(dt.UTC))
        written = self.lead()
        wrote_before = not written[lock_field]
        self._after_kill()
        self.escalate(dt.datetime.now(dt.UTC))
        after = self.lead()
        self.expect(not after[lock_field], f"CRM lock still {after[lock_field]}")
        if wrote_before:
            self.expect(after["SystemModstamp"] == written["SystemModstamp"], "the retry wrote the CRM again")
        self.expect(self.store_lead().lock_until is None, "the store still holds the lock")
        for event in ("crm_write", "lock_released"):
            self.once(event, action)
        released = [d for _, d, _ in self.audit("lock_released")]
        self.expect(
            [(d["by"], d["change"]) for d in released] == [(ids["manager"], "Status")],
            f"lock_released says {released}",
        )
        self.no_conflicts()
        # Released means released: the rule's change is not undone any more.
        self.org.store.update("Lead", ids["lead"], {"OwnerId": ids["rep"]}, user_id=ids["rule_user"])
        self.resync()
        locks = self.escalate(dt.datetime.now(dt.UTC))["locks"]
        self.expect(locks.get("restored") == 0, f"a released lock was kept: {locks}")
        self.no_conflicts()


def run_case(org: Org, store_url: str, scenario: str, barrier: str, *, sync_between: bool) -> list[str]:
    """What is wrong after killing `scenario` at `barrier` and retrying (empty: nothing)."""
    return Case(org, store_url, scenario, barrier, sync_between=sync_between).run()
