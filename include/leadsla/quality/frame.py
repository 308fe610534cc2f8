"""CRM rows -> the table of facts a suite checks: raw fields plus derived columns.

The suites decide what is acceptable; this module only states facts about each row (a
timestamp's parse error and its epoch seconds, whether a rejection reason is missing where it is
required, whether the owner has a manager, whether an activity's target is known), so that
every check stays a declared expectation. It never judges a row, never drops one, and never
changes a value: row i of the frame is row i of the input.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

#: Which suite checks which CRM object; objects not listed pass through the gate unchecked
#: (landing still refuses what it cannot store).
SUITE_OF = {
    "Lead": "leads",
    "LeadHistory": "history",
    "Task": "activities",
    "Event": "activities",
    "User": "users",
}
#: The timestamp fields each suite parses (text as the CRM or a Data Loader export sends it).
TIMESTAMPS = {
    "leads": ("CreatedDate", "SystemModstamp", "MQL_Date__c", "SAL_Date__c", "SQL_Date__c"),
    "history": ("CreatedDate",),
    "activities": ("CreatedDate", "SystemModstamp"),
    "users": ("SystemModstamp",),
}
#: The raw fields each suite reads (an absent column is all nulls).
FIELDS = {
    "leads": ("Id", "Status", "Email", "OwnerId", "Rejection_Reason__c"),
    "history": ("Id", "LeadId", "OpportunityId", "Field", "NewValue"),
    "activities": ("Id", "WhoId", "WhatId"),
    "users": ("Id", "Email"),
}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Lookups:
    """What the store knows, for checks that look beyond the row.

    `owners`: user id -> (manager_id, is_active); None = unknown, owner checks are not made.
    `known_records`: CRM ids of records the store holds (plus this batch's leads); None = unknown.
    `status_map`: the CRM Lead status mapping, applied before a status is checked.
    `reason_required`: the lifecycle statuses that require a rejection reason.
    """

    owners: dict[str, tuple[str | None, bool]] | None = None
    known_records: set[str] | None = None
    status_map: dict[str, str] = field(default_factory=dict)
    reason_required: frozenset[str] = frozenset()


def parse_timestamp(value: Any) -> tuple[float | None, str | None]:
    """A CRM timestamp as (epoch seconds, None), or (None, why not); a blank is (None, None).

    Accepts Salesforce dateTime text with a zone (...Z, +0000, +00:00) and plain dates (UTC
    midnight). A dateTime without a zone is an error: a timezone is never guessed.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None, None
    if not isinstance(value, str):
        return None, f"{value!r} is not a timestamp text"
    text = value.strip()
    if not text:
        return None, None
    try:
        if _DATE_ONLY.match(text):
            parsed = dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, f"{value!r} is not a date/time"
    if parsed.tzinfo is None:
        return None, f"{value!r} has no timezone"
    return parsed.timestamp(), None


def _text(value: Any) -> str | None:
    """A field as text for checking: blanks are None; non-text keeps its repr (so it fails a regex)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def facts(suite: str, rows: Sequence[Mapping[str, Any]], lookups: Lookups | None = None) -> pd.DataFrame:
    """The frame `suite` validates: one row per input row, in order, index 0..n-1."""
    lookups = lookups or Lookups()
    data: dict[str, list[Any]] = {name: [_text(r.get(name)) for r in rows] for name in FIELDS[suite]}
    for name in TIMESTAMPS[suite]:
        parsed = [parse_timestamp(r.get(name)) for r in rows]
        data[f"{name}__epoch"] = [p[0] for p in parsed]
        data[f"{name}__error"] = [p[1] for p in parsed]
    if suite == "leads":
        data["Rejection_Reason__missing"] = [
            (lookups.status_map.get(s, s) in lookups.reason_required and not reason)
            for s, reason in zip(data["Status"], data["Rejection_Reason__c"], strict=True)
        ]
        owners = lookups.owners
        has_manager, active = [], []
        for owner in data["OwnerId"]:
            info = owners.get(owner) if owners is not None and owner else None
            has_manager.append(None if info is None else bool(info[0]))
            active.append(None if info is None else bool(info[1]))
        data["Owner__has_manager"] = has_manager
        data["Owner__is_active"] = active
    elif suite == "history":
        # LeadHistory names its parent LeadId; OpportunityFieldHistory OpportunityId.
        data["ParentId"] = [
            lead or opp for lead, opp in zip(data["LeadId"], data["OpportunityId"], strict=True)
        ]
        data["Status__new"] = [
            lookups.status_map.get(new, new) if fld == "Status" and new is not None else None
            for fld, new, lead in zip(data["Field"], data["NewValue"], data["LeadId"], strict=True)
        ]
    elif suite == "activities":
        known = lookups.known_records
        data["Target__known"] = [
            None
            if known is None or not (who or what)
            else bool((who and who in known) or (what and what in known))
            for who, what in zip(data["WhoId"], data["WhatId"], strict=True)
        ]
    frame = pd.DataFrame(data, index=pd.RangeIndex(len(rows)), dtype=object)
    for name in TIMESTAMPS[suite]:
        frame[f"{name}__epoch"] = pd.to_numeric(frame[f"{name}__epoch"], errors="coerce").astype("float64")
    return frame
