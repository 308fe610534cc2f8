"""Clock derivation: from record timelines to SLA clocks and their owner/pause segments.

Given one SLA's start, stop and pause rules and the store's `field_history` and `activities`
rows, this finds every clock (record, clock_start, stopped_at) and splits each clock's life into
segments at every owner change and pause-field change, each segment carrying the owner and
whether it was paused. Everything is numpy over sorted (record code, epoch second) keys: a record
and an instant pack into one int64 (``record << 34 | second``), so "the first stop after this
start on the same record" or "the owner as of this instant" is one ``np.searchsorted`` for all
clocks at once. There is no per-clock Python loop here.

This module never reads the policy file, the store or the wall clock; `now` is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadsla.calendar import epoch_seconds_array
from leadsla.policy import Sla, TouchRule

_SHIFT = np.int64(34)  # 2**34 seconds reach the year 2514
#: `epoch_seconds_array`'s value for a missing instant.
_NAT_SECONDS = np.iinfo(np.int64).min
_MASK = np.int64((1 << 34) - 1)
#: The field_history field that records ownership (Salesforce LeadHistory/OpportunityFieldHistory).
OWNER_FIELD = "OwnerId"
#: Record columns that stand for a CRM field when a field has no history yet.
FIELD_COLUMNS = {"Status": "status", "StageName": "status", "OwnerId": "owner_id", "Owner": "owner_id"}


def _hashes(values: np.ndarray) -> np.ndarray | None:
    """Python's hash of each value (a str caches its hash, so this is one cheap pass), or None if
    some value is unhashable."""
    try:
        return np.fromiter(map(hash, values), np.int64, len(values))
    except TypeError:
        return None


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows] for sorted distinct positions, without the copy when they are every row (a
    store query of one object type often is)."""
    return values if len(rows) == len(values) else values[rows]


