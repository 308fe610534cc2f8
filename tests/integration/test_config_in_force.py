"""The DAGs' start-up refuses a configuration whose files disagree, and a running deployment keeps
its last good one (`leadsla.tasks.configuration.in_force`, through the real entry points, on both
store backends):

- a new store and files that disagree: the task fails with one ConfigurationError listing every
  problem, and nothing is written;
- after a good run, an edit that breaks the files is not applied (a changed target stays the old
  one), the data-engineering channel is told once per bad version, and sla_health reports it;
- fixing the files takes effect at the next run.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
import yaml

from leadsla.configuration import ConfigurationError
from leadsla.paths import config_dir
from leadsla.store import schema
from leadsla.tasks.monitor import run_monitor
from tests.integration.test_monitor_clocks import CTX, SAL_AT, URL, seed

T1 = SAL_AT + dt.timedelta(minutes=30)


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Active copies of the flat policy, the lifecycle and the mapping (quality and reports stay
    the shipped ones)."""
    paths = {
        "policy": tmp_path / "sla_policy.yaml",
        "lifecycle": tmp_path / "lifecycle.yaml",
        "mapping": tmp_path / "crm_fields.yaml",
    }
    shutil.copy(config_dir() / "sla_policy.flat.yaml", paths["policy"])
    shutil.copy(config_dir() / "lifecycle.yaml", paths["lifecycle"])
    shutil.copy(config_dir() / "crm_fields.yaml", paths["mapping"])
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(paths["policy"]))
    monkeypatch.setenv("LEADSLA_LIFECYCLE_PATH", str(paths["lifecycle"]))
    monkeypatch.setenv("LEADSLA_CRM_MAPPING", str(paths["mapping"]))
    return paths


def edit(path: Path, change) -> None:
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def sales_touch(raw: dict) -> dict:
    return next(s for s in raw["slas"] if s["id"] == "sales_touch")


def set_target(duration: str):
    return lambda raw: sales_touch(raw)["tiers"][-1]["target"].update(duration=duration)


def unknown_start(raw: dict) -> None:
    sales_touch(raw)["start"]["becomes"] = "Accepted"


def targets(engine) -> set[int]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.select(schema.clocks.c.target_seconds).where(schema.clocks.c.sla_id == "sales_touch")
            ).scalars()
        )


