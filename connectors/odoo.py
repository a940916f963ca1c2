"""Odoo 16-18 through its JSON-RPC endpoint (``<url>/jsonrpc``).

Stateless: ``common.login(db, login, password)`` gives the user id, then every
``object.execute_kw(db, uid, password, model, method, args, kwargs)`` carries the credentials
(an API key works as the password). Errors come back as JSON-RPC errors whose
``data.name`` is the Python exception (``odoo.exceptions.AccessDenied``...). An AccessDenied
on a call that worked before means the uid went stale (database restored, user re-created):
we log in again once and retry. Any other JSON-RPC error is Odoo answering "no"
(``CrmRefused``; ``RecordRejected`` when it is about the record: ValidationError, UserError,
MissingError); HTTP errors, refused connections and timeouts stay outages (``ConnectorError``).

Lookups search ``res.partner`` and ``crm.lead`` with a domain passed as data (never built as
text), on the fields the database really has (``fields_get``). With the phone_validation
module: ``phone_sanitized`` (stored, indexed E.164 of mobile or else phone) or
``phone_mobile_search`` (phone and mobile without separators, containing the national
digits). Without it: ``phone`` and ``mobile`` ``=like`` a digit-wildcard pattern. Every
candidate is then checked here with ``same_number``, so a longer number that merely contains
the digits is never taken for the caller. Calls are logged as a note in the record's chatter
(``message_post`` with subtype ``mail.mt_note``).

Deals are ``sale.order`` records (state sale or done: won; cancel: lost; draft and sent:
quotations, open), or, with ``deals.modules: [crm.lead]``, opportunities (``type``
opportunity: won at probability 100, lost when archived with probability 0, which is what
"mark as lost" does, with ``lost_reason_id``); both are pulled like the directory.

The caller directory pulls both models ordered by ``write_date`` then ``id``. Odoo stores
``write_date`` with microseconds but reads and compares it in whole seconds, so the cursor
is (second, id): the rest of that second is read by id, then later seconds in order (see
``pull``).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from connectors.base import (
    CrmRefused,
    DealPage,
    DealParty,
    DealRecord,
    DirectoryPage,
    DirectoryRecord,
    RecordRejected,
    SessionExpired,
    deal_amount,
    pipeline_stage,
)
from connectors.callrecord import FinishedCall
from connectors.http_base import SessionCrmConnector, first_found
from connectors.numbers import digit_pattern, national_digits, same_number
from connectors.settings import OdooSettings
from connectors.transport import LoginRefused
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

log = logging.getLogger("gateway.connectors.odoo")

_PHONES = ("phone", "mobile")
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
_ALWAYS = ["phone", "mobile", "phone_sanitized", "active", "write_date"]
_REJECTING = ("ValidationError", "UserError", "MissingError")
_E164 = re.compile(r"\+[1-9][0-9]{5,14}")
_STAMP = "%Y-%m-%d %H:%M:%S"  # how Odoo reads and compares datetimes: whole seconds, UTC
_CURSOR = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})\|([0-9]{1,18})")
_SECOND = timedelta(seconds=1)
# a second this recent (by our clock) may still get saves: a caught-up pull reads it again
_SETTLE = timedelta(seconds=60)
_LOOKUP_ROWS = 20  # candidates read per model; false hits are dropped by same_number
LOST = "Lost"  # the status an archived (lost) lead keeps in the directory and on its card
SALE_ORDER = "sale.order"
OPPORTUNITY = "crm.lead"
_DEAL_READ = {
    SALE_ORDER: [
        "name", "partner_id", "amount_total", "currency_id", "date_order", "state", "user_id",
        "create_date",
    ],
    OPPORTUNITY: [
        "name", "partner_id", "partner_name", "contact_name", "email_from", "phone", "mobile",
        "expected_revenue", "company_currency", "probability", "stage_id", "active",
        "lost_reason_id", "date_closed", "user_id", "create_date",
    ],
}  # fmt: skip
# quotation (draft, sent), confirmed (sale; 16 also done once locked), cancelled
_ORDER_STAGE = {
    "draft": "proposal",
    "sent": "proposal",
    "sale": "won",
    "done": "won",
    "cancel": "lost",
}
_ISO = re.compile(r"[A-Z]{3}")  # res.currency's name is its ISO 4217 code


def phone_domain(fields: set[str], e164: str) -> list[Any]:
    """An Odoo domain (prefix notation) finding the number on the fields that exist, or []
    when ``e164`` is not an E.164 number (nothing else ever reaches Odoo). It may find more
    than the number: check each row with :func:`row_has_number`."""
    if not _E164.fullmatch(e164):
        return []
    terms: list[list[Any]] = []
    nsn = national_digits(e164)
    if "phone_sanitized" in fields:
        terms.append(["phone_sanitized", "=", e164])
    if "phone_mobile_search" in fields:
        terms.append(["phone_mobile_search", "ilike", nsn])  # Odoo wraps it: %digits%
    else:
        # ``=like`` sends the pattern as is (``like`` would add the same % around it); the
        # trailing % keeps "911 234 567 (home)" findable. Only digits and %.
        pattern = digit_pattern(e164)
        terms += [[f, "=like", pattern + "%"] for f in _PHONES if f in fields and pattern]
    if not terms:
        return []
    return ["|"] * (len(terms) - 1) + terms


def row_has_number(row: dict[str, Any], e164: str) -> bool:
    """Whether one of the row's phone fields is the number ``e164``."""
    if row.get("phone_sanitized") == e164:
        return True
    return any(isinstance(row.get(f), str) and same_number(row[f], e164) for f in _PHONES)


