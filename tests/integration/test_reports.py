"""Reports end to end, as a reader sees them.

Each of the four reports is built from a seeded store, sent through the real SmtpHook to the
SMTP sink, parsed back from the .eml and rendered in headless Chromium (Debian's chromium, one
browser for the module) with its charts resolved by Content-ID; the charts must load and the
report's key section must show the figures its CSV attachment holds. The CLI regenerates a past
period byte for byte, and the same rows in PostgreSQL give the same report as in SQLite.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import email
import email.policy
import io
import re
import shutil
from pathlib import Path

import pytest

from leadsla.cli import main
from leadsla.store import open_store
from tests.conftest import _new_postgres_url
from tests.notify_fixtures import smtp_sink  # noqa: F401 - fixture
from tests.reports_data import add_handoffs, generate, plant_cherry_picking, shipped_handoffs, synced

REPORTS = ("weekly", "feedback", "monthly", "quarterly")
#: The scheduled run's time for each report and the period it therefore covers (the last full one).
AT = {
    "weekly": dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC),
    "feedback": dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC),
    "monthly": dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC),
    "quarterly": dt.datetime(2027, 1, 1, 12, tzinfo=dt.UTC),
}
PERIOD = {"weekly": "2026-W46", "feedback": "2026-W46", "monthly": "2026-11", "quarterly": "2026-Q4"}
CHARTS = {
    "weekly": {"trend", "teams"},
    "feedback": {"reasons", "sources"},
    "monthly": {"funnel", "hours"},
    "quarterly": {"what_if"},
}
#: The SLA matrix's attachments every report carries: a row per handoff, and each handoff's owners.
MATRIX_CSVS = {"handoffs.csv"} | {f"handoff_{h.sla_id}.csv" for h in shipped_handoffs()}
CSVS = {
    "weekly": {"headline.csv", "compliance_by_team.csv", "weekly_trend.csv", "violations.csv"},
    "feedback": {"rejection_reasons.csv", "sources.csv", "campaigns.csv", "recycling.csv"},
    "monthly": {
        "headline.csv",
        "violations_by_hour_of_week.csv",
        "red_flags.csv",
        "cherry_picking.csv",
        "reps.csv",
        "funnel.csv",
        "recycling.csv",
    },
    "quarterly": {
        "headline.csv",
        "what_if.csv",
        "conversion_by_response.csv",
        "sources.csv",
        "what_if_by_handoff_and_tier.csv",
    },
}
CSVS = {name: files | MATRIX_CSVS for name, files in CSVS.items()}
CHROMIUM = shutil.which("chromium")
#: The month the seeded store's cherry-picking cases fall in (the monthly report's period).
NOVEMBER = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'store.db'}"
    engine = open_store(url)
    add_handoffs(plant_cherry_picking(generate(1500), NOVEMBER)).write(engine)
    synced(
        engine, dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    )  # after the data, so every period's figures are final
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def seeded_pg(postgres_server) -> str:
    """The same rows as `seeded`, in the embedded PostgreSQL (the same syncs and evaluation too: an
    open clock's figures are read as of the monitor's latest evaluation)."""
    url = _new_postgres_url(postgres_server)
    engine = open_store(url)
    add_handoffs(plant_cherry_picking(generate(1500), NOVEMBER)).write(engine)
    synced(engine, dt.datetime(2027, 2, 1, tzinfo=dt.UTC))
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:  # scripts/test.sh installs it; fail loudly rather than skip a feature
        pytest.fail("chromium is not installed: run `apt-get install -y chromium` (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.postgres
@pytest.mark.parametrize("name", REPORTS)
def test_past_period_regenerates_identically_on_both_backends(seeded, seeded_pg, tmp_path, name):
    for run, url in (("a", seeded), ("b", seeded), ("pg", seeded_pg)):
        # --at: the test data runs into 2027, so "now" may still be inside the period
        assert (
            main(
                [
                    "report",
                    name,
                    "--period",
                    PERIOD[name],
                    "--at",
                    "2027-02-01T00:00:00+00:00",
                    "--store",
                    url,
                    "--out",
                    str(tmp_path / run),
                ]
            )
            == 0
        )
    first = files_of(tmp_path / "a")
    assert files_of(tmp_path / "b") == first  # the same period regenerated later: byte for byte
    assert files_of(tmp_path / "pg") == first  # the same rows in PostgreSQL: the same report
    stem = f"{name}_{PERIOD[name]}"
    assert set(first) == {f"{stem}.html"} | {f"{stem}_{c}.png" for c in CHARTS[name]} | {
        f"{stem}_{c}" for c in CSVS[name]
    }
    assert all(
        len(first[f"{stem}_{c}"].decode().splitlines()) > 1 for c in CSVS[name]
    )  # a header and figures


@pytest.mark.parametrize(
    "name,period",
    [("weekly", "2026-W35"), ("feedback", "2026-W35"), ("monthly", "2026-08"), ("quarterly", "2026-Q2")],
)
def test_a_period_before_any_data_still_builds(seeded, tmp_path, name, period):
    # A quiet week (or a new org's first scheduled run) must send a report saying so, not fail the task.
    assert main(["report", name, "--period", period, "--store", seeded, "--out", str(tmp_path)]) == 0
    html = (tmp_path / f"{name}_{period}.html").read_text()
    assert period in html
    if name == "weekly":
        assert "<th>Handoffs (SLA clocks started)</th><td>0</td>" in html
        assert "n/a (no decided clocks in 2026-W35); target 80%" in html


def test_default_period_is_the_last_full_one(seeded, tmp_path):
    assert (
        main(
            [
                "report",
                "monthly",
                "--at",
                "2026-12-03T12:00:00+00:00",
                "--store",
                seeded,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "monthly_2026-11.html").exists()


def test_bad_period_is_one_clear_line(seeded, tmp_path, capsys):
    assert main(["report", "monthly", "--period", "2026-W46", "--store", seeded, "--out", str(tmp_path)]) == 2
    assert "is not a month" in capsys.readouterr().err


def html_as_a_mail_client_shows_it(msg: email.message.EmailMessage) -> str:
    """The HTML body with each `cid:` reference replaced by its related MIME part's bytes, as a mail
    client resolves it; a reference without a part stays `cid:` and cannot load in the browser."""
    parts = {p["Content-ID"].strip("<>"): p for p in msg.walk() if p["Content-ID"]}

    def inline(m: re.Match) -> str:
        part = parts.get(m[1])
        if part is None:
            return m[0]
        data = base64.b64encode(part.get_payload(decode=True)).decode()
        return f'src="data:{part.get_content_type()};base64,{data}"'

    return re.sub(r'src="cid:([^"]+)"', inline, msg.get_body(("html",)).get_content())


def cells(page, selector: str) -> list[list[str]]:
    """The text of each data row's cells of a table (the header row left out)."""
    return page.eval_on_selector_all(
        f"{selector} tr",
        "rows => rows.slice(1).map(r => Array.from(r.children).map(c => c.innerText.trim()))",
    )


