"""``/api/v1/users``: panel users for admins, the same operations as ``centralita user``.

Reading needs scope ``users:read``, changing ``users:write`` (tokens with those scopes, or
admins in the panel, whose scope is ``*``). A signed-in user may also set their own password
by giving the current one; their other sessions end, the one they use stays. Disabling,
deleting or setting a password ends the user's sessions and closes their open panel tabs at
once. Bodies are msgspec structs: validation and the OpenAPI schemas both come from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web

from gateway.api.auth import Principal, principal, require
from gateway.errors import ApiError
from gateway.panel.passwords import MAX_LENGTH
from gateway.panel.routes import PANEL
from gateway.panel.service import PanelService
from gateway.panel.sessions import COOKIE, token_hash
from gateway.panel.users import User, UserError

T = TypeVar("T")
RoleName = Literal["agent", "supervisor", "admin"]
Password = Annotated[str, msgspec.Meta(max_length=MAX_LENGTH)]
Extensions = Annotated[list[str], msgspec.Meta(max_length=8)]
DisplayName = Annotated[str, msgspec.Meta(max_length=80)]


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    """A user to create. The password must pass the policy (at least 10 characters, not a
    common password, not built on the user's names)."""

    username: Annotated[str, msgspec.Meta(max_length=40)]
    password: Password
    role: RoleName = "agent"
    extensions: Extensions = msgspec.field(default_factory=list)
    display_name: DisplayName = ""


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    """The fields to change; those left out stay as they are. ``disabled: true`` ends the
    user's sessions."""

    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    role: RoleName | msgspec.UnsetType = msgspec.UNSET
    extensions: Extensions | msgspec.UnsetType = msgspec.UNSET
    display_name: DisplayName | msgspec.UnsetType = msgspec.UNSET


class PasswordChange(msgspec.Struct, forbid_unknown_fields=True):
    """A new password; ``current_password`` is required when it is your own."""

    password: Password
    current_password: Password | None = None


class UserDoc(msgspec.Struct):
    username: str
    display_name: str
    role: RoleName
    extensions: list[str]
    disabled: bool
    sessions: int  # unexpired sign-ins


class UserList(msgspec.Struct):
    items: list[UserDoc]


class AgentDoc(msgspec.Struct):
    """Someone who takes calls: what a supervisor needs to hand them work (no sessions, no
    disabled accounts, no administrators)."""

    username: str
    display_name: str
    role: RoleName
    extensions: list[str]


class AgentList(msgspec.Struct):
    items: list[AgentDoc]


class SessionsEnded(msgspec.Struct):
    sessions_ended: int


# what each UserError code means for HTTP; the rest are 422 (a field is wrong)
_STATUS = {"user_not_found": 404, "username_taken": 409, "last_admin": 409}


def _api_error(e: UserError) -> ApiError:
    field = str(e).partition(":")[0] if ":" in str(e) else None
    return ApiError(_STATUS.get(e.code, 422), e.code, str(e), {"field": field} if field else None)


def _doc(user: User, sessions: int) -> UserDoc:
    return UserDoc(
        user.username,
        user.display_name,
        user.role.value,
        list(user.extensions),
        user.disabled,
        sessions,
    )


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise ApiError(422, "invalid_field", str(e)) from None
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {e}") from None


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.json_response(body=msgspec.json.encode(doc), status=status)


_new = msgspec.json.Decoder(NewUser)
_change = msgspec.json.Decoder(UserChange)
_password = msgspec.json.Decoder(PasswordChange)


async def _user_doc(panel: PanelService, username: str) -> UserDoc:
    user = await panel.users.get(username)
    if user is None:
        raise _api_error(UserError(f"user {username[:40]!r} does not exist", "user_not_found"))
    return _doc(user, (await panel.users.session_counts()).get(user.username, 0))


async def list_users(request: web.Request) -> web.Response:
    require(request, "users:read")
    panel = request.app[PANEL]
    counts = await panel.users.session_counts()
    users = await panel.users.all()
    return _json(UserList([_doc(u, counts.get(u.username, 0)) for u in users]))


async def list_agents(request: web.Request) -> web.Response:
    """The team a supervisor assigns work to (a campaign's call pool, a lead's owner): every
    enabled agent and supervisor, by display name."""
    require(request, "campaigns:write")
    users = await request.app[PANEL].users.all()
    team = sorted(
        (u for u in users if not u.disabled and u.role.value in ("agent", "supervisor")),
        key=lambda u: ((u.display_name or u.username).casefold(), u.username),
    )
    items = [
        AgentDoc(u.username, u.display_name or u.username, u.role.value, list(u.extensions))
        for u in team
    ]
    return _json(AgentList(items))


async def get_user(request: web.Request) -> web.Response:
    require(request, "users:read")
    return _json(await _user_doc(request.app[PANEL], request.match_info["username"]))


async def create_user(request: web.Request) -> web.Response:
    require(request, "users:write")
    body = _decode(_new, await request.read())
    panel = request.app[PANEL]
    try:
        user = await panel.users.add(
            body.username, body.password, body.role, body.extensions, body.display_name
        )
    except UserError as e:
        raise _api_error(e) from None
    return _json(_doc(user, 0), 201)


async def change_user(request: web.Request) -> web.Response:
    require(request, "users:write")
    body = _decode(_change, await request.read())
    panel = request.app[PANEL]

    def given(value: Any) -> Any:
        return None if value is msgspec.UNSET else value

    try:
        user, _ = await panel.users.update(
            request.match_info["username"],
            disabled=given(body.disabled),
            role=given(body.role),
            extensions=given(body.extensions),
            display_name=given(body.display_name),
        )
    except UserError as e:
        raise _api_error(e) from None
    await panel.check_sessions(user.username)
    return _json(await _user_doc(panel, user.username))


async def set_password(request: web.Request) -> web.Response:
    username = request.match_info["username"].strip().lower()
    who = principal(request)
    own = who is not None and who.kind == "user" and who.name == username
    if not own:
        require(request, "users:write")
    body = _decode(_password, await request.read())
    panel = request.app[PANEL]
    keep = None
    if own:
        await _check_current(panel, who, body.current_password)
        keep = token_hash(request.cookies.get(COOKIE, ""))
    try:
        ended = await panel.users.set_password(username, body.password, keep=keep)
    except UserError as e:
        raise _api_error(e) from None
    await panel.check_sessions(username)
    return _json(SessionsEnded(ended))


async def _check_current(panel: PanelService, who: Principal | None, current: str | None) -> None:
    """Your own password changes only with the current one: a borrowed session (a desk left
    signed in) must not be enough to lock the owner out."""
    assert who is not None
    if not current or await panel.users.verify(who.name, current) is None:
        raise ApiError(
            403,
            "wrong_current_password",
            "current_password: expected your current password",
            {"field": "current_password"},
        )


async def delete_user(request: web.Request) -> web.Response:
    require(request, "users:write")
    panel = request.app[PANEL]
    username = request.match_info["username"].strip().lower()
    try:
        await panel.users.delete(username)
    except UserError as e:
        raise _api_error(e) from None
    await panel.check_sessions(username)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/users", list_users),
        web.get("/api/v1/agents", list_agents),
        web.post("/api/v1/users", create_user),
        web.get("/api/v1/users/{username}", get_user),
        web.patch("/api/v1/users/{username}", change_user),
        web.delete("/api/v1/users/{username}", delete_user),
        web.post("/api/v1/users/{username}/password", set_password),
    ]


