"""SugarCRM 6.x CE and SuiteCRM 7 through their shared legacy REST API v4_1.

Every call is a form POST to ``<url>/service/v4_1/rest.php`` with ``method``,
``input_type=JSON``, ``response_type=JSON`` and ``rest_data`` (a JSON object whose *order* of
keys is the order of the PHP method's arguments: the server splats it positionally). Errors
come back as HTTP 200 with ``{"name", "number", "description"}`` (``number`` is a string for
some, e.g. ``"-1"``); number 11 is "Invalid Session ID" (also an expired or logged-out
session), after which we log in again once and retry; 10 is a refused login; any other fault
is the CRM refusing the request (``CrmRefused``). A database error is HTTP 500 with a
``text/html`` body ("Database failure..."): an outage, a plain ``ConnectorError``.

What SuiteCRM 7.14.6 really does (``tests/data/crm-traces/suitecrm-7.14.6/``, issue #9):

- ``get_entry_list`` takes a raw SQL ``query`` fragment pasted after ``WHERE``, checked first by
  a validator that answers fault 40 "Access Denied" for SQL function calls, ``--`` comments and
  a string literal holding ``(`` inside an ``IN (...)`` list followed by another condition.
  Phone numbers are stored exactly as typed (``+34 911 234 567``, ``0034911234568``,
  ``+1 (212) 555-0100``), so a lookup asks for each phone field ``LIKE '%9%1%1%2%3%4%5%6%7'``
  (the national number's digits with anything between them: only digits and ``%`` go into
  the query, and the validator accepts it) and keeps the rows whose stored text really is the
  number (``same_number``): the pattern can also match other numbers holding those digits.
- Values come back HTML-encoded: ``'`` as ``&#039;``, ``"`` as ``&quot;``, ``<``/``>`` as
  ``&lt;``/``&gt;``, ``&`` left raw. ``decode`` reverses exactly those four.
- ``get_entry_list(..., deleted=1)`` returns live and deleted rows alike (each with its
  ``deleted`` field), which is what the caller directory pull uses; ``order_by`` takes bare
  field names (the server prefixes the table; a ``table.field`` it does not know is dropped).

Deals are ``Opportunities`` pulled the same way (``pull_deals``), with their contacts and
account asked through ``link_name_to_fields_array``: the answer's ``relationship_list`` holds,
per entry and in the same order, ``{"link_list": [{"name": link, "records": [{"link_value":
{field: {"name", "value"}}}]}]}`` (``SugarWebServiceImplv4::get_entry_list``), a link with no
related record being left out. ``sales_stage`` "Closed Won"/"Closed Lost" decide won and lost;
``date_closed`` is a day; ``currency_id`` "-99" is the system currency (``deals.currency``),
any other the id of a ``Currencies`` record whose ``iso4217`` is read once. Stock SuiteCRM
keeps no product or lost reason on an opportunity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

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
from connectors.callrecord import FinishedCall, split_duration
from connectors.http_base import SessionCrmConnector, first_found
from connectors.numbers import digit_pattern, same_number
from connectors.settings import SugarCrmSettings
from connectors.transport import LoginRefused, decode_json
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

log = logging.getLogger("gateway.connectors.sugarcrm")

PHONE_FIELDS = {
    "Contacts": ("phone_work", "phone_mobile", "phone_home", "phone_other", "phone_fax"),
    "Leads": ("phone_work", "phone_mobile", "phone_home", "phone_other", "phone_fax"),
    "Accounts": ("phone_office", "phone_alternate", "phone_fax"),
}
_SELECT = {
    "Contacts": ("id", "first_name", "last_name", "account_name", "account_id"),
    "Leads": ("id", "first_name", "last_name", "account_name", "status"),
    "Accounts": ("id", "name"),
}
_COMMON = ("assigned_user_id", "date_modified", "deleted")
_KIND = {"Contacts": PersonKind.CONTACT, "Leads": PersonKind.LEAD, "Accounts": PersonKind.ACCOUNT}
_LINK = {"Contacts": "contacts", "Leads": "leads"}  # Calls' relationship link fields
_INVALID_SESSION = 11
_INVALID_LOGIN = 10
LOOKUP_ROWS = 20  # rows fetched per module and lookup; the digit pattern may match others
PULL_ORDER = "date_modified ASC, id ASC"  # bare names: the server adds the table itself

# the four entities SuiteCRM's get_entry/get_entry_list produce; '&' itself is sent raw
_ENTITY = {"&#039;": "'", "&quot;": '"', "&lt;": "<", "&gt;": ">"}
_ENTITIES = re.compile("|".join(map(re.escape, _ENTITY)))
_DB_TIME = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})?")
DEAL_MODULE = "Opportunities"
_DEAL_FIELDS = (
    "id",
    "name",
    "amount",
    "amount_usdollar",
    "currency_id",
    "date_closed",
    "sales_stage",
    "assigned_user_id",
    "date_entered",
    "date_modified",
    "deleted",
)
# an opportunity's customers: its contacts (opportunities_contacts), its account
_DEAL_LINKS = (
    (
        "contacts",
        "Contacts",
        ("id", "first_name", "last_name", "email1", *PHONE_FIELDS["Contacts"]),
    ),
    ("accounts", "Accounts", ("id", "name", "email1", *PHONE_FIELDS["Accounts"])),
)
SYSTEM_CURRENCY = "-99"  # SuiteCRM's id of the currency set at install (config.php)


def decode(text: str) -> str:
    """A value as typed in the CRM, from what get_entry(_list) answers: exactly the four
    entities SuiteCRM encodes are reversed, in one pass (``&`` is never encoded, so
    ``&amp;`` stays as it came: that is what was typed)."""
    return _ENTITIES.sub(lambda m: _ENTITY[m.group(0)], text)


def sql_literal(value: str) -> str:
    """A MySQL string literal: backslashes and quotes escaped (both are escape characters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def phone_where(module: str, e164: str) -> str:
    """The ``query`` fragment finding ``e164`` in any phone field of ``module``, however it
    was typed; "" when the number is too short to look up. Only digits and ``%`` in it."""
    pattern = digit_pattern(e164)
    if not pattern or not e164.startswith("+"):
        return ""
    table = module.lower()
    literal = sql_literal(pattern)
    return "(" + " OR ".join(f"{table}.{f} LIKE {literal}" for f in PHONE_FIELDS[module]) + ")"


def keyset_where(module: str, cursor: str) -> str:
    """The ``query`` fragment of the records after ``cursor`` in (date_modified, id) order."""
    after = _parse_cursor(cursor)
    if after is None:
        return ""
    modified, rid = (sql_literal(v) for v in after)
    t = module.lower()
    return (
        f"({t}.date_modified > {modified} OR ({t}.date_modified = {modified} AND {t}.id > {rid}))"
    )


def _parse_cursor(cursor: str) -> tuple[str, str] | None:
    if not cursor:
        return None
    modified, sep, rid = cursor.partition("|")
    if not sep or not rid or not _DB_TIME.fullmatch(modified):
        raise ConnectorError(f"directory cursor {cursor[:80]!r} is not one this connector made")
    return modified, rid


def _value(entry: dict[str, Any], key: str) -> str:
    nvl = entry.get("name_value_list") or {}
    item = nvl.get(key) if isinstance(nvl, dict) else None
    v = item.get("value") if isinstance(item, dict) else None
    return "" if v is None else str(v)


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()[:10]) if text.strip() else None
    except ValueError:
        return None