def pack(record: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    return (record.astype(np.int64) << _SHIFT) | seconds.astype(np.int64)


@dataclass
class Events:
    """(record code, second) events sorted by packed key, with optional old/new values."""

    key: np.ndarray
    old: np.ndarray | None = None
    new: np.ndarray | None = None

    @property
    def record(self) -> np.ndarray:
        return self.key >> _SHIFT

    @property
    def seconds(self) -> np.ndarray:
        return self.key & _MASK

    @classmethod
    def build(cls, record: np.ndarray, seconds: np.ndarray, old=None, new=None) -> Events:
        key = pack(record, seconds)
        if len(key) < 2 or bool((key[1:] >= key[:-1]).all()):  # store queries often come sorted
            return cls(
                key, None if old is None else np.asarray(old), None if new is None else np.asarray(new)
            )
        order = np.argsort(key, kind="stable")
        return cls(
            key[order],
            None if old is None else np.asarray(old)[order],
            None if new is None else np.asarray(new)[order],
        )

    @classmethod
    def concat(cls, parts: list[Events]) -> Events:
        key = np.concatenate([p.key for p in parts]) if parts else np.empty(0, np.int64)
        return cls(np.sort(key, kind="stable"))


def value_asof(events: Events, record: np.ndarray, seconds: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """A field's value at each (record, second): the last change at or before it; before the first
    change, that change's old value; with no change at all, `fallback` (the record's current value)."""
    if len(events.key) == 0:
        return fallback
    q = pack(record, seconds)
    i = np.searchsorted(events.key, q, side="right")
    # i - 1: the last change at or before; i: the first change after (either may be another record's).
    j = np.minimum(i, len(events.key) - 1)
    i -= 1
    np.maximum(i, 0, out=i)
    has_before = (events.key[i] >> _SHIFT) == record
    has_before &= q >= events.key[i]
    has_after = (events.key[j] >> _SHIFT) == record
    has_after &= ~has_before
    out = np.where(has_before, events.new[i], fallback)
    return np.where(has_after, events.old[j], out)


class Columns:
    """A frame's columns as numpy object arrays (and instants as epoch seconds), each converted
    once per evaluation however many SLAs and object types read it."""

    def __init__(self, frame: pd.DataFrame, name: str) -> None:
        self.frame = frame
        self.name = name
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def get(self, column: str) -> np.ndarray:
        if column not in self._cache:
            self._cache[column] = _objects(self.frame, column)
        return self._cache[column]

    def equals(self, column: str, value: str) -> np.ndarray:
        """Boolean mask `column == value`; once one value matched every row, any other value
        matches none (no second pass over a frame of one object type)."""
        every = self._cache.get(f"every:{column}")
        if every is not None and every[0] != value:
            return np.zeros(len(self.frame), dtype=bool)
        mask = self.get(column) == value
        if len(mask) and mask.all():
            self._cache[f"every:{column}"] = np.array([value], dtype=object)
        return mask

    def seconds(self, column: str) -> np.ndarray:
        key = f"seconds:{column}"
        if key not in self._cache:
            self._cache[key] = (
                epoch_seconds_array(self.frame[column], f"{self.name}.{column}")
                if len(self.frame)
                else np.empty(0, np.int64)
            )
        return self._cache[key]


@dataclass
class RecordIndex:
    """Record ids of one object type as dense integer codes, with the record columns as arrays."""

    ids: pd.Index
    source: Columns
    rows: np.ndarray  # positions in `source` of this object type's records, in code order
    _columns: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, records: Columns, object_type: str) -> RecordIndex:
        rows = np.flatnonzero(records.equals("object_type", object_type))
        return cls(pd.Index(_take(records.get("record_id"), rows), dtype=object), records, rows)

    def codes(self, record_ids: np.ndarray) -> np.ndarray:
        """Each id's record code, -1 when it is not a record of this type.

        Joins on the ids' Python hashes (int64, cheap) and verifies every match by value; a hash
        collision among the records, a missing id or a mismatch falls back to pandas' string join.
        """
        record_ids = np.asarray(record_ids, dtype=object)
        if "hash_index" not in self._columns:
            hashed = _hashes(self.ids.to_numpy(dtype=object))
            self._columns["hash_index"] = pd.Index(hashed) if hashed is not None else None
            if hashed is not None and not self._columns["hash_index"].is_unique:
                self._columns["hash_index"] = None
        hash_index = self._columns["hash_index"]
        queried = _hashes(record_ids) if hash_index is not None and len(record_ids) else None
        if queried is not None:
            pos = hash_index.get_indexer(queried)
            hit = pos >= 0
            ids = self.ids.to_numpy(dtype=object)
            if hit.all():
                if bool((ids[pos] == record_ids).all()):
                    return pos
            elif bool((ids[pos[hit]] == record_ids[hit]).all()) and not (
                # pandas matches a missing id to a missing record id; hashes do not (NaN's is
                # per object), so misses that are missing values need the pandas join.
                pd.isna(record_ids[~hit]).any() and self.ids.hasnans
            ):
                return pos
        return self.ids.get_indexer(record_ids)

    def column(self, name: str) -> np.ndarray:
        """A record column (or a raw CRM field from `fields`) as an object array, cached."""
        if name not in self._columns:
            if self.source.has(name):
                self._columns[name] = _take(self.source.get(name), self.rows)
            elif self.source.has("fields"):
                raw = _take(self.source.get("fields"), self.rows)
                # A checkbox's value reads as its history does ("true"/"false"), so a rule on it
                # matches the current value the same way as its changes.
                self._columns[name] = np.array(
                    [_as_history_value(f.get(name)) if isinstance(f, dict) else None for f in raw],
                    dtype=object,
                )
            else:
                self._columns[name] = np.full(len(self.rows), None, dtype=object)
        return self._columns[name]

    def isin(self, name: str, accepted: list[str]) -> np.ndarray:
        """Per record: is column `name` one of `accepted`? (factorised once, then integer tests)"""
        key = f"codes:{name}"
        if key not in self._columns:
            codes, uniques = pd.factorize(self.column(name))  # few distinct values: pandas is fast
            self._columns[key] = codes
            self._columns[f"uniques:{name}"] = pd.Index(uniques, dtype=object)
        wanted = self._columns[f"uniques:{name}"].get_indexer(accepted)
        return np.isin(self._columns[key], wanted[wanted >= 0])

    def field_value(self, field: str) -> np.ndarray:
        """The record's current value of a CRM field (mapped column if there is one)."""
        return self.column(FIELD_COLUMNS.get(field, field))


def _as_history_value(value: object) -> object:
    """A raw CRM value as field history holds it: booleans as "true"/"false"."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def _objects(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as a numpy object array (no per-value string conversion by pandas)."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    series = frame[column]
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.na_value is not pd.NA:
        # pandas' default "str" marks missing values with NaN, which numpy compares safely, so the
        # costly NaN -> None pass is skipped; only pd.NA (nullable "string") needs replacing.
        return series.to_numpy(dtype=object)
    return series.to_numpy(dtype=object, na_value=None)


@dataclass
class History:
    """field_history rows of one object type as parallel numpy arrays (instants <= now only)."""

    code: np.ndarray
    field_code: np.ndarray  # index into `fields`
    fields: list[str]  # the field names read
    old: np.ndarray
    new: np.ndarray
    t: np.ndarray
    _rows: dict[str, np.ndarray] = field(default_factory=dict)
    _values: dict[str, tuple[np.ndarray, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, index: RecordIndex, object_type: str, fh: Columns, now_s: int, fields: list[str]
    ) -> History:
        """Keep only this object type's rows for `fields` up to `now`, so the record-id join (the
        costly string hashing) touches only rows that matter; rows of unknown records are dropped."""
        if len(fh):
            # This object type's rows first, so an absent type costs one pass, not one per field.
            rows = fh.equals("object_type", object_type)
            rows = (
                np.flatnonzero(rows & (fh.seconds("changed_at") <= now_s))
                if rows.any()
                else np.flatnonzero(rows)
            )
            names = _take(fh.get("field"), rows)
            fields = list(dict.fromkeys(fields))
            field_code = np.full(len(rows), -1, np.int8)
            for k, name in enumerate(fields):  # few fields; == on interned strings is fast
                field_code[names == name] = k
            wanted = field_code >= 0
            if not wanted.all():
                rows, field_code = rows[wanted], field_code[wanted]
        else:
            rows, field_code = np.empty(0, np.int64), np.empty(0, np.int8)
        code = index.codes(_take(fh.get("record_id"), rows))
        found = code >= 0
        if not found.all():
            rows, code, field_code = rows[found], code[found], field_code[found]
        return cls(
            code,
            field_code,
            list(fields),
            _take(fh.get("old_value"), rows),
            _take(fh.get("new_value"), rows),
            _take(fh.seconds("changed_at"), rows),
        )

    def rows(self, names: str | list[str]) -> np.ndarray:
        """Positions of the rows for one field or several fields (sorted)."""
        names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
        for name in names:
            if name not in self._rows:
                self._rows[name] = (
                    np.flatnonzero(self.field_code == self.fields.index(name))
                    if name in self.fields
                    else np.empty(0, np.int64)
                )
        if len(names) == 1:
            return self._rows[names[0]]
        return np.sort(np.concatenate([self._rows[name] for name in names]))

    def values(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(record code, second, old value, new value) of one field's rows, taken once."""
        if name not in self._values:
            i = self.rows(name)
            if len(i) == len(self.code):  # every row is this field's: no copies
                self._values[name] = (self.code, self.t, self.old, self.new)
            else:
                self._values[name] = (self.code[i], self.t[i], self.old[i], self.new[i])
        return self._values[name]


