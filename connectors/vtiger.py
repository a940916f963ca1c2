"""vTiger CRM 7/8 through its web service API (``<url>/webservice.php``).

Login is a challenge: ``GET operation=getchallenge&username=`` gives a token (valid five
minutes), then ``POST operation=login`` with ``accessKey = md5(token + user's access key)``
gives a ``sessionName`` sent with every later call. Answers are
``{"success": true, "result": ...}`` or ``{"success": false, "error": {"code", "message"}}``;
the session codes (INVALID_SESSIONID, SESSION_EXPIRED, SESSION_LEFT_IDLE,
AUTHENTICATION_REQUIRED) make us log in again once and retry. vTiger 8.0.0 refuses an unknown
user already at ``getchallenge`` with ACCESS_DENIED, and a wrong access key at ``login`` with
INVALID_USER_CREDENTIALS: both are a refused login (held back by the login gate). Any other
``success: false`` is the CRM refusing the request (``CrmRefused``); HTTP errors, timeouts and
answers that are not JSON are outages (plain ``ConnectorError``).

Lookups use the query language (GET ``operation=query``). vTiger stores phone numbers exactly
as typed (``+34 911 234 567``, ``0034911234568``, ``+1 (212) 555-0100``), so a lookup asks for
every phone field ``like '%9%1%1%2%3%4%5%6%7'`` (the digits in order, anything between) and
keeps only the rows where a phone field really is the number (``same_number``). VTQL has no
grouping parentheses: the conditions are a chain of ``or`` only. At most 100 rows come back
per query, whatever the ``limit`` says.

Calls are logged as Calendar events of type "Call" (module ``Events``), which show in the
contact's or lead's Activities; the PBXManager module is left to vTiger's own Asterisk
connector. Event times are sent in UTC: vTiger 8.0.0 stores and returns them exactly as sent,
whatever the API user's time zone (recorded, ``tests/data/crm-traces/vtiger-8.0.0/065-072``).

The caller directory pulls each module ordered by ``(modifiedtime, id)``; see ``pull``.
Deals are ``Potentials`` pulled the same way (``pull_deals``): ``sales_stage`` "Closed
Won"/"Closed Lost" decide won and lost, ``related_to`` is the organization and ``contact_id``
the contact, whose e-mail addresses and numbers are read with one more query per 100.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
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
from connectors.numbers import (
    digit_pattern,
    digits_only,
    last_digits,
    national_digits,
    same_number,
    spellings,
)
from connectors.settings import VtigerSettings
from connectors.transport import LoginRefused
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

log = logging.getLogger("gateway.connectors.vtiger")

PHONE_FIELDS = {
    "Contacts": ("phone", "mobile", "homephone", "otherphone", "fax", "assistantphone"),
    "Leads": ("phone", "mobile", "fax"),
    "Accounts": ("phone", "otherphone", "fax"),
}
_FIELDS = {
    "Contacts": ("id", "firstname", "lastname", "account_id", "assigned_user_id"),
    "Leads": ("id", "firstname", "lastname", "company", "leadstatus", "assigned_user_id"),
    "Accounts": ("id", "accountname", "assigned_user_id"),
}
# what lookups and the directory pull both read: one record builder for both
_SELECT = {
    m: ", ".join((*fields, *PHONE_FIELDS[m], "modifiedtime")) for m, fields in _FIELDS.items()
}
_KIND = {"Contacts": PersonKind.CONTACT, "Leads": PersonKind.LEAD, "Accounts": PersonKind.ACCOUNT}
SESSION_CODES = frozenset(
    {"INVALID_SESSIONID", "SESSION_EXPIRED", "SESSION_LEFT_IDLE", "AUTHENTICATION_REQUIRED"}
)
LOGIN_CODES = frozenset({"INVALID_USER_CREDENTIALS", "ACCESSKEY_UNDEFINED"})
RECORD_CODES = frozenset({"MANDATORY_FIELDS_MISSING"})  # this record itself is refused
QUERY_ROWS = 100  # vTiger caps every query answer at 100 rows
LOOKUP_ROWS = 20  # candidates per module: the wildcard may match other numbers too
_WS_ID = re.compile(r"\d+x\d+")
DEAL_MODULE = "Potentials"
# closingdate is a day; amount is in the CRM's base currency (deals.currency); stock vTiger
# keeps no product or lost reason on a potential
_DEAL_SELECT = (
    "id, potentialname, amount, sales_stage, closingdate, related_to, contact_id,"
    " assigned_user_id, createdtime, modifiedtime"
)
_PARTY_MODULE = {"12": "Contacts", "11": "Accounts"}  # webservice id prefix -> module
_PARTY_FIELDS = {  # (e-mail fields, name fields)
    "Contacts": (("email", "secondaryemail"), ("firstname", "lastname")),
    "Accounts": (("email1", "email2"), ("accountname",)),
}
_E164 = re.compile(r"\+[1-9]\d{5,14}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def vtql_literal(value: str) -> str:
    """A quoted VTQL value; backslashes and quotes escaped (values here never hold any)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _wildcard(e164: str, match_last: int) -> str:
    """The digit-wildcard ``like`` pattern covering every stored form we accept: the national
    number's digits, or only the last ``match_last`` when that is fewer ("" unless ``e164``
    really is E.164: anything else is only looked for as spelled)."""
    if not _E164.fullmatch(e164):
        return ""
    suffix = last_digits(e164, match_last)
    if suffix and len(suffix) < len(national_digits(e164)):
        return "%" + "%".join(suffix)
    return digit_pattern(e164)


