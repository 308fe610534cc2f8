"""Trust (issue 15) in one line: the War Room's least privilege, the audit trail's tamper evidence,
bad input, crash-safe breach actions and store upgrades, each measured by its own benchmark (run
here as a separate process, so one's Airflow settings or embedded PostgreSQL never meet
another's), on SQLite and an embedded PostgreSQL:

- ``bench/authz.py``: the role x route x team matrix -> `authz_cases`, `authz_wrong` (must be 0)
- ``bench/audit_chain.py``: edits, deletes, inserts, reorders and truncates -> `tamper_cases`,
  `tamper_detected` (must be equal)
- ``bench/fuzz.py``: generated YAML trees and byte strings through every loader and command ->
  `fuzz_inputs` (at least 20,000), `fuzz_tracebacks` (must be 0)
- ``bench/kill_points.py``: escalation and lock keeping killed at every step boundary, then
  retried -> `kill_points`, `kill_audit_incomplete` (must be 0)
- ``bench/upgrade.py``: a first-release store with rows in every table upgraded to the head ->
  `upgrade_rows_lost` (must be 0)

Prints ONE JSON line: those figures, `ok` (every goal met), and each benchmark's own line under its
name. A benchmark that fails or prints no JSON makes `ok` false and names it in `failed`.

Run: ``.venv/bin/python bench/trust.py`` (a few minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: benchmark -> (its arguments, the figures it gives the trust line)
PARTS: dict[str, tuple[list[str], list[str]]] = {
    "authz": ([], ["authz_cases", "authz_wrong"]),
    "audit_chain": ([], ["tamper_cases", "tamper_detected"]),
    "fuzz": (["--inputs", "20000"], ["fuzz_inputs", "fuzz_tracebacks"]),
    "kill_points": ([], ["kill_points", "kill_audit_incomplete"]),
    "upgrade": ([], ["upgrade_rows_lost", "upgrade_rows"]),
}


def run_part(name: str, args: list[str]) -> dict | None:
    """Run bench/<name>.py; its last stdout line as JSON, or None (its stderr tail shown)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    try:
        if done.returncode == 0 and lines:
            return json.loads(lines[-1])
    except json.JSONDecodeError:
        pass
    sys.stderr.write(f"bench/{name}.py exited {done.returncode}:\n{done.stderr[-3000:]}\n")
    return None


def goals_met(line: dict) -> bool:
    """The issue's goals, on the combined figures."""
    return bool(
        line.get("authz_cases", 0) > 0
        and line.get("authz_wrong") == 0
        and line.get("tamper_cases", 0) > 0
        and line.get("tamper_detected") == line.get("tamper_cases")
        and line.get("fuzz_inputs", 0) >= 20_000
        and line.get("fuzz_tracebacks") == 0
        and line.get("kill_points", 0) > 0
        and line.get("kill_audit_incomplete") == 0
        and line.get("upgrade_rows", 0) > 0
        and line.get("upgrade_rows_lost") == 0
    )


def main() -> int:
    started = time.perf_counter()
    line: dict = {}
    parts: dict[str, dict] = {}
    failed: list[str] = []
    for name, (args, figures) in PARTS.items():
        result = run_part(name, args)
        if result is None:
            failed.append(name)
            continue
        parts[name] = result
        for figure in figures:
            line[figure] = result.get(figure)
    line["ok"] = not failed and goals_met(line)
    line["failed"] = failed
    line["seconds"] = round(time.perf_counter() - started, 1)
    line["parts"] = parts
    print(json.dumps(line))
    return 0 if line["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
