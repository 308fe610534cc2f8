"""## sla_reports_feedback

Weekly feedback-loop digest to Marketing Ops, e-mailed through SmtpHook (`smtp_default`) to the recipients in
include/config/reports.yaml, for the last full week before the run.
HTML with inline charts (Content-ID) and CSV attachments.

Schedule: `schedules.feedback` in include/config/reports.yaml, read in its `leadership_timezone`
(DST included) when Airflow parses this file; edit the YAML, not this file, to move it.
Param `period` (e.g. `2026-W47`; empty = the last full one) e-mails that period instead; one not over
yet is reported up to the run's time and titled so. Regenerate any past period into files with
`leadsla report feedback --period ... --out DIR`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, dag, task

REPORT = "feedback"


def _schedule() -> CronTriggerTimetable:
    """The cron and timezone from reports.yaml (a small file read, no heavy import at parse time)."""
    from leadsla.reports.schedule import report_schedule

    cron, timezone = report_schedule(REPORT)
    return CronTriggerTimetable(cron, timezone=timezone)


@dag(
    schedule=_schedule(),
    start_date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "revops", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    params={"period": Param("", type="string", pattern=r"^$|^\d{4}-W\d{2}$",
                            description="e.g. 2026-W47; empty: the last full period before the run")},
    tags=["leadsla", "reports"],
    doc_md=__doc__,
)
def sla_reports_feedback():
    @task
    def send(**context) -> dict:
        """Build the report for the `period` param (default: the last full one before the run) and e-mail it."""
        from leadsla.reports.run import send_report

        return send_report(REPORT, at=context["dag_run"].run_after, period=context["params"]["period"] or None)

    send()


sla_reports_feedback()
