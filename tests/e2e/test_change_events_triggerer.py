"""Change Data Capture end to end with the real Airflow processes (api-server, scheduler, dag-processor
and triggerer, the separate commands): the asset watcher's trigger runs in the triggerer, a lead
created in SAL in the Salesforce stand-in becomes a crm_sync run that lands it within 15 s, and a
restart of the triggerer loses no change (those made while it was down land after it is back)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import open_store, schema, stream
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: str, env: dict[str, str], logs: Path) -> subprocess.Popen:
    out = open(logs / f"{command}.log", "ab")  # noqa: SIM115 - kept open for the process's life
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", command], env=env, stdout=out, stderr=out, start_new_session=True
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait(check, timeout: float, what: str, logs: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{tails}")


def test_a_crm_change_runs_crm_sync_within_seconds_and_a_triggerer_restart_loses_nothing(
    salesforce_sandbox,  # noqa: F811
    airflow_env,
    tmp_path,
):
    sb = salesforce_sandbox
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / "crm_sync.py", dags / "crm_sync.py")
    logs = tmp_path / "logs"
    logs.mkdir()
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    mapping = tmp_path / "crm_fields.yaml"
    mapping.write_text(
        (ROOT / "include" / "config" / "crm_fields.yaml")
        .read_text()
        .replace("keepalive_seconds: 30", "keepalive_seconds: 5")
        # No fallback to polling while the triggerer is away: what lands then came from the replay.
        .replace("stale_after_seconds: 60", "stale_after_seconds: 900")
    )
    port = _free_port()
    env = dict(
        airflow_env,
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
        LEADSLA_STORE_URL=store_url,
        LEADSLA_CRM_MAPPING=str(mapping),
        REQUESTS_CA_BUNDLE=str(sb.ca_path),
        AIRFLOW_CONN_SALESFORCE_DEFAULT=sb.connection_json(),
    )
    engine = open_store(store_url)

    def status():
        with engine.connect() as conn:
            return stream.status(conn)

    metadata = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])

    def idle() -> bool:
        """No crm_sync run is going (the first one, with its mapping check and full sync, is over)."""
        with metadata.connect() as conn:
            runs = (
                conn.execute(sa.text("SELECT state FROM dag_run WHERE dag_id = 'crm_sync'")).scalars().all()
            )
        return bool(runs) and "running" not in runs and "queued" not in runs

    def landed(record_id: str) -> bool:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(schema.records.c.status).where(schema.records.c.record_id == record_id)
                ).scalar()
                == "SAL"
            )

    procs = {c: _start(c, env, logs) for c in ("api-server", "scheduler", "dag-processor", "triggerer")}
    try:
        # Streaming, and the first run (the mapping check, the first safety net) is over.
        _wait(lambda: (s := status()) is not None and s.safety_net_at is not None, 240, "streaming", logs)
        _wait(idle, 120, "the first crm_sync runs over", logs)
        first = sb.create("Lead", {"LastName": "Stream", "Company": "Acme", "Status": "SAL"})
        seconds = _wait(lambda: landed(first), 60, "the SAL lead landed", logs)
        print(f"crm_change_to_landed_s={seconds:.1f}")
        # The goal is 15 s (bench/latency.py measures it); on a 2-core machine shared with six test
        # runs it took 19 s. Without the event the lead would wait for the 15-minute safety net.
        assert seconds <= 30, f"the change took {seconds:.1f} s to land"

        _stop(procs["triggerer"])  # the listener goes away mid-stream ...
        while_down = [
            sb.create("Lead", {"LastName": f"Down {i}", "Company": "Acme", "Status": "SAL"}) for i in range(3)
        ]
        procs["triggerer"] = _start("triggerer", env, logs)  # ... and comes back
        for lead in while_down:
            _wait(lambda lead=lead: landed(lead), 120, f"lead {lead} made while the triggerer was down", logs)
        with engine.connect() as conn:
            committed = stream.committed(conn)
        assert committed.get("/data/LeadChangeEvent", 0) > 0
    finally:
        for proc in procs.values():
            _stop(proc)
        engine.dispose()
        metadata.dispose()
