"""Stand-in for Odoo 16-18's JSON-RPC endpoint (``POST /jsonrpc``), modelled on Odoo 17.

Sources for each behaviour (read, not copied):
- Request ``{"jsonrpc": "2.0", "method": "call", "params": {"service", "method", "args"},
  "id"}``, answer ``{"jsonrpc": "2.0", "id", "result"}``: the ``/jsonrpc`` route of
  ``odoo/addons/base/controllers/rpc.py`` (``jsonrpc(service, method, args)`` ->
  ``dispatch_rpc``), and the "External API" page of the Odoo 16/17/18 developer docs
  (services ``common`` and ``object``, ``execute_kw(db, uid, password, model, method, args,
  kwargs)``).
- ``common.login(db, login, password)`` returns the uid or ``False`` (``odoo/service/common.py``
  ``exp_login``); ``common.version()`` returns ``server_version`` and ``server_version_info``.
- ``execute_kw`` re-checks the password on every call (``odoo/service/model.py`` ->
  ``security.check``): a wrong uid/password raises ``odoo.exceptions.AccessDenied``. Every
  exception is serialized by ``odoo/http.py`` as ``{"code": 200, "message": "Odoo Server
  Error", "data": {"name": "odoo.exceptions.AccessError", "debug", "message", "arguments",
  "context"}}`` in an HTTP 200 answer. ``renumber_user()`` simulates a restored database where
  the uid changed; ``refuse[(model, method)]`` makes a method raise a given exception.
- Domains are prefix-notation lists with ``'|'``, ``'&'``, ``'!'`` (implicit AND) and
  ``[field, operator, value]`` leaves (ORM "Search domains" reference); ``like``/``ilike``
  wrap the value in ``%...%`` (``%`` and ``_`` in the value stay wildcards), ``=like``/
  ``=ilike`` take the pattern as is.
- ``search_read(domain, fields, offset, limit, order)`` with ``context`` in kwargs. A model
  with an ``active`` field hides archived records unless the context has ``active_test:
  False`` or the domain names ``active`` itself (``BaseModel._search``).
- ``write_date``: set on every create/write to the transaction's ``now() at time zone 'UTC'``,
  which PostgreSQL keeps **with microseconds**, while reads return it truncated to
  ``"YYYY-MM-DD HH:MM:SS"`` (naive, UTC) and a domain value is a whole second: so
  ``write_date = <value read>`` hardly ever matches and ``write_date > <value read>`` matches
  the record itself (odoo/odoo#24102; only 18.4+ compares whole seconds, odoo/odoo#203626).
  ``add`` and ``edit`` stamp rows from ``clock()`` (sub-millisecond steps by default, so many
  rows share a second but not a microsecond); ``add(..., write_date=...)`` gives a bulk
  import's single timestamp.
- phone_validation (``mail.thread.phone``, ``phone_validation/models/models.py``,
  ``tools/phone_validation.py``): ``phone_sanitized`` is stored, the E.164 form of the first
  of ``mobile``, ``phone`` that formats; a number typed without a country code is read in the
  record's ``country_id`` or else the company's country; a too-long number starting with
  ``00`` or lacking ``+`` is retried as international; impossible or invalid -> ``False``.
  ``phone_mobile_search`` (``_search_phone_mobile_search``): separators ``[\\s\\\\./()-]``
  are stripped from phone and mobile; a value starting with ``+`` or ``00`` matches either
  prefix followed by the rest; other values match anywhere (``%value%``); fewer than 3
  characters is a UserError.
- ``message_post`` (mail.thread): 17+ escapes a ``str`` body ("str content will be escaped,
  Markup for html body"); 16 takes HTML and sanitizes it.
- Deals (``sale`` and ``crm`` addons, Odoo 17): ``sale.order`` with ``partner_id``,
  ``amount_total``, ``currency_id`` (a res.currency, whose name is the ISO code),
  ``date_order`` (UTC), ``state`` draft/sent/sale/cancel (16 also done); its lines in
  ``sale.order.line`` (``order_id``, ``product_id``, ``price_subtotal``); a ``crm.lead`` of
  ``type`` opportunity with ``expected_revenue``, ``company_currency``, ``probability``
  (100 when won), ``active`` False and ``lost_reason_id`` once marked lost, ``date_closed``.
  Neither model has ``active`` but crm.lead. ``create_date`` is the first ``write_date``.
"""

from __future__ import annotations

import bisect
import html
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from aiohttp import web

from tests.fakes.faults import Faults

