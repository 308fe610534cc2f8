"""
### sla_reports_feedback: what Sales did with Marketing's leads last week

The feedback loop to Marketing Ops (`recipients.feedback`): the week's MQLs and how many Sales
rejected, the rejection reasons, acceptance by lead source and the campaigns producing SQLs, so
lead scoring and campaigns can be tuned.

Weekly digest, sent at `schedules.feedback` of include/config/reports.yaml (Monday 08:00 as
shipped) in `leadership_timezone`; the YAML is read at parse time, so a change there moves it.
**wait_for_data** >> **send**: the run waits for complete data, then the digest is mailed once.
A `period` such as `2026-W47` reports that week; `leadsla report feedback` writes it to files.
"""

from __future__ import annotations

from airflow.sdk import chain

from leadsla.tasks.reports import report_dag, send, wait_for_data


@report_dag(period="week", doc_md=__doc__)
def sla_reports_feedback():
    chain(wait_for_data(), send())


sla_reports_feedback()