def count(engine, table: sa.Table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def refusal_notices(engine) -> list:
    o = schema.outbox
    with engine.connect() as conn:
        return conn.execute(
            sa.select(o.c.channel, o.c.recipient, o.c.payload).where(o.c.sla_id == "configuration")
        ).all()


def test_a_new_store_with_files_that_disagree_fails_listing_every_problem(store, files) -> None:
    seed(store)
    edit(files["policy"], unknown_start)
    edit(files["mapping"], lambda raw: raw.update(status_map={"Lead": {"Working - Contacted": "Working"}}))
    with pytest.raises(ConfigurationError) as err:
        run_monitor(store, T1, CTX, url=URL)
    lines = str(err.value).splitlines()
    assert lines[0] == "the configuration has 2 problem(s):"
    assert lines[1].startswith(f"- {files['policy']}: slas[") and ".start.becomes: 'Accepted'" in lines[1]
    assert lines[2].startswith(f"- {files['mapping']}: status_map.Lead.Working - Contacted: 'Working'")
    assert lines[3] == "no configuration was ever accepted in this store: nothing runs until the files agree"
    assert count(store, schema.clocks) == 0 and count(store, schema.config_snapshots) == 0
    assert refusal_notices(store) == []


def test_a_bad_edit_keeps_the_last_good_configuration_and_is_told_once(store, files) -> None:
    seed(store)
    assert run_monitor(store, T1, CTX, url=URL)["clocks"] == 2
    assert targets(store) == {4 * 3600}
    assert count(store, schema.config_snapshots) == 1

    # An edit that shortens the target but names a status the lifecycle does not have: refused whole.
    edit(files["policy"], set_target("2h"))
    edit(files["policy"], unknown_start)
    run_monitor(store, T1 + dt.timedelta(minutes=1), CTX, url=URL)
    assert targets(store) == {4 * 3600}  # the old target is still in force
    (notice,) = refusal_notices(store)
    assert notice.channel == "slack" and notice.recipient == "C0DATAENG01"  # quality.yaml incident channel
    assert notice.payload["severity"] == "critical"
    assert notice.payload["title"].startswith("Configuration edit refused: 1 problem(s)")
    assert (
        notice.payload["lines"][0].startswith(f"{files['policy']}: slas[")
        and "'Accepted'" in (notice.payload["lines"][0])
    )
    assert "last good configuration" in notice.payload["intro"]

    # The same bad version at the next runs: still one notice; the snapshot in force is unchanged.
    run_monitor(store, T1 + dt.timedelta(minutes=2), CTX, url=URL)
    run_monitor(store, T1 + dt.timedelta(minutes=3), CTX, url=URL)
    assert len(refusal_notices(store)) == 1 and count(store, schema.config_snapshots) == 1

    # Another bad version is another notice.
    edit(files["mapping"], lambda raw: raw["objects"]["Task"]["fields"].pop("Type"))
    run_monitor(store, T1 + dt.timedelta(minutes=4), CTX, url=URL)
    assert len(refusal_notices(store)) == 2

    # Fixed: the edit (the 2 h target) takes effect at the next run, and is the new last good one.
    shutil.copy(config_dir() / "crm_fields.yaml", files["mapping"])
    edit(files["policy"], lambda raw: sales_touch(raw)["start"].update(becomes="SAL"))
    run_monitor(store, T1 + dt.timedelta(minutes=5), CTX, url=URL)
    assert targets(store) == {2 * 3600}
    assert count(store, schema.config_snapshots) == 2 and len(refusal_notices(store)) == 2


def test_sla_health_reports_the_refused_files_while_running_on_the_last_good_ones(
    store, files, monkeypatch
) -> None:
    from leadsla.tasks.health import check

    monkeypatch.setenv("LEADSLA_STORE_URL", store.url.render_as_string(hide_password=False))
    seed(store)
    run_monitor(store, T1, CTX, url=URL)
    edit(files["policy"], unknown_start)
    context = {
        "dag_run": SimpleNamespace(run_after=T1 + dt.timedelta(hours=1)),
        "ti": SimpleNamespace(dag_id="sla_health", run_id="scheduled__1", task_id="check", try_number=1),
    }
    assert "config_rejected" in check(context)["checks"]
    f = schema.health_findings
    with store.connect() as conn:
        (summary,) = conn.execute(
            sa.select(f.c.summary).where(f.c.check_name == "config_rejected", f.c.severity == "critical")
        ).scalars()
    assert summary.startswith(f"configuration refused: {files['policy']}: slas[")
    assert len(refusal_notices(store)) == 1  # the health task meets the same bad version: no second notice


def test_the_files_are_checked_once_per_version_in_a_process(store, files, monkeypatch) -> None:
    from leadsla.tasks import configuration

    calls = []
    real = configuration.check_files
    monkeypatch.setattr(configuration, "check_files", lambda **kw: calls.append(kw) or real(**kw))
    seed(store)
    for minute in range(3):
        run_monitor(store, T1 + dt.timedelta(minutes=minute), CTX, url=URL)
    assert len(calls) == 1
    edit(files["policy"], set_target("3h"))
    run_monitor(store, T1 + dt.timedelta(minutes=3), CTX, url=URL)
    assert len(calls) == 2 and targets(store) == {3 * 3600}


def test_the_sync_entry_points_refuse_or_keep_the_last_good_configuration(store, files, monkeypatch) -> None:
    from leadsla.tasks.sync import run_report

    monkeypatch.setenv("LEADSLA_STORE_URL", store.url.render_as_string(hide_password=False))
    with store.begin() as conn:  # 10 API calls today: over a budget of 1, well under the shipped 15,000
        conn.execute(
            schema.sync_runs.insert().values(
                started_at=dt.datetime.now(dt.UTC), status="success", api_calls=10
            )
        )

    def bad_budget(raw: dict) -> None:
        raw["sync"]["daily_api_budget"] = 1
        raw["status_map"] = {"Lead": {"Working - Contacted": "Working"}}

    edit(files["mapping"], bad_budget)
    with pytest.raises(ConfigurationError, match="status_map.Lead.Working - Contacted"):
        run_report([], context=CTX)  # a new deployment: nothing runs
    shutil.copy(config_dir() / "crm_fields.yaml", files["mapping"])
    assert run_report([], context=CTX)["budget_warning"] is None  # accepted: the last good one now
    edit(files["mapping"], bad_budget)
    assert run_report([], context=CTX)["budget_warning"] is None  # the budget of 1 is not in force
    assert len(refusal_notices(store)) == 1
