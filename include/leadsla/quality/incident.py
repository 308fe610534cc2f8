"""Data-quality incidents: when a suite's error rate crosses the threshold, tell data engineering once.

An incident opens at the first run of a suite over the threshold (or failing wholesale) and stays
open while consecutive runs of that suite stay over it; its id is `<suite>@<opening instant>`,
so the Slack notice keyed on it is queued once per incident however many runs it lasts. This
module never sends and never writes the outbox: it says what the notice is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.plan import Notice
from leadsla.quality.rules import QualityRules
from leadsla.store import schema


def crossed(rules: QualityRules, summary: dict[str, Any]) -> bool:
    """Whether a suite's run is an incident: a wholesale failure, or an error rate over the threshold."""
    if summary.get("wholesale_failure"):
        return True
    rows = summary["rows"]
    return rows >= rules.incident_min_rows and summary["quarantined"] / rows >= rules.incident_error_rate


def incident_for(
    conn: sa.Connection, rules: QualityRules, suite: str, summary: dict[str, Any], now: dt.datetime
) -> str | None:
    """The open incident this run belongs to (continued or new), or None when the run is fine."""
    if not crossed(rules, summary):
        return None
    runs = schema.quality_runs
    previous = conn.execute(
        sa.select(runs.c.incident)
        .where(runs.c.suite == suite)
        .order_by(runs.c.at.desc(), runs.c.quality_run_id.desc())
        .limit(1)
    ).scalar()
    return previous or f"{suite}@{now.astimezone(dt.UTC).isoformat(timespec='seconds')}"


def incident_notice(
    rules: QualityRules, suite: str, incident: str, summary: dict[str, Any], failing: list[dict[str, Any]]
) -> Notice:
    """The incident's data-engineering Slack notice (keyed on the incident: queued once however
    many runs it lasts)."""
    opened = dt.datetime.fromisoformat(incident.split("@", 1)[1])
    rate = summary["quarantined"] / summary["rows"] if summary["rows"] else 0.0
    lines = [
        f"{summary['quarantined']} of {summary['rows']} {suite} rows quarantined ({rate:.0%}); "
        f"threshold {rules.incident_error_rate:.0%}."
    ]
    if summary.get("wholesale_failure"):
        lines.append(f"Suite failed wholesale: {summary['wholesale_failure']}")
    lines += [
        f"{e['reason']} ({e['column']}): {e['unexpected']} rows" for e in failing if e["severity"] == "error"
    ][:8]
    lines.append(
        "Held rows are in the quarantine table with their reasons and are re-validated on every sync."
    )
    return Notice(
        source="data_quality",
        subject=suite,
        opened_at=opened,
        checkpoint="incident",
        recipients=(("slack", rules.incident_channel),),
        title=f"Data-quality incident: {suite}",
        severity="critical",
        lines=tuple(lines),
    )
