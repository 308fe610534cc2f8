"""
### sla_reports_quarterly: the quarterly SLA review

Leadership's quarter (`recipients.quarterly`): the SLA threshold review (what each alternative
target would have meant, response time against conversion to SQL, and a recommendation), whether
the MQL criteria still select leads that convert, and the funnel against the baseline month.

Scheduled by `schedules.quarterly` (first day of each quarter, 07:00 in `leadership_timezone`) of
include/config/reports.yaml, which Airflow reads as it parses this file.

wait_for_data >> send. Param `period`: a quarter like `2026-Q3`.
"""

from __future__ import annotations

from airflow.sdk import chain

from leadsla.tasks.reports import report_dag, send, wait_for_data


@report_dag(period="quarter", doc_md=__doc__)
def sla_reports_quarterly():
    chain(wait_for_data(), send())


sla_reports_quarterly()