def _m2o(value: Any) -> tuple[int | None, str]:
    if isinstance(value, list) and len(value) == 2:
        return (value[0] if isinstance(value[0], int) else None), str(value[1] or "")
    return None, ""


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _second(row: dict[str, Any]) -> datetime:
    """The row's write_date as Odoo reads it ("YYYY-MM-DD HH:MM:SS", naive UTC)."""
    value = row.get("write_date")
    try:
        return datetime.strptime(str(value)[:19], _STAMP)
    except ValueError:
        raise ConnectorError(f"odoo answered a write_date that is not a time: {value!r}") from None


def _odoo_time(value: Any) -> float | None:
    """A datetime as Odoo reads it ("YYYY-MM-DD HH:MM:SS", UTC) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value[:19], _STAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _cursor(second: datetime, after_id: int) -> str:
    return f"{second.strftime(_STAMP)}|{after_id}"


def _parse_cursor(cursor: str) -> tuple[datetime | None, int]:
    if not cursor:
        return None, 0
    m = _CURSOR.fullmatch(cursor)
    if m is None:
        raise ConnectorError(f"odoo: directory cursor {cursor[:40]!r} not understood")
    return datetime.strptime(m[1], _STAMP), int(m[2])


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
            refused = RecordRejected if short in _REJECTING else CrmRefused
            detail = str(data.get("message") or "")[:200]
            raise refused(f"{self._http.host}: {method}: {short}: {detail}".rstrip(": "))
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
            raise CrmRefused(
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

    def _wanted(self, model: str, fields: set[str]) -> list[str]:
        return [f for f in [*_READ[model], *_ALWAYS] if f in fields]

    # -- records --------------------------------------------------------------------------

    def _record(self, model: str, row: dict[str, Any]) -> DirectoryRecord:
        """What one partner or lead row says about a person: the directory's record, and
        (through ``DirectoryRecord.card``) the live lookup's card."""
        rid = str(row.get("id"))
        owner_id, owner_name = _m2o(row.get("user_id"))
        extra = {"model": model}
        if owner_name:
            extra["owner_name"] = owner_name
        phones = tuple(t for t in (_text(row.get(f)) for f in _PHONES) if t)
        if not phones and _text(row.get("phone_sanitized")):
            phones = (_text(row.get("phone_sanitized")),)
        archived = row.get("active") is False
        common: dict[str, Any] = {
            "module": model,
            "record_id": rid,
            "owner": self._owner_of.get(str(owner_id)) if owner_id else None,
            "external_url": f"{self._http.base_url}/web#id={rid}&model={model}&view_type=form",
            "phones": phones,
            "extra": extra,
        }
        if model == "crm.lead":
            partner_id, partner = _m2o(row.get("partner_id"))
            _, stage = _m2o(row.get("stage_id"))
            company = _text(row.get("partner_name")) or partner
            # a lost lead is archived in Odoo; it stays a known caller, with that status
            return DirectoryRecord(
                kind=PersonKind.LEAD,
                display_name=_text(row.get("contact_name")) or company or _text(row.get("name")),
                company=company,
                account_id=str(partner_id) if partner_id else None,
                lead_status=LOST if archived else (stage or None),
                **common,
            )
        parent_id, parent_name = _m2o(row.get("parent_id"))
        is_company = bool(row.get("is_company"))
        return DirectoryRecord(
            kind=PersonKind.ACCOUNT if is_company else PersonKind.CONTACT,
            display_name=_text(row.get("name")),
            company=_text(row.get("commercial_company_name")) or parent_name,
            account_id=rid if is_company else (str(parent_id) if parent_id else None),
            deleted=archived,
            **common,
        )

    # -- lookup ---------------------------------------------------------------------------

    async def _search(self, model: str, e164: str, timeout: float) -> list[dict[str, Any]]:
        fields = await self._model_fields(model, timeout)
        domain = phone_domain(fields, e164)
        if not domain:
            return []
        kwargs: dict[str, Any] = {"fields": self._wanted(model, fields), "limit": _LOOKUP_ROWS}
        if model == "crm.lead":
            kwargs["context"] = {"active_test": False}  # lost leads are archived, still known
        rows = await self._execute(model, "search_read", [domain], kwargs, timeout)
        if not isinstance(rows, list):
            return []
        hits = [r for r in rows if isinstance(r, dict) and row_has_number(r, e164)]
        hits.sort(key=lambda r: r.get("active") is False)  # an open lead before a lost one
        return hits

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        hit = await first_found(
            list(self.settings.models), lambda m: self._search(m, e164, timeout)
        )
        if hit is None:
            return None
        model, row = hit
        card = self._record(model, row).card(e164, self.name)
        prob = row.get("probability")
        if model == "crm.lead" and isinstance(prob, int | float) and not isinstance(prob, bool):
            card = dataclasses.replace(card, lead_score=float(prob) / 10)
        return card

    # -- caller directory -----------------------------------------------------------------

    def directory_modules(self) -> Sequence[str]:
        return list(self.settings.models)

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
        """Up to ``limit`` records of ``module`` changed after ``cursor``, archived ones
        included (``deleted=True``; a lost lead stays, with status "Lost").

        Odoo keeps ``write_date`` with microseconds but reads it, and compares a domain
        value, in whole seconds; ordering by it sorts on the microseconds. A cursor of
        (last second read, last id) with ``write_date > s or (= s and id > n)`` would then
        read again the whole of second s (and loop forever on a bulk import). So the cursor
        is "every second before s is done, and in s every id up to n": a pull reads the rest
        of second s by id, then the later seconds by (write_date, id), keeping only whole
        seconds unless the page ends the data; a page that would hold nothing but one big
        second reads that second by id. When a pull catches up on a second less than a minute
        old, the next one reads that second again (a save of an older record may still land
        in it); anything else saved into an already-read second is left to the full pass."""
        if module not in self.settings.models:
            raise ConnectorError(f"{self.name}: {module!r} is not among the configured models")
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            fields = await self._model_fields(module, timeout)
            rows, cursor, more = await self._changed(
                module, self._wanted(module, fields), [], cursor, limit, timeout
            )
        return DirectoryPage([self._record(module, r) for r in rows], cursor, more)

    def _utc_now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC).replace(tzinfo=None)

    async def _changed(
        self,
        module: str,
        wanted: list[str],
        scope: list[Any],
        cursor: str,
        limit: int,
        timeout: float,
    ) -> tuple[list[dict[str, Any]], str, bool]:
        """Up to ``limit`` rows of ``module`` (within the domain ``scope``, a plain AND of
        leaves) changed after ``cursor``, the cursor after them and whether more are waiting;
        the cursor rules are :meth:`pull`'s."""
        start, after_id = _parse_cursor(cursor)
        limit = max(1, limit)
        fields = await self._model_fields(module, timeout)
        if "write_date" not in fields:
            raise ConnectorError(f"{self._http.host}: {module} has no write_date to sync on")

        async def search(domain: list[Any], order: str, n: int) -> list[dict[str, Any]]:
            kwargs = {
                "fields": wanted,
                "order": order,
                "limit": n,
                "context": {"active_test": False},  # archived records too: they are news
            }
            rows = await self._execute(module, "search_read", [[*scope, *domain]], kwargs, timeout)
            if not isinstance(rows, list):
                raise ConnectorError(f"{self._http.host}: search_read on {module} gave no list")
            return [r for r in rows if isinstance(r, dict) and isinstance(r.get("id"), int)]

        def second(s: datetime, after: int) -> list[Any]:
            return [
                ["write_date", ">=", s.strftime(_STAMP)],
                ["write_date", "<", (s + _SECOND).strftime(_STAMP)],
                ["id", ">", after],
            ]

        head: list[dict[str, Any]] = []
        if start is not None:  # the rest of the cursor's second, by id
            head = await search(second(start, after_id), "id asc", limit)
            if len(head) >= limit:
                return head, _cursor(start, head[-1]["id"]), True
        later = [["write_date", ">=", (start + _SECOND).strftime(_STAMP)]] if start else []
        room = limit - len(head)
        tail = await search(later, "write_date asc, id asc", room)
        if len(tail) < room:  # everything there is: the cursor is the last second read
            if tail:
                last = _second(tail[-1])
                top = max(r["id"] for r in tail if _second(r) == last)
                if last >= self._utc_now() - _SETTLE:
                    top = 0  # the second may still be taking saves: read it again next time
                return head + tail, _cursor(last, top), False
            if head:
                return head, _cursor(start or _second(head[-1]), head[-1]["id"]), False
            return [], "" if start is None else _cursor(start, after_id), False
        last = _second(tail[-1])  # may continue past this page: leave that second whole
        whole = [r for r in tail if _second(r) < last]
        if head or whole:
            return head + whole, _cursor(last, 0), True
        rows = await search(second(last, 0), "id asc", limit)  # one second fills the page
        return rows, _cursor(last, rows[-1]["id"] if rows else 0), True

    # -- deals ----------------------------------------------------------------------------

    def deal_modules(self) -> Sequence[str]:
        return self.settings.deals.modules_or(SALE_ORDER)

    async def pull_deals(self, module: str, cursor: str, limit: int) -> DealPage:
        """Up to ``limit`` sale orders (or opportunities, ``crm.lead``) changed after
        ``cursor``, with the cursor rules of :meth:`pull`; each with its customer's e-mail
        and numbers, and a sale order with the product of its biggest line."""
        if module not in _DEAL_READ:
            raise ConnectorError(f"{self.name}: no deals in model {module!r}")
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            fields = await self._model_fields(module, timeout)
            wanted = [f for f in [*_DEAL_READ[module], "write_date"] if f in fields]
            scope = [["type", "=", "opportunity"]] if module == OPPORTUNITY else []
            rows, cursor, more = await self._changed(module, wanted, scope, cursor, limit, timeout)
            partner_ids = {pid for r in rows if (pid := _m2o(r.get("partner_id"))[0])}
            partners = await self._partners(partner_ids, timeout)
            products = await self._products(rows, timeout) if module == SALE_ORDER else {}
        records = [self._deal(module, r, partners, products) for r in rows]
        return DealPage(records, cursor, more)

    async def _read(
        self, model: str, ids: Sequence[int], fields: list[str], timeout: float
    ) -> list[dict[str, Any]]:
        """These records, archived ones too; a search rather than ``read``, which fails the
        whole call on one record the user may not see (record rules): that one is left out."""
        if not ids:
            return []
        rows = await self._execute(
            model,
            "search_read",
            [[["id", "in", list(ids)]]],
            {"fields": fields, "context": {"active_test": False}},
            timeout,
        )
        return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []

    async def _partners(self, ids: set[int], timeout: float) -> dict[int, dict[str, Any]]:
        """These partners and their companies (a contact's parent), by id."""
        fields = ["name", "email", "phone", "mobile", "is_company", "parent_id"]
        found = {r["id"]: r for r in await self._read("res.partner", sorted(ids), fields, timeout)}
        parents = {_m2o(r.get("parent_id"))[0] for r in found.values()} - {None} - set(found)
        rows = await self._read("res.partner", sorted(p for p in parents if p), fields, timeout)
        found.update({r["id"]: r for r in rows})
        return found

    async def _products(self, orders: list[dict[str, Any]], timeout: float) -> dict[int, str]:
        """Per sale order, the product of its biggest line (what the customer bought)."""
        ids = [r["id"] for r in orders]
        if not ids:
            return {}
        lines = await self._execute(
            "sale.order.line",
            "search_read",
            [[["order_id", "in", ids]]],
            {"fields": ["order_id", "product_id", "price_subtotal"], "order": "id asc"},
            timeout,
        )
        best: dict[int, tuple[float, str]] = {}
        for line in lines if isinstance(lines, list) else []:
            order, _ = _m2o(line.get("order_id"))
            _, product = _m2o(line.get("product_id"))
            subtotal = deal_amount(line.get("price_subtotal")) or 0.0
            if order is not None and product and subtotal > best.get(order, (-1.0, ""))[0]:
                best[order] = (subtotal, product)
        return {order: product for order, (_, product) in best.items()}

    def _party(self, partner: dict[str, Any]) -> DealParty:
        return DealParty(
            module="res.partner",
            record_id=str(partner["id"]),
            kind=PersonKind.ACCOUNT if partner.get("is_company") else PersonKind.CONTACT,
            name=_text(partner.get("name")),
            emails=tuple(e for e in (_text(partner.get("email")),) if e),
            phones=tuple(t for t in (_text(partner.get(f)) for f in _PHONES) if t),
        )

    def _deal(
        self,
        module: str,
        row: dict[str, Any],
        partners: dict[int, dict[str, Any]],
        products: dict[int, str],
    ) -> DealRecord:
        parties: list[DealParty] = []
        partner_id, _ = _m2o(row.get("partner_id"))
        partner = partners.get(partner_id) if partner_id else None
        if module == OPPORTUNITY:  # the opportunity is itself a crm.lead the directory knows
            parties.append(
                DealParty(
                    module=OPPORTUNITY,
                    record_id=str(row["id"]),
                    kind=PersonKind.LEAD,
                    name=_text(row.get("contact_name")) or _text(row.get("partner_name")),
                    emails=tuple(e for e in (_text(row.get("email_from")),) if e),
                    phones=tuple(t for t in (_text(row.get(f)) for f in _PHONES) if t),
                )
            )
        if partner is not None:
            parties.insert(0, self._party(partner))
            parent_id, _ = _m2o(partner.get("parent_id"))
            if parent_id in partners:
                parties.append(self._party(partners[parent_id]))
        owner_id, _ = _m2o(row.get("user_id"))
        owner = self._owner_of.get(str(owner_id)) if owner_id else None
        created = _odoo_time(row.get("create_date"))
        if module == SALE_ORDER:
            state = _text(row.get("state"))
            _, currency = _m2o(row.get("currency_id"))
            return DealRecord(
                module=module,
                record_id=str(row["id"]),
                title=_text(row.get("name")),
                stage=_ORDER_STAGE.get(state, "proposal"),
                amount=deal_amount(row.get("amount_total")),
                currency=currency if _ISO.fullmatch(currency) else "",
                closed_at=_odoo_time(row.get("date_order")),
                created_at=created,
                product=products.get(row["id"], ""),
                owner=owner,
                parties=tuple(parties),
            )
        active = row.get("active") is not False
        probability = deal_amount(row.get("probability")) or 0.0
        _, currency = _m2o(row.get("company_currency"))
        _, lost_reason = _m2o(row.get("lost_reason_id"))
        _, stage_name = _m2o(row.get("stage_id"))
        if not active:
            stage = "lost"
        elif probability >= 100:
            stage = "won"
        else:
            stage = pipeline_stage(stage_name)
            stage = stage if stage not in ("won", "lost") else "qualification"
        return DealRecord(
            module=module,
            record_id=str(row["id"]),
            title=_text(row.get("name")),
            stage=stage,
            amount=deal_amount(row.get("expected_revenue")),
            currency=currency if _ISO.fullmatch(currency) else "",
            closed_at=_odoo_time(row.get("date_closed")) if stage in ("won", "lost") else None,
            created_at=created,
            lost_reason=lost_reason if stage == "lost" else "",
            owner=owner,
            parties=tuple(parties),
            # archived without being lost (probability kept): no longer a deal at all
            deleted=not active and probability > 0,
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
        target = await self._parent(call.customer, timeout)
        model = (target.extra.get("model") or target.extra.get("module")) if target else None
        if target is None or not (target.person_id or "").isdigit() or model not in _READ:
            log.info(
                "crm %s: no record for %r, call %r not logged", self.name, call.customer, call.id
            )
            return
        res_id = int(target.person_id or 0)
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
