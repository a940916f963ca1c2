"""Stand-in for vTiger CRM 8.0.0's web service API (``/webservice.php``).

Ground truth is the recording in ``tests/data/crm-traces/vtiger-8.0.0/`` (real vTiger 8.0.0
traffic; ``tests/test_connector_vtiger_replay.py`` replays it against this stand-in), and where
nothing was recorded, vtiger's ``include/Webservices`` sources and the VTQL grammar:

- ``getchallenge`` (GET) gives ``{"token", "serverTime", "expireTime"}``, valid 300 s (001); an
  unknown user is refused right there: ACCESS_DENIED "username does not exists" (003).
- ``login`` (POST) with ``accessKey = md5(token . accesskey)`` answers ``sessionName``,
  ``userId`` and the user's facts (``time_zone``...) (002, 070); a bad digest is
  INVALID_USER_CREDENTIALS "Invalid username or password" (004); an expired token
  INVALID_AUTH_TOKEN (vtiger ``Login.php``).
- Answers are ``Content-type: application/json`` without a charset, PHP ``json_encode`` style
  (``\\u`` escapes, ``\\/``) (every file); a made-up or expired session is INVALID_SESSIONID
  (025, 075); ``logout`` is HTTP 500 with an empty ``text/html`` body and the session keeps
  working (073, 074).
- ``query`` (GET): ``select * | cols | count(*) from <Module> [where <conds>] [order by cols
  [asc|desc]] [limit [offset,] n];``. Conditions are =, <, >, <=, >=, !=, in (...), like,
  joined by and/or, no grouping parentheses (021: QUERY_SYNTAX_ERROR), the ``;`` required
  (022: QUERY_SYNTAX_ERROR); a ``--`` comment or anything else the lexer cannot read is
  INTERNAL_SERVER_ERROR (020); an unknown field ACCESS_DENIED "Permission to access
  '.<f>.' attribute denied." (023), an unknown module ACCESS_DENIED (024); ``id`` is always
  answered; ``id`` conditions compare the number after the ``x`` (VTQL grammar); at most 100
  rows per answer (VTQL grammar, ``limit`` capped); deleted records never answer (019).
  Values are stored and answered exactly as typed, raw (005-017, 028, phone matrix 029-064).
- ``create`` (POST) stores values raw and answers the whole record; only the computed
  ``label`` is HTML-encoded (026, 065); 4-byte characters are stored as ``????`` (utf8mb3
  tables, 026); Events store date/time as sent (065, 071) and recompute
  ``duration_hours``/``duration_minutes`` from start and end (065, 067); a missing subject is
  MANDATORY_FIELDS_MISSING "subject does not have a value" (069).
- ``retrieve`` (GET) answers the record as ``create`` did (027, 066, 068, 072).
- ``Potentials`` (not recorded; a stock install's fields): ``amount`` as the DB's decimal
  text (``1500.00000000``), ``closingdate`` a day, ``sales_stage`` the stock values ("Closed
  Won", "Proposal or Price Quote"...), ``related_to`` an organization, ``contact_id`` a
  contact; like every module, a deleted potential never answers a query.

Queries are evaluated for real (``tests/fakes/sqlwhere.py``), so a connector that let
``' OR 1=1`` through would match every row here as on the real CRM. The directory pull's
query shape (``where modifiedtime ... order by modifiedtime, id limit n``) is served from a
sorted index, so pulling 100,000 records does not rescan the table for every page.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import itertools
import json
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.entities import codepoint2name
from typing import Any

from aiohttp import web

from tests.fakes.faults import Faults
from tests.fakes.sqlwhere import SqlSyntaxError, compile_tokens, tokenize

WS_PREFIX = {"Contacts": "12", "Accounts": "11", "Leads": "10", "Events": "18", "Potentials": "13"}
# every field a record answers, in vTiger 8.0.0's order (Contacts and Events as recorded in
# 026 and 065; Leads and Accounts from a stock install's field list)
FIELDS: dict[str, tuple[str, ...]] = {
    "Contacts": (
        "salutationtype", "firstname", "contact_no", "phone", "lastname", "mobile",
        "account_id", "homephone", "leadsource", "otherphone", "title", "fax", "department",
        "birthday", "email", "contact_id", "assistant", "secondaryemail", "assistantphone",
        "donotcall", "emailoptout", "assigned_user_id", "reference", "notify_owner",
        "createdtime", "modifiedtime", "modifiedby", "isconvertedfromlead", "portal",
        "support_start_date", "support_end_date", "mailingstreet", "otherstreet",
        "mailingcity", "othercity", "mailingstate", "otherstate", "mailingzip", "otherzip",
        "mailingcountry", "othercountry", "mailingpobox", "otherpobox", "description",
        "imagename", "id", "label",
    ),
    "Leads": (
        "salutationtype", "firstname", "lead_no", "phone", "lastname", "mobile", "company",
        "fax", "designation", "email", "leadsource", "website", "industry", "leadstatus",
        "annualrevenue", "rating", "noofemployees", "assigned_user_id", "secondaryemail",
        "createdtime", "modifiedtime", "modifiedby", "emailoptout", "lane", "code", "city",
        "country", "state", "pobox", "description", "id", "label",
    ),
    "Accounts": (
        "accountname", "account_no", "phone", "website", "fax", "tickersymbol", "otherphone",
        "account_id", "email1", "employees", "email2", "ownership", "industry", "rating",
        "accounttype", "siccode", "emailoptout", "annual_revenue", "assigned_user_id",
        "notify_owner", "modifiedtime", "createdtime", "modifiedby", "bill_street",
        "ship_street", "bill_city", "ship_city", "bill_state", "ship_state", "bill_code",
        "ship_code", "bill_country", "ship_country", "bill_pobox", "ship_pobox",
        "description", "id", "label",
    ),
    # not recorded: a stock 8.0 install's field list (vtiger_field, tabid 2)
    "Potentials": (
        "potentialname", "potential_no", "amount", "related_to", "closingdate",
        "opportunity_type", "nextstep", "leadsource", "sales_stage", "assigned_user_id",
        "probability", "campaignid", "createdtime", "modifiedtime", "modifiedby",
        "forecast_amount", "isconvertedfromlead", "contact_id", "source", "starred", "tags",
        "description", "id", "label",
    ),
    "Events": (
        "subject", "assigned_user_id", "date_start", "time_start", "due_date", "time_end",
        "recurringtype", "duration_hours", "duration_minutes", "parent_id", "eventstatus",
        "sendnotification", "activitytype", "location", "createdtime", "modifiedtime",
        "taskpriority", "notime", "visibility", "modifiedby", "description", "reminder_time",
        "contact_id", "id", "label",
    ),
}  # fmt: skip
DEFAULTS: dict[str, dict[str, str]] = {
    "Contacts": {
        "donotcall": "0", "emailoptout": "0", "reference": "0", "notify_owner": "0",
        "isconvertedfromlead": "0", "portal": "0",
    },
    "Leads": {"emailoptout": "0"},
    "Accounts": {"emailoptout": "0", "notify_owner": "0"},
    "Events": {"sendnotification": "0", "notime": "0", "reminder_time": "0"},
    "Potentials": {"isconvertedfromlead": "0", "starred": "0"},
}  # fmt: skip
AUTO_NUMBER = {"Contacts": ("contact_no", "CON"), "Leads": ("lead_no", "LEA"),
               "Accounts": ("account_no", "ACC"), "Potentials": ("potential_no", "POT")}  # fmt: skip
LABEL = {
    "Contacts": ("firstname", "lastname"),
    "Leads": ("firstname", "lastname"),
    "Accounts": ("accountname",),
    "Events": ("subject",),
    "Potentials": ("potentialname",),
}
EVENT_MANDATORY = (
    "subject",
    "assigned_user_id",
    "date_start",
    "time_start",
    "due_date",
    "time_end",
    "eventstatus",
    "activitytype",
)
MAX_ROWS = 100
_OPS = ("=", "!=", "<>", "<", ">", "<=", ">=")


def php_json(doc: Any) -> bytes:
    """JSON as PHP's ``json_encode`` writes it: ``\\u`` escapes, ``\\/``, no spaces."""
    return json.dumps(doc, separators=(",", ":")).replace("/", "\\/").encode()


