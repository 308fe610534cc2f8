"""The local stack behind `make run`: the Airflow connections pointing at embedded defaults, and
the stand-in servers and demo started beside Airflow.

`python -m sandbox.devstack connections` prints the connections as JSON for
`airflow connections import`; `start` runs every stand-in in the foreground until interrupted;
`describe` tells a newcomer where to look; `demo-policy` writes the demo's SLA policy (the shipped
one plus the demo org's automation user, recycling in auto mode, and the follow-the-sun
demo-request desk's calendar and team) and prints its path for LEADSLA_POLICY_PATH;
`trigger-reports` waits for the first sync and evaluation, then has Airflow e-mail the four
reports once for the demo's own history. Only connection values and that policy point at the
stand-ins: the production code paths are the same.
"""

from __future__ import annotations

import argparse
import datetime as dt
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


# --- alerts: Slack API, SMTP sink and SMS gateway stand-ins ------------------------
SLACK_PORT = int(os.environ.get("LEADSLA_SLACK_PORT", "8765"))
SMTP_PORT = int(os.environ.get("LEADSLA_SMTP_PORT", "8026"))
SMS_PORT = int(os.environ.get("LEADSLA_SMS_PORT", "8027"))


#: The SMS stand-in's access token (`sandbox.sms_gateway.SANDBOX_TOKEN`; a sandbox value, no secret).
SMS_TOKEN = "sandbox-sms-token"


def _alert_connections() -> dict[str, dict]:
    return {
        "slack_api_default": {
            "conn_type": "slack",
            "description": "Slack Web API stand-in (sandbox.slack_api); any token works",
            "password": "xoxb-sandbox-token",
            # slack_sdk joins method names onto base_url: the trailing slash matters.
            "extra": json.dumps({"base_url": f"http://127.0.0.1:{SLACK_PORT}/api/", "timeout": 10}),
        },
        "smtp_default": {
            "conn_type": "smtp",
            "description": "SMTP sink stand-in (sandbox.smtp_sink): plain SMTP on localhost only",
            "host": "127.0.0.1",
            "port": SMTP_PORT,
            "extra": json.dumps(
                {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "sla-monitor@leadsla.example",
                    "timeout": 10,
                    "retry_limit": 0,
                }
            ),
        },
        # The policy's sms.connection: Apprise's SMSEagle plugin pointed at the gateway stand-in.
        "apprise_sms": {
            "conn_type": "apprise",
            "description": "SMS gateway stand-in (sandbox.sms_gateway, SMSEagle JSON-RPC) via Apprise",
            "extra": json.dumps(
                {"config": {"path": f"smseagle://{SMS_TOKEN}@127.0.0.1:{SMS_PORT}/", "tag": "sms"}}
            ),
        },
    }


def demo_org_automation_user_ids() -> list[str]:
    """The demo org's automated actor: the Salesforce stand-in's integration user (a fixed id). The
    simulator's assignment rule and every unattributed API change act as it, as in a real org
    where rules and integrations run under one integration user."""
    from sandbox.sf_store import make_id

    return [make_id("005", 0)]


#: The demo recycles by itself (the policy's `recycle.mode`; the shipped policy only recommends), so
#: `make run` shows the unresponsive leads' Status and reason change and their re-engagement date.
DEMO_RECYCLE_MODE = "auto"

#: The demo org's follow-the-sun demo-request desk (sandbox.simulate's DESK_TEAM), so `make run` is
#: alive at any hour: its calendar is open around the clock, every day (no holidays), and its
#: demo requests fall in the shipped policy's demo_request tier (5 business minutes, critical): 5
#: real minutes on this calendar. A demo addition, not a production default: a real org declares
#: its own 24 x 7 team (docs/decisions/2026-12-06-demo-any-hour.md).
DESK_CALENDAR = "follow_the_sun"
DESK_POLICY_TEAM = "inbound_desk"


