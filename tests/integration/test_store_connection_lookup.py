"""No silent store fallback: only a `leadsla_store` connection that does not exist means the local
SQLite file; a lookup that fails (the API server erring behind the worker's supervisor, access
denied, a secrets backend raising) fails with one clear line. Through the real Task SDK lookup
(`BaseHook.get_connection` and its secrets backends); the worker's supervisor channel is a stand-in
answering as the supervisor does (airflow.sdk.execution_time.supervisor / request_handlers).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.sdk.bases.secrets_backend import BaseSecretsBackend

from leadsla.errors import StoreConfigError
from leadsla.store.connection import resolve_url


class Supervisor:
    """SUPERVISOR_COMMS as a task process sees it: `send` returns the body or raises the error frame."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.asked: list = []

    def send(self, msg):
        from airflow.sdk.exceptions import AirflowRuntimeError
        from airflow.sdk.execution_time.comms import ErrorResponse

        self.asked.append(msg)
        if isinstance(self.answer, ErrorResponse) and self.answer.detail == {"frame": "error"}:
            raise AirflowRuntimeError(self.answer)  # how the supervisor reports an API server error
        return self.answer


@pytest.fixture
def in_a_worker(monkeypatch, tmp_path):
    """Runs the lookup as a task does: through the Execution API backend over SUPERVISOR_COMMS."""
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEADSLA_STORE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_LEADSLA_STORE", raising=False)

    def answering(answer) -> Supervisor:
        supervisor = Supervisor(answer)
        monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
        return supervisor

    return answering


def test_a_connection_that_does_not_exist_means_the_documented_sqlite_file(in_a_worker, tmp_path) -> None:
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    supervisor = in_a_worker(ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": "x"}))
    assert resolve_url() == f"sqlite:///{tmp_path / 'home' / 'leadsla_store.db'}"
    assert {m.conn_id for m in supervisor.asked} == {"leadsla_store"}  # asked, and told: none


def test_the_connection_from_the_api_server_is_used(in_a_worker) -> None:
    from airflow.sdk.execution_time.comms import ConnectionResult

    in_a_worker(
        ConnectionResult(
            conn_id="leadsla_store",
            conn_type="postgres",
            host="db.internal",
            login="sla",
            password="pw",
            port=5432,
            schema="leadsla",
            extra=None,
        )
    )
    assert resolve_url() == "postgresql+psycopg://sla:pw@db.internal:5432/leadsla"


@pytest.mark.parametrize(
    ("error", "says"),
    [
        ("API_SERVER_ERROR", "AirflowRuntimeError: API_SERVER_ERROR"),
        ("GENERIC_ERROR", "the API server answered GENERIC_ERROR"),
        ("PERMISSION_DENIED", "AirflowSecretsBackendAccessDenied"),
    ],
)
def test_a_failing_lookup_fails_with_one_line_and_no_fallback(in_a_worker, tmp_path, error, says) -> None:
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    detail = {"frame": "error"} if error == "API_SERVER_ERROR" else {"conn_id": "leadsla_store"}
    in_a_worker(ErrorResponse(error=ErrorType(error), detail=detail))
    with pytest.raises(StoreConfigError) as raised:
        resolve_url()
    message = str(raised.value)
    assert message.startswith("looking up the Airflow connection 'leadsla_store' failed (")
    assert says in message and "no fallback to a local SQLite file" in message
    assert "\n" not in message
    assert not (tmp_path / "home" / "leadsla_store.db").exists()


class FailingBackend(BaseSecretsBackend):
    """An external secrets backend (Vault, AWS...) that cannot be reached."""

    def get_conn_value(self, conn_id: str, team_name: str | None = None) -> str | None:
        raise ConnectionError("vault.internal:8200 refused the connection")

    def get_variable(self, key: str, team_name: str | None = None) -> str | None:
        return None


def test_an_external_secrets_backend_that_errs_fails_the_lookup(monkeypatch, tmp_path) -> None:
    from airflow.sdk.configuration import clear_secrets_backends_cache

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEADSLA_STORE_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", f"{__name__}.FailingBackend")
    clear_secrets_backends_cache()
    try:
        with pytest.raises(StoreConfigError, match=r"FailingBackend: ConnectionError: vault.internal:8200"):
            resolve_url()
    finally:
        monkeypatch.delenv("AIRFLOW__SECRETS__BACKEND")
        clear_secrets_backends_cache()
    assert resolve_url().endswith("leadsla_store.db")  # the backend gone: no connection, SQLite


def test_the_cli_says_it_in_one_line(tmp_path) -> None:
    env = {
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "AIRFLOW__SECRETS__BACKEND": f"{__name__}.FailingBackend",
        "PYTHONPATH": ":".join(sys.path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "leadsla.cli", "store"], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("leadsla: error: looking up the Airflow connection 'leadsla_store' failed")
