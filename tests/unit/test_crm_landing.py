"""Landing CRM history rows in the store's language: owner-id rows become OwnerId (what the engine
follows) and history statuses pass through the org's picklist mapping like the record's own status."""

from __future__ import annotations

import dataclasses
import datetime as dt

from leadsla.crm import landing
from leadsla.crm import mapping as mapping_mod

SYNCED = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)


def history(field: str, old, new) -> dict:
    return {
        "Id": "017000000000001AAA",
        "LeadId": "00Q000000000001AAA",
        "Field": field,
        "OldValue": old,
        "NewValue": new,
        "CreatedById": "005000000000009AAA",
        "CreatedDate": "2026-03-02T14:00:00.000+0000",
    }


def land(raw: dict, status_map: dict | None = None) -> dict:
    crm = mapping_mod.load()
    obj = crm.objects["LeadHistory"]
    return landing.store_row(obj, raw, synced_at=SYNCED, status_map=status_map or crm.status_map_for(obj))


def test_owner_change_with_ids_becomes_ownerid() -> None:
    row = land(history("Owner", "005000000000001AAA", "00G000000000002AAA"))
    assert (row["field"], row["old_value"], row["new_value"]) == (
        "OwnerId",
        "005000000000001AAA",
        "00G000000000002AAA",
    )
    assert row["object_type"] == "Lead"


def test_owner_change_with_names_stays_owner() -> None:
    row = land(history("Owner", "Ada Lovelace", "Breached SLA"))
    assert (row["field"], row["new_value"]) == ("Owner", "Breached SLA")


def test_history_statuses_use_the_parent_objects_picklist_mapping() -> None:
    crm = dataclasses.replace(mapping_mod.load(), status_map={"Lead": {"Sales Accepted": "SAL"}})
    assert crm.status_map_for(crm.objects["LeadHistory"]) == {"Sales Accepted": "SAL"}
    row = land(
        history("Status", "Marketing Qualified", "Sales Accepted"),
        status_map={"Marketing Qualified": "MQL", "Sales Accepted": "SAL"},
    )
    assert (row["field"], row["old_value"], row["new_value"]) == ("Status", "MQL", "SAL")


def test_other_history_fields_are_kept_as_received() -> None:
    row = land(history("Rating", "Warm", "Sales Accepted"), status_map={"Sales Accepted": "SAL"})
    assert (row["field"], row["new_value"]) == ("Rating", "Sales Accepted")
