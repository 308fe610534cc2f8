"""The four reports (weekly leadership summary, weekly feedback digest, monthly maintenance
review, quarterly review) as `Report` objects: HTML (Jinja, autoescaped), plain text, PNG charts
and CSV attachments; plus saving to a folder and building the e-mail.

Deterministic for a store and period: no wall clock, sorted rows, fixed chart metadata. Never
sends anything (the DAGs send via `leadsla.notify.email.send_message`).
"""

from __future__ import annotations

import base64
import datetime as dt
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import jinja2
import pandas as pd

from leadsla.csv_cells import neutralise
from leadsla.paths import templates_dir
from leadsla.reports import charts, cherry_picking, headline, recycling, review
from leadsla.reports import funnel as fn
from leadsla.reports import handoffs as hf
from leadsla.reports import metrics as m
from leadsla.reports.config import ReportConfig
from leadsla.reports.data import ReportData
from leadsla.reports.period import Period

KIND_OF_REPORT = {"weekly": "week", "feedback": "week", "monthly": "month", "quarterly": "quarter"}


@dataclass
class Report:
    name: str  # weekly, feedback, monthly, quarterly
    period: Period
    subject: str
    context: dict
    images: dict[str, bytes] = field(default_factory=dict)  # cid -> PNG
    csvs: dict[str, str] = field(default_factory=dict)  # filename -> CSV text
    warnings: list[str] = field(default_factory=list)  # e.g. the CRM mirror not synced past the period

    def html(self, inline: str = "data") -> str:
        """inline='data' embeds charts as data URIs (saved file); 'cid' references Content-IDs (e-mail);
        'file' references the PNG files saved beside the HTML."""

        def src(cid: str) -> str:
            if inline == "cid":
                return f"cid:{cid}"
            if inline == "file":
                return f"{cid}.png"
            return "data:image/png;base64," + base64.b64encode(self.images[cid]).decode()

        return _env().get_template(f"reports/{self.name}.html").render(src=src, **self.context)

    def text(self) -> str:
        return _env().get_template("reports/summary.txt").render(**self.context)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = lambda x, why="": _shown(x, why) or f"{x:.0%}"
    env.filters["num"] = lambda x, d=1, why="": _shown(x, why) or f"{x:,.{d}f}"
    return env


def _shown(x: float | None, why: str) -> str:
    """ "n/a (why)" for a figure that cannot be computed (None, NaN or infinite: never printed as
    `nan` or `inf`), "" for one that can."""
    if x is not None and not pd.isna(x) and abs(float(x)) != float("inf"):
        return ""
    return f"n/a ({why})" if why else "n/a"


def _csv(df: pd.DataFrame) -> str:
    """The frame as an attachment's CSV text (RFC 4180: CRLF line ends, so a cell holding a line
    break or a carriage return is quoted); CRM text that a spreadsheet would run as a formula is
    neutralised (`leadsla.csv_cells`)."""
    out = df.copy()
    for col in out.columns:
        # A plain loop: Series.map on an empty datetime column keeps its dtype, and .any() refuses it.
        if any(isinstance(v, tuple) for v in out[col]):
            out[col] = out[col].map(lambda v: " ".join(v) if isinstance(v, tuple) else "")
        if any(isinstance(v, str) for v in out[col]):
            out[col] = out[col].map(neutralise)
    return out.to_csv(index=False, lineterminator="\r\n", float_format="%.4f")


def _rows(df: pd.DataFrame) -> list[dict]:
    return df.to_dict("records")


def _handoff_csvs(sections: list[hf.Section]) -> dict[str, str]:
    """The SLA matrix's attachments: `handoffs.csv` (a row per handoff) and, per handoff section,
    `handoff_<sla id>.csv` (its owners, worst first, with the breached record ids)."""
    out = {"handoffs.csv": _csv(pd.DataFrame([sec.row() for sec in sections]))}
    for sec in sections:
        out[f"handoff_{sec.handoff.sla_id}.csv"] = _csv(hf.owners_frame(sec))
    return out


def weekly(data: ReportData, period: Period, cfg: ReportConfig) -> Report:
    clocks = m.judged_clocks(data, period)
    overall = m.compliance(clocks)
    ft = m.first_touch(clocks)
    trend = m.weekly_trend(data, period)
    rev = m.revenue_affected(clocks, cfg.revenue)
    teams = m.compliance(clocks, "team")
    ctx = {
        "title": f"Weekly SLA summary {period.title}",
        "period": period,
        "handoffs": int(len(clocks)),
        "overall": _rows(overall)[0] if len(overall) else None,
        "first_touch": _rows(ft)[0] if len(ft) else None,
        "trend": _rows(trend),
        "revenue": rev,
        "teams": _rows(teams),
        "violations": int(overall["violated"].sum()) if len(overall) else 0,
        "headline": headline.headline(data, period, cfg),
        "sections": hf.sections(data, period, cfg),
    }
    images = {
        "trend": charts.trend(list(trend["week"]), list(trend["compliance"]), "SLA compliance by week", 0.8),
        "teams": charts.bar(
            list(teams["team"]), list(teams["compliance"]), "Compliance by team", "% met", True, 0.8
        ),
    }
    return Report(
        "weekly",
        period,
        ctx["title"],
        ctx,
        images,
        {
            "headline.csv": _csv(pd.DataFrame(ctx["headline"].rows())),
            "compliance_by_team.csv": _csv(teams),
            "weekly_trend.csv": _csv(trend),
            "violations.csv": _csv(
                clocks[clocks["outcome"] == "violated"][
                    [
                        "record_id",
                        "clock_start",
                        "rep",
                        "team",
                        "lead_source",
                        "tier",
                        "elapsed_seconds",
                        "target_seconds",
                    ]
                ]
            ),
            **_handoff_csvs(ctx["sections"]),
        },
    )


