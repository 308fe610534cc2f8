"""The audit trail's hash chain read back (`store.chain` writes it): the first broken entry named.

`verify_store` walks the chain in audit_id order and names the first broken entry: `edited` (its
content no longer matches its hash), `deleted` (its predecessor is missing; or the newest
entries are), `inserted` (it is not in the chain), `reordered` (its predecessor comes after it),
`truncated` (every entry is gone, or the head). `verify_entries` does the same for an export,
offline. Anchors (an entry id and its hash copied out earlier: a verify line, the health check's
log, an export) catch a chain rewritten from some entry on and re-headed, which is consistent on
its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from leadsla.store.chain import CHAIN_ID, HASHED, PAGE, values_hash
from leadsla.store.connection import READ_ONLY
from leadsla.store.schema import audit, audit_chain

#: An entry as the walk reads it: (audit_id, *its HASHED fields in order, prev_hash, entry_hash).
Entry = Sequence[Any]


@dataclass(frozen=True)
class Break:
    """The first broken entry: its id (None: the chain head itself), how, and in words."""

    audit_id: int | None
    kind: str  # edited, deleted, inserted, reordered, truncated
    reason: str


@dataclass(frozen=True)
class Verdict:
    """What a verification checked, and the first break (None: intact)."""

    entries: int
    first_id: int | None
    last_id: int | None
    last_hash: str | None
    broken: Break | None
    unlinked: int = 0  # an export's entries whose predecessor is not in the file

    def line(self) -> str:
        """One line for a person: intact with what it covered, or the first break."""
        if self.broken is not None:
            where = f"entry #{self.broken.audit_id}" if self.broken.audit_id is not None else "the chain head"
            return f"audit trail BROKEN at {where} ({self.broken.kind}): {self.broken.reason}"
        if not self.entries:
            return "audit trail intact: no entries to check"
        unlinked = (
            f" ({self.unlinked} of them follow an entry that is not in the export, outside its period or "
            "removed: check them against the store with `leadsla audit verify --from --to`)"
            if self.unlinked
            else ""
        )
        return (
            f"audit trail intact: {self.entries} entries, #{self.first_id} to #{self.last_id}{unlinked}; "
            f"anchor {self.last_id}:{self.last_hash} (keep it for `leadsla audit verify --anchor`)"
        )


class _Walk:
    """The chain walked in audit_id order from `expected` (the hash the first entry must follow).

    `locate(hash)` gives the id of the entry with that entry_hash (None: none), `following(id)`
    the id after one; `gaps` (an export) counts a predecessor found nowhere as outside the file.
    Each entry is checked once the one after it is known (it words the break).
    """

    def __init__(
        self,
        expected: str | None,
        locate: Callable[[str], int | None],
        following: Callable[[int], int | None],
        *,
        gaps: bool = False,
    ) -> None:
        self.expected = self.origin = expected
        self.start = "the chain's start" if expected is not None else "the export's start"
        self.locate, self.following, self.gaps = locate, following, gaps
        self.entries = self.unlinked = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.broken: Break | None = None
        self.head_id: int | None = None  # the store's head when the walk began: later rows must follow it
        self._pending: Entry | None = None

    def feed(self, rows: Iterable[Entry]) -> bool:
        """Walk on over `rows` (in audit_id order); False once a break is found."""
        for row in rows:
            if self._pending is not None and not self._check(self._pending, row):
                return False
            self._pending = row
        return True

    def finish(self) -> bool:
        """Check the last entry fed (nothing follows it); False on a break."""
        row, self._pending = self._pending, None
        return row is None or self._check(row, None)

    def _check(self, row: Entry, after: Entry | None) -> bool:
        rid, prev, own = row[0], row[-2], row[-1]
        if not prev or not own:
            return self._break(
                rid, "inserted", f"entry #{rid} carries no chain hash: it was written outside the chain"
            )
        intact = values_hash(prev, row[1:-2]) == own
        if self.expected is None:  # an export's first entry: its predecessor is taken as given
            self.expected = prev
        if prev != self.expected:
            if not self._linked(row, after, intact):
                return False
        elif not intact:
            return self._edited(rid)
        self.expected = own
        self.entries += 1
        self.first_id = rid if self.first_id is None else self.first_id
        self.last_id = rid
        return True

    def _linked(self, row: Entry, after: Entry | None, intact: bool) -> bool:
        """`row` does not follow the entry before it: say why (False), or count a gap (True)."""
        rid, prev, last = row[0], row[-2], self.last_id
        before = f"#{last}" if last is not None else self.start
        if prev == self.origin and last is not None:
            return self._break(
                self.first_id,
                "inserted",
                f"entries #{self.first_id} to #{last} are not in the chain: "
                f"#{rid} follows {self.start} directly",
            )
        where = self.locate(prev)
        if where is not None and where > rid:
            return self._break(
                rid,
                "reordered",
                f"entry #{rid} was moved: it follows #{where} in the chain, which comes after it",
            )
        if where is not None:
            first = self.following(where)
            return self._break(
                first,
                "inserted",
                f"entries #{first} to #{last} are not in the chain: #{rid} follows #{where} directly",
            )
        if after is not None and after[-2] == self.expected:
            return self._break(
                rid,
                "inserted",
                f"entry #{rid} is not in the chain: #{after[0]} follows {before} directly",
            )
        followed = after is not None and after[-2] == row[-1]
        if self.head_id is not None and rid > self.head_id and not followed:
            return self._break(
                rid, "inserted", f"entry #{rid} is not in the chain: it comes after the head #{self.head_id}"
            )
        if not intact:
            return self._edited(rid)
        if self.gaps:
            self.unlinked += 1
            return True
        return self._break(
            rid,
            "deleted",
            f"the entry before #{rid} in the chain is missing: deleted after {before} "
            f"(or {before} was rewritten with a new hash)",
        )

    def _edited(self, rid: int) -> bool:
        return self._break(
            rid, "edited", f"entry #{rid} no longer matches its hash: its content (or its hash) was changed"
        )

    def _break(self, audit_id: int | None, kind: str, reason: str) -> bool:
        self.broken = Break(audit_id, kind, reason)
        return False

    def verdict(self) -> Verdict:
        return Verdict(self.entries, self.first_id, self.last_id, self.expected, self.broken, self.unlinked)


_ROW_COLUMNS = [audit.c.audit_id, *(audit.c[name] for name in HASHED), audit.c.prev_hash, audit.c.entry_hash]


def _rows(conn: sa.Connection, after: int | None, upto: int | None) -> Iterator[Entry]:
    """Entries with after < audit_id <= upto (open ends when None), in audit_id order, read a page
    per statement (no statement stays open while the caller hashes)."""
    while True:
        stmt = sa.select(*_ROW_COLUMNS).order_by(audit.c.audit_id).limit(PAGE)
        if after is not None:
            stmt = stmt.where(audit.c.audit_id > after)
        if upto is not None:
            stmt = stmt.where(audit.c.audit_id <= upto)
        page = conn.execute(stmt).all()
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _head(conn: sa.Connection) -> sa.Row | None:
    return conn.execute(sa.select(audit_chain).where(audit_chain.c.chain_id == CHAIN_ID)).first()


def _following(conn: sa.Connection, audit_id: int | None) -> int | None:
    """The id of the entry after `audit_id` (the first entry when None)."""
    stmt = sa.select(sa.func.min(audit.c.audit_id))
    if audit_id is not None:
        stmt = stmt.where(audit.c.audit_id > audit_id)
    return conn.execute(stmt).scalar()


def _locate(conn: sa.Connection, digest: str) -> int | None:
    """The id of the entry whose entry_hash is `digest` (a scan: only asked at a break)."""
    return conn.execute(sa.select(audit.c.audit_id).where(audit.c.entry_hash == digest).limit(1)).scalar()


Anchor = tuple[int, str]


def parse_anchor(text: str) -> Anchor:
    """``ID:HASH`` (an entry id and its entry hash, as copied from a verify line, the health
    check's log or an export) as an anchor.

    Raises:
        ValueError: not an entry id and a 64-digit hex hash joined by a colon.
    """
    rid, _, digest = text.strip().lstrip("#").partition(":")
    if not rid.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"anchor {text!r} is not ID:HASH (an entry id and its 64-digit hex entry hash)")
    return int(rid), digest


def _anchored(verdict: Verdict, anchors: Iterable[Anchor], hash_of: Callable[[int], str | None]) -> Verdict:
    """After an intact walk, each anchor (an entry id and the hash it had when it was copied out
    of the store) must still hold: a chain rewritten from some entry on and re-headed fails here."""
    for rid, digest in anchors if verdict.broken is None else ():
        now = hash_of(rid)
        if now != digest:
            kind, what = ("deleted", "is gone") if now is None else ("edited", "no longer holds it")
            reason = f"entry #{rid} was anchored with hash {digest} and {what}: the chain was rewritten"
            return replace(verdict, broken=Break(rid, kind, reason))
    return verdict


def verify_store(
    engine: sa.Engine,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    anchors: Iterable[Anchor] = (),
) -> Verdict:
    """Recompute the store's chain; with `start`/`end`, only the stretch of the chain from the
    first to the last entry whose `at` lies in [start, end), linked to the entry before it. Each
    of `anchors` must still hold.

    Reads on a read-only connection (on SQLite it takes no write lock); entries appended while
    it runs are walked too, up to the head it reads last.
    """
    with engine.execution_options(**{READ_ONLY: True}).connect() as conn:

        def hash_of(rid: int) -> str | None:
            return conn.execute(sa.select(audit.c.entry_hash).where(audit.c.audit_id == rid)).scalar()

        return _anchored(_verify_store(conn, start, end), anchors, hash_of)


def _verify_store(conn: sa.Connection, start: dt.datetime | None, end: dt.datetime | None) -> Verdict:
    head = _head(conn)
    if head is None:
        return Verdict(
            0, None, None, None, Break(None, "truncated", "the chain head (audit_chain) is missing")
        )
    walk = _Walk(head.genesis_hash, lambda digest: _locate(conn, digest), lambda rid: _following(conn, rid))
    walk.head_id = head.head_audit_id
    lo = hi = None
    if start is not None or end is not None:
        period = [audit.c.at >= start] if start is not None else []
        period += [audit.c.at < end] if end is not None else []
        lo, hi = conn.execute(
            sa.select(sa.func.min(audit.c.audit_id), sa.func.max(audit.c.audit_id)).where(*period)
        ).one()
        if lo is None:
            return Verdict(0, None, None, None, None)
        before = conn.execute(
            sa.select(audit.c.audit_id, audit.c.entry_hash)
            .where(audit.c.audit_id < lo)
            .order_by(audit.c.audit_id.desc())
            .limit(1)
        ).first()
        if before is not None:  # the period's first entry must follow the one before it
            walk.expected = walk.origin = before.entry_hash
            walk.start = f"#{before.audit_id}"
    upto = hi if hi is not None and _following(conn, hi) is not None else None
    if not (walk.feed(_rows(conn, None if lo is None else lo - 1, upto)) and walk.finish()):
        return walk.verdict()
    if upto is not None:
        return walk.verdict()  # the stretch ends before the newest entry: the head is not its end
    return _check_head(walk, conn, full=lo is None)


def _check_head(walk: _Walk, conn: sa.Connection, *, full: bool) -> Verdict:
    """The walk reached the newest entry: the head must be that entry (walking on over entries
    appended meanwhile); a head beyond it means the newest entries were cut, a head before it that
    the entries after the head are not in the chain."""
    while True:
        head = _head(conn)
        if head is None:
            walk.broken = Break(None, "truncated", "the chain head (audit_chain) is missing")
            return walk.verdict()
        head_id, last = head.head_audit_id, walk.last_id
        if head_id is not None and (last is None or head_id > last):
            more = _following(conn, last)
            if more is not None and more <= head_id:  # appended while the walk ran: walk on
                if not (walk.feed(_rows(conn, last, head_id)) and walk.finish()):
                    return walk.verdict()
                continue
            kind, reason = (
                (
                    "truncated",
                    f"the trail holds no entries but its chain head counts {head.entries}, the newest "
                    f"#{head_id}: every entry was deleted (truncated)",
                )
                if last is None and full
                else (
                    "deleted",
                    f"the chain ends at #{last} but its head is #{head_id} ({head.entries} entries): "
                    "the newest entries were deleted",
                )
            )
            walk.broken = Break(head_id, kind, reason)
        elif last is not None and (head_id is None or head_id < last):
            first = _following(conn, head_id) if head_id is not None else walk.first_id
            at = f"#{head_id}" if head_id is not None else "still at the chain's start"
            walk.broken = Break(
                first, "inserted", f"entries #{first} to #{last} are not in the chain: its head is {at}"
            )
        elif walk.expected != head.head_hash:
            walk.broken = Break(
                None, "edited", f"the chain head does not hold entry #{last}'s hash: the head was changed"
            )
        elif full and walk.entries != head.entries:
            walk.broken = Break(
                None,
                "edited",
                f"the chain head counts {head.entries} entries but {walk.entries} lead to it: "
                "the head was changed",
            )
        return walk.verdict()


def verify_entries(entries: Iterable[Mapping[str, Any]], anchors: Iterable[Anchor] = ()) -> Verdict:
    """Verify entries from an export (mappings with audit_id, the HASHED fields and the hashes),
    offline: each against its own hash, each against the entry before it where that one is in
    the export too, from the first entry's `prev_hash`; each of `anchors` must be in the export
    with its hash."""
    rows = sorted(
        (
            (e["audit_id"], *(e.get(name) for name in HASHED), e.get("prev_hash"), e.get("entry_hash"))
            for e in entries
        ),
        key=lambda r: r[0],
    )
    ids = [r[0] for r in rows]
    by_hash = {r[-1]: r[0] for r in rows if r[-1]}
    position = {rid: i for i, rid in enumerate(ids)}

    def following_in_file(audit_id: int) -> int | None:
        i = position.get(audit_id)
        return ids[i + 1] if i is not None and i + 1 < len(ids) else None

    walk = _Walk(None, by_hash.get, following_in_file, gaps=True)
    _ = walk.feed(rows) and walk.finish()
    hashes = {r[0]: r[-1] for r in rows}
    return _anchored(walk.verdict(), anchors, hashes.get)
