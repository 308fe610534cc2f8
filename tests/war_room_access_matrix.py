"""The War Room's role x route x team matrix: every Airflow user of `MATRIX_USERS` (SimpleAuthManager
roles, mapped and unmapped, managers, a user Airflow gives no role) on every route, for the default
handoff and two Opportunity handoffs (the `sla` selector), with and without a team filter, against
what the policy's `access:` section says they may see.

The expectations are computed here, independently of `leadsla.war_room`: from the org's rows
(`matrix_org`) and the policy section (`MATRIX_ACCESS`), by the rules the decision record states
(docs/decisions/2026-12-06-war-room-least-privilege.md). A case is wrong when its status differs,
when it shows a lead outside the user's teams (any `/lead/<id>` link), when a drill-down lists
other leads than expected, or when the SLA matrix counts other open red clocks than that drill-down.
A clock whose owner has no team (a queue) counts for its SLA's team (`slas[].team`).
`war_room_authz_matrix(engine)` runs it on a store; bench/authz.py and
tests/integration/test_war_room_access.py call it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from tests.reports_data import Builder, t
from tests.war_room_fixtures import NOW, handoff_clock, opportunity, routed_org

#: The policy's `access:` section the matrix runs under.
MATRIX_ACCESS = {
    "requires": {"dags": ["crm_sync", "sla_monitor", "lead_routing"]},
    "all_teams": {"roles": ["Admin", "RevOps"], "users": ["revops"]},
    "crm_users": {
        "rita": "r1@example.com",
        "vera": "M1@Example.com",  # e-mails match case-insensitively
        "mona": "m2@example.com",
        "erin": "e1@example.com",
        "ghost": "ghost@example.com",
        "xavier": "x1@example.com",
    },
}
#: Policy teams added for the matrix: team B's policy key (B is its CRM name), managed by Mona.
MATRIX_TEAMS = {
    "b_team": {"calendar": "us_east", "crm_names": ["B"], "manager": "M2"},
}


@dataclass(frozen=True)
class MatrixUser:
    name: str
    role: str | None
    note: str


#: Airflow users (SimpleAuthManager: a name and a role) and who they are in the org.
MATRIX_USERS = (
    MatrixUser("admin", "ADMIN", "Airflow admin: every team"),
    MatrixUser("revops", "OP", "named in access.all_teams.users: every team"),
    MatrixUser("rita", "USER", "rep R1 of team A (access.crm_users)"),
    MatrixUser("r3@example.com", "VIEWER", "rep R3 of team B (user name is the e-mail)"),
    MatrixUser("vera", "VIEWER", "VP M1 (leadership); R1 and R2 report to her: leadership and A"),
    MatrixUser("mona", "USER", "M2: no team, manager of policy team b_team: team B"),
    MatrixUser("erin", "USER", "rep E1 of SDR East (policy team sdr_east)"),
    MatrixUser("viewer", "VIEWER", "unmapped: nothing"),
    MatrixUser("ghost", "USER", "mapped to an e-mail no CRM user has: nothing"),
    MatrixUser("xavier", "USER", "mapped to an inactive CRM user: nothing"),
    MatrixUser("norole", None, "Airflow gives no role: nothing"),
)
RANGE = {"start": "2026-11-01", "end": "2026-11-10"}
TEAM_FILTERS = ("", "A", "B")
DRILLS = ("open:red", "breaches_today", "overall", "unowned")
#: The handoff selector's values the matrix runs ("": the default, the reports' sales_touch).
SLAS = ("", "demo_to_proposal", "cs_kickoff")
DEFAULT_SLA = "sales_touch"


def matrix_org() -> Builder:
    """`routed_org()` and: R1, R2 report to Vera (M1); Mona (M2, no team) manages b_team; Erin (E1,
    SDR East); LX, Sam's (team B) lead that breached and was reassigned to Vera (held by
    leadership, answered for by B). Opportunities: OB1, Sam's (team B), its demo_to_proposal clock
    violated in the range and still open (red); OQ1 held by the Lead Intake queue (Q1), its cs_kickoff
    clocks teamless (count for the SLA's team, cs, which no matrix user but every-team ones sees):
    one met in the range, one breached today."""
    b = routed_org()
    for user in b.users:
        if user["user_id"] in ("R1", "R2"):
            user["manager_id"] = "M1"
    b.user("M2", "Mona Manager", "-", role="Manager")
    b.users[-1]["team"] = None
    b.user("E1", "Erin East", "SDR East")
    b.lead("LX", owner="M1", source="Web", stages={"MQL": t("2026-11-20 08:30")})
    b.clock(
        "LX",
        t("2026-11-20 09:15"),
        target_h=4,
        elapsed_h=3.9,
        owner="M1",
        team="leadership",
        accountable="R3",
        accountable_team="B",
        breached_at=t("2026-11-20 13:15"),
        now=NOW,
    )
    opportunity(b, "OB1", owner="R3", stage="Demo Completed", amount=40000, account=None)
    handoff_clock(
        b,
        "demo_to_proposal",
        "OB1",
        t("2026-11-05 15:00"),
        target_h=24,
        elapsed_h=24,
        owner="R3",
        team="B",
        breached_at=t("2026-11-09 15:00"),
        now=NOW,
    )
    opportunity(b, "OQ1", owner="Q1", stage="Closed Won", amount=5000, account=None)
    handoff_clock(
        b,
        "cs_kickoff",
        "OQ1",
        t("2026-11-03 15:00"),
        target_h=16,
        elapsed_h=5,
        owner="Q1",
        team=None,
        stopped_at=t("2026-11-04 15:00"),
    )
    handoff_clock(
        b,
        "cs_kickoff",
        "OQ1",
        t("2026-11-19 15:00"),
        target_h=16,
        elapsed_h=17,
        owner="Q1",
        team=None,
        breached_at=t("2026-11-20 12:00"),
        now=NOW,
    )
    return b


def write_matrix_org(engine) -> Builder:
    """`matrix_org()` into the store, with the Lead Intake queue (Q1); returns the builder."""
    from leadsla.store import schema

    b = matrix_org()
    b.write(engine)
    with engine.begin() as conn:
        conn.execute(schema.queues.insert(), [{"queue_id": "Q1", "name": "Lead Intake", "synced_at": NOW}])
    return b


def matrix_policy():
    """The shipped policy with `MATRIX_TEAMS` and `MATRIX_ACCESS`."""
    import yaml

    from leadsla.policy import DEFAULT_POLICY_PATH, policy_from_dict

    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    data["teams"] = {**data["teams"], **MATRIX_TEAMS}
    data["access"] = MATRIX_ACCESS
    return policy_from_dict(data, "matrix policy", base_dir=DEFAULT_POLICY_PATH.parent)


# --- the expectations, from the rows and the section ---------------------------------------------


def _policy_teams(policy_data_teams: dict) -> dict[str, list[str]]:
    return {key: [key, *spec.get("crm_names", [])] for key, spec in policy_data_teams.items()}


def _sla_team_names(policy_teams: dict[str, dict]) -> dict[str, set[str]]:
    """Each SLA's team's spellings (key and crm_names): a teamless clock of the SLA counts for it."""
    import yaml

    from leadsla.policy import DEFAULT_POLICY_PATH

    slas = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))["slas"]
    spellings = _policy_teams(policy_teams)
    return {sla["id"]: set(spellings.get(sla.get("team"), [])) for sla in slas}


def _team_ok(team: str | None, names: set[str], sla_names: set[str]) -> bool:
    """A clock's team is one of `names`; a teamless one counts for its SLA's team (`sla_names`)."""
    return team in names if team is not None else bool(sla_names & names)


def expected_names(b: Builder, user: MatrixUser, policy_teams: dict[str, dict]) -> set[str] | None:
    """The team names `user` sees: None for every team, an empty set for none (a 403)."""
    if user.role is None:
        return set()
    roles = {r.casefold() for r in MATRIX_ACCESS["all_teams"]["roles"]}
    if user.role.casefold() in roles or user.name in MATRIX_ACCESS["all_teams"]["users"]:
        return None
    email = MATRIX_ACCESS["crm_users"].get(user.name) or (user.name if "@" in user.name else None)
    me = [u for u in b.users if email and u["is_active"] and u["email"].lower() == email.lower()]
    if len(me) != 1:
        return set()
    spellings = _policy_teams(policy_teams)

    def key(team: str | None) -> str | None:
        if not team:
            return None
        return next((k for k, names in spellings.items() if team.lower() in (n.lower() for n in names)), team)

    keys = {key(me[0]["team"])}
    bosses = {me[0]["user_id"]}
    while True:
        reports = {u["user_id"] for u in b.users if u["is_active"] and u["manager_id"] in bosses} - bosses
        if not reports:
            break
        bosses |= reports
        keys |= {key(u["team"]) for u in b.users if u["user_id"] in reports}
    keys |= {k for k, spec in policy_teams.items() if spec.get("manager") == me[0]["user_id"]}
    keys.discard(None)
    names = set(keys)
    for k in keys:
        names |= set(spellings.get(k, []))
    names |= {u["team"] for u in b.users if u["team"] and key(u["team"]) in keys}
    return names


def _unowned(b: Builder, policy_teams: dict[str, dict]) -> dict[str, str | None]:
    """Lead -> the team it waits for, for the org's leads no active user owns (all open, no lock,
    no territory matches them: the team of an inactive owner, else none); only Leads wait so."""
    active = {u["user_id"] for u in b.users if u["is_active"]}
    team_of = {u["user_id"]: u["team"] for u in b.users}
    spellings = _policy_teams(policy_teams)
    out = {}
    for lead in b.leads:
        if lead["object_type"] != "Lead" or lead["owner_id"] in active:
            continue
        team = team_of.get(lead["owner_id"])
        out[lead["record_id"]] = next(
            (k for k, names in spellings.items() if team and team.lower() in (n.lower() for n in names)), None
        )
    return out


def expected_leads(b: Builder, names: set[str] | None, policy_teams: dict[str, dict]) -> set[str]:
    """The leads the scope sees: its owner's team, a clock held or answered for (a teamless one:
    by its SLA's team), an unowned wait."""
    every = {lead["record_id"] for lead in b.leads}
    if names is None:
        return every
    team_of = {u["user_id"]: u["team"] for u in b.users}
    sla_names = _sla_team_names(policy_teams)
    seen = {lead["record_id"] for lead in b.leads if team_of.get(lead["owner_id"]) in names}
    seen |= {
        c["record_id"]
        for c in b.clocks
        if any(_team_ok(c[col], names, sla_names[c["sla_id"]]) for col in ("team", "accountable_team"))
    }
    seen |= {lead for lead, team in _unowned(b, policy_teams).items() if team in names}
    return seen


