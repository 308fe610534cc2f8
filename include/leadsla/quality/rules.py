"""The gate's tunables from include/config/quality.yaml, validated whole, with the lifecycle's values.

What is checked is in the GX suites; this module only holds the values the checks compare to:
the Lead statuses, which of them require a rejection reason and the signed-off reasons (all from
the lifecycle, include/config/lifecycle.yaml: never repeated here), the timestamp tolerance and
the incident threshold and channel. It never reads the store or the CRM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from leadsla.errors import LeadSlaError
from leadsla.lifecycle import Lifecycle, load_lifecycle
from leadsla.paths import config_dir
from leadsla.yaml_file import read_yaml_file


class QualityConfigError(LeadSlaError):
    """quality.yaml is missing or holds a value it must not."""


@dataclass(frozen=True)
class QualityRules:
    statuses: tuple[str, ...]  # the Lead lifecycle's statuses
    rejection_reasons: tuple[str, ...]  # the lifecycle's signed-off reasons
    future_tolerance: dt.timedelta
    incident_error_rate: float
    incident_min_rows: int
    incident_channel: str
    health: dict[str, Any] = field(default_factory=dict)
    #: Data engineering's e-mail: told of a broken Slack (permanent delivery failures, failed DAG runs).
    incident_email: str | None = None
    status_map: dict[str, str] = field(default_factory=dict)  # CRM Lead status -> lifecycle status
    reason_required: tuple[str, ...] = ()  # lifecycle statuses that require a rejection reason

    @property
    def allowed_statuses(self) -> list[str]:
        """The engine's statuses plus every CRM value the mapping knows (keys and targets)."""
        return sorted(set(self.statuses) | set(self.status_map) | set(self.status_map.values()))

    def with_status_map(self, status_map: dict[str, str] | None) -> QualityRules:
        return replace(self, status_map=dict(status_map or {}))


def _fail(path: Path, key: str, value: Any, expected: str) -> QualityConfigError:
    return QualityConfigError(f"{path}: {key}: got {value!r}, expected {expected}")


def _incident_contacts(file: Path, incident: Any) -> tuple[str, str | None]:
    """Data engineering's Slack channel and e-mail from the ``incident`` section."""
    if not isinstance(incident, dict):
        raise _fail(file, "incident", incident, "a mapping")
    channel = incident.get("slack_channel")
    if not isinstance(channel, str) or not channel.strip():
        raise _fail(file, "incident.slack_channel", channel, "a Slack channel id")
    email = incident.get("email")
    if email is not None and (not isinstance(email, str) or email.count("@") != 1 or " " in email.strip()):
        raise _fail(file, "incident.email", email, "one e-mail address")
    return channel.strip(), email.strip() if email else None


def data_engineering(path: str | Path | None = None) -> tuple[str, str | None]:
    """(Slack channel, e-mail) of data engineering, from quality.yaml's ``incident`` section only.

    For the DAGs' failure alerts, which must not depend on the rest of the configuration loading.

    Raises:
        QualityConfigError: the file is missing or unreadable, or either contact is malformed.
    """
    file = Path(path) if path else config_dir() / "quality.yaml"
    raw = read_yaml_file(file, QualityConfigError, "the data-quality configuration") or {}
    if not isinstance(raw, dict):
        raise _fail(file, "(top level)", type(raw).__name__, "a mapping")
    return _incident_contacts(file, raw.get("incident") or {})


def load(
    path: str | Path | None = None,
    status_map: dict[str, str] | None = None,
    lifecycle: Lifecycle | None = None,
) -> QualityRules:
    """Read quality.yaml (default include/config/quality.yaml), the lifecycle (default: the active
    one) and, optionally, the CRM status map.

    Raises:
        QualityConfigError: the file is missing or a key is wrong (named with its value).
        LifecycleError: the lifecycle file is invalid.
    """
    file = Path(path) if path else config_dir() / "quality.yaml"
    raw = read_yaml_file(file, QualityConfigError, "the data-quality configuration") or {}
    if not isinstance(raw, dict):
        raise _fail(file, "(top level)", raw, "a mapping of settings")
    for moved in ("statuses", "rejection_reasons"):
        if moved in raw:
            raise _fail(
                file, moved, raw[moved], "nothing: statuses and reasons are declared once, in lifecycle.yaml"
            )
    lead = (lifecycle or load_lifecycle()).lead()
    minutes = raw.get("future_tolerance_minutes", 5)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= 7 * 24 * 60:
        raise _fail(
            file, "future_tolerance_minutes", minutes, "a whole number of minutes from 0 to 10080 (a week)"
        )
    incident = raw.get("incident") or {}
    if not isinstance(incident, dict):
        raise _fail(file, "incident", incident, "a mapping with error_rate, min_rows and slack_channel")
    rate = incident.get("error_rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
        raise _fail(file, "incident.error_rate", rate, "a share between 0 and 1")
    min_rows = incident.get("min_rows", 20)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise _fail(file, "incident.min_rows", min_rows, "a whole number above 0")
    channel, email = _incident_contacts(file, incident)
    health = raw.get("health") or {}
    if not isinstance(health, dict):
        raise _fail(file, "health", health, "a mapping")
    return QualityRules(
        statuses=tuple(lead.names),
        rejection_reasons=lead.rejection_reasons,
        future_tolerance=dt.timedelta(minutes=minutes),
        incident_error_rate=float(rate),
        incident_min_rows=min_rows,
        incident_channel=channel,
        incident_email=email,
        health=health,
        status_map=dict(status_map or {}),
        reason_required=tuple(lead.requiring_reason),
    )
