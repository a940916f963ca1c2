"""The access policy: who may use which route, change which field and read which note.

Everything the gateway serves over HTTP is in :data:`ROUTES`, keyed by method and the route's
path template. The auth middleware (``gateway.api.auth``) looks the matched route up there and
refuses before any handler runs; a route missing from the table is refused to everyone (deny by
default) and a test fails when a registered route has no entry. ``docs/api.md`` shows the same
table, rendered by :func:`markdown_table` (a test keeps them equal).

Who is asking (a :class:`Principal`):

* a signed-in panel user, by role: ``agent``, ``supervisor`` or ``admin``;
* an API token, by scope. Scopes: ``*`` (everything) or ``area:level``, where ``admin`` implies
  ``write`` and ``write`` implies ``read`` (``crm:admin`` ⊃ ``crm:write`` ⊃ ``crm:read``);
* nobody (no credentials): only the public routes.

Field rules (:func:`check_changes`, called by the person repository on every update and dedupe
merge): anyone who may write a person may switch do-not-call or e-mail opt-out **on** (a caller
who asks not to be called is obeyed at once); switching them off, on the person or on one of
its numbers or addresses, and giving a person another owner need a supervisor, an admin or a
token with ``crm:admin``. An agent may only claim a person nobody owns. Each such change is
audited (who, when, old → new) in the ``audit_log`` table.

Notes (:func:`note_condition`): a note written about a call (a wrap-up) is seen by whoever may
see that call: its participants, supervisors, admins and tokens with ``calls:read``; its author
always. Notes about no call, and the call entries themselves, are seen by whoever may read the
person. Surfaces shared by several viewers (the caller card pushed while the phone rings) show
only what every agent may see.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ApiError

ROLES = ("agent", "supervisor", "admin")
MANAGERS = frozenset({"supervisor", "admin"})
EVERYONE = frozenset(ROLES)
ADMIN_ONLY = frozenset({"admin"})

# what a panel user's session may do through handlers that still check scopes themselves;
# a test checks that every role the table lets through holds the route's scope
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "agent": frozenset({"lookup", "calls:read", "crm:write"}),
    "supervisor": frozenset(
        {"lookup", "calls:write", "crm:admin", "audit:read", "campaigns:write", "reports:read"}
    ),
    "admin": frozenset({"*"}),
}
PRIVILEGED_SCOPE = "crm:admin"  # tokens: clear do-not-call / opt-out, reassign owners
_LEVELS = {"read": 0, "write": 1, "admin": 2}


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
        want = _LEVELS.get(action)
        if want is None:
            return False
        return any(f"{area}:{level}" in self.scopes for level, n in _LEVELS.items() if n > want)

    @property
    def actor(self) -> str:
        """How the audit log names it: ``user:ana``, ``token:crm``."""
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True, slots=True)
class Rule:
    """Who may use one route: panel users by role, API tokens by scope."""

    roles: frozenset[str] = frozenset()
    scope: str | None = None  # None: no API token may use it
    public: bool = False  # no credentials needed
    note: str = ""  # shown in the docs' table
    own: str | None = None  # a path parameter: any signed-in user may act on their own name

    def allows(self, who: Principal | None, params: Mapping[str, str] | None = None) -> bool:
        if self.public:
            return True
        if who is None:
            return False
        if who.kind == "user":
            if who.role in self.roles:
                return True
            named = (params or {}).get(self.own or "", "").strip().lower()
            return self.own is not None and named == who.name
        return self.scope is not None and who.allows(self.scope)


PUBLIC = Rule(public=True)


def _crm(scope: str, roles: frozenset[str] = EVERYONE, note: str = "") -> Rule:
    return Rule(roles, scope, note=note)


def _panel(roles: frozenset[str] = EVERYONE, note: str = "") -> Rule:
    return Rule(roles, None, note=note)


def _people(plural: str) -> dict[tuple[str, str], Rule]:
    base = f"/api/v1/{plural}"
    return {
        ("GET", base): _crm("crm:read"),
        ("POST", base): _crm("crm:write", note="field rules apply to a dedupe merge"),
        ("GET", base + "/{id}"): _crm("crm:read", note="notes filtered: see below"),
        ("PATCH", base + "/{id}"): _crm("crm:write", note="field rules: see below"),
        ("DELETE", base + "/{id}"): _crm("crm:write", MANAGERS),
        ("POST", base + "/{id}/activities"): _crm("crm:write"),
        ("POST", base + "/{id}/follow-ups"): _crm("crm:write"),
    }


# (method, path template) -> rule; HEAD is looked up as GET
ROUTES: dict[tuple[str, str], Rule] = {
    # -- /api/v1 ------------------------------------------------------------------------------
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("GET", "/api/v1/lookup"): _crm("lookup"),
    ("GET", "/api/v1/callername"): _crm("lookup", note="plain text, for the dialplan"),
    **_people("contacts"),
    **_people("leads"),
    ("GET", "/api/v1/accounts"): _crm("crm:read"),
    ("POST", "/api/v1/accounts"): _crm("crm:write"),
    ("GET", "/api/v1/accounts/{id}"): _crm("crm:read"),
    ("PATCH", "/api/v1/accounts/{id}"): _crm("crm:write"),
    ("DELETE", "/api/v1/accounts/{id}"): _crm("crm:write", MANAGERS),
    ("POST", "/api/v1/import"): _crm("crm:write", MANAGERS),
    ("GET", "/api/v1/calls"): _crm("calls:read", note="agents: their own calls"),
    ("GET", "/api/v1/calls/{id}"): _crm("calls:read", note="agents: their own calls"),
    ("PATCH", "/api/v1/calls/{id}"): _crm("calls:write", MANAGERS),
    ("POST", "/api/v1/originate"): Rule(frozenset(), "originate", note="agents: the panel"),
    ("GET", "/api/v1/originate/{call_id}"): Rule(frozenset(), "originate"),
    ("GET", "/api/v1/leads/{id}/score"): _crm("crm:read"),
    ("PUT", "/api/v1/leads/{id}/score-inputs"): _crm("crm:write"),
    ("POST", "/api/v1/leads/{id}/form-fills"): _crm("crm:write"),
    ("GET", "/api/v1/worklist"): _crm("crm:read"),
    ("GET", "/api/v1/outbox"): _crm("outbox:read", ADMIN_ONLY),
    ("POST", "/api/v1/outbox/retry"): _crm("outbox:write", ADMIN_ONLY),
    ("GET", "/api/v1/audit"): _crm("audit:read", MANAGERS),
    ("GET", "/api/v1/campaigns"): _crm("campaigns:read", MANAGERS),
    ("POST", "/api/v1/campaigns"): _crm("campaigns:write", MANAGERS, note="a draft"),
    ("POST", "/api/v1/campaigns/preview"): _crm("campaigns:read", MANAGERS),
    ("GET", "/api/v1/campaigns/{id}"): _crm("campaigns:read", MANAGERS),
    ("PUT", "/api/v1/campaigns/{id}"): _crm("campaigns:write", MANAGERS, note="draft or paused"),
    ("DELETE", "/api/v1/campaigns/{id}"): _crm("campaigns:write", MANAGERS, note="drafts only"),
    ("POST", "/api/v1/campaigns/{id}/start"): _crm("campaigns:write", MANAGERS),
    ("POST", "/api/v1/campaigns/{id}/pause"): _crm("campaigns:write", MANAGERS),
    ("POST", "/api/v1/campaigns/{id}/end"): _crm("campaigns:write", MANAGERS),
    ("GET", "/api/v1/campaigns/{id}/results"): _crm("campaigns:read", MANAGERS),
    ("GET", "/api/v1/campaigns/{id}/members"): _crm("campaigns:read", MANAGERS),
    ("POST", "/api/v1/campaigns/{id}/members/{member_id}/replied"): _crm(
        "campaigns:write", MANAGERS
    ),
    ("POST", "/api/v1/segments/count"): _crm("campaigns:read", MANAGERS),
    ("GET", "/api/v1/reports/{name}.{format}"): _crm(
        "reports:read", MANAGERS, note="svg, csv or xlsx"
    ),
    ("GET", "/api/v1/reports/{name}"): _crm("reports:read", MANAGERS, note="JSON"),
    ("POST", "/api/v1/deals"): _crm("crm:write", note="updates the one with its external_id"),
    ("POST", "/api/v1/deals/import"): _crm("crm:write", MANAGERS, note="CSV"),
    ("GET", "/api/v1/deals"): _crm("crm:read"),
    ("GET", "/api/v1/people/{id}/metrics"): _crm("crm:read"),
    ("GET", "/api/v1/leads/{id}/best-hour"): _crm("crm:read"),
    ("POST", "/api/v1/segments/best-hour"): _crm("campaigns:read", MANAGERS),
    ("POST", "/api/v1/leads/{id}/unsubscribe"): _crm(
        "crm:write", note="opts the lead's e-mail out, for them"
    ),
    ("GET", "/api/v1/users"): Rule(ADMIN_ONLY, "users:read"),
    ("GET", "/api/v1/agents"): Rule(MANAGERS, "campaigns:write", note="whom work is assigned to"),
    ("POST", "/api/v1/users"): Rule(ADMIN_ONLY, "users:write"),
    ("GET", "/api/v1/users/{username}"): Rule(ADMIN_ONLY, "users:read"),
    ("PATCH", "/api/v1/users/{username}"): Rule(ADMIN_ONLY, "users:write"),
    ("DELETE", "/api/v1/users/{username}"): Rule(ADMIN_ONLY, "users:write"),
    # the handler lets anyone set their own (with the current one); others' need users:write
    ("POST", "/api/v1/users/{username}/password"): Rule(
        ADMIN_ONLY, "users:write", own="username", note="everyone: their own, with the current one"
    ),
    # -- the panel (session cookie only) -------------------------------------------------------
    ("POST", "/panel/api/login"): PUBLIC,
    ("POST", "/panel/api/logout"): PUBLIC,
    ("GET", "/panel/api/state"): _panel(),
    ("GET", "/panel/api/board"): _panel(MANAGERS),
    ("POST", "/panel/api/presence"): _panel(),
    ("GET", "/panel/api/calls"): _panel(note="agents: their own calls"),
    ("GET", "/panel/api/calls/{call_id}"): _panel(note="agents: their own calls"),
    ("POST", "/panel/api/calls/{call_id}/wrapup"): _panel(note="agents: their own calls"),
    ("POST", "/panel/api/calls/{call_id}/hangup"): _panel(note="the agent's own live call"),
    ("POST", "/panel/api/calls/{call_id}/transfer"): _panel(note="the agent's own live call"),
    ("POST", "/panel/api/calls/{call_id}/transfer/complete"): _panel(
        note="the agent's own attended transfer"
    ),
    ("POST", "/panel/api/calls/{call_id}/transfer/cancel"): _panel(
        note="the agent's own attended transfer"
    ),
    ("POST", "/panel/api/calls/{call_id}/hold"): _panel(note="the agent's own live call"),
    ("POST", "/panel/api/calls/{call_id}/resume"): _panel(note="the agent's own live call"),
    ("POST", "/panel/api/spy"): _panel(MANAGERS, note="listen, whisper or barge"),
    ("GET", "/panel/api/lookup"): _panel(),
    ("POST", "/panel/api/people"): _panel(),
    ("POST", "/panel/api/originate"): _panel(),
    ("GET", "/panel/api/followups"): _panel(),
    ("GET", "/panel/api/wallboard"): _panel(MANAGERS),
    ("GET", "/panel/api/people/{id}/qualification"): _panel(),
    ("PUT", "/panel/api/people/{id}/qualification"): _panel(),
    ("POST", "/panel/api/people/{id}/convert"): _panel(note="a qualified lead"),
    ("POST", "/panel/api/preferences"): _panel(note="the user's own settings"),
    # registered by `centralita demo` only (its local SMTP sink); the access test registers them
    ("GET", "/panel/api/demo/mails"): _panel(MANAGERS, note="`centralita demo` only"),
    ("GET", "/panel/api/demo/mails/{id}"): _panel(MANAGERS, note="`centralita demo` only"),
    ("GET", "/panel/recordings/{call_id}/{index}"): _panel(note="agents: their own calls"),
    ("GET", "/panel/ws"): _panel(),
    # -- pages and operations ------------------------------------------------------------------
    ("GET", "/panel"): PUBLIC,
    ("GET", "/panel/"): Rule(public=True, note="sends who is signed out to the sign-in page"),
    ("GET", "/panel/login"): PUBLIC,
    ("GET", "/panel/assets"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/status"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    # -- campaign e-mail links: the signed token in the path is the credential -----------------
    ("GET", "/unsubscribe/{token}"): Rule(public=True, note="confirm page; never unsubscribes"),
    ("POST", "/unsubscribe/{token}"): Rule(public=True, note="the button and RFC 8058 one-click"),
    ("GET", "/o/{token}"): Rule(public=True, note="e-mail open pixel"),
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# every scope a token may be given: what the routes ask for, the field rules' one, and "*"
TOKEN_SCOPES = frozenset(
    {"*", PRIVILEGED_SCOPE} | {r.scope for r in ROUTES.values() if r.scope is not None}
)


def rule_for(method: str, template: str) -> Rule | None:
    """The rule of a route, or None when the table does not list it (then: refused)."""
    return ROUTES.get(("GET" if method == "HEAD" else method, template))


def refusal(
    rule: Rule, who: Principal | None, params: Mapping[str, str] | None = None
) -> ApiError | None:
    """Why ``who`` may not use a route under ``rule`` with these path ``params`` (None: they
    may)."""
    if rule.allows(who, params):
        return None
    if who is None:
        return ApiError(401, "unauthorized", "authentication required: sign in or send a token")
    if who.kind == "user":
        roles = [r for r in ROLES if r in rule.roles]
        return ApiError(
            403,
            "forbidden",
            f"{who.role} {who.name!r} may not do this; "
            + (f"ask a {roles[0]}" if roles else "it is for API tokens"),
            {"role": roles[0] if roles else None, "roles": roles},  # the least role that may
        )
    if rule.scope is None:
        return ApiError(403, "forbidden", "only the panel's signed-in users may do this")
    return ApiError(
        403,
        "forbidden",
        f"token {who.name!r} lacks scope {rule.scope!r}",
        {"scope": rule.scope},
    )


def unlisted(method: str, template: str) -> ApiError:
    return ApiError(
        403, "route_not_listed", f"{method} {template} is not in the access table; refused"
    )


# -- cross-site requests ------------------------------------------------------------------------

FORM_TYPES = frozenset({"application/json", "multipart/form-data"})


def cross_site_refusal(
    method: str,
    origin: str | None,
    referer: str | None,
    host: str,
    trusted: Iterable[str],
    content_type: str,
    has_body: bool,
) -> ApiError | None:
    """Why a request carrying the session cookie may not change anything (None: it may).

    A change must name where it comes from (``Origin``, else ``Referer``), and that must be
    the request's own host and port or a trusted origin (the public URL, ``panel.
    allowed_origins``): SameSite cookies still ride along from another port of the same host.
    A body must be JSON or multipart, which a cross-site form or a no-cors ``fetch`` cannot
    send without the browser asking first.
    """
    if method in SAFE_METHODS:
        return None
    source = origin if origin is not None else origin_of(referer)
    if not source or source == "null":
        return ApiError(
            403, "cross_origin", "Request refused: it does not say which page sent it (Origin)."
        )
    allowed = {o.rstrip("/").lower() for o in trusted}
    source = source.rstrip("/").lower()
    if source not in allowed and _netloc(source) != host.lower():
        return ApiError(403, "cross_origin", "Request from another site refused.")
    if has_body and content_type not in FORM_TYPES:
        return ApiError(415, "json_only", "Send the body as application/json.")
    return None


def origin_of(url: str | None) -> str | None:
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _netloc(origin: str) -> str:
    return origin.partition("://")[2].split("/", 1)[0]


# -- the principal of the request being served ------------------------------------------------

# set by the auth middleware for the request's task; None outside a request (CLI, workers)
ACTING: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("acting", default=None)


def acting() -> Principal | None:
    return ACTING.get()


# -- field rules -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One audited change of a protected field."""

    field: str
    old: Any
    new: Any


