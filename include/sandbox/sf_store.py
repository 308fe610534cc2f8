"""The sandbox org's data: one SQLite file holding every sObject record, with ids, timestamps,
soft deletes and field-history rows maintained the way Salesforce does.

The HTTP server and the demo simulator both write through `OrgStore`; bulk seeding for tests and
benchmarks goes through `bulk_insert` (no HTTP). This module must never speak HTTP or know about
sessions and faults: it is the org's database only.
"""

from __future__ import annotations

import json
import sqlite3
import string
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from sandbox import sf_events, sf_schema
from sandbox.soql import format_datetime, parse_datetime

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ONE_MS = timedelta(milliseconds=1)
INTEGRATION_USER_ID_NUMBER = 1  # the first User id: the API user every session acts as


class _RollBack(Exception):
    """Unwinds an all-or-none batch after its per-record results were collected."""


class SfError(Exception):
    """A Salesforce API error: HTTP status, errorCode, message and the fields concerned."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []

    def body(self) -> list[dict]:
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]


def id18(id15: str) -> str:
    """Salesforce's 15-to-18 character id: a 3-char case-safe checksum suffix."""
    suffix = ""
    for chunk in range(3):
        flags = 0
        for pos in range(5):
            ch = id15[chunk * 5 + pos]
            if "A" <= ch <= "Z":
                flags |= 1 << pos
        suffix += _SUFFIX[flags]
    return id15 + suffix


def make_id(prefix: str, number: int) -> str:
    """An 18-char id for the n-th record with key prefix `prefix` (e.g. 00Q -> 00Q8d000000001AAA)."""
    digits = ""
    n = number
    while n:
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    return id18(prefix + "8d" + digits.rjust(10, "0"))


def now_utc() -> datetime:
    return datetime.now(UTC)


