"""The War Room as a FastAPI app, mounted by the plugin inside Airflow's API server (url prefix
/war-room) and shown in the UI through a navigation link.

Behind Airflow's own login: every route needs the JWT the Airflow UI keeps in the `_token` cookie
(or an `Authorization: Bearer` header), validated by the configured auth manager; without one a
browser is redirected to the auth manager's login page and an API client gets 401.

Least privilege (`war_room.access`, the policy's `access:` section): every route then asks the
auth manager whether the user may read the War Room and computes the teams they see; anything
short of a yes (a missing permission, an unmapped user, a policy that does not load, any error) is
a 403 page (or JSON for an API client) saying why, audited as `war_room_denied`, and no data. Every
read is filtered by the user's teams; a lead outside them is the same 404 as a lead the store does
not hold. Lead text is data: every template is autoescaped. Never writes anything but the
`war_room_visit` and `war_room_denied` audit rows.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

import jinja2
import pandas as pd
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from leadsla.paths import templates_dir
from leadsla.policy import Policy
from leadsla.reports.config import ReportConfig, load_report_config
from leadsla.war_room import figures, matrix, queries
from leadsla.war_room.access import Denied, Scope, authorize, team_scope
from leadsla.war_room.filters import FilterError, Filters, parse_filters
from leadsla.war_room.handoffs import Handoff, handoffs, watched_fields

log = logging.getLogger(__name__)
TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class NotLoggedIn(Exception):
    """The request carries no valid Airflow token."""


def auth_manager():
    """The auth manager that validates the War Room's tokens and sends a browser to its login page:
    the API server's (already initialised there), or initialised here when the app runs on its own
    (tests, the bench, a bare uvicorn) - which is also how tests and the bench mint a token for it
    (`auth_manager().generate_jwt(user)`)."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:
        return init_auth_manager()


async def current_user(request: Request) -> Any:
    """The Airflow user behind the request's token (Bearer header first, then the UI's cookie).

    Raises:
        NotLoggedIn: no token, or the auth manager rejects it (expired, revoked, forged).
    """
    from jwt import InvalidTokenError

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise NotLoggedIn("no token")
    try:
        return await auth_manager().get_user_from_token(token)
    except InvalidTokenError as exc:  # ExpiredSignatureError is one
        raise NotLoggedIn(str(exc)) from None


User = Annotated[Any, Depends(current_user)]


class Refused(Exception):
    """A logged-in user the War Room refuses (`Denied`), with who they are for the audit."""

    def __init__(self, user: Any, reason: str) -> None:
        super().__init__(reason)
        self.user = user
        self.reason = reason


class Viewer:
    """A user the War Room lets in, and the teams they see."""

    def __init__(self, user: Any, scope: Scope) -> None:
        self.user = user
        self.scope = scope

    @property
    def teams(self) -> frozenset[str] | None:
        """The team names their reads keep (`queries.Teams`): None for every team."""
        return self.scope.names


def allowed(request: Request, user: User) -> Viewer:
    """The request's user, if the auth manager lets them read the War Room, with their teams.

    Raises:
        Refused: anything short of a yes (module docstring); never data.
    """
    state: _WarRoomState = request.app.state.war_room
    try:
        policy = state.policy()
        if policy is None:
            raise Denied(
                "the SLA policy did not load, so the War Room cannot tell who may see which team "
                f"({state.policy_error()})"
            )
        authorize(auth_manager(), user, policy.access)
        scope = team_scope(state.store(), policy, user)
    except Denied as exc:
        raise Refused(user, exc.reason) from None
    except Exception as exc:  # fail closed: no answer is a no
        log.exception("War Room: access check failed")
        raise Refused(user, f"the War Room could not check access ({type(exc).__name__})") from None
    return Viewer(user, scope)


Allowed = Annotated[Viewer, Depends(allowed)]


