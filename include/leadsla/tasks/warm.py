"""Heavy imports done once, in the process the task processes are forked from.

A task process starts as a fork of the process that runs it: the scheduler's LocalExecutor workers
(forked from the scheduler) or a Celery worker's pool. What that parent imported, every task has
for free; what it did not, every task imports again. Great Expectations takes about 5 s to import
(10 s on a loaded 2-core machine) and every crm_sync sync task that screens a page pays it: on a
change event's run that was most of the time between the CRM change and its clock in the store.

`warm` imports those modules in such parents only (`airflow scheduler` with the LocalExecutor,
`airflow celery worker`), never in the DAG processor (DAG files import no GX), the triggerer, the
API server or a CLI command. Airflow runs it at start-up, before the executor forks, from its
local-settings hook (`plugins/airflow_local_settings.py`; a deployment with its own
`airflow_local_settings` calls `warm` from there). Importing is all it does: no context, file or
thread is opened, so forking after it is as safe as before.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: The modules a task imports that take seconds (the data-quality gate's).
HEAVY = ("great_expectations",)


def forks_tasks(argv: Sequence[str], executor: str) -> bool:
    """Whether this process (its command line, the configured executor) forks task processes."""
    command = [a for a in argv[1:] if not a.startswith("-")]
    if command[:1] == ["scheduler"]:
        return "LocalExecutor" in executor
    return command[:2] == ["celery", "worker"]


def warm(argv: Sequence[str], executor: str) -> list[str]:
    """Import `HEAVY` when this process forks task processes; returns the modules imported."""
    if not forks_tasks(argv, executor):
        return []
    started = time.monotonic()
    for name in HEAVY:
        importlib.import_module(name)
    log.info("task imports warmed in %.1f s: %s", time.monotonic() - started, ", ".join(HEAVY))
    return list(HEAVY)
