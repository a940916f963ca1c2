"""vTiger CRM 7/8 through its web service API (``<url>/webservice.php``).

Login is a challenge: ``GET operation=getchallenge&username=`` gives a token (valid five
minutes), then ``POST operation=login`` with ``accessKey = md5(token + user's access key)``
gives a ``sessionName`` sent with every later call. Answers are
``{"success": true, "result": ...}`` or ``{"success": false, "error": {"code", "message"}}``;
the session codes (INVALID_SESSIONID, SESSION_EXPIRED, SESSION_LEFT_IDLE,
AUTHENTICATION_REQUIRED) make us log in again once and retry.

Lookups use the query language (``select ... from Contacts where phone in (...) or ...;``,
GET ``operation=query``): only query-safe number spellings and our marker go into it. Calls
are logged as Calendar events of type "Call" (module ``Events``), which show in the contact's
or lead's Activities; the PBXManager module is left to vTiger's own Asterisk connector.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.base import RecordRejected, SessionExpired
from connectors.callrecord import FinishedCall, split_duration
from connectors.http_base import SessionCrmConnector, first_found
from connectors.numbers import last_digits, spellings
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
_SELECT = {
    "Contacts": "id, firstname, lastname, account_id, assigned_user_id",
    "Leads": "id, firstname, lastname, company, leadstatus, assigned_user_id",
    "Accounts": "id, accountname, assigned_user_id",
}
_KIND = {"Contacts": PersonKind.CONTACT, "Leads": PersonKind.LEAD, "Accounts": PersonKind.ACCOUNT}
SESSION_CODES = frozenset(
    {"INVALID_SESSIONID", "SESSION_EXPIRED", "SESSION_LEFT_IDLE", "AUTHENTICATION_REQUIRED"}
)


def vtql_literal(value: str) -> str:
    """A quoted VTQL value; backslashes and quotes escaped (values here never hold any)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def phone_query(module: str, e164: str, raw: str, match_last: int) -> str:
    """The VTQL statement finding ``module`` records with the number in any phone field."""
    values = spellings(e164, raw)
    if not values:
        return ""
    listed = ", ".join(vtql_literal(v) for v in values)
    conds = [f"{f} in ({listed})" for f in PHONE_FIELDS[module]]
    suffix = last_digits(e164, match_last)
    if suffix:
        conds += [f"{f} like {vtql_literal('%' + suffix)}" for f in PHONE_FIELDS[module]]
    # VTQL has no parentheses and evaluates left to right: a chain of 'or' only
    return f"select {_SELECT[module]} from {module} where {' or '.join(conds)} limit 5;"


def _numeric(ws_id: str) -> str:
    return ws_id.partition("x")[2] or ws_id


class VtigerConnector(SessionCrmConnector[VtigerSettings, str]):
    """Looks callers up in Contacts, Leads and Accounts; logs calls as "Call" events."""

    API_PATH = "/webservice.php"

    def _setup(self) -> None:
        super()._setup()
        self._user_id = ""
        self._tz = ZoneInfo(self.settings.timezone)

    # -- protocol -------------------------------------------------------------------------

    def _result(self, doc: Any, operation: str) -> Any:
        if not isinstance(doc, dict):
            raise ConnectorError(f"{self._http.host}: {operation} answered an unexpected shape")
        if doc.get("success") is True:
            return doc.get("result")
        raw_err = doc.get("error")
        err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
        code = str(err.get("code", "UNKNOWN"))
        if code in SESSION_CODES:
            raise SessionExpired(f"{self._http.host}: {code}")
        if code in ("INVALID_USER_CREDENTIALS", "ACCESSKEY_UNDEFINED"):
            raise LoginRefused(
                f"{self._http.host}: login refused ({code}) for user {self.settings.username!r}; "
                "check username and access key"
            )
        if code == "MANDATORY_FIELDS_MISSING":
            raise RecordRejected(f"{self._http.host}: {operation}: {code}: {err.get('message')}")
        raise ConnectorError(f"{self._http.host}: {operation} failed: {code}")

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
        log.info("crm %s: logged in to %s", self.name, self._http.host)
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

    # -- lookup ---------------------------------------------------------------------------

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        s = self.settings
        modules = [m for m in s.modules if phone_query(m, e164, raw, 0)]
        hit = await first_found(
            modules, lambda m: self._query(phone_query(m, e164, raw, s.match_last_digits), timeout)
        )
        return None if hit is None else await self._card(e164, *hit, timeout)

    async def _card(
        self, e164: str, module: str, row: dict[str, Any], timeout: float
    ) -> CallerCard:
        def v(key: str) -> str:
            return str(row.get(key) or "")

        rid = v("id")
        company, account = "", None
        if module == "Accounts":
            name = company = v("accountname")
            account = rid
        else:
            name = f"{v('firstname')} {v('lastname')}".strip()
            company = v("company")
            account = v("account_id") or None
            if account and module == "Contacts":
                accounts = await self._query(
                    f"select accountname from Accounts where id = {vtql_literal(account)};",
                    timeout,
                )  # ids look like 11x5: query-safe, quoted anyway
                company = str(accounts[0].get("accountname") or "") if accounts else ""
        owner_id = v("assigned_user_id")
        return CallerCard(
            number=e164,
            kind=_KIND[module],
            display_name=name,
            company=company,
            person_id=rid,
            account_id=account,
            owner=self._owner_of.get(owner_id),
            lead_status=v("leadstatus") or None,
            source=self.name,
            external_url=f"{self._http.base_url}/index.php?module={module}&view=Detail"
            f"&record={_numeric(rid)}",
            extra={"module": module},
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
        parent = await self._find(call.customer, call.customer, timeout)
        start = call.started_at.astimezone(self._tz)
        end = start + timedelta(seconds=call.duration_seconds)
        hours, minutes = split_duration(call.duration_seconds)
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
        if parent is not None and parent.person_id:
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
