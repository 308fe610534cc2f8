"""## sla_reports_monthly

Monthly SLA maintenance review (red flags, refinement triggers, root causes), e-mailed through SmtpHook (`smtp_default`) to the recipients in
include/config/reports.yaml, for the last full month before the run (`0 7 1 * *` in America/New_York).
HTML with inline charts (Content-ID) and CSV attachments. Regenerate any past period with
`leadsla report monthly --period ... --out DIR`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, dag, task

REPORT = "monthly"


@dag(
    schedule=CronTriggerTimetable("0 7 1 * *", timezone="America/New_York"),
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "revops", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["leadsla", "reports"],
    doc_md=__doc__,
)
def sla_reports_monthly():
    @task
    def send(**context) -> dict:
        """Build the report for the period before the run's time and e-mail it."""
        from leadsla.reports.run import send_report

        return send_report(REPORT, at=context["dag_run"].run_after)

    send()


sla_reports_monthly()