MODELS = ("res.partner", "crm.lead", "mail.message", "res.users", "sale.order", "sale.order.line")
_PHONE_MODELS = ("res.partner", "crm.lead")  # mail.thread.phone: phone_sanitized and search
_SEP = re.compile(r"[\s\\./()\-]")
_DT = "%Y-%m-%d %H:%M:%S"
# id, name, calling code of the res.country records the stand-in knows
COUNTRIES = {"ES": (68, "Spain", 34), "US": (233, "United States", 1), "FR": (75, "France", 33)}
_COUNTRY_CODE = {cid: code for code, (cid, _, _) in COUNTRIES.items()}
_FIELDS = {
    "res.partner": {
        "name": False,
        "display_name": False,
        "is_company": False,
        "parent_id": False,
        "commercial_company_name": False,
        "email": False,
        "phone": False,
        "mobile": False,
        "country_id": False,
        "user_id": False,
        "active": True,
    },
    "crm.lead": {
        "name": False,
        "contact_name": False,
        "partner_name": False,
        "partner_id": False,
        "email_from": False,
        "phone": False,
        "mobile": False,
        "country_id": False,
        "stage_id": False,
        "user_id": False,
        "probability": 0.0,
        "type": "lead",
        "active": True,
        "expected_revenue": 0.0,
        "company_currency": [1, "EUR"],
        "lost_reason_id": False,
        "date_closed": False,
    },
    "sale.order": {
        "name": False,
        "partner_id": False,
        "amount_total": 0.0,
        "currency_id": [1, "EUR"],
        "date_order": False,
        "state": "draft",
        "user_id": False,
    },
    "sale.order.line": {"order_id": False, "product_id": False, "price_subtotal": 0.0},
}


class OdooError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _parse(number: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        num = phonenumbers.parse(number, region, keep_raw_input=True)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        reason = phonenumbers.is_possible_number_with_reason(num)
        if reason != phonenumbers.ValidationResult.TOO_LONG:
            return None
        if number.startswith("00"):
            return _parse("+" + number.lstrip("0"), region)
        if not number.startswith("+"):
            return _parse("+" + number, region)
        return None
    return num if phonenumbers.is_valid_number(num) else None


def sanitized(number: Any, region: str | None) -> str | bool:
    """What phone_validation stores for ``number`` read in ``region``: E.164, or False."""
    if not isinstance(number, str) or not number.strip():
        return False
    num = _parse(number.strip(), region)
    if num is None:
        return False
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _like(value: Any, pattern: str, ci: bool) -> bool:
    if not isinstance(value, str):
        return False
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if ci else 0)) is not None  # % spans lines


def _phone_mobile_search(row: dict[str, Any], op: str, value: Any) -> bool:
    if not isinstance(value, str) or len(value.strip()) < 3:
        raise OdooError(
            "odoo.exceptions.UserError",
            "Please enter at least 3 characters when searching a Phone/Mobile number.",
        )
    value = value.strip()
    nums = [_SEP.sub("", row[f]) for f in ("phone", "mobile") if isinstance(row.get(f), str)]
    if value.startswith("+") or value.startswith("00"):
        term = _SEP.sub("", value[1 if value.startswith("+") else 2 :])
        pats = ["00" + term, "+" + term]
        if op not in ("=", "!="):
            pats = [p + "%" for p in pats]
    else:
        term = _SEP.sub("", value)
        pats = [term if op in ("=", "!=") else f"%{term}%"]
    hit = any(_like(n, p, True) for n in nums for p in pats)
    return hit != (op == "!=")


def _as_datetime(value: Any) -> datetime:
    """A domain value for a datetime field, as Odoo reads it: whole seconds, naive UTC."""
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return datetime.strptime(value, "%Y-%m-%d")
            return datetime.strptime(value[:19], _DT)
        except ValueError:
            pass
    raise OdooError("builtins.ValueError", f"time data {value!r} does not match format {_DT!r}")


def _compare(v: Any, op: str, value: Any) -> bool:
    if isinstance(v, datetime):
        value = _as_datetime(value) if value is not False else value
    if v is False or v is None or value is False or value is None:
        return False  # SQL: NULL compares as unknown
    try:
        match op:
            case "<":
                return bool(v < value)
            case "<=":
                return bool(v <= value)
            case ">":
                return bool(v > value)
            case _:
                return bool(v >= value)
    except TypeError as e:
        raise OdooError("builtins.TypeError", str(e)) from None


