"""SOQL text built safely: literals formatted and escaped here, never by string pasting elsewhere.

Lead text is data: any string that reaches a query goes through `quote`, which escapes backslash
and single quote (and the control characters SOQL escapes), so a company called
"O'Brien \\ Sons" can neither break nor change a query. Identifiers come only from the validated
mapping and are checked again here. This module must never run a query.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from leadsla.crm.mapping import ObjectMapping

_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def quote(value: str) -> str:
    """A SOQL string literal for `value`, quoted and escaped."""
    if not isinstance(value, str):
        raise TypeError(f"expected text for a SOQL string literal, got {type(value).__name__}")
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def datetime_literal(value: dt.datetime) -> str:
    """A SOQL dateTime literal in UTC, e.g. 2024-05-01T09:30:00.000Z (unquoted, as SOQL wants).

    Raises:
        ValueError: the datetime is naive (we never guess a timezone).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be used in SOQL: give it a timezone")
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def identifier(name: str) -> str:
    """An sObject or field name, checked (identifiers cannot be escaped, only refused)."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"{name!r} is not a SOQL field or object name")
    return name


def in_list(values: Iterable[str]) -> str:
    """A parenthesised, escaped list of string literals for IN."""
    items = [quote(v) for v in values]
    if not items:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join(items) + ")"


def incremental_query(obj: ObjectMapping, since: dt.datetime | None) -> str:
    """SELECT the mapped fields of rows changed after `since`, oldest first.

    Args:
        since: exclusive lower bound on the object's modstamp (already moved back by the overlap
            window); None reads everything (first run).
    """
    where = [f"{identifier(f)} IN {in_list(vals)}" for f, vals in obj.filter.items()]
    if since is not None:
        where.append(f"{identifier(obj.modstamp)} > {datetime_literal(since)}")
    text = f"SELECT {', '.join(identifier(f) for f in obj.soql_fields)} FROM {identifier(obj.name)}"
    if where:
        text += " WHERE " + " AND ".join(where)
    return text + f" ORDER BY {identifier(obj.modstamp)} ASC"


def by_ids_query(object_name: str, fields: Sequence[str], ids: Sequence[str]) -> str:
    """SELECT `fields` of the records with these Ids (used to re-read after a 412)."""
    cols = ", ".join(identifier(f) for f in dict.fromkeys(["Id", *fields]))
    return f"SELECT {cols} FROM {identifier(object_name)} WHERE Id IN {in_list(ids)}"


def activities_since_query(object_name: str, who_ids: Sequence[str], since: dt.datetime) -> str:
    """SELECT the Tasks or Events on these Leads (WhoId) created after `since`: what someone logged
    that a decision taken on the store's copy has not seen."""
    return (
        f"SELECT Id, WhoId, CreatedById FROM {identifier(object_name)} WHERE WhoId IN {in_list(who_ids)} "
        f"AND CreatedDate > {datetime_literal(since)}"
    )


def modified_since_query(object_name: str, since: dt.datetime) -> str:
    """SELECT the Id and LastModifiedDate of every record changed after `since` (the write-back's
    pre-check in one query: filtered on SystemModstamp, which is indexed and never earlier than
    LastModifiedDate, so the answer is a superset the caller narrows on LastModifiedDate)."""
    return (
        f"SELECT Id, LastModifiedDate FROM {identifier(object_name)} "
        f"WHERE SystemModstamp > {datetime_literal(since)}"
    )