def feedback(data: ReportData, period: Period, cfg: ReportConfig) -> Report:
    c = fn.cohort(data, period)
    reasons, sources, campaigns = fn.rejection_reasons(c), fn.by_source(c), fn.by_campaign(c)
    ctx = {
        "title": f"Lead feedback digest {period.title}",
        "period": period,
        "mqls": len(c),
        "reasons": _rows(reasons),
        "sources": _rows(sources),
        "campaigns": _rows(campaigns),
        "rejection": fn.rejection_rate(c),
        "recycling": recycling.figures(data, period),
        "sections": hf.sections(data, period, cfg),
    }
    images = {
        "reasons": charts.bar(
            list(reasons["rejection_reason"]), list(reasons["rejects"]), "Rejection reasons", "leads"
        ),
        "sources": charts.bar(
            list(sources["lead_source"]),
            list(sources["sal_acceptance"]),
            "SAL acceptance by source",
            "% accepted",
            True,
        ),
    }
    return Report(
        "feedback",
        period,
        ctx["title"],
        ctx,
        images,
        {
            "rejection_reasons.csv": _csv(reasons),
            "sources.csv": _csv(sources),
            "campaigns.csv": _csv(campaigns),
            "recycling.csv": _csv(pd.DataFrame(ctx["recycling"])),
            **_handoff_csvs(ctx["sections"]),
        },
    )


def monthly(data: ReportData, period: Period, cfg: ReportConfig) -> Report:
    flags = review.red_flags(data, period, cfg)
    triggers = review.refinement_triggers(data, period, cfg)
    causes = review.root_causes(data, period)
    picking = cherry_picking.audit(data, period, cfg)
    clocks = m.judged_clocks(data, period)
    reps = m.compliance(clocks, ["team", "rep"])
    c = fn.cohort(data, period)
    fun = fn.funnel(c)
    how = causes["by_hour_of_week"]
    ctx = {
        "title": f"Monthly SLA maintenance review {period.title}",
        "period": period,
        "flags": flags,
        "triggers": triggers,
        "cherry_picking": picking,
        "cherry_advice": [(f.check, cherry_picking.ADVICE[f.check]) for f in picking.flags if f.raised],
        "causes": causes,
        "reps": _rows(reps),
        "funnel": _rows(fun),
        "leakage": fn.leakage(c, period, cfg.thresholds.leakage_days),
        "load": _rows(causes["by_load"]),
        "recycling": recycling.figures(data, period),
        "headline": headline.headline(data, period, cfg),
        "sections": hf.sections(data, period, cfg),
    }
    grid = hour_of_week_grid(how)
    images = {
        "funnel": charts.bar(list(fun["stage"]), list(fun["leads"]), "Handoff funnel", "leads"),
        "hours": charts.hour_of_week_heatmap(
            grid.to_numpy().tolist(), f"Violations by hour of week ({period.timezone})"
        ),
    }
    flag_df = pd.DataFrame([f.__dict__ for f in flags + triggers + picking.flags])
    return Report(
        "monthly",
        period,
        ctx["title"],
        ctx,
        images,
        {
            "headline.csv": _csv(pd.DataFrame(ctx["headline"].rows())),
            "violations_by_hour_of_week.csv": _csv(grid.reset_index()),
            "red_flags.csv": _csv(flag_df),
            "cherry_picking.csv": _csv(picking.frame()),
            "reps.csv": _csv(reps),
            "funnel.csv": _csv(fun),
            "recycling.csv": _csv(pd.DataFrame(ctx["recycling"])),
            **_handoff_csvs(ctx["sections"]),
        },
    )


