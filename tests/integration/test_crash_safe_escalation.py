"""Crash-safe breach actions and lock keeping, against the Salesforce stand-in on both store
backends: the escalate task is killed (SIGKILL, in a child process) at every step boundary of a
breach action and of lock keeping (claim, CRM write, its record, the store update, the audit, the
outbox mark or the holder's notice, the commit), the next runs retry it, directly or after a CRM
sync, and the retry recognises its own write by its action id: the lock ends when the
first write said and is enforced, each audit entry is there exactly once, no crm_write_conflict,
and the CRM is not written twice (tests/kill_points.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import salesforce_api
from tests.kill_points import KILL_POINTS, Org, run_case, sync_between


def _stand_in(folder: Path) -> Iterator[Org]:
    running = salesforce_api.start(folder)
    env = {
        "REQUESTS_CA_BUNDLE": str(running.ca_path),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": running.connection_json(),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            yield Org(running.store, env)
        finally:
            running.stop()


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """One Salesforce stand-in for the module; every case seeds its own users and lead."""
    yield from _stand_in(tmp_path_factory.mktemp("salesforce"))


@pytest.fixture
def lone_org(tmp_path: Path) -> Iterator[Org]:
    """A Salesforce stand-in of its own: the case's lead is the only one the org has."""
    yield from _stand_in(tmp_path / "salesforce")


@pytest.mark.parametrize(
    ("point_no", "scenario", "barrier"),
    [(n, s, b) for n, (s, b) in enumerate(KILL_POINTS)],
    ids=[f"{s}-{b}" for s, b in KILL_POINTS],
)
def test_a_task_killed_at_a_step_boundary_is_completed_by_its_retry(
    org: Org, store_url: str, point_no: int, scenario: str, barrier: str
) -> None:
    """Each point on each backend; retried directly or after a sync alternately, swapped between
    the backends (every point both ways); `bench/kill_points.py --sync both` runs all four."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgresql"
    synced = sync_between(backend, point_no)
    assert run_case(org, store_url, scenario, barrier, sync_between=synced) == []


def test_a_release_cut_short_is_recorded_when_no_other_lead_is_locked(lone_org: Org, store_url: str) -> None:
    """The release reached the CRM, the task died before recording it, and the sync landed the
    cleared lock: no lead's lock runs any more, and the next escalate still records the release
    (its crm_write and lock_released, once) instead of skipping lock keeping as idle."""
    assert run_case(lone_org, store_url, "release", "crm_written", sync_between=True) == []