def expected_drill(
    b: Builder,
    figure: str,
    names: set[str] | None,
    team: str,
    policy_teams: dict[str, dict],
    sla: str = DEFAULT_SLA,
) -> list[str]:
    """The records a drill-down of handoff `sla` lists (sorted), by the figure's own rule."""
    sla_names = _sla_team_names(policy_teams)[sla]

    def ok(value: str | None, wanted: set[str] | None) -> bool:
        return wanted is None or _team_ok(value, wanted, sla_names)

    def live(c: dict) -> bool:
        held = c["sla_id"] == sla and (ok(c["team"], names) or ok(c["accountable_team"], names))
        return held and (not team or ok(c["team"], {team}))

    if figure == "open:red":
        ids = {
            c["record_id"] for c in b.clocks if live(c) and c["stopped_at"] is None and c["colour"] == "red"
        }
    elif figure == "breaches_today":
        zone = ZoneInfo("America/New_York")
        midnight = dt.datetime.combine(NOW.astimezone(zone).date(), dt.time(), zone)
        ids = {
            c["record_id"]
            for c in b.clocks
            if live(c) and c["breached_at"] and midnight <= c["breached_at"] <= NOW
        }
    elif figure == "overall":
        zone = ZoneInfo("America/New_York")
        start = dt.datetime(2026, 11, 1, tzinfo=zone)
        end = dt.datetime(2026, 11, 11, tzinfo=zone)
        ids = {
            c["record_id"]
            for c in b.clocks
            if c["sla_id"] == sla
            and start <= c["clock_start"] < end
            and ok(c["accountable_team"], names)
            and (not team or ok(c["accountable_team"], {team}))
            and ((c["breached_at"] and c["breached_at"] < end) or (c["stopped_at"] and c["stopped_at"] < end))
        }
    else:  # unowned: the team filter does not narrow it
        ids = {lead for lead, waits in _unowned(b, policy_teams).items() if names is None or waits in names}
    return sorted(ids)


