"""SugarCRM 6.x CE and SuiteCRM 7 through their shared legacy REST API v4_1.

Every call is a form POST to ``<url>/service/v4_1/rest.php`` with ``method``,
``input_type=JSON``, ``response_type=JSON`` and ``rest_data`` (a JSON object whose *order* of
keys is the order of the PHP method's arguments: the server splats it positionally). Errors
come back as HTTP 200 with ``{"name", "number", "description"}``; number 11 is
"Invalid Session ID", after which we log in again once and retry.

``get_entry_list`` takes a raw SQL ``query`` fragment pasted after ``WHERE``. Only number
spellings made of digits, ``+``, space, ``-`` and parentheses (``connectors.numbers``) and our
own marker tag ever go into it, quoted by ``sql_literal`` all the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from connectors.base import RecordRejected, SessionExpired
from connectors.callrecord import FinishedCall, split_duration
from connectors.http_base import SessionCrmConnector, first_found
from connectors.numbers import last_digits, spellings
from connectors.settings import SugarCrmSettings
from connectors.transport import LoginRefused
from gateway.errors import ConnectorError
from gateway.lookup.card import CallerCard, PersonKind

log = logging.getLogger("gateway.connectors.sugarcrm")

PHONE_FIELDS = {
    "Contacts": ("phone_work", "phone_mobile", "phone_home", "phone_other", "phone_fax"),
    "Leads": ("phone_work", "phone_mobile", "phone_home", "phone_other", "phone_fax"),
    "Accounts": ("phone_office", "phone_alternate", "phone_fax"),
}
_SELECT = {
    "Contacts": (
        "id",
        "first_name",
        "last_name",
        "account_name",
        "account_id",
        "assigned_user_id",
        "assigned_user_name",
    ),
    "Leads": (
        "id",
        "first_name",
        "last_name",
        "account_name",
        "status",
        "assigned_user_id",
        "assigned_user_name",
    ),
    "Accounts": ("id", "name", "assigned_user_id", "assigned_user_name"),
}
_KIND = {"Contacts": PersonKind.CONTACT, "Leads": PersonKind.LEAD, "Accounts": PersonKind.ACCOUNT}
_LINK = {"Contacts": "contacts", "Leads": "leads"}  # Calls' relationship link fields
_INVALID_SESSION = 11
_INVALID_LOGIN = 10


def sql_literal(value: str) -> str:
    """A MySQL string literal: backslashes and quotes escaped (both are escape characters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def phone_where(module: str, e164: str, raw: str, match_last: int) -> str:
    """The ``query`` fragment matching any phone field of ``module`` against the number."""
    table = module.lower()
    values = spellings(e164, raw)
    suffix = last_digits(e164, match_last)
    if not values:
        return ""
    listed = ", ".join(sql_literal(v) for v in values)
    parts = [f"{table}.{f} IN ({listed})" for f in PHONE_FIELDS[module]]
    if suffix:
        parts += [f"{table}.{f} LIKE {sql_literal('%' + suffix)}" for f in PHONE_FIELDS[module]]
    return "(" + " OR ".join(parts) + ")"


def _value(entry: dict[str, Any], key: str) -> str:
    nvl = entry.get("name_value_list") or {}
    item = nvl.get(key) if isinstance(nvl, dict) else None
    v = item.get("value") if isinstance(item, dict) else None
    return "" if v is None else str(v)


class SugarCrmConnector(SessionCrmConnector[SugarCrmSettings, str]):
    """Looks callers up in Contacts, Leads and Accounts and logs calls in Calls."""

    API_PATH = "/service/v4_1/rest.php"

    def _setup(self) -> None:
        super()._setup()
        self._user_id = ""

    # -- protocol -------------------------------------------------------------------------

    async def _post(self, method: str, rest_data: dict[str, Any], timeout: float) -> Any:
        form = {
            "method": method,
            "input_type": "JSON",
            "response_type": "JSON",
            "rest_data": json.dumps(rest_data),
        }
        result = await self._http.request_json("POST", self._endpoint, data=form, timeout=timeout)
        if isinstance(result, dict) and {"name", "number", "description"} <= result.keys():
            number = result.get("number")
            if number == _INVALID_SESSION:
                raise SessionExpired(f"{self._http.host}: session expired")
            if number == _INVALID_LOGIN:
                raise LoginRefused(
                    f"{self._http.host}: login refused for user {self.settings.username!r}; "
                    "check username and password"
                )
            raise ConnectorError(f"{self._http.host}: {method} failed: {result.get('name')!r}")
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
        self, module: str, query: str, fields: tuple[str, ...], timeout: float, limit: int = 5
    ) -> list[dict[str, Any]]:
        result = await self._api(
            "get_entry_list",
            {
                "module_name": module,
                "query": query,
                "order_by": "",
                "offset": 0,
                "select_fields": list(fields),
                "link_name_to_fields_array": [],
                "max_results": limit,
                "deleted": 0,
                "favorites": False,
            },
            timeout,
        )
        entries = result.get("entry_list") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise ConnectorError(f"{self._http.host}: get_entry_list answered no entry_list")
        return [e for e in entries if isinstance(e, dict) and e.get("id")]

    # -- lookup ---------------------------------------------------------------------------

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        s = self.settings
        modules = [m for m in s.modules if phone_where(m, e164, raw, 0)]
        hit = await first_found(
            modules,
            lambda m: self._entries(
                m, phone_where(m, e164, raw, s.match_last_digits), _SELECT[m], timeout
            ),
        )
        return None if hit is None else self._card(e164, *hit)

    def _card(self, e164: str, module: str, entry: dict[str, Any]) -> CallerCard:
        rid = str(entry["id"])
        account: str | None
        if module == "Accounts":
            name, company, account = _value(entry, "name"), _value(entry, "name"), rid
        else:
            name = f"{_value(entry, 'first_name')} {_value(entry, 'last_name')}".strip()
            company, account = _value(entry, "account_name"), _value(entry, "account_id") or None
        owner_id = _value(entry, "assigned_user_id")
        return CallerCard(
            number=e164,
            kind=_KIND[module],
            display_name=name,
            company=company,
            person_id=rid,
            account_id=account,
            owner=self._owner_of.get(owner_id) or _value(entry, "assigned_user_name") or None,
            lead_status=_value(entry, "status") or None if module == "Leads" else None,
            source=self.name,
            external_url=f"{self._http.base_url}/index.php?module={module}&action=DetailView"
            f"&record={rid}",
            extra={"module": module},
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
        parent = await self._find(call.customer, call.customer, timeout)
        hours, minutes = split_duration(call.duration_seconds)
        values: dict[str, str] = {
            "name": call.subject[:50],  # calls.name is varchar(50)
            "direction": "Outbound" if call.direction == "outbound" else "Inbound",
            "status": "Held" if call.answered else "Not Held",
            "date_start": call.started_at.strftime("%Y-%m-%d %H:%M:%S"),  # UTC, DB format
            "duration_hours": str(hours),
            "duration_minutes": str(minutes),
            "description": call.description(),
        }
        user = self.settings.users.get(call.agent) or self.settings.default_user_id or self._user_id
        if user:
            values["assigned_user_id"] = user
        module = parent.extra.get("module", "") if parent else ""
        if parent is not None and parent.person_id:
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
