"""Stand-in for SuiteCRM 7.14.6 (and SugarCRM 6.5 CE) legacy REST API v4_1.

Behaviour follows the recorded exchanges with a real SuiteCRM 7.14.6
(``tests/data/crm-traces/suitecrm-7.14.6/``, from ``/work/shared/crm-traces``; the
``test_connector_sugarcrm_traces`` tests replay them here), and the SuiteCRM source where the
recording is silent (``service/v4/SugarWebServiceImplv4.php`` ``get_entry_list``,
``include/SugarSQLValidate.php``, ``data/SugarBean.php`` ``create_new_list_query`` /
``process_order_by``):

- ``POST /service/v4_1/rest.php`` with ``method``, ``input_type``, ``response_type`` and
  ``rest_data`` (JSON; its *values* are passed positionally). Answers are
  ``application/json; charset=UTF-8``; non-ASCII as ``\\u`` escapes.
- Faults are HTTP 200 ``{"name", "number", "description"}``: 10 "Invalid Login" (wrong
  password and unknown user alike), 11 "Invalid Session ID" (made up, expired or logged out),
  20 "Module Does Not Exist", 40 "Access Denied" (the WHERE validator), and ``"-1"`` (a
  string) for an unknown method.
- ``login`` answers 13 name/value pairs and sets ``PHPSESSID``; ``logout`` answers ``null``.
- ``get_entry_list``: the WHERE validator refuses SQL function calls, comments, ``;``,
  sub-selects, and a string literal holding ``(`` inside an ``IN (...)`` list that is followed
  by another condition (fault 40, nothing runs); a WHERE that then fails in "MySQL" (unknown
  column, bad syntax) is HTTP 500 ``text/html`` "Database failure...". ``deleted=0`` hides
  deleted rows, ``deleted=1`` returns live and deleted rows alike. ``order_by`` entries whose
  first word is not a field of the module (``contacts.id`` included) are silently dropped;
  no order = insertion order. ``total_count`` is the full count as a string, or the integer
  0 on a miss. Values are HTML-encoded (``' " < >`` -> ``&#039; &quot; &lt; &gt;``, ``&`` raw).
- ``get_entry``: the same encoding; a missing id gives the "warning"/"deleted" pair.
- ``set_entry`` stores raw text (a 4-byte character as ``????``, utf8mb3 tables) and echoes it
  encoded differently: named entities, ``&`` double-encoded, ``duration_*`` as integers.
- ``set_relationship`` answers ``created`` for every id, also one that does not exist (and
  stores a link only to an existing record).
- ``Opportunities`` (not recorded; ``modules/Opportunities/vardefs.php``): ``amount`` and
  ``amount_usdollar`` as the DB's decimal text, ``date_closed`` a day, ``sales_stage`` the
  stock keys ("Closed Won", "Closed Lost"...), ``currency_id`` "-99" for the system currency
  or the id of a ``Currencies`` row (``iso4217``). Their contacts and account are links
  (``relate``), read with ``link_name_to_fields_array``: ``relationship_list`` then holds,
  per entry, ``{"link_list": [{"name", "records": [{"link_value": {field: {"name",
  "value"}}}]}]}`` (``SugarWebServiceImplv4::get_entry_list``), values encoded as above, every
  asked field present ("" when empty), a link without related record left out, an unknown
  link given as ``records: []``. A deleted opportunity has no links any more (SugarBean
  ``mark_relationships_deleted``).

Rows are plain dicts (raw DB values). ``add``/``delete``/``set_entry`` keep a version per
module; a test that edits a row dict in place calls ``touch(module)`` (sorted indexes are
cached per version, which keeps a 100,000-row pull fast).
"""

from __future__ import annotations

import bisect
import hashlib
import html.entities
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.faults import Faults
from tests.fakes.sqlwhere import SqlSyntaxError, compile_tokens, tokenize

