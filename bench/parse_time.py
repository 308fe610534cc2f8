"""Parse time of each DAG file, minus the bare `import airflow.sdk` baseline (goal: < 0.3 s each).

Each measurement runs in a fresh interpreter (what the DAG processor pays for a cold parse), best
of several runs. Prints one JSON line per DAG file and a summary line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("PARSE_BENCH_RUNS", "5"))
GOAL_S = 0.3

_TIMER = """
import sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
if len(sys.argv) > 1:
    import runpy
    runpy.run_path(sys.argv[1], run_name="dag_under_test")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def measure(path: Path | None, env: dict[str, str]) -> float:
    """Best-of-RUNS seconds spent after `import airflow.sdk` to execute the file."""
    best = float("inf")
    for _ in range(RUNS):
        args = [sys.executable, "-c", _TIMER] + ([str(path)] if path else [])
        out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout.split()
        best = min(best, float(out[1]))
    return best


def main() -> int:
    home = tempfile.mkdtemp(prefix="leadsla-parse-bench-")
    # PYTHONPATH: the DAG files of this checkout import this checkout's leadsla (as Airflow does).
    env = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "include"), os.environ.get("PYTHONPATH")])),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    files = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
    worst = 0.0
    for path in files:
        seconds = measure(path, env)
        worst = max(worst, seconds)
        print(
            json.dumps(
                {
                    "dag_file": path.name,
                    "parse_s_over_sdk_baseline": round(seconds, 4),
                    "goal_s": GOAL_S,
                    "ok": seconds < GOAL_S,
                }
            )
        )
    print(
        json.dumps(
            {
                "dag_files": len(files),
                "worst_parse_s": round(worst, 4),
                "goal_s": GOAL_S,
                "ok": worst < GOAL_S,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
