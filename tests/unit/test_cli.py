"""The `leadsla` command itself: installed, helpful, and one clear line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from leadsla.cli import main
from leadsla.store.schema import SCHEMA_VERSION

VENV_BIN = Path(sys.executable).parent


def test_console_script_is_installed_and_shows_help() -> None:
    proc = subprocess.run([str(VENV_BIN / "leadsla"), "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "usage: leadsla" in proc.stdout and "store" in proc.stdout


def test_store_command_creates_and_summarises_the_store(tmp_path, capsys) -> None:
    assert main(["store", "--url", f"sqlite:///{tmp_path}/s.db"]) == 0
    out = capsys.readouterr().out
    assert f"store: sqlite:///{tmp_path}/s.db" in out
    assert f"schema version: {SCHEMA_VERSION}" in out and "audit" in out


def test_store_command_bad_url_is_one_line(capsys) -> None:
    assert main(["store", "--url", "mysql://x@y/z"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "leadsla: error: store URL 'mysql://x@y/z' uses backend 'mysql': "
        "the store supports sqlite and postgresql only\n"
    )


def test_devstack_connections_are_importable_json(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox.devstack", "connections"], capture_output=True, text=True, check=True
    )
    conns = json.loads(proc.stdout)
    assert json.loads(conns["leadsla_store"]["extra"]) == {"url": f"sqlite:///{tmp_path}/leadsla_store.db"}
