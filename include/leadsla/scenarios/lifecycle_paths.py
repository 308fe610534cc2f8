"""The lifecycle paths a lead takes after the handoff, one scenario each.

SAL then touched in time; SAL then qualified, or rejected, without any task; recycled and back;
paused in nurture and resumed; an MQL accepted in time, and one nobody accepts. Every expectation
is worked out from the policy and the lifecycle the scenario is given (`terms`).

Pure: no Airflow, no store, no network, no wall clock.
"""

from __future__ import annotations

import datetime as dt

from leadsla.scenarios.case import Case, Checks, Run, destinations, handled_by, messages_about, scenario
from leadsla.scenarios.setting import TUESDAY, Setting, breach_decided, hours, lead_id, shown, the_clock
from leadsla.scenarios.terms import (
    NotApplicable,
    ended_state,
    funnel_status,
    in_hours,
    lead_lifecycle,
    local_date,
    pause_status,
    real_touch,
    told,
    touch_rule,
)

_MINUTE = dt.timedelta(minutes=1)


@scenario("touched_in_time", "A lead the owner calls in time is met, and nobody is chased")
def touched_in_time(policy) -> Case:
    s = Setting.of(policy)
    kind, kind_type, subtype = real_touch(touch_rule(s.sla))
    fields = s.fields()
    start, t = s.start(fields)
    story = s.story()
    lead = s.watched(story, lead_id("TOUCH"), start, fields)
    touched = t.deadline(start, t.target // 4)
    story.activity(lead, touched, owner=s.cast.rep, kind=kind, type=kind_type, subtype=subtype)
    now = s.breach_time(t, start) + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        check.equal("state", c.state, "met")
        check.equal("stopped at", c.stopped_at, touched, shown(t))
        check.equal("elapsed", c.elapsed_seconds, t.target // 4, hours)
        check.equal("breached at", c.breached_at, None, shown(t))
        sent = messages_about(run.decide(), lead.record_id, s.sla.id)
        check.equal("messages after the touch", len(sent), 0)
        check.note(
            f"{t.describe()}; the rep's {kind_type} at {shown(t)(touched)} met it after "
            f"{hours(t.target // 4)}; nothing sent afterwards"
        )

    return Case(story.frames(), (now,), expect)


def _worked_status(policy, watched: str) -> str:
    lc = lead_lifecycle(policy)
    for status in lc.statuses:
        if status.worked and status.stage == "closed" and status.name != watched:
            return status.name
    raise NotApplicable("the lifecycle declares no closed Lead status that counts as worked (e.g. SQL)")


def _ended_without_a_task(s: Setting, tag: str, statuses: list[str], reasons: dict | None = None) -> Case:
    """Leads that leave the watched status for `statuses` a quarter of the way into their target,
    with no activity at all: each clock ends there, handed on (or met where a stop rule names the
    status), and never breaches."""
    fields = s.fields()
    start, t = s.start(fields)
    story = s.story()
    left_at = t.deadline(start, t.target // 4)
    leads = []
    for n, status in enumerate(statuses, start=1):
        lead = s.watched(story, lead_id(tag, n), start, fields, extra=dict(reasons or {}))
        story.status(lead, left_at, status)
        leads.append((lead, status))
    now = s.breach_time(t, start) + dt.timedelta(hours=1)

    def expect(run: Run, check: Checks) -> None:
        plan = run.decide()
        for lead, status in leads:
            c = the_clock(run, check, lead, s.sla)
            if c is None:
                continue
            state = ended_state(s.sla, s.field, status)
            check.equal(f"{status}: state", c.state, state)
            check.equal(f"{status}: stopped at", c.stopped_at, left_at, shown(t))
            check.equal(f"{status}: breached at", c.breached_at, None, shown(t))
            cps = run.checkpoints(lead.record_id, s.sla.id)
            check.that(
                f"{status}: never reaches its breach", "breach" not in set(cps["checkpoint"]), "breach"
            )
            sent = messages_about(plan, lead.record_id, s.sla.id)
            check.equal(f"{status}: messages after it left {s.status}", len(sent), 0)
            check.note(f"{status} at {shown(t)(left_at)}: {state}, never breached")
        check.note(t.describe())

    return Case(story.frames(), (now,), expect)


@scenario("qualified_without_a_task", "A lead qualified on a call nobody logged is never breached")
def qualified_without_a_task(policy) -> Case:
    s = Setting.of(policy)
    return _ended_without_a_task(s, "QUALIF", [_worked_status(policy, s.status)])


@scenario(
    "rejected_without_a_task", "A lead recycled or disqualified without a task is handed on, never breached"
)
def rejected_without_a_task(policy) -> Case:
    s = Setting.of(policy)
    lc = lead_lifecycle(policy)
    rejected = [
        st.name
        for st in lc.statuses
        if st.stage == "closed" and (st.reason_required or st.funnel == "rejected")
    ]
    if not rejected:
        raise NotApplicable("the lifecycle declares no rejection status (e.g. Recycled, Disqualified)")
    reasons = {lc.reason_field: lc.rejection_reasons[0]} if lc.reason_field and lc.rejection_reasons else {}
    return _ended_without_a_task(s, "REJECT", rejected, reasons)


@scenario("recycled_and_back", "A recycled lead that returns to SAL gets a fresh clock and its own alerts")
def recycled_and_back(policy) -> Case:
    s = Setting.of(policy)
    lc = lead_lifecycle(policy)
    rejected = next((st.name for st in lc.statuses if st.stage == "closed" and st.funnel == "rejected"), None)
    if rejected is None:
        raise NotApplicable("the lifecycle declares no rejection status a lead can be recycled through")
    fields = s.fields()
    first_start, t1 = s.start(fields)
    first_cp, first_offset = t1.checkpoints()[0]
    first_cp_at = t1.deadline(first_start, first_offset)
    recycled_at = t1.deadline(first_start, first_offset + 15 * 60)
    back_mql = in_hours(t1.calendar, TUESDAY + dt.timedelta(days=2), "10:00")
    again = back_mql + dt.timedelta(minutes=30)
    t2 = s.terms(fields, again)
    second_cp, second_offset = t2.checkpoints()[0]
    second_cp_at = t2.deadline(again, second_offset)
    story = s.story()
    lead = s.watched(story, lead_id("RECYCL"), first_start, fields)
    story.status(lead, recycled_at, rejected)
    story.status(lead, back_mql, s.before)
    story.status(lead, again, s.status)
    first_look, second_look = first_cp_at + _MINUTE, second_cp_at + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        show = shown(t1)
        # Before it is recycled: one clock, its first checkpoint told.
        first = the_clock(run, check, lead, s.sla, first_look)
        if first is None:
            return
        check.equal("first clock started", first.clock_start, first_start, show)
        plan1 = run.decide(first_look)
        sent1 = messages_about(plan1, lead.record_id, s.sla.id, first_cp.id)
        owner = s.cast.rep
        check.same(
            f"first clock's {first_cp.id} told",
            destinations(sent1),
            told(policy, first_cp, owner, s.cast.people, s.sla, s.cast.team_key),
        )
        # Back in SAL: the first clock ended when it was recycled; a second one runs.
        clocks = run.clocks(lead.record_id, s.sla.id, second_look)
        if not check.equal("clocks after the return", len(clocks), 2):
            return
        late = first_offset + 15 * 60 > t1.target
        check.equal("first clock", clocks.loc[0, "state"], ended_state(s.sla, s.field, rejected, late=late))
        check.equal("first clock stopped at", clocks.loc[0, "stopped_at"], recycled_at, show)
        check.equal("second clock started", clocks.loc[1, "clock_start"], again, show)
        check.equal("second clock", clocks.loc[1, "state"], "running")
        plan2 = run.decide(second_look, handled_by(plan1))
        sent2 = messages_about(plan2, lead.record_id, s.sla.id, second_cp.id)
        check.same(
            f"second clock's {second_cp.id} told",
            destinations(sent2),
            told(policy, second_cp, owner, s.cast.people, s.sla, s.cast.team_key),
        )
        check.that(
            "the second clock's alerts are its own",
            all(m.clock_start == again for m in sent2)
            and not {m.key for m in sent1} & {m.key for m in sent2},
            "alerts keyed on the first clock",
        )
        check.note(
            f"{rejected} at {show(recycled_at)} ended the first clock; back in {s.status} at {show(again)}: "
            f"a second clock, {len(sent1)} + {len(sent2)} alerts with distinct keys"
        )

    return Case(story.frames(), (first_look, second_look), expect)


@scenario(
    "paused_in_nurture", "A lead put in Nurture stops the clock, which resumes where it left off in SAL"
)
def paused_in_nurture(policy) -> Case:
    s = Setting.of(policy)
    pause = pause_status(policy, s.sla)
    fields = s.fields()
    start, t = s.start(fields)
    quarter = t.target // 4
    paused_at = t.deadline(start, quarter)
    during = paused_at + dt.timedelta(days=1)
    back_at = in_hours(t.calendar, local_date(t.calendar, paused_at) + dt.timedelta(days=2), "10:00")
    now = t.deadline(back_at, quarter)
    story = s.story()
    lead = s.watched(story, lead_id("NURTUR"), start, fields)
    story.status(lead, paused_at, pause)
    story.status(lead, back_at, s.status)

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla, during)
        if c is None:
            return
        check.equal(f"in {pause}: state", c.state, "paused")
        check.equal(f"in {pause}: elapsed", c.elapsed_seconds, quarter, hours)
        c = the_clock(run, check, lead, s.sla, now)
        if c is None:
            return
        check.equal("back in SAL: the same clock", c.clock_start, start, show)
        check.equal("back in SAL: state", c.state, "running")
        check.equal("back in SAL: elapsed", c.elapsed_seconds, 2 * quarter, hours)
        check.equal("back in SAL: due", c.deadline, t.deadline(back_at, t.target - quarter), show)
        check.note(
            f"{t.describe()}; {pause} from {show(paused_at)} to {show(back_at)} counted nothing: "
            f"{hours(2 * quarter)} elapsed, due {show(c.deadline)}"
        )

    return Case(story.frames(), (during, now), expect)


@scenario("mql_accepted_in_time", "An MQL accepted to SAL within its SLA is met")
def mql_accepted_in_time(policy) -> Case:
    s = Setting.of(policy, "MQL")
    accepted = funnel_status(policy, "SAL")
    fields = s.fields()
    start, t = s.start(fields)
    story = s.story()
    lead = s.watched(story, lead_id("MQLOK"), start, fields)
    accepted_at = t.deadline(start, t.target // 4)
    story.status(lead, accepted_at, accepted)
    now = s.breach_time(t, start) + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        state = ended_state(s.sla, s.field, accepted)
        check.equal("state", c.state, state)
        check.equal("stopped at", c.stopped_at, accepted_at, shown(t))
        check.equal("elapsed", c.elapsed_seconds, t.target // 4, hours)
        check.equal("breached at", c.breached_at, None, shown(t))
        check.note(f"{s.sla.id}: {t.describe()}; {accepted} at {shown(t)(accepted_at)}: {state}")

    return Case(story.frames(), (now,), expect)


@scenario("mql_stuck", "An MQL nobody accepts or rejects breaches, and the right people are told")
def mql_stuck(policy) -> Case:
    s = Setting.of(policy, "MQL")
    fields = s.fields()
    start, t = s.start(fields)
    story = s.story()
    lead = s.watched(story, lead_id("MQLSTK"), start, fields)
    now = s.breach_time(t, start) + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        due = t.deadline(start)
        check.equal("state", c.state, "breached")
        check.equal("due", c.deadline, due, show)
        check.equal("breached at", c.breached_at, due, show)
        told_note = breach_decided(check, s, run.decide(), lead, t, now)
        check.note(f"{s.sla.id}: {t.describe()}; due {show(due)}; {told_note}")

    return Case(story.frames(), (now,), expect)


SCENARIOS = (
    touched_in_time,
    qualified_without_a_task,
    rejected_without_a_task,
    recycled_and_back,
    paused_in_nurture,
    mql_accepted_in_time,
    mql_stuck,
)
