"""Report settings (include/config/reports.yaml): leadership's timezone, recipients, the
revenue assumptions and the red-flag thresholds. Validated all-or-nothing on load.

Never holds secrets (SMTP credentials live in the `smtp_default` connection).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadsla.calendar import is_timezone
from leadsla.errors import LeadSlaError
from leadsla.paths import config_dir
from leadsla.reports.schedule import DEFAULT_SCHEDULES
from leadsla.yaml_file import read_yaml_file, shown_key


class ReportConfigError(LeadSlaError):
    """reports.yaml is missing or invalid."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Revenue(_Model):
    """How delay is turned into money: an estimate, printed with its assumptions."""

    deal_value: float = Field(25000.0, gt=0)
    base_conversion: float = Field(0.10, gt=0, le=1)  # MQL -> closed-won when touched immediately
    # Share of `base_conversion` kept when the first touch took at most N business hours.
    decay: dict[float, float] = Field(
        default_factory=lambda: {0.0833: 1.0, 1: 0.8, 4: 0.6, 24: 0.4, 1e9: 0.25}
    )


class Thresholds(_Model):
    team_compliance: float = 0.80
    response_vs_target: float = 2.0
    rejection_reason_share: float = 0.40
    no_activity_share: float = 0.10
    war_room_leaders: float = 0.50
    compliance_two_months: float = 0.70
    mql_to_sql_drop_points: float = 5.0
    leakage_share: float = 0.15
    rejection_rate_two_months: float = 0.50
    leakage_days: int = 7
    loosen_breach_rate: float = 0.20
    tighten_breach_rate: float = 0.05


class CherryPicking(_Model):
    """The monthly review's cherry-picking audit (`leadsla.reports.cherry_picking`)."""

    # A person moving a lead from the rep routing gave it to another within this many hours.
    reassignment_hours: float = Field(24.0, gt=0)
    # A rep's share of their team's hot or accepted leads this far from their weighted share...
    share_deviation: float = Field(0.15, gt=0, lt=1)
    # ...in a team with at least this many such leads in the month (fewer say nothing).
    share_min_leads: int = Field(10, ge=1)


class Conversion(_Model):
    """What "converted" means for one handoff in the quarterly what-if: the record reached one of
    `in` in `field` by the quarter's end (a Lead's `Status` is read as its funnel stages; an
    Opportunity's fields from OpportunityFieldHistory)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    label: str = Field(min_length=1)  # how the report names it: "reached SQL", "won", "onboarded"
    field: str = Field(min_length=1)
    in_: list[str] = Field(alias="in", min_length=1)


#: The shipped handoffs' conversions (reports.yaml `conversions` replaces them): the stage each
#: handoff leads to next. CS onboarding has none in the CRM data (nothing is synced after it).
DEFAULT_CONVERSIONS = {
    "sales_touch": {"label": "reached SQL", "field": "Status", "in": ["SQL"]},
    "mql_acceptance": {"label": "reached SQL", "field": "Status", "in": ["SQL"]},
    "demo_to_proposal": {"label": "won", "field": "StageName", "in": ["Closed Won"]},
    "cs_kickoff": {"label": "onboarded", "field": "Onboarding_Complete__c", "in": ["true"]},
}


class Recipients(_Model):
    weekly: list[str] = Field(min_length=1)
    feedback: list[str] = Field(min_length=1)
    monthly: list[str] = Field(min_length=1)
    quarterly: list[str] = Field(min_length=1)


class Schedules(_Model):
    """Cron expressions in leadership's timezone; read at DAG parse time by leadsla.reports.schedule."""

    weekly: str = DEFAULT_SCHEDULES["weekly"]
    feedback: str = DEFAULT_SCHEDULES["feedback"]
    monthly: str = DEFAULT_SCHEDULES["monthly"]
    quarterly: str = DEFAULT_SCHEDULES["quarterly"]


class ReportConfig(_Model):
    leadership_timezone: str = "America/New_York"

    @field_validator("leadership_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError(f"{value!r} is not an IANA timezone name (e.g. America/New_York)")
        return value

    sla_id: str = "sales_touch"
    schedules: Schedules = Schedules()
    recipients: Recipients
    leader_roles: list[str] = Field(default_factory=lambda: ["manager", "vp", "director", "head"])
    baseline_month: str | None = None  # "YYYY-MM"; None = the first month with MQLs
    what_if_targets_hours: list[float] = Field(default_factory=lambda: [0.5, 1, 2, 4, 8, 24])
    campaign_field: str = "Campaign__c"
    revenue: Revenue = Revenue()
    thresholds: Thresholds = Thresholds()
    cherry_picking: CherryPicking = CherryPicking()
    #: SLA id -> what conversion means for that handoff in the quarterly what-if (`Conversion`).
    conversions: dict[str, Conversion] = Field(
        default_factory=lambda: {k: Conversion.model_validate(v) for k, v in DEFAULT_CONVERSIONS.items()}
    )


def load_report_config(path: str | Path | None = None) -> ReportConfig:
    """Read and validate reports.yaml.

    Raises:
        ReportConfigError: unreadable file or invalid content (names the key and the problem).
    """
    path = Path(path) if path else config_dir() / "reports.yaml"
    data = read_yaml_file(path, ReportConfigError, "the report settings")
    try:
        return ReportConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(shown_key(p) for p in first["loc"]) or "(top level)"
        raise ReportConfigError(f"{path}: {where}: {first['msg']}") from None
