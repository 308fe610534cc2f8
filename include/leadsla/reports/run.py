"""Entry points the CLI and DAGs call: pick the period, load the store, build, save and/or mail.

The run's time is always passed in (the DAG's logical date or data interval end), never read here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from leadsla.reports import builders
from leadsla.reports.config import load_report_config
from leadsla.reports.data import load
from leadsla.reports.period import last_full, parse


def build_for(name: str, *, at: dt.datetime, period: str | None = None, store_url: str | None = None,
              config_path: str | None = None, out: Path | None = None, engine=None):
    """Build report `name` for `period` (label) or the last full period before `at`.

    Returns (Report, saved paths). Raises LeadSlaError subclasses for a bad period or config.
    """
    from leadsla.store import open_store

    cfg = load_report_config(config_path)
    kind = builders.KIND_OF_REPORT[name]
    # A named period that is not over yet (the current week, say) is reported up to `at`, marked as such.
    p = parse(kind, period, cfg.leadership_timezone).to_date(at) if period else last_full(kind, at, cfg.leadership_timezone)
    own = engine is None
    engine = engine or open_store(store_url)
    try:
        data = load(engine, cfg.sla_id, until=p.end, campaign_field=cfg.campaign_field)
    finally:
        if own:
            engine.dispose()
    report = builders.build(name, data, p, cfg)
    paths = builders.save(report, Path(out)) if out else []
    return report, paths


def send_report(name: str, *, at: dt.datetime, period: str | None = None, out: Path | None = None,
                conn_id: str = "smtp_default", engine=None, store_url: str | None = None) -> dict:
    """Build the report for `period` (label; default: the last full period before `at`) and e-mail
    it to its configured recipients through SmtpHook.

    Returns a small JSON-able summary (period, recipients, Message-ID) for XCom.
    """
    from leadsla.notify.email import DEFAULT_FROM, smtp_session

    cfg = load_report_config()
    report, _ = build_for(name, at=at, period=period, out=out, engine=engine, store_url=store_url)
    recipients = list(getattr(cfg.recipients, name))
    with smtp_session(conn_id) as (hook, client):
        sender = hook.from_email or DEFAULT_FROM
        msg = builders.email_message(report, sender, recipients, at)
        client.sendmail(sender, recipients, msg.as_bytes())
    return {"report": name, "period": report.period.label, "partial": report.period.partial, "recipients": recipients, "message_id": msg["Message-ID"]}
