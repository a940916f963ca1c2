"""Operations routes: ``/health`` (503 when a PBX is down), Prometheus ``/metrics``, the panel."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.app import GATEWAY, WEB_DIR

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    ok, doc = gw.health()
    doc["outbox"] = await gw.outbox_health()
    doc["directories"] = await gw.directory_health()
    return web.json_response(doc, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    lines = [
        "# HELP centralita_ami_link_up 1 when the AMI link is logged in.",
        "# TYPE centralita_ami_link_up gauge",
    ]
    for name, link in gw.links.items():
        lines.append(f'centralita_ami_link_up{{pbx="{name}"}} {int(link.health().logged_in)}')
    lines += ["# TYPE centralita_ami_events_total counter"]
    lines += [
        f'centralita_ami_events_total{{pbx="{n}"}} {link.events_received}'
        for n, link in gw.links.items()
    ]
    lines += ["# TYPE centralita_ami_reconnects_total counter"]
    lines += [
        f'centralita_ami_reconnects_total{{pbx="{n}"}} {link.reconnects}'
        for n, link in gw.links.items()
    ]
    lines += ["# TYPE centralita_ami_parse_errors_total counter"]
    lines += [
        f'centralita_ami_parse_errors_total{{pbx="{n}"}} {link.parse_error_count}'
        for n, link in gw.links.items()
    ]
    lines += ["# TYPE centralita_calls_open gauge"]
    lines += [f'centralita_calls_open{{pbx="{n}"}} {t.open_calls}' for n, t in gw.trackers.items()]
    lines += ["# TYPE centralita_calls_ended_total counter"]
    lines += [
        f'centralita_calls_ended_total{{outcome="{o}"}} {c}'
        for o, c in sorted(gw.calls_by_outcome.items())
    ]
    lines += ["# TYPE centralita_directory_records gauge"]
    lines += [
        f'centralita_directory_records{{connector="{d["connector"]}",module="{d["module"]}"}}'
        f" {d['records']}"
        for d in await gw.directory_health()
    ]
    lines += ["# TYPE centralita_outbox_parked gauge"]
    lines += [
        f'centralita_outbox_parked{{connector="{o["connector"]}"}} {o["parked"]}'
        for o in await gw.outbox_health()
    ]
    lines += ["# TYPE centralita_bus_handler_errors_total counter"]
    lines += [f"centralita_bus_handler_errors_total {gw.bus.errors}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def status_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DIR / "index.html")


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/panel/")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def setup_ops(app: web.Application) -> None:
    app.middlewares.append(security_headers)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_get("/status", status_page)
    app.router.add_static("/static/", WEB_DIR / "static", follow_symlinks=False)
