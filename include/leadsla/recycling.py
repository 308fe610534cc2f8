"""The policy's `recycle:` section: when a lead worked without an answer goes back to Marketing.

Declared in the SLA policy and versioned with it; validated on load (all-or-nothing, with the rest
of the policy). What it says:

- the attempts: the touches the named SLA's touch rule counts (by the owner, of the types it names;
  never a mass or sequence e-mail, never an automation user's activity) since the lead entered the
  SLA's watched status (SAL). Lead SLA Monitor stamps their number on the lead (Contact_Attempts__c).
- when a lead has had enough: at least `attempts` attempts, the first of them `business_days`
  business days ago or more (the owner's team calendar), and no response since it entered the
  status: no reply (`replied_field` true), no meeting (an Event on the lead, or a Task of one of
  `meeting_types`). Leaving the status and coming back (a trip to nurture) starts the count afresh.
- what then: `mode: recommend` tells `notify` (the owner and their manager) once, on `channels`,
  with a link to the record; `mode: auto` sets `status` (Recycled) with `reason` (No Response) and
  a re-engagement date `nurture.after_days` later, in one conditional CRM write.
- `nurture.reenter`: a recycled lead re-enters this status (MQL) on its re-engagement date; absent,
  it stays recycled until someone moves it.

Pure: no store, no CRM. The policy checks the references to its other sections (the SLA, roles)
and the lifecycle (statuses, the signed-off reason); `leadsla.configuration` checks the fields
against the CRM mapping.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RECOMMEND, AUTO = "recommend", "auto"
#: The channels a recommendation can go to.
RECYCLE_CHANNELS = ("slack", "email")


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Nurture(_Rule):
    """The nurture cadence a recycled lead goes to: when it is due back, and as what."""

    #: The re-engagement date is this many calendar days after the lead was recycled.
    after_days: int = Field(default=90, ge=1)
    #: The status a recycled lead re-enters on its re-engagement date (a lifecycle open status, e.g.
    #: MQL); None: it stays recycled until Marketing or a rep moves it.
    reenter: str | None = None


class Recycle(_Rule):
    """When a lead worked without an answer is recycled, and how (module docstring)."""

    mode: Literal["recommend", "auto"] = RECOMMEND
    #: The SLA whose start is "entered the status" and whose touch rule says what an attempt is.
    sla: str = "sales_touch"
    attempts: int = Field(default=3, ge=1)
    #: Business days from the first attempt (the owner's team calendar) before a lead is recycled.
    business_days: int = Field(default=5, ge=0)
    #: The lifecycle status a recycled lead gets, and the signed-off reason it carries.
    status: str = "Recycled"
    reason: str = "No Response"
    #: A Lead checkbox a reply sets (an e-mail tool, the rep); None: replies are not tracked.
    replied_field: str | None = "Lead_Replied__c"
    #: Task types that are a meeting with the lead (any Event on the lead is one).
    meeting_types: list[str] = Field(default_factory=lambda: ["Meeting"])
    notify: list[str] = Field(default_factory=lambda: ["owner", "owner_manager"], min_length=1)
    channels: list[Literal["slack", "email"]] = Field(
        default_factory=lambda: ["slack", "email"], min_length=1
    )
    nurture: Nurture = Field(default_factory=Nurture)

    @property
    def automatic(self) -> bool:
        return self.mode == AUTO

    def describe(self) -> str:
        """One line for people: the rule in words."""
        then = (
            f"set {self.status} ({self.reason}), back in {self.nurture.after_days} days"
            + (f" as {self.nurture.reenter}" if self.nurture.reenter else "")
            if self.automatic
            else f"recommend {self.status} ({self.reason}) to {', '.join(self.notify)}"
        )
        return (
            f"{self.attempts} attempts ({self.sla}'s touch rule) over {self.business_days} business days "
            f"without a response: {then}"
        )
