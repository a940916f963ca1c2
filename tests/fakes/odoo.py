"""Stand-in for Odoo 16-18's JSON-RPC endpoint (``POST /jsonrpc``).

Sources for each behaviour:
- Request ``{"jsonrpc": "2.0", "method": "call", "params": {"service", "method", "args"},
  "id"}``, answer ``{"jsonrpc": "2.0", "id", "result"}``: the ``/jsonrpc`` route of
  ``odoo/addons/base/controllers/rpc.py`` (``jsonrpc(service, method, args)`` ->
  ``dispatch_rpc``), and the "External API" page of the Odoo 16/17/18 developer docs
  (services ``common`` and ``object``, ``execute_kw(db, uid, password, model, method, args,
  kwargs)``).
- ``common.login(db, login, password)`` returns the uid or ``False`` (``odoo/service/common.py``
  ``exp_login``); ``common.version()`` returns ``server_version`` and ``server_version_info``.
- ``execute_kw`` re-checks the password on every call (``odoo/service/model.py`` ->
  ``security.check``): a wrong uid/password raises ``odoo.exceptions.AccessDenied``, serialized
  by ``odoo/http.py`` as ``{"code": 200, "message": "Odoo Server Error", "data": {"name":
  "odoo.exceptions.AccessDenied", "debug", "message": "Access Denied", "arguments",
  "context"}}``. ``renumber_user()`` simulates a restored database where the uid changed.
- Domains are prefix-notation lists with ``'|'``, ``'&'``, ``'!'`` (implicit AND) and
  ``[field, operator, value]`` leaves (ORM "Search domains" reference); ``=like`` takes a
  SQL pattern, ``ilike`` wraps the value in ``%``.
- ``phone_mobile_search`` (phone_validation, ``mail.thread.phone``
  ``_search_phone_mobile_search``, Odoo 16): separators ``[\\s\\\\./()-]`` are stripped from
  phone and mobile; a value starting with ``+`` or ``00`` matches either prefix followed by the
  rest; other values match anywhere (``%value%``); fewer than 3 characters is a UserError.
  ``phone_sanitized`` is the E.164 form of mobile or phone, stored.
- ``message_post`` (mail.thread): 17+ escapes a ``str`` body ("str content will be escaped,
  Markup for html body"); 16 takes HTML and sanitizes it.
"""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from aiohttp import web

from tests.fakes.faults import Faults

MODELS = ("res.partner", "crm.lead", "mail.message", "res.users")
_SEP = re.compile(r"[\s\\./()\-]")


class OdooError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _sanitized(number: str) -> str | bool:
    try:
        num = phonenumbers.parse(number, "ES")
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(num):
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


def _leaf(row: dict[str, Any], leaf: list[Any]) -> bool:
    if not (isinstance(leaf, list | tuple) and len(leaf) == 3):
        raise OdooError("builtins.ValueError", f"Invalid leaf {leaf!r}")
    fname, op, value = leaf
    if fname == "phone_mobile_search":
        return _phone_mobile_search(row, op, value)
    if fname not in row and fname != "id":
        raise OdooError("builtins.ValueError", f"Invalid field {fname!r} in leaf {leaf!r}")
    v = row.get(fname)
    if isinstance(v, list) and len(v) == 2:  # many2one reads as [id, name]
        v = v[0]
    match op:
        case "=":
            return v == value
        case "!=":
            return v != value
        case "in":
            return v in value
        case "not in":
            return v not in value
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


@dataclass
class Odoo:
    database: str = "crm"
    login: str = "centralita"
    password: str = "api-key-123"
    uid: int = 7
    version: int = 17
    has_phone_validation: bool = True
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {m: [] for m in MODELS})
    domains: list[Any] = field(default_factory=list)  # every search domain received
    logins: int = 0
    faults: Faults = field(default_factory=Faults)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def add(self, model_: str, /, **values: Any) -> int:
        model = model_
        row: dict[str, Any] = {"id": values.pop("id", None) or next(self._ids), **values}
        if model in ("res.partner", "crm.lead"):
            row.setdefault("phone", False)
            row.setdefault("mobile", False)
            row.setdefault("user_id", False)
            if self.has_phone_validation:
                row["phone_sanitized"] = _sanitized(row["mobile"] or "") or _sanitized(
                    row["phone"] or ""
                )
        self.rows[model].append(row)
        return int(row["id"])

    def renumber_user(self) -> None:
        self.uid += 1

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
            return self._execute(model, meth, margs or [], kwargs or {})
        raise OdooError("builtins.NameError", f"unknown method {service}.{method}")

    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        table = self.rows[model]
        if method == "fields_get":
            names = {"id", "name", "display_name"} | {k for r in table for k in r}
            if model in ("res.partner", "crm.lead"):
                names |= {"phone", "mobile"} | (
                    {"phone_sanitized", "phone_mobile_search"}
                    if self.has_phone_validation
                    else set()
                )
            return {n: {"type": "char"} for n in sorted(names)}
        if method in ("search_read", "search_count"):
            domain = args[0] if args else kwargs.get("domain", [])
            self.domains.append(domain)
            found = [r for r in table if matches(r, domain)]
            if method == "search_count":
                return len(found)
            found = found[: kwargs.get("limit") or None]
            wanted = kwargs.get("fields") or []
            return [{"id": r["id"], **{f: r.get(f, False) for f in wanted}} for r in found]
        if method == "read":
            ids = args[0]
            wanted = kwargs.get("fields") or []
            return [
                {"id": r["id"], **{f: r.get(f, False) for f in wanted}}
                for r in table
                if r["id"] in ids
            ]
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
