"""The War Room as a person uses it: a real Airflow API server (airflow.api_fastapi.app.create_app
under uvicorn, our plugins folder, the simple auth manager with a known user) serving the plugin;
headless Chromium logs in on Airflow's own login page, opens the War Room, applies a filter and
opens a lead's timeline, then an unowned lead's and a routed lead's; opens a handoff from the SLA
matrix and another from the selector, and an Opportunity's timeline. Also: airflow.plugins_manager
loads the plugin from plugins/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from leadsla.store import open_store
from tests.reports_data import Builder
from tests.war_room_fixtures import JWT_SECRET, with_handoffs, write_routed_org

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "war-room-s3cret"

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow")]


def _airflow_env(home: Path, store_url: str) -> dict[str, str]:
    (home / "passwords.json").write_text(json.dumps({"vera": PASSWORD}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__API_AUTH__JWT_SECRET=JWT_SECRET,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="vera:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        LEADSLA_STORE_URL=store_url,
        PYTHONPATH=f"{ROOT / 'include'}{os.pathsep}{ROOT}",
    )
    return env


_SERVER = """
import sys, uvicorn
from airflow import settings
settings.configure_orm()
from airflow.models.revoked_token import RevokedToken
RevokedToken.__table__.create(settings.engine, checkfirst=True)  # the one Airflow table token checks read
from airflow.api_fastapi.app import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api_server(request, tmp_path_factory):
    """Airflow's API server app with our plugins folder, on an ephemeral port, over a store on each
    backend (the War Room's queries run on both); always stopped."""
    home = tmp_path_factory.mktemp("airflow-home")
    if request.param == "postgresql":
        from tests.conftest import _new_postgres_url

        store_url = _new_postgres_url(request.getfixturevalue("postgres_server"))
    else:
        store_url = f"sqlite:///{home / 'store.db'}"
    engine = open_store(store_url)
    write_routed_org(engine)
    with_handoffs(Builder()).write(engine)  # the AE and CS handoffs' Opportunities and clocks
    engine.dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        env=_airflow_env(home, store_url),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"API server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_plugin_registers_app_and_nav_link(tmp_path):
    code = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
apps, _ = plugins_manager.get_fastapi_plugins()
views, _ = plugins_manager._get_ui_plugins()
print("RESULT " + json.dumps({"errors": errors, "plugins": [p.name for p in plugins],
      "apps": [[a["name"], a["url_prefix"], type(a["app"]).__name__] for a in apps], "views": views}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_airflow_env(tmp_path, f"sqlite:///{tmp_path / 's.db'}"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    got = json.loads(line[7:])
    assert got["errors"] == {} and got["plugins"] == ["war_room"]
    assert got["apps"] == [["War Room", "/war-room", "FastAPI"]]
    assert got["views"] == [
        {"name": "War Room", "href": "/war-room/", "url_route": "war-room", "destination": "nav"}
    ]


def test_log_in_filter_and_open_a_timeline(api_server):
    if CHROMIUM is None:  # scripts/test.sh installs it; fail loudly rather than skip a feature
        pytest.fail("chromium is not installed: run `apt-get install -y chromium` (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{api_server}/war-room/")
            page.wait_for_selector("input[name=username]", timeout=30_000)  # Airflow's login page
            assert "/auth/login" in page.url
            page.fill("input[name=username]", "vera")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#filters", timeout=30_000)
            assert page.url.startswith(f"{api_server}/war-room/")
            # Apply a filter: November 1-10, Webinar leads only -> L4, met.
            page.fill("input[name=start]", "2026-11-01")
            page.fill("input[name=end]", "2026-11-10")
            page.select_option("select[name=lead_source]", "Webinar")
            page.click("#apply")
            page.wait_for_url("**lead_source=Webinar**")
            assert "Overall: 100% of 1 decided clocks met" in page.inner_text("#overall")
            page.select_option("select[name=lead_source]", "")
            page.click("#apply")
            page.wait_for_function("!location.search.includes('Webinar')")
            assert "Overall: 50% of 4 decided clocks met" in page.inner_text("#overall")
            # The at-risk list names the lead by its (hostile) name; its timeline explains the clock.
            page.click("#at-risk a:text('<script>alert(1)</script>')")
            page.wait_for_selector("#timeline")
            assert page.inner_text("#lead-name") == "<script>alert(1)</script>"
            events = page.locator("#timeline tr.event td:nth-child(2)").all_inner_texts()
            assert events == [
                "clock_start",
                "clock_pause",
                "checkpoint_due",
                "message_sent",
                "escalation",
                "reassignment",
            ]
            rules = page.locator("#timeline tr.event td.rule").all_inner_texts()
            assert rules[1] == "sales_touch.pause.out_of_hours" and rules[4] == "sales_touch.breach"
            link = page.locator("#timeline tr.message_sent a.task-run")
            assert link.get_attribute("href") == (
                "/dags/sla_monitor/runs/scheduled__2026-11-20T12%3A00%3A00%2B00%3A00/tasks/deliver"
            )
            # The unowned panel links to the lead's timeline: its two alerts, once each.
            page.goto(f"{api_server}/war-room/")
            page.click("#unowned a:text('Waiting Lead')")
            page.wait_for_selector("#timeline")
            alerts = page.locator("#timeline tr.unowned_alert_queued td.detail").all_inner_texts()
            assert [alert.split(":")[0] for alert in alerts] == ["first alert", "reminder 1"]
            page.goto(f"{api_server}/war-room/lead/RT1")  # routed; its reason holds a script tag
            assert "Routed to Rita (sdr_east)" in page.inner_text("#routing")
            assert "<script>alert(2)</script>" in page.inner_text("#timeline tr.routing td.detail")
            # The SLA matrix: a row per policy SLA; a row opens its handoff, the selector another.
            page.goto(f"{api_server}/war-room/")
            assert page.locator("#matrix tr[id^=matrix-]").count() == 5
            page.click("#matrix-cs_kickoff a.handoff")
            page.wait_for_url("**sla=cs_kickoff**")
            assert "Deal O4" in page.inner_text("#at-risk") and "30,000" in page.inner_text("#at-risk")
            page.select_option("select[name=sla]", "demo_to_proposal")
            page.click("#apply")
            page.wait_for_url("**sla=demo_to_proposal**")
            assert "watches Opportunity records" in page.inner_text("#funnel-note")
            page.click("#at-risk a:text('Acme - New Business')")
            page.wait_for_selector("#timeline")
            assert page.inner_text("#amount") == "50,000" and "StageName" in page.inner_text("#history")
            assert dialogs == []  # neither the lead's name nor the routing reason ran as script
        finally:
            browser.close()