#: A template renderer: `render(request, "page.html", status=200, **context)`.
Render = Callable[..., HTMLResponse]
#: Filter sets whose range figures are kept; past this many the cache starts again.
RANGE_CACHE_ENTRIES = 64


def _templates() -> jinja2.Environment:
    """The War Room's templates (autoescaped: lead text is data) with the page's number formats."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True, undefined=jinja2.StrictUndefined
    )
    # A figure that cannot be computed reads "n/a (why)", never "nan" (figures.unavailable).
    templates.filters["pct"] = lambda value, why="": figures.unavailable(value, why) or f"{value:.0%}"
    templates.filters["hours"] = lambda value, why="": figures.unavailable(value, why) or f"{value:.1f} h"
    templates.filters["when"] = lambda value: (
        "" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")
    )
    templates.filters["money"] = lambda value: (
        "unknown" if value is None or pd.isna(value) else f"{float(value):,.0f}"
    )
    templates.filters["clock_state"] = lambda state: queries.STATE_LABELS.get(state, state or "")
    templates.filters["duration"] = lambda seconds: (
        f"{abs(seconds) // 3600}h {abs(seconds) % 3600 // 60:02d}m"
    )
    templates.filters["remaining"] = lambda seconds: (
        ("overdue " if seconds < 0 else "") + templates.filters["duration"](seconds)
    )
    return templates


def _renderer(templates: jinja2.Environment) -> Render:
    """Renders a War Room template as the response, its links under the app's mount point."""

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(f"war_room/{name}").render(
            root=request.scope.get("root_path", ""), **context
        )
        return HTMLResponse(html, status_code=status)

    return render


