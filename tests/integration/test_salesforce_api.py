"""The local Salesforce API driven by the real SalesforceHook / simple-salesforce over HTTPS."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime as http_date

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

pytest_plugins = ["tests.sandbox_fixtures"]


def _leads(n: int, **extra) -> list[dict]:
    return [{"LastName": f"Lead{i:05d}", "Company": f"Co {i}", "Status": "MQL", **extra} for i in range(n)]


def test_hook_logs_in_over_soap_and_lists_versions(salesforce_sandbox):
    hook = salesforce_sandbox.hook()
    conn = hook.get_conn()
    assert conn.sf_instance == f"127.0.0.1:{salesforce_sandbox.port}"
    assert salesforce_sandbox.logins == 1
    versions = requests.get(f"{salesforce_sandbox.base_url}/services/data/", timeout=10).json()
    assert {"label": "v59.0", "url": "/services/data/v59.0", "version": "59.0"} in versions


def test_wrong_password_is_refused_like_salesforce(salesforce_sandbox, monkeypatch):
    from simple_salesforce.exceptions import SalesforceAuthenticationFailed

    conn = salesforce_sandbox.connection()
    conn["password"] = "wrong"
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", json.dumps(conn))
    with pytest.raises(SalesforceAuthenticationFailed, match="INVALID_LOGIN"):
        salesforce_sandbox.hook().get_conn()


def test_query_pages_through_next_records_url(salesforce_sandbox):
    salesforce_sandbox.seed("Lead", _leads(25))
    salesforce_sandbox.page_size = 10
    sf = salesforce_sandbox.hook().get_conn()
    first = sf.query("SELECT Id, LastName FROM Lead ORDER BY LastName")
    assert first["totalSize"] == 25 and not first["done"] and len(first["records"]) == 10
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-10")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = sf.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert third["done"] and "nextRecordsUrl" not in third
    names = [r["LastName"] for page in (first, second, third) for r in page["records"]]
    assert names == [f"Lead{i:05d}" for i in range(25)]
    # the hook's make_query follows the pages itself
    assert len(salesforce_sandbox.hook().make_query("SELECT Id FROM Lead")["records"]) == 25


def test_query_filters_on_system_modstamp_and_relationships(salesforce_sandbox):
    owner = salesforce_sandbox.seed(
        "User", [{"FirstName": "Ada", "LastName": "Rep", "Email": "ada@x.test", "IsActive": True}]
    )[0]
    old = datetime(2024, 1, 1, tzinfo=UTC)
    salesforce_sandbox.seed("Lead", _leads(3, OwnerId=owner, CreatedDate=old, SystemModstamp=old))
    new_id = salesforce_sandbox.create("Lead", {"LastName": "Fresh", "Company": "New", "OwnerId": owner})
    sf = salesforce_sandbox.hook().get_conn()
    res = sf.query_all(
        "SELECT Id, Owner.Email, Owner.Name FROM Lead WHERE SystemModstamp > 2024-06-01T00:00:00Z"
    )
    assert [r["Id"] for r in res["records"]] == [new_id]
    assert res["records"][0]["Owner"]["Email"] == "ada@x.test"
    assert res["records"][0]["Owner"]["attributes"]["type"] == "User"
    assert sf.query("SELECT COUNT() FROM Lead WHERE Owner.Name = 'ada rep'")["totalSize"] == 4


def test_query_all_includes_deleted_rows_and_query_does_not(salesforce_sandbox):
    ids = salesforce_sandbox.seed("Lead", _leads(3))
    sf = salesforce_sandbox.hook().get_conn()
    sf.Lead.delete(ids[1])
    live = sf.query("SELECT Id FROM Lead")
    assert sorted(r["Id"] for r in live["records"]) == sorted([ids[0], ids[2]])
    everything = sf.query_all("SELECT Id, IsDeleted FROM Lead WHERE IsDeleted = true", include_deleted=True)
    assert [(r["Id"], r["IsDeleted"]) for r in everything["records"]] == [(ids[1], True)]


def test_malformed_query_answers_salesforce_error_shape(salesforce_sandbox):
    salesforce_sandbox.hook().get_conn()
    sf = salesforce_sandbox.hook().get_conn()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Id FROM Lead GROUP BY Status")
    assert err.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.query("SELECT Nope__c FROM Lead")
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_describe_lists_custom_fields_with_types_and_picklists(salesforce_sandbox):
    desc = salesforce_sandbox.hook().describe_object("Lead")
    fields = {f["name"]: f for f in desc["fields"]}
    for name in ("MQL_Date__c", "SAL_Date__c", "SLA_Status__c", "SLA_Due__c", "Time_to_First_Touch__c"):
        assert name in fields
    assert fields["SLA_Due__c"]["type"] == "datetime" and fields["SLA_Due__c"]["updateable"]
    assert "Breached" in [p["value"] for p in fields["SLA_Status__c"]["picklistValues"]]
    assert fields["SystemModstamp"]["updateable"] is False
    names = {o["name"] for o in salesforce_sandbox.hook().get_conn().describe()["sobjects"]}
    assert {"Lead", "LeadHistory", "Task", "Event", "User", "Group", "Opportunity", "Account"} <= names


def test_patch_moves_modstamp_and_writes_history(salesforce_sandbox):
    old = datetime(2024, 1, 1, tzinfo=UTC)
    lead = salesforce_sandbox.seed("Lead", _leads(1, CreatedDate=old, SystemModstamp=old))[0]
    sf = salesforce_sandbox.hook().get_conn()
    assert sf.Lead.update(lead, {"Status": "SAL", "Company": "Renamed"}) == 204
    rec = sf.Lead.get(lead)
    assert (
        rec["Status"] == "SAL"
        and rec["SystemModstamp"] > "2025"
        and rec["LastModifiedDate"] == rec["SystemModstamp"]
    )
    hist = sf.query(
        f"SELECT LeadId, Field, OldValue, NewValue, CreatedDate FROM LeadHistory WHERE LeadId = '{lead}'"
    )
    assert [(h["Field"], h["OldValue"], h["NewValue"]) for h in hist["records"]] == [("Status", "MQL", "SAL")]


def test_if_unmodified_since_refuses_a_stale_write_with_412(salesforce_sandbox):
    lead = salesforce_sandbox.create("Lead", {"LastName": "Race", "Company": "X", "Status": "MQL"})
    sf = salesforce_sandbox.hook().get_conn()
    stale = http_date(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    with pytest.raises(SalesforceGeneralError) as err:
        sf.Lead.update(lead, {"SLA_Status__c": "Warning"}, headers={"If-Unmodified-Since": stale})
    assert err.value.status == 412
    assert salesforce_sandbox.get("Lead", lead).get("SLA_Status__c") is None
    fresh = http_date(datetime.now(UTC) + timedelta(minutes=1), usegmt=True)
    assert sf.Lead.update(lead, {"SLA_Status__c": "Warning"}, headers={"If-Unmodified-Since": fresh}) == 204


def test_composite_sobjects_update_per_record_results_and_all_or_none(salesforce_sandbox):
    ids = salesforce_sandbox.seed("Lead", _leads(3))
    sf = salesforce_sandbox.hook().get_conn()
    body = {
        "allOrNone": False,
        "records": [
            {
                "attributes": {"type": "Lead"},
                "Id": ids[0],
                "SLA_Status__c": "Breached",
                "SLA_Breach__c": True,
            },
            {"attributes": {"type": "Lead"}, "Id": ids[1], "Bogus__c": 1},
        ],
    }
    res = sf.restful("composite/sobjects", method="PATCH", data=json.dumps(body))
    assert res[0] == {"id": ids[0], "success": True, "errors": []}
    assert res[1]["success"] is False and res[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert salesforce_sandbox.get("Lead", ids[0])["SLA_Breach__c"] is True
    body["allOrNone"] = True
    body["records"][0]["Id"] = ids[2]
    res = sf.restful("composite/sobjects", method="PATCH", data=json.dumps(body))
    assert res[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert salesforce_sandbox.get("Lead", ids[2]).get("SLA_Status__c") is None


def test_every_response_carries_limit_info_and_calls_count(salesforce_sandbox):
    salesforce_sandbox.set_limits(daily_limit=1000, api_used=100)
    sf = salesforce_sandbox.hook().get_conn()
    sf.query("SELECT Id FROM Lead")
    assert sf.api_usage["api-usage"].used == 101 and sf.api_usage["api-usage"].total == 1000
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 1000, "Remaining": 898}
    raw = requests.get(f"{salesforce_sandbox.base_url}/services/data/v59.0/limits/", timeout=10)
    assert raw.status_code == 401 and raw.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_fault_invalid_session_forces_a_real_relogin(salesforce_sandbox):
    salesforce_sandbox.seed("Lead", _leads(2))
    sf = salesforce_sandbox.hook().get_conn()
    old_session = sf.session_id
    salesforce_sandbox.inject_fault("INVALID_SESSION_ID", endpoint="query")
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 2
    assert salesforce_sandbox.logins == 2 and sf.session_id != old_session
    bad = requests.get(
        f"{salesforce_sandbox.base_url}/services/data/v59.0/limits/",
        headers={"Authorization": f"Bearer {old_session}"},
        timeout=10,
    )
    assert bad.status_code == 401 and bad.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_fault_request_limit_exceeded(salesforce_sandbox):
    sf = salesforce_sandbox.hook().get_conn()
    salesforce_sandbox.inject_fault("REQUEST_LIMIT_EXCEEDED", endpoint="query")
    with pytest.raises(SalesforceRefusedRequest) as err:
        sf.query("SELECT Id FROM Lead")
    assert err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.query("SELECT Id FROM Lead")["done"]  # times=1: the next call passes


def test_daily_limit_exhausted_answers_403(salesforce_sandbox):
    salesforce_sandbox.set_limits(daily_limit=5, api_used=5)
    with pytest.raises(SalesforceRefusedRequest):
        salesforce_sandbox.hook().get_conn().query("SELECT Id FROM Lead")


def test_fault_503_then_recovers(salesforce_sandbox):
    sf = salesforce_sandbox.hook().get_conn()
    salesforce_sandbox.inject_fault("SERVER_UNAVAILABLE", endpoint="*", times=2)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as err:
            sf.query("SELECT Id FROM Lead")
        assert err.value.status == 503
    assert sf.query("SELECT Id FROM Lead")["done"]


def test_fault_unable_to_lock_row_on_writes(salesforce_sandbox):
    ids = salesforce_sandbox.seed("Lead", _leads(2))
    sf = salesforce_sandbox.hook().get_conn()
    salesforce_sandbox.inject_fault("UNABLE_TO_LOCK_ROW", endpoint="sobject")
    assert sf.query("SELECT Id FROM Lead")["totalSize"] == 2  # reads are not locked
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.update(ids[0], {"Status": "SAL"})
    assert err.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    salesforce_sandbox.inject_fault("UNABLE_TO_LOCK_ROW", endpoint="composite")
    body = {
        "allOrNone": False,
        "records": [{"attributes": {"type": "Lead"}, "Id": i, "Status": "SAL"} for i in ids],
    }
    res = sf.restful("composite/sobjects", method="PATCH", data=json.dumps(body))
    assert [r["errors"][0]["statusCode"] for r in res] == ["UNABLE_TO_LOCK_ROW"] * 2
    assert sf.restful("composite/sobjects", method="PATCH", data=json.dumps(body))[0]["success"] is True


def test_fault_slow_response(salesforce_sandbox):
    sf = salesforce_sandbox.hook().get_conn()
    salesforce_sandbox.inject_fault("SLOW", endpoint="limits", delay_s=0.4)
    started = time.monotonic()
    sf.limits()
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.exceptions.ReadTimeout):
        salesforce_sandbox.inject_fault("SLOW", endpoint="limits", delay_s=1.0)
        requests.get(
            f"{salesforce_sandbox.base_url}/services/data/v59.0/limits/",
            headers={"Authorization": f"Bearer {sf.session_id}"},
            timeout=0.3,
        )


def test_admin_endpoint_adds_faults(salesforce_sandbox):
    sf = salesforce_sandbox.hook().get_conn()
    resp = requests.post(
        f"{salesforce_sandbox.base_url}/_sandbox/faults",
        json={"faults": [{"fault": "SERVER_UNAVAILABLE", "endpoint": "describe"}]},
        timeout=10,
    )
    assert resp.status_code == 200
    with pytest.raises(SalesforceGeneralError):
        sf.Lead.describe()
    bad = requests.post(
        f"{salesforce_sandbox.base_url}/_sandbox/faults", json={"faults": [{"fault": "NOPE"}]}, timeout=10
    )
    assert bad.status_code == 400 and "NOPE" in bad.json()["error"]


def test_owner_change_history_is_named_after_the_relationship(salesforce_sandbox):
    rep = salesforce_sandbox.seed("User", [{"LastName": "Rep", "IsActive": True}])[0]
    lead = salesforce_sandbox.create("Lead", {"LastName": "L", "Company": "C", "Status": "MQL"})
    sf = salesforce_sandbox.hook().get_conn()
    sf.Lead.update(lead, {"OwnerId": rep})
    rows = sf.query(
        f"SELECT Field, NewValue, DataType FROM LeadHistory WHERE LeadId = '{lead}' ORDER BY CreatedDate"
    )
    assert [(r["Field"], r["NewValue"], r["DataType"]) for r in rows["records"]] == [
        ("created", None, "Text"),
        ("Owner", rep, "EntityId"),
    ]


def test_composite_create_delete_and_per_record_precondition(salesforce_sandbox):
    sf = salesforce_sandbox.hook().get_conn()
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        data=json.dumps(
            {
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Lead"}, "LastName": "One", "Company": "A", "Status": "MQL"},
                    {"attributes": {"type": "Task"}, "Subject": "Call", "TaskSubtype": "Call"},
                ],
            }
        ),
    )
    assert [r["success"] for r in created] == [True, True]
    lead_id, task_id = created[0]["id"], created[1]["id"]
    assert lead_id.startswith("00Q") and task_id.startswith("00T") and len(lead_id) == 18
    stale = http_date(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    res = sf.restful(
        "composite/sobjects",
        method="PATCH",
        headers={"If-Unmodified-Since": stale},
        data=json.dumps(
            {
                "allOrNone": False,
                "records": [{"attributes": {"type": "Lead"}, "Id": lead_id, "Status": "SAL"}],
            }
        ),
    )
    assert res[0]["success"] is False and res[0]["errors"][0]["statusCode"] == "PRECONDITION_FAILED"
    got = sf.restful("composite/sobjects/Lead", params={"ids": lead_id, "fields": "Id,Status"})
    assert got[0]["Status"] == "MQL"
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{lead_id},{task_id}"})
    assert [r["success"] for r in deleted] == [True, True]
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0
    too_many = {"allOrNone": False, "records": [{"attributes": {"type": "Lead"}, "LastName": "x"}] * 201}
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="POST", data=json.dumps(too_many))
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_read_only_and_unknown_fields_are_refused_on_write(salesforce_sandbox):
    lead = salesforce_sandbox.create("Lead", {"LastName": "L", "Company": "C"})
    sf = salesforce_sandbox.hook().get_conn()
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.update(lead, {"SystemModstamp": "2020-01-01T00:00:00Z"})
    assert err.value.content[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.Lead.update(lead, {"SLA_Due__c": "not a date"})
    assert err.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert sf.Lead.create({"LastName": "New", "Company": "C", "SLA_Due__c": "2026-01-01T10:00:00+02:00"})[
        "success"
    ]
    rec = sf.query("SELECT SLA_Due__c FROM Lead WHERE LastName = 'New'")["records"][0]
    assert rec["SLA_Due__c"] == "2026-01-01T08:00:00.000+0000"


def test_the_org_survives_a_restart(tmp_path, monkeypatch):
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    from sandbox import salesforce_api

    first = salesforce_api.start(tmp_path)
    try:
        lead = first.store.create("Lead", {"LastName": "Kept", "Company": "C"})["Id"]
    finally:
        first.stop()
    second = salesforce_api.start(tmp_path)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(second.ca_path))
        monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", second.connection_json())
        records = SalesforceHook().make_query("SELECT Id, LastName FROM Lead")["records"]
        assert [(r["Id"], r["LastName"]) for r in records] == [(lead, "Kept")]
    finally:
        second.stop()


def test_command_line_server_with_a_fault_file(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    faults = tmp_path / "faults.json"
    faults.write_text(
        json.dumps({"page_size": 5, "faults": [{"fault": "SERVER_UNAVAILABLE", "endpoint": "limits"}]})
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.salesforce_api",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "d"),
            "--faults",
            str(faults),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "include")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        listening = proc.stdout.readline()
        ca_line = proc.stdout.readline()
        assert f"https://127.0.0.1:{port}" in listening
        ca = ca_line.split("CA bundle: ")[1].split()[0]
        assert (
            requests.get(f"https://127.0.0.1:{port}/services/data/", verify=ca, timeout=10).status_code == 200
        )
        status = requests.get(f"https://127.0.0.1:{port}/_sandbox/status", verify=ca, timeout=10).json()
        assert status["page_size"] == 5 and status["faults"][0]["fault"] == "SERVER_UNAVAILABLE"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_api_allowance_starts_again_on_a_new_day(salesforce_sandbox):
    salesforce_sandbox.set_limits(daily_limit=5, api_used=5)
    salesforce_sandbox.running.state.usage_day -= timedelta(days=1)
    sf = salesforce_sandbox.hook().get_conn()
    sf.query("SELECT Id FROM Lead")
    assert sf.api_usage["api-usage"].used == 1


def test_opportunity_stage_changes_write_field_history(salesforce_sandbox):
    account = salesforce_sandbox.seed("Account", [{"Name": "Acme", "Tier__c": "Tier 1"}])[0]
    sf = salesforce_sandbox.hook().get_conn()
    opp = sf.Opportunity.create(
        {
            "Name": "Acme - New",
            "AccountId": account,
            "StageName": "Qualification",
            "CloseDate": "2026-06-30",
            "Amount": 1000,
        }
    )["id"]
    assert opp.startswith("006")
    sf.Opportunity.update(opp, {"StageName": "Closed Won"})
    rec = sf.query(f"SELECT IsWon, IsClosed, Account.Tier__c FROM Opportunity WHERE Id = '{opp}'")["records"][
        0
    ]
    assert rec["IsWon"] is True and rec["IsClosed"] is True and rec["Account"]["Tier__c"] == "Tier 1"
    rows = sf.query(
        f"SELECT Field, OldValue, NewValue FROM OpportunityFieldHistory WHERE OpportunityId = '{opp}' "
        "AND Field != 'created' ORDER BY Field"
    )["records"]
    assert [(r["Field"], r["OldValue"], r["NewValue"]) for r in rows] == [
        ("IsClosed", False, True),
        ("IsWon", False, True),
        ("StageName", "Qualification", "Closed Won"),
    ]
