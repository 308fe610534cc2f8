"""The DAGs on CeleryExecutor with two workers, PostgreSQL and Redis, for real on this machine.

The session fixture starts tests/distributed_stack.py's stack (embedded PostgreSQL holding
Airflow's metadata, Celery's results and the store; Redis as the broker; scheduler, dag-processor,
triggerer, api-server and two Celery workers; the Salesforce, Slack, SMTP and SMS stand-ins with a
simulated org whose demo desk has open breaches) and `drive`s it once: crm_sync, sla_monitor on
the scheduler, the worker running `deliver` SIGKILLed while it holds leased rows, the weekly report
to date. The tests read what happened from the metadata DB, the store and the stand-ins.

One xdist group: the whole stack runs on one test worker, once (about 4 minutes).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distributed_stack import WORKERS, DistributedStack, Outcome, drive

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.xdist_group("distributed")]


@pytest.fixture(scope="session")
def outcome() -> Iterator[Outcome]:
    # Outside pytest's basetemp: its per-worker folders are 0700 and pruned by concurrent runs.
    root = Path(tempfile.mkdtemp(prefix="leadsla-distributed-"))
    try:
        with DistributedStack(root) as stack:
            yield drive(stack)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_tasks_ran_on_both_workers(outcome: Outcome) -> None:
    per_worker = outcome.tasks_per_worker
    assert set(per_worker) == set(WORKERS), per_worker
    dags = {t.dag_id for t in outcome.tries if t.state == "success"}
    assert dags == {"crm_sync", "sla_monitor", "sla_reports_weekly"}, dags


def test_the_killed_worker_held_rows_and_its_tasks_were_retried_elsewhere(outcome: Outcome) -> None:
    assert outcome.killed in WORKERS and outcome.claimed_at_kill
    survivor = next(w for w in WORKERS if w != outcome.killed)
    killed_run = [t for t in outcome.tries if t.run_id == outcome.killed_run and t.task_id == "deliver"]
    assert {t.hostname for t in killed_run} == {outcome.killed, survivor}, killed_run
    final = max(killed_run, key=lambda t: t.try_number)
    assert final.state == "success" and final.hostname == survivor, final


def test_every_due_message_was_delivered_exactly_once(outcome: Outcome) -> None:
    assert len(outcome.due) >= 20, f"too few messages to show anything: {len(outcome.due)}"
    assert outcome.lost == []
    assert outcome.delivered.duplicates == 0
    keys = {r.idempotency_key for r in outcome.due if r.channel in ("slack", "email")}
    assert keys <= outcome.delivered.keys
    # SMTP and SMS cannot be asked "did you get this?": a worker killed between the server's accept and
    # the row's mark resends it with the same Message-ID / reference, only a row it held at the kill.
    assert outcome.delivered.email_resends + outcome.sms_resends <= len(outcome.claimed_at_kill)


def test_the_rows_the_killed_worker_held_were_delivered_after_their_lease(outcome: Outcome) -> None:
    held = {r.idempotency_key: r for r in outcome.outbox if r.idempotency_key in outcome.claimed_at_kill}
    assert held and all(r.status == "delivered" for r in held.values()), held


def test_the_report_arrived_once(outcome: Outcome) -> None:
    assert outcome.report_state == "success" and outcome.report_message_id
    assert outcome.report_emails == 1
