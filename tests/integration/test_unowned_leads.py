"""`ownership.unowned.unowned_leads` on both backends: which watched leads nobody working owns (a queue,
an inactive user, nobody, an owner the store does not know), since when, oldest first - read by
owner, so the leads reps own are never read."""

from __future__ import annotations

import datetime as dt

from leadsla.ownership.book import owners
from leadsla.ownership.unowned import unowned_leads
from leadsla.policy import load_policy
from leadsla.store import schema as s
from tests.reports_data import Builder, t

NOW = t("2026-11-20 15:00")


def test_unowned_leads_are_those_no_working_person_owns(store) -> None:
    b = Builder().user("R1", "Rita", "sdr_east").user("X1", "Xavier", "sdr_east")
    b.users[-1]["is_active"] = False
    b.lead("U_QUEUE", owner="Q1", stages={"MQL": t("2026-11-20 09:00")})
    b.lead("U_INACTIVE", owner="X1", stages={"MQL": t("2026-11-20 08:00")})
    b.lead("U_NOBODY", owner=None, stages={"MQL": t("2026-11-20 10:00")})
    b.lead("U_UNKNOWN", owner="005GONE", stages={"MQL": t("2026-11-20 11:00")})
    b.lead("W_REP", owner="R1", stages={"MQL": t("2026-11-20 07:00")})
    b.lead("C_CLOSED", owner="Q1", stages={"MQL": t("2026-11-20 07:00"), "SQL": t("2026-11-20 07:30")})
    b.lead("K_LOCKED", owner="Q1", stages={"MQL": t("2026-11-20 07:00")})
    for lead in b.leads:  # every row names the column: one executemany takes the first row's keys
        lead["lock_until"] = NOW + dt.timedelta(hours=3) if lead["record_id"] == "K_LOCKED" else None
    b.history.append(
        {
            "history_id": "HOWNER",
            "object_type": "Lead",
            "record_id": "U_QUEUE",
            "field": "Owner",
            "old_value": "R1",
            "new_value": "Q1",
            "changed_by": "R1",
            "changed_at": t("2026-11-20 12:30"),
        }
    )
    b.write(store)
    with store.begin() as conn:
        conn.execute(s.queues.insert(), [{"queue_id": "Q1", "name": "Lead Intake", "synced_at": NOW}])

    with store.connect() as conn:
        found = unowned_leads(conn, load_policy(), owners(conn), NOW)

    assert [(u.record_id, u.owner_id, u.since) for u in found] == [  # oldest (created) first
        ("U_INACTIVE", "X1", t("2026-11-20 08:00")),
        ("U_QUEUE", "Q1", t("2026-11-20 12:30")),  # since its owner last changed, not since created
        ("U_NOBODY", None, t("2026-11-20 10:00")),
        ("U_UNKNOWN", "005GONE", t("2026-11-20 11:00")),
    ]
    with store.begin() as conn:  # the queue's lead gets a rep: no longer unowned
        conn.execute(s.records.update().where(s.records.c.record_id == "U_QUEUE").values(owner_id="R1"))
    with store.connect() as conn:
        again = unowned_leads(conn, load_policy(), owners(conn), NOW)
    assert [u.record_id for u in again] == ["U_INACTIVE", "U_NOBODY", "U_UNKNOWN"]
