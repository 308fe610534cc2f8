#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it. Runs with the project's .venv; never needs the
# internet. Extra arguments go to pytest (e.g. scripts/test.sh -k calendar).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests make their own AIRFLOW_HOME; never touch the developer's.
unset AIRFLOW_HOME
export PYTHONDONTWRITEBYTECODE=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-${TMPDIR:-/tmp}/leadsla-runtime-$(id -u)}"; mkdir -p -m 700 "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"
# Browser tests (report rendering) drive Debian's chromium through Playwright; install it once.
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (once)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } \
    || echo "error: could not install chromium (apt-get install chromium, as root); the browser tests will fail" >&2
fi
# House style is checked by tools, not by review: lint and formatting drift fail the suite.
.venv/bin/ruff check include dags plugins tests bench
.venv/bin/ruff format --check --quiet include dags plugins tests bench \
  || { echo "error: ruff format would change the files above: run .venv/bin/ruff format include dags plugins tests bench" >&2; exit 1; }
# Three workers on two cores: the end-to-end tests spend minutes waiting on Airflow's scheduler
# and the real-time ones on the clock, and a third worker keeps both cores busy meanwhile
# (16.4 -> 14.7 min for the suite on this project's 2-core machine). Each xdist_group stays on one
# worker (tests/conftest.py).
exec .venv/bin/python -m pytest -n 3 --dist loadgroup -q "$@"
