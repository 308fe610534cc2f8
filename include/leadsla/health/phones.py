"""People a breach would text who have no usable mobile number in the CRM.

An SLA whose breach lists ``sms`` texts its `notify` roles; the owner of an open clock and their
manager (``owner``, ``owner_manager``) and a team manager named by CRM user id are CRM users, and
their number is the User's MobilePhone, in international form (`leadsla.decisions.phones`). A
person without one is still told (the text goes by e-mail or Slack, at once), but must be listed so
someone adds the number. Names and user ids only: no number is ever written here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.phones import normalise_phone
from leadsla.health.finding import Finding
from leadsla.policy import CRM_MANAGER, Policy
from leadsla.store import schema

#: Clock states whose breach may still text someone.
OPEN_STATES = ("running", "paused", "breached")
#: Names shown in the finding's summary (the rest are counted).
SHOWN = 10


def texted_user_ids(conn: sa.Connection, policy: Policy) -> set[str]:
    """The CRM users a breach may text now: by role, for the SLAs whose breach lists sms."""
    if policy.sms is None:
        return set()
    c, u = schema.clocks, schema.users
    wanted: set[str] = set()
    for sla in policy.slas:
        breach = sla.breach.as_checkpoint()
        if "sms" not in breach.channels:
            continue
        roles = set(breach.notify)
        owners = set(
            conn.execute(
                sa.select(c.c.owner_id)
                .distinct()
                .where(c.c.sla_id == sla.id, c.c.state.in_(OPEN_STATES), c.c.owner_id.is_not(None))
            ).scalars()
        )
        if "owner" in roles:
            wanted |= owners
        if "owner_manager" in roles and owners:
            wanted |= {
                m
                for m in conn.execute(
                    sa.select(u.c.manager_id).where(u.c.user_id.in_(sorted(owners)))
                ).scalars()
                if m
            }
        if "team_manager" in roles:
            team = policy.teams.get(sla.team) if sla.team else None
            if team is not None and team.manager and team.manager != CRM_MANAGER:
                wanted.add(team.manager)
    return wanted


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    wanted = texted_user_ids(conn, policy)
    if not wanted:
        return []
    u = schema.users
    missing = sorted(
        (row.name or row.user_id, row.user_id)
        for row in conn.execute(
            sa.select(u.c.user_id, u.c.name, u.c.fields).where(
                u.c.user_id.in_(sorted(wanted)), u.c.is_active.is_(True)
            )
        )
        if normalise_phone((row.fields or {}).get("MobilePhone")) is None
    )
    if not missing:
        return []
    names = ", ".join(f"{name} ({user_id})" for name, user_id in missing[:SHOWN])
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    return [
        Finding(
            "no_mobile_phone",
            "warning",
            f"{len(missing)} people a breach would text have no usable mobile number: {names}{more}; "
            "their texts go by e-mail or Slack instead",
            [],
            "Add each one's MobilePhone in the CRM, in international form (+ and country code).",
        )
    ]
