"""The task processes' heavy imports are warmed in the processes that fork them, and only there:
`leadsla.tasks.warm` through Airflow's local-settings hook in plugins/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadsla.tasks.warm import forks_tasks

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "executor", "forks"),
    [
        (["airflow", "scheduler"], "LocalExecutor", True),
        (
            ["/venv/bin/airflow", "scheduler", "--skip-serve-logs"],
            "airflow.executors.local_executor.LocalExecutor",
            True,
        ),
        (["airflow", "scheduler"], "CeleryExecutor", False),  # its tasks run on the workers
        (["airflow", "celery", "worker", "-q", "default"], "CeleryExecutor", True),
        (["airflow", "celery", "flower"], "CeleryExecutor", False),
        (["airflow", "dag-processor"], "LocalExecutor", False),
        (["airflow", "triggerer"], "LocalExecutor", False),
        (["airflow", "api-server"], "LocalExecutor", False),
        (["airflow", "tasks", "test", "crm_sync", "sync_leads"], "LocalExecutor", False),
        (["pytest"], "LocalExecutor", False),
    ],
)
def test_only_the_processes_that_fork_tasks_warm_them(argv, executor, forks) -> None:
    assert forks_tasks(argv, executor) is forks


def _imported_by_airflow(tmp_path: Path, command: str) -> bool:
    """Whether importing Airflow as `airflow <command>` (its settings run the hook) imported GX."""
    code = (
        f"import sys; sys.argv = ['airflow', {command!r}]\n"
        "import airflow\n"
        "print('great_expectations' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(tmp_path),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(ROOT / "include"),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=True
    )
    return done.stdout.strip().splitlines()[-1] == "True"


def test_airflows_settings_hook_warms_the_scheduler_and_not_the_dag_processor(tmp_path) -> None:
    assert _imported_by_airflow(tmp_path, "scheduler")
    assert not _imported_by_airflow(tmp_path, "dag-processor")


def test_the_plugin_loader_leaves_the_hook_alone() -> None:
    """The files Airflow's plugin loader would import (its own walk, .airflowignore applied)."""
    from airflow._shared.module_loading import find_path_from_directory

    seen = {Path(p).name for p in find_path_from_directory(str(ROOT / "plugins"), ".airflowignore", "glob")}
    assert "war_room.py" in seen and "airflow_local_settings.py" not in seen
