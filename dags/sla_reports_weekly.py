"""
### sla_reports_weekly: leadership's SLA summary of the last full week

For the VPs (`recipients.weekly`): handoffs, adherence rate and violations, first touch in business
hours against the target, the revenue affected by delays (its assumption printed), the violation
trend over the last weeks and compliance by team. Weeks start on Monday in `leadership_timezone`.

Runs at `schedules.weekly` (Monday 08:00 in the shipped include/config/reports.yaml), read when
Airflow parses this file: edit the YAML to move it. **wait_for_data** holds the run until the
store is complete for the week; **send** mails it once (each task's doc says how). Trigger with
`period` = `2026-W47` for another week. Files instead of mail: `leadsla report weekly --out DIR`.
"""

from __future__ import annotations

from airflow.sdk import chain

from leadsla.tasks.reports import report_dag, send, wait_for_data


@report_dag(period="week", doc_md=__doc__)
def sla_reports_weekly():
    chain(wait_for_data(), send())


sla_reports_weekly()