def check_headline(page, csvs: dict[str, list[dict]]) -> None:
    """The block the report opens with: four figures, each with its change, as in headline.csv."""
    rows = cells(page, "#headline")
    assert (
        [r[0] for r in rows]
        == [r["figure"] for r in csvs["headline.csv"]]
        == [
            "Compliance against target",
            "Breaches",
            "Revenue affected",
            "Red flags raised",
        ]
    )
    assert [r[2] for r in rows] == [r["change"] for r in csvs["headline.csv"]]


def check_matrix(page, csvs: dict[str, list[dict]]) -> None:
    """A row and a section for every handoff of the shipped policy, as in handoffs.csv, and the
    headline's breaches the sum of the handoffs'."""
    rows = cells(page, "#sla-matrix")
    names = [h.name for h in shipped_handoffs()]
    assert [r[0] for r in rows] == [r["handoff"] for r in csvs["handoffs.csv"]] == names
    assert [r[1] for r in rows] == [r["compliance"] for r in csvs["handoffs.csv"]]
    assert [r[4] for r in rows] == [r["revenue_affected"] for r in csvs["handoffs.csv"]]
    for h in shipped_handoffs():
        assert page.locator(f"#handoff-{h.sla_id}").inner_text() == h.name
    breaches = [int(r["breaches"]) for r in csvs["handoffs.csv"]]
    assert breaches[0] and any(breaches[1:])  # sales touch breaches, and so do AE or CS
    if "headline.csv" in csvs:
        assert int(cells(page, "#headline")[1][1].split()[0]) == sum(breaches)  # then the note


def check_weekly(page, csvs: dict[str, list[dict]]) -> None:
    """Adherence rate, violations and revenue affected, agreeing with the per-team CSV."""
    check_headline(page, csvs)
    check_matrix(page, csvs)
    breaches = int(csvs["handoffs.csv"][0]["breaches"])  # the sales touch's, the details' SLA
    head = page.locator("#details").inner_text()
    adherence = re.search(r"Adherence rate\s+(\d+)% \((\d+) of (\d+) decided\)", head)
    assert adherence, head
    pct, met, decided = map(int, adherence.groups())
    teams = csvs["compliance_by_team.csv"]
    assert decided == sum(int(r["decided"]) for r in teams) > 0 and met == sum(int(r["met"]) for r in teams)
    assert pct == round(100 * met / decided)
    violations = int(re.search(r"Violations\s+(\d+)", head)[1])
    assert violations == decided - met == len(csvs["violations.csv"]) == breaches
    revenue = re.search(r"Estimated pipeline lost to delays\s+\$([\d,]+) \((\d+) late leads\)", head)
    assert revenue and int(revenue[1].replace(",", "")) > 0 and int(revenue[2]) == violations
    assert "Estimate: deal value $25,000" in head  # the assumption printed beside the figure
    assert [row[0] for row in cells(page, "#teams")] == [r["team"] for r in teams]


