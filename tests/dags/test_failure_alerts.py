"""Every DAG fails loudly: a `dagrun_timeout`, and an `on_failure_callback` that tells data engineering
(quality.yaml `incident`) on Slack and by e-mail through the providers' own notifiers. The callbacks
run as the DAG processor runs them (`_execute_dag_callbacks`, each on its own) against the Slack
stand-in and the SMTP sink; a broken Slack does not keep the e-mail from going."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from leadsla.tasks.failure_alerts import DataEngineeringAlert, failure_lines
from tests.dags.test_dag_integrity import DAG_FILES, DAGS, heavy_top_level_imports, load_dagbag
from tests.notify_fixtures import slack_api, smtp_sink  # noqa: F401  (the stand-in fixtures)

DATA_CHANNEL = "C0DATAENG01"  # the shipped quality.yaml's incident.slack_channel
DATA_EMAIL = "data-engineering@example.com"  # and its incident.email
ROOT = Path(__file__).resolve().parents[2]
#: Modules DAG files import at top level, whose own top level must stay airflow.sdk and constants.
DAG_HELPERS = ["assets.py", "reports.py", "failure_alerts.py"]
STDLIB_LIGHT = {"html", "logging", "typing", "collections"}


@pytest.fixture(scope="module")
def dagbag():
    return load_dagbag(DAGS)


def test_every_dag_has_a_run_timeout_and_tells_data_engineering_on_both_channels(dagbag) -> None:
    found = {
        dag.dag_id: (
            dag.dagrun_timeout is not None and dag.dagrun_timeout > dt.timedelta(0),
            sorted(c.channel for c in dag.on_failure_callback if isinstance(c, DataEngineeringAlert)),
        )
        for dag in dagbag.dags.values()
    }
    assert len(found) == len(DAG_FILES)
    assert found == {dag_id: (True, ["email", "slack"]) for dag_id in found}


def test_the_modules_dag_files_import_hold_only_the_sdk_and_the_standard_library_at_top_level() -> None:
    helpers = [ROOT / "include" / "leadsla" / "tasks" / name for name in DAG_HELPERS]
    found = [
        problem
        for path in helpers
        for problem in heavy_top_level_imports(path)
        if problem.split(" imports ")[1].split(".")[0] not in STDLIB_LIGHT
    ]
    assert found == []


def _run_callbacks(dagbag, dag_id: str, run_id: str, reason: str) -> None:
    """What the DAG processor does with a failed run's callback request."""
    import structlog
    from airflow.callbacks.callback_requests import DagCallbackRequest
    from airflow.dag_processing.processor import _execute_dag_callbacks

    request = DagCallbackRequest(
        filepath=str(DAGS / f"{dag_id}.py"),
        bundle_name="dags-folder",
        bundle_version=None,
        dag_id=dag_id,
        run_id=run_id,
        msg=reason,
        is_failure_callback=True,
    )
    _execute_dag_callbacks(dagbag, request, structlog.get_logger())


def test_a_failed_run_is_told_on_slack_and_by_email(dagbag, slack_api, smtp_sink) -> None:  # noqa: F811
    slack_api.add_channel(DATA_CHANNEL, "data-engineering")
    _run_callbacks(dagbag, "sla_monitor", "scheduled__2026-03-09T16:00:00+00:00", "timed_out")
    [posted] = slack_api.messages(DATA_CHANNEL)
    assert "DAG sla_monitor, run scheduled__2026-03-09T16:00:00+00:00, failed: timed_out." in posted["text"]
    [mail] = smtp_sink.messages()
    assert mail["To"] == DATA_EMAIL and mail["Subject"] == "[Lead SLA Monitor] sla_monitor failed"
    assert "failed: timed_out." in mail.get_body(("html",)).get_content()


def test_a_broken_slack_still_lets_the_email_go(dagbag, slack_api, smtp_sink) -> None:  # noqa: F811
    slack_api.add_channel(DATA_CHANNEL, "data-engineering")
    slack_api.inject("error", method=None, count=10, error="token_revoked")
    _run_callbacks(dagbag, "crm_sync", "manual__1", "task_failure")
    assert slack_api.messages() == []
    [mail] = smtp_sink.messages()
    assert mail["Subject"] == "[Lead SLA Monitor] crm_sync failed"


def test_run_text_is_data_not_a_template_or_a_ping(dagbag, slack_api, smtp_sink) -> None:  # noqa: F811
    slack_api.add_channel(DATA_CHANNEL, "data-engineering")
    _run_callbacks(dagbag, "sla_health", "manual__<!channel>{{ 7 * 7 }}", "task_failure")
    [posted] = slack_api.messages(DATA_CHANNEL)
    assert "&lt;!channel&gt;{{ 7 * 7 }}" in posted["text"] and "<!channel>" not in posted["text"]
    html = smtp_sink.messages()[0].get_body(("html",)).get_content()
    assert "&lt;!channel&gt;{{ 7 * 7 }}" in html and "49" not in html


def test_the_last_failed_task_and_its_log_are_named() -> None:
    ti = SimpleNamespace(task_id="deliver", try_number=3, log_url="http://airflow/log?x=1")
    lines = failure_lines(
        {"dag": SimpleNamespace(dag_id="sla_monitor"), "run_id": "r", "ti": ti, "reason": "x"}
    )
    assert lines[:3] == [
        "DAG sla_monitor, run r, failed: x.",
        "Last task: deliver, try 3.",
        "Log: http://airflow/log?x=1",
    ]
