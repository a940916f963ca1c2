"""``setup_panel(app, gateway)``: all the application factory calls to add the panel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway.api.auth import API_AUTHENTICATORS
from gateway.panel.routes import PANEL, add_routes
from gateway.panel.service import PanelService
from gateway.panel.settings import PanelSettings


def setup_panel(
    app: web.Application,
    gateway: Any,
    *,
    settings: PanelSettings | None = None,
    service: PanelService | None = None,
) -> PanelService:
    """Build the panel on an opened gateway (store and lookup ready), add its routes, let a
    signed-in user call /api/v1 too, and start/stop it with the app."""
    panel = service or PanelService.from_gateway(gateway, settings)
    panel.attach()
    app[PANEL] = panel
    if API_AUTHENTICATORS not in app:
        app[API_AUTHENTICATORS] = []
    app[API_AUTHENTICATORS].append(panel.api_principal)
    add_routes(app)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await panel.start()
        yield
        await panel.stop()

    async def close_sockets(_: web.Application) -> None:
        await panel.hub.close()  # open websockets would hold the server's shutdown

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_sockets)
    return panel