@dataclass(slots=True)
class Snapshot:
    """The protected fields of a person, before or after a write."""

    do_not_call: bool = False
    email_opt_out: bool = False
    owner: str | None = None
    numbers_dnc: dict[str, bool] = field(default_factory=dict)  # e164 -> do_not_call
    emails_out: dict[str, bool] = field(default_factory=dict)  # lower-cased -> opted_out


def may_override(who: Principal | None) -> bool:
    """Supervisors, admins, ``crm:admin`` tokens and the gateway itself (None: CLI, seed)."""
    if who is None:
        return True
    if who.kind == "user":
        return who.role in MANAGERS
    return who.allows(PRIVILEGED_SCOPE)


def check_changes(who: Principal | None, before: Snapshot, after: Snapshot) -> list[Change]:
    """The protected changes from ``before`` to ``after``; 403 if ``who`` may not make one.

    A number or address removed while flagged counts as its flag switched off."""
    changes: list[Change] = []
    refused: list[str] = []
    privileged = may_override(who)

    def flag(name: str, old: bool, new: bool) -> None:
        if old == new:
            return
        changes.append(Change(name, old, new))
        if old and not new and not privileged:
            refused.append(name)

    flag("do_not_call", before.do_not_call, after.do_not_call)
    flag("email_opt_out", before.email_opt_out, after.email_opt_out)
    for e164, old in sorted(before.numbers_dnc.items()):
        flag(f"phones[{e164}].do_not_call", old, after.numbers_dnc.get(e164, False))
    for e164, new in sorted(after.numbers_dnc.items()):
        if e164 not in before.numbers_dnc and new:
            flag(f"phones[{e164}].do_not_call", False, True)
    for addr, old in sorted(before.emails_out.items()):
        flag(f"emails[{addr}].opted_out", old, after.emails_out.get(addr, False))
    for addr, new in sorted(after.emails_out.items()):
        if addr not in before.emails_out and new:
            flag(f"emails[{addr}].opted_out", False, True)
    if (before.owner or None) != (after.owner or None):
        changes.append(Change("owner", before.owner, after.owner))
        claim = who is not None and who.kind == "user" and after.owner == who.name
        if not privileged and not (claim and not before.owner):
            refused.append("owner")
    if refused:
        raise ApiError(
            403,
            "protected_field",
            f"only a supervisor may change {', '.join(refused)}",
            {"fields": refused, "role": "supervisor", "scope": PRIVILEGED_SCOPE},
        )
    return changes


