"""Reading the funnel from the store: a lead enters the funnel in the status it was created with,
although a CRM writes no Status history row for that first status."""

from __future__ import annotations

import datetime as dt

from leadsla.reports.data import load
from leadsla.store import schema
from leadsla.store.upsert import upsert

T0 = dt.datetime(2026, 11, 2, 14, 0, tzinfo=dt.UTC)


def lead(record_id: str, status: str) -> dict:
    return {
        "object_type": "Lead",
        "record_id": record_id,
        "name": record_id,
        "status": status,
        "created_at": T0,
        "modified_at": T0,
        "is_deleted": False,
        "fields": {},
        "synced_at": T0,
    }


def change(history_id: str, record_id: str, old: str, new: str, at: dt.datetime) -> dict:
    return {
        "history_id": history_id,
        "object_type": "Lead",
        "record_id": record_id,
        "field": "Status",
        "old_value": old,
        "new_value": new,
        "changed_at": at,
    }


def test_leads_enter_the_funnel_in_their_first_status(store) -> None:
    later = T0 + dt.timedelta(hours=2)
    with store.begin() as conn:
        upsert(
            conn,
            schema.records,
            [lead("00QA", "MQL"), lead("00QB", "SAL"), lead("00QC", "SQL"), lead("00QD", "SQL")],
        )
        upsert(
            conn,
            schema.field_history,
            [
                change("017B", "00QB", "MQL", "SAL", later),
                change("017C1", "00QC", "SAL", "SQL", later),  # created straight into SAL, e.g. by a rep
                # a CRM that does write the first status as a change from nothing: no arrival is invented
                change("017D1", "00QD", None, "MQL", T0 + dt.timedelta(minutes=5)),
                change("017D2", "00QD", "MQL", "SQL", later),
            ],
        )
    stages = load(store).stages
    got = sorted((r.record_id, r.stage, r.at.to_pydatetime()) for r in stages.itertuples())
    assert got == [
        ("00QA", "MQL", T0),
        ("00QB", "MQL", T0),
        ("00QB", "SAL", later),
        ("00QC", "SAL", T0),
        ("00QC", "SQL", later),
        ("00QD", "MQL", T0 + dt.timedelta(minutes=5)),
        ("00QD", "SQL", later),
    ]
