#!/usr/bin/env bash
# `make run`: Airflow standalone with the project's DAGs and plugins at http://localhost:8080.
# AIRFLOW_HOME is .airflow/ in the checkout (git-ignored); the metadata DB is SQLite there.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/.venv/bin
export PATH="$BIN:$PATH"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.airflow}"
if ! mkdir -p "$AIRFLOW_HOME" 2>/dev/null || [ ! -w "$AIRFLOW_HOME" ]; then
  echo "error: AIRFLOW_HOME=$AIRFLOW_HOME is not writable: unset it (make run uses .airflow/ in the checkout) or point it at a writable folder" >&2
  exit 1
fi
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${LEADSLA_ADMIN_USER:-admin}:admin"
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=30
# A newcomer sees the pipelines run without unpausing each one by hand.
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export LEADSLA_SANDBOX_DIR="${LEADSLA_SANDBOX_DIR:-$AIRFLOW_HOME/sandbox}"
mkdir -p "$LEADSLA_SANDBOX_DIR"

# Each background job gets its own process group (set -m), so stopping a job stops its whole tree;
# Ctrl-C, a kill or any exit stops every job this script started.
set -m
jobs_started=()
start_job() { "$@" & jobs_started+=("$!"); }
stop_all() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for pid in "${jobs_started[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 30); do
    alive=0
    for pid in "${jobs_started[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in "${jobs_started[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  echo "stopped."
}
trap stop_all INT TERM EXIT

echo "== migrating the Airflow metadata database ($AIRFLOW_HOME/airflow.db)"
airflow db migrate >"$AIRFLOW_HOME/migrate.log" 2>&1 || { echo "error: airflow db migrate failed, see $AIRFLOW_HOME/migrate.log" >&2; exit 1; }

echo "== creating connections (embedded defaults)"
"$BIN/python" -m sandbox.devstack connections >"$AIRFLOW_HOME/connections.json"
airflow connections import --overwrite "$AIRFLOW_HOME/connections.json" >/dev/null
# The demo's SLA policy: the shipped one plus the demo org's automation user (the 24 h breach lock
# puts back its reassignments). Set LEADSLA_POLICY_PATH to use your own.
if [ -z "${LEADSLA_POLICY_PATH:-}" ]; then
  LEADSLA_POLICY_PATH=$("$BIN/python" -m sandbox.devstack demo-policy)
fi
export LEADSLA_POLICY_PATH
"$BIN/leadsla" store >"$AIRFLOW_HOME/store.txt"
head -n 1 "$AIRFLOW_HOME/store.txt"

start_job "$BIN/python" -m sandbox.devstack start
# Airflow's tasks trust the Salesforce stand-in's self-signed CA (made anew at each start).
export REQUESTS_CA_BUNDLE
REQUESTS_CA_BUNDLE=$("$BIN/python" -m sandbox.devstack ca-bundle)
for _ in $(seq 1 60); do [ -s "$REQUESTS_CA_BUNDLE" ] && [ "$(find "$REQUESTS_CA_BUNDLE" -newer "$AIRFLOW_HOME/connections.json" 2>/dev/null)" ] && break; sleep 1; done

# CRM changes arrive as Change Data Capture events (the triggerer's listener, crm_fields.yaml
# sync.streaming); LEADSLA_CRM_STREAMING=0 makes crm_sync poll every minute instead.
echo "== CRM changes: $([ "${LEADSLA_CRM_STREAMING:-1}" = 0 ] && echo "polling every minute" || echo "streaming (Change Data Capture through the triggerer)")"
echo "== starting Airflow standalone (logs in $AIRFLOW_HOME/standalone.log)"
start_job airflow standalone >"$AIRFLOW_HOME/standalone.log" 2>&1

password_file="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null http://localhost:8080/api/v2/monitor/health 2>/dev/null && [ -s "$password_file" ]; then
    user="${LEADSLA_ADMIN_USER:-admin}"
    password=$("$BIN/python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$password_file" "$user")
    echo
    echo "Lead SLA Monitor is up:  http://localhost:8080   login: $user / $password"
    "$BIN/python" -m sandbox.devstack describe
    echo "Ctrl-C stops everything."
    break
  fi
  sleep 2
done
# The four report e-mails once for a new demo, for its own history, after the first sync and
# evaluation (a line says when they are requested; they land in the SMTP sink's folder).
start_job "$BIN/python" -m sandbox.devstack trigger-reports
wait
