"""The HTTP API under ``/api/v1``: JSON, token (later session) auth, errors with stable ids.

``setup_api(app, db=..., lookup=..., config=...)`` is what the application factory calls.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import auth, calls, crm, keys
from gateway.config import GatewayConfig
from gateway.lookup.chain import LookupChain
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from gateway.store.repositories import (
    AccountRepository,
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)

__all__ = ["setup_api"]


def setup_api(
    app: web.Application, *, db: Database, lookup: LookupChain, config: GatewayConfig
) -> None:
    """Register the /api/v1 routes, auth and error middlewares, and the repositories."""
    region = config.lookup.default_region
    app[keys.DB] = db
    app[keys.LOOKUP] = lookup
    app[keys.CONFIG] = config
    app[keys.PEOPLE] = PersonRepository(db, region)
    app[keys.ACCOUNTS] = AccountRepository(db, region)
    app[keys.ACTIVITIES] = ActivityRepository(db)
    app[keys.FOLLOW_UPS] = FollowUpRepository(db)
    app[keys.CALL_LOG] = CallLog(db, region)
    auth.install(app, config.api.tokens)
    app.router.add_routes(crm.routes())
    app.router.add_routes(calls.routes())
