"""
### sla_monitor: evaluate every SLA clock, queue what is due, deliver it, escalate breaches, stamp the records

Runs when `crm_sync` publishes `leadsla://store/crm`, and at least every minute. Every decision is
taken at the run's own time (`dag_run.run_after`), never "now", so clearing or re-running an old
run decides the same; every side effect is keyed (outbox idempotency keys), so it happens once.

Tasks
- **shards** -> **evaluate_shard** (mapped): a full evaluation of more than `LEADSLA_SHARD_ABOVE`
  open clocks (default 20,000) fans out: `shards` cuts the record ids into ranges, each mapped
  `evaluate_shard` evaluates its ranges on a read-only connection and stages its part in the store
  (`evaluation_shards`, keyed by run and shard), and `evaluate` merges them, decides and writes in
  its one transaction, so the outbox and the audit stay exactly-once. Otherwise `shards` returns
  none, `evaluate_shard` is skipped and `evaluate` does it all.
- **evaluate**: evaluate the clocks that can have changed (records landed since the last run,
  clocks whose next change is due; every clock on a policy change and every
  `LEADSLA_RECONCILE_EVERY` runs, default 60, compared with the incremental state), decide, then
  in one short transaction persist them, audit clock starts/stops and due/superseded checkpoints,
  queue Slack/e-mail messages and breach actions (`leadsla.tasks.monitor`).
  The warnings and breaches falling due within the next minutes are queued for their instants
  (`leadsla.decisions.ahead`), which `sla_delivery` keeps (a planned breach's action too).
- **deliver**: send due messages from the outbox under short leases, and keep at it for up to
  45 s of the minute (`LEADSLA_DELIVERY_BUDGET_S`): a failed send is retried 5 s and 15 s later,
  rows of a killed deliverer are taken once their 25 s lease lapses (`leadsla.notify.delivery`).
  Beside `sla_delivery`'s loop it covers the seconds between two of its runs.
- **escalate**: reassign breached leads to the manager or the "Breached SLA" queue and lock them
  for 24 h through the CRM write-back (`leadsla.escalation.breach`); first, keep existing locks: an
  automated reassignment of a locked lead is put back and its holder told; the holder's own
  owner or status change releases the lock (`leadsla.escalation.locks`).
- **stamp** (after escalate): write each watched Lead's clock on the record where it changed: due
  time, colour, state, first response and business minutes to it, breach flag and time,
  accountable owner, policy version (crm_fields.yaml `sla_fields`), 200 per composite call through
  the CRM write-back, audited; a colour that turns at this minute is stamped at this minute.
  Inside its share of the daily API budget (`stamping.budget_share`), else only breaches and reds
  (`leadsla.stamping`).

Connections: `leadsla_store`, `salesforce_default`, `slack_api_default`, `smtp_default`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from leadsla.tasks.assets import CRM_ASSET
from leadsla.tasks.failure_alerts import on_failure

OWNER = "data-engineering"


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=[CRM_ASSET]
    ),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # a run every minute; deliver alone is bounded by its 110 s timeout and 2 retries
    dagrun_timeout=dt.timedelta(minutes=10),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(seconds=15)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["sla", "alerts", "escalation"],
    doc_md=__doc__,
)
def sla_monitor():
    @task
    def shards(**context) -> list[dict]:
        """This run's shards: none unless a full evaluation of more than LEADSLA_SHARD_ABOVE open clocks."""
        from leadsla.tasks import monitor

        return monitor.shards(context)

    @task
    def evaluate_shard(shard: dict, **context) -> dict:
        """One shard's records evaluated (read-only) and staged in the store for evaluate to merge."""
        from leadsla.tasks import monitor

        return monitor.evaluate_shard(shard, context)

    @task(trigger_rule="none_failed")  # runs when there are no shards (evaluate_shard skipped)
    def evaluate(planned: list[dict], **context) -> dict:
        """Clocks at the run's time -> clocks table, audit, outbox (shards merged); one write transaction."""
        from leadsla.tasks import monitor

        return monitor.evaluate(context, planned)

    @task
    def escalate(summary: dict, **context) -> dict:
        """Lock keeping first (what the sync just landed), then new breach actions, via the CRM write-back."""
        from leadsla.tasks import monitor

        return monitor.escalate(context)

    @task
    def stamp(escalated: dict, **context) -> dict:
        """The SLA fields of the Leads whose clock changed, through the CRM write-back (after escalate)."""
        from leadsla.tasks import monitor

        return monitor.stamp(context)

    # The budget keeps a try inside its minute; the timeout only catches a hung one (budget plus
    # one lease-bounded send fit well inside it), and its retry takes the rows up again.
    @task(execution_timeout=dt.timedelta(seconds=110))
    def deliver(summary: dict, **context) -> dict:
        """Due Slack and e-mail messages for up to the delivery budget; leases run on the wall clock."""
        from leadsla.tasks import monitor

        return monitor.deliver(context)

    planned = shards()
    staged = evaluate_shard.expand(shard=planned)
    summary = evaluate(planned)
    staged >> summary
    stamp(escalate(summary))
    deliver(summary)


sla_monitor()
