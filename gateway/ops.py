"""Operations routes: ``/health`` (503 when a PBX is down), Prometheus ``/metrics``, the panel.

Also what the HTTP face needs from its surroundings: which client and scheme a request really
has behind a trusted proxy, who may read ``/metrics`` and ``/status`` (``http.ops_allow`` or
``http.ops_token``), and closing connections that never finish their request head.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.config import GatewayConfig
from gateway.metrics import CONTENT_TYPE, Scrape, render

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class OpsHost(Protocol):
    """What these routes read of the gateway (``gateway.app.Gateway``): a protocol, so this
    module does not import the composition root that imports it."""

    cfg: GatewayConfig

    def health(self) -> tuple[bool, dict[str, Any]]: ...
    async def outbox_health(self) -> list[dict[str, Any]]: ...
    async def directory_health(self) -> list[dict[str, Any]]: ...


GATEWAY: web.AppKey[OpsHost] = web.AppKey("ops_gateway")

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    ok, doc = gw.health()
    from gateway.panel.routes import PANEL  # the panel is optional; ops must not need it

    panel = request.app.get(PANEL)
    if panel is not None and panel.fanout is not None and "cluster" in doc:
        # pop-ups through Redis: informs (a Redis outage degrades them, PBX links decide 503)
        doc["cluster"]["push"] = panel.fanout.health()
    if panel is not None and panel.shared_board is not None and "cluster" in doc:
        doc["cluster"]["board"] = panel.shared_board.health()  # informs, like push
    if panel is not None and panel.relay is not None and "cluster" in doc:
        # requests carried to each PBX's owner: informs, like push
        doc["cluster"]["relay"] = panel.relay.health()
    doc["outbox"] = await gw.outbox_health()
    doc["directories"] = await gw.directory_health()
    return web.json_response(doc, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    from gateway.panel.routes import PANEL  # the panel is optional; ops must not need it

    gw = request.app[GATEWAY]
    scrape = Scrape(gw, await gw.directory_health(), await gw.outbox_health())
    panel = request.app.get(PANEL)
    if panel is not None:
        scrape.agents_online = len(panel.hub.online())
        scrape.agent_connections = panel.hub.connections()
    response = web.Response(body=render(scrape))
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


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


@lru_cache(maxsize=64)
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _within(address: str | None, entries: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(tuple(entries)))


def _from_trusted_proxy(request: web.Request) -> bool:
    gw = request.app.get(GATEWAY)
    return gw is not None and _within(request.remote, gw.cfg.http.trusted_proxies)


def client_address(request: web.Request) -> str | None:
    """The client's address: a trusted proxy's X-Forwarded-For (the nearest hop it did not
    add itself), else the socket's peer. Anyone else's X-Forwarded-For is ignored."""
    if not _from_trusted_proxy(request):
        return request.remote
    gw = request.app[GATEWAY]
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, gw.cfg.http.trusted_proxies):
            return hop
    return hops[0] if hops else request.remote


def is_https(request: web.Request) -> bool:
    """Whether the browser reached us over TLS: ours, or a trusted proxy's that says so."""
    if request.secure:
        return True
    if not _from_trusted_proxy(request):
        return False
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https"


def ops_only(handler: Handler) -> Handler:
    """``handler`` for operators only: a client in ``http.ops_allow``, or one that presents
    ``Authorization: Bearer <http.ops_token>``; anyone else gets 403 ``ops_forbidden``."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        http = request.app[GATEWAY].cfg.http
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if _within(client_address(request), http.ops_allow) or (
            http.ops_token and hmac.compare_digest(token.encode(), http.ops_token.encode())
        ):
            return await handler(request)
        return web.json_response(
            {
                "error": {
                    "id": "ops_forbidden",
                    "message": "Operators only: connect from an address in http.ops_allow or "
                    "send Authorization: Bearer <http.ops_token>.",
                }
            },
            status=403,
        )

    return guarded


class SlowHeaderGuard:
    """Closes a connection that has not sent a whole request head ``timeout`` seconds after it
    opened (a slow-header client would hold a socket forever). Later requests on a kept-alive
    connection are bounded by aiohttp's keep-alive timeout, which the runner sets to the same
    value; re-arming after a handler returns would cut long downloads (recordings) short."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._timers: dict[asyncio.BaseTransport, asyncio.TimerHandle] = {}

    def watch_app(self, app: web.Application) -> None:
        """Before the app starts: a request that reaches the app has sent its head."""
        app.middlewares.insert(0, self._middleware)

    def watch_server(self, server: web.Server) -> None:
        """After ``runner.setup()``: every new connection starts its clock."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
            made(handler, transport)
            self._arm(transport)

        def connection_lost(handler: web.RequestHandler, exc: BaseException | None = None) -> None:
            transport = handler.transport
            if transport is not None:
                self._disarm(transport)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def _arm(self, transport: asyncio.BaseTransport) -> None:
        self._disarm(transport)
        if not transport.is_closing():
            loop = asyncio.get_running_loop()
            self._timers[transport] = loop.call_later(self.timeout, self._expire, transport)

    def _disarm(self, transport: asyncio.BaseTransport) -> None:
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._timers.pop(transport, None)
        transport.close()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None:
            self._disarm(request.transport)
        return await handler(request)


def setup_ops(app: web.Application, gateway: OpsHost) -> None:
    app[GATEWAY] = gateway
    app.middlewares.append(security_headers)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", ops_only(metrics))
    app.router.add_get("/", index)
    app.router.add_get("/status", ops_only(status_page))
    app.router.add_static("/static/", WEB_DIR / "static", follow_symlinks=False)
