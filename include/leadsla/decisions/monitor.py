"""The monitor's decision step: an evaluation, the policy and the recipients' state -> a `Plan`.

The steps, in order: the reached checkpoints' messages (`checkpoints`, who a breach tells being
the SLA's escalation ladder, `ladder`), the capacity alerts that replace leadership's breach
messages of a systemic team (`capacity`), leadership's daily breach digests due at their morning
hour (`ladder.decide_breach_digests`), the digests that replace a
person's warnings beyond the rate limit (`digest`), and the breach actions (`breach`). Each step
sees what the earlier ones decided, as the outbox will hold it. Pure: the same inputs give the
same plan, keys included; `leadsla.notify.outbox.apply` writes it.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from leadsla.decisions.breach import decide_breach_actions
from leadsla.decisions.capacity import decide_capacity
from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.context import ContextFields
from leadsla.decisions.digest import decide_digests
from leadsla.decisions.ladder import decide_breach_digests
from leadsla.decisions.plan import Plan, Queued, QueueState, queued_message, queued_notice
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation


def decide(
    evaluation: Evaluation,
    records: pd.DataFrame,
    directory: Directory,
    state: QueueState,
    *,
    now: dt.datetime,
    instance_url: str,
    context: ContextFields | None = None,
) -> Plan:
    """Everything this evaluation calls for (module docstring).

    Args:
        evaluation: the clocks and checkpoints at `now` (`leadsla.engine.evaluate`).
        records: the store's records (name, company, lead source for the messages).
        directory: users, queues and the policy, to resolve roles.
        state: the outbox's pending and recently delivered rows and the handled checkpoints.
        now: the run's time; nothing here reads the wall clock.
        instance_url: the CRM's base URL for record links.
        context: where each alert's triage context comes from (score and campaign fields, the
            expected deal value; `decisions.context`).
    """
    policy = directory.policy
    found = decide_checkpoints(
        evaluation.clocks,
        evaluation.checkpoints,
        records,
        directory,
        now=now,
        handled=state.handled,
        instance_url=instance_url,
        context=context,
    )
    seq = state.next_seq
    queued: list[Queued] = list(state.rows)
    for message in found.messages:
        queued.append(queued_message(message, now, seq))
        seq += 1
    notices, roll_ups = decide_capacity(evaluation.clocks, policy, now, queued, state.handled)
    notices += decide_breach_digests(evaluation.clocks, records, directory, now, state.handled, context)
    for notice in notices:
        rows = queued_notice(notice, now, seq)
        queued += rows
        seq += len(rows)
    rolled = {r.row.key for r in roll_ups}
    digests = decide_digests(
        [q for q in queued if q.key not in rolled],
        now,
        max_alerts=policy.rate_limit.max_alerts,
        window_minutes=policy.rate_limit.window_minutes,
        counted=state.counted,
    )
    return Plan(
        due=found.due,
        superseded=found.superseded,
        messages=found.messages,
        notices=notices,
        roll_ups=roll_ups,
        digests=digests,
        breach_actions=decide_breach_actions(found.breaches, directory),
        unresolved=found.unresolved,
        no_phone=found.no_phone,
    )