def _answer(doc: Any) -> web.Response:
    return web.Response(body=php_json(doc), headers={"Content-type": "application/json"})


def _ok(result: Any) -> web.Response:
    return _answer({"success": True, "result": result})


def _fail(code: str, message: str) -> web.Response:
    return _answer({"success": False, "error": {"message": message, "code": code}})


def _stored(value: Any) -> str:
    """What a utf8mb3 column keeps: 4-byte characters become '????'."""
    return "".join("????" if ord(c) > 0xFFFF else c for c in str(value))


def _htmlentities(text: str) -> str:
    """PHP ``htmlentities(ENT_QUOTES)``: what vTiger puts in the computed ``label``."""
    out = []
    for c in html.escape(text, quote=False).replace('"', "&quot;").replace("'", "&#039;"):
        name = codepoint2name.get(ord(c)) if ord(c) > 127 else None
        out.append(f"&{name};" if name else c)
    return "".join(out)


def crmid(ws_id: str) -> int:
    """The record number of a webservice id (``12x5`` -> 5), as VTQL compares ids."""
    tail = ws_id.partition("x")[2]
    return int(tail) if tail.isdigit() else -1


class _Denied(Exception):
    """ACCESS_DENIED with a message, as VTQL answers an unknown field."""


@dataclass
class Vtiger:
    username: str = "centralita"
    access_key: str = "AbCdEf123456"
    user_id: str = "19x1"
    time_zone: str = "UTC"  # the API user's preference: only reported by login (070)
    now: float = 1_700_000_000.0  # the server's clock, for token expiry and modifiedtime
    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {m: [] for m in WS_PREFIX}
    )
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expireTime
    sessions: set[str] = field(default_factory=set)
    session_error: str = "INVALID_SESSIONID"  # what a dead session gets
    denied_modules: set[str] = field(default_factory=set)  # the API user may not see these
    mandatory: dict[str, tuple[str, ...]] = field(default_factory=dict)  # extra per module
    logins: int = 0
    queries: list[str] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _sorted: dict[str, tuple[list[tuple[str, int]], list[dict[str, Any]]]] = field(
        default_factory=dict
    )

    # -- data -----------------------------------------------------------------------------

    def stamp(self) -> str:
        return datetime.fromtimestamp(self.now, UTC).strftime("%Y-%m-%d %H:%M:%S")

    def add(self, module: str, **values: Any) -> str:
        """Store a record as vTiger would (values as typed); returns its webservice id.
        ``modifiedtime`` may be given (a bulk import); it defaults to the server clock."""
        rid = str(values.pop("id", None) or f"{WS_PREFIX[module]}x{next(self._ids)}")
        row = {k: _stored(v) for k, v in values.items()}
        row.setdefault("assigned_user_id", self.user_id)
        row.setdefault("createdtime", row.get("modifiedtime") or self.stamp())
        row.setdefault("modifiedtime", row["createdtime"])
        row.setdefault("modifiedby", self.user_id)
        if module in AUTO_NUMBER:
            key, prefix = AUTO_NUMBER[module]
            row.setdefault(key, f"{prefix}{next(self._numbers)}")
        row["label"] = _htmlentities(" ".join(row.get(f, "") for f in LABEL[module]).strip())
        row["id"] = rid
        row["_crmid"] = str(crmid(rid))  # what VTQL compares id conditions with
        self.tables[module].append(row)
        self._by_id[rid] = row
        self._sorted.pop(module, None)
        return rid

    def update(self, rid: str, **values: Any) -> None:
        """Change a record the way a user's edit does (modifiedtime moves to now)."""
        row = self._by_id[rid]
        row.update({k: _stored(v) for k, v in values.items()})
        if "modifiedtime" not in values:
            row["modifiedtime"] = self.stamp()
        self._sorted.pop(self._module_of(rid), None)

    def delete(self, rid: str) -> None:
        """Mark a record deleted (vTiger keeps the row, queries stop answering it)."""
        self._by_id[rid]["deleted"] = "1"

    def _module_of(self, rid: str) -> str:
        prefix = rid.partition("x")[0]
        return next(m for m, p in WS_PREFIX.items() if p == prefix)

    def full(self, module: str, row: dict[str, Any]) -> dict[str, str]:
        """The record as ``create``/``retrieve``/``select *`` answer it: every field."""
        defaults = DEFAULTS.get(module, {})
        return {f: str(row.get(f, defaults.get(f, ""))) for f in FIELDS[module]}

    def expire_sessions(self, code: str = "INVALID_SESSIONID") -> None:
        self.sessions.clear()
        self.session_error = code

    @classmethod
    def lab(cls) -> Vtiger:
        """The recording lab's seed data (crm-traces README, vTiger table): owner admin."""
        crm = cls(username="admin", user_id="19x1")
        crm.add("Accounts", id="11x2", accountname="Acme Iberia", phone="+34 912 000 111")
        crm.add(
            "Accounts",
            id="11x3",
            accountname="O'Brien & Sons <Ltd>",
            phone="0034913000222",
            otherphone="913000223",
        )
        contacts = [
            ("12x4", "Ana", "García", {"phone": "+34 911 234 567", "account_id": "11x2"}),
            ("12x5", "Bob", "Martín", {"mobile": "0034911234568"}),
            ("12x6", "Carla", "Ruiz", {"homephone": "911234569"}),
            ("12x7", "Dan", "Jones", {"phone": "+1 (212) 555-0100"}),
            ("12x8", "Zoë", "Ñúñez-O'Hara", {"otherphone": "+34911234571", "account_id": "11x3"}),
            ("12x9", "Ramón", "Assistant", {"assistantphone": "911234573"}),
        ]
        for rid, first, last, more in contacts:
            crm.add("Contacts", id=rid, firstname=first, lastname=last, **more)
        crm.add(
            "Leads",
            id="10x10",
            firstname="Eva",
            lastname="López",
            company="Lopez SL",
            leadstatus="Hot",
            mobile="+34911234570",
        )
        crm.add(
            "Leads", id="10x11", firstname="Fax", lastname="Only", company="Fax SL",
            fax="+34 (91) 123-4572",
        )  # fmt: skip
        crm.add("Contacts", id="12x12", firstname="Deleted", lastname="Person",
                phone="+34 911 234 599")  # fmt: skip
        crm.delete("12x12")
        crm._ids = itertools.count(13)
        return crm

    # -- HTTP -----------------------------------------------------------------------------

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
            return self._challenge(request, params)
        if op == "login":
            return self._login(request, params)
        if params.get("sessionName") not in self.sessions:
            message = {
                "INVALID_SESSIONID": "Session Identifier provided is Invalid",
                "SESSION_LEFT_IDLE": "Session has been invalidated to due lack activity",
            }.get(self.session_error, "Session expired")
            return _fail(self.session_error, message)
        if op == "logout" and request.method == "POST":
            # vTiger 8.0.0 on PHP 8.2: a fatal error, and the session stays valid (073/074)
            return web.Response(status=500, body=b"", content_type="text/html", charset="UTF-8")
        if op == "query" and request.method == "GET":
            return self._query(params.get("query", ""))
        if op == "retrieve" and request.method == "GET":
            return self._retrieve(params.get("id", ""))
        if op == "create" and request.method == "POST":
            return self._create(params)
        return _fail("UNKNOWN_OPERATION", f"Unknown operation requested: {op}")

    def _challenge(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if request.method != "GET":
            return _fail("OPERATION_NOT_SUPPORTED", "Operation getchallenge must be GET")
        if params.get("username") != self.username:
            return _fail("ACCESS_DENIED", "username does not exists")
        token = uuid.uuid4().hex[:13]
        self.tokens[token] = self.now + 300
        return _ok({"token": token, "serverTime": int(self.now), "expireTime": int(self.now + 300)})

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
        session = uuid.uuid4().hex[:13] + uuid.uuid4().hex[:8]
        self.sessions.add(session)
        return _ok(
            {
                "username": self.username,
                "first_name": "Lab",
                "last_name": "Admin",
                "email": "admin@example.com",
                "time_zone": self.time_zone,
                "hour_format": "12",
                "date_format": "yyyy-mm-dd",
                "is_admin": "on",
                "call_duration": "5",
                "other_event_duration": "5",
                "sessionName": session,
                "userId": self.user_id,
                "version": "0.22",
                "vtigerVersion": "8.0.0",
            }
        )

    # -- query ----------------------------------------------------------------------------

    def _query(self, statement: str) -> web.Response:
        self.queries.append(statement)
        try:
            return _ok(self._run(statement))
        except _Denied as e:
            return _fail("ACCESS_DENIED", str(e))
        except _LexError:
            return _fail("INTERNAL_SERVER_ERROR", "Unknown Error while processing request")
        except SqlSyntaxError as e:
            return _fail("QUERY_SYNTAX_ERROR", f"Syntax Error on line 1: {e}")

    def _run(self, statement: str) -> list[dict[str, Any]]:
        if "--" in _outside_literals(statement):
            raise _LexError  # 020: what vTiger does with a comment
        try:
            toks = tokenize(statement, comments=False)  # VTQL has no comments
        except SqlSyntaxError as e:
            raise _LexError from e
        if not toks or toks[-1] != ("op", ";"):
            last = _lexeme(toks[-1]) if toks else ""
            raise SqlSyntaxError(
                f"token '{last}' Unexpected End of Input(0), expected one of: SEMICOLON"
            )
        toks = toks[:-1]
        words = [v.lower() if k == "word" else None for k, v in toks]
        if not words or words[0] != "select" or "from" not in words:
            raise SqlSyntaxError("token '' Unexpected, expected one of: SELECT")
        f = words.index("from")
        cols = [v for k, v in toks[1:f] if not (k == "op" and v == ",")]
        module = toks[f + 1][1] if f + 1 < len(toks) else ""
        if module not in self.tables or module in self.denied_modules:
            raise _Denied(f"Permission to perform the operation is denied for name : {module}")
        known = set(FIELDS[module])
        count = [c.lower() for c in cols] == ["count", "(", "*", ")"]
        if cols != ["*"] and not count:
            for c in cols:
                if c not in known:
                    raise _Denied(f"Permission to access '.{c}.' attribute denied.")
            if "id" not in cols:
                cols.append("id")
        rest = toks[f + 2 :]
        lower = [v.lower() if k == "word" else None for k, v in rest]
        offset, limit = 0, MAX_ROWS
        if "limit" in lower:
            i = lower.index("limit")
            nums = [int(v) for k, v in rest[i + 1 :] if k == "num"]
            if not nums or len(nums) > 2:
                raise SqlSyntaxError("token 'limit' Unexpected, expected one of: VALUE")
            offset = nums[0] if len(nums) == 2 else 0
            limit = min(MAX_ROWS, nums[-1])
            rest, lower = rest[:i], lower[:i]
        order: list[str] = []
        descending = False
        if "order" in lower:
            i = lower.index("order")
            if lower[i + 1 : i + 2] != ["by"]:
                raise SqlSyntaxError("token 'order' Unexpected, expected one of: ORDERBY")
            order = [v for k, v in rest[i + 2 :] if k == "word"]
            if order and order[-1].lower() in ("asc", "desc"):
                descending = order.pop().lower() == "desc"
            for c in order:
                if c not in known:
                    raise _Denied(f"Permission to access '.{c}.' attribute denied.")
            rest, lower = rest[:i], lower[:i]
        where: list[tuple[str, str]] = []
        if rest:
            if lower[0] != "where":
                raise SqlSyntaxError(f"token '{rest[0][1]}' Unexpected, expected one of: WHERE")
            where = self._vtql_where(rest[1:], known)
        rows = self._select(module, where, order, descending, offset, limit)
        if count:
            return [{"count": str(len(rows))}]
        if cols == ["*"]:
            return [self.full(module, r) for r in rows]
        return [{c: str(r.get(c, "")) for c in cols} for r in rows]

    def _vtql_where(self, toks: list[tuple[str, str]], known: set[str]) -> list[tuple[str, str]]:
        """Check the VTQL-only rules, and turn ``id`` values into record numbers."""
        out: list[tuple[str, str]] = []
        expect_column = True
        on_id = False
        for kind, val in toks:
            if expect_column:
                if (kind, val) == ("op", "("):  # 021: no grouping parentheses
                    raise SqlSyntaxError(
                        "token '(' Unexpected PARENOPEN((), expected one of: COLUMNNAME"
                    )
                if kind != "word":
                    raise SqlSyntaxError(f"token '{val}' Unexpected, expected one of: COLUMNNAME")
                if val not in known:
                    raise _Denied(f"Permission to access {val} attribute denied.")
                on_id = val == "id"
                out.append((kind, "_crmid" if on_id else val))
                expect_column = False
                continue
            if kind == "word" and val.lower() in ("and", "or"):
                expect_column = True
            elif on_id and kind == "str":
                kind, val = "num", str(crmid(val))  # VTQL compares ids by record number
            out.append((kind, val))
        return out

    def _select(
        self,
        module: str,
        where: list[tuple[str, str]],
        order: list[str],
        descending: bool,
        offset: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        pred = compile_tokens(where, lambda c: c, parens=False) if where else None

        def ok(r: dict[str, Any]) -> bool:
            return not r.get("deleted") and (pred is None or pred(_Blank(r)))

        if order == ["modifiedtime", "id"] and not descending:
            return self._indexed(module, where, ok, offset, limit)
        wanted = _id_list(where)
        if wanted is not None and not order:  # id = n / id in (...): by primary key
            found = (self._by_id.get(f"{WS_PREFIX[module]}x{n}") for n in sorted(wanted))
            return [r for r in found if r is not None and ok(r)][offset : offset + limit]
        rows = [r for r in self.tables[module] if ok(r)]
        if order:
            keys = [(lambda r: crmid(r["id"])) if c == "id" else _getter(c) for c in order]
            rows.sort(key=lambda r: tuple(k(r) for k in keys), reverse=descending)
        return rows[offset : offset + limit]

    def _indexed(
        self,
        module: str,
        where: list[tuple[str, str]],
        ok: Callable[[dict[str, Any]], bool],
        offset: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """``order by modifiedtime, id`` from a sorted index: start at the lowest
        modifiedtime an and-only where allows, stop past the highest; every candidate still
        goes through the full condition."""
        if module not in self._sorted:
            rows = sorted(self.tables[module], key=lambda r: (r["modifiedtime"], crmid(r["id"])))
            self._sorted[module] = ([(r["modifiedtime"], crmid(r["id"])) for r in rows], rows)
        keys, rows = self._sorted[module]
        start: tuple[str, int] = ("", -1)
        high = None
        words = [v.lower() for k, v in where if k == "word"]
        if "or" not in words:
            equal, after_id = None, -1
            for i in range(len(where) - 2):
                (k1, col), (_, op), (k3, value) = where[i : i + 3]
                if k1 == "word" and col == "modifiedtime" and k3 == "str":
                    if op in (">", ">=", "="):
                        bound = (value, sys.maxsize if op == ">" else -1)
                        start = max(start, bound)
                    if op in ("<", "<=", "="):
                        high = value if high is None else min(high, value)
                    if op == "=":
                        equal = value
                if k1 == "word" and col == "_crmid" and op in (">", ">=") and k3 == "num":
                    after_id = int(value) + (op == ">") - 1
            if equal is not None:  # modifiedtime = t and id > n: start right after n
                start = max(start, (equal, after_id))
        out: list[dict[str, Any]] = []
        skip = offset
        for at in range(bisect.bisect_right(keys, start), len(rows)):
            if high is not None and keys[at][0] > high:
                break
            r = rows[at]
            if ok(r):
                if skip:
                    skip -= 1
                    continue
                out.append(r)
                if len(out) == limit:
                    break
        return out

    # -- records --------------------------------------------------------------------------

    def _retrieve(self, rid: str) -> web.Response:
        row = self._by_id.get(rid)
        if row is None or row.get("deleted"):
            return _fail("INVALID_ID", "Id specified is incorrect")
        module = self._module_of(rid)
        if module in self.denied_modules:
            return _fail("ACCESS_DENIED", "Permission to perform the operation is denied")
        return _ok(self.full(module, row))

    def _create(self, params: dict[str, str]) -> web.Response:
        module = params.get("elementType", "")
        if module not in self.tables or module in self.denied_modules:
            return _fail("ACCESS_DENIED", "Permission to perform the operation is denied")
        try:
            element = json.loads(params.get("element", ""))
        except ValueError:
            return _fail("INVALID_PARAMETER", "element is not JSON")
        if not isinstance(element, dict):
            return _fail("INVALID_PARAMETER", "element is not an object")
        required = (EVENT_MANDATORY if module == "Events" else ()) + self.mandatory.get(module, ())
        missing = [f for f in required if not element.get(f)]
        if missing:
            return _fail("MANDATORY_FIELDS_MISSING", f"{missing[0]} does not have a value")
        values = {k: v for k, v in element.items() if k in FIELDS[module] and k != "id"}
        stamp = self.stamp()
        values |= {"createdtime": stamp, "modifiedtime": stamp, "modifiedby": self.user_id}
        if module == "Events":
            values |= _duration(values)
        rid = self.add(module, **values)
        return _ok(self.full(module, self._by_id[rid]))


class _Blank:
    """A row as VTQL conditions see it: an empty field is "" (never NULL)."""

    __slots__ = ("row",)

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row

    def get(self, key: str, default: Any = None) -> Any:
        value = self.row.get(key)
        return "" if value is None else value


class _LexError(Exception):
    """Something VTQL's lexer cannot read: vTiger answers INTERNAL_SERVER_ERROR (020)."""


def _id_list(where: list[tuple[str, str]]) -> set[int] | None:
    """The record numbers of a where that is only ``id = n`` or ``id in (n, ...)``."""
    if len(where) < 3 or where[0] != ("word", "_crmid"):
        return None
    if where[1] == ("op", "=") and len(where) == 3 and where[2][0] == "num":
        return {int(where[2][1])}
    if where[1][1].lower() != "in" or where[2] != ("op", "(") or where[-1] != ("op", ")"):
        return None
    items = where[3:-1]
    values, commas = items[::2], items[1::2]
    if any(k != "num" for k, _ in values) or any(c != ("op", ",") for c in commas):
        return None
    return {int(v) for _, v in values}


def _getter(column: str) -> Callable[[dict[str, Any]], str]:
    return lambda r: str(r.get(column, ""))


def _lexeme(tok: tuple[str, str]) -> str:
    kind, val = tok
    return f"'{val}'" if kind == "str" else val


def _outside_literals(text: str) -> str:
    """``text`` with quoted literals blanked out."""
    return re.sub(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"", "''", text, flags=re.S)


def _duration(values: dict[str, Any]) -> dict[str, str]:
    """vTiger's duration_hours/minutes: whole minutes from start to end (065, 067)."""
    try:
        start = datetime.fromisoformat(f"{values['date_start']} {values['time_start']}")
        end = datetime.fromisoformat(f"{values['due_date']} {values['time_end']}")
    except (KeyError, ValueError):
        return {}
    minutes = max(0, int((end - start).total_seconds()) // 60)
    return {"duration_hours": str(minutes // 60), "duration_minutes": str(minutes % 60)}