ERRORS: dict[int, tuple[str, str]] = {
    10: ("Invalid Login", "Login attempt failed please check the username and password"),
    11: ("Invalid Session ID", "The session ID is invalid"),
    20: ("Module Does Not Exist", "This module is not available on this server"),
    40: ("Access Denied", "You do not have access"),
}
INVALID_CALL = {
    "name": "An Undefined Error - invalid_call occurred",
    "number": "-1",
    "description": "There is no error definition for invalid_call",
}
DB_FAILURE = "Database failure. Please refer to suitecrm.log for details."
_PARAMS = {
    "login": ("user_auth", "application_name", "name_value_list"),
    "logout": ("session",),
    "get_entry_list": (
        "session",
        "module_name",
        "query",
        "order_by",
        "offset",
        "select_fields",
        "link_name_to_fields_array",
        "max_results",
        "deleted",
        "favorites",
    ),
    "get_entry": (
        "session",
        "module_name",
        "id",
        "select_fields",
        "link_name_to_fields_array",
        "track_view",
    ),
    "set_entry": ("session", "module_name", "name_value_list"),
    "set_relationship": (
        "session",
        "module_name",
        "module_id",
        "link_field_name",
        "related_ids",
        "name_value_list",
        "delete",
    ),
}
MODULES = ("Contacts", "Leads", "Accounts", "Calls", "Opportunities", "Currencies")
_AUDIT = ("id", "date_entered", "date_modified", "modified_user_id", "created_by", "deleted")
_PERSON = (
    "first_name",
    "last_name",
    "salutation",
    "title",
    "phone_work",
    "phone_mobile",
    "phone_home",
    "phone_other",
    "phone_fax",
    "description",
    "assigned_user_id",
)
COLUMNS: dict[str, frozenset[str]] = {  # real table columns: a WHERE may name these
    "Contacts": frozenset(_AUDIT + _PERSON),
    "Leads": frozenset(_AUDIT + _PERSON + ("account_name", "status", "account_id")),
    "Accounts": frozenset(
        (
            *_AUDIT,
            "name",
            "phone_office",
            "phone_alternate",
            "phone_fax",
            "description",
            "assigned_user_id",
            "industry",
        )
    ),
    "Opportunities": frozenset(
        (
            *_AUDIT,
            "name",
            "amount",
            "amount_usdollar",
            "currency_id",
            "date_closed",
            "sales_stage",
            "probability",
            "opportunity_type",
            "lead_source",
            "next_step",
            "description",
            "assigned_user_id",
        )
    ),
    "Currencies": frozenset((*_AUDIT, "name", "symbol", "iso4217", "conversion_rate", "status")),
    "Calls": frozenset(
        (
            *_AUDIT,
            "name",
            "direction",
            "status",
            "date_start",
            "date_end",
            "duration_hours",
            "duration_minutes",
            "parent_type",
            "parent_id",
            "description",
            "assigned_user_id",
        )
    ),
}
_INT_FIELDS = frozenset({"duration_hours", "duration_minutes"})  # echoed as integers
# an opportunity's links: link name -> the related module
OPPORTUNITY_LINKS = {"contacts": "Contacts", "accounts": "Accounts"}
# fields a related record answers beside its columns (non-db, but read by the helper)
_LINK_EXTRA = frozenset({"email1", "email2"})
_HTML = {"'": "&#039;", '"': "&quot;", "<": "&lt;", ">": "&gt;"}
_HTML_RX = re.compile("[" + "".join(_HTML) + "]")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")

# the lab's users and seed records (README "Seed data"): ids as in the recorded files
LAB_API_USER = "5fbec984-0393-f71e-ab42-6b0d31158f1f"
SALLY = "78f61000-944f-493e-b7ab-6b0d31fa6083"
ACME = "8c324ce0-c3dd-57b8-e777-6b0d315cac30"
OBRIEN = "916c2f69-f2a7-3d99-fb30-6b0d31d37bf4"
ANA = "95cb5502-388c-2646-6306-6b0d318a6ae4"
BOB = "9b4a25ed-bfcc-a62d-95fb-6b0d31cb509a"
CARLA = "9fc388e6-8a8f-d9c2-ab64-6b0d31e6df7a"
DAN = "a4930744-325b-3ab4-cb0c-6b0d31b32beb"
ZOE = "a8bc33ad-b648-762d-fa74-6b0d31a48f1a"
DELETED_PERSON = "ae1f272b-eeb7-622c-667b-6b0d3139808c"
EVA = "b0de2f9c-2ecb-bd42-d4ee-6b0d3158f1e6"
ANA_LEAD = "b5bbc146-aa28-3934-67f0-6b0d31410f7b"
FAX_ONLY = "bb85e0c5-7311-8771-58e9-6b0d3144e32a"


def encode(value: str) -> str:
    """What get_entry/get_entry_list make of a stored value (``&`` stays raw)."""
    return _HTML_RX.sub(lambda m: _HTML[m.group(0)], value)