def check_feedback(page, csvs: dict[str, list[dict]]) -> None:
    """Rejection reasons by volume, as in the CSV; sources and campaigns present; every handoff."""
    check_matrix(page, csvs)
    reasons = csvs["rejection_reasons.csv"]
    assert reasons and [r[:2] for r in cells(page, "#rejection-reasons")] == [
        [r["rejection_reason"], r["rejects"]] for r in reasons
    ]
    assert len(cells(page, "#sources")) == len(csvs["sources.csv"]) > 0
    assert len(cells(page, "#campaigns")) == len(csvs["campaigns.csv"]) > 0


def check_monthly(page, csvs: dict[str, list[dict]]) -> None:
    """The red-flag table with its checks (two per handoff, three for the lead funnel and
    everyone), each naming its handoff, the triggers, the cherry-picking audit naming the seeded
    cases' leads and reps, and the root-cause sentences."""
    check_headline(page, csvs)
    check_matrix(page, csvs)
    flags = cells(page, "#red-flags")
    checks = 2 * len(shipped_handoffs()) + 3
    raised = int(re.match(rf"(\d+) of {checks}", cells(page, "#headline")[3][1])[1])
    assert raised == sum(f[4] == "RED FLAG" for f in flags)
    assert len(flags) == checks and "War Room" in page.locator("#red-flags").inner_text()
    assert [f[1] for f in flags] == [r["handoff"] for r in csvs["red_flags.csv"][:checks]]
    assert {h.name for h in shipped_handoffs()} < {f[1] for f in flags}
    triggers = cells(page, "#triggers")
    per_handoff = [t[1] for t in triggers if t[0] == "Compliance below target two months running"]
    assert per_handoff == [h.name for h in shipped_handoffs()]
    picking = cells(page, "#cherry-picking")
    assert [f[0] for f in flags] + [t[0] for t in triggers] + [c[0] for c in picking] == [
        r["check"] for r in csvs["red_flags.csv"]
    ]
    assert [c[3] for c in picking[:2]] == ["RED FLAG", "RED FLAG"]  # the seeded self-assignment and move
    found = cells(page, "#cherry-picking-findings")
    assert [f[:3] for f in found] == [
        [r["check"], r["leads"], r["people"]] for r in csvs["cherry_picking.csv"]
    ]
    assert found[0][1:3] == ["Cherry <self-assigned> (00QCHERRY000000001)", "Ava East"]
    assert found[1][1:3] == ["Cherry <moved> (00QCHERRY000000002)", "Ben East -> Cy East, by Cy East"]
    assert page.locator("#root-causes li").count() >= 1


def check_quarterly(page, csvs: dict[str, list[dict]]) -> None:
    """The threshold what-if (violations under each alternative target) and its recommendation."""
    check_headline(page, csvs)
    what_if = cells(page, "#what-if")
    assert [row[1] for row in what_if] == [r["violations"] for r in csvs["what_if.csv"]]
    assert len(what_if) == 6 and sum(int(r[1]) for r in what_if) > 0
    assert re.fullmatch(
        r"Recommendation: (tighten|loosen|keep): .+", page.locator("#recommendation").inner_text()
    )
    check_matrix(page, csvs)
    tiers, rows = cells(page, "#what-if-by-tier"), csvs["what_if_by_handoff_and_tier.csv"]
    assert [[t[0], t[1], t[5], t[7], t[8]] for t in tiers] == [
        [r["handoff"], r["tier"], r["proposed_target"], r["violation_change"], r["conversion_difference"]]
        for r in rows
    ]
    assert [r["sla_id"] for r in rows] == [h.sla_id for h in shipped_handoffs()]  # one tier each
    by_id = {r["sla_id"]: r for r in rows}
    assert by_id["demo_to_proposal"]["conversion_difference"].startswith("won: ")
    assert by_id["cs_kickoff"]["conversion_difference"].startswith("onboarded: ")
    assert by_id["cs_onboarding"]["conversion_difference"].startswith("n/a (no conversion defined")