def _optional_seconds(values: pd.Series) -> np.ndarray:
    """Instants as epoch seconds, `_NAT_SECONDS` where missing (naive ones are taken as UTC)."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    seconds = np.floor_divide(idx.as_unit("ns").asi8, 10**9)
    return np.where(idx.isna(), _NAT_SECONDS, seconds)


def _live_activities(
    index: RecordIndex, object_type: str, act: Columns, now_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Columns | None]:
    """(record code, owner id, second, row in `act`, `act`) of this object type's activities up to
    `now`, deleted ones left out (a Lead's activities link by who_id, an Opportunity's by what_id).
    The second is when the activity happened: a completed Task's completion, else its creation."""
    if not len(act):
        empty = np.empty(0, np.int64)
        return empty, np.empty(0, object), empty, empty, None
    link = "who_id" if object_type == "Lead" else "what_id"
    at = act.seconds("created_at")
    if act.has("completed_at"):
        done = _optional_seconds(act.frame["completed_at"])
        at = np.where(done != _NAT_SECONDS, done, at)
    acode = index.codes(act.get(link))
    live = (acode >= 0) & (at <= now_s)
    if act.has("is_deleted"):
        live &= ~pd.Series(act.get("is_deleted"), dtype=object).fillna(False).astype(bool).to_numpy()
    rows = np.flatnonzero(live)
    return acode[rows], act.get("owner_id")[rows], at[rows], rows, act


