"""What an entry point reads from the Airflow task context: the run's time and who did it.

Every decision uses the run's own time (`dag_run.run_after`), never "now", so clearing or
re-running an old run decides the same; the audit trail names the task run that did it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from leadsla.store.audit import AuditContext


def run_time(context: Mapping[str, Any]) -> dt.datetime:
    """The run's time: `dag_run.run_after` (the schedule's instant, or the trigger time)."""
    return context["dag_run"].run_after


def audit_context(context: Mapping[str, Any]) -> AuditContext:
    """The dag_id/run_id/task_id/try_number every audit entry of this task run carries."""
    return AuditContext.from_task_context(context)
