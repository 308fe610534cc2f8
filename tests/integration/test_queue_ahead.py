"""The monitor reads the recipients' queues while it evaluates (`tasks.monitor._queue_ahead`): on
PostgreSQL in a thread on a connection of its own, on SQLite in the run's own snapshot; the
decisions get the queues either way, a failure of that read fails the run before anything is
written, and no connection is left checked out."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from leadsla.notify import outbox
from leadsla.store import schema
from leadsla.tasks.monitor import run_monitor
from tests.integration.test_incremental_monitor import POLICY, SAL_AT, URL, ctx, seed


def open_connections(engine: sa.Engine) -> list[int]:
    """A live count of `engine`'s connections checked out of its pool (any pool class)."""
    count = [0]
    sa.event.listen(engine, "checkout", lambda *a: count.__setitem__(0, count[0] + 1))
    sa.event.listen(engine, "checkin", lambda *a: count.__setitem__(0, count[0] - 1))
    return count


def test_the_queues_are_read_beside_the_evaluation_and_reach_the_decisions(store, monkeypatch) -> None:
    seed(store)
    checked_out = open_connections(store)
    read_in: list[str] = []
    real = outbox.queue_of

    def queue_of(*args, **kwargs):
        read_in.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(outbox, "queue_of", queue_of)
    run_monitor(store, SAL_AT + dt.timedelta(minutes=1), ctx("r1"), policy=POLICY, url=URL)
    warned = run_monitor(store, SAL_AT + dt.timedelta(hours=2, minutes=5), ctx("r2"), policy=POLICY, url=URL)
    assert warned["due"] == 5 and warned["queued"] > 0
    if store.dialect.name == "postgresql":
        assert len(read_in) == 2 and all(name.startswith("leadsla-queue") for name in read_in)
    else:
        assert read_in == ["MainThread", "MainThread"]
    assert checked_out == [0]


def test_a_failed_queue_read_fails_the_run_and_writes_nothing(store, monkeypatch) -> None:
    seed(store)
    checked_out = open_connections(store)

    def broken(*args, **kwargs):
        raise RuntimeError("the outbox could not be read")

    monkeypatch.setattr(outbox, "queue_of", broken)
    with pytest.raises(RuntimeError, match="the outbox could not be read"):
        run_monitor(store, SAL_AT + dt.timedelta(minutes=1), ctx("r1"), policy=POLICY, url=URL)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.evaluations)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.clocks)).scalar() == 0
    assert checked_out == [0]
