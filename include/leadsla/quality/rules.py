"""The gate's tunables from include/config/quality.yaml, validated whole.

What is checked is in the GX suites; this module only holds the values the checks compare to
(statuses, rejection reasons, tolerance, incident threshold and channel). It never reads the
store or the CRM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leadsla.errors import LeadSlaError
from leadsla.paths import config_dir


class QualityConfigError(LeadSlaError):
    """quality.yaml is missing or holds a value it must not."""


@dataclass(frozen=True)
class QualityRules:
    statuses: tuple[str, ...]
    rejection_reasons: tuple[str, ...]
    future_tolerance: dt.timedelta
    incident_error_rate: float
    incident_min_rows: int
    incident_channel: str
    health: dict[str, Any] = field(default_factory=dict)
    status_map: dict[str, str] = field(default_factory=dict)  # CRM Lead status -> engine stage

    @property
    def allowed_statuses(self) -> list[str]:
        """The engine's statuses plus every CRM value the mapping knows (keys and targets)."""
        return sorted(set(self.statuses) | set(self.status_map) | set(self.status_map.values()))

    def with_status_map(self, status_map: dict[str, str] | None) -> QualityRules:
        return QualityRules(
            self.statuses,
            self.rejection_reasons,
            self.future_tolerance,
            self.incident_error_rate,
            self.incident_min_rows,
            self.incident_channel,
            self.health,
            dict(status_map or {}),
        )


def _fail(path: Path, key: str, value: Any, expected: str) -> QualityConfigError:
    return QualityConfigError(f"{path}: {key}: got {value!r}, expected {expected}")


def load(path: str | Path | None = None, status_map: dict[str, str] | None = None) -> QualityRules:
    """Read quality.yaml (default include/config/quality.yaml) and, optionally, the CRM status map.

    Raises:
        QualityConfigError: the file is missing or a key is wrong (named with its value).
    """
    file = Path(path) if path else config_dir() / "quality.yaml"
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise QualityConfigError(f"{file}: the data-quality configuration file does not exist") from None
    statuses = raw.get("statuses")
    if not isinstance(statuses, list) or not statuses or not all(isinstance(s, str) for s in statuses):
        raise _fail(file, "statuses", statuses, "a list of status names")
    reasons = raw.get("rejection_reasons")
    if (
        not isinstance(reasons, list)
        or not 5 <= len(reasons) <= 7
        or not all(isinstance(r, str) for r in reasons)
    ):
        raise _fail(file, "rejection_reasons", reasons, "a list of 5 to 7 reasons")
    minutes = raw.get("future_tolerance_minutes", 5)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        raise _fail(file, "future_tolerance_minutes", minutes, "a whole number of minutes >= 0")
    incident = raw.get("incident") or {}
    rate = incident.get("error_rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise _fail(file, "incident.error_rate", rate, "a share between 0 and 1")
    min_rows = incident.get("min_rows", 20)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise _fail(file, "incident.min_rows", min_rows, "a whole number above 0")
    channel = incident.get("slack_channel")
    if not isinstance(channel, str) or not channel.strip():
        raise _fail(file, "incident.slack_channel", channel, "a Slack channel id")
    health = raw.get("health") or {}
    if not isinstance(health, dict):
        raise _fail(file, "health", health, "a mapping")
    return QualityRules(
        tuple(statuses),
        tuple(reasons),
        dt.timedelta(minutes=minutes),
        float(rate),
        min_rows,
        channel.strip(),
        health,
        dict(status_map or {}),
    )
