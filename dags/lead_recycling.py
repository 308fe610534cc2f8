"""
### lead_recycling: count every accepted lead's attempts; recycle the ones worked without an answer

Runs when `crm_sync` publishes `leadsla://store/crm`, and at least every 15 minutes (the days of the
rule pass without any CRM change). Decides at the run's time (`dag_run.run_after`) with the
policy's `recycle:` section (include/config/sla_policy.yaml); every side effect is keyed or written
only on change, so a retry or a re-run does it once.

Task
- **recycle**: for each lead in SAL, its attempts since it entered SAL (the touches the sales_touch
  SLA counts: the owner's calls, e-mails and meetings; never a sequence or mass e-mail, never an
  automation user's activity) stamped on `Contact_Attempts__c` when the number changes. A lead with
  3 attempts, the first 5 business days ago (the owner's team calendar), and no reply or meeting
  since: `mode: recommend` tells the owner and their manager once (Slack and e-mail, a link to the
  record); `mode: auto` sets Status Recycled with the reason "No Response" and a re-engagement date
  in one conditional CRM write, after asking the CRM that nobody worked the lead meanwhile. A
  recycled lead whose re-engagement date has come re-enters MQL when the policy says so. Every
  write is audited (`leadsla.tasks.recycling`).

Connections: `leadsla_store`, `salesforce_default`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from leadsla.tasks.assets import CRM_ASSET
from leadsla.tasks.failure_alerts import on_failure

OWNER = "data-engineering"


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"), assets=[CRM_ASSET]
    ),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=30),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["recycling", "attempts"],
    doc_md=__doc__,
)
def lead_recycling():
    @task
    def recycle(**context) -> dict:
        """Attempts stamped; due leads recycled (auto) or recommended; recycled leads due back re-entered."""
        from leadsla.tasks import recycling

        return recycling.recycle(context)

    recycle()


lead_recycling()
