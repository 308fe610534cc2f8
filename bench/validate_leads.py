"""Benchmark: `leadsla validate-leads` on a generated 10,000-row Lead export (one JSON line).

Measures the whole command as RevOps runs it (a fresh process: Python start, GX import, CSV read,
validation, JSON out), with ~5% of rows malformed in assorted ways.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 10_000


def write_export(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    statuses = ["New", "MQL", "SAL", "SQL", "Recycled", "Disqualified", "Open", "Working"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "Id",
                "Name",
                "Company",
                "Email",
                "Status",
                "OwnerId",
                "CreatedDate",
                "MQL_Date__c",
                "SAL_Date__c",
                "Rejection_Reason__c",
                "Extra_Unknown__c",
            ]
        )
        for i in range(rows):
            status = rng.choice(statuses)
            row = [
                f"00Q{i:012d}AAA",
                f"Lead <b>{i}</b>",
                "O'Brien & Co",
                f"lead{i}@example.com",
                status,
                "005000000000001AAA",
                "2026-11-02T10:00:00.000+0000",
                "2026-11-02",
                "2026-11-03",
                "No budget" if status in ("Recycled", "Disqualified") else "",
                "x",
            ]
            if rng.random() < 0.05:
                bad = rng.randrange(4)
                if bad == 0:
                    row[0] = "short"
                elif bad == 1:
                    row[4] = "Nurture"
                elif bad == 2:
                    row[6] = "yesterday"
                else:
                    row[3] = "not-an-email"
            out.writerow(row)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leads.csv"
        write_export(path, ROWS)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "leadsla.cli",
                "validate-leads",
                str(path),
                "--json",
                "--at",
                "2026-11-10T12:00:00Z",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    print(
        json.dumps(
            {
                "bench": "validate_leads",
                "rows": report["total"],
                "seconds": round(seconds, 2),
                "quarantined": len(report["quarantined"]),
                "flagged": len(report["flagged"]),
                "valid": report["valid"],
            }
        )
    )


if __name__ == "__main__":
    main()
