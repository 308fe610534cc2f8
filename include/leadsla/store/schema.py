"""The store's tables, as SQLAlchemy Core metadata: the contract between sync, engine, alerts and reports.

Every instant is stored as a timezone-aware UTC timestamp (`UtcDateTime` below guarantees it on
both backends). CRM rows keep their mapped columns plus the whole raw record as JSON, so a field
the mapping adds later needs no migration to be read. This module declares; it never connects.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

#: The head revision's number (`store.revisions`): add a revision when a table, column or index
#: changes, and bump this to its number; `migrations.upgrade` brings older stores forward.
SCHEMA_VERSION = 11

#: The records index covering the War Room's MQL cohort (`war_room.queries`).
COHORT_INDEX = "ix_records_cohort"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator):
    """An aware UTC instant on every backend; a naive value is refused, never guessed.

    SQLite has no timezone type, so values are normalised to UTC on the way in and marked UTC on
    the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: give it a timezone")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _now_column(name: str, **kw) -> sa.Column:
    return sa.Column(name, UtcDateTime(), nullable=False, **kw)


schema_meta = sa.Table(
    "schema_meta",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    _now_column("upgraded_at"),
)

# --- CRM mirror -------------------------------------------------------------------------------

records = sa.Table(
    "records",
    metadata,
    sa.Column("object_type", sa.String(40), primary_key=True),  # Lead, Opportunity, Account
    sa.Column("record_id", sa.String(18), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("company", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("status", sa.String(80)),  # Lead.Status or Opportunity.StageName
    sa.Column("owner_id", sa.String(18)),
    sa.Column("lead_source", sa.String(120)),
    sa.Column("lead_type", sa.String(120)),
    sa.Column("account_tier", sa.String(40)),
    sa.Column("country", sa.String(80)),
    sa.Column("is_converted", sa.Boolean),
    sa.Column("converted_opportunity_id", sa.String(18)),
    sa.Column("account_id", sa.String(18)),
    sa.Column("is_won", sa.Boolean),
    sa.Column("rejection_reason", sa.String(255)),
    sa.Column("created_at", UtcDateTime()),
    sa.Column("modified_at", UtcDateTime()),  # SystemModstamp
    sa.Column("lock_until", UtcDateTime()),  # SLA round-robin lock, mirrored from SLA_Lock_Until__c
    sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fields", sa.JSON, nullable=False),  # every mapped field as the CRM sent it
    _now_column("synced_at"),
    # When the row last changed in the store (landing or our own write-back), on the writer's wall
    # clock: the incremental monitor re-evaluates what landed since its last read. NULL: written
    # by something that does not say (always re-evaluated).
    sa.Column("landed_at", UtcDateTime()),
    sa.Index(None, "object_type", "status"),
    sa.Index(None, "owner_id"),
    sa.Index(None, "landed_at"),
    sa.Index(None, "converted_opportunity_id"),  # the monitor: an Opportunity's converted Lead
    sa.Index(None, "modified_at"),
    # War Room: leads created in a range (the funnel's cohort: its status, rejection reason and
    # whether deleted), read from the index alone; named, so a later revision can replace it.
    sa.Index(
        COHORT_INDEX, "object_type", "created_at", "record_id", "status", "rejection_reason", "is_deleted"
    ),
    sa.Index(None, "object_type", "lead_source"),  # War Room: the lead-source filter's values, from the index
)

field_history = sa.Table(
    "field_history",
    metadata,
    sa.Column("history_id", sa.String(18), primary_key=True),  # LeadHistory/OpportunityFieldHistory Id
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("record_id", sa.String(18), nullable=False),
    sa.Column("field", sa.String(80), nullable=False),
    sa.Column("old_value", sa.Text),
    sa.Column("new_value", sa.Text),
    sa.Column("changed_by", sa.String(18)),
    _now_column("changed_at"),
    sa.Column("landed_at", UtcDateTime()),  # as records.landed_at
    sa.Index(None, "object_type", "record_id", "changed_at"),
    # A range of record ids (a full evaluation's mirror read, `store.mirror.key_ranges`).
    sa.Index(None, "record_id", "changed_at"),
    sa.Index(None, "landed_at"),
    # War Room: leads that became MQL in a range (covering: object_type and record_id included).
    sa.Index(None, "field", "new_value", "changed_at", "object_type", "record_id"),
)
# War Room: a cohort's Status changes (first arrival at each funnel stage, status at creation) read
# from the index alone; partial, so only short Status values are indexed. Queries must spell
# `field = 'Status'` as a literal for SQLite to use it.
sa.Index(
    "ix_field_history_status",
    field_history.c.object_type,
    field_history.c.record_id,
    field_history.c.changed_at,
    field_history.c.field,
    field_history.c.new_value,
    field_history.c.old_value,
    sqlite_where=field_history.c.field == sa.literal_column("'Status'"),
    postgresql_where=field_history.c.field == sa.literal_column("'Status'"),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("activity_id", sa.String(18), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=False),  # Task or Event
    sa.Column("who_id", sa.String(18)),
    sa.Column("what_id", sa.String(18)),
    sa.Column("owner_id", sa.String(18)),
    sa.Column("type", sa.String(80)),
    sa.Column("subtype", sa.String(80)),
    sa.Column("subject", sa.Text),
    _now_column("created_at"),
    # Who created it (an automation user's activity is never a touch), a Task's status and when it
    # was completed (a to-do is not a touch until it is done).
    sa.Column("created_by", sa.String(18)),
    sa.Column("status", sa.String(40)),
    sa.Column("completed_at", UtcDateTime()),
    sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    _now_column("synced_at"),
    sa.Column("landed_at", UtcDateTime()),  # as records.landed_at
    sa.Index(None, "who_id", "created_at"),
    sa.Index(None, "what_id", "created_at"),
    sa.Index(None, "landed_at"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.String(18), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("manager_id", sa.String(18)),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("timezone", sa.String(64)),  # IANA, from TimeZoneSidKey
    sa.Column("team", sa.String(80)),
    sa.Column("role", sa.String(80)),
    sa.Column("out_of_office", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("fields", sa.JSON, nullable=False),
    _now_column("synced_at"),
    sa.Column("landed_at", UtcDateTime()),  # as records.landed_at
    sa.Index(None, "landed_at"),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("queue_id", sa.String(18), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("developer_name", sa.String(80)),
    _now_column("synced_at"),
)

sync_watermarks = sa.Table(
    "sync_watermarks",
    metadata,
    sa.Column("object_type", sa.String(60), primary_key=True),
    sa.Column("watermark", UtcDateTime(), nullable=False),  # highest SystemModstamp committed
    _now_column("updated_at"),
)

crm_stream_replay = sa.Table(
    "crm_stream_replay",
    metadata,
    # Change Data Capture: per channel, the newest replay id whose changes crm_sync has landed. The
    # listener resumes after it, so a restart misses nothing (`store.stream`).
    sa.Column("channel", sa.String(120), primary_key=True),
    sa.Column("replay_id", sa.BigInteger, nullable=False),
    _now_column("committed_at"),
    sa.Column("run_id", sa.String(250)),
)

crm_stream_status = sa.Table(
    "crm_stream_status",
    metadata,
    # How crm_sync hears of CRM changes, one row per stream: `streaming` (events; the minute runs
    # skip their queries) or `polling` (the every-minute queries), since when and why; the
    # stream's last keep-alive answer; the last safety-net watermark query while streaming.
    sa.Column("stream", sa.String(40), primary_key=True),
    sa.Column("mode", sa.String(20), nullable=False),
    _now_column("since"),
    sa.Column("reason", sa.String(300)),
    sa.Column("heartbeat_at", UtcDateTime()),
    sa.Column("safety_net_at", UtcDateTime()),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("sync_id", sa.Integer, primary_key=True, autoincrement=True),
    _now_column("started_at"),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("status", sa.String(20), nullable=False),  # running, success, failed, limited
    sa.Column("api_calls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("records_changed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("api_remaining", sa.Integer),
    sa.Column("api_max", sa.Integer),
    sa.Column("detail", sa.JSON),
    sa.Column("run_id", sa.String(250)),
    sa.Column("group_name", sa.String(40)),  # the CRM sync's object group (crm_fields.yaml groups)
    sa.Index(None, "group_name", "started_at"),
)

evaluations = sa.Table(
    "evaluations",
    metadata,
    # One row per monitor evaluation: what the clocks table reflects. `read_at` is the wall-clock
    # instant it read the store (so everything synced before then is in the clocks); reports wait
    # for an evaluation that read the store after the sync that completed their period.
    sa.Column("evaluation_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("evaluated_at", UtcDateTime(), nullable=False),  # the run's `now` (run_after)
    sa.Column("read_at", UtcDateTime(), nullable=False),
    sa.Column("clocks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_id", sa.String(250)),
    # How the run evaluated: full (every record) or incremental (what can have changed), and the
    # policy's digest, so a policy change is seen (`leadsla.tasks.monitor`).
    sa.Column("mode", sa.String(20)),
    sa.Column("policy_digest", sa.String(64)),
    sa.Index(None, "read_at"),
)

crm_mapping_checks = sa.Table(
    "crm_mapping_checks",
    metadata,
    # A successful describe() check of one version of crm_fields.yaml, so idle cycles skip describe.
    sa.Column("mapping_digest", sa.String(64), primary_key=True),
    _now_column("checked_at"),
    sa.Column("objects", sa.JSON, nullable=False),  # the objects checked
    # The lifecycle the org's picklists were compared with, and what disagreed (a list of
    # sentences, [] when they agree; NULL: picklists not compared). Drift warns, never fails the sync.
    sa.Column("lifecycle_digest", sa.String(64)),
    sa.Column("drift", sa.JSON(none_as_null=True)),
    # The stamp fields as describe() reported them, for SLA stamping's fitness check and the sync
    # (which leaves out the ones the org lacks): {"since": first check of this mapping,
    # "fields": {Lead API name: {type, updateable, length, ...} or null when missing}}.
    sa.Column("stamp_fields", sa.JSON(none_as_null=True)),
)

config_snapshots = sa.Table(
    "config_snapshots",
    metadata,
    # A configuration (every file's text) that passed `leadsla config check` when an entry point
    # started; the latest row is the one in force while a later edit of the files is refused.
    sa.Column("snapshot_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),  # SHA-256 of the texts
    sa.Column("files", sa.JSON, nullable=False),  # role -> {path, text}
    _now_column("accepted_at"),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("try_number", sa.Integer),
    sa.Index(None, "digest"),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("quarantine_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("record_id", sa.String(40)),  # may itself be the malformed part
    sa.Column("payload", sa.JSON, nullable=False),  # the row exactly as received, for replay
    sa.Column("reasons", sa.JSON, nullable=False),  # list of human-readable reasons
    _now_column("first_seen_at"),
    _now_column("last_seen_at"),
    sa.Column("released_at", UtcDateTime()),  # set when a later validation lets it through
    sa.Column("run_id", sa.String(250)),
    sa.Index(None, "object_type", "record_id"),
)

quality_runs = sa.Table(
    "quality_runs",
    metadata,
    # One gate validation of one object's rows (a sync page or a replay): counts, the failing
    # expectations, and the incident it belongs to (the data-engineering alert's key).
    sa.Column("quality_run_id", sa.Integer, primary_key=True, autoincrement=True),
    _now_column("at"),
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("suite", sa.String(40), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("flagged", sa.Integer, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("incident", sa.String(120)),  # set while the error rate is over the threshold
    sa.Column("run_id", sa.String(250)),
    sa.Index(None, "suite", "at"),
)

quality_flags = sa.Table(
    "quality_flags",
    metadata,
    # Warnings of a loaded row's latest validation; deleted when a later validation is clean.
    sa.Column("object_type", sa.String(40), primary_key=True),
    sa.Column("record_id", sa.String(18), primary_key=True),
    sa.Column("reasons", sa.JSON, nullable=False),
    _now_column("flagged_at"),
    sa.Column("run_id", sa.String(250)),
)

health_findings = sa.Table(
    "health_findings",
    metadata,
    # sla_health: one row per finding per run, for the reports and the War Room.
    sa.Column("finding_id", sa.Integer, primary_key=True, autoincrement=True),
    _now_column("run_at"),
    sa.Column("check_name", sa.String(80), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),  # critical, warning, info
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("record_ids", sa.JSON, nullable=False),  # affected CRM ids (or user ids, outbox ids)
    sa.Column("how_to_fix", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Index(None, "run_at"),
)

# --- SLA clocks and their consequences --------------------------------------------------------

#: The clocks index covering the War Room's judged clocks (`war_room.queries`).
JUDGED_CLOCKS_INDEX = "ix_clocks_judged"

clocks = sa.Table(
    "clocks",
    metadata,
    # Clock identity (DESIGN.md): (sla_id, record_id, clock_start).
    sa.Column("sla_id", sa.String(80), primary_key=True),
    sa.Column("record_id", sa.String(18), primary_key=True),
    sa.Column("clock_start", UtcDateTime(), primary_key=True),
    sa.Column("object_type", sa.String(40), nullable=False),
    sa.Column("policy_version", sa.String(40), nullable=False),
    sa.Column("tier", sa.String(80), nullable=False),
    sa.Column("calendar", sa.String(80), nullable=False),
    sa.Column("target_seconds", sa.Integer, nullable=False),
    sa.Column("owner_id", sa.String(18)),
    sa.Column("team", sa.String(80)),
    # Who answers for the clock (engine): the owner when it breached, else the current owner.
    sa.Column("accountable_owner_id", sa.String(18)),
    sa.Column("accountable_team", sa.String(80)),
    # running, paused, breached; met, met_late (a stop rule); handed_on, handed_on_late (left the state)
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("elapsed_seconds", sa.Integer, nullable=False),
    sa.Column("remaining_seconds", sa.Integer, nullable=False),
    sa.Column("percent_elapsed", sa.Float, nullable=False),
    sa.Column("colour", sa.String(10), nullable=False),
    sa.Column("deadline", UtcDateTime()),
    sa.Column("stopped_at", UtcDateTime()),
    sa.Column("breached_at", UtcDateTime()),
    sa.Column(
        "critical", sa.Boolean, nullable=False, server_default=sa.false()
    ),  # breach ignores quiet hours
    sa.Column("next_checkpoint", sa.String(80)),
    sa.Column("next_checkpoint_at", UtcDateTime()),  # projected, as if the clock keeps running
    _now_column("evaluated_at"),
    # The next instant this clock's evaluation can change with nothing landing (a running clock in
    # its calendar's hours: its evaluation time, it changes every second; closed: the next opening
    # or checkpoint); NULL: only a change of its record can change it (ended, paused). The
    # incremental monitor re-evaluates the clocks with this instant due (`engine.next_changes`).
    sa.Column("next_change_at", UtcDateTime()),
    # When an evaluation of its record no longer gave this clock (record deleted, policy changed):
    # kept for the history, left out of the decisions. NULL: current.
    sa.Column("stale_since", UtcDateTime()),
    sa.Index(None, "state"),
    sa.Index(None, "owner_id", "state"),
    # War Room / reports: clocks started in a range; covering for the War Room's judged clocks (the
    # table rows are wide: reading them cost more than the rest of the query). `state` says how a
    # stopped clock ended (met, or handed on); named, so the v2 migration can replace it.
    sa.Index(
        JUDGED_CLOCKS_INDEX,
        "sla_id",
        "clock_start",
        "record_id",
        "accountable_owner_id",
        "accountable_team",
        "stopped_at",
        "breached_at",
        "elapsed_seconds",
        "state",
    ),
    sa.Index(None, "breached_at"),  # War Room: breaches today
    sa.Index(None, "record_id"),  # War Room: a lead's clocks (the key leads with sla_id)
    sa.Index(None, "next_change_at"),  # the incremental monitor: clocks due a re-evaluation
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
    # Idempotency key (DESIGN.md): clock identity + checkpoint + recipient + channel, hashed.
    sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
    sa.Column("sla_id", sa.String(80)),
    sa.Column("record_id", sa.String(18)),
    sa.Column("clock_start", UtcDateTime()),
    sa.Column("checkpoint", sa.String(80), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),  # user id, email, channel or queue
    sa.Column("channel", sa.String(20), nullable=False),  # slack, email, crm
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column(
        "status", sa.String(20), nullable=False
    ),  # pending, delivered, failed, superseded, held, digested, rolled_up
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _now_column("created_at"),
    _now_column("not_before"),  # quiet hours and retry back-off
    sa.Column("claimed_until", UtcDateTime()),  # a delivery lease, so overlapping runs don't both send
    sa.Column("delivered_at", UtcDateTime()),
    sa.Column("external_id", sa.Text),  # Slack ts or email Message-ID
    sa.Column("last_error", sa.Text),
    sa.Index(None, "status", "not_before"),
)

#: `handled_checkpoints.record_id` of a notice about no record (a capacity alert, a digest).
NO_RECORD = ""

handled_checkpoints = sa.Table(
    "handled_checkpoints",
    metadata,
    # Every checkpoint acted on (queued in any status, recorded due or superseded), written in the
    # transaction that acts on it: what the decisions read so nothing is decided twice, by key
    # (`leadsla.notify.outbox.handled_checkpoints`). The key guards a concurrent or retried run.
    sa.Column("record_id", sa.String(18), primary_key=True),  # NO_RECORD for notices about none
    sa.Column("sla_id", sa.String(80), primary_key=True),
    sa.Column("clock_start", UtcDateTime(), primary_key=True),
    sa.Column("checkpoint", sa.String(80), primary_key=True),
    _now_column("handled_at"),
)

reconciles = sa.Table(
    "reconciles",
    metadata,
    # One row per full evaluation compared with the incremental state (`leadsla.tasks.monitor`):
    # what differed (corrected by that run), for sla_health (`leadsla.health.reconcile`).
    sa.Column("reconcile_id", sa.Integer, primary_key=True, autoincrement=True),
    _now_column("evaluated_at"),  # the run's `now`
    sa.Column("reason", sa.String(40), nullable=False),  # every_n_runs, policy_changed, asked, many_changed
    sa.Column("clocks", sa.Integer, nullable=False),  # clocks compared
    sa.Column("differences", sa.Integer, nullable=False),  # clocks the incremental state had wrong
    sa.Column("detail", sa.JSON, nullable=False),  # a sample of the differing clocks and columns
    sa.Column("run_id", sa.String(250)),
    sa.Index(None, "evaluated_at"),
)

evaluation_shards = sa.Table(
    "evaluation_shards",
    metadata,
    # A sharded full evaluation's parts (`leadsla.tasks.monitor`): each shard task stages its part
    # here for the one task that merges, decides and writes; keyed by run and shard, so a retried
    # or doubled shard replaces its part. The merge clears other runs' parts.
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("shards", sa.Integer, nullable=False),
    _now_column("evaluated_at"),  # the run's `now`
    _now_column("staged_at"),  # wall time of the write
    sa.Column("part", sa.LargeBinary, nullable=False),  # `store.staging`'s encoding of the part
)

audit = sa.Table(
    "audit",
    metadata,
    # Append-only: triggers (store.guards, re-asserted on every open) refuse UPDATE and DELETE.
    sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
    _now_column("at"),  # when the decision was made (the run's logical time for evaluations)
    _now_column("recorded_at"),  # wall time of the write
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("object_type", sa.String(40)),
    sa.Column("record_id", sa.String(18)),
    sa.Column("sla_id", sa.String(80)),
    sa.Column("clock_start", UtcDateTime()),
    sa.Column("checkpoint", sa.String(80)),
    sa.Column("actor", sa.Text),  # who or what acted: a rule id, a user id, "crm_sync"
    sa.Column("policy_version", sa.String(40)),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("try_number", sa.Integer),
    # The hash chain (`store.chain`): the previous entry's hash and SHA-256 over this entry's content
    # and that hash. Nullable only because version 4 added them; every row has both (a guard refuses
    # an entry without them, and the upgrade hashed the older rows).
    sa.Column("prev_hash", sa.String(64)),
    sa.Column("entry_hash", sa.String(64)),
    sa.Index(None, "record_id", "at"),
    sa.Index(None, "event", "at"),
)

audit_chain = sa.Table(
    "audit_chain",
    metadata,
    # The audit trail's chain head, one row (chain_id 1): the lock every append takes, and what the
    # chain must end in, so deleting the newest entries or emptying the table is detected. Guarded:
    # never deleted, and an update may only move it forward.
    sa.Column("chain_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("genesis_hash", sa.String(64), nullable=False),  # the first entry's prev_hash
    _now_column("started_at"),
    sa.Column("backfilled", sa.Integer, nullable=False),  # entries written before the chain, hashed then
    sa.Column("entries", sa.Integer, nullable=False),  # entries in the chain
    sa.Column("head_audit_id", sa.Integer),  # the newest entry (None: none yet)
    sa.Column("head_hash", sa.String(64), nullable=False),  # its entry_hash (genesis_hash: none yet)
)

#: Events the audit trail records; writing anything else is refused, so a typo can't hide a fact.
AUDIT_EVENTS = frozenset(
    {
        "clock_start",
        "clock_pause",
        "clock_resume",
        "clock_stop",
        "clock_rebase",
        "checkpoint_due",
        "checkpoint_superseded",
        "message_queued",
        "message_sent",
        "message_failed",
        "message_deferred",
        "message_digested",
        "message_rolled_up",
        "cancelled_by_touch",  # a planned warning not sent: the lead was touched before its instant
        "cancelled_by_change",  # a planned warning withdrawn: its clock paused, moved or changed hands
        "capacity_alert",
        "escalation",
        "reassignment",
        "lock_set",
        "lock_released",
        "lock_restored",
        "crm_write",
        "crm_write_conflict",
        "sync",
        "quarantine",
        "policy_loaded",
        "health_finding",
        "war_room_visit",
        "war_room_denied",
        "report_sent",
        "report_skipped",
        "routing",  # a lead given an owner by lead_routing (detail: owner, rule, reason, policy_version)
        "misrouted_lead",  # watch: an owner the routing policy would not have chosen
        "unowned_alert_queued",  # a lead nobody working owns: its alert (or reminder) queued
        "recycle_recommended",  # worked, never answered: the owner and manager told (recycle mode recommend)
        "lead_recycled",  # recycled by lead_recycling (detail: attempts, reason, re-engagement date)
        "lead_reengaged",  # a recycled lead back in the funnel on its re-engagement date
        "stamp_rejected",  # the CRM refused an SLA field's value for a record: not stamped again that clock
        "stamp_field_stopped",  # an SLA field the org lacks or cannot hold: its notice queued, not stamped
    }
)