CHECKS = {
    "weekly": check_weekly,
    "feedback": check_feedback,
    "monthly": check_monthly,
    "quarterly": check_quarterly,
}


@pytest.mark.parametrize("name", REPORTS)
def test_report_mail_arrives_and_renders_in_chromium(name, seeded, smtp_sink, browser, tmp_path):  # noqa: F811
    from leadsla.reports.config import load_report_config
    from leadsla.reports.run import send_report

    out = send_report(name, at=AT[name], store_url=seeded, out=tmp_path / "saved")
    assert out["period"] == PERIOD[name]
    (eml,) = sorted(Path(smtp_sink.directory).glob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert msg["Subject"].endswith(f" {PERIOD[name]}")
    assert msg["To"] == ", ".join(getattr(load_report_config().recipients, name))
    html = msg.get_body(("html",)).get_content()
    cids = {p["Content-ID"].strip("<>") for p in msg.walk() if p.get_content_type() == "image/png"}
    assert cids == CHARTS[name] and all(f'src="cid:{c}"' in html for c in cids)
    attachments = {p.get_filename(): p for p in msg.iter_attachments() if p.get_content_type() == "text/csv"}
    assert set(attachments) == CSVS[name]
    csvs = {n: list(csv.DictReader(io.StringIO(p.get_content()))) for n, p in attachments.items()}

    saved = tmp_path / "saved" / f"{name}_{PERIOD[name]}.html"
    for shown_as in ("e-mail", "saved file"):
        page = browser.new_page()
        try:
            if shown_as == "e-mail":
                page.set_content(html_as_a_mail_client_shows_it(msg))
            else:
                page.goto(saved.as_uri())
            widths = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            assert len(widths) == len(CHARTS[name]) and all(w > 0 for w in widths), (shown_as, widths)
            CHECKS[name](page, csvs)
        finally:
            page.close()


def test_audit_timeline_and_export(seeded, tmp_path, capsys):
    assert main(["audit", "--record", "00Q000000000000001", "--store", seeded]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and "clock_start" in out[0] and "rule=sales_touch.start" in out[0]
    assert "task=/dags/sla_monitor/runs/scheduled__" in out[0] and "/tasks/evaluate try=1" in out[0]
    target = tmp_path / "audit.csv"
    assert (
        main(
            [
                "audit",
                "export",
                "--from",
                "2026-11-01",
                "--to",
                "2026-11-08",
                "--out",
                str(target),
                "--store",
                seeded,
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(target.open()))
    assert rows and all("2026-11-01" <= r["at"] < "2026-11-08" for r in rows)
    assert {"policy_version", "dag_id", "run_id", "task_id", "try_number"} <= set(rows[0])
    assert rows[0]["policy_version"] == "2026.11-tiered"
    assert main(["audit", "--record", "nope", "--store", seeded]) == 2


@pytest.fixture(scope="module")
def early_and_late(tmp_path_factory) -> tuple[str, str]:
    """The same org in two stores: as it stood on 5 October 2026, and three months later (more
    leads, later touches, breaches, conversions and rejections of the same leads)."""
    urls = []
    for now in (dt.datetime(2026, 10, 5, 12, tzinfo=dt.UTC), None):
        url = f"sqlite:///{tmp_path_factory.mktemp('moved_on') / 'store.db'}"
        engine = open_store(url)
        org = generate(900, start=dt.datetime(2026, 8, 1, tzinfo=dt.UTC), days=150, now=now)
        add_handoffs(plant_cherry_picking(org, dt.datetime(2026, 9, 1, tzinfo=dt.UTC)), now=now).write(engine)
        engine.dispose()
        urls.append(url)
    return urls[0], urls[1]


@pytest.mark.parametrize(
    "name,period",
    [("weekly", "2026-W38"), ("feedback", "2026-W38"), ("monthly", "2026-09"), ("quarterly", "2026-Q3")],
)
def test_a_past_period_is_the_same_after_the_store_moved_on(early_and_late, tmp_path, name, period):
    early, late = early_and_late
    for run, url in (("early", early), ("late", late)):
        assert main(["report", name, "--period", period, "--store", url, "--out", str(tmp_path / run)]) == 0
    first = files_of(tmp_path / "early")
    assert files_of(tmp_path / "late") == first
    stem = f"{name}_{period}"
    # A handoff with no clock that week has a header-only owners file; handoffs.csv has every handoff.
    filled = CSVS[name] - MATRIX_CSVS | {"handoffs.csv"}
    assert all(len(first[f"{stem}_{c}"].decode().splitlines()) > 1 for c in filled)
    assert any(
        len(first[f"{stem}_handoff_{h.sla_id}.csv"].decode().splitlines()) > 1 for h in shipped_handoffs()[1:]
    )
