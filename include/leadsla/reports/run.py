"""Entry points the CLI and the report tasks call: pick the period, check the store is complete for
it, load the store, build, save and/or mail.

The run's time is always passed in (the DAG run's `run_after`), never read here. E-mail goes out
only on a complete store (`readiness`; the DAGs wait for it with `data_gap` and `send_report` checks
again) and once per report and period (`dispatch`); the CLI builds files from whatever the store
holds and warns when it is incomplete.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from leadsla.policy import Policy, load_policy
from leadsla.reports import builders, readiness
from leadsla.reports.config import ReportConfig, load_report_config
from leadsla.reports.data import Handoff, load
from leadsla.reports.period import Period, last_full, parse
from leadsla.store.connection import read_only

log = logging.getLogger(__name__)


def left_counts_as(sla_id: str, policy: Policy | None = None) -> str:
    """How the measured SLA counts a clock ended by its record leaving the watched state (SAL ->
    SQL, Recycled): `met` or `excluded` (the policy's `left_counts_as`; default: the active policy).

    Raises:
        PolicyError: the policy has no SLA `sla_id` (reports.yaml names an unknown SLA).
    """
    return (policy or load_policy()).sla(sla_id).left_counts_as


def handoffs(policy: Policy, measured: str) -> tuple[Handoff, ...]:
    """Every enabled SLA of the policy as a report section (the SLA matrix), the measured one first,
    the rest in the policy's order."""
    slas = [s for s in policy.slas if s.enabled]
    slas.sort(key=lambda s: s.id != measured)
    return tuple(Handoff(s.id, s.name, s.handoff, s.object, s.team, s.left_counts_as) for s in slas)


def data_gap(
    name: str,
    *,
    at: dt.datetime,
    period: str | None = None,
    engine,
    groups: list[str] | None = None,
    cfg: ReportConfig | None = None,
) -> tuple[Period, str | None]:
    """The period a run of report `name` at `at` covers (the `period` label, else the last full
    period before `at`), and why the store is not complete for it.

    Args:
        groups: the CRM object groups that must have synced (default: crm_fields.yaml's groups).
        cfg: the report settings (default: reports.yaml).

    Returns:
        (period, None) when the report can be built on complete data, else (period, the sentence
        from `readiness.gap`: "CRM mirror not synced past ...; the report waits", or the SLA clocks'
        evaluation still missing).

    Raises:
        PeriodError: `period` is not a label of the report's kind.
    """
    cfg, kind = cfg or load_report_config(), builders.KIND_OF_REPORT[name]
    # A named period that is not over yet (the current week, say) is reported up to `at`, marked as such.
    tz = cfg.leadership_timezone
    p = parse(kind, period, tz).to_date(at) if period else last_full(kind, at, tz)
    with read_only(engine) as conn:
        missing = readiness.gap(conn, p, groups if groups is not None else readiness.crm_groups())
    return p, missing


def build_for(
    name: str,
    *,
    at: dt.datetime,
    period: str | None = None,
    store_url: str | None = None,
    config_path: str | None = None,
    out: Path | None = None,
    engine=None,
    require_synced: bool = False,
    groups: list[str] | None = None,
    cfg: ReportConfig | None = None,
    policy: Policy | None = None,
):
    """Build report `name` for `period` (label) or the last full period before `at`.

    Args:
        require_synced: refuse (MirrorNotSynced) when the CRM mirror has no successful sync past the
            period's end; otherwise the gap is put in `Report.warnings` and the report built anyway.
        groups: the CRM object groups that must have synced (default: crm_fields.yaml's groups).
        cfg, policy: the report settings and the SLA policy (`left_counts_as` of the measured SLA;
            the routing section and automation users, for the cherry-picking audit); default:
            reports.yaml (or `config_path`) and the active policy.

    Returns (Report, saved paths).

    Raises:
        MirrorNotSynced: `require_synced` and the store is not complete for the period.
        LeadSlaError subclasses for a bad period or config.
    """
    from leadsla.store import open_store

    cfg = cfg or load_report_config(config_path)
    own = engine is None
    engine = engine or open_store(store_url)
    try:
        p, missing = data_gap(name, at=at, period=period, engine=engine, groups=groups, cfg=cfg)
        if missing and require_synced:
            raise readiness.MirrorNotSynced(f"{name} report {p.title}: {missing}")
        policy = policy or load_policy()
        data = load(
            engine,
            cfg.sla_id,
            until=p.end,
            campaign_field=cfg.campaign_field,
            left_counts_as=left_counts_as(cfg.sla_id, policy),
            routing=policy.routing,
            automation_user_ids=policy.automation_user_ids,
            handoffs=handoffs(policy, cfg.sla_id),
            policy=policy,
        )
    finally:
        if own:
            engine.dispose()
    report = builders.build(name, data, p, cfg)
    if missing:
        report.warnings.append(f"{missing.removesuffix('; the report waits')}: figures may be incomplete")
    paths = builders.save(report, Path(out)) if out else []
    return report, paths


def send_report(
    name: str,
    *,
    at: dt.datetime,
    period: str | None = None,
    out: Path | None = None,
    conn_id: str | None = None,
    engine=None,
    store_url: str | None = None,
    resend: bool = False,
    context=None,
    groups: list[str] | None = None,
    cfg: ReportConfig | None = None,
    policy: Policy | None = None,
) -> dict:
    """Build the report for `period` (label; default: the last full period before `at`) and e-mail
    it to its configured recipients through SmtpHook, once per report and period.

    Args:
        conn_id: the SMTP connection (default `notify.email.SMTP_CONN_ID`, smtp_default).
        resend: e-mail it even when this report and period was sent before (same Message-ID).
        context: the Airflow task run (`AuditContext`) written into the audit trail.
        groups: the CRM object groups that must have synced past the period (default: all of them).
        cfg, policy: the report settings and the SLA policy (default: reports.yaml and the active
            policy; the report task passes the configuration in force).

    Returns:
        A small JSON-able summary (period, recipients, Message-ID, `sent` or `skipped: already sent
        at ...`) for XCom.

    Raises:
        MirrorNotSynced: the store is not complete for the period (checked again right before
            building, even after the DAG's sensor saw it complete: a resync may have intervened).
    """
    from leadsla.notify.email import DEFAULT_FROM, SMTP_CONN_ID, smtp_session
    from leadsla.reports import dispatch
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext

    context = context or AuditContext()
    cfg = cfg or load_report_config()
    own = engine is None
    engine = engine or open_store(store_url)
    try:
        report, _ = build_for(
            name,
            at=at,
            period=period,
            out=out,
            engine=engine,
            require_synced=True,
            groups=groups,
            cfg=cfg,
            policy=policy,
        )
        recipients = list(getattr(cfg.recipients, name))
        key = builders.period_key(report)
        summary = {
            "report": name,
            "period": report.period.label,
            "partial": report.period.partial,
            "recipients": recipients,
        }
        with engine.begin() as conn:
            before = None if resend else dispatch.last_sent(conn, name, key)
            if before is not None:
                sent_at = before["recorded_at"].isoformat(timespec="minutes")
                mid = before["detail"].get("message_id")
                dispatch.record_outcome(
                    conn,
                    "report_skipped",
                    report,
                    at=at,
                    context=context,
                    message_id=mid,
                    recipients=recipients,
                    sent_at=before["recorded_at"].isoformat(),
                    sent_by={k: before[k] for k in ("dag_id", "run_id", "task_id", "try_number")},
                )
                log.info(
                    "%s report %s already sent at %s by %s (Message-ID %s): not sent again "
                    "(trigger with resend=true to send it again)",
                    name,
                    key,
                    sent_at,
                    before["run_id"],
                    mid,
                )
                return {**summary, "message_id": mid, "result": f"skipped: already sent at {sent_at}"}
        with smtp_session(conn_id or SMTP_CONN_ID) as (hook, client):
            sender = hook.from_email or DEFAULT_FROM
            msg = builders.email_message(report, sender, recipients, at)
            client.sendmail(sender, recipients, msg.as_bytes())
        # Recorded right after the server accepted it: a crash in between means one duplicate on retry,
        # never a lost report.
        with engine.begin() as conn:
            dispatch.record_outcome(
                conn,
                "report_sent",
                report,
                at=at,
                context=context,
                message_id=msg["Message-ID"],
                recipients=recipients,
                resend=resend,
            )
        log.info(
            "%s report %s e-mailed to %d recipients (Message-ID %s)",
            name,
            key,
            len(recipients),
            msg["Message-ID"],
        )
        return {**summary, "message_id": msg["Message-ID"], "result": "resent" if resend else "sent"}
    finally:
        if own:
            engine.dispose()
