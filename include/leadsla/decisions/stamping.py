"""What sla_monitor stamps on each watched Lead: its clock's SLA fields, where they differ from the CRM.

Reps and managers work in the CRM, so each watched record carries its current clock: when it is
due, the War Room's colour (the clocks table's `colour`: green, yellow from 75 %, red past the
target), its state in words, the first response and the business minutes to it, whether and when
it breached, who answers for it and the policy version. A record's current clock is its latest
(a new MQL or SAL cycle starts a new one; an open clock wins a tie). The decision is pure: clock
rows and the CRM's copy of the record fields in, the changes to write out; `leadsla.stamping`
reads the store, writes through the CRM write-back and audits. Values depend on the clock alone,
never on the minute they are decided in, so a minute where no clock changed colour, state, owner
or deadline decides nothing (no API call), and a stamp can never change a clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A clock's state in the words the record shows (met late is met and breached; handed on late
#: is handed on and breached: the breach flag says the rest).
STATE_WORDS = {
    "running": "running",
    "paused": "paused",
    "met": "met",
    "met_late": "met",
    "breached": "breached",
    "handed_on": "handed on",
    "handed_on_late": "handed on",
}
#: The War Room's colours (`leadsla.engine.COLOURS`), as the clocks table stores them.
COLOURS = ("green", "yellow", "red")
_MET = ("met", "met_late")
_OPEN = ("running", "paused", "breached")
#: A CRM user id: the accountable owner is stamped only when a person answers (a queue cannot).
_USER_PREFIX = "005"


@dataclass(frozen=True)
class StampField:
    """One field the monitor stamps: its logical name (a key of crm_fields.yaml `sla_fields`), the
    kind of value it holds (what describe() must say the org's field can hold), and, for words,
    every value it takes."""

    name: str
    kind: str  # datetime | number | boolean | text | user_id
    what: str
    values: tuple[str, ...] = ()


STAMP_FIELDS: tuple[StampField, ...] = (
    StampField("sla_due", "datetime", "when the target runs out (blank while the clock is paused)"),
    StampField("sla_colour", "text", "the War Room's colour", COLOURS),
    StampField("sla_state", "text", "the clock's state", tuple(dict.fromkeys(STATE_WORDS.values()))),
    StampField("first_response_date", "datetime", "the first touch that met a touch SLA"),
    StampField("time_to_first_touch", "number", "business minutes from the clock's start to that touch"),
    StampField("sla_breach", "boolean", "whether the clock breached"),
    StampField("sla_breached_at", "datetime", "when the target ran out, for a breached clock"),
    StampField("sla_owner", "user_id", "the user who answers for the clock (the owner at the breach)"),
    StampField("sla_policy_version", "text", "the policy version the clock runs under"),
)
BY_NAME = {f.name: f for f in STAMP_FIELDS}
#: Changes that are written even past the stamping budget: a breach, and a turn to red.
URGENT = {"sla_breach": True, "sla_colour": "red"}
#: What a record's clock is identified by: (sla_id, clock_start).
ClockId = tuple[str, dt.datetime]


@dataclass
class StampPlan:
    """What to write: per record, the fields whose value changed, and which records are urgent.

    `held` counts records with changes the budget guard left for later (they stay different from
    the CRM's copy, so a later run writes them).
    """

    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    urgent: set[str] = field(default_factory=set)
    clocks: dict[str, ClockId] = field(default_factory=dict)
    held: int = 0
    unchanged: int = 0

    @property
    def fields_changed(self) -> dict[str, int]:
        """How many records change each field (for the summary)."""
        counts: dict[str, int] = {}
        for values in self.changes.values():
            for name in values:
                counts[name] = counts.get(name, 0) + 1
        return counts


def current_clocks(clocks: pd.DataFrame) -> pd.DataFrame:
    """Each record's current clock: the latest started; on a tie an open one, then the SLA id.

    Args:
        clocks: clock rows (the store's `clocks` columns) of one object type.
    """
    if clocks.empty:
        return clocks
    order = clocks.assign(_open=clocks["state"].astype(str).isin(_OPEN))
    order = order.sort_values(
        ["record_id", "clock_start", "_open", "sla_id"], ascending=[True, True, True, False]
    )
    return order.drop_duplicates("record_id", keep="last").drop(columns="_open")


def _exact(value: Any) -> dt.datetime:
    """A clock's start as an aware UTC datetime, to the microsecond (it is part of its identity)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    return value.astimezone(dt.UTC)


def _instants(values: Any) -> pd.Series:
    """Instants as aware UTC to the second (the clocks' precision), from a clock column or the CRM's
    text (2026-11-17T19:00:00.000+0000); missing or unreadable ones are NaT. Positional index."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").reset_index(drop=True)
    else:
        series = pd.Series(list(values), dtype=object)
        parsed = pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    return parsed.dt.floor("s")


def _naive(instants: pd.Series) -> np.ndarray:
    """UTC instants as numpy datetime64 (NaT for none): compared without a Timestamp per value."""
    return instants.dt.tz_localize(None).to_numpy()


def wanted_values(clocks: pd.DataFrame, *, touch_slas: Iterable[str], minutes_scale: int = 2) -> pd.DataFrame:
    """Every stamp field's value for each clock row, one row per clock (index: record id).

    Args:
        clocks: clocks-table rows (sla_id, record_id, state, colour, deadline, stopped_at,
            breached_at, elapsed_seconds, accountable_owner_id, policy_version).
        touch_slas: SLA ids whose clocks stop on touches only: their met is the first response
            (the first-response fields of any other clock stay blank).
        minutes_scale: decimal places the org's number field keeps (the describe check's `scale`):
            the business minutes are rounded so the CRM's copy compares equal to what was written.

    Returns:
        Columns by logical name: instants (NaT: blank), minutes (NaN: blank), the breach flag,
        and text (None: blank). A paused clock has no due time: the engine projects its deadline
        as if it ran on from now, so it would move every minute and mean nothing to a list view.
    """
    clocks = clocks.reset_index(drop=True)
    state = clocks["state"].astype(str).to_numpy()
    met_by_touch = clocks["sla_id"].astype(str).isin(set(touch_slas)).to_numpy() & np.isin(state, _MET)
    owner = pd.Series(clocks["accountable_owner_id"].to_numpy(), dtype=object)
    is_user = owner.map(lambda o: isinstance(o, str) and o.startswith(_USER_PREFIX)).to_numpy(dtype=bool)
    breached_at = _instants(clocks["breached_at"])
    minutes = pd.Series(clocks["elapsed_seconds"].to_numpy(dtype=float) / 60).round(max(0, minutes_scale))
    out = pd.DataFrame(
        {
            "sla_due": _instants(clocks["deadline"]).where(state != "paused"),
            "sla_colour": clocks["colour"].astype(str).to_numpy(),
            "sla_state": [STATE_WORDS[s] for s in state],
            "first_response_date": _instants(clocks["stopped_at"]).where(met_by_touch),
            "time_to_first_touch": minutes.where(met_by_touch),
            "sla_breach": breached_at.notna().to_numpy(),
            "sla_breached_at": breached_at,
            "sla_owner": owner.where(is_user, None).to_numpy(),
            "sla_policy_version": clocks["policy_version"].astype(str).to_numpy(),
        }
    )
    out.index = pd.Index(clocks["record_id"].to_numpy(), name="record_id")
    return out


def _python(value: Any) -> Any:
    """A frame's cell as the write-back takes it: datetimes, floats, bools, text, None for blank."""
    if value is None or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def clock_values(clock: Mapping[str, Any], *, touch: bool, minutes_scale: int = 2) -> dict[str, Any]:
    """Every stamp field's value for one clock row (`wanted_values` for one clock)."""
    frame = pd.DataFrame([dict(clock)])
    row = wanted_values(frame, touch_slas=[clock["sla_id"]] if touch else [], minutes_scale=minutes_scale)
    return {name: _python(value) for name, value in row.iloc[0].items()}


def _unchanged(name: str, wanted: pd.Series, have: list[Any]) -> np.ndarray:
    """Per record, whether the CRM's copy already holds the wanted value of field `name` (compared
    as the CRM returns values: instants as text to the millisecond, numbers as floats)."""
    kind = BY_NAME[name].kind
    if kind == "datetime":
        w, current = _naive(wanted), _naive(_instants(have))
        return (w == current) | (np.isnat(w) & np.isnat(current))
    if kind == "number":
        current = pd.to_numeric(pd.Series(have, dtype=object), errors="coerce").to_numpy(dtype=float)
        w = wanted.to_numpy(dtype=float)
        return (np.isnan(w) & np.isnan(current)) | (np.abs(w - current) <= 1e-9)
    if kind == "boolean":
        return np.array(
            [isinstance(h, bool) and h is bool(w) for w, h in zip(wanted, have, strict=True)], dtype=bool
        )
    return np.array(
        [(w is None and h is None) or w == h for w, h in zip(wanted, have, strict=True)], dtype=bool
    )


def plan_stamps(
    clocks: pd.DataFrame,
    current: Mapping[str, Mapping[str, Any]],
    *,
    fields: Sequence[str],
    touch_slas: Iterable[str],
    stopped: Mapping[str, Mapping[ClockId, set[str]]] | None = None,
    guard: bool = False,
    minutes_scale: int = 2,
) -> StampPlan:
    """The changes to write: each record's current clock's values where the CRM's copy differs.

    Args:
        clocks: the object's clock rows (the store's `clocks` columns).
        current: record id -> {logical field: the CRM's copy of its value}; a record the store
            does not hold (deleted) is not stamped.
        fields: the logical fields to stamp (mapped, and fit to hold their values).
        touch_slas: SLA ids whose clocks stop on touches only (their met is the first response).
        stopped: record id -> {its clock: fields the CRM refused for it}; not stamped again on
            that clock (a new clock tries again).
        guard: over the stamping budget: only records whose change is urgent (`URGENT`: a breach,
            a turn to red) are written, with all their changes.
        minutes_scale: see `wanted_values`.
    """
    unknown = set(fields) - set(BY_NAME)
    if unknown:
        raise ValueError(f"not stamp fields: {sorted(unknown)} (known: {sorted(BY_NAME)})")
    stopped = stopped or {}
    plan = StampPlan()
    chosen = current_clocks(clocks)
    if not chosen.empty:
        chosen = chosen[chosen["record_id"].isin(list(current))]
    if chosen.empty:
        return plan
    wanted = wanted_values(chosen, touch_slas=touch_slas, minutes_scale=minutes_scale)
    ids = wanted.index.tolist()
    copies = [current[rid] for rid in ids]
    differs = np.zeros((len(ids), len(fields)), dtype=bool)
    for j, name in enumerate(fields):
        differs[:, j] = ~_unchanged(name, wanted[name], [copy.get(name) for copy in copies])
    starts = chosen["clock_start"].to_numpy()
    slas = chosen["sla_id"].astype(str).to_numpy()
    changed_rows = np.flatnonzero(differs.any(axis=1))
    plan.unchanged = len(ids) - len(changed_rows)
    for i in changed_rows:
        rid = ids[i]
        clock_id = (slas[i], _exact(pd.Timestamp(starts[i])))
        refused = stopped.get(rid, {}).get(clock_id, set())
        diff = {
            name: _python(wanted.iat[i, wanted.columns.get_loc(name)])
            for j, name in enumerate(fields)
            if differs[i, j] and name not in refused
        }
        if not diff:
            plan.unchanged += 1
            continue
        urgent = any(diff.get(name) == value for name, value in URGENT.items())
        if guard and not urgent:
            plan.held += 1
            continue
        plan.changes[rid] = diff
        plan.clocks[rid] = clock_id
        if urgent:
            plan.urgent.add(rid)
    return plan


#: describe() field types that can hold each kind of value.
_TYPES = {
    "datetime": {"datetime"},
    "number": {"double", "int", "currency", "percent"},
    "boolean": {"boolean"},
    "text": {"string", "textarea", "picklist"},
    "user_id": {"reference", "string"},
}
#: Whole digits a number field needs for business minutes (999,999 minutes: years of them).
_MINUTE_DIGITS = 6
_ID_LENGTH = 18


def unfit_reason(
    stamp: StampField, api_name: str, described: Mapping[str, Any] | None, texts: Sequence[str] = ()
) -> str | None:
    """Why the org's field cannot hold what `stamp` writes, or None when it can.

    Args:
        api_name: the field's API name, as the mapping names it (Lead.<api_name> in the reason).
        described: the field as describe() reported it (type, updateable, length, picklist,
            reference_to, precision, scale), or None when the org has no such field.
        texts: further words a text field must hold (the policy versions).

    Returns:
        One sentence naming the field, its type and what it should be.
    """
    where = f"Lead.{api_name}"
    if described is None:
        return f"the org has no field {where} (for {stamp.what})"
    kind = str(described.get("type"))
    if not described.get("updateable", False):
        return f"{where} ({kind}) is not writable by the integration user (for {stamp.what})"
    if kind not in _TYPES[stamp.kind]:
        wanted = " or ".join(sorted(_TYPES[stamp.kind]))
        return f"{where} is a {kind} field: {stamp.what} needs a {wanted} field"
    if stamp.kind == "number":
        precision, scale = int(described.get("precision") or 0), int(described.get("scale") or 0)
        if precision and precision - scale < _MINUTE_DIGITS:
            return (
                f"{where} is a number({precision}, {scale}) field: {stamp.what} needs at least "
                f"{_MINUTE_DIGITS} digits before the point"
            )
    if stamp.kind == "user_id":
        if kind == "reference" and "User" not in (described.get("reference_to") or ()):
            refs = ", ".join(described.get("reference_to") or ()) or "nothing"
            return f"{where} is a lookup to {refs}: {stamp.what} needs a lookup to User"
        if kind == "string" and int(described.get("length") or 0) < _ID_LENGTH:
            return (
                f"{where} is a text({described.get('length')}) field: a user id needs {_ID_LENGTH} characters"
            )
    if stamp.kind == "text":
        words = [*stamp.values, *texts]
        longest = max(words, key=len, default="")
        length = int(described.get("length") or 0)
        if length and len(longest) > length:
            return (
                f"{where} is a {kind}({length}) field: {stamp.what} needs {len(longest)} characters "
                f"({longest!r})"
            )
        if kind == "picklist":
            missing = [v for v in stamp.values if v not in (described.get("picklist") or ())]
            if missing:
                values = ", ".join(map(repr, missing))
                return f"{where} is a picklist without the value(s) {values} ({stamp.what})"
    return None