@dataclass
class Timeline:
    """One object type's field history and activities, restricted to instants <= now, as codes."""

    index: RecordIndex
    history: History
    act_code: np.ndarray
    act_owner: np.ndarray
    act_t: np.ndarray
    act_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # rows in `act_columns`
    act_columns: Columns | None = None  # kind, type, subtype, created_by, status of each activity
    _events: dict[str, Events] = field(default_factory=dict)
    _record_flags: dict[str, np.ndarray] = field(default_factory=dict)
    _owners: Owners | None = None

    @classmethod
    def build(
        cls, index: RecordIndex, object_type: str, fh: Columns, act: Columns, now_s: int, fields: list[str]
    ) -> Timeline:
        """This object type's field history for `fields` (the ones some rule reads) and its
        activities, up to `now`."""
        history = History.build(index, object_type, fh, now_s, fields)
        return cls(index, history, *_live_activities(index, object_type, act, now_s))

    def field_events(self, name: str) -> Events:
        if name not in self._events:
            self._events[name] = Events.build(*self.history.values(name))
        return self._events[name]

    def flag_events(self, name: str, accepted: list[str]) -> tuple[Events, np.ndarray]:
        """A field's changes as booleans "value in `accepted`" (old and new), and the same test on
        each record's current value: looking these up as of an instant gives `_isin(value as of)`
        with numeric arrays only (no object arrays on the hot path)."""
        key = f"flag:{name}:{accepted!r}"
        if key not in self._events:
            code, t, old, new = self.history.values(name)
            self._events[key] = Events.build(code, t, _isin(old, accepted), _isin(new, accepted))
            self._record_flags[key] = _isin(self.index.field_value(name), accepted)
        return self._events[key], self._record_flags[key]

    def owners(self) -> Owners:
        """Every owner id this timeline mentions (the records' current owners and both sides of
        each ownership change) as integer codes, so segments carry small ints, not strings."""
        if self._owners is None:
            events = self.field_events(OWNER_FIELD)
            current = self.index.field_value(OWNER_FIELD)
            parts = [current]
            if events.old is not None:
                parts += [events.old, events.new]
            values = np.concatenate(parts) if len(parts) > 1 else current
            codes, vocab = pd.factorize(values)  # few distinct owners: one hash pass
            vocab = np.asarray(vocab, dtype=object)
            missing = codes < 0
            if missing.any():
                # Missing owners keep the input's own missing value (None or NaN) as one code.
                vocab = np.append(vocab, values[int(np.argmax(missing))])
                codes[missing] = len(vocab) - 1
            n = len(current)
            coded = Events(events.key)
            if events.old is not None:
                coded.old, coded.new = codes[n : n + len(events.key)], codes[n + len(events.key) :]
            self._owners = Owners(vocab, codes[:n], coded)
        return self._owners

    def owner_asof(self, record: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """The owner code of each record as of each instant (see `owners`)."""
        owners = self.owners()
        return value_asof(owners.events, record, seconds, owners.record[record])

    def breaks(self, fields: list[str]) -> Events:
        """Every change of one of `fields` (sorted (record, second) keys), cached per field set."""
        key = "breaks:" + "\x00".join(fields)
        if key not in self._events:
            rows = self.history.rows(fields)
            self._events[key] = Events.build(self.history.code[rows], self.history.t[rows])
        return self._events[key]

    def prepare(self, sla: Sla) -> None:
        """Fill every lazy cache `split_segments` reads, so threads evaluating blocks of clocks
        only read shared state."""
        self.owners()
        for rule in sla.pause:
            self.flag_events(rule.field, rule.in_)
        self.breaks(segment_fields(sla))


@dataclass
class Owners:
    """Owner ids as codes: `vocab[code]` is the id (one code stands for a missing owner)."""

    vocab: np.ndarray  # object
    record: np.ndarray  # each record's current owner code
    events: Events  # ownership changes with old/new as codes


def _is_set(values: np.ndarray) -> np.ndarray:
    return pd.notna(values) & (values != "")


def _isin(values: np.ndarray, accepted: list[str]) -> np.ndarray:
    if len(accepted) <= 3 and isinstance(values, np.ndarray):
        # A few == passes over an object array cost less than hashing it (missing never matches).
        hit = np.zeros(len(values), dtype=bool)
        for value in accepted:
            hit |= values == value
        return hit
    return pd.Series(values, dtype=object).isin(accepted).to_numpy(dtype=bool)


def start_events(sla: Sla, tl: Timeline) -> tuple[np.ndarray, np.ndarray]:
    """(record code, second) of every start-rule event: the field entering a value, or being set.

    A record created already holding the value (a lead created as an MQL: Salesforce writes no
    Status change for it, only the creation) starts a clock at its creation.
    """
    code, t, old, new = tl.history.values(sla.start.field)
    if sla.start.becomes is not None:
        hit = new == sla.start.becomes
        hit &= old != sla.start.becomes
    else:
        hit = _is_set(new) & ~_is_set(old)
    if not hit.all():
        code, t = code[hit], t[hit]
    if sla.start.becomes is None:
        return code, t
    born, at = created_in(tl, sla.start.field, sla.start.becomes)
    if not len(born):
        return code, t
    return np.concatenate([code, born]), np.concatenate([t, at])


#: The field_history row Salesforce writes when a record is created (history tracking on).
CREATED_FIELD = "created"


def created_in(tl: Timeline, field: str, value: str) -> tuple[np.ndarray, np.ndarray]:
    """(record code, creation second) of the records created with `field` == `value`.

    Only records whose creation the CRM recorded in their history (Salesforce's "created" row,
    written while field history tracking is on) count: a record created before tracking began has
    no known start, and must not get a clock from its creation date. The value at creation is the
    first change's old value, or the current value when the field never changed.
    """
    code, t, _, _ = tl.history.values(CREATED_FIELD)
    if not len(code):
        return code, t
    initial = value_asof(tl.field_events(field), code, t, tl.index.field_value(field)[code])
    born = initial == value
    return code[born], t[born]


@dataclass(frozen=True)
class Actors:
    """Who the activities' authors are, for touch rules: the policy's automation users (their
    activities never count) and each user's team (for `by: owner_team`)."""

    automation: frozenset[str] = frozenset()
    team_of: dict[str, str | None] = field(default_factory=dict)


def stop_events(sla: Sla, tl: Timeline, actors: Actors | None = None) -> Events:
    """Every instant at which a stop rule fires (the clock is met), per record (sorted packed keys)."""
    parts = []
    for rule in sla.stop:
        touch = rule.touch_rule
        if touch is not None:
            parts.append(touch_events(touch, tl, actors or Actors()))
            continue
        code, t, _, new = tl.history.values(rule.field)
        hit = _isin(new, rule.in_) if rule.in_ is not None else _is_set(new)
        parts.append(Events.build(code[hit], t[hit]))
    return Events.concat(parts)


def touch_events(touch: TouchRule, tl: Timeline, actors: Actors) -> Events:
    """The activities that count as a touch under `touch` (policy `TouchRule`): of the kinds,
    types and subtypes it names, never an automated subtype or an automation user's, a Task only
    once completed, and by the clock's owner at that instant (or their team, or anyone)."""
    code, t = tl.act_code, tl.act_t
    keep = np.ones(len(code), dtype=bool)
    act = tl.act_columns
    if act is not None and len(code):

        def column(name: str) -> np.ndarray:
            return act.get(name)[tl.act_rows] if act.has(name) else np.full(len(code), None, dtype=object)

        kind, subtype = column("kind"), column("subtype")
        keep &= _isin(kind, list(touch.kinds)) | pd.isna(kind)
        if touch.types:
            keep &= _isin(column("type"), touch.types)
        if touch.subtypes:
            keep &= _isin(subtype, touch.subtypes)
        if touch.exclude_subtypes:
            keep &= ~_isin(subtype, touch.exclude_subtypes)
        if touch.exclude_automation and actors.automation:
            keep &= ~_isin(column("created_by"), sorted(actors.automation))
        if touch.completed_only:
            # An open to-do is not a touch; a Task whose status the store lacks (synced before it was
            # read) counts as before.
            status = column("status")
            keep &= (kind != "Task") | pd.isna(status) | (status == "Completed")
    if touch.by != "anyone" and len(code):
        owner = tl.owners().vocab[tl.owner_asof(code, t)]
        if touch.by == "owner":
            keep &= tl.act_owner == owner
        else:
            team = np.array(
                [actors.team_of.get(o) if isinstance(o, str) else None for o in owner], dtype=object
            )
            mine = np.array(
                [actors.team_of.get(a) if isinstance(a, str) else None for a in tl.act_owner], dtype=object
            )
            keep &= (tl.act_owner == owner) | (pd.notna(team) & (team == mine))
    return Events.build(code[keep], t[keep])


def exit_events(sla: Sla, tl: Timeline) -> Events:
    """Every instant a record's start field leaves the watched value for one that is not a pause
    (SAL -> SQL, Recycled, ...): a clock open then ends there, handed on (policy `Sla.stop`). Only
    a clock started by a field becoming a value can leave it."""
    if sla.start.becomes is None:
        return Events(np.empty(0, np.int64))
    code, t, _, new = tl.history.values(sla.start.field)
    hit = ~_isin(new, [sla.start.becomes, *sla.pause_values(sla.start.field)])
    return Events.build(code[hit], t[hit])


@dataclass
class Clocks:
    """Clocks of one SLA: parallel arrays, one entry per clock."""

    record: np.ndarray  # record code
    start: np.ndarray  # epoch seconds
    stop: np.ndarray  # epoch seconds, -1 when still open
    left: np.ndarray | None = None  # bool: it ended by leaving the watched state (None: none did)

    def take(self, rows: np.ndarray | slice) -> Clocks:
        """The clocks at `rows` (an index array, a mask or a slice)."""
        left = None if self.left is None else self.left[rows]
        return Clocks(self.record[rows], self.start[rows], self.stop[rows], left)

    def ended_by_leaving(self) -> np.ndarray:
        return np.zeros(len(self.record), dtype=bool) if self.left is None else self.left


def derive_clocks(sla: Sla, tl: Timeline, actors: Actors | None = None) -> Clocks:
    """Every clock of `sla`: a start event opens one unless a clock of the same record is still open
    (a re-entry such as Nurture -> SAL resumes it instead); the first stop event at or after the
    start closes it: a stop rule (met), or the record leaving the watched state (handed on). A
    record that left and comes back (Recycled -> MQL -> SAL) gets a new clock."""
    code, t = start_events(sla, tl)
    met = stop_events(sla, tl, actors)
    exits = exit_events(sla, tl)
    stops = Events.concat([met, exits]) if len(exits.key) else met
    if len(code) == 0:
        empty = np.empty(0, np.int64)
        return Clocks(empty, empty, empty)
    key = np.sort(pack(code, t))
    code, t = key >> _SHIFT, key & _MASK
    # A candidate is a new clock if it is the record's first, or a stop fell in [previous, this).
    before = np.searchsorted(stops.key, key, side="left")
    new = np.ones(len(key), dtype=bool)
    new[1:] = (code[1:] != code[:-1]) | (before[1:] > before[:-1])
    if not new.all():
        key, code, t = key[new], code[new], t[new]
    j = np.searchsorted(stops.key, key, side="left")
    jc = np.clip(j, 0, max(len(stops.key) - 1, 0))
    if not len(stops.key):
        return Clocks(code, t, np.full(len(key), -1, np.int64))
    found = stops.key[jc]
    has = (j < len(stops.key)) & ((found >> _SHIFT) == code)
    stop = np.where(has, found & _MASK, -1)
    if not len(exits.key):
        return Clocks(code, t, stop)
    # Ended by leaving unless a stop rule fired at the very same instant (then it was met).
    if not len(met.key):
        return Clocks(code, t, stop, has.copy())
    at = np.minimum(np.searchsorted(met.key, found), len(met.key) - 1)
    return Clocks(code, t, stop, has & (met.key[at] != found))


@dataclass
class Segments:
    """Each clock's life split at owner and pause changes; parallel arrays sorted by (clock, start).
    With no change inside any clock (`single`), segment i is clock i."""

    clock: np.ndarray  # index into the Clocks arrays
    start: np.ndarray
    end: np.ndarray
    owner: np.ndarray  # owner code (`Timeline.owners().vocab`) as of the segment's start
    paused: np.ndarray  # bool
    single: bool = False


def segment_fields(sla: Sla) -> list[str]:
    """The fields whose changes split a clock into segments: the owner and every pause field."""
    return [OWNER_FIELD, *dict.fromkeys(rule.field for rule in sla.pause if rule.field != OWNER_FIELD)]


def split_segments(sla: Sla, tl: Timeline, clocks: Clocks, end: np.ndarray) -> Segments:
    """Split [clock start, end) at every owner change and pause-field change of the record (the last
    segment may be empty: a change exactly at the end), each segment with its owner and whether it
    is paused as of its start."""
    clock, record, seg_start, seg_end, single = _segment_bounds(tl.breaks(segment_fields(sla)), clocks, end)
    owner = tl.owner_asof(record, seg_start)
    paused = np.zeros(len(clock), dtype=bool)
    for rule in sla.pause:
        events, record_flag = tl.flag_events(rule.field, rule.in_)
        paused |= value_asof(events, record, seg_start, record_flag[record])
    return Segments(clock, seg_start, seg_end, owner, paused, single)


def _segment_bounds(
    breaks: Events, clocks: Clocks, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """(clock index, record code, start, end) of every segment, sorted by (clock, start), and
    whether segment i is clock i (no change inside any clock: then the clocks' own arrays are
    returned, no index juggling)."""
    n = len(clocks.record)
    lo = np.searchsorted(breaks.key, pack(clocks.record, clocks.start), side="right")
    # Changes exactly at the end still apply: they open a zero-length last segment, so the owner and
    # pause state "as of the end" (which projections and the paused state use) are right.
    end_key = pack(clocks.record, end)
    # Usually no clock has a change inside it (the first change after each start, if any, is past
    # its end): one segment per clock, and the clocks' own arrays serve.
    if not len(breaks.key):
        return np.arange(n), clocks.record, clocks.start, end, True
    next_change = np.take(breaks.key, np.minimum(lo, len(breaks.key) - 1))
    if not (next_change <= end_key)[lo < len(breaks.key)].any():
        return np.arange(n), clocks.record, clocks.start, end, True
    hi = np.searchsorted(breaks.key, end_key, side="right")
    count = np.maximum(hi - lo, 0) + 1
    clock = np.repeat(np.arange(n), count)
    first = np.cumsum(count) - count
    pos = np.arange(len(clock)) - first[clock]
    inner = breaks.seconds[np.clip(lo[clock] + pos - 1, 0, len(breaks.key) - 1)]
    seg_start = np.where(pos == 0, clocks.start[clock], inner)
    seg_end = np.empty_like(seg_start)
    seg_end[:-1] = seg_start[1:]
    seg_end[first + count - 1] = end
    return clock, clocks.record[clock], seg_start, seg_end, False
