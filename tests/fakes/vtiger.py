"""Stand-in for vTiger CRM 7/8's web service API (``/webservice.php``).

Sources for each behaviour:
- ``getchallenge`` is a GET returning ``{"token", "serverTime", "expireTime"}``, the token
  valid 5 minutes (``expireTime = time() + 60*5``): vtiger ``include/Webservices/AuthToken.php``
  (``vtws_getchallenge``); "getchallenge must be a GET request" (coreBOS session test gist).
- ``login`` is a form POST with ``username`` and ``accessKey = md5(token . accesskey)``;
  a bad digest is ``INVALID_USER_CREDENTIALS`` "Invalid username or password", an expired
  token ``INVALID_AUTH_TOKEN`` "Specified token is invalid or expired":
  ``include/Webservices/Login.php`` (``vtws_login``). The answer carries ``sessionName``,
  ``userId`` (``19x1``), ``version``, ``vtigerVersion``.
- Every answer is ``{"success": true, "result": ...}`` or ``{"success": false, "error":
  {"code", "message"}}``; codes from ``include/Webservices/WebServiceErrorCode.php``
  (INVALID_SESSIONID, SESSION_EXPIRED, SESSION_LEFT_IDLE, AUTHENTICATION_REQUIRED,
  QUERY_SYNTAX_ERROR, MANDATORY_FIELDS_MISSING...). A dead session answers INVALID_SESSIONID
  "Session Identifier provided is Invalid" (``include/Webservices/SessionManager.php``).
- ``query`` is a GET whose ``query`` is ``select * | cols | count(*) from <Module> [where
  <conditions>] [order by ...] [limit [m,] n];``, terminated by a semicolon; conditions are
  =, <, >, <=, >=, !=, in (...), like '...', joined by and/or, evaluated left to right, no
  parentheses in vtiger's original language; at most 100 rows: coreBOS/vtiger "Web Service
  Query Language" documentation.
- ``create`` is a form POST with ``elementType`` and ``element`` (JSON); ids are
  ``<module ws id>x<record id>`` (Contacts 12, Accounts 11, Leads 10, Events 18, Users 19
  on a stock install).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.faults import Faults
from tests.fakes.sqlwhere import SqlSyntaxError, compile_tokens, tokenize

WS_PREFIX = {"Contacts": "12", "Accounts": "11", "Leads": "10", "Events": "18"}
EVENT_MANDATORY = (
    "subject",
    "assigned_user_id",
    "date_start",
    "time_start",
    "due_date",
    "time_end",
    "eventstatus",
    "activitytype",
    "duration_hours",
)


def _ok(result: Any) -> web.Response:
    return web.json_response({"success": True, "result": result})


def _fail(code: str, message: str) -> web.Response:
    return web.json_response({"success": False, "error": {"code": code, "message": message}})


@dataclass
class Vtiger:
    username: str = "centralita"
    access_key: str = "AbCdEf123456"
    user_id: str = "19x1"
    now: float = 1_700_000_000.0  # the server's clock, for token expiry
    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {m: [] for m in WS_PREFIX}
    )
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expireTime
    sessions: set[str] = field(default_factory=set)
    session_error: str = "INVALID_SESSIONID"  # what a dead session gets
    logins: int = 0
    queries: list[str] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def add(self, module: str, **values: Any) -> str:
        rid = values.pop("id", None) or f"{WS_PREFIX[module]}x{next(self._ids)}"
        self.tables[module].append({"id": rid, **{k: str(v) for k, v in values.items()}})
        return rid

    def expire_sessions(self, code: str = "INVALID_SESSIONID") -> None:
        self.sessions.clear()
        self.session_error = code

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware()])
        app.router.add_route("*", "/webservice.php", self.webservice)
        return app

    async def webservice(self, request: web.Request) -> web.Response:
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        op = params.get("operation", "")
        self.faults.requests.append(op)
        if op == "getchallenge":
            if request.method != "GET":
                return _fail("OPERATION_NOT_SUPPORTED", "Operation getchallenge must be GET")
            token = uuid.uuid4().hex[:13]
            self.tokens[token] = self.now + 300
            return _ok(
                {"token": token, "serverTime": int(self.now), "expireTime": int(self.now + 300)}
            )
        if op == "login":
            return self._login(request, params)
        if params.get("sessionName") not in self.sessions:
            message = {
                "INVALID_SESSIONID": "Session Identifier provided is Invalid",
                "SESSION_LEFT_IDLE": "Session has been invalidated to due lack activity",
            }.get(self.session_error, "Session expired")
            return _fail(self.session_error, message)
        if op == "query" and request.method == "GET":
            return self._query(params.get("query", ""))
        if op == "create" and request.method == "POST":
            return self._create(params)
        return _fail("UNKNOWN_OPERATION", f"Unknown operation requested: {op}")

    def _login(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if request.method != "POST":
            return _fail("OPERATION_NOT_SUPPORTED", "Operation login must be POST")
        live = [t for t, exp in self.tokens.items() if exp >= self.now]
        if params.get("username") != self.username or not live:
            return _fail("INVALID_AUTH_TOKEN", "Specified token is invalid or expired")
        token = live[-1]  # vtws_getchallenge keeps one token per user
        want = hashlib.md5((token + self.access_key).encode()).hexdigest()
        if params.get("accessKey") != want:
            return _fail("INVALID_USER_CREDENTIALS", "Invalid username or password")
        self.logins += 1
        session = uuid.uuid4().hex
        self.sessions.add(session)
        return _ok(
            {
                "sessionName": session,
                "userId": self.user_id,
                "version": "0.22",
                "vtigerVersion": "7.5.0",
            }
        )

    def _query(self, statement: str) -> web.Response:
        self.queries.append(statement)
        try:
            rows = self._run(statement)
        except SqlSyntaxError as e:
            return _fail("QUERY_SYNTAX_ERROR", f"Syntax Error on line 1: {e}")
        return _ok(rows)

    def _run(self, statement: str) -> list[dict[str, Any]]:
        toks = tokenize(statement, comments=False)  # VTQL has no comments
        if not toks or toks[-1] != ("op", ";"):
            raise SqlSyntaxError("query must end with ';'")
        toks = toks[:-1]
        words = [v.lower() if k == "word" else None for k, v in toks]
        if not words or words[0] != "select" or "from" not in words:
            raise SqlSyntaxError("expected select ... from <module>")
        f = words.index("from")
        cols = [v for k, v in toks[1:f] if not (k == "op" and v == ",")]
        module = toks[f + 1][1] if f + 1 < len(toks) else ""
        if module not in self.tables:
            raise SqlSyntaxError(f"unknown module {module!r}")
        rest = toks[f + 2 :]
        limit = 100
        lower = [v.lower() if k == "word" else None for k, v in rest]
        if "limit" in lower:
            i = lower.index("limit")
            nums = [v for k, v in rest[i + 1 :] if k == "num"]
            if not nums:
                raise SqlSyntaxError("limit expects a number")
            limit = min(limit, int(nums[-1]))
            rest, lower = rest[:i], lower[:i]
        if "order" in lower:
            i = lower.index("order")
            rest, lower = rest[:i], lower[:i]
        pred = lambda r: True  # noqa: E731
        if rest:
            if lower[0] != "where":
                raise SqlSyntaxError(f"unexpected {rest[0][1]!r}")
            pred = compile_tokens(rest[1:], lambda c: c, parens=False)
        rows = [r for r in self.tables[module] if pred(r)][:limit]
        if cols == ["*"]:
            return [dict(r) for r in rows]
        if [c.lower() for c in cols] == ["count", "(", "*", ")"]:
            return [{"count": str(len(rows))}]
        return [{c: r.get(c, "") for c in cols} | {"id": r["id"]} for r in rows]

    def _create(self, params: dict[str, str]) -> web.Response:
        module = params.get("elementType", "")
        if module not in self.tables:
            return _fail("ACCESS_DENIED", "Permission to perform the operation is denied")
        try:
            element = json.loads(params.get("element", ""))
        except ValueError:
            return _fail("INVALID_PARAMETER", "element is not JSON")
        if module == "Events":
            missing = [f for f in EVENT_MANDATORY if not element.get(f)]
            if missing:
                return _fail("MANDATORY_FIELDS_MISSING", f"{missing[0]} does not have a value")
        rid = self.add(module, **element)
        return _ok(next(r for r in self.tables[module] if r["id"] == rid))