def _leaf(row: dict[str, Any], leaf: list[Any]) -> bool:
    if not (isinstance(leaf, list | tuple) and len(leaf) == 3):
        raise OdooError("builtins.ValueError", f"Invalid leaf {leaf!r}")
    fname, op, value = leaf
    if fname == "phone_mobile_search":
        return _phone_mobile_search(row, op, value)
    if fname not in row:
        raise OdooError("builtins.ValueError", f"Invalid field {fname!r} in leaf {leaf!r}")
    v = row.get(fname)
    if isinstance(v, list) and len(v) == 2:  # many2one reads as [id, name]
        v = v[0]
    match op:
        case "=":
            if isinstance(v, datetime) and value is not False:
                return v == _as_datetime(value)
            return bool(v == value)
        case "!=":
            return bool(v != value)
        case "in":
            return v in value
        case "not in":
            return v not in value
        case "<" | "<=" | ">" | ">=":
            return _compare(v, op, value)
        case "ilike":
            return _like(v, f"%{value}%", True)
        case "like":
            return _like(v, f"%{value}%", False)
        case "=like":
            return _like(v, str(value), False)
        case "=ilike":
            return _like(v, str(value), True)
    raise OdooError("builtins.ValueError", f"Invalid operator {op!r}")


def matches(row: dict[str, Any], domain: list[Any]) -> bool:
    """Evaluate a prefix-notation domain on one row (as odoo.osv.expression does)."""
    if not isinstance(domain, list):
        raise OdooError("builtins.ValueError", "Invalid domain")
    pos = 0

    def node() -> bool:
        nonlocal pos
        if pos >= len(domain):
            raise OdooError("builtins.ValueError", "Invalid domain: missing operand")
        item = domain[pos]
        pos += 1
        if item == "|":
            a, b = node(), node()
            return a or b
        if item == "&":
            a, b = node(), node()
            return a and b
        if item == "!":
            return not node()
        return _leaf(row, item)

    result = True
    while pos < len(domain):  # implicit AND between top-level terms
        result = node() and result
    return result


def _order(spec: Any) -> list[tuple[str, bool]]:
    """``"write_date asc, id asc"`` -> [(field, descending)]; Odoo refuses anything else."""
    if not spec:
        return []
    out = []
    for part in str(spec).split(","):
        words = part.split()
        if not (1 <= len(words) <= 2) or not re.fullmatch(r"[a-z_][a-z0-9_]*", words[0]):
            raise OdooError("builtins.ValueError", f'Invalid "order" specified ({spec})')
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise OdooError("builtins.ValueError", f'Invalid "order" specified ({spec})')
        out.append((words[0], direction == "desc"))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, list) and len(value) == 2:
        value = value[0]
    return (1, 0) if value is False or value is None else (0, value)  # NULLS LAST on asc


@dataclass
class _Hint:
    """What a plain AND of leaves says about where its matches lie: write_date in [lo, hi]
    (hi exclusive when ``hi_open``), id above ``id_gt``. Used to narrow the scan only."""

    lo: datetime | None = None
    hi: datetime | None = None
    hi_open: bool = False
    id_gt: int | None = None


def _hint(domain: list[Any]) -> _Hint | None:
    """The narrowing hint of a domain, or None when it is not a plain AND of leaves."""
    lo = hi = None
    hi_open = False
    id_gt = None
    for item in domain:
        if item == "&":
            continue
        if not isinstance(item, list | tuple) or len(item) != 3:
            return None
        fname, op, value = item
        if fname == "id" and op == ">" and isinstance(value, int):
            id_gt = value if id_gt is None else max(id_gt, value)
        if fname != "write_date" or not isinstance(value, str):
            continue
        at = _as_datetime(value)
        if op in (">", ">=", "=") and (lo is None or at > lo):
            lo = at
        if op in ("<", "<=", "=") and (hi is None or at < hi or (at == hi and op == "<")):
            hi, hi_open = at, op == "<"
    return _Hint(lo, hi, hi_open, id_gt)