def echo_encode(value: str) -> str:
    """What the set_entry answer makes of a sent value: stray ``<``/``>``/``&`` escaped (tags
    kept), then PHP ``htmlentities`` (named entities, quotes, and ``&`` once more)."""
    parts, pos = [], 0
    for m in _TAG.finditer(value):
        parts.append(_escape_text(value[pos : m.start()]))
        parts.append(m.group(0))
        pos = m.end()
    parts.append(_escape_text(value[pos:]))
    out = []
    for c in "".join(parts):
        if c in _HTML or c == "&":
            out.append("&amp;" if c == "&" else _HTML[c])
        elif ord(c) > 127 and ord(c) in html.entities.codepoint2name:
            out.append(f"&{html.entities.codepoint2name[ord(c)]};")
        else:
            out.append(c)
    return "".join(out)


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _utf8mb3(value: str) -> str:
    """A utf8mb3 column keeps no 4-byte character: each becomes ``????``."""
    return "".join("????" if ord(c) > 0xFFFF else c for c in value)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", charset="UTF-8"
    )


def _fault(number: int) -> web.Response:
    name, description = ERRORS[number]
    return _json({"name": name, "number": number, "description": description})


def _db_failure() -> web.Response:
    return web.Response(status=500, text=DB_FAILURE, content_type="text/html", charset="UTF-8")


class AccessDenied(Exception):
    """The WHERE validator refused the query (fault 40)."""


def _has_comment(text: str) -> bool:
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif text.startswith(("--", "/*"), i) or c == "#":
            return True
        i += 1
    return False


def validate_where(tokens: list[tuple[str, str]]) -> None:
    """SuiteCRM's ``SugarSQLValidate`` as observed: AccessDenied for what it refuses."""
    for n, (kind, val) in enumerate(tokens):
        nxt = tokens[n + 1] if n + 1 < len(tokens) else ("", "")
        word = val.upper() if kind == "word" else ""
        if (kind == "op" and val == ";") or word in ("SELECT", "UNION"):
            raise AccessDenied("a second statement or a sub-select")
        if kind == "word" and nxt == ("op", "(") and word not in ("AND", "OR", "NOT", "IN"):
            raise AccessDenied(f"function call {val}(...)")
        if word == "IN" and nxt == ("op", "("):
            close = n + 2
            while close < len(tokens) and tokens[close] != ("op", ")"):
                close += 1
            listed = tokens[n + 2 : close]
            after = [t for t in tokens[close + 1 :] if t != ("op", ")")]
            if after and any(k == "str" and "(" in v for k, v in listed):
                raise AccessDenied("a '(' literal in an IN list followed by another condition")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class _Index:
    """One module's rows sorted by an order, with what a keyset page needs."""

    version: tuple[int, int]
    rows: list[dict[str, Any]]
    keys: list[tuple[str, ...]]
    live_before: list[int]  # live rows among rows[:i]


