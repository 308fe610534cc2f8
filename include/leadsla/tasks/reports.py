"""The report DAGs' shape and task entry points: `report_dag` makes `dags/sla_reports_<report>.py`
a DAG named after its function, and every report DAG runs `wait_for_data >> send`.

Imported at DAG-file top level, so this module's top level is `airflow.sdk` and constants only;
the schedule is read (one small YAML file, `leadsla.reports.schedule`) when a DAG file calls
`report_dag`, and the store and report code are imported inside the task bodies, at run time.
The report is the DAG id's suffix (`sla_reports_weekly` -> `weekly`), declared once by the DAG
function's name. The domain logic (periods, completeness, building, sending once) stays in
`leadsla.reports`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, PokeReturnValue, dag, task

from leadsla.tasks.failure_alerts import on_failure

log = logging.getLogger(__name__)

DAG_PREFIX = "sla_reports_"
OWNER = "revops"
#: Waiting for complete data is the sensor's: a poke every 5 minutes for up to an hour.
POKE_INTERVAL = dt.timedelta(minutes=5)
WAIT_TIMEOUT = dt.timedelta(hours=1)
#: A report run: the wait, then the send and its retries; a run still going after this is failed.
RUN_TIMEOUT = WAIT_TIMEOUT + dt.timedelta(hours=1)
#: Retries are for failures (SMTP refused, store unreachable), not for waiting.
RETRIES = 2
RETRY_DELAY = dt.timedelta(minutes=1)
#: The `period` Param per period kind: its pattern (empty = the last full period) and an example.
PERIOD_PARAMS = {
    "week": (r"^$|^\d{4}-W\d{2}$", "2026-W47"),
    "month": (r"^$|^\d{4}-\d{2}$", "2026-10"),
    "quarter": (r"^$|^\d{4}-Q[1-4]$", "2026-Q3"),
}


def report_dag(*, period: str, doc_md: str) -> Callable[[Callable[[], None]], Callable[..., Any]]:
    """`@dag` with the settings every report DAG shares, in the house keyword order.

    The decorated function's name is the dag_id, `sla_reports_<report>`; its schedule is
    `schedules.<report>` of include/config/reports.yaml in `leadership_timezone`, read now (at
    parse time).

    Args:
        period: the kind of period the report covers (week, month, quarter): the `period` Param's
            pattern and example.
        doc_md: the DAG's documentation (the DAG file's docstring).

    Raises:
        ReportScheduleError: reports.yaml names no usable schedule or timezone (a DAG import error
            naming the key).
    """
    pattern, example = PERIOD_PARAMS[period]

    def decorate(func: Callable[[], None]) -> Callable[..., Any]:
        return dag(
            schedule=_schedule(func.__name__.removeprefix(DAG_PREFIX)),
            start_date=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            catchup=False,
            max_active_runs=1,
            dagrun_timeout=RUN_TIMEOUT,
            default_args={"owner": OWNER, "retries": RETRIES, "retry_delay": RETRY_DELAY},
            on_failure_callback=on_failure(),  # data engineering, on Slack and by e-mail
            params={
                "period": Param(
                    "",
                    type="string",
                    pattern=pattern,
                    description=f"e.g. {example}; empty: the last full {period} before the run",
                ),
                "resend": Param(
                    False,
                    type="boolean",
                    description="e-mail it again even if this report and period was sent before",
                ),
            },
            tags=["leadsla", "reports"],
            doc_md=doc_md,
        )(func)

    return decorate


def _schedule(report: str) -> CronTriggerTimetable:
    from leadsla.reports.schedule import report_schedule

    cron, timezone = report_schedule(report)
    return CronTriggerTimetable(cron, timezone=timezone)


def data_status(name: str, *, at: dt.datetime, period: str | None = None, context=None) -> dict:
    """Whether the store is complete for the period a run of report `name` at `at` covers, under
    the configuration in force (`tasks.configuration.in_force`; `context`: the task run's
    `AuditContext`).

    Returns:
        {"report", "period" (its title), "missing"}: `missing` is None when the report can be
        sent, else the sentence saying what the store still lacks.
    """
    from leadsla.reports.run import data_gap
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext
    from leadsla.tasks.configuration import in_force

    engine = open_store()
    try:
        configuration = in_force(engine, context or AuditContext(), now=at).configuration
        p, missing = data_gap(
            name,
            at=at,
            period=period,
            engine=engine,
            groups=sorted(configuration.mapping.groups),
            cfg=configuration.reports,
        )
    finally:
        engine.dispose()
    if missing:
        missing = f"{name} report {p.title}: {missing}"
    return {"report": name, "period": p.title, "missing": missing}


def _run(context) -> dict:
    """The report's name, the run's time and the asked period, from the task context."""
    return {
        "name": context["dag_run"].dag_id.removeprefix(DAG_PREFIX),
        "at": context["dag_run"].run_after,
        "period": context["params"]["period"] or None,
    }


@task.sensor(poke_interval=POKE_INTERVAL, timeout=WAIT_TIMEOUT, mode="reschedule", soft_fail=False)
def wait_for_data(**context) -> PokeReturnValue:
    """
    #### Wait until the store is complete for the report's period

    The period is the `period` param, else the last full one before the run's time (`run_after`).
    Complete means every CRM object group has a successful sync that started after the period's
    end (for a period to date: within 5 minutes of the run's time) and `sla_monitor` evaluated
    the SLA clocks after that sync. Until then each poke logs what is missing ("weekly report
    2026-W46: CRM mirror not synced past ... yet (...); the report waits") and the task is *up for
    reschedule*, holding no worker slot, for the next poke 5 minutes later. After an hour without
    complete data it fails (sensor timeout) and nothing is sent.
    """
    from leadsla.store.audit import AuditContext

    status = data_status(**_run(context), context=AuditContext.from_task_context(context))
    if status["missing"]:
        log.info("%s", status["missing"])
    return PokeReturnValue(is_done=status["missing"] is None, xcom_value=status)


@task
def send(**context) -> dict:
    """
    #### Build the report and e-mail it, once per report and period

    Checks the store again (a resync since the sensor's poke must not send a partial report: the
    try fails and its retry checks again), builds the report and e-mails it through SmtpHook
    (`smtp_default`) to the report's recipients in include/config/reports.yaml: HTML with inline
    charts and CSV attachments. Each report and period is sent once: audited `report_sent` (this
    task run, the Message-ID); a later run for the same report and period sends nothing, audits
    `report_skipped` and returns "skipped: already sent at ...". The `resend` param sends it again
    (same Message-ID). The recipients, the measured SLA and how it counts are the configuration in
    force: the files when they agree, else the last good ones (`leadsla config check`).
    """
    from leadsla.reports.run import send_report
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext
    from leadsla.tasks.configuration import in_force

    run, audit = _run(context), AuditContext.from_task_context(context)
    engine = open_store()
    try:
        configuration = in_force(engine, audit, now=run["at"]).configuration
        return send_report(
            **run,
            resend=bool(context["params"]["resend"]),
            context=audit,
            engine=engine,
            groups=sorted(configuration.mapping.groups),
            cfg=configuration.reports,
            policy=configuration.policy,
        )
    finally:
        engine.dispose()
