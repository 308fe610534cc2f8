"""Row-level verdicts from the GX suites: which rows are errors (quarantine) and which are flagged.

`validate(suite, rows, now, rules, lookups)` builds the facts frame, validates it with the
committed suite in an in-memory pandas data source (result_format COMPLETE, so every failing row
is named by `unexpected_index_list`), and turns the results into one `RowVerdict` per input row
plus a summary per expectation. The sync gate and the CLI both call this; nothing else decides.
Rows are never dropped or changed here, and Great Expectations is imported only inside calls.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadsla.quality.frame import Lookups, facts
from leadsla.quality.rules import QualityRules

_SOURCE_IDS = itertools.count(1)


@dataclass
class RowVerdict:
    """One input row: `errors` -> quarantined, else loaded; `warnings` -> flagged."""

    row: int  # 0-based position in the input
    record_id: str | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def quarantined(self) -> bool:
        return bool(self.errors)


@dataclass
class Validation:
    """A suite's verdicts for a batch of rows, and its per-expectation summary (small JSON)."""

    suite: str
    verdicts: list[RowVerdict]
    expectations: list[dict[str, Any]]  # {expectation, column, severity, unexpected, success}
    wholesale_failure: str | None = None  # an expectation that could not run at all

    @property
    def errors(self) -> int:
        return sum(v.quarantined for v in self.verdicts)

    @property
    def warnings(self) -> int:
        return sum(bool(v.warnings) and not v.quarantined for v in self.verdicts)

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "rows": len(self.verdicts),
            "quarantined": self.errors,
            "flagged": self.warnings,
            "wholesale_failure": self.wholesale_failure,
            "expectations": [e for e in self.expectations if e["unexpected"] or not e["success"]],
        }


def parameters(rules: QualityRules, now: dt.datetime) -> dict[str, Any]:
    """Suite parameters for a run at `now` (aware): picklist, reasons, latest acceptable instant."""
    if now.tzinfo is None:
        raise ValueError("the run's time must be timezone-aware")
    return {
        "statuses": rules.allowed_statuses,
        "rejection_reasons": list(rules.rejection_reasons),
        "latest_epoch": (now + rules.future_tolerance).timestamp(),
    }


def _column_of(kwargs: Mapping[str, Any]) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    return f"{kwargs.get('column_A')}/{kwargs.get('column_B')}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate(
    suite_name: str,
    rows: Sequence[Mapping[str, Any]],
    now: dt.datetime,
    rules: QualityRules,
    lookups: Lookups | None = None,
) -> Validation:
    """Validate `rows` (CRM field names as keys) with the named suite.

    Args:
        suite_name: leads, history, activities or users.
        rows: raw CRM rows (API records or CSV rows); never modified.
        now: the run's time; timestamps after now + tolerance are errors.
        rules: quality.yaml with the CRM status map.
        lookups: owners/known records from the store; None skips the checks that need them.

    Returns:
        One verdict per row (same order) and the per-expectation summary. An expectation GX could
        not evaluate at all marks every row as an error (`wholesale_failure`): nothing is loaded
        on a check that did not run.
    """
    from leadsla.quality.suites import suite, validation_context

    lookups = lookups or Lookups(
        status_map=rules.status_map, reason_required=frozenset(rules.reason_required)
    )
    if not lookups.status_map:
        lookups.status_map = rules.status_map
    if not lookups.reason_required:
        lookups.reason_required = frozenset(rules.reason_required)
    frame = facts(suite_name, rows, lookups)
    ids = frame["Id"].tolist()
    verdicts = [RowVerdict(i, ids[i]) for i in range(len(rows))]
    validation = Validation(suite_name, verdicts, [])
    if not rows:
        return validation
    context = validation_context()
    name = f"batch_{next(_SOURCE_IDS)}"
    source = context.data_sources.add_pandas(name)
    try:
        batch = (
            source.add_dataframe_asset("rows")
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame})
        )
        result = batch.validate(
            suite(suite_name),
            result_format={"result_format": "COMPLETE"},
            expectation_parameters=parameters(rules, now),
        )
    finally:
        context.data_sources.delete(name)
    for item in result.results:
        config = item.expectation_config
        severity = (
            "error" if str(getattr(config.severity, "value", config.severity)) == "critical" else "warning"
        )
        reason = (config.meta or {}).get("reason") or config.type
        column = _column_of(config.kwargs)
        raised = (item.exception_info or {}).get("raised_exception")
        indexes = list((item.result or {}).get("unexpected_index_list") or [])
        entry = {
            "expectation": config.type,
            "column": column,
            "severity": severity,
            "reason": reason,
            "unexpected": len(indexes),
            "success": bool(item.success),
        }
        validation.expectations.append(entry)
        if raised:
            message = (item.exception_info or {}).get("exception_message") or "raised"
            validation.wholesale_failure = f"{config.type} on {column}: {message}"
            entry["unexpected"] = len(rows)
            for verdict in verdicts:
                verdict.errors.append(f"check could not run ({reason}): {message}")
            continue
        source_column = column.removesuffix("__epoch").removesuffix("__error") if "/" not in column else None
        for index in indexes:
            verdict = verdicts[int(index)]
            detail = reason
            if "/" in column:
                names = [c.removesuffix("__epoch") for c in column.split("/")]
                detail = f"{reason}: " + ", ".join(
                    f"{n}={_shown(rows[int(index)].get(n))}" for n in reversed(names)
                )
            elif column.endswith("__error"):
                detail = f"{reason}: {frame.at[int(index), column]}"
            elif source_column and source_column in rows[int(index)]:
                detail = f"{reason}: {source_column}={_shown(rows[int(index)].get(source_column))}"
            elif column.endswith("__epoch"):
                detail = f"{reason}: {source_column}={_shown(rows[int(index)].get(source_column))}"
            (verdict.errors if severity == "error" else verdict.warnings).append(detail)
    return validation
