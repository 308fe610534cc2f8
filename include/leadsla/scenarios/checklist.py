"""Seed 002's go-live QA checklist, one scenario per line.

An owner change across timezones; a holiday; Friday evening; the demo, webinar and out-of-hours
inbound tiers; an automated e-mail, a colleague's touch and an open to-do, none of which stop the
clock; and a breach's checkpoints with who is told. Every expectation is worked out from the
policy the scenario is given (`terms`); the checklist's own rules (what never counts as a touch)
are fixed, so a policy that contradicts them fails.

Pure: no Airflow, no store, no network, no wall clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from leadsla.policy import AUTOMATED_SUBTYPES, REAL_TIME_CALENDAR
from leadsla.scenarios.case import Case, Checks, Run, destinations, handled_by, messages_about, scenario
from leadsla.scenarios.setting import (
    FRIDAY,
    TUESDAY,
    Setting,
    breach_decided,
    hours,
    lead_id,
    shown,
    the_clock,
)
from leadsla.scenarios.terms import (
    NotApplicable,
    find_tier,
    holiday,
    is_open,
    local,
    local_date,
    real_touch,
    tier_for,
    told,
    touch_rule,
)

_MINUTE = dt.timedelta(minutes=1)


@scenario(
    "owner_changed_across_timezones",
    "A lead handed to a rep in another timezone counts on each owner's hours",
)
def owner_changed_across_timezones(policy) -> Case:
    s = Setting.of(policy)
    far = s.cast.far_rep
    if far is None:
        raise NotApplicable("every team's calendar is in the same timezone")
    fields = s.fields()
    tier = tier_for(s.sla, fields)
    if tier.target.time == "calendar" or tier.target.calendar != "owner":
        where = REAL_TIME_CALENDAR if tier.target.time == "calendar" else tier.target.calendar
        raise NotApplicable(f"tier {tier.id} counts on one calendar ({where}) whoever owns the lead")
    start, t = s.start(fields)
    far_cal = policy.calendar(policy.team_calendar(s.cast.far_team_key))
    quarter = t.target // 4
    handed_at = t.deadline(start, quarter)
    now = far_cal.deadline(handed_at, quarter)
    story = s.story()
    lead = s.watched(story, lead_id("TZMOVE"), start, fields)
    story.owner(lead, handed_at, far, by=s.cast.manager)

    def expect(run: Run, check: Checks) -> None:
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return

        def on_far(at) -> str:  # both owners' local times
            return shown(t)(at) + f" ({far_cal.local(int(at.timestamp())):%a %H:%M %Z})"

        check.equal("owner", c.owner_id, far.user_id)
        check.equal("team", c.team, far.team)
        check.equal("calendar", c.calendar, far_cal.name)
        check.equal("state", c.state, "running")
        check.equal("elapsed", c.elapsed_seconds, 2 * quarter, hours)
        check.equal("due", c.deadline, far_cal.deadline(handed_at, t.target - quarter), on_far)
        check.note(
            f"{hours(quarter)} on {t.calendar_name} ({s.cast.rep.name}), then {far.name} on "
            f"{far_cal.name} from {on_far(handed_at)}: due {on_far(c.deadline)}"
        )

    return Case(story.frames(), (now,), expect)


@scenario("holiday", "A public holiday in the owner's calendar does not count against the rep")
def public_holiday(policy) -> Case:
    s = Setting.of(policy)
    fields = s.fields()
    cal = s.calendar(fields)
    if cal.name == REAL_TIME_CALENDAR:
        raise NotApplicable(f"tier {tier_for(s.sla, fields).id} counts real time: holidays do not apply")
    day, name = holiday(cal, TUESDAY - dt.timedelta(days=1))
    before = day - dt.timedelta(days=1)
    while not cal.hours[before.weekday()] or cal.holiday_name(before):
        before -= dt.timedelta(days=1)
    midnight = local(cal, before, "00:00")
    day_open = int(cal.elapsed(midnight, local(cal, before + dt.timedelta(days=1), "00:00")).total_seconds())
    # Half the target before the holiday, so the other half must wait until after it.
    start = cal.deadline(midnight, max(day_open - tier_for(s.sla, fields).target.seconds // 2, 0))
    t = s.terms(fields, start)
    on_holiday = local(cal, day, "12:00")
    story = s.story()
    lead = s.watched(story, lead_id("HOLIDY"), start, fields)
    without_holidays = replace(cal, country=None, dates=frozenset())

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        due = t.deadline(start)
        check.equal("state", c.state, "running")
        check.equal(
            f"elapsed on {name}",
            c.elapsed_seconds,
            int(cal.elapsed(start, on_holiday).total_seconds()),
            hours,
        )
        check.equal("due", c.deadline, due, show)
        check.that(f"due after {name} ({day})", local_date(cal, c.deadline) > day, show(c.deadline))
        check.note(
            f"{t.describe()}; from {show(start)}, {name} ({day:%a %Y-%m-%d}) skipped: due {show(due)} "
            f"(without the holiday: {show(without_holidays.deadline(start, t.target))})"
        )

    return Case(story.frames(), (on_holiday,), expect)


@scenario(
    "friday_evening", "A lead accepted on Friday evening is due on the next working day, not over the weekend"
)
def friday_evening(policy) -> Case:
    s = Setting.of(policy)
    fields = s.fields()
    cal = s.calendar(fields)
    if cal.name == REAL_TIME_CALENDAR:
        raise NotApplicable(
            f"tier {tier_for(s.sla, fields).id} counts real time: evenings and weekends count"
        )
    friday_hours = cal.hours[FRIDAY.weekday()]
    closing = max((end for _, end in friday_hours), default=0)
    evening = min(max(18 * 3600, closing + 3600), 23 * 3600)
    start = local(cal, FRIDAY, f"{evening // 3600:02d}:{evening % 3600 // 60:02d}")
    if is_open(cal, start):
        raise NotApplicable(f"the calendar {cal.name} is open on Friday evening")
    t = s.terms(fields, start)
    sunday = local(cal, FRIDAY + dt.timedelta(days=2), "12:00")
    story = s.story()
    lead = s.watched(story, lead_id("FRIDAY"), start, fields)
    weekend_closed = not cal.hours[5] and not cal.hours[6]

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        due = t.deadline(start)
        check.equal("state on Sunday", c.state, "running")
        check.equal(
            "elapsed on Sunday", c.elapsed_seconds, int(cal.elapsed(start, sunday).total_seconds()), hours
        )
        check.equal("due", c.deadline, due, show)
        if weekend_closed:
            check.that("not due at the weekend", local_date(cal, c.deadline).weekday() < 5, show(c.deadline))
        check.note(f"{t.describe()}; accepted {show(start)}, nothing counted by Sunday noon, due {show(due)}")

    return Case(story.frames(), (sunday,), expect)


@scenario(
    "demo_request_tier",
    "A demo request gets the demo tier's target, and a critical breach is not held for working hours",
)
def demo_request_tier(policy) -> Case:
    s = Setting.of(policy)
    tier, value = find_tier(s.sla, "lead_type", ["Demo Request"])
    fields = s.fields(tier, lead_type=value)
    start, t = s.start(fields)
    story = s.story()
    lead = s.watched(story, lead_id("DEMO"), start, fields)
    now = s.breach_time(t, start) + _MINUTE
    # The breach is first seen after hours (the monitor was down): a critical tier's breach still
    # goes out then, where any other would wait for the morning.
    after_hours = max(now, local(t.calendar, local_date(t.calendar, now), "21:00"))

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        due = t.deadline(start)
        check.equal("tier", c.tier, t.tier.id)
        check.equal("target", c.target_seconds, t.target, hours)
        check.equal("critical", bool(c.critical), t.tier.critical)
        check.equal("due", c.deadline, due, show)
        check.equal("state", c.state, "breached")
        check.equal("breached at", c.breached_at, due, show)
        told_note = breach_decided(check, s, run.decide(after_hours), lead, t, after_hours)
        critical = f" critical (caught up at {show(after_hours)}, sent at once)," if t.tier.critical else ""
        check.note(
            f"a {value} lead: {t.describe()},{critical} from {show(start)} due {show(due)}; {told_note}"
        )

    return Case(story.frames(), (now, after_hours), expect)


@scenario("webinar_tier", "A webinar lead gets the webinar tier's target, counted over several working days")
def webinar_tier(policy) -> Case:
    s = Setting.of(policy)
    tier, value = find_tier(s.sla, "lead_type", ["Webinar", "Event"])
    fields = s.fields(tier, lead_type=value)
    start, t = s.start(fields)
    now = start + dt.timedelta(days=2, hours=2)
    story = s.story()
    lead = s.watched(story, lead_id("WEBNAR"), start, fields)

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        elapsed = int(t.calendar.elapsed(start, now).total_seconds())
        check.equal("tier", c.tier, t.tier.id)
        check.equal("target", c.target_seconds, t.target, hours)
        check.equal("elapsed two days later", c.elapsed_seconds, elapsed, hours)
        check.equal("state", c.state, "breached" if elapsed > t.target else "running")
        check.equal("due", c.deadline, t.deadline(start), show)
        check.note(
            f"a {value} lead: {t.describe()}; from {show(start)}, {hours(elapsed)} counted by {show(now)}, "
            f"due {show(c.deadline)}"
        )

    return Case(story.frames(), (now,), expect)


@scenario(
    "out_of_hours_inbound",
    "An inbound lead arriving at night counts from the next opening, with the out-of-hours target",
)
def out_of_hours_inbound(policy) -> Case:
    s = Setting.of(policy)
    try:
        tier, source = find_tier(s.sla, "lead_source", ["Inbound", "Web", "Chat"])
        fields = s.fields(tier, lead_source=source)
    except NotApplicable:  # no inbound tier: an inbound lead gets whichever tier it matches
        source = "Inbound"
        fields = s.fields(lead_source=source)
    cal = s.calendar(fields)
    if cal.name == REAL_TIME_CALENDAR:
        raise NotApplicable(f"tier {tier_for(s.sla, fields).id} counts real time: there are no out-of-hours")
    start = next(
        (at for at in (local(cal, TUESDAY, "21:00"), local(cal, TUESDAY, "03:00")) if not is_open(cal, at)),
        None,
    )
    if start is None:
        raise NotApplicable(f"the calendar {cal.name} is open at 21:00 and 03:00")
    t = s.terms(fields, start)
    now = t.deadline(start, t.target // 2)
    story = s.story()
    lead = s.watched(story, lead_id("NIGHT"), start, fields)
    in_hours_target = t.tier.target.seconds

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, lead, s.sla)
        if c is None:
            return
        check.equal("tier", c.tier, t.tier.id)
        check.equal("target", c.target_seconds, t.target, hours)
        check.equal("elapsed", c.elapsed_seconds, t.target // 2, hours)
        check.equal("due", c.deadline, t.deadline(start), show)
        check.equal("state", c.state, "running")
        rule = (
            f"{hours(t.target)} out of hours instead of {hours(in_hours_target)}"
            if t.outside_hours
            else f"{hours(t.target)} (the tier has no separate out-of-hours target)"
        )
        check.note(f"{source} lead at {show(start)}: {t.describe()}; {rule}, due {show(c.deadline)}")

    return Case(story.frames(), (now,), expect)


@scenario(
    "automated_email_does_not_stop",
    "A mass or sequence e-mail does not stop the clock: the lead still breaches and escalates",
)
def automated_email_does_not_stop(policy) -> Case:
    s = Setting.of(policy)
    touch = touch_rule(s.sla)
    kind, kind_type, subtype = real_touch(touch)
    email = "Email" if touch.types is None or "Email" in touch.types else kind_type
    fields = s.fields()
    start, t = s.start(fields)
    quarter = t.target // 4
    story = s.story()
    rep = s.cast.rep
    sequenced = s.watched(story, lead_id("AUTOML", 1), start, fields)
    # The rep's sequence and a mass e-mail go out in the rep's name (the rep owns and created them).
    for n, automated in enumerate(AUTOMATED_SUBTYPES, start=1):
        story.activity(
            sequenced, t.deadline(start, n * quarter // 2), owner=rep, type=email, subtype=automated
        )
    by_integration = None
    if policy.automation_user_ids:
        by_integration = s.watched(story, lead_id("AUTOML", 2), start, fields)
        story.activity(
            by_integration, t.deadline(start, quarter), owner=rep, type=email, subtype="Email",
            created_by=s.cast.automation,
        )  # fmt: skip
    worked = s.watched(story, lead_id("AUTOML", 3), start, fields)  # the control: a real touch
    story.activity(worked, t.deadline(start, quarter), owner=rep, kind=kind, type=kind_type, subtype=subtype)
    now = s.breach_time(t, start) + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        due = t.deadline(start)
        c = the_clock(run, check, sequenced, s.sla)
        if c is None:
            return
        check.equal("after mass and sequence e-mails: state", c.state, "breached")
        check.equal("after mass and sequence e-mails: breached at", c.breached_at, due, show)
        told_note = breach_decided(check, s, run.decide(), sequenced, t, now)
        if by_integration is not None:
            c = the_clock(run, check, by_integration, s.sla)
            if c is not None:
                check.equal("after an automation user's e-mail: state", c.state, "breached")
        c = the_clock(run, check, worked, s.sla)
        if c is not None:
            check.equal(f"after the rep's own {kind_type}: state", c.state, "met")
        automation = (
            f"an e-mail by automation user {s.cast.automation.user_id}"
            if by_integration is not None
            else "the policy lists no automation users"
        )
        check.note(
            f"{' and '.join(AUTOMATED_SUBTYPES)} e-mails in the rep's name left the clock running "
            f"({automation}): breached {show(due)}; {told_note}; the rep's own {kind_type} met the "
            "control lead"
        )

    return Case(story.frames(), (now,), expect)


@scenario("touch_by_someone_else", "Only the owner's own touch stops the clock, not a colleague's")
def touch_by_someone_else(policy) -> Case:
    s = Setting.of(policy)
    touch = touch_rule(s.sla)
    if touch.by == "anyone":
        raise NotApplicable(f"{s.sla.id} counts a touch by anyone (touch by: anyone)")
    other = s.cast.teammate if touch.by == "owner" else (s.cast.far_rep or s.cast.outsider)
    kind, kind_type, subtype = real_touch(touch)
    fields = s.fields()
    start, t = s.start(fields)
    touched = t.deadline(start, t.target // 4)
    story = s.story()
    covered = s.watched(story, lead_id("OTHER", 1), start, fields)
    story.activity(covered, touched, owner=other, kind=kind, type=kind_type, subtype=subtype)
    own = s.watched(story, lead_id("OTHER", 2), start, fields)  # the control: the owner's touch
    story.activity(own, touched, owner=s.cast.rep, kind=kind, type=kind_type, subtype=subtype)
    now = s.breach_time(t, start) + _MINUTE
    whom = "a teammate" if touch.by == "owner" else "someone outside the owner's team"

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, covered, s.sla)
        if c is None:
            return
        check.equal(f"after {other.name}'s {kind_type}: state", c.state, "breached")
        check.equal(f"after {other.name}'s {kind_type}: breached at", c.breached_at, t.deadline(start), show)
        c = the_clock(run, check, own, s.sla)
        if c is not None:
            check.equal(f"after the owner's {kind_type}: state", c.state, "met")
            check.equal(f"after the owner's {kind_type}: stopped at", c.stopped_at, touched, show)
        check.note(
            f"touch by: {touch.by}; {whom}'s {kind_type} ({other.name}) left the clock running to its "
            "breach, the owner's own met the control lead"
        )

    return Case(story.frames(), (now,), expect)


@scenario("open_todo_task", "An open to-do does not stop the clock until it is completed")
def open_todo_task(policy) -> Case:
    s = Setting.of(policy)
    touch = touch_rule(s.sla)
    if "Task" not in touch.kinds:
        raise NotApplicable(f"{s.sla.id} never counts a Task as a touch (kinds: {', '.join(touch.kinds)})")
    _, kind_type, subtype = real_touch(touch)
    fields = s.fields()
    start, t = s.start(fields)
    logged = t.deadline(start, t.target // 4)
    done = t.deadline(start, t.target // 2)
    rep = s.cast.rep
    story = s.story()
    open_todo = s.watched(story, lead_id("TODO", 1), start, fields)
    story.activity(open_todo, logged, owner=rep, type=kind_type, subtype=subtype, status="Not Started")
    completed = s.watched(story, lead_id("TODO", 2), start, fields)
    story.activity(completed, logged, owner=rep, type=kind_type, subtype=subtype, completed_at=done)
    now = s.breach_time(t, start) + _MINUTE

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        c = the_clock(run, check, open_todo, s.sla)
        if c is None:
            return
        check.equal("with the to-do still open: state", c.state, "breached")
        c = the_clock(run, check, completed, s.sla)
        if c is None:
            return
        check.equal("to-do completed later: state", c.state, "met")
        check.equal("to-do completed later: stopped at", c.stopped_at, done, show)
        check.equal("to-do completed later: elapsed", c.elapsed_seconds, t.target // 2, hours)
        check.note(
            f"a {kind_type} to-do logged {show(logged)} did not count while open; completed {show(done)}, "
            f"it met the clock then ({hours(t.target // 2)} of {hours(t.target)})"
        )

    return Case(story.frames(), (now,), expect)


@scenario(
    "breach_checkpoints",
    "An untouched lead is warned at each checkpoint and breached at its offset, telling the right people",
)
def breach_checkpoints(policy) -> Case:
    s = Setting.of(policy)
    fields = s.fields()
    start, t = s.start(fields)
    story = s.story()
    lead = s.watched(story, lead_id("BREACH"), start, fields)
    # One look just after each distinct offset is reached; at equal offsets the last declared is due.
    reached: dict[int, tuple] = {}
    for cp, offset in t.checkpoints():
        reached[offset] = (cp, t.deadline(start, offset))
    looks = [(cp, at, at + dt.timedelta(seconds=1)) for _, (cp, at) in sorted(reached.items())]

    def expect(run: Run, check: Checks) -> None:
        show = shown(t)
        handled: set = set()
        since = None
        seen = []
        for cp, at, look in looks:
            cps = run.checkpoints(lead.record_id, s.sla.id, look, since)
            row = cps[cps["checkpoint"] == cp.id]
            if not check.equal(f"{cp.id} reached", len(row), 1):
                return
            check.equal(f"{cp.id} reached at", row["reached_at"].iloc[0], at, show)
            check.equal(f"{cp.id} status", row["status"].iloc[0], "due")
            plan = run.decide(look, handled)
            if cp.id == "breach":
                c = the_clock(run, check, lead, s.sla, look)
                if c is not None:
                    check.equal("state", c.state, "breached")
                    check.equal("breached at", c.breached_at, t.deadline(start), show)
                seen.append(
                    f"breach ({cp.at}) at {show(at)}: " + breach_decided(check, s, plan, lead, t, look)
                )
            else:
                sent = messages_about(plan, lead.record_id, s.sla.id, cp.id)
                expected = told(policy, cp, s.cast.rep, s.cast.people, s.sla, s.cast.team_key)
                check.same(f"{cp.id} told", destinations(sent), expected)
                seen.append(f"{cp.id} ({cp.at}) at {show(at)} told {', '.join(cp.notify)}")
            handled |= handled_by(plan)
            since = look
        check.note(f"{t.describe()}; from {show(start)}: " + "; ".join(seen))

    return Case(story.frames(), tuple(look for *_, look in looks), expect)


SCENARIOS = (
    owner_changed_across_timezones,
    public_holiday,
    friday_evening,
    demo_request_tier,
    webinar_tier,
    out_of_hours_inbound,
    automated_email_does_not_stop,
    touch_by_someone_else,
    open_todo_task,
    breach_checkpoints,
)