# --- running it ----------------------------------------------------------------------------------

_LEAD_LINK = re.compile(r'href="[^"]*/lead/([^"?/]+)')
_DRILLED = re.compile(r'<a class="lead" href="[^"]*">([^<]+)</a>')


def _matrix_open_red(html: str, sla: str) -> int | None:
    """The SLA matrix's open red count of handoff `sla` on a page (None: no such row)."""
    row = re.search(rf'<tr id="matrix-{sla}"[^>]*>.*?<td class="open-red[^"]*">(.*?)</td>', html, re.S)
    return int(re.sub(r"<[^>]+>", "", row.group(1))) if row else None


def war_room_authz_matrix(engine) -> dict[str, Any]:
    """Every case of the matrix on the War Room over `engine` (an empty store: the org is written
    here). Needs Airflow's auth manager ready (`tests.war_room_fixtures.prepare_airflow_auth`).

    Returns:
        authz_cases, authz_wrong, denied_audited (the `war_room_denied` rows written), and the
        first wrong cases (`wrong`: user, route, expected, got).
    """
    import yaml
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    from leadsla.policy import DEFAULT_POLICY_PATH
    from leadsla.reports.config import load_report_config
    from leadsla.war_room.app import auth_manager, create_app

    b = write_matrix_org(engine)
    policy_teams = {
        **yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))["teams"],
        **MATRIX_TEAMS,
    }
    app = create_app(
        engine=engine,
        config=load_report_config(),
        policy=matrix_policy(),
        clock=lambda: NOW,
        range_ttl_seconds=60,
    )
    every_lead = sorted(lead["record_id"] for lead in b.leads)
    cases = wrong = 0
    denials = 0
    failures: list[dict] = []
    for user in MATRIX_USERS:
        client = TestClient(app)
        token = auth_manager().generate_jwt(SimpleAuthManagerUser(username=user.name, role=user.role))
        client.cookies.set("_token", token)
        names = expected_names(b, user, policy_teams)
        allowed = names is None or bool(names)
        visible = expected_leads(b, names, policy_teams) if allowed else set()
        requests: list[tuple[str, dict, int, list[str] | None]] = []
        for sla in SLAS:
            chosen = {"sla": sla} if sla else {}
            for team in TEAM_FILTERS:
                requests.append(("/", {**chosen, **({"team": team} if team else {})}, 200, None))
                for figure in DRILLS:
                    params = {
                        "figure": figure,
                        **chosen,
                        **(RANGE if figure == "overall" else {}),
                        **({"team": team} if team else {}),
                    }
                    expected = (
                        expected_drill(b, figure, names, team, policy_teams, sla or DEFAULT_SLA)
                        if allowed
                        else None
                    )
                    requests.append(("/drill", params, 200, expected))
        for record_id in [*every_lead, "NOPE"]:
            requests.append((f"/lead/{record_id}", {}, 200 if record_id in visible else 404, None))
        for path, params, status, drilled in requests:
            cases += 1
            want = status if allowed else 403
            response = client.get(path, params=params, headers={"accept": "text/html"})
            shown = set(_LEAD_LINK.findall(response.text)) - {"NOPE"}
            got_drill = sorted(_DRILLED.findall(response.text)) if drilled is not None else None
            problems = []
            if response.status_code != want:
                problems.append(f"status {response.status_code}, expected {want}")
            if shown - visible:
                problems.append(f"shows leads outside the scope: {sorted(shown - visible)}")
            if allowed and drilled is not None and got_drill != drilled:
                problems.append(f"drill-down lists {got_drill}, expected {drilled}")
            if allowed and path == "/":
                for sla in (DEFAULT_SLA, *SLAS[1:]):
                    red = expected_drill(b, "open:red", names, params.get("team", ""), policy_teams, sla)
                    if _matrix_open_red(response.text, sla) != len(red):
                        problems.append(f"matrix open red of {sla}: {_matrix_open_red(response.text, sla)}")
            if want == 403 or (want == 404 and path.startswith("/lead/") and path != "/lead/NOPE"):
                denials += 1
            if problems:
                wrong += 1
                if len(failures) < 20:
                    failures.append({"user": user.name, "path": path, "params": params, "problems": problems})
    return {"authz_cases": cases, "authz_wrong": wrong, "denials_expected": denials, "wrong": failures}
