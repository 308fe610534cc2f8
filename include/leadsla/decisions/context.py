"""What an alert says about the deal, so a manager can triage from the message alone.

Every alert (warning, breach, the rate-limit digest's lines, leadership's breach digest, the
unowned-lead alert) carries the record's lead score, its deal value, its source and campaign, and
(for a rep's clock) the rep's open load. This module reads them from a store record as data:

- **score**: the policy's routing score field (`routing.score.field`, else ``Lead_Score__c``);
- **deal value**: an Opportunity's ``Amount``; a Lead's expected deal value is the reports'
  estimate (reports.yaml ``revenue.deal_value``, the figure behind "Estimated pipeline lost to
  delays"), marked as an estimate;
- **campaign**: the reports' ``campaign_field`` (``Campaign__c``);
- an Opportunity has no score or campaign of its own: the Lead converted into it gives them.

The payload's ``context`` is data beside the idempotency key, never part of it. A value the CRM
does not hold reads "not set" (`describe`), never ``None`` or ``nan``. Pure: no store, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from leadsla.decisions.cells import cell_text

#: How a missing value reads in every message.
NOT_SET = "not set"
#: A text value (score, campaign) in a payload is cut to this many characters: payloads stay small.
MAX_TEXT = 120


@dataclass(frozen=True)
class ContextFields:
    """Where the context lives in the store's raw ``fields`` JSON, and the expected deal value."""

    score_field: str | None = "Lead_Score__c"
    campaign_field: str | None = "Campaign__c"
    amount_field: str = "Amount"
    #: The expected value of a deal without an Amount (reports.yaml `revenue.deal_value`); None: unknown.
    deal_value: float | None = None


def _raw(record: Mapping[str, Any] | None) -> Mapping[str, Any]:
    fields = (record or {}).get("fields")
    return fields if isinstance(fields, Mapping) else {}


def _number(value: Any) -> float | None:
    """A finite number, or None (missing, NaN, infinite, or not a number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str | None:
    text = cell_text(value)
    text = " ".join(text.split()) if text is not None else None
    return text[:MAX_TEXT] if text else None


def _score(value: Any) -> str | None:
    """A score as the CRM means it: ``87``, ``87.5``, or a text score (``A``) verbatim."""
    number = _number(value)
    if number is not None:
        return f"{number:g}" if abs(number) < 1e15 else None
    return _text(value) if isinstance(value, str) else None


def _first(own: Mapping[str, Any], origin: Mapping[str, Any], name: str | None) -> Any:
    """The record's own value of `name`, else its origin's (a score of 0 is a value)."""
    if not name:
        return None
    value = own.get(name)
    return value if cell_text(value) not in (None, "") else origin.get(name)


def record_context(
    record: Mapping[str, Any] | None,
    fields: ContextFields,
    *,
    lead: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload's ``context`` for one record (`leadsla.notify.payloads.AlertContext`).

    Args:
        record: the store's record (its ``object_type`` and raw ``fields``).
        lead: for an Opportunity, the Lead converted into it (its score and campaign).
    """
    raw = _raw(record)
    is_opportunity = cell_text((record or {}).get("object_type")) == "Opportunity"
    own = {} if is_opportunity else raw
    origin = _raw(lead) if is_opportunity else {}
    score = _first(own, origin, fields.score_field)
    campaign = _first(own, origin, fields.campaign_field)
    if is_opportunity:
        amount, basis = _number(raw.get(fields.amount_field)), "amount"
    else:
        amount, basis = _number(fields.deal_value), "estimate"
    return {
        "score": _score(score),
        "amount": amount,
        "amount_basis": basis if amount is not None else None,
        "campaign": _text(campaign),
    }


def converted_leads(records: pd.DataFrame, opportunity_ids: Iterable[str]) -> dict[str, Mapping[str, Any]]:
    """Opportunity id -> the Lead converted into it (its raw ``ConvertedOpportunityId``), for the
    opportunities named. Reads the Lead rows only when an opportunity is asked for."""
    wanted = {str(i) for i in opportunity_ids}
    if not wanted or records.empty or "fields" not in records or "object_type" not in records:
        return {}
    return converted_leads_in(records[records["object_type"] == "Lead"].to_dict("records"), wanted)


def converted_leads_in(
    rows: Iterable[Mapping[str, Any]], opportunity_ids: Iterable[str]
) -> dict[str, Mapping[str, Any]]:
    """`converted_leads` over record rows already read as dicts (a plan deciding many records
    reads its frame once): the Lead rows among `rows` converted into the opportunities named."""
    wanted = {str(i) for i in opportunity_ids}
    found: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        if row.get("object_type") != "Lead" or "fields" not in row:
            continue
        opp = cell_text(_raw(row).get("ConvertedOpportunityId"))
        if opp in wanted:
            found[opp] = row
    return found


def money(amount: float) -> str:
    """``$48,000`` (the reports' currency sign; cents only when there are any)."""
    return f"${amount:,.0f}" if float(amount).is_integer() else f"${amount:,.2f}"


def describe(
    context: Mapping[str, Any] | None,
    *,
    source: str | None,
    open_clocks: int | None,
    object_type: str = "Lead",
) -> list[tuple[str, str]]:
    """(label, text) of each context value, in reading order, a missing one saying so briefly.

    Plain text (lead text verbatim): the caller escapes it for its channel. `context` None (a row
    queued before alerts carried context) gives the source and load only.
    """
    parts: list[tuple[str, str]] = []
    if context is not None:
        parts.append(("Score", context.get("score") or NOT_SET))
        amount = _number(context.get("amount"))
        if amount is None:
            value = f"{NOT_SET} (no Amount)" if object_type == "Opportunity" else NOT_SET
        elif context.get("amount_basis") == "estimate":
            value = f"{money(amount)} (estimated: a typical deal)"
        else:
            value = f"{money(amount)} (Opportunity Amount)"
        parts.append(("Deal value", value))
    parts.append(("Source", _text(source) or NOT_SET))
    if context is not None:
        parts.append(("Campaign", context.get("campaign") or NOT_SET))
    if open_clocks is not None:
        parts.append(("Rep's open clocks", str(open_clocks)))
    return parts


def triage_text(parts: list[tuple[str, str]]) -> str:
    """``score 87 · deal value $25,000 (estimated: a typical deal) · source Web · ...``."""
    return " · ".join(f"{label[0].lower()}{label[1:]} {text}" for label, text in parts)
