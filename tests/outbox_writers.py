"""Who writes the outbox: a SQLAlchemy listener that names the production module behind every
INSERT, UPDATE or DELETE on the `outbox` table.

`leadsla.notify.outbox` is the only module allowed to write it (DESIGN.md, "Decide, then
write"). Installed for the whole test session by tests/conftest.py, so every test that exercises
production code is a witness; test code writing the table directly (fixtures setting up a
delivered row, say) has no `leadsla` frame and is not counted.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import sqlalchemy as sa

WRITER = "leadsla.notify.outbox"
_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?outbox\"?[\s(]", re.IGNORECASE)


@dataclass
class OutboxWriters:
    """Every production module seen writing the outbox, with the statement's first words."""

    seen: dict[str, str] = field(default_factory=dict)

    def on_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not _WRITE.match(statement):
            return
        module = writing_module()
        if module is not None:
            self.seen.setdefault(module, " ".join(statement.split()[:3]))

    @property
    def intruders(self) -> dict[str, str]:
        return {m: s for m, s in self.seen.items() if m != WRITER}

    def install(self) -> None:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self.on_execute)

    def remove(self) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self.on_execute)


#: Generic SQL helpers: they write whatever table their caller names, so the caller is the writer.
SQL_HELPERS = frozenset({"leadsla.store.upsert"})


def writing_module() -> str | None:
    """The innermost `leadsla` module on the stack that is not a generic SQL helper (None when only
    tests and libraries are)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if (name == "leadsla" or name.startswith("leadsla.")) and name not in SQL_HELPERS:
            return name
        frame = frame.f_back
    return None
