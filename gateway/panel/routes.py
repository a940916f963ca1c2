"""HTTP face of the panel: pages, the JSON routes under ``/panel/api``, recordings, the socket.

Who may use each route is decided by the access table (``gateway/access.py``), which the auth
middleware enforces before these handlers run, with its cross-site rule for changes made with
the session cookie. The wrapper below checks again what also protects the public sign-in: a
same-origin ``Origin`` (when the browser sends one) and a JSON body. Errors leave as
``{"error": {"id", "message", "details"}}`` with a message meant for the agent.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from gateway.api.auth import error_response
from gateway.api.params import decode_json
from gateway.errors import ApiError
from gateway.ops import is_https
from gateway.panel.service import PanelService
from gateway.panel.sessions import COOKIE, Session
from gateway.panel.users import UserError

log = logging.getLogger("gateway.panel")

PANEL: web.AppKey[PanelService] = web.AppKey("panel", PanelService)
WEB_PANEL = Path(__file__).resolve().parent.parent.parent / "web" / "panel"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SessionHandler = Callable[[web.Request, Session], Awaitable[Any]]


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or a same-origin GET; the cookie is SameSite=Strict
    panel = request.app[PANEL]
    if origin.rstrip("/").lower() in panel.hub.allowed_origins:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def api(handler: SessionHandler, *, session: bool = True) -> Handler:
    """JSON in and out; ApiError becomes a JSON error; the session is looked up first."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "GET":
                if not _same_origin(request):
                    raise ApiError(403, "cross_origin", "Request from another site refused.")
                if request.content_type != "application/json":
                    raise ApiError(415, "json_only", "Send the body as application/json.")
            s = await request.app[PANEL].session_of(request) if session else None
            if session and s is None:
                raise ApiError(401, "signed_out", "Your session ended; sign in again.")
            result = await handler(request, s)  # type: ignore[arg-type]
        except ApiError as e:
            return error_response(e)
        except json.JSONDecodeError:
            return error_response(ApiError(400, "invalid_json", "The body is not valid JSON."))
        if isinstance(result, web.StreamResponse):
            return result
        resp = web.json_response(result)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    return wrapped


PANEL_MAX_BODY = 64 * 1024


async def _body(request: web.Request) -> Any:
    # the API's parser: 1e999, NaN, invalid UTF-8 and deep nesting are a 400, not a 500
    return decode_json(await _raw_body(request), status=400)