def phone_query(module: str, e164: str, raw: str, match_last: int) -> str:
    """The VTQL statement finding candidate ``module`` records with the number in any phone
    field ("" when the number is too short or too strange to look for)."""
    pattern = _wildcard(e164, match_last)
    if pattern:
        conds = [f"{f} like {vtql_literal(pattern)}" for f in PHONE_FIELDS[module]]
    else:  # a short number: the exact spellings only
        values = spellings(e164, raw)
        if not values:
            return ""
        listed = ", ".join(vtql_literal(v) for v in values)
        conds = [f"{f} in ({listed})" for f in PHONE_FIELDS[module]]
    # VTQL has no grouping parentheses: a chain of 'or' only
    return f"select {_SELECT[module]} from {module} where {' or '.join(conds)} limit {LOOKUP_ROWS};"


def is_number(typed: str, e164: str, raw: str, match_last: int) -> bool:
    """Whether a phone field as typed in the CRM is the number looked up."""
    if not typed.strip():
        return False
    if same_number(typed, e164):
        return True
    suffix = last_digits(e164, match_last)
    if suffix and digits_only(typed).endswith(suffix):
        return True
    return typed.strip() in spellings(e164, raw)


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _numeric(ws_id: str) -> str:
    return ws_id.partition("x")[2] or ws_id


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where a pull resumes: after the record ``last_id`` changed at ``modified``.

    Records are taken in (modifiedtime, id) order. Resuming asks first for the rest of the
    records changed at exactly ``modified`` (``id`` greater than ``last_id``), then for those
    changed later: thousands of records sharing one time are paged by id, never skipped nor
    taken twice, and a record changed meanwhile moves to a later time and is taken again."""

    modified: str = ""
    last_id: str = ""

    @classmethod
    def parse(cls, text: str) -> _Cursor:
        if not text:
            return cls()
        modified, sep, last_id = text.rpartition("|")
        if not sep or not _TIME.fullmatch(modified) or not _WS_ID.fullmatch(last_id):
            raise ValueError(f"vtiger directory cursor: expected 'time|id', found {text!r}")
        return cls(modified, last_id)

    def __str__(self) -> str:
        return f"{self.modified}|{self.last_id}" if self.modified else ""


class VtigerConnector(SessionCrmConnector[VtigerSettings, str]):
    """Looks callers up in Contacts, Leads and Accounts; logs calls as "Call" events; hands
    its phone book to the caller directory (``DirectorySource``)."""

    API_PATH = "/webservice.php"

    def _setup(self) -> None:
        super()._setup()
        self._user_id = ""

    async def start(self) -> None:
        if self.settings.timezone:
            log.warning(
                "crm %s: 'timezone: %s' is ignored: vTiger stores event times exactly as "
                "sent, so calls are written in UTC whatever the API user's time zone; "
                "remove the key (docs/connectors/vtiger.md)",
                self.name,
                self.settings.timezone,
            )
        await super().start()

    # -- protocol -------------------------------------------------------------------------

    def _result(self, doc: Any, operation: str) -> Any:
        if not isinstance(doc, dict):
            raise ConnectorError(f"{self._http.host}: {operation} answered an unexpected shape")
        if doc.get("success") is True:
            return doc.get("result")
        raw_err = doc.get("error")
        err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
        code = str(err.get("code", "UNKNOWN"))
        message = str(err.get("message", ""))[:200]
        if code in SESSION_CODES:
            raise SessionExpired(f"{self._http.host}: {code}")
        if code in LOGIN_CODES or (operation == "getchallenge" and code == "ACCESS_DENIED"):
            # vTiger 8 refuses an unknown user at getchallenge already ("username does not
            # exists"); elsewhere ACCESS_DENIED is a field or module we may not read
            raise LoginRefused(
                f"{self._http.host}: login refused ({code}: {message}) for user "
                f"{self.settings.username!r}; check username and access key"
            )
        if code in RECORD_CODES:
            raise RecordRejected(f"{self._http.host}: {operation}: {code}: {message}")
        raise CrmRefused(f"{self._http.host}: {operation} failed: {code}: {message}")

    async def _get(self, params: dict[str, str], timeout: float) -> Any:
        doc = await self._http.request_json("GET", self._endpoint, params=params, timeout=timeout)
        return self._result(doc, params["operation"])

    async def _post(self, form: dict[str, str], timeout: float) -> Any:
        doc = await self._http.request_json("POST", self._endpoint, data=form, timeout=timeout)
        return self._result(doc, form["operation"])

    async def _open_session(self, timeout: float) -> str:
        s = self.settings
        challenge = await self._get({"operation": "getchallenge", "username": s.username}, timeout)
        token = challenge.get("token") if isinstance(challenge, dict) else None
        if not isinstance(token, str):
            raise ConnectorError(f"{self._http.host}: getchallenge answered no token")
        key = hashlib.md5((token + s.access_key).encode()).hexdigest()
        result = await self._post(
            {"operation": "login", "username": s.username, "accessKey": key}, timeout
        )
        session = result.get("sessionName") if isinstance(result, dict) else None
        if not isinstance(session, str) or not session:
            raise ConnectorError(f"{self._http.host}: login answered no sessionName")
        self._user_id = str(result.get("userId") or "")
        # informative only: vTiger does not convert event times to this zone (we send UTC)
        log.info(
            "crm %s: logged in to %s (user time zone %s)",
            self.name,
            self._http.host,
            result.get("time_zone") or "?",
        )
        return session

    async def _call(self, method: str, args: dict[str, str], timeout: float) -> Any:
        """An operation with ``sessionName``, logging in (again, once) as needed."""
        send = self._get if method == "GET" else self._post
        return await self._with_session(
            lambda session: send({**args, "sessionName": session}, timeout), timeout
        )

    async def _query(self, statement: str, timeout: float) -> list[dict[str, Any]]:
        rows = await self._call("GET", {"operation": "query", "query": statement}, timeout)
        if not isinstance(rows, list):
            raise ConnectorError(f"{self._http.host}: query answered no list")
        return [r for r in rows if isinstance(r, dict)]

    # -- records --------------------------------------------------------------------------

    async def _account_names(self, ids: set[str], timeout: float) -> dict[str, str]:
        """Account id -> name, in one query per 100 accounts."""
        wanted = sorted(i for i in ids if _WS_ID.fullmatch(i))
        names: dict[str, str] = {}
        for at in range(0, len(wanted), QUERY_ROWS):
            chunk = wanted[at : at + QUERY_ROWS]
            listed = ", ".join(vtql_literal(i) for i in chunk)
            rows = await self._query(
                f"select id, accountname from Accounts where id in ({listed});", timeout
            )
            names.update({str(r.get("id")): str(r.get("accountname") or "") for r in rows})
        return names

    def _record(
        self, module: str, row: dict[str, Any], accounts: dict[str, str]
    ) -> DirectoryRecord:
        """A query row as the directory keeps it (and as a lookup's card is built from).
        vTiger answers values raw (only the computed ``label`` is HTML-encoded, and it is not
        read), so nothing is decoded."""

        def v(key: str) -> str:
            value = row.get(key)
            return "" if value is None else str(value)

        rid = v("id")
        if module == "Accounts":
            name = company = v("accountname")
            account: str | None = rid
        else:
            name = f"{v('firstname')} {v('lastname')}".strip()
            account = v("account_id") or None if module == "Contacts" else None
            company = accounts.get(account, "") if account else v("company")
        return DirectoryRecord(
            module=module,
            record_id=rid,
            kind=_KIND[module],
            display_name=name,
            company=company,
            account_id=account,
            owner=self._owner_of.get(v("assigned_user_id")),
            lead_status=(v("leadstatus") or None) if module == "Leads" else None,
            external_url=f"{self._http.base_url}/index.php?module={module}&view=Detail"
            f"&record={_numeric(rid)}",
            phones=tuple(v(f) for f in PHONE_FIELDS[module] if v(f).strip()),
        )

    async def _records(
        self, module: str, rows: list[dict[str, Any]], timeout: float
    ) -> list[DirectoryRecord]:
        accounts: dict[str, str] = {}
        if module == "Contacts":
            ids = {str(r.get("account_id") or "") for r in rows}
            accounts = await self._account_names(ids - {""}, timeout)
        return [self._record(module, r, accounts) for r in rows]

    # -- lookup ---------------------------------------------------------------------------

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        s = self.settings
        modules = [m for m in s.modules if phone_query(m, e164, raw, s.match_last_digits)]

        async def search(module: str) -> list[dict[str, Any]]:
            rows = await self._query(phone_query(module, e164, raw, s.match_last_digits), timeout)
            return [
                r
                for r in rows
                if any(
                    is_number(str(r.get(f) or ""), e164, raw, s.match_last_digits)
                    for f in PHONE_FIELDS[module]
                )
            ]

        hit = await first_found(modules, search)
        if hit is None:
            return None
        module, row = hit
        (record,) = await self._records(module, [row], timeout)
        return record.card(e164, self.name)

    # -- caller directory -----------------------------------------------------------------

    def directory_modules(self) -> Sequence[str]:
        return list(self.settings.modules)

    async def pull(self, module: str, cursor: str, limit: int) -> DirectoryPage:
        """Up to ``limit`` records of ``module`` changed after ``cursor``, oldest change
        first (``modifiedtime``, then id). vTiger cannot report deletions: the directory's
        periodic full pass (from cursor "") sweeps them."""
        if module not in self.settings.modules:
            raise ValueError(f"vtiger {self.name}: module {module!r} is not configured")
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            rows, at = await self._changed(module, _SELECT[module], cursor, limit, timeout)
            records = await self._records(module, rows, timeout)
        return DirectoryPage(records=records, cursor=str(at), more=len(rows) >= limit)

    async def _changed(
        self, module: str, select: str, cursor: str, limit: int, timeout: float
    ) -> tuple[list[dict[str, Any]], _Cursor]:
        """Up to ``limit`` rows of ``module`` changed after ``cursor`` in (modifiedtime, id)
        order, in queries of at most 100 rows, and the cursor after the last one."""
        at = _Cursor.parse(cursor)
        rows: list[dict[str, Any]] = []
        same_time_left = bool(at.last_id)  # records at at.modified after at.last_id?
        while len(rows) < limit:
            n = min(QUERY_ROWS, limit - len(rows))
            if same_time_left:
                where = (
                    f"where modifiedtime = {vtql_literal(at.modified)} "
                    f"and id > {vtql_literal(at.last_id)} "
                )
            elif at.modified:
                where = f"where modifiedtime > {vtql_literal(at.modified)} "
            else:
                where = ""
            batch = await self._query(
                f"select {select} from {module} {where}order by modifiedtime, id limit {n};",
                timeout,
            )
            rows += batch
            if batch:
                last = batch[-1]
                modified, rid = str(last.get("modifiedtime")), str(last.get("id"))
                if not _TIME.fullmatch(modified) or not _WS_ID.fullmatch(rid):
                    raise ConnectorError(
                        f"{self._http.host}: {module} row without modifiedtime or id"
                    )
                at = _Cursor(modified, rid)
            if len(batch) == n:
                same_time_left = True  # more may share the last row's time
            elif same_time_left:
                same_time_left = False  # that time is done: on to later ones
            else:
                break  # nothing changed later
        return rows, at

    # -- deals ----------------------------------------------------------------------------

    def deal_modules(self) -> Sequence[str]:
        return self.settings.deals.modules_or(DEAL_MODULE)

    async def pull_deals(self, module: str, cursor: str, limit: int) -> DealPage:
        """Up to ``limit`` potentials changed after ``cursor`` in (modifiedtime, id) order,
        each with its organization and contact (their e-mail addresses and numbers read in
        one query per 100). Deleted potentials are never answered: the full pass sweeps
        them."""
        if module != DEAL_MODULE:
            raise ConnectorError(f"{self.name}: no deals in module {module!r}")
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            rows, at = await self._changed(module, _DEAL_SELECT, cursor, limit, timeout)
            linked = {str(r.get(f) or "") for r in rows for f in ("related_to", "contact_id")}
            parties = await self._parties(linked - {""}, timeout)
        records = [self._deal(r, parties) for r in rows]
        return DealPage(records=records, cursor=str(at), more=len(rows) >= limit)

    async def _parties(self, ids: set[str], timeout: float) -> dict[str, DealParty]:
        """The contacts and organizations with these ids, as deal parties."""
        out: dict[str, DealParty] = {}
        by_module: dict[str, list[str]] = {}
        for i in sorted(ids):
            module = _PARTY_MODULE.get(i.partition("x")[0])
            if module is not None and _WS_ID.fullmatch(i):
                by_module.setdefault(module, []).append(i)
        for module, wanted in by_module.items():
            emails, names = _PARTY_FIELDS[module]
            select = ", ".join(("id", *names, *emails, *PHONE_FIELDS[module]))
            for at in range(0, len(wanted), QUERY_ROWS):
                listed = ", ".join(vtql_literal(i) for i in wanted[at : at + QUERY_ROWS])
                rows = await self._query(
                    f"select {select} from {module} where id in ({listed});", timeout
                )
                for r in rows:
                    texts = {k: _text(r, k) for k in ("id", *names, *emails, *PHONE_FIELDS[module])}
                    out[texts["id"]] = DealParty(
                        module=module,
                        record_id=texts["id"],
                        kind=_KIND[module],
                        name=" ".join(texts[n] for n in names if texts[n]),
                        emails=tuple(texts[e] for e in emails if texts[e]),
                        phones=tuple(texts[f] for f in PHONE_FIELDS[module] if texts[f]),
                    )
        return out

    def _deal(self, row: dict[str, Any], parties: dict[str, DealParty]) -> DealRecord:
        def v(key: str) -> str:
            return _text(row, key)

        linked: list[DealParty] = []
        # the contact first (the person who bought), then the organization
        for ref in sorted(
            {v("contact_id"), v("related_to")} - {""}, key=lambda i: not i.startswith("12x")
        ):
            module = _PARTY_MODULE.get(ref.partition("x")[0])
            if module is None:
                continue
            linked.append(parties.get(ref) or DealParty(module, ref, _KIND[module]))
        created = None
        if _TIME.fullmatch(v("createdtime")):
            created = datetime.strptime(v("createdtime"), "%Y-%m-%d %H:%M:%S")
        return DealRecord(
            module=DEAL_MODULE,
            record_id=v("id"),
            title=v("potentialname"),
            stage=pipeline_stage(v("sales_stage")),
            amount=deal_amount(v("amount")),
            closed_on=_date(v("closingdate")),
            created_at=created.replace(tzinfo=UTC).timestamp() if created else None,
            owner=self._owner_of.get(v("assigned_user_id")),
            parties=tuple(linked),
        )

    # -- call log -------------------------------------------------------------------------

    async def _write(self, call: FinishedCall, timeout: float) -> None:
        earlier = await self._query(
            "select id from Events where description like "
            f"{vtql_literal('%' + call.marker + '%')} limit 1;",
            timeout,
        )
        if earlier:
            log.info("crm %s: call %r already logged as %s", self.name, call.id, earlier[0]["id"])
            return
        parent = await self._parent(call.customer, timeout)
        # UTC, as recorded: vTiger stores event times as sent, whatever the user's zone
        start = call.started_at
        end = start + timedelta(seconds=call.duration_seconds)
        hours, minutes = split_duration(call.duration_seconds)  # vTiger recomputes these
        s = self.settings
        element: dict[str, str] = {
            "subject": call.subject,
            "activitytype": "Call",
            "eventstatus": "Held" if call.answered else "Not Held",
            "date_start": start.strftime("%Y-%m-%d"),
            "time_start": start.strftime("%H:%M:%S"),
            "due_date": end.strftime("%Y-%m-%d"),
            "time_end": end.strftime("%H:%M:%S"),
            "duration_hours": str(hours),
            "duration_minutes": str(minutes),
            "visibility": "Public",
            "description": call.description(),
            "assigned_user_id": s.users.get(call.agent) or s.default_user_id or self._user_id,
        }
        if parent is not None and parent.person_id and _WS_ID.fullmatch(parent.person_id):
            if parent.kind is PersonKind.CONTACT:
                element["contact_id"] = parent.person_id
            else:
                element["parent_id"] = parent.person_id
        created = await self._call(
            "POST",
            {"operation": "create", "elementType": "Events", "element": json.dumps(element)},
            timeout,
        )
        if not isinstance(created, dict) or not created.get("id"):
            raise ConnectorError(f"{self._http.host}: create answered no id")
