"""A health finding: what is wrong, how bad, which records, how to fix. Never reads anything."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Finding:
    check: str
    severity: str  # critical, warning, info
    summary: str
    record_ids: list[str] = field(default_factory=list)
    how_to_fix: str = ""
