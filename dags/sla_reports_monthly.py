"""
### sla_reports_monthly: the SLA maintenance review of the last month

RevOps' monthly check that the SLAs still fit (`recipients.monthly`): the red flags, the refinement
triggers against the previous month and the baseline month, the cherry-picking audit (leads taken
from a queue by the rep who took them, routed leads moved soon after, reps' shares of hot and
accepted leads against their weighted share; each finding names the leads and reps), root causes
(hour of week, source, owner load; systemic or individual), the funnel and the reps.

The 1st of each month at 07:00 (`schedules.monthly`, in leadership's timezone, from
include/config/reports.yaml at parse time). Tasks: **wait_for_data**, then **send**.
`period` (e.g. `2026-10`) picks another month, one not over yet is cut at the run's time.
"""

from __future__ import annotations

from airflow.sdk import chain

from leadsla.tasks.reports import report_dag, send, wait_for_data


@report_dag(period="month", doc_md=__doc__)
def sla_reports_monthly():
    chain(wait_for_data(), send())


sla_reports_monthly()
