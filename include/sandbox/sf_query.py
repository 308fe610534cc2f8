"""Runs parsed SOQL against the org store: index pre-filtering, the WHERE predicate, ORDER BY,
LIMIT/OFFSET, relationship fields and Salesforce's record JSON shape.

It must never guess: a query the parser accepted but this engine cannot answer exactly raises
SoqlError rather than returning an approximate result.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sandbox import sf_schema, soql
from sandbox.sf_store import OrgStore
from sandbox.soql import SoqlError


class BoundQuery:
    """A parsed query checked against the schema, ready to evaluate and to project rows."""

    def __init__(self, text: str, now: datetime | None = None) -> None:
        self.query = soql.parse(text, now)
        obj = sf_schema.sobject(self.query.sobject)
        if obj is None or not obj.queryable:
            raise SoqlError(
                f"sObject type '{self.query.sobject}' is not supported. If you are attempting "
                "to use a custom object, be sure to append the '__c' after the entity name.",
                "INVALID_TYPE",
            )
        self.obj = obj
        self._fields: dict[str, sf_schema.Field] = {}
        # canonical link names per path: Owner.Email -> [("OwnerId", "Owner"), ("Email", None)]
        self._links: dict[str, list[tuple[str, str | None]]] = {}
        for item in self.query.fields:
            if item.path:
                self.resolve(item.path)
        soql.check_types(self.query.where, self.resolve)
        for item in self.query.order_by:
            self.resolve(item.path)
        self.predicate = soql.compile_where(self.query.where, self.resolve, self.get)
        self._related: dict[str, dict[str, Any]] = {}
        self.store: OrgStore | None = None

    def resolve(self, path: str) -> sf_schema.Field:
        key = path.lower()
        if key not in self._fields:
            self._fields[key] = soql.resolve_path(self.obj, path)
            links: list[tuple[str, str | None]] = []
            current = [self.obj]
            parts = path.split(".")
            for i, part in enumerate(parts):
                if i == len(parts) - 1:
                    f = next((o.field(part) for o in current if o.field(part)), None)
                    links.append((f.name if f else part, None))
                else:
                    ref = next((o.relationship(part) for o in current if o.relationship(part)), None)
                    assert ref is not None  # resolve_path succeeded
                    links.append((ref.name, ref.relationship_name))
                    current = [sf_schema.sobject(t) for t in ref.reference_to if sf_schema.sobject(t)]
            self._links[key] = links
        return self._fields[key]

    def get(self, row: dict, path: str) -> Any:
        links = self._links[path.lower()]
        value: Any = row
        for name, rel in links:
            if value is None:
                return None
            if rel is None:
                return value.get(name)
            value = self._lookup(value.get(name))
        return value

    def _lookup(self, record_id: str | None) -> dict | None:
        if not record_id:
            return None
        if record_id not in self._related and self.store is not None:
            self._related.update(self.store.get_many([record_id]))
        return self._related.get(record_id)

    def prefetch(self, rows: list[dict]) -> None:
        """Load the related records a page of rows needs (see `project`)."""
        self._prefetch(rows)

    def _prefetch(self, rows: list[dict]) -> None:
        """Load the first hop of every relationship path in one batch (no per-row queries)."""
        assert self.store is not None
        refs = {links[0][0] for links in self._links.values() if len(links) > 1}
        ids = {r.get(name) for r in rows for name in refs} - set(self._related) - {None}
        if ids:
            self._related.update(self.store.get_many(ids))

    def matching(self, store: OrgStore, include_deleted: bool) -> list[dict]:
        """All matching rows, sorted and cut by OFFSET/LIMIT."""
        self.store = store
        # The store indexes SystemModstamp, or CreatedDate for objects without one (history rows).
        indexed = "SystemModstamp" if self.obj.field("SystemModstamp") else "CreatedDate"
        low, high = soql.modstamp_bounds(self.query.where, indexed)
        rows = list(
            store.scan(
                self.obj.name,
                include_deleted=include_deleted,
                low=soql.format_datetime(low - timedelta(milliseconds=1)) if low else None,
                high=soql.format_datetime(high + timedelta(milliseconds=1)) if high else None,
            )
        )
        self._prefetch(rows)
        rows = [r for r in rows if self.predicate(r)]
        if self.query.order_by:
            rows = soql.sort_rows(rows, self.query.order_by, self.resolve, self.get)
        start = self.query.offset or 0
        end = start + self.query.limit if self.query.limit is not None else None
        return rows[start:end]

    def _streamable(self) -> bool:
        """True when the result order is the store's index order (none, or the modstamp ascending)."""
        order = self.query.order_by
        if not order:
            return True
        return (
            len(order) == 1
            and not order[0].descending
            and self.resolve(order[0].path).name == self._indexed()
            and "." not in order[0].path
        )

    def _indexed(self) -> str:
        return "SystemModstamp" if self.obj.field("SystemModstamp") else "CreatedDate"

    def matching_ids(self, store: OrgStore, include_deleted: bool, keep: int) -> tuple[list[str], list[dict]]:
        """Ids of every matching row in result order, and the first `keep` rows themselves.

        When the order is the index order the rows are streamed in chunks, so a 100k-row result
        costs a list of ids rather than 100k parsed records.
        """
        if not self._streamable():
            rows = self.matching(store, include_deleted)
            return [r["Id"] for r in rows], rows[:keep]
        self.store = store
        low, high = soql.modstamp_bounds(self.query.where, self._indexed())
        skip = self.query.offset or 0
        limit = self.query.limit
        ids: list[str] = []
        first: list[dict] = []
        for chunk in store.scan_chunks(
            self.obj.name,
            include_deleted=include_deleted,
            low=soql.format_datetime(low - timedelta(milliseconds=1)) if low else None,
            high=soql.format_datetime(high + timedelta(milliseconds=1)) if high else None,
        ):
            if len(self._related) > 50_000:
                self._related.clear()  # keep the relationship cache bounded on huge scans
            self._prefetch(chunk)
            for row in chunk:
                if not self.predicate(row):
                    continue
                if skip:
                    skip -= 1
                    continue
                ids.append(row["Id"])
                if len(first) < keep:
                    first.append(row)
                if limit is not None and len(ids) >= limit:
                    return ids, first
        return ids, first

    def project(self, row: dict, version: str) -> dict:
        """One record in Salesforce's JSON shape, with nested relationship objects.

        Call `prefetch(page)` first for a whole page: lookups then cost one query per page.
        """
        out: dict[str, Any] = {"attributes": _attributes(self.obj.name, row["Id"], version)}
        for item in self.query.fields:
            links = self._links[item.path.lower()]
            _place(out, row, links, self, version)
        return out


def _attributes(type_name: str, record_id: str, version: str) -> dict:
    return {"type": type_name, "url": f"/services/data/v{version}/sobjects/{type_name}/{record_id}"}


def _place(out: dict, row: dict, links: list[tuple[str, str | None]], q: BoundQuery, version: str) -> None:
    name, rel = links[0]
    if rel is None:
        out[name] = row.get(name)
        return
    related = q._lookup(row.get(name))
    if related is None:
        out[rel] = None
        return
    nested = out.get(rel)
    if not isinstance(nested, dict):
        type_name = related.get("__type") or ""
        nested = {"attributes": _attributes(type_name, related["Id"], version)}
        out[rel] = nested
    _place(nested, related, links[1:], q, version)
