"""Fuzz the `leadsla` command and the configuration loaders with bad input (one JSON line).

Runs the property of tests/unit/test_fuzz_bad_input.py over many more cases: generated YAML trees,
byte strings, the shipped configuration files with random mutations, odd argument values and store
URLs (tests/fuzz_inputs.py), each handed to a loader or a CLI command. A case passes when it ends
in the project's own error (`LeadSlaError`) as one line - exit 2 for a command - or succeeds;
anything else (another exception, a message of several lines, a hang) is a traceback.

Prints ONE JSON line: fuzz_inputs (goal: at least 20,000), fuzz_tracebacks (goal: 0), seconds, and
the cases per target; each failure is described on stderr.

Usage: python bench/fuzz.py [--inputs 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]


def run(inputs: int, seed: int) -> dict:
    """Run `inputs` fuzz cases from `seed`; the figures as a dict."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from tests.fuzz_inputs import cases, outcome

    folder = Path(tempfile.mkdtemp(prefix="leadsla-fuzz-bench-"))
    per_target: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=inputs,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    def one(case) -> None:
        per_target[case.target] += 1
        failure = outcome(case, folder)
        if failure is not None:
            failures.append(failure)
            print(f"traceback: {failure}", file=sys.stderr)

    started = time.perf_counter()
    try:
        one()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "fuzz_inputs": sum(per_target.values()),
        "fuzz_tracebacks": len(failures),
        "fuzz_seconds": round(time.perf_counter() - started, 1),
        "fuzz_targets": dict(sorted(per_target.items())),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="leadsla-fuzz-airflow-"))
    os.environ.pop("LEADSLA_STORE_URL", None)
    # Commands print tables and logs: keep the real stdout for the one JSON line.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    figures = run(args.inputs, args.seed)
    out.write(json.dumps(figures) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
