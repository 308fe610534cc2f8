"""
### lead_routing: every new lead reaches the right owner, with its reason; none waits unowned

Runs when `crm_sync` publishes `leadsla://store/crm`, and at least every minute. Decides at the
run's time (`dag_run.run_after`), with the policy's `routing:` section (include/config/
sla_policy.yaml); every side effect is keyed, so a retry or a re-run does it once.

Tasks
- **route**: leads in a routed status (New, MQL) owned by an intake queue, an inactive user or
  nobody get an owner: suppression first (a customer's or open opportunity's account -> its
  owner; a duplicate of an open lead -> that lead's owner), then the territory's team, a score
  tier, and a weighted round robin that skips inactive, away and (for leads that need an answer
  now) off-hours reps. Owner, `Routing_Reason__c`, rule and policy version are written in one
  conditional CRM write per lead; a lead someone changed meanwhile is re-read and re-decided, a
  locked or manually owned lead is never moved. Each routed lead is audited. In `mode: watch`
  (and for `watch_teams`) nothing is written: owners that break suppression or the territory are
  reported to the team manager and RevOps (`leadsla.tasks.routing`).
- **alert_unowned**: a watched lead owned by a queue, an inactive user or nobody alerts its team's
  manager and RevOps through the outbox (sent by sla_monitor's deliver task within the minute),
  then again every `routing.unowned.repeat` in working hours until someone owns it.

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
        timetable=CronTriggerTimetable("* * * * *", timezone="UTC"), assets=[CRM_ASSET]
    ),
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # a run every minute; one still going after 10 min is hung
    dagrun_timeout=dt.timedelta(minutes=10),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(seconds=15)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["routing", "ownership"],
    doc_md=__doc__,
)
def lead_routing():
    @task
    def route(**context) -> dict:
        """Owners for what needs one -> CRM (owner + reason, one write per lead), audit."""
        from leadsla.tasks import routing

        return routing.route(context)

    @task(trigger_rule="all_done")
    def alert_unowned(routed: dict, **context) -> dict:
        """Leads nobody working owns -> alerts in the outbox (once per lead and reminder)."""
        from leadsla.tasks import routing

        return routing.unowned(context)

    alert_unowned(route())


lead_routing()
