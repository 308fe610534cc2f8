"""SOQL building: literals escaped, datetimes in SOQL form, incremental queries shaped right."""

from __future__ import annotations

import datetime as dt

import pytest

from leadsla.crm import mapping, soql


def test_quote_escapes_backslash_and_quote():
    assert soql.quote("O'Brien \\ Sons") == "'O\\'Brien \\\\ Sons'"
    assert soql.quote("a\nb") == "'a\\nb'"
    # an injection attempt stays one literal
    assert soql.quote("x' OR Name != '") == "'x\\' OR Name != \\''"


def test_datetime_literal_is_utc_with_millis_and_refuses_naive():
    cet = dt.timezone(dt.timedelta(hours=1))
    assert (
        soql.datetime_literal(dt.datetime(2024, 5, 1, 10, 30, 0, 123456, tzinfo=cet))
        == "2024-05-01T09:30:00.123Z"
    )
    with pytest.raises(ValueError, match="naive"):
        soql.datetime_literal(dt.datetime(2024, 5, 1))


def test_identifier_refuses_anything_but_names():
    assert soql.identifier("UserRole.Name") == "UserRole.Name"
    for bad in ["Name,Id", "Id FROM Lead", "", "1x"]:
        with pytest.raises(ValueError):
            soql.identifier(bad)


def test_incremental_query():
    m = mapping.load()
    q = soql.incremental_query(m.objects["Group"], dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert q == (
        "SELECT Id, Name, DeveloperName, SystemModstamp FROM Group WHERE Type IN ('Queue') "
        "AND SystemModstamp > 2024-01-02T03:04:05.000Z ORDER BY SystemModstamp ASC"
    )
    assert "WHERE" not in soql.incremental_query(m.objects["Lead"], None)


def test_by_ids_query_escapes_ids():
    q = soql.by_ids_query("Lead", ["SLA_Status__c"], ["00Q000000000001AAA", "x'y"])
    assert q == "SELECT Id, SLA_Status__c FROM Lead WHERE Id IN ('00Q000000000001AAA', 'x\\'y')"