class _WarRoomState:
    """What the routes read: the store, the report settings, the active policy and its handoffs
    (each read on first use), "now", and the range figures of recent filter sets."""

    def __init__(
        self,
        *,
        engine: sa.Engine | None,
        store_url: str | None,
        config: ReportConfig | None,
        policy: Policy | None,
        left_counts_as: str | None,
        clock: Callable[[], dt.datetime],
        range_ttl_seconds: float,
    ) -> None:
        self._engine = engine
        self._store_url = store_url
        self._config = config
        self._policy: Policy | None = policy
        self._policy_error: str | None = None
        self._left_counts_as = left_counts_as
        self.clock = clock
        self._range_ttl_seconds = range_ttl_seconds
        self._range_cache: dict[tuple, tuple[float, dict]] = {}
        self._handoffs: dict[str, Handoff] | None = None

    def store(self) -> sa.Engine:
        """The store: the engine given, else opened now from the URL or the `leadsla_store` connection."""
        if self._engine is None:
            from leadsla.store import open_store

            self._engine = open_store(self._store_url)
        return self._engine

    def settings(self) -> ReportConfig:
        """The report settings given, else include/config/reports.yaml's."""
        if self._config is None:
            self._config = load_report_config()
        return self._config

    def policy(self) -> Policy | None:
        """The policy given, else the active one (loaded once); None if it does not load - a
        warning in the log, `policy_error` says why (sla_health reports the files' problems)."""
        if self._policy is None and self._policy_error is None:
            from leadsla.errors import LeadSlaError
            from leadsla.policy import load_policy

            try:
                self._policy = load_policy()
            except LeadSlaError as exc:
                log.warning("War Room: the policy did not load: %s", exc)
                self._policy_error = str(exc)
        return self._policy

    def policy_error(self) -> str | None:
        """Why the active policy did not load (None if it did, or was not read yet)."""
        return self._policy_error

    def handoffs(self) -> dict[str, Handoff]:
        """Every SLA of the active policy as the War Room shows it (`war_room.handoffs`), each
        counting a handed-on clock as its `left_counts_as` says (as the reports count it) unless
        the app was given one; none when the policy does not load (no route then gets this far)."""
        if self._handoffs is None:
            policy = self.policy()
            if policy is None:
                return {}
            self._handoffs = handoffs(policy, self._left_counts_as)
        return self._handoffs

    def default_sla(self) -> str:
        """The handoff the page opens on: the reports' SLA (reports.yaml `sla_id`), else the
        policy's first."""
        known = self.handoffs()
        sla_id = self.settings().sla_id
        return sla_id if sla_id in known or not known else next(iter(known))

    def handoff(self, filters: Filters) -> Handoff:
        """The handoff the filters select (`parse_filters` checked it is the policy's)."""
        return self.handoffs()[filters.sla]

    def unowned_panel(self, now: dt.datetime, teams: queries.Teams) -> dict | None:
        """`queries.unowned_panel` at `now` under the policy, of `teams`; None when the policy does
        not load."""
        policy = self.policy()
        return queries.unowned_panel(self.store(), policy, now, teams=teams) if policy is not None else None

    def filters(self, request: Request) -> Filters:
        """The request's filters; the range defaults to the days ending today in leadership's timezone.

        Raises:
            FilterError: a filter value cannot be used.
        """
        params = request.query_params
        return parse_filters(
            self.clock(),
            self.settings().leadership_timezone,
            start=params.get("start"),
            end=params.get("end"),
            lead_source=params.get("lead_source"),
            owner=params.get("owner"),
            team=params.get("team"),
            sla=params.get("sla"),
            slas=list(self.handoffs()),
            default_sla=self.default_sla(),
        )

    def range_panel(self, filters: Filters, teams: queries.Teams) -> dict:
        """`queries.range_panel` of the filters' handoff and the user's `teams`, reused for
        `range_ttl_seconds` (so the drill-down lists exactly the rows the page counted); kept per
        SLA and scope, so one handoff's or team's figures are never served for another."""
        handoff = self.handoff(filters)
        key = ("panel", filters, handoff.id, handoff.left_counts_as, teams)
        return self._cached(
            key,
            lambda: queries.range_panel(
                self.store(), filters, handoff.id, handoff.left_counts_as, teams, handoff
            ),
        )

    def matrix_range(self, filters: Filters, teams: queries.Teams) -> dict[str, dict]:
        """`matrix.range_counts` of every handoff for the filters (whichever handoff they select)
        and the user's `teams`, reused like `range_panel`, per scope."""
        every = self.handoffs()
        shared = dataclasses.replace(filters, sla="")
        key = ("matrix", shared, tuple((h.id, h.left_counts_as) for h in every.values()), teams)
        return self._cached(key, lambda: matrix.range_counts(self.store(), every, shared, teams))

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        cached = self._range_cache.get(key)
        moment = time.monotonic()
        if cached and cached[0] > moment:
            return cached[1]
        value = compute()
        if len(self._range_cache) >= RANGE_CACHE_ENTRIES:
            self._range_cache.clear()
        self._range_cache[key] = (moment + self._range_ttl_seconds, value)
        return value


def create_app(
    *,
    engine: sa.Engine | None = None,
    store_url: str | None = None,
    config: ReportConfig | None = None,
    policy: Policy | None = None,
    left_counts_as: str | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    range_ttl_seconds: float = 60.0,
) -> FastAPI:
    """The War Room app.

    Args:
        engine: the store (tests pass one); else opened on first request from `store_url` or the
            `leadsla_store` connection.
        config: report settings (timezone, the SLA the page opens on); else
            include/config/reports.yaml.
        policy: the SLA policy (its handoffs, which leads are watched, teams, routing); else the
            active one.
        left_counts_as: how every handoff counts a handed-on clock (met or excluded); else each
            SLA's own in the policy.
        clock: "now" for the live panel (tests pin it).
        range_ttl_seconds: how long the range figures (scorecards, trend, funnel, reasons) of one
            filter set are reused - the CRM syncs every 1-2 minutes, and the drill-down then lists
            exactly the rows the page counted. The live panel is never reused.
    """
    app = FastAPI(title="War Room", docs_url=None, redoc_url=None, openapi_url=None)
    state = app.state.war_room = _WarRoomState(
        engine=engine,
        store_url=store_url,
        config=config,
        policy=policy,
        left_counts_as=left_counts_as,
        clock=clock,
        range_ttl_seconds=range_ttl_seconds,
    )
    render = _renderer(_templates())
    _handle_login_and_bad_filters(app, render)
    _handle_refusals(app, state, render)
    _add_page(app, state, render)
    _add_drill_down(app, state, render)
    _add_lead_timeline(app, state, render)
    return app


