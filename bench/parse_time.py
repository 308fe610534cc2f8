"""Parse time of each DAG file, minus the bare `import airflow.sdk` baseline (goal: < 0.3 s each), and
the files each one reads while it is parsed (goal: only those in `ALLOWED_READS`).

Each measurement runs in a fresh interpreter (what the DAG processor pays for a cold parse), best
of several runs. One more run per file records, with an audit hook (`sys.addaudithook`, event
"open"), every file opened after `import airflow.sdk`: the Python code a DAG file imports is not
counted, nor a pipe or the null device (croniter's import asks `file -b` about the interpreter),
nor the time zone database; any other file must be in `ALLOWED_READS`, else the line says
`"ok": false`. Prints one JSON line per DAG file and a summary line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zoneinfo
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("PARSE_BENCH_RUNS", "5"))
GOAL_S = 0.3
#: Files a DAG file may read while Airflow parses it (relative to the project root, $LEADSLA_HOME
#: when set), and who reads them. A parse-time read runs on every parse of the file (every 30 s):
#: keep this list short and the files small.
ALLOWED_READS = {
    "include/config/reports.yaml": "the report DAGs' schedules and timezone (leadsla.reports.schedule)",
}
#: Code loaded by imports: not a file read in this sense (the import cost is in the timing).
CODE_SUFFIXES = (".py", ".pyc", ".so")

_TIMER = """
import sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
if len(sys.argv) > 1:
    import runpy
    runpy.run_path(sys.argv[1], run_name="dag_under_test")
t2 = time.perf_counter()
print("PARSE_TIMES", t1 - t0, t2 - t1)
"""

_AUDIT = """
import json, os, sys
import airflow.sdk
opened = []
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(audit)
import runpy
runpy.run_path(sys.argv[1], run_name="dag_under_test")
print("OPENED " + json.dumps(sorted(set(opened))))
"""


def _last_line(stdout: str, marker: str) -> str:
    """The payload of the last stdout line starting with `marker` (DAG files may log to stdout)."""
    lines = [line for line in stdout.splitlines() if line.startswith(marker + " ")]
    if not lines:
        raise RuntimeError(f"no {marker} line in the output:\n{stdout[-2000:]}")
    return lines[-1][len(marker) + 1 :]


def measure(path: Path | None, env: dict[str, str]) -> float:
    """Best-of-RUNS seconds spent after `import airflow.sdk` to execute the file."""
    best = float("inf")
    for _ in range(RUNS):
        args = [sys.executable, "-c", _TIMER] + ([str(path)] if path else [])
        out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
        best = min(best, float(_last_line(out, "PARSE_TIMES").split()[1]))
    return best


def _zoneinfo_dirs() -> list[Path]:
    """Where time zone data is read from: the system's database and the tzdata package."""
    dirs = [Path(p) for p in zoneinfo.TZPATH]
    if (spec := importlib.util.find_spec("tzdata")) and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    return [d.resolve() for d in dirs]


def file_reads(path: Path, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """The files parsing `path` reads: (allowed, unexpected); allowed ones relative to the root."""
    args = [sys.executable, "-c", _AUDIT, str(path)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    root = Path(env.get("LEADSLA_HOME") or ROOT).resolve()
    zones = _zoneinfo_dirs()
    allowed, unexpected = [], []
    for name in json.loads(_last_line(out, "OPENED")):
        opened = Path(name).resolve()
        if name.endswith(CODE_SUFFIXES) or opened == Path(os.devnull).resolve() or opened == path.resolve():
            continue
        if any(opened.is_relative_to(z) for z in zones):
            continue
        relative = opened.relative_to(root).as_posix() if opened.is_relative_to(root) else str(opened)
        (allowed if relative in ALLOWED_READS else unexpected).append(relative)
    return allowed, unexpected


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
    worst, strays = 0.0, 0
    for path in files:
        seconds = measure(path, env)
        reads, unexpected = file_reads(path, env)
        worst, strays = max(worst, seconds), strays + len(unexpected)
        print(
            json.dumps(
                {
                    "dag_file": path.name,
                    "parse_s_over_sdk_baseline": round(seconds, 4),
                    "goal_s": GOAL_S,
                    "files_read": reads,
                    "unexpected_files_read": unexpected,
                    "ok": seconds < GOAL_S and not unexpected,
                }
            )
        )
    print(
        json.dumps(
            {
                "dag_files": len(files),
                "worst_parse_s": round(worst, 4),
                "goal_s": GOAL_S,
                "unexpected_files_read": strays,
                "allowed_reads": sorted(ALLOWED_READS),
                "ok": worst < GOAL_S and not strays,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
