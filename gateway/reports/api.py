"""The reports as JSON: ``GET /api/v1/reports/{name}?start=&end=`` (and the filters).

The query is :class:`~gateway.reports.model.ReportQuery`: ``queue``, ``agent``, ``did``,
``campaign_id``, ``group_by``.

The names are those of the file routes (``gateway/reports/routes.py``: ``.svg``/``.csv``/
``.xlsx`` of the same report), each answered by one function of ``calls`` or ``sales`` with the
``panel`` settings (time zone, service level, short abandons, after-call work). Scope
``reports:read``: supervisors and admins in the panel, tokens that hold it.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import query_as
from gateway.reports import model
from gateway.reports.routes import ReportsHost, compute

PATH = "/api/v1/reports/{name:[a-z_]+}"
SCOPE = "reports:read"

# what each report answers (the OpenAPI document reads it)
SHAPES: dict[str, type[msgspec.Struct]] = {
    "calls": model.SummaryReport,
    "agents": model.SummaryReport,
    "heatmap": model.HeatmapReport,
    "dispositions": model.DispositionReport,
    "leads": model.LeadsOverTimeReport,
    "first_contact": model.FirstContactReport,
    "funnel": model.FunnelReport,
    "pipeline": model.PipelineReport,
    "lost": model.LostReport,
}


HOST: web.AppKey[ReportsHost] = web.AppKey("reports_api_host")


async def report(request: web.Request) -> web.Response:
    require(request, SCOPE)
    q = query_as(request, model.ReportQuery)
    doc = await compute(request.app[HOST], request.match_info["name"], q)
    return web.Response(
        body=msgspec.json.encode(doc),
        content_type="application/json",
        headers={"Cache-Control": "private, no-store"},
    )


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, report)]


def setup_reports_api(app: web.Application, gw: ReportsHost) -> None:
    """Register ``GET /api/v1/reports/{name}`` (after ``gw.open()``: it reads its store)."""
    app[HOST] = gw
    app.router.add_routes(routes())