def _epoch(db_time: str) -> float | None:
    """A DB time ("2026-05-02 10:00:00", UTC as SuiteCRM stores it) as epoch seconds."""
    try:
        return (
            datetime.strptime(db_time.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        )
    except ValueError:
        return None


def _links(relationships: Any, at: int) -> dict[str, list[dict[str, Any]]]:
    """The related records of entry ``at``: link name -> each record's ``link_value``."""
    if not isinstance(relationships, list) or at >= len(relationships):
        return {}
    item = relationships[at]
    out: dict[str, list[dict[str, Any]]] = {}
    link_list = item.get("link_list") if isinstance(item, dict) else None
    for link in link_list if isinstance(link_list, list) else []:
        if not isinstance(link, dict):
            continue
        records = link.get("records")
        values = [
            r["link_value"]
            for r in (records if isinstance(records, list) else [])
            if isinstance(r, dict) and isinstance(r.get("link_value"), dict)
        ]
        out[str(link.get("name"))] = values
    return out


def _link_value(record: dict[str, Any], key: str) -> str:
    item = record.get(key)
    v = item.get("value") if isinstance(item, dict) else None
    return "" if v is None else decode(str(v))


def _fault_number(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


class SugarCrmConnector(SessionCrmConnector[SugarCrmSettings, str]):
    """Looks callers up in Contacts, Leads and Accounts, logs calls in Calls, and hands the
    caller directory every record's phone fields (``DirectorySource``)."""

    API_PATH = "/service/v4_1/rest.php"

    def _setup(self) -> None:
        super()._setup()
        self._user_id = ""
        self._iso: dict[str, str] = {}  # Currencies id -> ISO 4217 ("" = could not be read)

    # -- protocol -------------------------------------------------------------------------

    async def _post(self, method: str, rest_data: dict[str, Any], timeout: float) -> Any:
        form = {
            "method": method,
            "input_type": "JSON",
            "response_type": "JSON",
            "rest_data": json.dumps(rest_data),
        }
        host = self._http.host
        status, body = await self._http.request("POST", self._endpoint, data=form, timeout=timeout)
        if 300 <= status < 400:
            raise ConnectorError(
                f"{host}: HTTP {status} redirect; set the connector url to the final address"
            )
        if status >= 400:
            text = body[:200].decode("utf-8", "replace").strip()
            said = f" ({text.splitlines()[0][:120]})" if text and not text.startswith("<") else ""
            raise ConnectorError(f"{host}: {method} failed: HTTP {status}{said}")
        result = decode_json(body, host)
        if isinstance(result, dict) and {"name", "number", "description"} <= result.keys():
            number = _fault_number(result.get("number"))
            if number == _INVALID_SESSION:
                raise SessionExpired(f"{host}: session expired")
            if number == _INVALID_LOGIN:
                raise LoginRefused(
                    f"{host}: login refused for user {self.settings.username!r}; "
                    "check username and password"
                )
            raise CrmRefused(
                f"{host}: {method} refused: fault {result.get('number')} "
                f"{result.get('name')!r} ({result.get('description')})"
            )
        return result

    async def _open_session(self, timeout: float) -> str:
        s = self.settings
        result = await self._post(
            "login",
            {
                "user_auth": {
                    "user_name": s.username,
                    "password": hashlib.md5(s.password.encode()).hexdigest(),
                },
                "application_name": "Centralita",
                "name_value_list": [],
            },
            timeout,
        )
        sid = result.get("id") if isinstance(result, dict) else None
        if not isinstance(sid, str) or not sid:
            raise ConnectorError(f"{self._http.host}: login answered without a session id")
        self._user_id = _value(result, "user_id")
        log.info("crm %s: logged in to %s", self.name, self._http.host)
        return sid

    async def _api(self, method: str, args: dict[str, Any], timeout: float) -> Any:
        """Call ``method`` with ``session`` first, logging in (again, once) as needed."""
        return await self._with_session(
            lambda sid: self._post(method, {"session": sid, **args}, timeout), timeout
        )

    async def _entries(
        self,
        module: str,
        query: str,
        fields: Sequence[str],
        timeout: float,
        *,
        limit: int = 5,
        order_by: str = "",
        deleted: int = 0,
    ) -> list[dict[str, Any]]:
        entries, _ = await self._entries_linked(
            module, query, fields, timeout, limit=limit, order_by=order_by, deleted=deleted
        )
        return entries

    async def _entries_linked(
        self,
        module: str,
        query: str,
        fields: Sequence[str],
        timeout: float,
        *,
        limit: int = 5,
        order_by: str = "",
        deleted: int = 0,
        links: Sequence[tuple[str, Sequence[str]]] = (),
    ) -> tuple[list[dict[str, Any]], list[dict[str, list[dict[str, Any]]]]]:
        """The entries, and for each the related records of ``links`` (link name, fields)."""
        result = await self._api(
            "get_entry_list",
            {
                "module_name": module,
                "query": query,
                "order_by": order_by,
                "offset": 0,
                "select_fields": list(fields),
                "link_name_to_fields_array": [
                    {"name": name, "value": list(names)} for name, names in links
                ],
                "max_results": limit,
                "deleted": deleted,
                "favorites": False,
            },
            timeout,
        )
        entries = result.get("entry_list") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise ConnectorError(f"{self._http.host}: get_entry_list answered no entry_list")
        relationships = result.get("relationship_list") if links else None
        kept = [
            (e, _links(relationships, i))
            for i, e in enumerate(entries)
            if isinstance(e, dict) and e.get("id")
        ]
        return [e for e, _ in kept], [r for _, r in kept]

    # -- records --------------------------------------------------------------------------

    def _fields(self, module: str) -> tuple[str, ...]:
        return _SELECT[module] + PHONE_FIELDS[module] + _COMMON

    def _record(self, module: str, entry: dict[str, Any]) -> DirectoryRecord:
        """One row of ``get_entry_list`` as the directory (and the caller card) sees it."""

        def v(key: str) -> str:
            return decode(_value(entry, key))

        rid = str(entry["id"])
        account: str | None
        if module == "Accounts":
            name = company = v("name")
            account = rid
        else:
            name = f"{v('first_name')} {v('last_name')}".strip()
            company, account = v("account_name"), v("account_id") or None
        return DirectoryRecord(
            module=module,
            record_id=rid,
            kind=_KIND[module],
            display_name=name,
            company=company,
            account_id=account,
            owner=self._owner_of.get(_value(entry, "assigned_user_id")),
            lead_status=(v("status") or None) if module == "Leads" else None,
            external_url=f"{self._http.base_url}/index.php?module={module}&action=DetailView"
            f"&record={rid}",
            phones=tuple(p for p in (v(f) for f in PHONE_FIELDS[module]) if p.strip()),
            deleted=_value(entry, "deleted") == "1",
        )

    # -- lookup ---------------------------------------------------------------------------

    async def _matching(self, module: str, e164: str, timeout: float) -> list[DirectoryRecord]:
        """The records of ``module`` with a phone field that is ``e164`` as typed."""
        rows = await self._entries(
            module, phone_where(module, e164), self._fields(module), timeout, limit=LOOKUP_ROWS
        )
        records = (self._record(module, row) for row in rows)
        return [r for r in records if any(same_number(p, e164) for p in r.phones)]

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        modules = [m for m in self.settings.modules if phone_where(m, e164)]
        hit = await first_found(modules, lambda m: self._matching(m, e164, timeout))
        return None if hit is None else hit[1].card(e164, self.name)

    # -- caller directory -----------------------------------------------------------------

    def directory_modules(self) -> Sequence[str]:
        return tuple(self.settings.modules)

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
        """Up to ``limit`` records of ``module`` changed after ``cursor``, deleted ones
        included (``deleted=True``), in (date_modified, id) order; the cursor is the last
        row's ``date_modified|id``."""
        if module not in PHONE_FIELDS:
            raise ConnectorError(f"{self.name}: no directory for module {module!r}")
        query = keyset_where(module, cursor)
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            rows = await self._entries(
                module,
                query,
                self._fields(module),
                timeout,
                limit=limit,
                order_by=PULL_ORDER,
                deleted=1,
            )
        records = [self._record(module, row) for row in rows]
        if rows:
            cursor = f"{_value(rows[-1], 'date_modified')}|{rows[-1]['id']}"
            _parse_cursor(cursor)  # a row without a DB time would make a cursor we cannot use
        return DirectoryPage(records=records, cursor=cursor, more=len(rows) >= limit)

    # -- deals ----------------------------------------------------------------------------

    def deal_modules(self) -> Sequence[str]:
        return self.settings.deals.modules_or(DEAL_MODULE)

    async def pull_deals(self, module: str, cursor: str, limit: int) -> DealPage:
        """Up to ``limit`` opportunities changed after ``cursor``, deleted ones included, in
        (date_modified, id) order, each with its contacts and account."""
        if module != DEAL_MODULE:
            raise ConnectorError(f"{self.name}: no deals in module {module!r}")
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            rows, related = await self._entries_linked(
                module,
                keyset_where(module, cursor),
                _DEAL_FIELDS,
                timeout,
                limit=limit,
                order_by=PULL_ORDER,
                deleted=1,
                links=[(name, fields) for name, _, fields in _DEAL_LINKS],
            )
            wanted = {_value(r, "currency_id") for r in rows} - {SYSTEM_CURRENCY, ""}
            await self._currencies(wanted - set(self._iso), timeout)
        records = [self._deal(row, links) for row, links in zip(rows, related, strict=True)]
        if rows:
            cursor = f"{_value(rows[-1], 'date_modified')}|{rows[-1]['id']}"
            _parse_cursor(cursor)
        return DealPage(records=records, cursor=cursor, more=len(rows) >= limit)

    async def _currencies(self, ids: set[str], timeout: float) -> None:
        """Read the ISO code of these Currencies records once; one the CRM will not show
        stays "" (its opportunities then count in the system currency: ``amount_usdollar``)."""
        if not ids:
            return
        listed = ", ".join(sql_literal(i) for i in sorted(ids))
        try:
            rows = await self._entries(
                "Currencies", f"currencies.id IN ({listed})", ("id", "iso4217"), timeout,
                limit=len(ids),
            )  # fmt: skip
        except CrmRefused as e:
            log.warning(
                "crm %s: currencies %s not readable (%s); their opportunities count in the"
                " system currency (amount_usdollar)",
                self.name,
                ", ".join(sorted(ids)),
                e,
            )
            rows = []
        found = {str(r["id"]): decode(_value(r, "iso4217")).strip().upper() for r in rows}
        for i in ids:
            iso = found.get(i, "")
            self._iso[i] = iso if re.fullmatch(r"[A-Z]{3}", iso) else ""

    def _deal(self, row: dict[str, Any], links: dict[str, list[dict[str, Any]]]) -> DealRecord:
        def v(key: str) -> str:
            return decode(_value(row, key))

        rid = str(row["id"])
        parties: list[DealParty] = []
        for link, module, _ in _DEAL_LINKS:
            for rec in links.get(link, []):
                pid = _link_value(rec, "id")
                if not pid:
                    continue
                if module == "Accounts":
                    name = _link_value(rec, "name")
                else:
                    name = f"{_link_value(rec, 'first_name')} {_link_value(rec, 'last_name')}"
                parties.append(
                    DealParty(
                        module=module,
                        record_id=pid,
                        kind=_KIND[module],
                        name=name.strip(),
                        emails=tuple(e for e in (_link_value(rec, "email1").strip(),) if e),
                        phones=tuple(
                            p
                            for p in (_link_value(rec, f) for f in PHONE_FIELDS[module])
                            if p.strip()
                        ),
                    )
                )
        currency_id = v("currency_id")
        amount = deal_amount(v("amount"))
        currency = ""
        if currency_id not in ("", SYSTEM_CURRENCY):
            currency = self._iso.get(currency_id, "")
            if not currency:  # unreadable currency: the amount SuiteCRM keeps in the system's
                amount = deal_amount(v("amount_usdollar"))
        return DealRecord(
            module=DEAL_MODULE,
            record_id=rid,
            title=v("name"),
            stage=pipeline_stage(v("sales_stage")),
            amount=amount,
            currency=currency,
            closed_on=_day(v("date_closed")),
            created_at=_epoch(v("date_entered")),
            owner=self._owner_of.get(v("assigned_user_id")),
            parties=tuple(parties),
            deleted=v("deleted") == "1",
        )

    # -- call log -------------------------------------------------------------------------

    async def _write(self, call: FinishedCall, timeout: float) -> None:
        earlier = await self._entries(
            "Calls",
            f"calls.description LIKE {sql_literal('%' + call.marker + '%')}",
            ("id",),
            timeout,
            limit=1,
        )
        if earlier:
            log.info("crm %s: call %r already written as %s", self.name, call.id, earlier[0]["id"])
            return
        parent = await self._parent(call.customer, timeout)
        hours, minutes = split_duration(call.duration_seconds)
        values: dict[str, str] = {
            "name": call.subject[:50],  # calls.name is varchar(50)
            "direction": "Outbound" if call.direction == "outbound" else "Inbound",
            "status": "Held" if call.answered else "Not Held",
            # UTC in the DB format: SuiteCRM stores it as sent, whatever the API user's zone
            "date_start": call.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            "duration_hours": str(hours),
            "duration_minutes": str(minutes),
            "description": call.description(),
        }
        user = self.settings.users.get(call.agent) or self.settings.default_user_id or self._user_id
        if user:
            values["assigned_user_id"] = user
        module = parent.extra.get("module", "") if parent else ""
        if parent is not None and parent.person_id and module in PHONE_FIELDS:
            values["parent_type"] = module
            values["parent_id"] = parent.person_id
        result = await self._api(
            "set_entry",
            {
                "module_name": "Calls",
                "name_value_list": [{"name": k, "value": v} for k, v in values.items()],
            },
            timeout,
        )
        call_id = result.get("id") if isinstance(result, dict) else None
        if not isinstance(call_id, str) or not call_id or call_id == "-1":
            raise RecordRejected(f"{self._http.host}: set_entry stored no call for {call.id!r}")
        if parent is not None and parent.person_id and module in _LINK:
            # answers created=1 even for an id that does not exist: nothing to check here
            await self._api(
                "set_relationship",
                {
                    "module_name": "Calls",
                    "module_id": call_id,
                    "link_field_name": _LINK[module],
                    "related_ids": [parent.person_id],
                    "name_value_list": [],
                    "delete": 0,
                },
                timeout,
            )
