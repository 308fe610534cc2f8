"""The local stack behind `make run`: the Airflow connections pointing at embedded defaults, and
the stand-in servers and demo started beside Airflow.

`python -m sandbox.devstack connections` prints the connections as JSON for
`airflow connections import`; `start` runs every stand-in in the foreground until interrupted;
`describe` tells a newcomer where to look. Only connection values point at the stand-ins: the
production code paths are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


def sandbox_dir() -> Path:
    """Where the stand-ins keep their data ($LEADSLA_SANDBOX_DIR, else $AIRFLOW_HOME/sandbox)."""
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "sandbox"
    return Path(os.environ.get("LEADSLA_SANDBOX_DIR") or default)


@dataclass(frozen=True)
class Service:
    """A stand-in server: the command that runs it and what a person should know about it."""

    name: str
    argv: list[str]
    note: str
    env: dict[str, str] = field(default_factory=dict)


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def connections() -> dict[str, dict]:
    """Airflow connections for the local stack, in `airflow connections import` JSON form."""
    return {
        "leadsla_store": {
            "conn_type": "generic",
            "description": "Lead SLA Monitor store (SQLAlchemy URL in extra.url)",
            "extra": json.dumps({"url": f"sqlite:///{airflow_home() / 'leadsla_store.db'}"}),
        },
    }


def services() -> list[Service]:
    """The stand-ins `make run` starts beside Airflow."""
    return []


def start() -> int:
    """Run every stand-in until interrupted; a stand-in that dies takes the others down with it."""
    procs = [subprocess.Popen(s.argv, env={**os.environ, **s.env}) for s in services()]
    if not procs:
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.wait()  # returns when any stand-in exits
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    return 0


def describe() -> None:
    for s in services():
        print(f"  {s.name}: {s.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devstack", description=__doc__)
    parser.add_argument("action", choices=["connections", "start", "describe"])
    args = parser.parse_args(argv)
    if args.action == "connections":
        json.dump(connections(), sys.stdout, indent=2)
        print()
        return 0
    if args.action == "describe":
        describe()
        return 0
    return start()


if __name__ == "__main__":
    sys.exit(main())