def _handle_login_and_bad_filters(app: FastAPI, render: Render) -> None:
    """No valid token: a browser goes to Airflow's login page, an API client gets 401. A bad filter
    value: a 400 page naming it."""

    @app.exception_handler(NotLoggedIn)
    async def _login(request: Request, exc: NotLoggedIn) -> Response:
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            return RedirectResponse(auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": "Not authenticated: log in to Airflow first"}, status_code=401)

    @app.exception_handler(FilterError)
    async def _bad_filter(request: Request, exc: FilterError) -> Response:
        return render(request, "error.html", status=400, message=str(exc))


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _handle_refusals(app: FastAPI, state: _WarRoomState, render: Render) -> None:
    """A refused request: audited (`war_room_denied`: user, route template, reason), then a 403
    page saying why (JSON for an API client). An audit that cannot be written is logged; the
    answer stays a 403."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        _audit_refusal(state, request, exc.user, exc.reason)
        message = f"The War Room is not open to {exc.user.get_name()}: {exc.reason}. Ask RevOps for access."
        if not _wants_html(request):
            return JSONResponse({"detail": message}, status_code=403)
        return render(request, "error.html", status=403, message=message)


def _audit_refusal(state: _WarRoomState, request: Request, user: Any, reason: str) -> None:
    """Audit a refused request (`queries.record_denied`: the route's template, never its path);
    an audit that cannot be written is logged and the refusal stands."""
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    user_id, user_name = str(user.get_id()), str(user.get_name())
    log.warning("War Room: refused %s on %s: %s", user_name, route, reason)
    try:
        queries.record_denied(
            state.store(), user_id=user_id, user_name=user_name, at=state.clock(), route=route, reason=reason
        )
    except Exception:
        log.exception("War Room: the refusal of %s on %s could not be audited", user_name, route)


#: The landing page's reads at once (its panels are independent; each reads in its own connection).
PANEL_WORKERS = 4


class _Panels:
    """The landing page's panels read side by side (`PANEL_WORKERS` threads, each call in a copy of
    the request's context): a panel's database time is spent while another's rows are turned into
    figures, so a cold page costs about its longest panel, not their sum. Leaving the block waits
    for every read; a read's error is raised where its result is taken."""

    def __enter__(self) -> _Panels:
        self._pool = ThreadPoolExecutor(max_workers=PANEL_WORKERS, thread_name_prefix="war-room-panel")
        return self

    def read(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(contextvars.copy_context().run, read, *args, **kwargs)

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)


def _add_page(app: FastAPI, state: _WarRoomState, render: Render) -> None:
    """`/`: the SLA matrix (every handoff), then the selected handoff's live and range panels, the
    unowned leads, filter options, findings and quarantine; audits the visit."""

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, viewer: Allowed) -> HTMLResponse:
        user, teams = viewer.user, viewer.teams
        filters = state.filters(request)
        handoff = state.handoff(filters)
        now = state.clock()
        target = state.settings().thresholds.team_compliance
        every = state.handoffs()
        everything = viewer.scope.all_teams
        store, policy = state.store(), state.policy()
        with _Panels() as panels:  # independent reads: one's database time under another's work
            in_range = panels.read(state.range_panel, filters, teams)
            sla_matrix = panels.read(
                lambda: matrix.matrix(store, every, filters, now, state.matrix_range(filters, teams), teams)
            )
            live = panels.read(queries.now_panel, store, filters, now, handoff.id, teams, handoff, policy)
            unowned = panels.read(state.unowned_panel, now, teams)
            opts = panels.read(queries.options, store, teams, handoff.object_type)
            findings = panels.read(queries.health_findings, store, limit=20) if everything else None
            quarantine = panels.read(queries.quarantine_summary, store) if everything else None
            crm_feed = panels.read(queries.crm_feed, store)
        in_range = in_range.result()
        queries.record_visit(
            state.store(),
            user_id=str(user.get_id()),
            user_name=str(user.get_name()),
            at=now,
            detail={"filters": filters.query(), "scope": viewer.scope.describe()},
        )
        return render(
            request,
            "page.html",
            f=filters,
            handoff=handoff,
            handoffs=list(every.values()),
            matrix=sla_matrix.result(),
            sparkline=lambda trend: figures.sparkline(trend, target),
            target=target,
            live=live.result(),
            unowned=unowned.result(),
            policy_error=state.policy_error(),
            rng=in_range,
            trend_chart=figures.trend_chart(in_range["trend"], target),
            opts=opts.result(),
            user=user.get_name(),
            scope=viewer.scope.describe(),
            # Data engineering's view of the whole store: for those who see every team.
            findings=findings.result() if findings else [],
            quarantine=quarantine.result() if quarantine else [],
            crm_feed=crm_feed.result(),
            now=now,
        )


def _add_drill_down(app: FastAPI, state: _WarRoomState, render: Render) -> None:
    """`/drill?figure=KEY&<filters>`: the records behind one figure of the page."""

    @app.get("/drill", response_class=HTMLResponse)
    def drill(request: Request, viewer: Allowed, figure: str) -> HTMLResponse:
        teams = viewer.teams
        filters = state.filters(request)
        handoff = state.handoff(filters)
        now = state.clock()
        live = queries.now_panel(state.store(), filters, now, handoff.id, teams, handoff, state.policy())
        in_range = state.range_panel(filters, teams)
        unowned = state.unowned_panel(now, teams) if figure == "unowned" else None
        try:
            ids = queries.figure_ids(live, in_range, figure, *([unowned] if unowned else []))
        except queries.UnknownFigure:
            return render(
                request,
                "error.html",
                status=404,
                message=f"No figure {figure!r} on the page for these filters.",
            )
        return render(
            request,
            "drill.html",
            f=filters,
            handoff=handoff,
            figure=figure,
            total=len(ids),
            rows=queries.records_for(
                state.store(),
                ids,
                handoff.id,
                object_type=handoff.object_type,
                policy=state.policy(),
                now=now,
            ),
            limit=queries.DRILL_ROWS,
        )


def _add_lead_timeline(app: FastAPI, state: _WarRoomState, render: Render) -> None:
    """`/lead/{record_id}`: a lead's "why" timeline; a lead outside the user's teams is the same 404
    as one the store does not hold (whether it exists is not told)."""

    @app.get("/lead/{record_id}", response_class=HTMLResponse)
    def lead(request: Request, viewer: Allowed, record_id: str) -> HTMLResponse:
        policy = state.policy()
        visible = queries.lead_in_scope(
            state.store(), record_id, viewer.teams, policy, state.clock(), state.handoffs()
        )
        if not visible and queries.record_exists(state.store(), record_id):
            _audit_refusal(state, request, viewer.user, "a lead outside the teams this user sees")
        fields = {kind: watched_fields(policy, kind) for kind in ("Lead", "Opportunity")} if policy else None
        timeline = (
            queries.lead_timeline(state.store(), record_id, fields, policy, state.clock())
            if visible
            else None
        )
        if timeline is None:
            return render(request, "error.html", status=404, message=f"No record {record_id!r} in the store.")
        return render(request, "lead.html", t=timeline, back=request.query_params.get("back", ""))
