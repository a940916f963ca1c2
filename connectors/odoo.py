"""Odoo 16-18 through its JSON-RPC endpoint (``<url>/jsonrpc``).

Stateless: ``common.login(db, login, password)`` gives the user id, then every
``object.execute_kw(db, uid, password, model, method, args, kwargs)`` carries the credentials
(an API key works as the password). Errors come back as JSON-RPC errors whose
``data.name`` is the Python exception (``odoo.exceptions.AccessDenied``...). An AccessDenied
on a call that worked before means the uid went stale (database restored, user re-created):
we log in again once and retry.

Lookups search ``res.partner`` and ``crm.lead`` with a domain passed as data (never built as
text), on the fields the database really has (``fields_get``): ``phone_sanitized`` (E.164)
and ``phone_mobile_search`` (which ignores separators) from the phone_validation module,
else ``phone`` and ``mobile``. Calls are logged as a note in the record's chatter
(``message_post`` with subtype ``mail.mt_note``).
"""

from __future__ import annotations

import html
import itertools
import logging
from typing import Any

import msgspec

from connectors.base import RecordRejected, SessionExpired
from connectors.callrecord import FinishedCall
from connectors.http_base import SessionCrmConnector, first_found
from connectors.numbers import dial_string, last_digits, national_digits, spellings
from connectors.settings import OdooSettings
from connectors.transport import LoginRefused
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

log = logging.getLogger("gateway.connectors.odoo")

_PHONE_FIELDS = ("phone_sanitized", "phone_mobile_search", "phone", "mobile")
_READ = {
    "res.partner": ["name", "is_company", "parent_id", "commercial_company_name", "user_id"],
    "crm.lead": [
        "name",
        "contact_name",
        "partner_name",
        "partner_id",
        "stage_id",
        "user_id",
        "probability",
        "type",
    ],
}
_REJECTING = ("ValidationError", "UserError", "MissingError")


def phone_domain(fields: set[str], e164: str, raw: str, match_last: int) -> list[Any]:
    """An Odoo domain (prefix notation) matching the number on the fields that exist."""
    terms: list[list[Any]] = []
    if "phone_sanitized" in fields and dial_string(e164).startswith("+"):
        terms.append(["phone_sanitized", "=", dial_string(e164)])
    digits = last_digits(e164, match_last) or national_digits(e164)
    if "phone_mobile_search" in fields and len(digits) >= 3:
        terms.append(["phone_mobile_search", "ilike", digits])
    else:
        values = spellings(e164, raw)
        for f in ("phone", "mobile"):
            if f in fields and values:
                terms.append([f, "in", values])
                if match_last and last_digits(e164, match_last):
                    terms.append([f, "=like", "%" + last_digits(e164, match_last)])
    if not terms:
        return []
    return ["|"] * (len(terms) - 1) + terms


def _m2o(value: Any) -> tuple[int | None, str]:
    if isinstance(value, list) and len(value) == 2:
        return (value[0] if isinstance(value[0], int) else None), str(value[1] or "")
    return None, ""


