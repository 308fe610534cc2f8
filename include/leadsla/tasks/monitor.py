"""sla_monitor's entry points: evaluate and decide, escalate, stamp, deliver.

`run_monitor` is the whole evaluate step: read the CRM mirror and evaluate the clocks, every
record or only what can have changed (`tasks.evaluation`, `store.mirror`, `engine`), decide
(`decisions.monitor`) from the outbox's state (`notify.outbox`) - all outside any write
transaction - then, in one short transaction, persist new and changed clocks (`store.clocks`),
apply the plan (`notify.outbox.apply`), queue the warnings and breaches (messages and CRM actions)
falling due within the planning horizon for their instants (`decisions.ahead`) and record the
evaluation (and a reconcile's findings).
Never sends anything and never reads the wall clock for a decision. The policy and mapping are
the configuration in force (`tasks.configuration.in_force`: the files when they agree, else the
last good ones).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa

from leadsla.configuration import Configuration, alert_context
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.salesforce import SalesforceClient, conn_id_from_env, instance_url
from leadsla.decisions.ahead import DEFAULT_HORIZON, due_within, leadership, plan_ahead, record_rows
from leadsla.decisions.monitor import decide
from leadsla.decisions.plan import QueueState
from leadsla.decisions.recipients import Directory
from leadsla.errors import LeadSlaError
from leadsla.escalation.breach import perform_due
from leadsla.escalation.locks import any_locked, restore_locked_owners
from leadsla.notify import outbox
from leadsla.notify.delivery import LOOP_POLL, budget_from_env, deliver_due, loop_budget_from_env
from leadsla.notify.failure import Contacts
from leadsla.notify.recheck import Recheck
from leadsla.policy import Policy
from leadsla.reports.config import ReportConfig
from leadsla.stamping.stamp import stamp_clocks
from leadsla.store import open_store, staging
from leadsla.store.audit import AuditContext
from leadsla.store.clocks import open_count, record_evaluation, record_reconcile, write_clocks
from leadsla.store.connection import read_only
from leadsla.store.mirror import KeyRange, key_ranges, load_frames, record_count
from leadsla.tasks.configuration import in_force
from leadsla.tasks.context import audit_context, run_time
from leadsla.tasks.evaluation import (
    CHUNK_RECORDS,
    RECONCILE_EVERY,
    Choice,
    Result,
    choose,
    evaluate_full,
    evaluate_incremental,
    evaluate_part,
    merge,
    policy_digest,
    shard_ranges,
)
from leadsla.tuning import count_from_env, seconds_from_env

log = logging.getLogger(__name__)

#: An incremental run reads the handled notices about no record (capacity alerts, leadership's
#: digests) keyed this far back: the decisions look back a week (`decisions.ladder.DIGEST_CATCH_UP`).
NOTICES_WINDOW = dt.timedelta(days=9)


#: Rows one delivery loop try may claim (a minute's try: 500): a try runs ten minutes, and a
#: busy hour must not end it early.
LOOP_LIMIT = 100_000


def horizon_from_env() -> dt.timedelta:
    """How far ahead the monitor plans warnings: LEADSLA_PLAN_HORIZON_S (seconds, 0 = never plan,
    at most a day) or `decisions.ahead.DEFAULT_HORIZON`.

    Raises:
        LeadSlaError: the variable is set but is not a number of seconds from 0 to 86400.
    """
    return seconds_from_env("LEADSLA_PLAN_HORIZON_S", DEFAULT_HORIZON, low=0, high=86400)


def run_monitor(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    policy: Policy | None = None,
    url: str | None = None,
    reports: ReportConfig | None = None,
    mode: str = "auto",
    horizon: dt.timedelta | None = None,
    reconcile_every: int = RECONCILE_EVERY,
    chunk_records: int = CHUNK_RECORDS,
) -> dict[str, Any]:
    """Evaluate at `now` and decide outside any write transaction, then write the clocks, the plan
    and the evaluation in one short one.

    Args:
        policy: the policy to enforce (default: the configuration in force, checked now).
        reports: the report settings whose campaign field and expected deal value the alerts'
            triage context uses (default: the configuration in force's; with `policy` given and no
            `reports`, their defaults).
        url: the CRM's base URL for record links (default: `crm.salesforce.instance_url()`).
        mode: ``auto`` (incremental, full on the first run, on a policy change and every
            `reconcile_every` runs), ``incremental`` (full only when it must: first run, policy
            change) or ``full`` (every record, compared with the incremental state: a reconcile);
            `leadsla.tasks.evaluation`.
        horizon: how far ahead warnings and breaches are planned (default: `horizon_from_env()`; 0: none); an
            incremental run also re-evaluates the clocks whose next change falls by `now + horizon`.
        reconcile_every: a full reconcile every this many runs (mode auto).
        chunk_records: a full evaluation reads this many records' mirror rows at a time.

    Returns:
        Small counts for XCom: clocks, due, superseded, queued, digests, capacity alerts,
        rolled up, breaches, unresolved roles, planned (messages queued for a later instant),
        planned_actions (breach actions queued for their breach's instant); the
        mode, the records evaluated and, for a reconcile, the clocks it found wrong.
    """
    horizon = horizon_from_env() if horizon is None else horizon
    if policy is None:
        configuration = in_force(engine, context, now=now).configuration
        policy, reports = configuration.policy, reports or configuration.reports
    url = url or instance_url()
    # Bookkeeping (which sync the clocks reflect, for the reports; what landed since, for the next
    # incremental run): decisions use `now`. Taken before reading, so nothing landed after is missed.
    read_at = dt.datetime.now(dt.UTC)
    with read_only(engine) as conn, _queue_ahead(engine, now, policy) as queue:  # no write lock meanwhile
        choice = choose(
            conn,
            policy,
            mode=mode,
            reconcile_every=reconcile_every,
            now=now,
            horizon=horizon,
            most=chunk_records,
        )
        if choice.full:
            result = evaluate_full(
                conn, policy, now, choice=choice, horizon=horizon, chunk_records=chunk_records
            )
        else:
            result = evaluate_incremental(conn, policy, now, ids=choice.ids or set())
        reads = _decision_reads(conn, result, policy, now, horizon, full=choice.full, queue=queue())
    return _decide_and_write(
        engine,
        result,
        reads,
        now,
        context,
        policy=policy,
        reports=reports,
        url=url,
        horizon=horizon,
        read_at=read_at,
        full=choice.full,
    )


@contextlib.contextmanager
def _queue_ahead(
    engine: sa.Engine, now: dt.datetime, policy: Policy
) -> Iterator[Callable[[], outbox.Queue | None]]:
    """The recipients' queues (`notify.outbox.queue_of`) read while the run evaluates: on
    PostgreSQL in a thread, on a read-only connection of its own, so the database's work (parsing
    tens of thousands of payloads to count them) overlaps the evaluation instead of following it.
    Each statement there sees what was committed when it began, on any connection, as the run's
    own statements do. On SQLite nothing: the run reads them in its own snapshot (`queue_state`).
    Yields what gives the queues (None on SQLite), waiting for the read if it is still running."""
    if engine.dialect.name != "postgresql":
        yield lambda: None
        return
    window, leaders = policy.rate_limit.window_minutes, leadership(policy)

    def read() -> outbox.Queue:
        with read_only(engine) as conn:
            return outbox.queue_of(conn, now, window_minutes=window, leaders=leaders)

    with ThreadPoolExecutor(1, thread_name_prefix="leadsla-queue") as pool:
        yield pool.submit(read).result


def _decision_reads(
    conn: sa.Connection,
    result: Result,
    policy: Policy,
    now: dt.datetime,
    horizon: dt.timedelta,
    *,
    full: bool,
    queue: outbox.Queue | None = None,
) -> tuple[QueueState, dict | None]:
    """What the decisions read beside the evaluation: the outbox's state (the rows no decision
    reads only counted: `notify.outbox.only_counted`; its queues `queue` when read already), and
    the mirror rows of the records whose warnings fall due within the horizon (None: none)."""
    soon = due_within(result.clocks, now, horizon)  # the records planned ahead
    window, leaders = policy.rate_limit.window_minutes, leadership(policy)
    if full:
        state = outbox.queue_state(conn, now, window_minutes=window, leaders=leaders, queue=queue)
    else:
        cps = result.checkpoints
        reached = set(cps.loc[cps["status"].isin(["due", "superseded"]), "record_id"])
        state = outbox.queue_state(
            conn,
            now,
            window_minutes=window,
            record_ids=reached | soon,
            notices_since=now - NOTICES_WINDOW,
            leaders=leaders,
            queue=queue,
        )
    # The warnings falling due within the horizon: those records' rows, read in this snapshot, or
    # cut from the re-evaluated records' rows when it read them all (a clock whose next checkpoint
    # falls within the horizon is due a re-evaluation: `store.clocks.due_for_change`).
    if not soon:
        return state, None
    if result.frames is not None and result.evaluated is not None and soon <= result.evaluated:
        return state, record_rows(result.frames, soon)
    return state, load_frames(conn, record_ids=soon)


def _decide_and_write(
    engine: sa.Engine,
    result: Result,
    reads: tuple[QueueState, dict | None],
    now: dt.datetime,
    context: AuditContext,
    *,
    policy: Policy,
    reports: ReportConfig | None,
    url: str,
    horizon: dt.timedelta,
    read_at: dt.datetime,
    full: bool,
    shard_run: str | None = None,
) -> dict[str, Any]:
    """Decide outside any write transaction, then write the clocks, the plan and the evaluation in
    one short one (and, for a sharded run `shard_run`, clear other runs' staged parts)."""
    state, frames = reads
    triage = alert_context(policy, reports)
    directory = Directory(policy, result.users, result.queues)
    plan = decide(
        result.evaluation, result.records, directory, state, now=now, instance_url=url, context=triage
    )
    ahead = (
        plan_ahead(
            frames,
            result.evaluation,
            directory,
            now=now,
            horizon=horizon,
            handled=state.handled,
            instance_url=url,
            context=triage,
        )
        if frames is not None
        else None
    )
    run_mode = "full" if full else "incremental"
    with engine.begin() as conn:  # the writes only; keyed, so a concurrent or retried run doubles nothing
        counts = write_clocks(conn, result.writes, now, context)
        applied = outbox.apply(conn, plan, now, context)
        planned = outbox.enqueue(conn, ahead.messages, now, context) if ahead is not None else []
        planned_actions = (
            outbox.enqueue_actions(conn, ahead.actions, now, context) if ahead is not None else []
        )
        record_evaluation(
            conn,
            now=now,
            read_at=read_at,
            clocks=result.count,
            run_id=context.run_id,
            mode=run_mode,
            policy_digest=policy_digest(policy),
        )
        if result.reconcile is not None:
            record_reconcile(conn, now, result.reconcile, run_id=context.run_id)
        if shard_run is not None:
            staging.clear_others(conn, shard_run)
    summary = {
        **counts,
        "clocks": result.count,
        "due": len(plan.due),
        "superseded": len(plan.superseded),
        "queued": applied["queued"],
        "digests": applied["digests"],
        "capacity_alerts": applied["notices"],
        "rolled_up": applied["rolled_up"],
        "breaches": applied["breaches"],
        "unresolved": len(plan.unresolved),
        "planned": len(planned),
        "planned_actions": len(planned_actions),
        "mode": run_mode,
        "records_evaluated": None if result.evaluated is None else len(result.evaluated),
    }
    if result.reconcile is not None:
        summary["reconcile_differences"] = result.reconcile["differences"]
        if result.reconcile["differences"]:
            log.warning(
                "reconcile (%s): %d of %d clocks differed from the incremental state (corrected): %s",
                result.reconcile["reason"],
                result.reconcile["differences"],
                result.reconcile["clocks"],
                result.reconcile["detail"]["sample"][:5],
            )
    if plan.unresolved:
        log.warning("roles that resolve to nobody: %s", "; ".join(plan.unresolved[:20]))
    if plan.no_phone:  # names and user ids only; sla_health lists them for RevOps
        log.warning("texts sent by e-mail or Slack (no mobile number): %s", "; ".join(plan.no_phone[:20]))
    log.info("monitor at %s: %s", now.isoformat(), summary)
    return summary


# --- a full evaluation in shards: planned, evaluated by mapped tasks, merged by one ---------------

#: A full evaluation is sharded above this many open clocks (LEADSLA_SHARD_ABOVE), one shard for
#: each this many, at most MAX_SHARDS.
SHARD_ABOVE = 20_000
MAX_SHARDS = 8


def shard_above_from_env() -> int:
    """Open clocks above which a full evaluation is sharded: LEADSLA_SHARD_ABOVE (a whole number
    of at least 1) or `SHARD_ABOVE`.

    Raises:
        LeadSlaError: the variable is set but is not a whole number of at least 1.
    """
    return count_from_env("LEADSLA_SHARD_ABOVE", SHARD_ABOVE, of="open clocks")


def plan_shards(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    policy: Policy | None = None,
    mode: str = "auto",
    reconcile_every: int = RECONCILE_EVERY,
    shard_above: int = SHARD_ABOVE,
    chunk_records: int = CHUNK_RECORDS,
) -> list[dict[str, Any]]:
    """The shards of this run's evaluation: none (`run_monitor` evaluates alone: an incremental run,
    or a full one of at most `shard_above` open clocks), or one small description per shard (its
    ranges of record ids, `mirror.key_ranges`, and the run's choice) for `run_shard` and `run_merge`.
    The ranges are fixed here, so a retried shard reads exactly what it read before."""
    if policy is None:
        policy = in_force(engine, context, now=now).configuration.policy
    read_at = dt.datetime.now(dt.UTC)  # before any shard reads: nothing landed after is missed
    with read_only(engine) as conn:
        choice = choose(
            conn,
            policy,
            mode=mode,
            reconcile_every=reconcile_every,
            now=now,
            horizon=horizon_from_env(),
            most=chunk_records,
        )
        opened = open_count(conn) if choice.full else 0
        if opened <= shard_above:
            return []
        wanted = min(MAX_SHARDS, -(-opened // shard_above))
        # Ranges of at most `chunk_records` ids (a shard's memory), and at least one per shard.
        ranges = key_ranges(conn, max(1, min(chunk_records, -(-record_count(conn) // wanted))))
    shards = shard_ranges(ranges, wanted)
    if len(shards) < 2:
        return []
    plan = {
        "shards": len(shards),
        "reason": choice.reason,
        "landed_after": None if choice.landed_after is None else choice.landed_after.isoformat(),
        "read_at": read_at.isoformat(),
        "policy_digest": policy_digest(policy),
    }
    return [{**plan, "shard": i, "ranges": [[r.low, r.high] for r in part]} for i, part in enumerate(shards)]


def run_shard(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    shard: dict[str, Any],
    *,
    policy: Policy | None = None,
    horizon: dt.timedelta | None = None,
) -> dict[str, Any]:
    """Evaluate one shard (`plan_shards`) on a read-only connection and stage its part for the
    merge (`store.staging`, keyed by run and shard: a retry replaces it). Writes nothing else."""
    horizon = horizon_from_env() if horizon is None else horizon
    policy = policy or in_force(engine, context, now=now).configuration.policy
    _check_planned(policy, shard, context)
    ranges = [KeyRange(low, high) for low, high in shard["ranges"]]
    with read_only(engine) as conn:
        part = evaluate_part(conn, policy, now, ranges, choice=_choice(shard), horizon=horizon)
    with engine.begin() as conn:
        size = staging.stage(
            conn, run_id=context.run_id, shard=shard["shard"], shards=shard["shards"], now=now, part=part
        )
    summary = {
        "shard": shard["shard"],
        "shards": shard["shards"],
        "clocks": part.count,
        "rows": len(part.writes.rows),
        "staged_bytes": size,
    }
    log.info("shard %d of %d at %s: %s", shard["shard"], shard["shards"], now.isoformat(), summary)
    return summary


def run_merge(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    shards: list[dict[str, Any]],
    *,
    policy: Policy | None = None,
    url: str | None = None,
    reports: ReportConfig | None = None,
    horizon: dt.timedelta | None = None,
) -> dict[str, Any]:
    """The sharded run's one decision: every shard's staged part merged into one full evaluation
    (`tasks.evaluation.merge`: what the decisions read is what one process's evaluation in
    chunks gives), decided, and written in one transaction, as `run_monitor` does."""
    horizon = horizon_from_env() if horizon is None else horizon
    plan = shards[0]
    if policy is None:
        configuration = in_force(engine, context, now=now).configuration
        policy, reports = configuration.policy, reports or configuration.reports
    _check_planned(policy, plan, context)
    url = url or instance_url()
    choice = _choice(plan)
    with read_only(engine) as conn:
        parts = staging.staged(conn, run_id=context.run_id, shards=plan["shards"], now=now)
        base = load_frames(conn, tables=["users", "queues"])
        result = merge(conn, parts, choice=choice, users=base["users"], queues=base["queues"])
        del parts
        reads = _decision_reads(conn, result, policy, now, horizon, full=True)
    summary = _decide_and_write(
        engine,
        result,
        reads,
        now,
        context,
        policy=policy,
        reports=reports,
        url=url,
        horizon=horizon,
        read_at=dt.datetime.fromisoformat(plan["read_at"]),
        full=True,
        shard_run=context.run_id,
    )
    return {**summary, "shards": plan["shards"]}


def _check_planned(policy: Policy, plan: dict[str, Any], context: AuditContext) -> None:
    """The policy in force must be the one the shards were planned under (else a shard would
    evaluate under another policy than its siblings): the run fails, the next one plans again."""
    if policy_digest(policy) != plan["policy_digest"]:
        raise LeadSlaError(
            f"sla_monitor run {context.run_id!r}: the policy changed after its shards were planned;"
            " the next run evaluates under the new one"
        )


def _choice(plan: dict[str, Any]) -> Choice:
    after = plan["landed_after"]
    return Choice(True, plan["reason"], None if after is None else dt.datetime.fromisoformat(after))


def reconcile_every_from_env() -> int:
    """Runs between full reconciles: LEADSLA_RECONCILE_EVERY (a whole number, 1 = every run is
    full) or `tasks.evaluation.RECONCILE_EVERY`.

    Raises:
        LeadSlaError: the variable is set but is not a whole number of at least 1.
    """
    return count_from_env("LEADSLA_RECONCILE_EVERY", RECONCILE_EVERY, of="runs")


def shards(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The `shards` task: this run's shards (`plan_shards`; none below LEADSLA_SHARD_ABOVE open
    clocks or on an incremental run)."""
    engine = open_store()
    try:
        return plan_shards(
            engine,
            run_time(context),
            audit_context(context),
            reconcile_every=reconcile_every_from_env(),
            shard_above=shard_above_from_env(),
        )
    finally:
        engine.dispose()


def evaluate_shard(shard: dict[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped `evaluate_shard` task: one shard evaluated and staged (`run_shard`)."""
    engine = open_store()
    try:
        return run_shard(engine, run_time(context), audit_context(context), shard)
    finally:
        engine.dispose()


def evaluate(context: Mapping[str, Any], shards: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `evaluate` task: clocks at the run's time -> clocks table, audit, outbox (incremental,
    a full reconcile every LEADSLA_RECONCILE_EVERY runs); with `shards`, the shards' staged parts
    merged, decided and written (`run_merge`)."""
    engine = open_store()
    try:
        if shards:
            return run_merge(engine, run_time(context), audit_context(context), shards)
        return run_monitor(
            engine, run_time(context), audit_context(context), reconcile_every=reconcile_every_from_env()
        )
    finally:
        engine.dispose()


def deliver(context: Mapping[str, Any], *, loop: bool = False) -> dict[str, Any]:
    """The `deliver` task: due Slack, e-mail and SMS messages for up to the delivery budget.

    Leases are about real concurrency, so they run on the wall clock read right before
    delivering (the try's start is seconds earlier: parsing, imports), never the run's time.
    A message that fails for good is told to data engineering (quality.yaml `incident`, of the
    configuration in force, read only then) on the other channel. A warning planned ahead is
    re-checked against the store right before it goes (`notify.recheck`, the policy in force).

    Args:
        loop: the delivery loop (`sla_delivery`): keep delivering, each row at its instant, for
            `loop_budget_from_env()`; else one minute's budget (`budget_from_env()`). The loop
            also performs due breach actions (`escalation.breach.perform_due`, re-checked like
            the messages), so a breach planned ahead reassigns and locks at its second; the CRM
            client and the configuration are made only when an action is due.
    """
    engine = open_store()
    audit = audit_context(context)
    start = dt.datetime.now(dt.UTC)

    def contacts() -> Contacts:  # read only when a message fails for good
        quality = in_force(engine, audit, now=start).configuration.quality
        return Contacts(slack_channel=quality.incident_channel, email=quality.incident_email)

    def sms():  # made only when a text is due: the policy in force names its Apprise connection
        from leadsla.notify.sms import SMS_CONN_ID, SmsSender

        policy = in_force(engine, audit, now=start).configuration.policy
        return SmsSender(policy.sms.connection if policy.sms else SMS_CONN_ID)

    def policy() -> Policy:  # read only when a planned warning is re-checked
        return in_force(engine, audit, now=start).configuration.policy

    recheck = Recheck(policy)
    budget = loop_budget_from_env(start) if loop else budget_from_env()
    try:
        return deliver_due(
            engine,
            start,
            audit,
            budget=budget,
            sms=sms,
            contacts=contacts,
            recheck=recheck,
            actions=BreachActions(engine, audit, recheck) if loop else None,
            poll=LOOP_POLL if loop else None,
            limit=LOOP_LIMIT if loop else 500,
        )
    finally:
        engine.dispose()


class BreachActions:
    """The delivery loop's performer of due breach actions: one indexed look per call, and the
    CRM client, mapping and policy made at the first due action (the configuration in force)."""

    def __init__(self, engine: sa.Engine, context: AuditContext, recheck: Recheck) -> None:
        self._engine, self._context, self._recheck = engine, context, recheck
        self._client: CrmClient | None = None
        self._configuration: Configuration | None = None

    def __call__(self, at: dt.datetime) -> dict[str, int]:
        with read_only(self._engine) as conn:
            if not outbox.due_now(conn, at, channels=[outbox.CRM_CHANNEL]):
                return {}
        if self._configuration is None:
            self._configuration = in_force(self._engine, self._context, now=at).configuration
            self._client = SalesforceClient(conn_id_from_env())
        return perform_due(
            self._engine,
            at,
            self._context,
            client=self._client,
            mapping=self._configuration.mapping,
            policy=self._configuration.policy,
            recheck=self._recheck,
        )


def run_escalation(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient | None = None,
    mapping: CrmMapping | None = None,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """Keep the locks first (what the sync just landed), then perform the queued breach actions.

    A bug in either fails the task (after the other has run): a CRM refusal keeps its lock or
    action for the next run, a bug is raised so the failure is seen (`leadsla.escalation`).

    Args:
        client, mapping, policy: defaults are the Salesforce connection and the configuration in
            force's mapping and policy (whose `automation_user_ids` are the automated reassigners).
    """
    client = client or SalesforceClient(conn_id_from_env())
    if mapping is None or policy is None:
        configuration = in_force(engine, context, now=now).configuration
        mapping, policy = mapping or configuration.mapping, policy or configuration.policy
    locks: dict[str, int] = {"restored": 0, "released": 0, "conflict": 0}
    lock_bug: Exception | None = None
    try:
        if any_locked(engine, mapping, now):  # nothing to keep: no CRM call
            locks = restore_locked_owners(
                engine,
                now,
                context,
                client=client,
                mapping=mapping,
                automation_users=policy.automation_user_ids,
            )
    except Exception as exc:  # a bug keeping locks must not stop new breaches being escalated
        log.error("lock keeping failed; performing the due breach actions before failing the task")
        lock_bug = exc
    try:
        escalations = perform_due(
            engine, now, context, client=client, mapping=mapping, policy=policy, recheck=Recheck(policy)
        )
    except Exception as exc:
        if lock_bug is not None:
            exc.add_note(f"leadsla: lock keeping failed first: {type(lock_bug).__name__}: {lock_bug}")
        raise
    if lock_bug is not None:
        raise lock_bug
    return {"locks": locks, "escalations": escalations}


def escalate(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `escalate` task: lock keeping, then new breach actions, through the CRM write-back."""
    engine = open_store()
    try:
        return run_escalation(engine, run_time(context), audit_context(context))
    finally:
        engine.dispose()


def run_stamping(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient | None = None,
    configuration: Configuration | None = None,
) -> dict[str, Any]:
    """Stamp every watched Lead's clock on the record where it changed (`leadsla.stamping.stamp`).

    Args:
        client, configuration: defaults are the Salesforce connection and the configuration in
            force (its mapping's sla_fields and stamping budget, the policy, quality.yaml's
            data-engineering channel).
    """
    configuration = configuration or in_force(engine, context, now=now).configuration
    return stamp_clocks(
        engine,
        now,
        context,
        client=client or SalesforceClient(conn_id_from_env()),
        mapping=configuration.mapping,
        policy=configuration.policy,
        channel=configuration.quality.incident_channel,
        lifecycle=configuration.lifecycle,
    )


def stamp(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `stamp` task: the clocks at the run's time -> the SLA fields on the records that changed."""
    engine = open_store()
    try:
        return run_stamping(engine, run_time(context), audit_context(context))
    finally:
        engine.dispose()