async def _raw_body(request: web.Request) -> bytes:
    # read at most one byte past the limit: a chunked body has no Content-Length to check
    raw = b""
    while len(raw) <= PANEL_MAX_BODY:
        chunk = await request.content.read(PANEL_MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > PANEL_MAX_BODY:
        raise ApiError(413, "too_large", "Body too large.")
    return raw


# -- pages ------------------------------------------------------------------------------------


def _page(name: str) -> web.FileResponse:
    resp = web.FileResponse(WEB_PANEL / name)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def panel_page(request: web.Request) -> web.StreamResponse:
    if await request.app[PANEL].session_of(request) is None:
        raise web.HTTPFound("/panel/login")
    return _page("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    return _page("login.html")


async def to_panel(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/panel/")


# -- sign-in ----------------------------------------------------------------------------------


async def login(request: web.Request, _: Session | None) -> web.Response:
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Expected a JSON object.")
    panel = request.app[PANEL]
    token, session = await panel.login(
        body.get("username"), body.get("password"), body.get("extensions"), request.remote or "?"
    )
    resp = web.json_response({"me": session.to_json()})
    resp.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=is_https(request),  # also behind a TLS proxy from http.trusted_proxies
        path="/",
        max_age=int(panel.settings.session_hours * 3600),
    )
    return resp


async def logout(request: web.Request, _: Session | None) -> web.Response:
    await request.app[PANEL].logout(request.cookies.get(COOKIE))
    resp = web.json_response({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


# -- the panel's data ------------------------------------------------------------------------


async def state(request: web.Request, s: Session) -> Any:
    panel = request.app[PANEL]
    doc = await panel.state(s)
    doc["preferences"] = (await panel.users.preferences(s.username)).to_json()
    doc["languages"] = available_languages()
    doc["wrapups"] = await panel.pending_wrapups(s.username)  # survive a reload and a restart
    return doc


def available_languages() -> list[str]:
    """The languages the panel speaks: one catalog file each, so adding a language is adding
    a file (``web/panel/assets/i18n/<code>.json``)."""
    return sorted(p.stem for p in (WEB_PANEL / "assets" / "i18n").glob("*.json"))


class PreferencesBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /panel/api/preferences``: what is given changes, what is left out stays."""

    language: str | msgspec.UnsetType | None = msgspec.UNSET  # null: follow the browser
    notifications: bool | msgspec.UnsetType = msgspec.UNSET
    ring_sound: bool | msgspec.UnsetType = msgspec.UNSET
    theme: Literal["auto", "light", "dark"] | msgspec.UnsetType = msgspec.UNSET


async def preferences(request: web.Request, s: Session) -> Any:
    panel = request.app[PANEL]
    body: PreferencesBody = decode_json(await _raw_body(request), PreferencesBody, status=400)
    current = await panel.users.preferences(s.username)
    changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
    language = changes.get("language", current.language)
    if language is not None and language not in available_languages():
        raise ApiError(
            400,
            "bad_language",
            f"language: expected one of {', '.join(available_languages())} or null",
            {"field": "language", "languages": available_languages()},
        )
    try:
        saved = await panel.users.set_preferences(s.username, replace(current, **changes))
    except UserError as e:
        raise ApiError(404, e.code, str(e)) from None
    return saved.to_json()


async def board(request: web.Request, s: Session) -> Any:
    return request.app[PANEL].board_of(s)


async def presence(request: web.Request, s: Session) -> Any:
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Expected a JSON object.")
    return await request.app[PANEL].set_presence(s, body.get("status"), body.get("reason"))


async def calls(request: web.Request, s: Session) -> Any:
    return await request.app[PANEL].history(s, request.query)


async def call(request: web.Request, s: Session) -> Any:
    return await request.app[PANEL].call_for(s, request.match_info["call_id"])


async def wrap_up(request: web.Request, s: Session) -> Any:
    body = await _body(request)
    return await request.app[PANEL].wrap_up(s, request.match_info["call_id"], body)


async def lookup(request: web.Request, s: Session) -> Any:
    from gateway.panel.service import card_to_json

    panel = request.app[PANEL]
    number = request.query.get("number", "")
    return {
        "card": card_to_json(await panel.lookup.lookup(number), panel.cfg.lookup.default_region)
    }


async def create_person(request: web.Request, s: Session) -> Any:
    return await request.app[PANEL].create_person(s, await _body(request))


async def originate(request: web.Request, s: Session) -> Any:
    body = await _body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "Expected a JSON object.")
    attempt = await request.app[PANEL].originate(s, body.get("number"))
    return attempt.to_json()


async def followups(request: web.Request, s: Session) -> Any:
    panel = request.app[PANEL]
    tasks = await panel.follow_ups.open_due(owner=s.username, limit=100)
    out = []
    for t in tasks:
        person = await panel.people.get(t.person_id)
        out.append(
            {
                **t.to_dict(),
                "person": person.display_name if person else "",
                "number": person.phones[0].e164 if person and person.phones else None,
            }
        )
    return {"items": out}


async def recording(request: web.Request, s: Session) -> web.StreamResponse:
    try:
        index = int(request.match_info["index"])
    except ValueError:
        raise ApiError(404, "not_found", "No such recording.") from None
    path = await request.app[PANEL].recording_path(s, request.match_info["call_id"], index)
    resp = web.FileResponse(path)
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp.headers["Content-Type"] = ctype
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Content-Disposition"] = "inline"
    return resp


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[PANEL].hub.handle(request)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/panel", to_panel)
    r.add_get("/panel/", panel_page)
    r.add_get("/panel/login", login_page)
    r.add_static("/panel/assets/", WEB_PANEL / "assets", follow_symlinks=False)
    r.add_get("/panel/ws", websocket)
    r.add_post("/panel/api/login", api(login, session=False))
    r.add_post("/panel/api/logout", api(logout, session=False))
    r.add_get("/panel/api/state", api(state))
    r.add_get("/panel/api/board", api(board))
    r.add_post("/panel/api/presence", api(presence))
    r.add_get("/panel/api/calls", api(calls))
    r.add_get("/panel/api/calls/{call_id}", api(call))
    r.add_post("/panel/api/calls/{call_id}/wrapup", api(wrap_up))
    r.add_get("/panel/api/lookup", api(lookup))
    r.add_post("/panel/api/people", api(create_person))
    r.add_post("/panel/api/originate", api(originate))
    r.add_get("/panel/api/followups", api(followups))
    r.add_post("/panel/api/preferences", api(preferences))
    r.add_get("/panel/recordings/{call_id}/{index}", api(recording))
    # the wallboard and lead qualification keep their handlers in their own modules
    from gateway.panel import qualification, wallboard_feed

    wallboard_feed.add_routes(app, api, app[PANEL])
    from gateway.panel import controls  # call controls and listen/whisper/barge

    controls.add_routes(app, api, _raw_body, app[PANEL])
    qualification.add_routes(app, api, _body)