@dataclass
class SugarCrm:
    username: str = "centralita"
    password: str = "p4ss"
    user_id: str = "1"
    users: dict[str, str] = field(default_factory=dict)  # user id -> full name
    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {m: [] for m in MODULES}
    )
    relationships: list[tuple[str, str, str]] = field(default_factory=list)  # call, link, id
    # opportunity id -> its (link, related id): opportunities_contacts, accounts_opportunities
    links: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    logins: int = 0
    queries: list[str] = field(default_factory=list)  # every get_entry_list query fragment
    order_bys: list[str] = field(default_factory=list)  # every get_entry_list order_by
    faults: Faults = field(default_factory=Faults)
    refuse: dict[str, int] = field(default_factory=dict)  # method -> fault number it answers
    db_failures: int = 0  # the next N get_entry_list calls fail in "MySQL" (HTTP 500 HTML)
    clock: datetime = field(default_factory=lambda: datetime(2026, 11, 30, 8, 0, 0))
    _versions: dict[str, int] = field(default_factory=dict)
    _extra_columns: dict[str, set[str]] = field(default_factory=dict)
    _indexes: dict[tuple[str, tuple[str, ...]], _Index] = field(default_factory=dict)
    _ids: dict[str, tuple[tuple[int, int], dict[str, dict[str, Any]]]] = field(default_factory=dict)

    @classmethod
    def lab(cls) -> SugarCrm:
        """Seeded like the real lab the transcripts were recorded in (README seed table)."""
        crm = cls(user_id=LAB_API_USER)
        crm.users = {LAB_API_USER: "centralita", SALLY: "Sally Agent"}
        crm.add(
            "Accounts",
            id=ACME,
            name="Acme Iberia",
            phone_office="+34 912 000 111",
            assigned_user_id=SALLY,
        )
        crm.add(
            "Accounts",
            id=OBRIEN,
            name="O'Brien & Sons ",
            phone_office="0034913000222",
            phone_alternate="913000223",
        )
        for rid, first, last, phone, extra in (
            (
                ANA,
                "Ana",
                "García",
                ("phone_work", "+34 911 234 567"),
                {"account_id": ACME, "assigned_user_id": SALLY},
            ),
            (BOB, "Bob", "Martín", ("phone_mobile", "0034911234568"), {}),
            (CARLA, "Carla", "Ruiz", ("phone_home", "911234569"), {}),
            (DAN, "Dan", "Jones", ("phone_work", "+1 (212) 555-0100"), {}),
            (ZOE, "Zoë", "Ñúñez-O'Hara", ("phone_other", "+34911234571"), {"account_id": OBRIEN}),
            (
                DELETED_PERSON,
                "Deleted",
                "Person",
                ("phone_work", "+34 911 234 599"),
                {"deleted": 1},
            ),
        ):
            crm.add(
                "Contacts",
                id=rid,
                first_name=first,
                last_name=last,
                **{phone[0]: phone[1]},
                **extra,
            )
        crm.add(
            "Leads",
            id=EVA,
            first_name="Eva",
            last_name="López",
            account_name="Lopez SL",
            status="New",
            phone_mobile="+34911234570",
            assigned_user_id=SALLY,
        )
        crm.add(
            "Leads",
            id=ANA_LEAD,
            first_name="Ana",
            last_name="Duplicate-Lead",
            status="Assigned",
            phone_work="911 234 567",
        )
        crm.add(
            "Leads",
            id=FAX_ONLY,
            first_name="Fax",
            last_name="Only",
            status="In Process",
            phone_fax="+34 (91) 123-4572",
        )
        return crm

    # -- data -----------------------------------------------------------------------------

    def _tick(self) -> str:
        self.clock += timedelta(seconds=1)
        return self.clock.strftime("%Y-%m-%d %H:%M:%S")

    def add(self, module: str, **values: Any) -> str:
        """Insert a row as the DB holds it (raw text); ``date_modified`` defaults to a clock
        that advances a second per write."""
        row = {
            "id": values.pop("id", str(uuid.uuid4())),
            "deleted": values.pop("deleted", 0),
            "date_modified": values.pop("date_modified", None) or self._tick(),
            **values,
        }
        self.tables[module].append(row)
        self._extra_columns.setdefault(module, set()).update(values)
        self.touch(module)
        return str(row["id"])

    def add_many(self, module: str, rows: list[dict[str, Any]]) -> None:
        """Bulk insert (benchmarks): each dict needs ``id`` and ``date_modified``."""
        for r in rows:
            r.setdefault("deleted", 0)
            self._extra_columns.setdefault(module, set()).update(r)
        self.tables[module].extend(rows)
        self.touch(module)

    def delete(self, module: str, rid: str) -> None:
        """Mark a row deleted as SuiteCRM does (``deleted = 1``, ``date_modified`` now)."""
        row = self.row(module, rid)
        assert row is not None, rid
        row.update(deleted=1, date_modified=self._tick())
        self.touch(module)

    def update(self, module: str, rid: str, **values: Any) -> None:
        """A user's edit in the CRM: new values, ``date_modified`` now."""
        row = self.row(module, rid)
        assert row is not None, rid
        row.update(values, date_modified=self._tick())
        self._extra_columns.setdefault(module, set()).update(values)
        self.touch(module)

    def link(self, opportunity: str, link: str, *related: str) -> None:
        """Relate an opportunity to contacts (``contacts``) or its account (``accounts``)."""
        assert link in OPPORTUNITY_LINKS, link
        self.links.setdefault(opportunity, []).extend((link, rid) for rid in related)

    def _by_id(self, module: str, rid: str) -> dict[str, Any] | None:
        """``row`` through an index kept per module version (a 100,000-row pull links pages
        of opportunities to their contacts without scanning the table for each)."""
        version = (self._versions.get(module, 0), len(self.tables[module]))
        cached = self._ids.get(module)
        if cached is None or cached[0] != version:
            cached = (version, {str(r["id"]): r for r in self.tables[module]})
            self._ids[module] = cached
        return cached[1].get(rid)

    def row(self, module: str, rid: str) -> dict[str, Any] | None:
        return next((r for r in self.tables[module] if r["id"] == rid), None)

    def touch(self, module: str) -> None:
        """Say that rows of ``module`` changed (drops its cached sort orders)."""
        self._versions[module] = self._versions.get(module, 0) + 1

    def expire_sessions(self) -> None:
        self.sessions.clear()

    # -- HTTP -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware()])
        app.router.add_route("*", "/service/v4_1/rest.php", self.rest)
        return app

    async def rest(self, request: web.Request) -> web.Response:
        form = dict(request.query)
        if request.method == "POST":
            form.update({k: str(v) for k, v in (await request.post()).items()})
        method = str(form.get("method", ""))
        self.faults.requests.append(method)
        if not form:
            return web.Response(
                text="<pre>/**\n * SugarWebServiceImplv4_1.php\n */\nClass [ <user> class "
                "SugarWebServiceImplv4_1 extends SugarWebServiceImplv4 ] {...}</pre>",
                content_type="text/html",
                charset="UTF-8",
            )
        if method not in _PARAMS or form.get("input_type") != "JSON":
            return _json(INVALID_CALL)
        try:
            data = json.loads(str(form.get("rest_data", "")) or "[]")
        except ValueError:
            data = []
        values = list(data.values()) if isinstance(data, dict) else list(data)
        args = dict(zip(_PARAMS[method], values, strict=False))  # positional, as PHP does
        if method == "login":
            return self._login(args)
        if args.get("session") not in self.sessions:
            return _fault(11)
        if method == "logout":
            self.sessions.discard(str(args["session"]))
            return _json(None)
        module = args.get("module_name")
        if module not in MODULES:
            return _fault(20)
        if method in self.refuse:  # e.g. 40: the API user's role lacks that right
            number = self.refuse[method]
            return _json(INVALID_CALL) if number == -1 else _fault(number)
        handler: Callable[[str, dict[str, Any]], web.Response] = getattr(self, "_" + method)
        return handler(str(module), args)

    def _login(self, args: dict[str, Any]) -> web.Response:
        auth = args.get("user_auth") or {}
        md5 = hashlib.md5(self.password.encode()).hexdigest()
        if auth.get("user_name") != self.username or auth.get("password") != md5:
            return _fault(10)
        self.logins += 1
        sid = uuid.uuid4().hex[:26]
        self.sessions.add(sid)
        nvl: dict[str, Any] = {
            "user_id": self.user_id,
            "user_name": self.username,
            "user_language": "en_us",
            "user_currency_id": None,
            "user_is_admin": False,
            "user_default_team_id": None,
            "user_default_dateformat": "m/d/Y",
            "user_default_timeformat": "H:i",
            "user_number_separator": ",",
            "user_decimal_separator": ".",
            "mobile_max_list_entries": None,
            "mobile_max_subpanel_entries": None,
            "user_currency_name": "Euro",
        }
        resp = _json(
            {
                "id": sid,
                "module_name": "Users",
                "name_value_list": {k: {"name": k, "value": v} for k, v in nvl.items()},
            }
        )
        resp.headers["Set-Cookie"] = f"PHPSESSID={sid}; path=/"
        return resp

    # -- reading --------------------------------------------------------------------------

    def _columns(self, module: str) -> set[str]:
        return set(COLUMNS[module]) | self._extra_columns.get(module, set())

    def _column(self, module: str) -> Callable[[str], str]:
        table, known = module.lower(), self._columns(module)

        def resolve(ref: str) -> str:
            prefix, _, col = ref.lower().rpartition(".")
            if (prefix and prefix != table) or col not in known:
                raise SqlSyntaxError(f"Unknown column '{ref}' in 'where clause'")
            return col

        return resolve

    def _order(self, module: str, order_by: str) -> tuple[str, ...]:
        """``process_order_by``: bare field names kept (ASC only here), others dropped."""
        fields = self._columns(module) | {"account_name", "assigned_user_name"}
        keep = []
        for item in order_by.split(","):
            words = item.split()
            if not words or words[0] not in fields:
                continue  # "does not have a vardef entry": silently dropped
            if len(words) > 1 and words[1].upper() == "DESC":
                raise NotImplementedError("DESC order is not modelled by the stand-in")
            keep.append(words[0])
        return tuple(keep)

    def _index(self, module: str, order: tuple[str, ...]) -> _Index:
        version = (self._versions.get(module, 0), len(self.tables[module]))
        idx = self._indexes.get((module, order))
        if idx is None or idx.version != version:
            rows = list(self.tables[module])

            def key(r: dict[str, Any]) -> tuple[str, ...]:
                return tuple(str(r.get(c) or "").lower() for c in order)  # MySQL *_ci order

            if order:
                rows.sort(key=key)
            live, count = [0], 0
            for r in rows:
                count += not _is_deleted(r)
                live.append(count)
            idx = _Index(version, rows, [key(r) for r in rows] if order else [], live)
            self._indexes[(module, order)] = idx
        return idx

    index_pages: bool = True  # answer keyset pages from a sorted index (False: scan rows)
    _KEYSET = re.compile(
        r"\((\w+)\.date_modified > '([^'\\]*)' OR "
        r"\(\1\.date_modified = '\2' AND \1\.id > '([^'\\]*)'\)\)"
    )

    def _select(
        self, module: str, query: str, order: tuple[str, ...], show_deleted: bool
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Matching rows in order as (rows, start, total): rows[start:] are the page's
        candidates. A keyset WHERE over (date_modified, id) is answered from the sorted index
        (as MySQL would from an index); any other WHERE is evaluated row by row."""
        idx = self._index(module, order)
        m = self._KEYSET.fullmatch(query)
        if (
            m
            and self.index_pages
            and order == ("date_modified", "id")
            and m.group(1) == module.lower()
        ):
            start = bisect.bisect_right(idx.keys, (m.group(2).lower(), m.group(3).lower()))
            n = len(idx.rows)
            total = n - start if show_deleted else idx.live_before[n] - idx.live_before[start]
            rows = idx.rows if show_deleted else [r for r in idx.rows[start:] if not _is_deleted(r)]
            return rows, start if show_deleted else 0, total
        tokens = tokenize(query, comments=False)
        validate_where(tokens)
        pred = compile_tokens(tokens, self._column(module))
        rows = [r for r in idx.rows if (show_deleted or not _is_deleted(r)) and pred(r)]
        return rows, 0, len(rows)

    def _get_entry_list(self, module: str, args: dict[str, Any]) -> web.Response:
        query = str(args.get("query") or "")
        order_by = str(args.get("order_by") or "")
        self.queries.append(query)
        self.order_bys.append(order_by)
        if _has_comment(query) or _has_comment(order_by):
            return _fault(40)
        if self.db_failures > 0:
            self.db_failures -= 1
            return _db_failure()
        try:
            order = self._order(module, order_by)
            rows, start, total = self._select(module, query, order, bool(args.get("deleted")))
        except AccessDenied:
            return _fault(40)
        except SqlSyntaxError:
            return _db_failure()
        offset = max(int(args.get("offset") or 0), 0)
        limit = int(args.get("max_results") or 0)
        limit = limit if limit > 0 else 20  # list_max_entries_per_page
        page = rows[start + offset : start + offset + limit]
        fields = list(args.get("select_fields") or [])
        entries = [self._entry(module, r, fields) for r in page]
        wanted = args.get("link_name_to_fields_array") or []
        relationships = [{"link_list": self._link_list(module, r, wanted)} for r in page]
        return _json(
            {
                "result_count": len(entries),
                "total_count": str(total) if total else 0,
                "next_offset": offset + len(entries),
                "entry_list": entries,
                "relationship_list": relationships if wanted else [],
            }
        )

    def _link_list(
        self, module: str, row: dict[str, Any], wanted: list[Any]
    ) -> list[dict[str, Any]]:
        """``get_return_value_for_link_fields``: per asked link, the live related records."""
        out: list[dict[str, Any]] = []
        for item in wanted:
            if not isinstance(item, dict) or "name" not in item or "value" not in item:
                continue
            link, names = str(item["name"]), list(item["value"] or [])
            if not names:
                continue
            target = OPPORTUNITY_LINKS.get(link) if module == "Opportunities" else None
            if target is None:
                out.append({"name": link, "records": []})  # no such relationship
                continue
            related = [
                r
                for lnk, rid in ([] if _is_deleted(row) else self.links.get(row["id"], []))
                if lnk == link
                for r in [self._by_id(target, rid)]
                if r is not None and not _is_deleted(r)
            ]
            if not related:
                continue  # a link with no records is left out
            known = self._columns(target) | _LINK_EXTRA
            fields = [f for f in names if f in known]
            out.append(
                {
                    "name": link,
                    "records": [
                        {
                            "link_value": {
                                f: {"name": f, "value": encode(str(r.get(f) or ""))} for f in fields
                            }
                        }
                        for r in related
                    ],
                }
            )
        return out

    def _entry(self, module: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        values = {k: v for k, v in row.items() if k not in ("account_id", "account_name")}
        values["deleted"] = str(int(_is_deleted(row)))
        if "assigned_user_id" in row or module != "Calls":
            uid = str(row.get("assigned_user_id") or "")
            values["assigned_user_name"] = self.users.get(uid, row.get("assigned_user_name", ""))
        if module == "Contacts":  # a relate field over accounts_contacts: absent when unset
            account = self.row("Accounts", str(row.get("account_id") or ""))
            name = account["name"] if account else row.get("account_name")
            if row.get("account_id"):
                values["account_id"] = row["account_id"]
            if name:
                values["account_name"] = name
        elif "account_name" in row or module == "Leads":
            values["account_name"] = row.get("account_name") or ""
        for col in COLUMNS[module]:
            values.setdefault(col, "")  # the lab's rows hold '' where nothing was typed
        keys = [f for f in fields if f in values] if fields else list(values)
        return {
            "id": row["id"],
            "module_name": module,
            "name_value_list": {
                k: {"name": k, "value": encode(str(values[k] if values[k] is not None else ""))}
                for k in keys
            },
        }

    def _get_entry(self, module: str, args: dict[str, Any]) -> web.Response:
        rid = str(args.get("id") or "")
        row = self.row(module, rid)
        if row is None or _is_deleted(row):
            entry: dict[str, Any] = {
                "id": rid,
                "module_name": module,
                "name_value_list": [
                    {
                        "name": "warning",
                        "value": "Access to this object is denied since it has been deleted "
                        "or does not exist",
                    },
                    {"name": "deleted", "value": "1"},
                ],
            }
        else:
            entry = self._entry(module, row, list(args.get("select_fields") or []))
        return _json({"entry_list": [entry], "relationship_list": []})

    # -- writing --------------------------------------------------------------------------

    def _set_entry(self, module: str, args: dict[str, Any]) -> web.Response:
        nvl = args.get("name_value_list") or []
        if isinstance(nvl, dict):  # both shapes are accepted by SoapHelperWebService
            values = {k: (v.get("value") if isinstance(v, dict) else v) for k, v in nvl.items()}
        else:
            values = {i["name"]: i["value"] for i in nvl if isinstance(i, dict) and "name" in i}
        stored = {k: _utf8mb3(v) if isinstance(v, str) else v for k, v in values.items()}
        rid = stored.pop("id", None)
        existing = self.row(module, str(rid)) if rid else None
        if existing is not None:
            existing.update(stored, date_modified=self._tick())
            self.touch(module)
        else:
            rid = self.add(module, **stored)
        echo = {k: {"name": k, "value": _echo_value(k, v)} for k, v in values.items() if k != "id"}
        return _json({"id": rid, "entry_list": echo})

    def _set_relationship(self, module: str, args: dict[str, Any]) -> web.Response:
        link = str(args.get("link_field_name"))
        target = {"contacts": "Contacts", "leads": "Leads", "accounts": "Accounts"}.get(link)
        created = failed = 0
        for rid in args.get("related_ids") or []:
            if target is None:
                failed += 1
                continue
            created += 1  # SuiteCRM says so even for an id that does not exist
            row = self.row(target, str(rid))
            if row is not None and not _is_deleted(row):
                self.relationships.append((str(args.get("module_id")), link, str(rid)))
        return _json({"created": created, "failed": failed, "deleted": 0})


def _is_deleted(row: dict[str, Any]) -> bool:
    return str(row.get("deleted") or 0) == "1"


def _echo_value(key: str, value: Any) -> Any:
    if key in _INT_FIELDS and str(value).isdigit():
        return int(value)
    return echo_encode(value) if isinstance(value, str) else value
