"""Who is asking: API tokens now, panel sessions later, one :class:`Principal` either way.

The auth middleware asks each registered authenticator in turn (``API_AUTHENTICATORS`` on the
app; the panel will append a session-cookie one) and puts the first principal on the request.
No principal on an ``/api/`` path is a 401; a handler that needs a scope calls
:func:`require`, which answers 403 when the principal lacks it. Tokens are compared in constant
time and never logged.

Scopes: ``*`` allows everything; otherwise exact names such as ``lookup``, ``calls:read``,
``crm:read``, ``crm:write``; ``X:write`` also allows ``X:read``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config import ApiToken
from gateway.errors import ApiError

log = logging.getLogger("gateway.api")

API_PREFIX = "/api/"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller of the API: an API token or a signed-in panel user."""

    name: str
    kind: str  # "token" | "user"
    scopes: frozenset[str]
    role: str | None = None  # panel users: "agent", "supervisor", "admin"

    def allows(self, scope: str) -> bool:
        if "*" in self.scopes or scope in self.scopes:
            return True
        area, _, action = scope.partition(":")
        return action == "read" and f"{area}:write" in self.scopes


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
Authenticator = Callable[[web.Request], Awaitable[Principal | None]]
API_AUTHENTICATORS: web.AppKey[list[Authenticator]] = web.AppKey("api_authenticators", list)


class TokenAuthenticator:
    """``Authorization: Bearer <token>`` against the tokens of ``api.tokens`` in the config."""

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._tokens = [(t.token.encode(), t) for t in tokens if t.token]

    async def __call__(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "unauthorized", "expected 'Authorization: Bearer <token>'")
        given_b = given.strip().encode("utf-8", "replace")
        found = None
        for secret, token in self._tokens:  # look at all, so timing says nothing of which
            if hmac.compare_digest(secret, given_b):
                found = token
        if found is None:
            log.info("api: rejected a token from %s for %s", request.remote, request.path)
            raise ApiError(401, "unauthorized", "unknown API token")
        return Principal(found.name, "token", frozenset(found.scopes))


def principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)


def require(request: web.Request, scope: str) -> Principal:
    """The request's principal if it may use ``scope``; else 401 (nobody) or 403."""
    who = principal(request)
    if who is None:
        raise ApiError(401, "unauthorized", "authentication required")
    if not who.allows(scope):
        raise ApiError(
            403, "forbidden", f"{who.kind} {who.name!r} lacks scope {scope!r}", {"scope": scope}
        )
    return who


def require_manager(request: web.Request, scope: str) -> Principal:
    """Like ``require``, for what removes or replaces data in bulk (deletes, imports): a
    signed-in agent may edit the people they talk to, not wipe them; supervisors may."""
    who = require(request, scope)
    if who.kind == "user" and who.role == "agent":
        raise ApiError(
            403,
            "forbidden",
            f"agent {who.name!r} may not do this; ask a supervisor",
            {"scope": scope, "role": "supervisor"},
        )
    return who


def error_body(error_id: str, message: str, details: object = None) -> dict[str, Any]:
    return {"error": {"id": error_id, "message": message, "details": details}}


def error_response(err: ApiError) -> web.Response:
    """The JSON error every route answers (API and panel alike)."""
    resp = web.json_response(error_body(err.error_id, err.message, err.details), status=err.status)
    if err.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="centralita"'
    retry = err.details.get("retry_after") if isinstance(err.details, dict) else None
    if err.status in (429, 503) and isinstance(retry, int):
        resp.headers["Retry-After"] = str(retry)  # what clients and proxies look at
    return resp


_HTTP_IDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 400: "bad_request"}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error on an /api/ path leaves as ``{"error": {"id", "message", "details"}}``."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        eid = _HTTP_IDS.get(e.status, "http_error")
        return error_response(ApiError(e.status, eid, e.reason))
    except json.JSONDecodeError as e:
        return error_response(ApiError(400, "invalid_json", f"body is not valid JSON: {e}"))
    except Exception:
        log.exception("api: unexpected error on %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal", "internal error; see the gateway log"))


# what any client may read without credentials: the API's own description
PUBLIC_PATHS: frozenset[str] = frozenset({"/api/v1/openapi.json"})


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    if request.path in PUBLIC_PATHS and request.method in ("GET", "HEAD"):
        return await handler(request)
    authenticators = request.app[API_AUTHENTICATORS]
    who = await authenticate(request, authenticators)
    if who is None:
        raise ApiError(401, "unauthorized", "authentication required: send a Bearer token")
    request[PRINCIPAL] = who
    return await handler(request)


async def authenticate(
    request: web.Request, authenticators: Iterable[Authenticator]
) -> Principal | None:
    for auth in authenticators:
        who = await auth(request)
        if who is not None:
            return who
    return None


def install(app: web.Application, tokens: Sequence[ApiToken]) -> None:
    """Add the error and auth middlewares and the token authenticator to ``app``."""
    if API_AUTHENTICATORS not in app:
        app[API_AUTHENTICATORS] = []
    app[API_AUTHENTICATORS].append(TokenAuthenticator(tokens))
    app.middlewares.append(error_middleware)
    app.middlewares.append(auth_middleware)