def demo_desk() -> tuple[dict, dict]:
    """The desk's calendar and team entries for the policy's `calendars:` and `teams:`."""
    from sandbox.simulate import DESK_TEAM as DESK_CRM_NAME

    always = ["00:00-24:00"]
    calendar = {
        "timezone": "UTC",
        "hours": {day: list(always) for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    }
    team = {
        "calendar": DESK_CALENDAR,
        "crm_names": [DESK_CRM_NAME],
        "manager": "crm",
        "slack_channel": "#inbound-desk",
    }
    return calendar, team


def write_demo_policy(path: Path | None = None) -> Path:
    """Write the demo's SLA policy: the shipped include/config/sla_policy.yaml with the demo org's
    `automation_user_ids`, so the 24 h breach lock puts back its automated reassignments (and its
    sequence e-mails are never attempts), recycling in `DEMO_RECYCLE_MODE`, and the demo-request
    desk's calendar (`DESK_CALENDAR`) and team (`DESK_POLICY_TEAM`, see `demo_desk`).

    Returns:
        The file written (default: <sandbox dir>/sla_policy.yaml).
    """
    import yaml

    from leadsla.policy import DEFAULT_POLICY_PATH, load_policy

    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    data["automation_user_ids"] = sorted(
        {*data.get("automation_user_ids", []), *demo_org_automation_user_ids()}
    )
    if data.get("recycle"):
        data["recycle"]["mode"] = DEMO_RECYCLE_MODE
    calendar, team = demo_desk()
    data.setdefault("calendars", {})[DESK_CALENDAR] = calendar
    data.setdefault("teams", {})[DESK_POLICY_TEAM] = team
    path = path or sandbox_dir() / "sla_policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Generated by `python -m sandbox.devstack demo-policy` for `make run`: "
        f"{DEFAULT_POLICY_PATH.name}\n"
        "# plus the demo org's automation user (the Salesforce stand-in's integration user), recycling\n"
        f"# in {DEMO_RECYCLE_MODE} mode and the {DESK_POLICY_TEAM} team on its {DESK_CALENDAR} calendar\n"
        "# (24 x 7, the demo-request desk).\n"
        "# Edit the shipped file, not this one.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_policy(path)  # refuse to hand out a policy that does not load
    return path


def _seed_slack(slack_dir: Path) -> None:
    """Seed the Slack stand-in with the demo org's people and the policy's channels (see
    `sandbox.slack_seed`), so demo reps can be DMed and VP/team channels exist."""
    from sandbox.slack_seed import write_seed

    org_db = os.environ.get("LEADSLA_DEMO_ORG_DB")
    counts = write_seed(
        slack_dir,
        org_db=Path(org_db) if org_db else sandbox_dir() / "salesforce" / "org.sqlite3",
        desk=DEMO_DESK,
    )
    print(f"Slack stand-in seeded: {counts['users']} demo users, {counts['channels']} channels", flush=True)


def _alert_services() -> list[Service]:
    slack_dir, mail_dir, sms_dir = sandbox_dir() / "slack", sandbox_dir() / "mail", sandbox_dir() / "sms"
    return [
        Service(
            "slack",
            [sys.executable, "-m", "sandbox.slack_api", "--port", str(SLACK_PORT), "--data", str(slack_dir)],
            f"Slack API on http://127.0.0.1:{SLACK_PORT}/api/ - every message in "
            f"{slack_dir / 'messages.jsonl'}"
            f" (and http://127.0.0.1:{SLACK_PORT}/_sandbox/messages)",
        ),
        Service(
            "smtp",
            [sys.executable, "-m", "sandbox.smtp_sink", "--port", str(SMTP_PORT), "--dir", str(mail_dir)],
            f"SMTP sink on 127.0.0.1:{SMTP_PORT} - one .eml file per e-mail in {mail_dir}",
        ),
        Service(
            "sms",
            [sys.executable, "-m", "sandbox.sms_gateway", "--port", str(SMS_PORT), "--data", str(sms_dir)],
            f"SMS gateway (SMSEagle API) on http://127.0.0.1:{SMS_PORT}/jsonrpc/sms - every text in "
            f"{sms_dir / 'messages.jsonl'} (and http://127.0.0.1:{SMS_PORT}/_sandbox/messages)",
        ),
    ]


# --- end alerts -------------------------------------------------------------------------------


# --- CRM: Salesforce REST API stand-in over HTTPS, and the demo org ---------------
SALESFORCE_PORT = int(os.environ.get("LEADSLA_SALESFORCE_PORT", "8443"))
#: History a new demo org starts with: two weeks always hold the last full week (the weekly
#: reports' default period) and are synced and evaluated within the first minutes. Longer costs
#: more than it shows: 60 days took ~3.5 min to seed, sync and evaluate and queued ~4,000 alerts.
DEMO_BACKLOG_HOURS = 14 * 24
#: The demo routes through Lead SLA Monitor (the lead_routing DAG) from the moment it starts: its
#: backlog was assigned by the org's own rule (see sandbox.simulate and
#: docs/decisions/2026-12-06-demo-routing.md).
DEMO_ROUTING = "leadsla"
#: The demo org has the follow-the-sun demo-request desk (sandbox.simulate `--desk`), so a warning, a
#: breach and an escalation arrive within minutes of the start, whatever the day and hour.
DEMO_DESK = True


def salesforce_dir() -> Path:
    return sandbox_dir() / "salesforce"


def ca_bundle() -> Path:
    """The sandbox's CA certificate; `make run` exports REQUESTS_CA_BUNDLE to it for Airflow."""
    return salesforce_dir() / "certs" / "ca.pem"


def _crm_connections() -> dict[str, dict]:
    from sandbox.salesforce_api import DEFAULT_PASSWORD, DEFAULT_TOKEN, DEFAULT_USERNAME

    return {
        "salesforce_default": {
            "conn_type": "salesforce",
            "description": "Salesforce REST API stand-in (sandbox.salesforce_api) over HTTPS",
            "login": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            # simple-salesforce builds https://{domain}.salesforce.com/services/Soap/u/{version}; the '#'
            # turns the rest into a fragment that is never sent, so the real login reaches the sandbox.
            "extra": json.dumps(
                {
                    "security_token": DEFAULT_TOKEN,
                    "version": "59.0",
                    "domain": f"127.0.0.1:{SALESFORCE_PORT}/services/Soap/u/59.0#",
                    # Change Data Capture through the triggerer; LEADSLA_CRM_STREAMING=0: poll instead.
                    "streaming": os.environ.get("LEADSLA_CRM_STREAMING", "1") != "0",
                }
            ),
        },
    }


def _streaming_knobs() -> list[str]:
    """The Streaming API's knobs from the environment: change event retention (default 72 h) and
    the longest long poll (default 110 s)."""
    out: list[str] = []
    for env, flag in (
        ("LEADSLA_SANDBOX_CDC_RETENTION_S", "--cdc-retention-s"),
        ("LEADSLA_SANDBOX_COMETD_TIMEOUT_S", "--cometd-timeout-s"),
    ):
        if os.environ.get(env):
            out += [flag, os.environ[env]]
    return out


def _crm_services() -> list[Service]:
    from sandbox.simulate import INTAKE_QUEUE

    speed = os.environ.get("LEADSLA_DEMO_SPEED", "1")
    return [
        Service(
            "salesforce",
            [
                sys.executable,
                "-m",
                "sandbox.salesforce_api",
                "--port",
                str(SALESFORCE_PORT),
                "--data",
                str(salesforce_dir()),
                *_streaming_knobs(),
            ],
            f"Salesforce REST API and Streaming API (Change Data Capture) on https://127.0.0.1:"
            f"{SALESFORCE_PORT} (org in {salesforce_dir() / 'org.sqlite3'})",
        ),
        Service(
            "demo",
            [
                sys.executable,
                "-m",
                "sandbox.simulate",
                "--data",
                str(salesforce_dir()),
                "--speed",
                speed,
                "--backlog-hours",
                str(DEMO_BACKLOG_HOURS),
                "--routing",
                DEMO_ROUTING,
                *(["--desk"] if DEMO_DESK else []),
            ],
            "demo org simulator (real time; LEADSLA_DEMO_SPEED only helps it catch up): leads arrive, "
            f"move and get worked; new Americas and EMEA leads wait in the {INTAKE_QUEUE} queue for "
            "lead_routing, APAC's are assigned by the org's own rule; a few accepted leads never answer "
            "their three attempts, and lead_recycling recycles them; the follow-the-sun demo-request desk "
            "takes demo requests at any hour (for 20 minutes after the start, one every 2 minutes is called "
            "back late: a warning, a breach and an escalation within minutes, whatever the day)",
        ),
    ]


# --- end CRM ----------------------------------------------------------------------------------


# --- reports: the four report e-mails once, from the demo's own history ------------
REPORTS = ("weekly", "feedback", "monthly", "quarterly")


def demo_report_periods(history_start: dt.datetime, now: dt.datetime, timezone: str) -> dict[str, str]:
    """For each report, the period that holds the most of the demo's history [history_start, now):
    the last full one (the scheduled default) or the current one, which is reported to date.

    With two weeks of history the weekly reports get the last full week; the monthly and quarterly
    ones get whichever month or quarter holds more of those two weeks.
    """
    from leadsla.reports.builders import KIND_OF_REPORT
    from leadsla.reports.period import containing, last_full

    def held(period) -> dt.timedelta:
        return min(period.end, now) - max(period.start, history_start)

    out = {}
    for name in REPORTS:
        kind = KIND_OF_REPORT[name]
        previous, current = last_full(kind, now, timezone), containing(kind, now, timezone)
        out[name] = (previous if held(previous) >= held(current) else current).label
    return out


def _store_ready(engine) -> dt.datetime | None:
    """The first lead's creation once the monitor has evaluated clocks (None before)."""
    import sqlalchemy as sa

    from leadsla.store import schema

    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(schema.clocks)).scalar_one() == 0:
            return None
        return conn.execute(
            sa.select(sa.func.min(schema.records.c.created_at)).where(schema.records.c.object_type == "Lead")
        ).scalar_one()