def schemas() -> dict[str, Any]:
    """The bodies above as JSON Schema components, for the OpenAPI document."""
    _, components = msgspec.json.schema_components(
        (NewUser, UserChange, PasswordChange, UserDoc, UserList, AgentList, SessionsEnded),
        ref_template="#/components/schemas/{name}",
    )
    return components


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    scope: str,
    ok: tuple[str, str, dict[str, Any] | None],
    *,
    description: str = "",
    body: str | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    status, text, schema = ok
    result: dict[str, Any] = {"description": text}
    if schema is not None:
        result["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {
        status: result,
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "403": {"$ref": "#/components/responses/Forbidden"},
    }
    names = {"400": "BadRequest", "404": "NotFound", "422": "Unprocessable"}
    for e in errors:
        if e == "409":
            responses[e] = {
                "description": "The name is taken (`username_taken`), or the change would leave "
                "no enabled admin (`last_admin`).",
                "content": {"application/json": {"schema": _ref("Error")}},
            }
        else:
            responses[e] = {"$ref": f"#/components/responses/{names[e]}"}
    op: dict[str, Any] = {
        "tags": ["Users"],
        "summary": summary,
        "description": f"{description}\n\nNeeds scope `{scope}`."
        if description
        else f"Needs scope `{scope}`.",
        "operationId": "",  # build_document fills it in from the method and path
        "security": [{"bearerAuth": [scope]}, {"panelSession": [scope]}],
        "x-scopes": [scope],
        "responses": dict(sorted(responses.items())),
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def openapi_paths() -> dict[str, Any]:
    """The user routes as OpenAPI 3.1 path items, in the shape of gateway/api/openapi.py
    (its Error schema and error responses; ``schemas()`` for the bodies), to merge there."""
    name = [
        {
            "name": "username",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,39}$"},
        }
    ]
    policy = (
        "A password is refused (422) with `password_too_short`, `password_too_long`, "
        "`password_common` or `password_like_name` (built on the user or display name), or "
        "`password_weak`; `error.message` says why."
    )
    return {
        "/api/v1/agents": {
            "get": _op(
                "The agents and supervisors who take calls",
                "campaigns:write",
                ("200", "Enabled agents and supervisors, by name.", _ref("AgentList")),
                description="Supervisors may read it too: it is whom they assign work to.",
            )
        },
        "/api/v1/users": {
            "get": _op("Panel users", "users:read", ("200", "Every user.", _ref("UserList"))),
            "post": _op(
                "Create a panel user",
                "users:write",
                ("201", "The user.", _ref("UserDoc")),
                description=policy,
                body="NewUser",
                errors=("400", "409", "422"),
            ),
        },
        "/api/v1/users/{username}": {
            "parameters": name,
            "get": _op(
                "A panel user",
                "users:read",
                ("200", "The user.", _ref("UserDoc")),
                errors=("404",),
            ),
            "patch": _op(
                "Disable, enable or change a panel user",
                "users:write",
                ("200", "The user.", _ref("UserDoc")),
                description="Disabling ends the user's sessions and closes their panel tabs. "
                "The last enabled admin cannot be disabled or demoted (`last_admin`).",
                body="UserChange",
                errors=("400", "404", "409", "422"),
            ),
            "delete": _op(
                "Delete a panel user",
                "users:write",
                ("204", "Deleted; their sessions ended.", None),
                description="The calls they took keep their name. The last enabled admin "
                "cannot be deleted (`last_admin`).",
                errors=("404", "409"),
            ),
        },
        "/api/v1/users/{username}/password": {
            "parameters": name,
            "post": _op(
                "Set a panel user's password",
                "users:write",
                ("200", "How many of the user's sessions ended.", _ref("SessionsEnded")),
                description="Ends every session of the user. A signed-in user may set their "
                "own password without the scope by giving `current_password` "
                "(`wrong_current_password`, 403, otherwise); the session they use stays. " + policy,
                body="PasswordChange",
                errors=("400", "404", "422"),
            ),
        },
    }
