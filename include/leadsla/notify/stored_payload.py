"""An outbox row's payload as the decisions read it: its JSON text, decoded only when read.

A monitor run reads every pending message and those delivered within the rate-limit window
(`notify.outbox.queued_rows`): tens of thousands of rows of about a kilobyte each when delivery
lags behind, while the decisions look at four keys of almost all of them - `kind` (the rate
limit's digests), `planned` and `due_at` (a warning planned ahead is nobody's queue until its
instant) and `team` (a leadership breach message rolled up into its team's capacity alert) - and at
the rest only for the few rows a digest or roll-up takes. Those four keys are decoded for every
row (`msgspec`, skipping the rest of the text without building it); the whole payload the first
time anything else is read. Values are exactly what `json.loads` gives: text msgspec refuses
(NaN, which `json.dumps` writes) is decoded by `json.loads` whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

#: The keys decoded for every row (module docstring).
HEAD = ("kind", "planned", "due_at", "team")
_EMPTY = re.compile(r"\s*\{\s*\}\s*")


class _Head(msgspec.Struct):
    """The head keys of a payload object; absent ones UNSET, other keys skipped."""

    kind: Any = msgspec.UNSET
    planned: Any = msgspec.UNSET
    due_at: Any = msgspec.UNSET
    team: Any = msgspec.UNSET


_DECODE_HEAD = msgspec.json.Decoder(_Head)


class StoredPayload(Mapping[str, Any]):
    """A payload object's JSON text as a read-only mapping: the head keys (`HEAD`) at once, the
    whole object when any other key, its length or its iteration is asked for.

    Raises:
        ValueError: `text` is not a JSON object (naming the row, `where`).
    """

    __slots__ = ("_text", "_head", "_whole")

    def __init__(self, text: str, *, where: str = "outbox payload") -> None:
        self._text = text
        self._whole: dict[str, Any] | None = None
        try:
            self._head: _Head | None = _DECODE_HEAD.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError):  # not plain JSON to msgspec (NaN)
            self._head = None
            try:
                self._whole = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{where}: payload is not JSON: {exc}") from None
            if not isinstance(self._whole, dict):
                raise ValueError(f"{where}: payload is not a JSON object: {text[:60]!r}") from None

    def _decoded(self) -> dict[str, Any]:
        if self._whole is None:
            self._whole = json.loads(self._text)
        return self._whole

    def __getitem__(self, key: str) -> Any:
        if self._whole is None and key in HEAD and self._head is not None:
            value = getattr(self._head, key)
            if value is msgspec.UNSET:
                raise KeyError(key)
            return value
        return self._decoded()[key]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if self._whole is None and key in HEAD and self._head is not None:
            return getattr(self._head, str(key)) is not msgspec.UNSET
        return key in self._decoded()

    def __bool__(self) -> bool:
        return self._whole != {} if self._whole is not None else not _EMPTY.fullmatch(self._text)

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"StoredPayload({self._decoded()!r})"


def stored_payload(text: str | None, *, where: str = "outbox payload") -> Mapping[str, Any]:
    """A stored payload's text as the decisions read it: a `StoredPayload`, or an empty mapping
    for no payload (SQL NULL or JSON null, as `row.payload or {}` read them)."""
    if text is None or text.strip() == "null":
        return {}
    return StoredPayload(text, where=where)