def quarterly(data: ReportData, period: Period, cfg: ReportConfig) -> Report:
    c = fn.cohort(data, period)
    what_if = review.threshold_what_if(data, period, cfg)
    fun = fn.funnel(c)
    baseline = review.baseline_month(data, cfg, period)
    base_p = baseline.month
    base = fn.funnel(fn.cohort(data, base_p)) if base_p else None
    ctx = {
        "title": f"Quarterly SLA review {period.title}",
        "period": period,
        "sources": _rows(fn.by_source(c)),
        "types": _rows(fn.by_lead_type(c)),
        "what_if": what_if,
        "targets": _rows(what_if["targets"]),
        "conversion": _rows(what_if["conversion_by_response"]),
        "months": _rows(what_if["months"]),
        "funnel": _rows(fun),
        "baseline": _rows(base) if base is not None else [],
        "baseline_label": base_p.label if base_p else None,
        "baseline_why": baseline.why_none,
        "headline": headline.headline(data, period, cfg),
        "sections": hf.sections(data, period, cfg),
        "tier_what_if": hf.tier_what_if(data, period, cfg),
    }
    images = {
        "what_if": charts.bar(
            [f"{h:g} h" for h in what_if["targets"]["target_hours"]],
            list(what_if["targets"]["breach_rate"]),
            "Breach rate under alternative targets",
            "% breached",
            True,
            cfg.thresholds.loosen_breach_rate,
        )
    }
    return Report(
        "quarterly",
        period,
        ctx["title"],
        ctx,
        images,
        {
            "headline.csv": _csv(pd.DataFrame(ctx["headline"].rows())),
            "what_if.csv": _csv(what_if["targets"]),
            "conversion_by_response.csv": _csv(what_if["conversion_by_response"]),
            "sources.csv": _csv(fn.by_source(c)),
            "what_if_by_handoff_and_tier.csv": _csv(
                pd.DataFrame(ctx["tier_what_if"], columns=_TIER_WHAT_IF).drop(columns="conversion_points")
            ),
            **_handoff_csvs(ctx["sections"]),
        },
    )


#: The columns of `handoffs.tier_what_if`'s rows (the CSV's header even when there is none).
_TIER_WHAT_IF = [
    "sla_id",
    "handoff",
    "tier",
    "clocks",
    "current_target",
    "breach_rate",
    "proposed_target",
    "proposal",
    "violations_now",
    "violations_proposed",
    "violation_change",
    "conversion_label",
    "conversion_difference",
    "conversion_points",
]


def hour_of_week_grid(by_hour: pd.DataFrame) -> pd.DataFrame:
    """`root_causes`' violations per hour of week (0 = Monday 00:00) as a 7 x 24 table: one row per
    weekday (Mon..Sun), one column per hour 00..23, 0 where nothing was violated."""
    counts = [0] * 168
    for h, n in zip(by_hour["hour_of_week"], by_hour["violations"], strict=True):
        counts[int(h)] = int(n)
    return pd.DataFrame(
        [counts[d * 24 : d * 24 + 24] for d in range(7)],
        index=pd.Index(charts.DAYS, name="weekday"),
        columns=[f"{h:02d}" for h in range(24)],
    )


BUILDERS = {"weekly": weekly, "feedback": feedback, "monthly": monthly, "quarterly": quarterly}


def build(name: str, data: ReportData, period: Period, cfg: ReportConfig) -> Report:
    return BUILDERS[name](data, period, cfg)


def save(report: Report, out: Path) -> list[Path]:
    """Writes <name>_<label>.html (charts as data URIs), each chart PNG and each CSV; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{report.name}_{report.period.label}"
    paths = [out / f"{stem}.html"]
    paths[0].write_text(report.html("data"), encoding="utf-8")
    for cid, png in sorted(report.images.items()):
        p = out / f"{stem}_{cid}.png"
        p.write_bytes(png)
        paths.append(p)
    for name, text in sorted(report.csvs.items()):
        p = out / f"{stem}_{name}"
        p.write_text(text, encoding="utf-8")
        paths.append(p)
    return paths


def period_key(report: Report) -> str:
    """The period's label, plus the cut for a period reported to date ("2026-11.to20261123T1440Z"):
    a to-date report is its own period (its own Message-ID, sent once of its own)."""
    cut = f".to{report.period.end:%Y%m%dT%H%MZ}" if report.period.partial else ""
    return f"{report.period.label}{cut}"


def message_id(report: Report, sender: str) -> str:
    """The report's Message-ID: one per report and period, so a re-send is recognisable."""
    # A report of a period not over yet gets its own id: mail clients drop a second message with the same one.
    return f"<leadsla.report.{report.name}.{period_key(report)}@{sender.rpartition('@')[2] or 'localhost'}>"


def email_message(report: Report, sender: str, recipients: list[str], at: dt.datetime) -> EmailMessage:
    """multipart/alternative (text, then multipart/related HTML with the charts by Content-ID),
    with the CSVs attached. Message-ID is derived from report and period, so a re-send is recognisable."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = report.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(at.astimezone(dt.UTC))
    msg["Message-ID"] = message_id(report, sender)
    msg.set_content(report.text())
    msg.add_alternative(report.html("cid"), subtype="html")
    html_part = msg.get_payload()[1]
    for cid, png in sorted(report.images.items()):
        html_part.add_related(png, maintype="image", subtype="png", cid=f"<{cid}>", filename=f"{cid}.png")
    for name, text in sorted(report.csvs.items()):
        msg.add_attachment(text.encode(), maintype="text", subtype="csv", filename=name)
    return msg
