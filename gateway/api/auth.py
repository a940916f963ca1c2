"""Who is asking, and may they: one :class:`Principal` for API tokens and panel sessions.

The auth middleware enforces :mod:`gateway.access` for every route of the application: it looks
the matched route up in the access table (a route not listed is refused), asks each registered
authenticator in turn (``API_AUTHENTICATORS`` on the app: tokens, then the panel's session
cookie), refuses with 401/403 before the handler runs, refuses cross-site changes made with the
session cookie, and leaves the principal on the request (and in :data:`access.ACTING` for the
repositories' field and note rules). :func:`require` in handlers still works; the middleware has
already checked what it checks. Tokens are compared in constant time and never logged.

Scopes: see :mod:`gateway.access` (``*``; ``X:admin`` ⊃ ``X:write`` ⊃ ``X:read``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiohttp import web

from gateway import access
from gateway.access import Principal
from gateway.api import keys
from gateway.config import ApiToken
from gateway.errors import ApiError

__all__ = ["PRINCIPAL", "Principal", "install", "require", "require_manager"]

log = logging.getLogger("gateway.api")

API_PREFIX = "/api/"


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


# what any client may read without credentials: the API's own description (kept for callers;
# the access table is what the middleware reads)
PUBLIC_PATHS: frozenset[str] = frozenset({"/api/v1/openapi.json"})


def _trusted_origins(request: web.Request) -> list[str]:
    cfg = request.app.get(keys.CONFIG)
    if cfg is None:
        return []
    out = list(cfg.panel.allowed_origins)
    if cfg.http.public_url:
        out.append(access.origin_of(cfg.http.public_url) or cfg.http.public_url)
    return out


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The access table, enforced for every route before its handler runs."""
    route = request.match_info.route
    template = route.resource.canonical if route.resource is not None else None
    if template is None or request.match_info.http_exception is not None:
        # no such route (404/405): on the API say so only to whoever may use it
        if request.path.startswith(API_PREFIX) and request.method != "OPTIONS":
            who = await _authenticate_or_error(request)
            if not isinstance(who, Principal):
                return who
        return await handler(request)
    rule = access.rule_for(request.method, template)
    if rule is None:
        log.warning("access: %s %s is not in the access table", request.method, template)
        return error_response(access.unlisted(request.method, template))
    if rule.public:
        return await handler(request)
    who = await _authenticate_or_error(request)
    if not isinstance(who, Principal):
        return who
    refused = access.refusal(rule, who, request.match_info)
    if refused is None and who.kind == "user":
        refused = access.cross_site_refusal(
            request.method,
            request.headers.get("Origin"),
            request.headers.get("Referer"),
            request.host,
            _trusted_origins(request),
            # only a body has a type to check; parsed for none else (a websocket's handshake
            # would keep the parse for the socket's whole life)
            request.content_type if request.body_exists else "",
            request.body_exists,
        )
    if refused is not None:
        return error_response(refused)
    request[PRINCIPAL] = who
    token = access.ACTING.set(who)
    try:
        return await handler(request)
    finally:
        access.ACTING.reset(token)


async def _authenticate_or_error(request: web.Request) -> Principal | web.Response:
    try:
        authenticators: list[Authenticator] = request.app.get(API_AUTHENTICATORS) or []
        who = await authenticate(request, authenticators)
    except ApiError as e:
        return error_response(e)
    if who is None:
        return error_response(
            ApiError(401, "unauthorized", "authentication required: sign in or send a token")
        )
    return who


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
