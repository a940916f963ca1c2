"""Reports as files: ``GET /api/v1/reports/{name}.svg|.csv|.xlsx``.

The query string is the JSON report's (``start``, ``end``, ``queue``, ``agent``, ``did``,
``campaign_id``, ``group_by``) plus ``lang`` (``es``/``en``; else the request's
Accept-Language) for the words of a chart or a spreadsheet. The same report function answers
the JSON and the files, so a chart never disagrees with the table beside it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import msgspec
from aiohttp import web

from gateway.api.auth import require
from gateway.api.params import invalid, query_as
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.reports import calls, charts, sales
from gateway.reports.export import table, to_csv, to_xlsx
from gateway.reports.locale import LANGUAGES, Wording, wording
from gateway.reports.model import (
    DispositionReport,
    FunnelReport,
    HeatmapReport,
    ReportQuery,
    SummaryReport,
)
from gateway.store.db import Database

__all__ = ["FILE_PATH", "REPORTS", "FileQuery", "routes", "setup_report_files"]

FILE_PATH = "/api/v1/reports/{name:[a-z_]+}.{format:svg|csv|xlsx}"
SCOPE = "reports:read"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

ReportFn = Callable[[Database, ReportQuery, Any], Awaitable[dict[str, Any]]]

# the reports by the name in the path (the JSON API's names)
REPORTS: dict[str, ReportFn] = {
    "calls": calls.call_summary,
    "agents": calls.agents,
    "heatmap": calls.missed_heatmap,
    "dispositions": calls.dispositions,
    "leads": sales.leads_over_time,
    "first_contact": sales.time_to_first_contact,
    "funnel": sales.funnel,
    "pipeline": sales.pipeline,
    "lost": sales.lost_by_reason,
}


def _volume(doc: Mapping[str, Any], w: Wording) -> str:
    return charts.volume_chart(msgspec.convert(doc, SummaryReport), w)


def _agents(doc: Mapping[str, Any], w: Wording) -> str:
    return charts.agents_chart(msgspec.convert(doc, SummaryReport), w)


def _heatmap(doc: Mapping[str, Any], w: Wording) -> str:
    return charts.missed_heatmap_chart(msgspec.convert(doc, HeatmapReport), w)


def _dispositions(doc: Mapping[str, Any], w: Wording) -> str:
    return charts.dispositions_chart(msgspec.convert(doc, DispositionReport), w)


def _funnel(doc: Mapping[str, Any], w: Wording) -> str:
    return charts.funnel_chart(msgspec.convert(doc, FunnelReport), w)


# the reports that have a chart
CHARTS: dict[str, Callable[[Mapping[str, Any], Wording], str]] = {
    "calls": _volume,
    "agents": _agents,
    "heatmap": _heatmap,
    "dispositions": _dispositions,
    "funnel": _funnel,
}


class FileQuery(ReportQuery, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The report's query and the language of the file."""

    lang: Literal["es", "en"] | None = None


class ReportsHost(Protocol):
    cfg: GatewayConfig
    db: Database | None


HOST: web.AppKey[ReportsHost] = web.AppKey("report_files_host")


async def compute(host: ReportsHost, name: str, q: ReportQuery) -> dict[str, Any]:
    """Report ``name`` for ``q``, as the JSON API and the files share it: 404 for a report
    that does not exist, 400 naming the field of a query that cannot run."""
    fn = REPORTS.get(name)
    if fn is None:
        raise ApiError(404, "unknown_report", f"no report named {name!r}", {"name": name})
    try:
        if fn.__module__ == sales.__name__:
            sales.check_query(q)  # ... and the filters a sales report cannot honour
        else:
            q.check()
    except ValueError as e:
        field, _, reason = str(e).partition(": ")
        raise invalid(field, reason) from None
    assert host.db is not None
    doc: dict[str, Any] = await fn(host.db, q, host.cfg.panel)
    return doc


def _language(request: web.Request, asked: str | None) -> Wording:
    if asked:
        return wording(asked)
    # Accept-Language: the first language we have, in the order the browser prefers
    for part in request.headers.get("Accept-Language", "").split(","):
        code = part.split(";")[0].strip().split("-")[0].lower()
        if code in LANGUAGES:
            return wording(code)
    return wording("en")


async def report_file(request: web.Request) -> web.Response:
    require(request, SCOPE)
    name, fmt = request.match_info["name"], request.match_info["format"]
    if fmt == "svg" and name in REPORTS and name not in CHARTS:
        raise ApiError(404, "no_chart", f"report {name!r} has no chart", {"name": name})
    fq = query_as(request, FileQuery)
    q = ReportQuery(**{f: getattr(fq, f) for f in ReportQuery.__struct_fields__})
    doc = await compute(request.app[HOST], name, q)
    w = _language(request, fq.lang)
    stem = f"{name}-{q.start.isoformat()}-{q.end.isoformat()}"
    headers = {"Cache-Control": "private, no-store", "Content-Language": w.lang}
    if fmt == "svg":
        # opened on its own, the file may run nothing and load nothing
        headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'self'"
        return web.Response(
            text=CHARTS[name](doc, w),
            content_type="image/svg+xml",
            charset="utf-8",
            headers=headers,
        )
    headers["Content-Disposition"] = f'attachment; filename="{stem}.{fmt}"'
    if fmt == "csv":
        body = to_csv(table(name, doc, w, readable=False))
        return web.Response(body=body, content_type="text/csv", charset="utf-8", headers=headers)
    body = to_xlsx([table(name, doc, w)], w)
    return web.Response(body=body, content_type=XLSX_TYPE, headers=headers)


def routes() -> list[web.RouteDef]:
    return [web.get(FILE_PATH, report_file)]


def setup_report_files(app: web.Application, gw: ReportsHost) -> None:
    """Register the file routes (after ``gw.open()``: they read its store)."""
    app[HOST] = gw
    app.router.add_routes(routes())