# -- notes -------------------------------------------------------------------------------------


def sees_all_notes(who: Principal | None) -> bool:
    if who is None:
        return True
    if who.kind == "user":
        return who.role in MANAGERS
    return who.allows("calls:read")


def note_condition(who: Principal | None, *, shared: bool = False) -> tuple[str, list[str]]:
    """SQL condition on an ``activities`` row (no alias) saying whether ``who`` may read it.

    ``shared``: the text goes to several viewers at once (the caller card), so it shows only
    what every agent may read."""
    if not shared and sees_all_notes(who):
        return "1 = 1", []
    open_to_all = "(kind != 'note' OR call_id IS NULL)"
    if shared or who is None or who.kind != "user":
        return open_to_all, []
    return (
        f"({open_to_all} OR author = ?"
        " OR call_id IN (SELECT call_id FROM call_users WHERE username = ?))",
        [who.name, who.name],
    )


# -- the table as the docs show it -------------------------------------------------------------


def _cell(rule: Rule, role: str) -> str:
    if rule.public or role in rule.roles:
        return "✓"
    return "own" if rule.own else "—"


def markdown_table(routes: Mapping[tuple[str, str], Rule] = ROUTES) -> str:
    """The role-by-route table of ``docs/api.md``."""
    lines = [
        "| route | agent | supervisor | admin | token scope | nobody | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for (method, path), rule in routes.items():
        scope = "any" if rule.public else (f"`{rule.scope}`" if rule.scope else "no tokens")
        cells = [_cell(rule, r) for r in ROLES]
        nobody = "✓" if rule.public else "—"
        lines.append(
            f"| `{method} {path}` | {' | '.join(cells)} | {scope} | {nobody} | {rule.note} |"
        )
    return "\n".join(lines)
