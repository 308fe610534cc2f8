"""## sla_reports_quarterly

Quarterly SLA review (MQL criteria, threshold what-if, funnel vs baseline), e-mailed through
SmtpHook (`smtp_default`) to the recipients in
include/config/reports.yaml, for the last full quarter before the run.
HTML with inline charts (Content-ID) and CSV attachments.

Schedule: `schedules.quarterly` in include/config/reports.yaml, read in its `leadership_timezone`
(DST included) when Airflow parses this file; edit the YAML, not this file, to move it.
Param `period` (e.g. `2026-Q3`; empty = the last full one) e-mails that period instead; one not over
yet is reported up to the run's time and titled so.

Complete data only: until every CRM object group has a successful sync that started after the
period's end (for a period to date: within 5 min of the run's time), the task fails with "CRM mirror
not synced past ... yet; the report waits" and Airflow retries it every 5 min for an hour.
Exactly once: each report+period sent is audited (`report_sent`, with this task run and the
Message-ID); a later run for the same report and period sends nothing, audits `report_skipped` and
returns "skipped: already sent at ...". Param `resend=true` sends it again (same Message-ID).
Regenerate any past period into files with
`leadsla report quarterly --period ... --out DIR`.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, dag, task

REPORT = "quarterly"


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
    # A report waits for the CRM mirror to be synced past its period: retried every 5 min for an hour.
    default_args={"owner": "revops", "retries": 12, "retry_delay": dt.timedelta(minutes=5)},
    params={
        "period": Param(
            "",
            type="string",
            pattern=r"^$|^\d{4}-Q[1-4]$",
            description="e.g. 2026-Q3; empty: the last full period before the run",
        ),
        "resend": Param(
            False,
            type="boolean",
            description="e-mail it again even if this report and period was sent before",
        ),
    },
    tags=["leadsla", "reports"],
    doc_md=__doc__,
)
def sla_reports_quarterly():
    @task
    def send(**context) -> dict:
        """Build the report for the `period` param (default: the last full one before the run) and e-mail
        it, once the CRM mirror is synced past the period and unless it was sent before."""
        from leadsla.reports.run import send_report
        from leadsla.store.audit import AuditContext

        params = context["params"]
        return send_report(
            REPORT,
            at=context["dag_run"].run_after,
            period=params["period"] or None,
            resend=bool(params["resend"]),
            context=AuditContext.from_task_context(context),
        )

    send()


sla_reports_quarterly()
