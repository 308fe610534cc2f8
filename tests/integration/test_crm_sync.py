"""The sync and write-back through the real SalesforceHook over HTTPS against the local Salesforce API.

Every fault the issue names is injected at the server: 401 INVALID_SESSION_ID (re-login), 403
REQUEST_LIMIT_EXCEEDED (stop, watermark kept), 503 (retry), UNABLE_TO_LOCK_ROW on write (retry),
412 on write (re-read, re-decide). Back-off delays are tiny.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import yaml

from leadsla.crm import mapping as mapping_mod
from leadsla.crm import sync, writeback
from leadsla.crm.protocol import MappingError
from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
from leadsla.store import audit, open_store, schema, watermarks
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)
CTX = audit.AuditContext(dag_id="test", run_id="r1", task_id="t", try_number=1)


@pytest.fixture
def sf(salesforce_sandbox):  # noqa: F811
    salesforce_sandbox.page_size = 10
    return salesforce_sandbox


@pytest.fixture
def engine(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def crm_mapping():
    return mapping_mod.load()


def client() -> SalesforceClient:
    return SalesforceClient(retry=FAST, timeout=10)


def seed_leads(sf, n: int, start: dt.datetime) -> list[str]:
    return sf.seed(
        "Lead",
        [
            {
                "LastName": f"Lead {i}",
                "Company": "O'Brien \\ Sons",
                "Status": "MQL",
                "CreatedDate": start,
                "SystemModstamp": start + dt.timedelta(seconds=i),
            }
            for i in range(n)
        ],
    )


def store_leads(engine) -> dict[str, sa.Row]:
    with engine.connect() as conn:
        return {
            r.record_id: r
            for r in conn.execute(sa.select(schema.records).where(schema.records.c.object_type == "Lead"))
        }


def test_backfill_incremental_deletes_history_and_idempotent_rerun(sf, store, crm_mapping):
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    ids = seed_leads(sf, 25, t0)
    first = sync.sync_group(client(), store, crm_mapping, "leads", force=True)
    assert first.status == "success"
    assert first.objects[0].pages == 3  # 25 leads at 10 a page, through nextRecordsUrl
    assert first.records_changed == 25
    assert len(store_leads(store)) == 25
    assert store_leads(store)[ids[0]].company == "O'Brien \\ Sons"

    sf.update("Lead", ids[3], {"Status": "SAL"})
    sf.delete("Lead", ids[4])
    second = sync.sync_group(client(), store, crm_mapping, "leads", force=True)
    leads = store_leads(store)
    assert leads[ids[3]].status == "SAL"
    assert leads[ids[4]].is_deleted is True
    assert second.objects[0].changed == 2 and second.objects[0].deleted == 1
    with store.connect() as conn:
        history = conn.execute(
            sa.select(schema.field_history).where(schema.field_history.c.record_id == ids[3])
        ).all()
    assert [(h.field, h.old_value, h.new_value) for h in history if h.field == "Status"] == [
        ("Status", "MQL", "SAL")
    ]

    before = {k: (v.status, v.is_deleted, v.modified_at) for k, v in store_leads(store).items()}
    third = sync.sync_group(client(), store, crm_mapping, "leads", force=True)
    assert third.records_changed == 0
    assert third.api_calls == 4  # one query per object of the group: the idle cycle's cost
    assert {k: (v.status, v.is_deleted, v.modified_at) for k, v in store_leads(store).items()} == before


def test_expired_session_logs_in_again_and_retries(sf, engine, crm_mapping):
    seed_leads(sf, 3, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    c = client()
    assert sync.sync_group(c, engine, crm_mapping, "leads", force=True).status == "success"
    logins = sf.logins
    sf.expire_sessions()
    summary = sync.sync_group(c, engine, crm_mapping, "leads", force=True)
    assert summary.status == "success"
    assert sf.logins == logins + 1


def test_injected_invalid_session_is_retried_after_login(sf, engine, crm_mapping):
    seed_leads(sf, 3, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    c = client()
    c.describe_fields("Lead")  # logged in
    logins = sf.logins
    sf.inject_fault("INVALID_SESSION_ID", endpoint="query", times=1)
    assert sync.sync_group(c, engine, crm_mapping, "leads", force=True).records_changed == 3
    assert sf.logins == logins + 1


def test_request_limit_stops_the_cycle_without_moving_the_watermark(sf, engine, crm_mapping):
    seed_leads(sf, 5, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert sync.sync_group(client(), engine, crm_mapping, "leads", force=True).status == "success"
    with engine.connect() as conn:
        marks = {o: watermarks.read(conn, o) for o in ["Lead", "LeadHistory", "Task", "Event"]}
    sf.create("Lead", {"LastName": "late", "Company": "X", "Status": "MQL"})
    sf.inject_fault("REQUEST_LIMIT_EXCEEDED", endpoint="query", times=None)
    summary = sync.sync_group(client(), engine, crm_mapping, "leads", force=True)
    assert summary.status == "limited"
    assert "REQUEST_LIMIT_EXCEEDED" in summary.message and "watermark" in summary.message
    with engine.connect() as conn:
        assert {o: watermarks.read(conn, o) for o in marks} == marks
        run = conn.execute(sa.select(schema.sync_runs).order_by(schema.sync_runs.c.sync_id.desc())).first()
    assert run.status == "limited"
    assert len(store_leads(engine)) == 5


def test_server_unavailable_is_retried_with_backoff(sf, engine, crm_mapping):
    seed_leads(sf, 3, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    sf.inject_fault("SERVER_UNAVAILABLE", endpoint="query", times=2)
    c = client()
    summary = sync.sync_group(c, engine, crm_mapping, "leads", force=True)
    assert summary.status == "success" and summary.records_changed == 3
    assert c.session.retries == 2
    assert summary.api_calls == 6  # 4 queries + the 2 refused tries, each a counted call


def test_mapping_check_names_the_missing_field(sf, engine, tmp_path):
    raw = yaml.safe_load(mapping_mod.DEFAULT_PATH.read_text())
    raw["objects"]["Lead"]["fields"]["Lead_Grade__c"] = None
    bad = mapping_mod.parse(raw, "crm_fields.yaml")
    with pytest.raises(MappingError) as err:
        sync.ensure_mapping_checked(client(), engine, bad, dt.datetime.now(dt.UTC))
    assert "the org has no field Lead.Lead_Grade__c" in str(err.value)
    assert sync.ensure_mapping_checked(client(), engine, mapping_mod.load(), dt.datetime.now(dt.UTC)) is True


def _synced(sf, engine, crm_mapping, n: int = 3) -> tuple[list[str], dt.datetime]:
    ids = seed_leads(sf, n, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    sync.sync_group(client(), engine, crm_mapping, "leads", force=True)
    with engine.connect() as conn:
        return ids, watermarks.read(conn, "Lead")


def _audit(engine, event: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.audit).where(schema.audit.c.event == event)).all()


def test_writeback_only_when_changed(sf, engine, crm_mapping):
    ids, as_of = _synced(sf, engine, crm_mapping)
    due = dt.datetime(2030, 1, 2, 15, 0, tzinfo=dt.UTC)
    c = client()
    result = writeback.stamp(
        c,
        engine,
        crm_mapping,
        {i: {"sla_status": "Warning", "sla_due": due} for i in ids},
        as_of=as_of,
        context=CTX,
    )
    assert sorted(result.written) == sorted(ids)
    assert c.usage().calls == 2  # one LastModifiedDate pre-check query + one composite call for all three
    assert sf.get("Lead", ids[0])["SLA_Status__c"] == "Warning"
    again = writeback.stamp(
        c,
        engine,
        crm_mapping,
        {i: {"sla_status": "Warning", "sla_due": due} for i in ids},
        as_of=as_of,
        context=CTX,
    )
    assert again.written == [] and sorted(again.unchanged) == sorted(ids)
    assert c.usage().calls == 2  # nothing differed: no call at all
    assert len(_audit(engine, "crm_write")) == 3


def test_writeback_retries_unable_to_lock_row(sf, engine, crm_mapping):
    ids, as_of = _synced(sf, engine, crm_mapping)
    sf.inject_fault("UNABLE_TO_LOCK_ROW", endpoint="composite", times=1)
    result = writeback.stamp(
        client(), engine, crm_mapping, {ids[0]: {"sla_breach": True}}, as_of=as_of, context=CTX, retry=FAST
    )
    assert result.written == [ids[0]] and not result.failed
    assert sf.get("Lead", ids[0])["SLA_Breach__c"] is True


@pytest.mark.parametrize("precheck", [True, False], ids=["precheck", "org-412"])
def test_writeback_conflict_rereads_and_redecides(sf, engine, crm_mapping, precheck):
    ids, as_of = _synced(sf, engine, crm_mapping)
    # someone works lead 0 after our view was taken: our stamp must not land blindly
    sf.update("Lead", ids[0], {"Status": "SAL"}, now=as_of + dt.timedelta(seconds=5))
    seen: list[tuple[str, dict]] = []

    def decide(record_id, wanted, current):
        seen.append((record_id, dict(current)))
        return None if current.get("Status") == "SAL" else wanted

    wanted = {i: {"sla_status": "Breached"} for i in ids}
    result = writeback.stamp(
        client(), engine, crm_mapping, wanted, as_of=as_of, context=CTX, precheck=precheck, decide=decide
    )
    assert result.conflicts == [ids[0]] and result.left == [ids[0]]
    assert sorted(result.written) == sorted(ids[1:])
    assert sf.get("Lead", ids[0]).get("SLA_Status__c") is None  # not overwritten
    assert [(rid, cur["Status"]) for rid, cur in seen] == [(ids[0], "SAL")]
    conflicts = _audit(engine, "crm_write_conflict")
    assert [c.record_id for c in conflicts] == [ids[0]]

    # a decide that still wants the write gets it, conditional on the re-read
    sf.update("Lead", ids[0], {"Status": "SQL"}, now=as_of + dt.timedelta(seconds=6))
    again = writeback.stamp(
        client(),
        engine,
        crm_mapping,
        {ids[0]: {"sla_status": "Met"}},
        as_of=as_of,
        context=CTX,
        decide=lambda rid, w, cur: w,
        precheck=precheck,
    )
    assert again.written == [ids[0]] and again.conflicts == [ids[0]]
    assert sf.get("Lead", ids[0])["SLA_Status__c"] == "Met"


def test_org_group_lands_users_queues_opportunities(sf, engine, crm_mapping):
    user = sf.create(
        "User",
        {
            "Username": "a@x",
            "Name": "Ann Rep",
            "LastName": "Rep",
            "Email": "a@x.io",
            "IsActive": True,
            "TimeZoneSidKey": "Europe/London",
            "Team__c": "EMEA",
        },
    )
    queue = sf.create("Group", {"Name": "Breached SLA", "DeveloperName": "Breached_SLA", "Type": "Queue"})
    acct = sf.create("Account", {"Name": "Acme", "Tier__c": "Tier 1", "CS_Owner__c": user})
    opp = sf.create(
        "Opportunity",
        {
            "Name": "Acme deal",
            "AccountId": acct,
            "StageName": "Prospecting",
            "CloseDate": "2030-01-31",
            "OwnerId": user,
        },
    )
    sf.update("Opportunity", opp, {"StageName": "Proposal"})
    summary = sync.sync_group(client(), engine, crm_mapping, "org", force=True)
    assert summary.status == "success", summary.message
    assert summary.records_changed >= 5
    with engine.connect() as conn:
        users = {r.user_id: r for r in conn.execute(sa.select(schema.users))}
        queues = {r.queue_id: r for r in conn.execute(sa.select(schema.queues))}
        recs = {r.record_id: r for r in conn.execute(sa.select(schema.records))}
        hist = conn.execute(
            sa.select(schema.field_history).where(schema.field_history.c.record_id == opp)
        ).all()
    assert users[user].timezone == "Europe/London" and users[user].team == "EMEA"
    assert queues[queue].name == "Breached SLA"
    assert recs[acct].account_tier == "Tier 1" and recs[acct].fields["CS_Owner__c"] == user
    assert recs[opp].status == "Proposal" and recs[opp].account_id == acct
    assert ("StageName", "Prospecting", "Proposal") in {(h.field, h.old_value, h.new_value) for h in hist}


def test_slow_answer_times_out_and_is_retried(sf, engine, crm_mapping):
    seed_leads(sf, 2, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    c = SalesforceClient(retry=FAST, timeout=0.5)
    c.describe_fields("Lead")  # log in before the fault, so only the query is slow
    sf.inject_fault("SLOW", endpoint="query", times=1, delay_s=1.5)
    summary = sync.sync_group(c, engine, crm_mapping, "leads", force=True)
    assert summary.status == "success" and summary.records_changed == 2
    assert c.session.retries == 1


def test_session_refused_past_the_library_refresh_gets_one_fresh_hook(sf, engine, crm_mapping):
    # simple-salesforce re-logs in by itself up to 3 times; a 4th refusal reaches our client, which
    # builds a fresh hook (the hook caches its client) exactly once and retries.
    seed_leads(sf, 2, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    c = client()
    c.describe_fields("Lead")
    sf.inject_fault("INVALID_SESSION_ID", endpoint="query", times=4)
    summary = sync.sync_group(c, engine, crm_mapping, "leads", force=True)
    assert summary.status == "success" and summary.records_changed == 2
    assert c.relogins == 1
