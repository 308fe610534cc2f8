"""The War Room as a FastAPI app, mounted by the plugin inside Airflow's API server (url prefix
/war-room) and shown in the UI through a navigation link.

Behind Airflow's own login: every route needs the JWT the Airflow UI keeps in the `_token` cookie
(or an `Authorization: Bearer` header), validated by the configured auth manager; without one a
browser is redirected to the auth manager's login page and an API client gets 401. Lead text is
data: every template is autoescaped. Never writes anything but the `war_room_visit` audit row.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import jinja2
import pandas as pd
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from leadsla.paths import templates_dir
from leadsla.reports.config import ReportConfig, load_report_config
from leadsla.war_room import queries as q
from leadsla.war_room.filters import FilterError, parse_filters

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


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["pct"] = lambda x: "n/a" if x is None or pd.isna(x) else f"{x:.0%}"
    env.filters["hours"] = lambda x: "n/a" if x is None or pd.isna(x) else f"{x:.1f} h"
    env.filters["when"] = lambda x: (
        "" if x is None or pd.isna(x) else pd.Timestamp(x).strftime("%Y-%m-%d %H:%M UTC")
    )
    env.filters["remaining"] = lambda sec: (
        ("overdue " if sec < 0 else "") + f"{abs(sec) // 3600}h {abs(sec) % 3600 // 60:02d}m"
    )
    return env


def create_app(
    *,
    engine: sa.Engine | None = None,
    store_url: str | None = None,
    config: ReportConfig | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    range_ttl_seconds: float = 60.0,
) -> FastAPI:
    """The War Room app.

    Args:
        engine: the store (tests pass one); else opened on first request from `store_url` or the
            `leadsla_store` connection.
        config: report settings (timezone, SLA id); else include/config/reports.yaml.
        clock: "now" for the live panel (tests pin it).
        range_ttl_seconds: how long the range figures (scorecards, trend, funnel, reasons) of one
            filter set are reused - the CRM syncs every 1-2 minutes, and the drill-down then lists
            exactly the rows the page counted. The live panel is never reused.
    """
    app = FastAPI(title="War Room", docs_url=None, redoc_url=None, openapi_url=None)
    env = _env()
    state: dict[str, Any] = {"engine": engine, "config": config}

    def store() -> sa.Engine:
        if state["engine"] is None:
            from leadsla.store import open_store

            state["engine"] = open_store(store_url)
        return state["engine"]

    def settings() -> ReportConfig:
        if state["config"] is None:
            state["config"] = load_report_config()
        return state["config"]

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = env.get_template(f"war_room/{name}").render(root=request.scope.get("root_path", ""), **ctx)
        return HTMLResponse(html, status_code=status)

    cache: dict[tuple, tuple[float, dict]] = {}

    def range_panel(f) -> dict:
        cfg = settings()
        key = (f, cfg.sla_id)
        hit = cache.get(key)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        value = q.range_panel(store(), f, cfg.sla_id)
        if len(cache) >= 64:
            cache.clear()
        cache[key] = (now + range_ttl_seconds, value)
        return value

    def filters(request: Request):
        p = request.query_params
        return parse_filters(
            clock(),
            settings().leadership_timezone,
            start=p.get("start"),
            end=p.get("end"),
            lead_source=p.get("lead_source"),
            owner=p.get("owner"),
            team=p.get("team"),
        )

    @app.exception_handler(NotLoggedIn)
    async def _login(request: Request, exc: NotLoggedIn) -> Response:
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            return RedirectResponse(auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": "Not authenticated: log in to Airflow first"}, status_code=401)

    @app.exception_handler(FilterError)
    async def _bad_filter(request: Request, exc: FilterError) -> Response:
        return render(request, "error.html", status=400, message=str(exc))

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, user: User) -> HTMLResponse:
        f = filters(request)
        cfg = settings()
        now = clock()
        live = q.now_panel(store(), f, now, cfg.sla_id)
        rng = range_panel(f)
        q.record_visit(
            store(),
            user_id=str(user.get_id()),
            user_name=str(user.get_name()),
            at=now,
            detail={"filters": f.query()},
        )
        return render(
            request,
            "page.html",
            f=f,
            live=live,
            rng=rng,
            opts=q.options(store()),
            user=user.get_name(),
            findings=q.health_findings(store(), limit=20),
            quarantine=q.quarantine_summary(store()),
            now=now,
        )

    @app.get("/drill", response_class=HTMLResponse)
    def drill(request: Request, user: User, figure: str) -> HTMLResponse:
        f = filters(request)
        cfg = settings()
        live = q.now_panel(store(), f, clock(), cfg.sla_id)
        rng = range_panel(f)
        try:
            ids = q.figure_ids(live, rng, figure)
        except q.UnknownFigure:
            return render(
                request,
                "error.html",
                status=404,
                message=f"No figure {figure!r} on the page for these filters.",
            )
        return render(
            request,
            "drill.html",
            f=f,
            figure=figure,
            total=len(ids),
            rows=q.records_for(store(), ids, cfg.sla_id),
            limit=q.DRILL_ROWS,
        )

    @app.get("/lead/{record_id}", response_class=HTMLResponse)
    def lead(request: Request, user: User, record_id: str) -> HTMLResponse:
        t = q.lead_timeline(store(), record_id)
        if t is None:
            return render(request, "error.html", status=404, message=f"No record {record_id!r} in the store.")
        return render(request, "lead.html", t=t, back=request.query_params.get("back", ""))

    return app