class OdooConnector(SessionCrmConnector[OdooSettings, int]):
    """Looks callers up in contacts and CRM leads; logs calls as notes on them."""

    API_PATH = "/jsonrpc"

    def _setup(self) -> None:
        super()._setup()
        self._major = 16
        self._fields: dict[str, set[str]] = {}
        self._partner_of_user: dict[str, int] = {}
        self._ids = itertools.count(1)

    # -- protocol -------------------------------------------------------------------------

    async def _rpc(self, service: str, method: str, args: list[Any], timeout: float) -> Any:
        body = msgspec.json.encode(
            {
                "jsonrpc": "2.0",
                "method": "call",
                "params": {"service": service, "method": method, "args": args},
                "id": next(self._ids),
            }
        )
        doc = await self._http.request_json(
            "POST",
            self._endpoint,
            data=body,
            timeout=timeout,
            headers={"Content-Type": "application/json"},
        )
        if not isinstance(doc, dict):
            raise ConnectorError(f"{self._http.host}: {method} answered an unexpected shape")
        err = doc.get("error")
        if isinstance(err, dict):
            raw_data = err.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            name = str(data.get("name") or err.get("message") or "error")
            short = name.rpartition(".")[2]
            if short == "AccessDenied":
                raise SessionExpired(f"{self._http.host}: access denied")
            if short in _REJECTING:
                raise RecordRejected(f"{self._http.host}: {method}: {short}: {data.get('message')}")
            raise ConnectorError(f"{self._http.host}: {method} failed: {short}")
        return doc.get("result")

    async def _open_session(self, timeout: float) -> int:
        s = self.settings
        try:
            uid = await self._rpc("common", "login", [s.database, s.username, s.password], timeout)
        except SessionExpired:
            uid = False
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            raise LoginRefused(
                f"{self._http.host}: login refused for {s.username!r} on database "
                f"{s.database!r}; check username and password/API key"
            )
        version = await self._rpc("common", "version", [], timeout)
        info = version.get("server_version_info") if isinstance(version, dict) else None
        if isinstance(info, list) and info and isinstance(info[0], int):
            self._major = info[0]
        log.info("crm %s: logged in to %s as uid %d", self.name, self._http.host, uid)
        return uid

    async def _execute(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any], timeout: float
    ) -> Any:
        s = self.settings
        try:
            return await self._with_session(
                lambda uid: self._rpc(
                    "object",
                    "execute_kw",
                    [s.database, uid, s.password, model, method, args, kwargs],
                    timeout,
                ),
                timeout,
            )
        except SessionExpired as e:  # even with a fresh uid: the user may not touch this model
            raise ConnectorError(
                f"{self._http.host}: access denied to {model}.{method} for "
                f"{s.username!r}; check the user's access rights"
            ) from e

    async def _model_fields(self, model: str, timeout: float) -> set[str]:
        if model not in self._fields:
            got = await self._execute(model, "fields_get", [], {"attributes": ["type"]}, timeout)
            if not isinstance(got, dict):
                raise ConnectorError(f"{self._http.host}: fields_get on {model} answered no fields")
            self._fields[model] = set(got)
        return self._fields[model]

    # -- lookup ---------------------------------------------------------------------------

    async def _search(
        self, model: str, e164: str, raw: str, timeout: float
    ) -> list[dict[str, Any]]:
        fields = await self._model_fields(model, timeout)
        domain = phone_domain(fields, e164, raw, self.settings.match_last_digits)
        if not domain:
            return []
        wanted = [f for f in _READ[model] if f in fields]
        rows = await self._execute(
            model, "search_read", [domain], {"fields": wanted, "limit": 5}, timeout
        )
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        hit = await first_found(
            list(self.settings.models), lambda m: self._search(m, e164, raw, timeout)
        )
        return None if hit is None else self._card(e164, *hit)

    def _card(self, e164: str, model: str, row: dict[str, Any]) -> CallerCard:
        rid = str(row.get("id"))
        owner_id, owner_name = _m2o(row.get("user_id"))
        owner = self._owner_of.get(str(owner_id)) or owner_name or None
        url = f"{self._http.base_url}/web#id={rid}&model={model}&view_type=form"
        if model == "crm.lead":
            partner_id, _ = _m2o(row.get("partner_id"))
            _, stage = _m2o(row.get("stage_id"))
            prob = row.get("probability")
            return CallerCard(
                number=e164,
                kind=PersonKind.LEAD,
                display_name=str(
                    row.get("contact_name") or row.get("partner_name") or row.get("name") or ""
                ),
                company=str(row.get("partner_name") or ""),
                person_id=rid,
                account_id=str(partner_id) if partner_id else None,
                owner=owner,
                lead_status=stage or None,
                lead_score=float(prob) / 10 if isinstance(prob, int | float) else None,
                source=self.name,
                external_url=url,
                extra={"model": model},
            )
        parent_id, parent_name = _m2o(row.get("parent_id"))
        is_company = bool(row.get("is_company"))
        return CallerCard(
            number=e164,
            kind=PersonKind.ACCOUNT if is_company else PersonKind.CONTACT,
            display_name=str(row.get("name") or ""),
            company=str(row.get("commercial_company_name") or parent_name or ""),
            person_id=rid,
            account_id=rid if is_company else (str(parent_id) if parent_id else None),
            owner=owner,
            source=self.name,
            external_url=url,
            extra={"model": model},
        )

    # -- call log -------------------------------------------------------------------------

    def _body(self, call: FinishedCall) -> str:
        text = f"{call.subject}\n{call.description()}"
        if self._major >= 17:
            return text  # 17+ escapes a plain str body itself (only Markup is HTML)
        return html.escape(text).replace("\n", "<br/>")  # 16 takes sanitized HTML

    async def _author(self, agent: str, timeout: float) -> int | None:
        uid = self.settings.users.get(agent)
        if not uid:
            return None
        if uid not in self._partner_of_user:
            rows = await self._execute(
                "res.users", "read", [[int(uid)]], {"fields": ["partner_id"]}, timeout
            )
            pid = _m2o(rows[0].get("partner_id"))[0] if isinstance(rows, list) and rows else None
            if pid is None:
                return None
            self._partner_of_user[uid] = pid
        return self._partner_of_user[uid]

    async def _write(self, call: FinishedCall, timeout: float) -> None:
        target = await self._find(call.customer, call.customer, timeout)
        if target is None or not target.person_id:
            log.info(
                "crm %s: no record for %r, call %r not logged", self.name, call.customer, call.id
            )
            return
        model, res_id = target.extra["model"], int(target.person_id)
        seen = await self._execute(
            "mail.message",
            "search_count",
            [[["model", "=", model], ["res_id", "=", res_id], ["body", "ilike", call.marker]]],
            {},
            timeout,
        )
        if isinstance(seen, int) and seen > 0:
            log.info("crm %s: call %r already noted on %s/%d", self.name, call.id, model, res_id)
            return
        kwargs: dict[str, Any] = {
            "body": self._body(call),
            "message_type": "comment",
            "subtype_xmlid": "mail.mt_note",
        }
        author = await self._author(call.agent, timeout)
        if author is not None:
            kwargs["author_id"] = author
        await self._execute(model, "message_post", [[res_id]], kwargs, timeout)