class _Index:
    """Rows of one model ordered by (write_date, id), and each second's rows by id: what
    PostgreSQL's indexes give Odoo, so a benchmark pulling 100,000 rows stays linear."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = sorted(rows, key=lambda r: (r["write_date"], r["id"]))
        self.keys = [(r["write_date"], r["id"]) for r in self.rows]
        self.seconds: dict[datetime, tuple[list[int], list[dict[str, Any]]]] = {}
        for r in sorted(rows, key=lambda r: r["id"]):
            ids, bucket = self.seconds.setdefault(r["write_date"].replace(microsecond=0), ([], []))
            ids.append(r["id"])
            bucket.append(r)

    def candidates(
        self, hint: _Hint, order: list[tuple[str, bool]]
    ) -> tuple[Iterable[dict[str, Any]], bool]:
        """Rows that may match (a superset, in the asked order when the flag says so)."""
        lo, hi, hi_open = hint.lo, hint.hi, hint.hi_open
        if (
            lo is not None
            and hi is not None
            and order == [("id", False)]
            and lo == lo.replace(microsecond=0)
            and (hi < lo + timedelta(seconds=1) or (hi_open and hi == lo + timedelta(seconds=1)))
        ):
            ids, bucket = self.seconds.get(lo, ([], []))
            start = 0 if hint.id_gt is None else bisect.bisect_right(ids, hint.id_gt)
            return itertools.islice(bucket, start, None), True
        start = 0 if lo is None else bisect.bisect_left(self.keys, (lo, -1))
        end = len(self.rows)
        if hi is not None:
            end = bisect.bisect_left(self.keys, (hi + timedelta(microseconds=1), -1))
        ordered = order == [("write_date", False), ("id", False)]
        return itertools.islice(self.rows, start, end), ordered


def _ticker(start: datetime, step: timedelta) -> Callable[[], datetime]:
    at = [start]

    def now() -> datetime:
        at[0] += step
        return at[0]

    return now


@dataclass
class Odoo:
    database: str = "crm"
    login: str = "centralita"
    password: str = "api-key-123"
    uid: int = 7
    version: int = 17
    has_phone_validation: bool = True
    company_country: str = "ES"  # res.company's country, for numbers typed without a prefix
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {m: [] for m in MODELS})
    domains: list[Any] = field(default_factory=list)  # every search domain received
    searches: list[dict[str, Any]] = field(default_factory=list)  # every search's kwargs
    refuse: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    logins: int = 0
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], datetime] = field(
        default_factory=lambda: _ticker(datetime(2024, 5, 2, 8, 0, 0), timedelta(microseconds=370))
    )
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))
    _index: dict[str, _Index] = field(default_factory=dict)

    # -- seeding (what users do in the Odoo UI) --------------------------------------------

    def add(self, model_: str, /, **values: Any) -> int:
        model = model_
        row: dict[str, Any] = {"id": values.pop("id", None) or next(self._ids)}
        if "country" in values:
            code = values.pop("country")
            cid, cname, _ = COUNTRIES[code]
            values["country_id"] = [cid, cname]
        stamp = values.pop("write_date", None)
        row.update(_FIELDS.get(model, {}))
        row.update(values)
        if isinstance(stamp, str):
            stamp = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f")
        row["write_date"] = stamp or self.clock()
        row.setdefault("create_date", row["write_date"])
        self._compute(model, row)
        self.rows[model].append(row)
        self._index.pop(model, None)
        return int(row["id"])

    def edit(self, model: str, rid: int, **values: Any) -> None:
        """A user saves the record: new values, a new write_date."""
        (row,) = [r for r in self.rows[model] if r["id"] == rid]
        row.update(values)
        row["write_date"] = self.clock()
        self._compute(model, row)
        self._index.pop(model, None)

    def unlink(self, model: str, rid: int) -> None:
        self.rows[model] = [r for r in self.rows[model] if r["id"] != rid]
        self._index.pop(model, None)

    def _compute(self, model: str, row: dict[str, Any]) -> None:
        if model in _PHONE_MODELS and self.has_phone_validation:
            country = row.get("country_id")
            region = _COUNTRY_CODE.get(country[0]) if isinstance(country, list) else None
            region = region or self.company_country or None
            row["phone_sanitized"] = sanitized(row["mobile"], region) or sanitized(
                row["phone"], region
            )

    def renumber_user(self) -> None:
        self.uid += 1

    # -- the server -----------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.faults.middleware()])
        app.router.add_post("/jsonrpc", self.jsonrpc)
        return app

    async def jsonrpc(self, request: web.Request) -> web.Response:
        try:
            req = await request.json()
            params = req["params"]
            service, method, args = params["service"], params["method"], list(params["args"])
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {
                        "code": 400,
                        "message": "Odoo Server Error",
                        "data": {
                            "name": "werkzeug.exceptions.BadRequest",
                            "message": "Bad Request",
                        },
                    },
                }
            )
        self.faults.requests.append(f"{service}.{method}")
        try:
            result = self._dispatch(service, method, args)
        except OdooError as e:
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "id": req.get("id"),
                    "error": {
                        "code": 200,
                        "message": "Odoo Server Error",
                        "data": {
                            "name": e.name,
                            "debug": "Traceback (most recent call last): ...",
                            "message": e.message,
                            "arguments": [e.message],
                            "context": {},
                        },
                    },
                }
            )
        return web.json_response({"jsonrpc": "2.0", "id": req.get("id"), "result": result})

    def _dispatch(self, service: str, method: str, args: list[Any]) -> Any:
        if service == "common" and method == "version":
            return {
                "server_version": f"{self.version}.0",
                "server_version_info": [self.version, 0, 0, "final", 0, ""],
                "server_serie": f"{self.version}.0",
                "protocol_version": 1,
            }
        if service == "common" and method == "login":
            db, login, password = (args + [None] * 3)[:3]
            if (db, login, password) == (self.database, self.login, self.password):
                self.logins += 1
                return self.uid
            return False
        if service == "object" and method == "execute_kw":
            db, uid, password, model, meth, margs, kwargs = (args + [None] * 7)[:7]
            if (db, uid, password) != (self.database, self.uid, self.password):
                raise OdooError("odoo.exceptions.AccessDenied", "Access Denied")
            if model not in self.rows:
                raise OdooError("builtins.KeyError", repr(model))
            if (model, meth) in self.refuse:
                raise OdooError(*self.refuse[model, meth])
            return self._execute(model, meth, margs or [], kwargs or {})
        raise OdooError("builtins.NameError", f"unknown method {service}.{method}")

    def _read(self, row: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        out = {"id": row["id"]}
        for f in wanted:
            v = row.get(f, False)
            out[f] = v.strftime(_DT) if isinstance(v, datetime) else v  # microseconds dropped
        return out

    def _search(self, model: str, domain: Any, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(domain, list):
            raise OdooError("builtins.ValueError", "Invalid domain")
        order = _order(kwargs.get("order"))
        for fname, _ in order:
            if fname != "id" and fname not in _FIELDS.get(model, {}) and fname != "write_date":
                raise OdooError("builtins.ValueError", f'Invalid "order" specified ({fname})')
        context = kwargs.get("context") or {}
        names_active = any(isinstance(t, list | tuple) and t and t[0] == "active" for t in domain)
        has_active = "active" in _FIELDS.get(model, {})
        if has_active and context.get("active_test", True) and not names_active:
            domain = [["active", "=", True], *domain]
        offset = int(kwargs.get("offset") or 0)
        limit = kwargs.get("limit") or None
        hint = _hint(domain) if model in _FIELDS else None
        rows: Iterable[dict[str, Any]] = self.rows[model]
        ordered = not order
        if hint is not None:
            if model not in self._index:
                self._index[model] = _Index(self.rows[model])
            rows, ordered = self._index[model].candidates(hint, order)
        if ordered and limit:
            found = []
            for r in rows:
                if matches(r, domain):
                    found.append(r)
                    if len(found) >= offset + limit:
                        break
            return found[offset:]
        found = [r for r in rows if matches(r, domain)]
        for fname, desc in reversed(order):
            found.sort(key=lambda r: _sort_key(r.get(fname)), reverse=desc)
        return found[offset : offset + limit if limit else None]

    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        table = self.rows[model]
        if method == "fields_get":
            names = {"id", "display_name", "write_date", "create_date"}
            names |= {k for r in table for k in r} | set(_FIELDS.get(model, {}))
            if model in _PHONE_MODELS and self.has_phone_validation:
                names |= {"phone_sanitized", "phone_mobile_search"}
            return {n: {"type": "char"} for n in sorted(names)}
        if method in ("search_read", "search_count"):
            domain = args[0] if args else kwargs.get("domain", [])
            self.domains.append(domain)
            self.searches.append(kwargs)
            found = self._search(model, domain, kwargs)
            if method == "search_count":
                return len(found)
            wanted = kwargs.get("fields") or []
            return [self._read(r, wanted) for r in found]
        if method == "read":
            ids = args[0]
            wanted = kwargs.get("fields") or []
            return [self._read(r, wanted) for r in table if r["id"] in ids]
        if method == "message_post":
            (ids,) = args[:1]
            if len(ids) != 1 or not any(r["id"] == ids[0] for r in table):
                raise OdooError("odoo.exceptions.MissingError", "Record does not exist")
            body = kwargs.get("body", "")
            if self.version >= 17:
                body = html.escape(body)  # a str is text, only Markup is HTML
            return self.add(
                "mail.message",
                model=model,
                res_id=ids[0],
                body=body,
                message_type=kwargs.get("message_type", "notification"),
                subtype_xmlid=kwargs.get("subtype_xmlid", ""),
                author_id=kwargs.get("author_id", False),
            )
        raise OdooError("builtins.AttributeError", f"'{model}' object has no attribute {method!r}")
