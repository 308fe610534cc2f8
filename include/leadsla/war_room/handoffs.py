"""The handoffs the War Room shows: every SLA of the policy (`slas:`), each with the team that owns it,
the object it watches and how its handed-on clocks count - what the handoff selector lists, the
SLA matrix has a row for and every panel reads for the selected one.

A clock's team is its owner's (the engine writes the owner's CRM team on the clock). A clock whose
owner has no team - a queue (a CS kickoff reassigned to the Customer Success queue), an unknown or
teamless user - counts for the SLA's own team (`slas[].team`), as the alerts' `team_manager` falls
back to it (`decisions.recipients.Directory.team_manager`): so the AE and CS handoffs' teams and
managers resolve like the SDR teams', and a queue-held clock is not lost from every team's view.
Pure: reads the policy only.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadsla.policy import Policy

#: The team a clock counts for when neither its owner nor its SLA names one.
NO_TEAM = "(no team)"


@dataclass(frozen=True)
class Handoff:
    """One SLA as the War Room shows it.

    Attributes:
        team: the policy key of the team that owns the handoff (None: the SLA names none).
        team_label: how the page names that team: the CRM's spelling (its first `crm_names`),
            else the key - clocks carry the CRM's spelling of their owner's team.
        team_names: every spelling of that team (key and `crm_names`), for the team scope.
        touch: whether a touch meets the clock (the "first touch" columns), else a field rule.
    """

    id: str
    name: str
    handoff: str
    object_type: str
    team: str | None
    team_label: str | None
    team_names: frozenset[str]
    left_counts_as: str
    enabled: bool
    touch: bool

    @property
    def leads(self) -> bool:
        """Whether the handoff watches Leads (the MQL funnel and rejection reasons apply)."""
        return self.object_type == "Lead"

    def describe(self) -> str:
        """The selector's words: name, owner team, object."""
        team = self.team_label or "no team"
        return f"{self.name} ({team}, {self.object_type}{'' if self.enabled else ', disabled'})"

    def counts_for(self, names: frozenset[str] | set[str]) -> bool:
        """Whether a clock whose owner has no team is one of `names`' (the SLA's team is)."""
        return bool(self.team_names & set(names))


def handoffs(policy: Policy, left_counts_as: str | None = None) -> dict[str, Handoff]:
    """Every SLA of the policy, in the policy's order, by id; `left_counts_as` (when given) overrides
    each SLA's own (the app's test and bench override)."""
    out: dict[str, Handoff] = {}
    for sla in policy.slas:
        team = policy.teams.get(sla.team) if sla.team else None
        names = frozenset({sla.team, *team.crm_names}) if team is not None and sla.team else frozenset()
        out[sla.id] = Handoff(
            id=sla.id,
            name=sla.name,
            handoff=sla.handoff,
            object_type=sla.object,
            team=sla.team,
            team_label=(team.crm_names[0] if team is not None and team.crm_names else sla.team),
            team_names=names,
            left_counts_as=left_counts_as or sla.left_counts_as,
            enabled=sla.enabled,
            touch=any(rule.touch is not None or rule.activity_by for rule in sla.stop),
        )
    return out


def watched_fields(policy: Policy, object_type: str) -> tuple[str, ...]:
    """The fields a record's timeline lists changes of: its status (Lead Status, Opportunity
    StageName), its owner, and every field an SLA on its object starts, stops or pauses on."""
    fields = ["Status", "StageName", "OwnerId", "Owner"]
    for sla in policy.slas:
        if sla.object != object_type:
            continue
        for field in [sla.start.field, *(r.field for r in sla.stop), *(r.field for r in sla.pause)]:
            if field and field not in fields:
                fields.append(field)
    return tuple(fields)