def trigger_reports(timeout_s: float = 900.0, poll_s: float = 10.0) -> int:
    """Once per demo: wait for the first sync and evaluation, then trigger the four report DAGs
    (`airflow dags trigger ... --conf '{"period": ...}'`) so their e-mails land in the SMTP sink.

    A period the scheduler's own first run also covers (the last full week, on a fresh start) is
    still triggered: the report DAGs send each report+period once (`leadsla.reports.dispatch`), so
    whichever run comes second is skipped, and one that comes before a sync waits for it.

    A marker file in the sandbox folder makes a restarted `make run` skip it.
    """
    import time

    from leadsla.reports.schedule import report_schedule
    from leadsla.store import open_store

    marker = sandbox_dir() / "reports_triggered.json"
    # Only reports actually triggered are in the marker: a restart retries the ones that failed.
    before = json.loads(marker.read_text()).get("periods", {}) if marker.exists() else {}
    if set(before) >= set(REPORTS):
        print(
            f"report e-mails were requested before ({marker}); trigger sla_reports_* from the UI for more",
            flush=True,
        )
        return 0
    engine = open_store()
    deadline = time.monotonic() + timeout_s
    try:
        while (first := _store_ready(engine)) is None:
            if time.monotonic() > deadline:
                print(
                    "no SLA clocks in the store yet: report e-mails not requested (trigger sla_reports_* "
                    "by hand)",
                    flush=True,
                )
                return 1
            time.sleep(poll_s)
    finally:
        engine.dispose()
    now = dt.datetime.now(dt.UTC)
    first = first if first.tzinfo else first.replace(tzinfo=dt.UTC)
    periods = {
        name: label
        for name, label in demo_report_periods(first, now, report_schedule("weekly")[1]).items()
        if name not in before
    }
    triggered = dict(before)
    for name, label in periods.items():
        for _ in range(6):  # the DAG processor may not have serialized the DAG yet
            done = subprocess.run(
                [
                    "airflow",
                    "dags",
                    "trigger",
                    f"sla_reports_{name}",
                    "--conf",
                    json.dumps({"period": label}),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                triggered[name] = label
                break
            time.sleep(poll_s)
        else:
            print(f"could not trigger sla_reports_{name}: {done.stderr.strip()[-300:]}", flush=True)
    if triggered:
        marker.write_text(json.dumps({"at": now.isoformat(), "periods": triggered}) + "\n")
    print(
        "report e-mails requested: "
        + ", ".join(f"{n} {p}" for n, p in triggered.items() if n in periods)
        + f"; they land as .eml files in {sandbox_dir() / 'mail'} (once per report and period: a period"
        " the scheduler already sent is skipped)",
        flush=True,
    )
    return 0 if set(periods) <= set(triggered) else 1


# --- end reports ------------------------------------------------------------------------------


def connections() -> dict[str, dict]:
    """Airflow connections for the local stack, in `airflow connections import` JSON form."""
    return {
        "leadsla_store": {
            "conn_type": "generic",
            "description": "Lead SLA Monitor store (SQLAlchemy URL in extra.url)",
            "extra": json.dumps({"url": f"sqlite:///{airflow_home() / 'leadsla_store.db'}"}),
        },
        **_crm_connections(),
        **_alert_connections(),
    }


def services() -> list[Service]:
    """The stand-ins `make run` starts beside Airflow."""
    return [*_crm_services(), *_alert_services()]


def start() -> int:
    """Run every stand-in until interrupted; a stand-in that dies takes the others down with it."""
    _seed_slack(sandbox_dir() / "slack")
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
    print(
        "  reports: the four report e-mails are sent once after the first sync, into "
        f"{sandbox_dir() / 'mail'}; "
        "any period again: `leadsla report NAME --period LABEL --out DIR`"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.devstack", description=__doc__)
    parser.add_argument(
        "action", choices=["connections", "start", "describe", "ca-bundle", "demo-policy", "trigger-reports"]
    )
    args = parser.parse_args(argv)
    if args.action == "demo-policy":
        print(write_demo_policy())
        return 0
    if args.action == "connections":
        json.dump(connections(), sys.stdout, indent=2)
        print()
        return 0
    if args.action == "ca-bundle":
        print(ca_bundle())
        return 0
    if args.action == "describe":
        describe()
        return 0
    if args.action == "trigger-reports":
        return trigger_reports()
    return start()


if __name__ == "__main__":
    sys.exit(main())
