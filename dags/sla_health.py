"""
### sla_health: the SLA system diagnoses itself, daily and on demand

Runs the known failure-mode checks (`leadsla.health`): SLA timer not starting, notifications not
reaching reps, SLA counted on calendar hours (no hours, holidays running out), stale data,
rejection reason not required, round-robin skipping reps, MQL leakage, breaches not escalating.
Each finding has a severity, the affected records and how to fix it; findings are stored in
`health_findings` (reports, War Room) and RevOps gets ONE digest per run by Slack and e-mail
(outbox notices, delivered by sla_monitor's delivery).

Trigger it by hand from the UI for an on-demand check. Tunables: include/config/quality.yaml `health`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from leadsla.tasks.failure_alerts import on_failure

OWNER = "revops"


@dag(
    schedule="0 6 * * *",
    start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # daily; every check is a few queries
    dagrun_timeout=dt.timedelta(hours=1),
    default_args={"owner": OWNER, "retries": 2, "retry_delay": dt.timedelta(minutes=2)},
    on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
    tags=["health", "sla", "revops"],
    doc_md=__doc__,
)
def sla_health():
    @task
    def check(**context) -> dict:
        """Run every check against the active policy; store findings; queue one RevOps digest."""
        from leadsla.tasks import health

        return health.check(context)

    check()


sla_health()
