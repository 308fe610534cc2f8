"""CRM rows -> store rows: the mapped columns, typed, plus the raw `fields` JSON.

A row that cannot be landed (bad Id, unparseable date, wrong type, over-long text) raises
`MalformedRecord` with a reason naming the field and value; the sync quarantines it and carries on
with the others. This module must never drop a field silently or guess a timezone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import TABLES, ObjectMapping
from leadsla.store import schema

_ID_RE = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_ID_COLUMNS = {
    "record_id",
    "history_id",
    "activity_id",
    "user_id",
    "queue_id",
    "owner_id",
    "who_id",
    "what_id",
    "manager_id",
    "account_id",
    "converted_opportunity_id",
    "changed_by",
}


class MalformedRecord(ValueError):
    """One CRM row that cannot be stored as it is; `record_id` may be None if the Id is the problem."""

    def __init__(self, record_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.record_id = record_id
        self.reason = reason


def parse_datetime(value: Any) -> dt.datetime | None:
    """A Salesforce dateTime (2024-05-01T09:30:00.000+0000 or ...Z) as aware UTC; None stays None.

    Raises:
        ValueError: not a dateTime, or one without a timezone.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a dateTime text, got {type(value).__name__}")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a dateTime without a timezone")
    return parsed.astimezone(dt.UTC)


def field_value(raw: Mapping[str, Any], name: str) -> Any:
    """A field of a query row; dotted relationship paths (UserRole.Name) walk the nested record."""
    value: Any = raw
    for part in name.split("."):
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"{name}: expected a related record, got {value!r}")
        value = value.get(part)
    return value


def raw_fields(obj: ObjectMapping, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The mapped fields as the CRM sent them (flat; relationship paths as 'UserRole.Name')."""
    return {name: field_value(raw, name) for name in obj.fields}


def _convert(column: sa.Column, name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, schema.UtcDateTime):
        try:
            return parse_datetime(value)
        except ValueError as exc:
            raise ValueError(f"{name} = {value!r} is not a dateTime ({exc})") from None
    if isinstance(column.type, sa.Boolean):
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ValueError(f"{name} = {value!r} is not a boolean")
    if isinstance(column.type, sa.String | sa.Text):
        if isinstance(value, dict | list):
            raise ValueError(f"{name} = {value!r} is not text")
        # A checkbox's history value arrives as a JSON boolean; Salesforce's text for it is
        # "true"/"false" (what the policy's rules match), not Python's "True".
        text = (
            value
            if isinstance(value, str)
            else ("true" if value else "false")
            if isinstance(value, bool)
            else str(value)
        )
        length = getattr(column.type, "length", None)
        if length and len(text) > length:
            raise ValueError(f"{name} is {len(text)} characters, longer than the store's {length}")
        if column.name in _ID_COLUMNS and not _ID_RE.match(text):
            raise ValueError(f"{name} = {text!r} is not a Salesforce Id")
        return text
    return value


#: History fields whose values are picklist statuses, mapped like the record's own status.
_STATUS_HISTORY_FIELDS = {"Status", "StageName"}
#: A Salesforce user or queue id (15 or 18 characters, key prefix 005 or 00G).
_OWNER_ID = re.compile(r"^(005|00G)[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")


def _normalise_history(row: dict[str, Any], status_map: Mapping[str, str] | None) -> None:
    """Make history rows speak the store's language, as the engine reads them.

    Salesforce writes an owner change as Field ``Owner`` twice, once with user names and once with
    ids; the id row becomes ``OwnerId`` (the field the engine follows) and the name row stays
    ``Owner``. Status values pass through the same picklist mapping as the record's status, so a
    clock starts on "SAL" however the org spells it.
    """
    if row.get("field") == "Owner" and any(
        isinstance(row.get(k), str) and _OWNER_ID.match(row[k]) for k in ("new_value", "old_value")
    ):
        row["field"] = "OwnerId"
    if row.get("field") in _STATUS_HISTORY_FIELDS and status_map:
        for key in ("old_value", "new_value"):
            if isinstance(row.get(key), str):
                row[key] = status_map.get(row[key], row[key])


def store_row(
    obj: ObjectMapping,
    raw: Mapping[str, Any],
    *,
    synced_at: dt.datetime,
    status_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The store row for one CRM row.

    Raises:
        MalformedRecord: naming the record (when its Id is readable) and what is wrong.
    """
    record_id = raw.get("Id") if isinstance(raw.get("Id"), str) else None
    table = schema.metadata.tables[obj.table]
    row: dict[str, Any] = {}
    reasons: list[str] = []
    failed: set[str] = set()
    try:
        fields = raw_fields(obj, raw)
    except ValueError as exc:
        raise MalformedRecord(record_id, f"{obj.name} {record_id or '(no Id)'}: {exc}") from None
    for name, column in obj.fields.items():
        if column is None:
            continue
        value = fields[name]
        if column == "status" and status_map and isinstance(value, str):
            value = status_map.get(value, value)
        try:
            row[column] = _convert(table.c[column], name, value)
        except ValueError as exc:
            reasons.append(str(exc))
            failed.add(column)
    key = TABLES[obj.table]["key"][0]
    for required in TABLES[obj.table]["required"]:
        if row.get(required) is None and required not in failed:
            reasons.append(f"{required} is empty")
    if reasons:
        raise MalformedRecord(
            record_id if row.get(key) or record_id else None,
            f"{obj.name} {record_id or '(no Id)'}: " + "; ".join(reasons),
        )
    name_column = TABLES[obj.table]["name_column"]
    if name_column:
        row[name_column] = obj.name
    if obj.table == "field_history":
        row["object_type"] = obj.parent
        _normalise_history(row, status_map)
    if "fields" in table.c:
        row["fields"] = fields
    if "is_deleted" in table.c and row.get("is_deleted") is None:
        row["is_deleted"] = False
    if "is_active" in table.c and row.get("is_active") is None:
        row["is_active"] = True
    if "out_of_office" in table.c and row.get("out_of_office") is None:
        row["out_of_office"] = False
    if "synced_at" in table.c:
        row["synced_at"] = synced_at
    if "landed_at" in table.c:  # the wall clock, whatever the sync's time: the monitor's change marker
        row["landed_at"] = dt.datetime.now(dt.UTC)
    return row


def modstamp_of(obj: ObjectMapping, raw: Mapping[str, Any]) -> dt.datetime | None:
    """The row's modstamp (for the watermark), or None when missing or unreadable."""
    try:
        return parse_datetime(raw.get(obj.modstamp))
    except ValueError:
        return None
