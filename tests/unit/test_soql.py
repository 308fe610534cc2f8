"""The SOQL subset: every supported construct evaluated against rows, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandbox import soql
from sandbox.sf_query import BoundQuery
from sandbox.sf_store import OrgStore, id18, make_id
from sandbox.soql import SoqlError

NOW = datetime(2026, 3, 11, 15, 30, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def org(tmp_path):
    store = OrgStore(tmp_path / "org.sqlite3")
    owner = store.bulk_insert("User", [{"FirstName": "Ada", "LastName": "Rep", "Email": "ada@x.test"}])[0]
    queue = store.bulk_insert(
        "Group", [{"Name": "Breached SLA", "DeveloperName": "Breached_SLA", "Type": "Queue"}]
    )[0]
    rows = [
        {
            "LastName": "Alpha",
            "Company": "O'Brien Ltd",
            "Status": "MQL",
            "OwnerId": owner,
            "MQL_Date__c": "2026-03-11T09:00:00Z",
            "Time_to_First_Touch__c": 12.0,
            "SLA_Breach__c": False,
            "SystemModstamp": "2026-03-11T09:00:00Z",
            "CreatedDate": "2026-03-11T09:00:00Z",
            "Country": "US",
        },
        {
            "LastName": "Bravo",
            "Company": "Acme",
            "Status": "SAL",
            "OwnerId": owner,
            "MQL_Date__c": "2026-03-10T09:00:00Z",
            "Time_to_First_Touch__c": 240.0,
            "SLA_Breach__c": True,
            "SystemModstamp": "2026-03-10T09:00:00Z",
            "CreatedDate": "2026-03-10T09:00:00Z",
            "Country": "GB",
        },
        {
            "LastName": "charlie",
            "Company": "50% Off_Co",
            "Status": "Disqualified",
            "OwnerId": queue,
            "Rejection_Reason__c": "No budget",
            "SystemModstamp": "2026-02-01T09:00:00Z",
            "CreatedDate": "2026-02-01T09:00:00Z",
            "Country": None,
        },
        {
            "LastName": "Delta",
            "Company": "Gone",
            "Status": "MQL",
            "OwnerId": owner,
            "IsDeleted": True,
            "SystemModstamp": "2026-03-11T10:00:00Z",
            "CreatedDate": "2026-03-01T09:00:00Z",
        },
    ]
    store.bulk_insert("Lead", rows)
    yield store
    store.close()


def names(org, text, include_deleted=False):
    q = BoundQuery(text, now=NOW)
    return [r["LastName"] for r in q.matching(org, include_deleted)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Status = 'MQL'", ["Alpha"]),
        ("Status = 'mql'", ["Alpha"]),  # string equality is case-insensitive in SOQL
        ("Status != 'MQL'", ["Bravo", "charlie"]),
        ("Status <> 'MQL'", ["Bravo", "charlie"]),
        ("Time_to_First_Touch__c > 12", ["Bravo"]),
        ("Time_to_First_Touch__c >= 12", ["Alpha", "Bravo"]),
        ("Time_to_First_Touch__c < 240.5", ["Alpha", "Bravo"]),
        ("Time_to_First_Touch__c <= 12", ["Alpha"]),
        ("Status IN ('MQL', 'SAL')", ["Alpha", "Bravo"]),
        ("Status NOT IN ('MQL', 'SAL')", ["charlie"]),
        ("Company LIKE 'o\\'brien%'", ["Alpha"]),
        ("Company LIKE '50\\% Off\\_%'", ["charlie"]),
        ("Company LIKE '_cme'", ["Bravo"]),
        ("Country = NULL", ["charlie"]),
        ("Country != NULL", ["Alpha", "Bravo"]),
        ("SLA_Breach__c = true", ["Bravo"]),
        ("SLA_Breach__c = FALSE", ["Alpha"]),
        ("MQL_Date__c > 2026-03-10T12:00:00Z", ["Alpha"]),
        ("MQL_Date__c > 2026-03-10T12:00:00+05:00", ["Alpha", "Bravo"]),  # 07:00 UTC
        ("MQL_Date__c >= 2026-03-10T09:00:00.000+0000", ["Alpha", "Bravo"]),
        ("MQL_Date__c = TODAY", ["Alpha"]),
        ("MQL_Date__c = YESTERDAY", ["Bravo"]),
        ("MQL_Date__c < TODAY", ["Bravo"]),
        ("CreatedDate = LAST_N_DAYS:7", ["Alpha", "Bravo"]),
        ("CreatedDate < LAST_N_DAYS:30", ["charlie"]),
        ("CreatedDate = N_DAYS_AGO:1", ["Bravo"]),
        ("CreatedDate > TOMORROW", []),
        ("NOT Status = 'MQL'", ["Bravo", "charlie"]),
        ("Status = 'MQL' OR Status = 'SAL' AND Country = 'GB'", ["Alpha", "Bravo"]),
        ("(Status = 'MQL' OR Status = 'SAL') AND Country = 'GB'", ["Bravo"]),
        ("NOT (Status = 'MQL' OR Country = NULL)", ["Bravo"]),
        ("Owner.Email = 'ADA@x.test'", ["Alpha", "Bravo"]),
        ("Owner.Name = 'Breached SLA'", ["charlie"]),
    ],
)
def test_where_operators(org, where, expected):
    assert names(org, f"SELECT Id, LastName FROM Lead WHERE {where} ORDER BY LastName") == expected


def test_query_excludes_deleted_and_query_all_includes_them(org):
    assert "Delta" not in names(org, "SELECT LastName FROM Lead")
    assert names(org, "SELECT LastName FROM Lead WHERE IsDeleted = true", include_deleted=True) == ["Delta"]


def test_order_by_directions_and_nulls(org):
    assert names(org, "SELECT LastName FROM Lead ORDER BY LastName DESC") == ["charlie", "Bravo", "Alpha"]
    assert names(org, "SELECT LastName FROM Lead ORDER BY Country") == ["charlie", "Bravo", "Alpha"]
    assert names(org, "SELECT LastName FROM Lead ORDER BY Country ASC NULLS LAST") == [
        "Bravo",
        "Alpha",
        "charlie",
    ]
    assert names(org, "SELECT LastName FROM Lead ORDER BY Country DESC") == ["Alpha", "Bravo", "charlie"]
    assert names(org, "SELECT LastName FROM Lead ORDER BY Country DESC NULLS FIRST") == [
        "charlie",
        "Alpha",
        "Bravo",
    ]
    assert names(org, "SELECT LastName FROM Lead ORDER BY Status, LastName DESC") == [
        "charlie",
        "Alpha",
        "Bravo",
    ]


def test_limit_and_offset(org):
    assert names(org, "SELECT LastName FROM Lead ORDER BY LastName LIMIT 2") == ["Alpha", "Bravo"]
    assert names(org, "SELECT LastName FROM Lead ORDER BY LastName LIMIT 1 OFFSET 1") == ["Bravo"]
    assert names(org, "select lastname from lead order by lastname offset 2") == ["charlie"]


def test_group_is_an_object_name_after_from(org):
    q = BoundQuery(
        "SELECT Id, Name, DeveloperName FROM Group WHERE Type IN ('Queue') ORDER BY SystemModstamp ASC",
        now=NOW,
    )
    assert [r["DeveloperName"] for r in q.matching(org, False)] == ["Breached_SLA"]


def test_count_forms(org):
    assert soql.parse("SELECT COUNT() FROM Lead").is_count
    q = soql.parse("SELECT COUNT(Id) total FROM Lead")
    assert q.fields[0].path == "Id" and q.fields[0].alias == "total"


def test_projection_nests_relationships(org):
    q = BoundQuery("SELECT Id, Owner.Email, Owner.Name FROM Lead WHERE LastName = 'Alpha'", now=NOW)
    row = q.matching(org, False)[0]
    q.prefetch([row])
    out = q.project(row, "59.0")
    assert out["attributes"]["type"] == "Lead"
    assert out["Owner"]["Email"] == "ada@x.test" and out["Owner"]["Name"] == "Ada Rep"


def test_modstamp_bounds_narrow_only_top_level_conjuncts():
    q = soql.parse(
        "SELECT Id FROM Lead WHERE SystemModstamp > 2026-01-01T00:00:00Z AND SystemModstamp <= "
        "2026-02-01T00:00:00Z AND Status = 'MQL'"
    )
    low, high = soql.modstamp_bounds(q.where)
    assert low == datetime(2026, 1, 1, tzinfo=UTC) and high == datetime(2026, 2, 1, tzinfo=UTC)
    q = soql.parse("SELECT Id FROM Lead WHERE SystemModstamp > 2026-01-01T00:00:00Z OR Status = 'MQL'")
    assert soql.modstamp_bounds(q.where) == (None, None)


def test_modstamp_prefilter_gives_the_same_answer_as_a_full_scan(org):
    text = "SELECT LastName FROM Lead WHERE SystemModstamp >= 2026-03-10T09:00:00Z ORDER BY LastName"
    assert names(org, text) == ["Alpha", "Bravo"]
    text = "SELECT LastName FROM Lead WHERE SystemModstamp > 2026-03-10T09:00:00Z ORDER BY LastName"
    assert names(org, text) == ["Alpha"]


def test_string_escapes():
    q = soql.parse(r"SELECT Id FROM Lead WHERE Company = 'a\'b\\c\nd'")
    assert q.where.value.value == "a'b\\c\nd"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SELECT FROM Lead",
        "SELECT Id Lead",
        "SELECT Id FROM Lead WHERE",
        "SELECT Id FROM Lead WHERE Status = ",
        "SELECT Id FROM Lead WHERE Status = 'unterminated",
        "SELECT Id FROM Lead WHERE (Status = 'MQL'",
        "SELECT Id FROM Lead GROUP BY Status",
        "SELECT Id FROM Lead WHERE Status INCLUDES ('a')",
        "SELECT Id, (SELECT Id FROM Tasks) FROM Lead",
        "SELECT Id FROM Lead WHERE Id IN (SELECT WhoId FROM Task)",
        "SELECT Id FROM Lead LIMIT -1",
        "SELECT Id FROM Lead LIMIT 10 extra",
        "SELECT COUNT(), Id FROM Lead",
        "SELECT MAX(CreatedDate) FROM Lead",
        "SELECT Id FROM Lead WHERE CreatedDate = LAST_N_DAYS",
        "SELECT Id FROM Lead WHERE CreatedDate = THIS_FISCAL_QUARTER",
        "SELECT Id FROM Lead WHERE Company = 'bad \\q escape'",
        "SELECT Id FROM Lead WHERE Status = 'MQL' AND",
        "SELECT Id FROM Lead ORDER BY Name NULLS",
        "SELECT Id FROM Lead WHERE Status LIKE 5",
        "SELECT Id FROM Lead WHERE Status ~ 'x'",
        "SELECT Id FROM Lead OFFSET 5000",
    ],
)
def test_unsupported_or_broken_syntax_is_malformed(text):
    with pytest.raises(SoqlError) as err:
        BoundQuery(text, now=NOW)
    assert err.value.code in ("MALFORMED_QUERY", "NUMBER_OUTSIDE_VALID_RANGE")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT Nope FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Owner.Nope = 'x'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01T00:00:00Z'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE SLA_Breach__c = 'true'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE CreatedDate >= 2026-03-10", "INVALID_FIELD"),  # a date for a dateTime
        ("SELECT Id FROM Lead WHERE ConvertedDate = 2026-03-10T00:00:00Z", "INVALID_FIELD"),
        ("SELECT Id FROM Lead WHERE Time_to_First_Touch__c LIKE '1%'", "INVALID_FIELD"),
        ("SELECT Id FROM Lead ORDER BY Nope", "INVALID_FIELD"),
        ("SELECT Id FROM Nothing__c", "INVALID_TYPE"),
    ],
)
def test_unknown_names_and_type_mismatches(text, code):
    with pytest.raises(SoqlError) as err:
        BoundQuery(text, now=NOW)
    assert err.value.code == code


def test_ids_are_18_chars_with_key_prefix_and_checksum():
    lead = make_id("00Q", 1)
    assert len(lead) == 18 and lead.startswith("00Q")
    assert id18("001A0000006Vm9r") == "001A0000006Vm9rIAC"  # Salesforce's documented example


@pytest.mark.parametrize(
    "text",
    [
        "SELECT Id FROM Lead",
        "SELECT Id FROM Lead ORDER BY SystemModstamp",
        "SELECT Id FROM Lead WHERE SystemModstamp > 2026-03-01T00:00:00Z ORDER BY SystemModstamp ASC",
        "SELECT Id FROM Lead WHERE Status != 'SAL' ORDER BY SystemModstamp LIMIT 1 OFFSET 1",
        "SELECT Id FROM Lead WHERE SystemModstamp >= 2026-03-10T09:00:00Z AND SystemModstamp <= "
        "2026-03-11T09:00:00Z",
    ],
)
@pytest.mark.parametrize("include_deleted", [False, True])
def test_streamed_results_equal_the_sorted_full_scan(org, text, include_deleted):
    streamed, first = BoundQuery(text, now=NOW).matching_ids(org, include_deleted, keep=1)
    full = (
        BoundQuery(text, now=NOW).matching(org, include_deleted)
        if "OFFSET" in text
        else sorted(
            BoundQuery(text, now=NOW).matching(org, include_deleted), key=lambda r: r["SystemModstamp"]
        )
    )
    assert streamed == [r["Id"] for r in full]
    assert [r["Id"] for r in first] == streamed[:1]


def test_scan_chunks_pages_by_modstamp_and_id(org):
    same = "2026-03-12T00:00:00.000+0000"
    org.bulk_insert("Lead", [{"LastName": f"Tie{i}", "SystemModstamp": same} for i in range(5)])
    chunks = list(org.scan_chunks("Lead", size=2, low="2026-03-11T00:00:00.000+0000"))
    flat = [(r["SystemModstamp"], r["Id"]) for c in chunks for r in c]
    assert [len(c) for c in chunks] == [2, 2, 2] and flat == sorted(flat) and len(set(flat)) == 6
