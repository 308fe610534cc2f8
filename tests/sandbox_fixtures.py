"""Pytest plugin: the local Salesforce REST API (include/sandbox/salesforce_api.py) for tests.

Use it with `pytest_plugins = ["tests.sandbox_fixtures"]` (or import the fixture). The fixture
`salesforce_sandbox` starts the server in-process on 127.0.0.1 with an ephemeral port, a fresh temp
data dir and a new self-signed CA; it sets REQUESTS_CA_BUNDLE and AIRFLOW_CONN_SALESFORCE_DEFAULT
for the test (monkeypatch), so `SalesforceHook()` (conn id `salesforce_default`) logs in through the
real SOAP flow. It yields a `SalesforceSandbox`:

    sb.base_url           "https://127.0.0.1:PORT"
    sb.port               the port
    sb.ca_path            CA bundle path (already in REQUESTS_CA_BUNDLE)
    sb.connection_json()  the salesforce_default connection JSON (AIRFLOW_CONN_SALESFORCE_DEFAULT)
    sb.store              sandbox.sf_store.OrgStore: direct, fast data access (no API accounting)
    sb.seed(obj, rows)    bulk insert dicts (system fields like CreatedDate/SystemModstamp allowed) -> ids
    sb.create(obj, fields) / sb.update(obj, id, fields) / sb.delete(obj, id) / sb.get(obj, id)
                          writes as the API does: SystemModstamp/LastModifiedDate move, history rows
                          for tracked fields (Lead: Status, OwnerId...; Opportunity: StageName...)
    sb.inject_fault(fault, endpoint="*", times=1, after=0, method=None, delay_s=0.0)
                          fault: INVALID_SESSION_ID | REQUEST_LIMIT_EXCEEDED | SERVER_UNAVAILABLE |
                          UNABLE_TO_LOCK_ROW | SLOW; endpoint: * | login | query | sobject | describe |
                          composite | limits | versions; times=None means every matching request
    sb.clear_faults(), sb.expire_sessions()
    sb.page_size = 200    query page size (default 2000); sb.set_limits(daily_limit=, api_used=)
    sb.api_used           API calls counted so far (what Sforce-Limit-Info reports)
    sb.logins             SOAP logins served so far
    sb.hook()             a fresh SalesforceHook (a cached client survives nothing; make a new one)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import salesforce_api
from sandbox.salesforce_api import FaultRule, RunningSandbox


class SalesforceSandbox:
    """Test handle on a running sandbox API (see the module docstring)."""

    def __init__(self, running: RunningSandbox) -> None:
        self.running = running
        self.store = running.store

    @property
    def base_url(self) -> str:
        return self.running.base_url

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def ca_path(self) -> Path:
        return self.running.ca_path

    @property
    def data_dir(self) -> Path:
        return self.running.data_dir

    def connection(self) -> dict:
        return self.running.connection()

    def connection_json(self) -> str:
        return self.running.connection_json()

    # data ------------------------------------------------------------------
    def seed(self, object_name: str, rows: list[dict[str, Any]]) -> list[str]:
        return self.store.bulk_insert(object_name, rows)

    def create(self, object_name: str, fields: dict[str, Any], **kw: Any) -> str:
        return self.store.create(object_name, fields, system=True, **kw)["Id"]

    def update(self, object_name: str, record_id: str, fields: dict[str, Any], **kw: Any) -> dict:
        return self.store.update(object_name, record_id, fields, **kw)

    def delete(self, object_name: str, record_id: str) -> None:
        self.store.delete(object_name, record_id)

    def get(self, object_name: str, record_id: str) -> dict:
        return self.store.get(object_name, record_id)

    # behaviour -------------------------------------------------------------
    def inject_fault(
        self,
        fault: str,
        endpoint: str = "*",
        times: int | None = 1,
        after: int = 0,
        method: str | None = None,
        delay_s: float = 0.0,
    ) -> FaultRule:
        return self.running.state.add_faults(
            [
                {
                    "fault": fault,
                    "endpoint": endpoint,
                    "times": times,
                    "after": after,
                    "method": method,
                    "delay_s": delay_s,
                }
            ]
        )[0]

    def clear_faults(self) -> None:
        with self.running.state.lock:
            self.running.state.faults.clear()

    def expire_sessions(self) -> None:
        with self.running.state.lock:
            self.running.state.sessions.clear()

    @property
    def page_size(self) -> int:
        return self.running.state.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self.running.state.page_size = value

    def set_limits(self, daily_limit: int | None = None, api_used: int | None = None) -> None:
        with self.running.state.lock:
            if daily_limit is not None:
                self.running.state.daily_limit = daily_limit
            if api_used is not None:
                self.running.state.api_used = api_used

    @property
    def api_used(self) -> int:
        return self.running.state.api_used

    @property
    def logins(self) -> int:
        return self.running.state.logins

    def hook(self):
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

        return SalesforceHook(salesforce_conn_id="salesforce_default")


@pytest.fixture
def salesforce_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceSandbox]:
    """A running sandbox Salesforce API with REQUESTS_CA_BUNDLE and AIRFLOW_CONN_SALESFORCE_DEFAULT set."""
    running = salesforce_api.start(tmp_path / "salesforce")
    try:
        sandbox = SalesforceSandbox(running)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_path))
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", running.connection_json())
        yield sandbox
    finally:
        running.stop()


__all__ = ["SalesforceSandbox", "salesforce_sandbox"]


def synced_evaluation(root: Path, org: Any) -> tuple[dict[str, Any], Any, Any]:
    """The simulated org `org` (its store under `root`/salesforce) synced into a store under `root`
    through the Salesforce stand-in (crm_sync's `run_group`) and evaluated at the org's clock with
    `make run`'s demo policy: (the mirror's frames, that policy, the engine's evaluation)."""
    from leadsla.engine import evaluate
    from leadsla.policy import load_policy
    from leadsla.store import open_store
    from leadsla.store.mirror import load_frames
    from leadsla.tasks.sync import run_group
    from sandbox.devstack import write_demo_policy

    api = salesforce_api.start(root / "salesforce")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(api.ca_path))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", api.connection_json())
        mp.setenv("LEADSLA_STORE_URL", f"sqlite:///{root / 'store.db'}")
        try:
            synced = [run_group(group) for group in ("org", "leads")]
        finally:
            api.stop()
        assert all(s["status"] == "success" for s in synced), synced
        engine = open_store()
        with engine.connect() as conn:
            frames = load_frames(conn)
        engine.dispose()
    policy = load_policy(write_demo_policy(root / "sla_policy.yaml"))
    evaluation = evaluate(
        records=frames["records"],
        field_history=frames["field_history"],
        activities=frames["activities"],
        users=frames["users"],
        policy=policy,
        now=org.clock,
    )
    return frames, policy, evaluation
