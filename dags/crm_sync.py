"""
### crm_sync: keep the store in step with Salesforce, within seconds, cheaply

Reads what changed in Salesforce since the last committed watermark (minus a 5-minute overlap, so
records committed late are not missed) and lands it in the store: Leads, their Status/Owner
history, Tasks and Events every minute; Users, queues, Opportunities (+ stage history) and Accounts
every 15 minutes. Deletes arrive through `queryAll`. It also runs on `leadsla://salesforce/changes`,
which the Change Data Capture listener in the triggerer emits for each batch of CRM changes: with the
stream healthy, a minute run without changes queries nothing (the watermark query runs only as the
15-minute safety net), and the groups whose objects changed sync at once; with streaming off or
down it polls every minute. Each sync task's log and XCom `feed` say which (mode, since, why).
The field mapping is `include/config/crm_fields.yaml`; it is checked against `describe()` once a
day or when it changes.

Tasks
- **check_mapping**: first, streaming or polling (XCom `feed`: mode, since, why, per group): while
  the stream is healthy and nothing is due, the run ends here (every other task skipped, no API
  call); then the mapping against the org (no API call when a recent check stands).
- **sync_leads**, **sync_org**: one per object group, page by page, each page one transaction with
  its watermark. `REQUEST_LIMIT_EXCEEDED` ends the task as *skipped* with the reason in the log;
  the watermark stays, the next run resumes. Then the clock rows of the records it landed are
  written at once (XCom `clocks`; `leadsla.tasks.landed_clocks`): a SAL change has its clock
  without waiting for the monitor's run, which still takes every decision.
- **commit_replay**: after both groups landed, the triggering change events' replay ids are
  committed, so a restarted listener resumes after them and misses nothing.
- **report**: first re-validates held (quarantined) rows with the current suites and mapping
  (rows that now pass are landed and released; XCom `quarantine`), then API calls used, records
  changed, the org's remaining allowance (log + XCom), and a warning when the project's share
  would exceed its daily budget. One task, not two in a row: a change event's run waits for the
  run before it to end (one at a time), and every task start is seconds on a busy worker. Each
  sync task runs the data-quality gate (`leadsla.quality`, GX suites in great_expectations/)
  between extract and load: errors are quarantined with their reasons, warnings loaded and
  flagged; its summary is in the XCom.
- **publish** (straight after the two groups, beside the report, so the monitor starts as soon as
  a change lands): emits the asset `leadsla://store/crm` (which `sla_monitor` runs on) only when a
  group changed a record; otherwise it is skipped, and a skipped task emits no asset event.

Connections: `salesforce_default` (SalesforceHook), `leadsla_store` (the store).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from leadsla.tasks.assets import CRM_ASSET, CRM_CHANGES
from leadsla.tasks.failure_alerts import on_failure

OWNER = "data-engineering"


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=[CRM_CHANGES]
    ),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # a run every minute; one still going after 30 min is hung (pages commit as they land)
    dagrun_timeout=dt.timedelta(minutes=30),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(seconds=20)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["crm", "salesforce", "sync"],
    doc_md=__doc__,
)
def crm_sync():
    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def check_mapping(**context) -> bool:
        """How this run hears of CRM changes (XCom `feed`: streaming or polling, since when, why);
        False ends the run here (no query, nothing to land) while the stream is healthy and no
        event, safety net or cadence is due. Otherwise the field mapping against the org's
        describe() (cached per mapping, daily; XCom `mapping`). One task, so an event's run
        starts its sync one task earlier."""
        from leadsla.tasks.sync import change_events, run_feed

        events = change_events(context.get("triggering_asset_events"))
        feed = run_feed(events, run_id=context["run_id"], check_mapping=True)
        context["ti"].xcom_push(key="feed", value=feed)
        return feed["query"]

    def _sync(group: str, context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from leadsla.tasks.context import audit_context
        from leadsla.tasks.sync import change_events, run_group

        events = change_events(context.get("triggering_asset_events"))
        summary = run_group(group, run_id=context["run_id"], events=events, context=audit_context(context))
        if summary["status"] == "limited":
            context["ti"].xcom_push(key="return_value", value=summary)
            raise AirflowSkipException(summary["message"])
        return summary

    @task
    def sync_leads(**context) -> dict:
        """Leads, LeadHistory, Tasks, Events."""
        return _sync("leads", context)

    @task
    def sync_org(**context) -> dict:
        """Users, queues, Opportunities and their history, Accounts (when due)."""
        return _sync("org", context)

    @task
    def commit_replay(**context) -> dict:
        """Commit the triggering change events' replay ids, now that their changes are landed."""
        from leadsla.tasks.sync import change_events, run_commit_replay

        return run_commit_replay(
            change_events(context.get("triggering_asset_events")), run_id=context["run_id"]
        )

    @task(trigger_rule="none_failed")
    def report(**context) -> dict:
        """Re-validate held (quarantined) rows (those that now pass are landed and released), then
        calls used, records changed, the org's remaining allowance, the budget warning."""
        from leadsla.tasks.context import audit_context
        from leadsla.tasks.sync import run_replay, run_report

        quarantine = run_replay(run_id=context["run_id"])
        summaries = [context["ti"].xcom_pull(task_ids=t) for t in ("sync_leads", "sync_org")]
        return {**run_report(summaries, context=audit_context(context)), "quarantine": quarantine}

    # Straight after the groups, not after the report: the monitor starts as soon as a change lands.
    @task(outlets=[CRM_ASSET], trigger_rule="none_failed")
    def publish(**context) -> int:
        """Emit the crm asset when a group changed a record; skip (no asset event) when none did."""
        from airflow.sdk.exceptions import AirflowSkipException

        summaries = [context["ti"].xcom_pull(task_ids=t) for t in ("sync_leads", "sync_org")]
        changed = sum(s["records_changed"] for s in summaries if s)
        if not changed:
            raise AirflowSkipException("no CRM record changed: no asset event")
        return changed

    groups = [sync_leads(), sync_org()]
    check_mapping() >> groups
    groups >> report()
    groups >> commit_replay()
    groups >> publish()


crm_sync()