def _parse_if_unmodified_since(value: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None:
        try:
            parsed = parse_datetime(value)
        except ValueError as exc:
            raise SfError(400, "INVALID_HEADER_TYPE", f"invalid If-Unmodified-Since value: {value}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


#: What every save changes: an update event lists them only beside a real change.
_SYSTEM_STAMPS = {"LastModifiedDate", "SystemModstamp", "LastModifiedById"}

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    object TEXT NOT NULL,
    modstamp TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    parent TEXT,
    data TEXT NOT NULL
);
DROP INDEX IF EXISTS records_object_modstamp;
CREATE INDEX IF NOT EXISTS records_object_modstamp_id ON records (object, modstamp, id);
CREATE INDEX IF NOT EXISTS records_parent ON records (parent);
CREATE TABLE IF NOT EXISTS counters (prefix TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + sf_events.SCHEMA
)

# Which field links a child row to the record it belongs to (history and activities), so "all
# history of these leads" is an indexed lookup.
_PARENT_FIELD = {
    "leadhistory": "LeadId",
    "opportunityfieldhistory": "OpportunityId",
    "task": "WhoId",
    "event": "WhoId",
}


@dataclass(frozen=True)
class ValidationRule:
    """An org's validation rule, as the sandbox plays it: a save leaving a record of `object_name`
    for which `rejects(record)` is true fails with FIELD_CUSTOM_VALIDATION_EXCEPTION on `field`."""

    object_name: str
    field: str
    rejects: Callable[[dict[str, Any]], bool]
    message: str


class OrgStore:
    """The org's records in SQLite (WAL, so the simulator and the server can share the file).

    All methods are thread-safe (one connection behind a lock). Datetimes are stored in
    Salesforce's wire format in UTC, so they sort as text.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        self._last_stamp = ""
        self._validation_rules: list[ValidationRule] = []
        if self.get_meta("integration_user_id") is None:
            self._create_integration_user()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ meta and ids

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value",
                (key, value),
            )

    def new_ids(self, prefix: str, count: int) -> list[str]:
        """Reserve `count` fresh ids with this key prefix."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT n FROM counters WHERE prefix = ?", (prefix,)).fetchone()
                start = row[0] if row else 0
                self._db.execute(
                    "INSERT INTO counters (prefix, n) VALUES (?, ?) ON CONFLICT(prefix) "
                    "DO UPDATE SET n = excluded.n",
                    (prefix, start + count),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return [make_id(prefix, start + i + 1) for i in range(count)]

    @property
    def integration_user_id(self) -> str:
        return self.get_meta("integration_user_id") or ""

    def _create_integration_user(self) -> None:
        # A fixed id, so the API server and the simulator opening a new org at once agree on it.
        user_id = make_id("005", 0)
        try:
            self.bulk_insert(
                "User",
                [
                    {
                        "Id": user_id,
                        "Username": "integration@leadsla.sandbox",
                        "FirstName": "Integration",
                        "LastName": "User",
                        "Email": "integration@leadsla.sandbox",
                        "IsActive": True,
                        "TimeZoneSidKey": "UTC",
                        "Department": "RevOps",
                        "Title": "API Integration",
                    }
                ],
            )
        except sqlite3.IntegrityError:
            pass  # the other process won the race
        self.set_meta("integration_user_id", user_id)

    def _stamp(self, now: datetime | None) -> str:
        # Strictly increasing within this process, so two writes never share a SystemModstamp.
        text = format_datetime(now or now_utc())
        with self._lock:
            if text <= self._last_stamp and now is None:
                last = parse_datetime(self._last_stamp)
                text = format_datetime(last.replace(microsecond=last.microsecond // 1000 * 1000) + _ONE_MS)
            self._last_stamp = max(self._last_stamp, text)
        return text

    # ------------------------------------------------------------ value normalisation

    def _normalise(self, obj: sf_schema.SObject, fields: dict[str, Any], *, system: bool) -> dict[str, Any]:
        """Validate names and types; return the fields under their canonical names.

        Args:
            system: allow read-only fields (seeding sets CreatedDate, IsDeleted...).
        Raises:
            SfError: INVALID_FIELD for an unknown name, INVALID_FIELD_FOR_INSERT_UPDATE for a
                read-only one, JSON_PARSER_ERROR for a value of the wrong type.
        """
        out: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "attributes":
                continue
            f = obj.field(name)
            if f is None:
                raise SfError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}", [name]
                )
            if not f.updateable and not system:
                raise SfError(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security "
                    "settings of this field and verify that it is read/write for your "
                    "profile or permission set.",
                    [f.name],
                )
            out[f.name] = self._coerce(f, value)
        return out

    @staticmethod
    def _coerce(f: sf_schema.Field, value: Any) -> Any:
        if value is None or value == "" and f.type not in (sf_schema.STRING, sf_schema.TEXTAREA):
            return None
        try:
            if f.type == sf_schema.DATETIME:
                return format_datetime(value if isinstance(value, datetime) else parse_datetime(str(value)))
            if f.type == sf_schema.DATE:
                return (value if isinstance(value, date) else date.fromisoformat(str(value)[:10])).isoformat()
            if f.type == sf_schema.BOOLEAN:
                if not isinstance(value, bool):
                    raise ValueError(value)
                return value
            if f.type in (sf_schema.DOUBLE, sf_schema.CURRENCY):
                if isinstance(value, bool):
                    raise ValueError(value)
                return float(value)
            if not isinstance(value, str):
                raise ValueError(value)
        except (ValueError, TypeError) as exc:
            raise SfError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of {f.type} from value {value!r} for field {f.name}",
                [f.name],
            ) from exc
        if f.length is not None and len(value) > f.length:
            raise SfError(
                400,
                "STRING_TOO_LONG",
                f"{f.name}: data value too large: {value[:40]!r} (max length={f.length})",
                [f.name],
            )
        return value

    def add_validation_rule(
        self, object_name: str, field: str, rejects: Callable[[dict[str, Any]], bool], message: str
    ) -> None:
        """Add a validation rule (`ValidationRule`) to API and simulator writes through this store;
        kept in memory only, like a fault (tests use it for values the org refuses)."""
        with self._lock:
            self._validation_rules.append(
                ValidationRule(self._object(object_name).name, field, rejects, message)
            )

    def _validate(self, obj: sf_schema.SObject, row: dict[str, Any]) -> None:
        for rule in self._validation_rules:
            if rule.object_name == obj.name and rule.rejects(row):
                raise SfError(400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field])

    @staticmethod
    def _derive(obj: sf_schema.SObject, row: dict[str, Any]) -> None:
        """Formula-like fields Salesforce computes itself."""
        if obj.name in ("Lead", "User") and ("FirstName" in row or "LastName" in row):
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
        if obj.name == "Opportunity" and "StageName" in row:
            stage = row.get("StageName") or ""
            row["IsClosed"] = stage.startswith("Closed")
            row["IsWon"] = stage == "Closed Won"

    # ------------------------------------------------------------ writes

    def bulk_insert(
        self, object_name: str, rows: Iterable[dict[str, Any]], now: datetime | None = None
    ) -> list[str]:
        """Insert many records fast, without history or API accounting (seeding only).

        Rows may set system fields (Id, CreatedDate, SystemModstamp, IsDeleted...); missing ones
        default to `now`. History objects (LeadHistory...) can be seeded the same way.

        Returns:
            the new records' ids, in order.
        """
        obj = self._object(object_name)
        rows = list(rows)
        ids = self.new_ids(obj.key_prefix, sum(1 for r in rows if not r.get("Id")))
        stamp = format_datetime(now or now_utc())
        user = self.integration_user_id or None
        batch = []
        out: list[str] = []
        it = iter(ids)
        for raw in rows:
            row = self._normalise(obj, raw, system=True)
            rid = row.get("Id") or next(it)
            row["Id"] = rid
            if obj.field("CreatedDate"):
                row.setdefault("CreatedDate", stamp)
                row.setdefault("CreatedById", user or rid)
            if obj.field("SystemModstamp"):
                row.setdefault("LastModifiedDate", row.get("CreatedDate", stamp))
                row.setdefault("SystemModstamp", row["LastModifiedDate"])
                row.setdefault("LastModifiedById", row.get("CreatedById"))
            row.setdefault("IsDeleted", False)
            if obj.field("OwnerId") and user:
                row.setdefault("OwnerId", user)
            self._derive(obj, row)
            modstamp = row.get("SystemModstamp") or row.get("CreatedDate") or stamp
            parent = row.get(_PARENT_FIELD.get(obj.name.lower(), ""), None)
            batch.append(
                (
                    rid,
                    obj.name,
                    modstamp,
                    int(bool(row["IsDeleted"])),
                    parent,
                    json.dumps(row, separators=(",", ":")),
                )
            )
            out.append(rid)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO records (id, object, modstamp, is_deleted, parent, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    batch,
                )
                for _, _, modstamp, _, _, data in batch:
                    row = json.loads(data)
                    sf_events.publish(
                        self._db, obj.name, "CREATE", row, changed=None, stamp=modstamp, user=user or ""
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def create(
        self,
        object_name: str,
        fields: dict[str, Any],
        now: datetime | None = None,
        user_id: str | None = None,
        system: bool = False,
    ) -> dict[str, Any]:
        """Create one record as the API does (read-only fields refused unless `system`).

        Lead and Opportunity creation writes a 'created' history row, like Salesforce's field history.
        """
        with self._tx():
            return self._create(object_name, fields, now, user_id, system)

    def update(
        self,
        object_name: str,
        record_id: str,
        changes: dict[str, Any],
        *,
        now: datetime | None = None,
        user_id: str | None = None,
        if_unmodified_since: str | None = None,
        system: bool = False,
    ) -> dict[str, Any]:
        """Update one record; tracked fields that really change write history rows.

        Args:
            if_unmodified_since: an HTTP date (or ISO datetime); the update is refused with 412
                when the record's LastModifiedDate is later.
            system: allow read-only fields (the simulator back-dating a record).
        Raises:
            SfError: NOT_FOUND, PRECONDITION_FAILED (412), INVALID_FIELD, ENTITY_IS_DELETED.
        """
        with self._tx():
            return self._update(object_name, record_id, changes, now, user_id, if_unmodified_since, system)

    def delete(
        self, object_name: str, record_id: str, now: datetime | None = None, user_id: str | None = None
    ) -> None:
        """Soft-delete (the recycle bin): queryAll still sees it with IsDeleted = true."""
        with self._tx():
            self._delete(object_name, record_id, now, user_id)

    def apply_batch(
        self,
        ops: list[tuple[str, str | None, str | None, dict[str, Any]]],
        *,
        all_or_none: bool,
        if_unmodified_since: str | None = None,
    ) -> list[dict[str, Any]]:
        """The composite sobjects collection: create/update/delete up to 200 records.

        Args:
            ops: (kind, object name or None, record id or None, fields) with kind create/update/delete;
                for update/delete the object may be None and is taken from the id's key prefix.
            all_or_none: roll everything back when one record fails (the others then report
                ALL_OR_NONE_OPERATION_ROLLED_BACK).
            if_unmodified_since: applied to every updated record (a sandbox extension: Salesforce
                documents the header for sObject Rows only).
        Returns:
            per-record results in request order: {"id", "success", "errors": [{statusCode, message, fields}]}.
        """
        results: list[dict[str, Any]] = []
        failed = False
        try:
            with self._tx():
                for i, (kind, type_name, rid, fields) in enumerate(ops):
                    self._db.execute(f"SAVEPOINT r{i}")
                    try:
                        name = type_name or self._type_of(rid)
                        if kind == "create":
                            if not type_name:
                                raise SfError(400, "INVALID_TYPE", "Must send a concrete entity type.")
                            rid = self._create(name, fields, None, None, False)["Id"]
                        elif kind == "update":
                            self._update(name, rid or "", fields, None, None, if_unmodified_since, False)
                        else:
                            self._delete(name, rid or "", None, None)
                        self._db.execute(f"RELEASE r{i}")
                        results.append({"id": rid, "success": True, "errors": []})
                    except SfError as exc:
                        self._db.execute(f"ROLLBACK TO r{i}")
                        self._db.execute(f"RELEASE r{i}")
                        failed = True
                        results.append(
                            {
                                "id": rid if kind != "create" else None,
                                "success": False,
                                "errors": [
                                    {"statusCode": exc.code, "message": exc.message, "fields": exc.fields}
                                ],
                            }
                        )
                if failed and all_or_none:
                    raise _RollBack()
        except _RollBack:
            for r in results:
                if r["success"]:
                    r.update(
                        success=False,
                        errors=[
                            {
                                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                "message": "Record rolled back because not all records were valid and the "
                                "request was using AllOrNone header",
                                "fields": [],
                            }
                        ],
                    )
        return results

    def _type_of(self, record_id: str | None) -> str:
        if record_id:
            row = self._db.execute("SELECT object FROM records WHERE id = ?", (record_id,)).fetchone()
            if row:
                return row[0]
        raise SfError(
            404,
            "INVALID_CROSS_REFERENCE_KEY" if record_id else "MISSING_ARGUMENT",
            f"invalid cross reference id {record_id}" if record_id else "Id not specified in an update call",
        )

    def _create(
        self,
        object_name: str,
        fields: dict[str, Any],
        now: datetime | None,
        user_id: str | None,
        system: bool,
    ) -> dict[str, Any]:
        obj = self._writable(object_name)
        row = self._normalise(obj, fields, system=system)
        stamp = self._stamp(now)
        user = user_id or self.integration_user_id
        rid = self._new_ids_locked(obj.key_prefix, 1)[0]
        row.setdefault("CreatedDate", stamp)
        row.setdefault("CreatedById", user)
        row.update(
            Id=rid, IsDeleted=False, LastModifiedDate=stamp, LastModifiedById=user, SystemModstamp=stamp
        )
        if obj.field("OwnerId") and not row.get("OwnerId"):
            row["OwnerId"] = user
        self._derive(obj, row)
        self._validate(obj, row)
        self._put(obj, row)
        if obj.history_object:
            self._put_history(obj, [self._history_row(obj, rid, "created", None, None, stamp, user)])
        sf_events.publish(self._db, obj.name, "CREATE", row, changed=None, stamp=stamp, user=user)
        return row

    def _update(
        self,
        object_name: str,
        record_id: str,
        changes: dict[str, Any],
        now: datetime | None,
        user_id: str | None,
        if_unmodified_since: str | None,
        system: bool,
    ) -> dict[str, Any]:
        obj = self._writable(object_name)
        fields = self._normalise(obj, changes, system=system)
        user = user_id or self.integration_user_id
        row = self._load(obj, record_id)
        if row.get("IsDeleted"):
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        if if_unmodified_since:
            limit = _parse_if_unmodified_since(if_unmodified_since)
            modified = parse_datetime(row["LastModifiedDate"]).replace(microsecond=0)
            if modified > limit:
                raise SfError(
                    412,
                    "PRECONDITION_FAILED",
                    f"The record was modified at {row['LastModifiedDate']}, after the "
                    f"If-Unmodified-Since date {if_unmodified_since}.",
                    [],
                )
        stamp = self._stamp(now)
        before = dict(row)
        row.update(fields)
        self._derive(obj, row)
        self._validate(obj, row)
        row.update(LastModifiedDate=stamp, LastModifiedById=user, SystemModstamp=stamp)
        history = [
            self._history_row(obj, record_id, name, before.get(name), row.get(name), stamp, user)
            for name in obj.tracked
            if before.get(name) != row.get(name)
        ]
        self._put(obj, row)
        self._put_history(obj, history)
        changed = [k for k in row if k not in _SYSTEM_STAMPS and before.get(k) != row.get(k)]
        if changed:
            sf_events.publish(self._db, obj.name, "UPDATE", row, changed=changed, stamp=stamp, user=user)
        return row

    def _delete(self, object_name: str, record_id: str, now: datetime | None, user_id: str | None) -> None:
        obj = self._writable(object_name)
        row = self._load(obj, record_id)
        if row.get("IsDeleted"):
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        stamp = self._stamp(now)
        row.update(
            IsDeleted=True,
            LastModifiedDate=stamp,
            SystemModstamp=stamp,
            LastModifiedById=user_id or self.integration_user_id,
        )
        self._put(obj, row)
        sf_events.publish(
            self._db, obj.name, "DELETE", row, changed=None, stamp=stamp, user=row["LastModifiedById"]
        )

    def _history_row(
        self,
        obj: sf_schema.SObject,
        parent_id: str,
        field_name: str,
        old: Any,
        new: Any,
        stamp: str,
        user: str,
    ) -> dict[str, Any]:
        ftype = obj.field(field_name).type if obj.field(field_name) else None
        # Salesforce names a lookup's history rows after the relationship (OwnerId -> "Owner").
        f = obj.field(field_name)
        history_name = f.relationship_name if f is not None and f.relationship_name else field_name
        return {
            "IsDeleted": False,
            obj.history_parent_field: parent_id,
            "Field": history_name,
            "DataType": {
                "reference": "EntityId",
                "boolean": "Boolean",
                "datetime": "DateTime",
                "date": "Date",
                "currency": "Currency",
                "picklist": "Text",
            }.get(ftype or "", "Text"),
            "OldValue": old,
            "NewValue": new,
            "CreatedDate": stamp,
            "CreatedById": user,
        }

    def _put(self, obj: sf_schema.SObject, row: dict[str, Any]) -> None:
        parent = row.get(_PARENT_FIELD.get(obj.name.lower(), ""), None)
        self._db.execute(
            "INSERT INTO records (id, object, modstamp, is_deleted, parent, data) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET modstamp = excluded.modstamp, is_deleted = excluded.is_deleted, "
            "parent = excluded.parent, data = excluded.data",
            (
                row["Id"],
                obj.name,
                row.get("SystemModstamp") or row.get("CreatedDate"),
                int(bool(row.get("IsDeleted"))),
                parent,
                json.dumps(row, separators=(",", ":")),
            ),
        )

    def _put_history(self, obj: sf_schema.SObject, history: list[dict[str, Any]]) -> None:
        if not history:
            return
        hist = self._object(obj.history_object or "")
        ids = self._new_ids_locked(hist.key_prefix, len(history))
        for rid, h in zip(ids, history, strict=True):
            h["Id"] = rid
            self._put(hist, h)

    def _new_ids_locked(self, prefix: str, count: int) -> list[str]:
        # Inside an open transaction: the same counter update without BEGIN/COMMIT.
        row = self._db.execute("SELECT n FROM counters WHERE prefix = ?", (prefix,)).fetchone()
        start = row[0] if row else 0
        self._db.execute(
            "INSERT INTO counters (prefix, n) VALUES (?, ?) ON CONFLICT(prefix) DO UPDATE SET n = excluded.n",
            (prefix, start + count),
        )
        return [make_id(prefix, start + i + 1) for i in range(count)]

    # ------------------------------------------------------------ reads

    def _object(self, name: str) -> sf_schema.SObject:
        obj = sf_schema.sobject(name)
        if obj is None:
            raise SfError(
                404,
                "NOT_FOUND",
                f"The requested resource does not exist: sObject type '{name}' is not supported.",
            )
        return obj

    def _writable(self, name: str) -> sf_schema.SObject:
        obj = self._object(name)
        if not obj.writable:
            raise SfError(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type {obj.name} does not support this operation"
            )
        return obj

    def _load(self, obj: sf_schema.SObject, record_id: str) -> dict[str, Any]:
        found = self._db.execute(
            "SELECT data FROM records WHERE id = ? AND object = ?", (record_id, obj.name)
        ).fetchone()
        if not found:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return json.loads(found[0])

    def get(self, object_name: str, record_id: str) -> dict[str, Any]:
        """One record, deleted or not. Raises SfError NOT_FOUND."""
        obj = self._object(object_name)
        with self._lock:
            return self._load(obj, record_id)

    def get_many(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Records by id, of any type (relationship lookups)."""
        wanted = list(dict.fromkeys(i for i in ids if i))
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for rid, obj, data in self._db.execute(
                    f"SELECT id, object, data FROM records WHERE id IN ({marks})", chunk
                ):
                    row = json.loads(data)
                    row["__type"] = obj
                    out[rid] = row
        return out

    def scan(
        self,
        object_name: str,
        *,
        include_deleted: bool = False,
        low: str | None = None,
        high: str | None = None,
        ids: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Records of one type, optionally only those whose SystemModstamp is in [low, high]
        (inclusive, wire format) or whose Id is in `ids`: the index does the narrowing."""
        obj = self._object(object_name)
        sql = "SELECT data FROM records WHERE object = ?"
        args: list[Any] = [obj.name]
        if not include_deleted:
            sql += " AND is_deleted = 0"
        if low:
            sql += " AND modstamp >= ?"
            args.append(low)
        if high:
            sql += " AND modstamp <= ?"
            args.append(high)
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += ids
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        for (data,) in rows:
            yield json.loads(data)

    def scan_chunks(
        self,
        object_name: str,
        *,
        include_deleted: bool = False,
        low: str | None = None,
        high: str | None = None,
        size: int = 2000,
    ) -> Iterator[list[dict[str, Any]]]:
        """Like `scan`, in (SystemModstamp, Id) order and `size` rows at a time (keyset paging), so
        a 100k-row read never holds more than one chunk and never holds the lock for long."""
        obj = self._object(object_name)
        base = "SELECT modstamp, id, data FROM records WHERE object = ?"
        args: list[Any] = [obj.name]
        if not include_deleted:
            base += " AND is_deleted = 0"
        if high:
            base += " AND modstamp <= ?"
            args.append(high)
        after: tuple[str, str] | None = None
        while True:
            sql, extra = base, []
            if after is not None:
                sql += " AND (modstamp, id) > (?, ?)"
                extra = list(after)
            elif low:
                sql += " AND modstamp >= ?"
                extra = [low]
            sql += " ORDER BY modstamp, id LIMIT ?"
            with self._lock:
                rows = self._db.execute(sql, args + extra + [size]).fetchall()
            if not rows:
                return
            after = (rows[-1][0], rows[-1][1])
            yield [json.loads(data) for _, _, data in rows]
            if len(rows) < size:
                return

    def change_events(
        self, after: int, entities: set[str] | None, retention_s: float, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Retained change events after replay id `after` (`sf_events.after`)."""
        with self._lock:
            return sf_events.after(self._db, after, entities, retention_s, limit)

    def change_event_bounds(self, retention_s: float) -> tuple[int | None, int]:
        """(oldest retained replay id or None, newest replay id published) (`sf_events.bounds`)."""
        with self._lock:
            return sf_events.bounds(self._db, retention_s)

    def count(self, object_name: str, include_deleted: bool = False) -> int:
        obj = self._object(object_name)
        sql = "SELECT count(*) FROM records WHERE object = ?" + (
            "" if include_deleted else " AND is_deleted = 0"
        )
        with self._lock:
            return self._db.execute(sql, (obj.name,)).fetchone()[0]
