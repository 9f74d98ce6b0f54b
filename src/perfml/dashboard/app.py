"""The dashboard's web app (Starlette): HTML pages and the JSON of their panels.

Thin by design: it renders a page's frame from its definition, serves the static files
(Plotly's JavaScript from the installed ``plotly`` package, so the page works offline) and
answers ``GET /api/panels/{page}?start=&end=&step=&range=&entity=&metric=`` with
:func:`perfml.dashboard.data.page_data`: ``range`` (a duration) is the span when ``start`` is
not given, ``entity`` and ``metric`` the page's :class:`~perfml.dashboard.data.Focus`. A page
that ends at its latest data (the Anomalies page) ends there when ``end`` is not given. The
browser draws and refreshes every ``refresh_seconds``.

Routes: ``/`` (the first page), ``/{page}``, ``/api/pages``, ``/api/panels/{page}``,
``/static/...``, ``/healthz``, and the two that write, both taking JSON only (a cross-site
form cannot send it without the browser asking first): ``POST /api/incidents/{id}/verdict``
and ``POST /api/verdicts/alertmanager`` (:mod:`perfml.dashboard.verdicts`). A
:class:`~perfml.dashboard.errors.DashboardError` or a verdict's
:class:`~perfml.anomalies.VerdictError` answers its ``status_code`` with
``{"error": message}``.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Final

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from perfml.alerting.notify import WebhookPayload
from perfml.anomalies import VerdictError
from perfml.anomalies.verdicts import DEFAULT_SILENCE
from perfml.dashboard.anomalies import latest_score_ms
from perfml.dashboard.data import DashboardSources, Focus, TimeRange, page_data
from perfml.dashboard.errors import DashboardError, NotJsonError
from perfml.dashboard.panels import Dashboard, Page, default_dashboard
from perfml.dashboard.verdicts import verdict_on, verdicts_from_alertmanager

STATIC_DIR: Final = Path(__file__).parent / "static"
TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
PLOTLY_CACHE: Final = "public, max-age=86400"
RANGES: Final = ("15m", "1h", "6h", "1d", "7d", "30d", "90d", "400d")
"""The time ranges a page offers (a page's own default is added when missing)."""


def plotly_js() -> Path:
    """Plotly's bundled JavaScript, from the installed ``plotly`` package."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def _page_html(template: Template, dashboard: Dashboard, page: Page, refresh: float) -> str:
    esc = html.escape
    nav = "".join(
        f'<a href="/{esc(p.slug)}"{" aria-current=page" if p is page else ""}>{esc(p.title)}</a>'
        for p in dashboard.pages
    )
    ranges = list(RANGES)
    if page.default_range not in ranges:
        ranges.append(page.default_range)
    options = "".join(
        f'<option value="{esc(r)}"{" selected" if r == page.default_range else ""}>'
        f"{esc(r)}</option>"
        for r in ranges
    )
    panels = "\n".join(
        f'    <section class="panel kind-{esc(p.kind.value)}" id="panel-{esc(p.id)}" '
        f'style="grid-column: span {p.width}">\n'
        f"      <h3>{esc(p.title)}</h3>\n"
        f'      <div class="body" id="body-{esc(p.id)}" data-kind="{esc(p.kind.value)}">'
        '<p class="message">Loading…</p></div>\n'
        + (f'      <p class="note">{esc(p.note)}</p>\n' if p.note else "")
        + "    </section>"
        for p in page.panels
    )
    return template.substitute(
        title=esc(page.title),
        slug=esc(page.slug),
        latest="1" if page.ends_at_latest_data else "0",
        description=esc(page.description),
        static="/static",
        api=f"/api/panels/{esc(page.slug)}",
        refresh=f"{refresh:g}",
        root="/",
        nav=nav,
        ranges=options,
        panels=panels,
    )


def create_app(
    sources: DashboardSources,
    dashboard: Dashboard | None = None,
    refresh_seconds: float = 30.0,
) -> Starlette:
    """The dashboard of ``dashboard``'s pages (perfml's by default) over ``sources``."""
    book = dashboard or default_dashboard()
    template = Template((TEMPLATES_DIR / "page.html").read_text(encoding="utf-8"))
    plotly_path = plotly_js()

    def page(request: Request) -> HTMLResponse:
        slug = request.path_params.get("page", book.slugs[0])
        return HTMLResponse(_page_html(template, book, book.page(slug), refresh_seconds))

    def panels(request: Request) -> JSONResponse:
        chosen = book.page(request.path_params["page"])
        q = request.query_params
        now_ms = None
        if chosen.ends_at_latest_data and not q.get("end") and sources.scores is not None:
            latest = latest_score_ms(sources.scores)
            now_ms = None if latest is None else latest + 1
        window = TimeRange.parse(
            q.get("start"),
            q.get("end"),
            q.get("step"),
            q.get("range") or chosen.default_range,
            now_ms=now_ms,
        )
        focus = Focus(entity=q.get("entity") or None, metric=q.get("metric") or None)
        return JSONResponse(page_data(chosen, sources, window, focus=focus))

    def pages(request: Request) -> JSONResponse:
        return JSONResponse(
            [
                {"slug": p.slug, "title": p.title, "panels": [panel.id for panel in p.panels]}
                for p in book.pages
            ]
        )

    def plotly(request: Request) -> FileResponse:
        # 4.8 MB that changes only with the installed plotly: let the browser keep it.
        return FileResponse(
            plotly_path, media_type="text/javascript", headers={"Cache-Control": PLOTLY_CACHE}
        )

    async def give_verdict(request: Request) -> JSONResponse:
        body = await _json_body(request)
        made = verdict_on(
            sources,
            request.path_params["incident"],
            str(body.get("verdict", "")),
            by=request.headers.get("x-forwarded-user") or _text(body.get("by")),
            note=_text(body.get("note")) or "",
            silence=_text(body.get("silence")) or DEFAULT_SILENCE,
        )
        return JSONResponse(made.to_json(), status_code=201)

    async def alertmanager(request: Request) -> JSONResponse:
        body = await _json_body(request)
        try:
            payload = WebhookPayload.model_validate(body)
        except ValidationError as exc:
            raise NotJsonError(f"not an Alertmanager webhook payload (version 4): {exc}") from None
        return JSONResponse(verdicts_from_alertmanager(sources, payload).to_json())

    def healthz(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    async def on_dashboard_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, DashboardError) else 500
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=status)
        return HTMLResponse(f"<h1>{status}</h1><p>{html.escape(str(exc))}</p>", status_code=status)

    async def on_verdict_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, VerdictError) else 500
        return JSONResponse({"error": str(exc)}, status_code=status)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return JSONResponse({"error": getattr(exc, "detail", str(exc))}, status_code=status)

    return Starlette(
        routes=[
            Route("/static/plotly.min.js", plotly),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            Route("/healthz", healthz),
            Route("/api/pages", pages),
            Route("/api/panels/{page}", panels),
            Route("/api/incidents/{incident}/verdict", give_verdict, methods=["POST"]),
            Route("/api/verdicts/alertmanager", alertmanager, methods=["POST"]),
            Route("/", page),
            Route("/{page}", page),
        ],
        exception_handlers={
            DashboardError: on_dashboard_error,
            VerdictError: on_verdict_error,
            HTTPException: on_http_error,
        },
    )


async def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; anything else (a form, a bad body) is refused."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise NotJsonError(f"content type {kind or 'none'!r}: send application/json")
    try:
        body = await request.json()
    except ValueError:
        raise NotJsonError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise NotJsonError("the body is not a JSON object")
    return body


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
