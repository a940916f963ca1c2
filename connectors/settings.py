"""Config structs for each CRM connector (the ``connectors:`` list, tagged by ``type``).

Types alone cannot say that a URL is a URL or that a field mapping points somewhere, so each
struct checks itself in ``__post_init__``; msgspec turns the ``ValueError`` into a validation
error at ``connectors[i]`` and ``gateway.config`` into a ``ConfigError`` naming that entry.
Messages start with the offending key and never echo a secret.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token
_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_CARD_KEYS = frozenset(
    {
        "display_name",
        "company",
        "person_id",
        "account_id",
        "owner",
        "lead_status",
        "lead_score",
        "kind",
        "external_url",
    }
)


def _check_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{key}: expected an http(s) URL such as https://crm.example.com, found {value!r}"
        )


def _check_common(s: Any) -> None:
    if not _NAME.fullmatch(s.name):
        raise ValueError(f"name: expected letters, digits, '_', '.', '-', found {s.name!r}")
    if not 0 < s.timeout_ms <= 60_000:
        raise ValueError(f"timeout_ms: expected 1-60000, found {s.timeout_ms}")
    if not 0 < s.write_timeout_ms <= 600_000:
        raise ValueError(f"write_timeout_ms: expected 1-600000, found {s.write_timeout_ms}")
    if s.match_last_digits and not 6 <= s.match_last_digits <= 15:
        raise ValueError(
            f"match_last_digits: expected 0 (off) or 6-15, found {s.match_last_digits}"
        )


def _check_secret(key: str, value: str) -> None:
    if not value:
        raise ValueError(f"{key}: required; set it, e.g. {key}: ${{CRM_SECRET}}")


class DirectorySettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the caller directory is pulled from this CRM (``gateway/directory/``)."""

    enabled: bool = True  # keep a local copy of the CRM's phone numbers for instant lookups
    interval_s: int = 300  # incremental pull of what changed, every N seconds
    full_every_s: int = 86_400  # a full pass (notices deletions the CRM cannot report)
    page_size: int = 200  # records per request

    def __post_init__(self) -> None:
        if not 10 <= self.interval_s <= 86_400:
            raise ValueError(f"interval_s: expected 10-86400, found {self.interval_s}")
        if not 600 <= self.full_every_s <= 30 * 86_400:
            raise ValueError(f"full_every_s: expected 600-2592000, found {self.full_every_s}")
        if not 10 <= self.page_size <= 1000:
            raise ValueError(f"page_size: expected 10-1000, found {self.page_size}")


class DealSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Whether the CRM's deals are pulled into the store (``docs/connectors/deals.md``).

    Off unless enabled: reading a CRM's sales pipeline is a decision of its own (the API user
    may not even be allowed to), and a CRM without deals would only log refusals. When on,
    deals follow the ``directory:`` schedule (``interval_s``, ``full_every_s``, ``page_size``),
    right after the phone book, so their customers are already known."""

    enabled: bool = False
    modules: list[str] = msgspec.field(default_factory=list)  # [] = the CRM's usual one
    currency: str = "EUR"  # ISO 4217 of amounts the CRM keeps in its own base currency

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.currency):
            raise ValueError(
                f"currency: expected an ISO 4217 code such as EUR, found {self.currency!r}"
            )

    def check(self, allowed: tuple[str, ...]) -> None:
        """Raise when a module is not one this CRM's connector reads deals from."""
        for m in self.modules:
            if m not in allowed:
                raise ValueError(f"deals.modules: expected {' or '.join(allowed)}, found {m!r}")

    def modules_or(self, default: str) -> list[str]:
        return list(self.modules) or [default]


class _ConnectorBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    timeout_ms: int = 1500  # one lookup, login included; the lookup budget may cut it sooner
    write_timeout_ms: int = 15_000  # one call write-back (several requests)
    match_last_digits: int = 9  # also match numbers ending in these many digits; 0 = off
    users: dict[str, str] = msgspec.field(default_factory=dict)  # agent/extension -> CRM user
    verify_tls: bool = True
    directory: DirectorySettings = msgspec.field(default_factory=DirectorySettings)
    deals: DealSettings = msgspec.field(default_factory=DealSettings)


class SugarCrmSettings(_ConnectorBase, tag_field="type", tag="sugarcrm"):
    """SugarCRM 6.x CE over its legacy REST API v4_1."""

    url: str  # the CRM's base URL; the API is at <url>/service/v4_1/rest.php
    username: str
    password: str = ""  # plain; sent as its MD5 as the API requires
    modules: list[str] = msgspec.field(default_factory=lambda: ["Contacts", "Leads", "Accounts"])
    default_user_id: str = ""  # assigned user when the agent has no mapping; "" = API user

    def __post_init__(self) -> None:
        _check_common(self)
        _check_url("url", self.url)
        _check_secret("password", self.password)
        for m in self.modules:
            if m not in ("Contacts", "Leads", "Accounts"):
                raise ValueError(f"modules: expected Contacts, Leads or Accounts, found {m!r}")
        self.deals.check(("Opportunities",))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self.url!r})"


class SuiteCrmSettings(SugarCrmSettings, tag="suitecrm"):
    """SuiteCRM 7, which keeps SugarCRM's REST API v4_1 unchanged."""


class VtigerSettings(_ConnectorBase, tag_field="type", tag="vtiger"):
    """vTiger 7/8 over its web service API (webservice.php)."""

    url: str  # base URL; the API is at <url>/webservice.php
    username: str
    access_key: str = ""  # My Preferences > Access Key of that user
    modules: list[str] = msgspec.field(default_factory=lambda: ["Contacts", "Leads", "Accounts"])
    # ignored (a warning at start): vTiger stores event times exactly as sent, so they are
    # sent in UTC whatever the API user's zone; still accepted so older configs keep working
    timezone: str = ""
    default_user_id: str = ""  # e.g. 19x1; "" = API user

    def __post_init__(self) -> None:
        _check_common(self)
        _check_url("url", self.url)
        _check_secret("access_key", self.access_key)
        for m in self.modules:
            if m not in ("Contacts", "Leads", "Accounts"):
                raise ValueError(f"modules: expected Contacts, Leads or Accounts, found {m!r}")
        self.deals.check(("Potentials",))
        if self.timezone:  # ignored, but a typo is still a mistake worth naming
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as e:
                raise ValueError(
                    "timezone: expected an IANA zone such as Europe/Madrid (or better, no "
                    f"timezone key: it is ignored, times are sent in UTC), found {self.timezone!r}"
                ) from e
        for agent, uid in self.users.items():
            if not re.fullmatch(r"\d+x\d+", uid):
                raise ValueError(
                    f"users.{agent}: expected a vTiger user id like 19x5, found {uid!r}"
                )
        if self.default_user_id and not re.fullmatch(r"\d+x\d+", self.default_user_id):
            raise ValueError(
                "default_user_id: expected a vTiger user id like 19x1, "
                f"found {self.default_user_id!r}"
            )

    def __repr__(self) -> str:
        return f"VtigerSettings(name={self.name!r}, url={self.url!r})"


class OdooSettings(_ConnectorBase, tag_field="type", tag="odoo"):
    """Odoo 16-18 over JSON-RPC (/jsonrpc)."""

    url: str
    database: str
    username: str  # the login of the API user
    password: str = ""  # an API key (Preferences > Account Security) or the password
    models: list[str] = msgspec.field(default_factory=lambda: ["res.partner", "crm.lead"])

    def __post_init__(self) -> None:
        _check_common(self)
        _check_url("url", self.url)
        _check_secret("password", self.password)
        if not self.database:
            raise ValueError("database: required; the Odoo database name")
        for m in self.models:
            if m not in ("res.partner", "crm.lead"):
                raise ValueError(f"models: expected res.partner or crm.lead, found {m!r}")
        self.deals.check(("sale.order", "crm.lead"))
        for agent, uid in self.users.items():
            if not uid.isdigit():
                raise ValueError(f"users.{agent}: expected an Odoo user id (digits), found {uid!r}")

    def __repr__(self) -> str:
        return f"OdooSettings(name={self.name!r}, url={self.url!r}, database={self.database!r})"


class GenericHttpSettings(_ConnectorBase, tag_field="type", tag="generic_http"):
    """Any CRM with a lookup URL returning JSON and an endpoint taking call records."""

    lookup_url: str = ""  # template; {e164}, {digits}, {national}, {raw} are URL-encoded
    log_url: str = ""  # POST target for finished calls; "" = no write-back
    headers: dict[str, str] = msgspec.field(default_factory=dict)  # e.g. Authorization
    fields: dict[str, str] = msgspec.field(default_factory=dict)  # card key -> dotted JSON path
    results_path: str = ""  # dotted path to a list of matches; "" = the body is the match
    hmac_secret: str = ""  # signs log_url bodies: X-Centralita-Signature: sha256=<hex>

    def __post_init__(self) -> None:
        _check_common(self)
        if self.deals.enabled:
            raise ValueError("deals.enabled: a generic_http connector cannot read deals; remove it")
        if not self.lookup_url and not self.log_url:
            raise ValueError("lookup_url: expected lookup_url, log_url or both, found neither")
        if self.lookup_url:
            _check_url("lookup_url", self.lookup_url)
            try:
                self.lookup_url.format(e164="", digits="", national="", raw="")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(
                    f"lookup_url: expected placeholders among {{e164}}, {{digits}}, {{national}}, "
                    f"{{raw}}, found {self.lookup_url!r} ({e!r})"
                ) from e
            if "display_name" not in self.fields:
                raise ValueError(
                    "fields.display_name: required with lookup_url; the dotted path to the "
                    "caller's name in the JSON answer, e.g. data.name"
                )
        if self.log_url:
            _check_url("log_url", self.log_url)
        for key, path in self.fields.items():
            if key not in _CARD_KEYS:
                raise ValueError(
                    f"fields.{key}: expected one of {', '.join(sorted(_CARD_KEYS))}, found {key!r}"
                )
            if not _PATH.fullmatch(path):
                raise ValueError(
                    f"fields.{key}: expected a dotted path like data.name, found {path!r}"
                )
        if self.results_path and not _PATH.fullmatch(self.results_path):
            raise ValueError(f"results_path: expected a dotted path, found {self.results_path!r}")
        for h in self.headers:
            if not _HEADER.fullmatch(h):
                raise ValueError(f"headers: expected HTTP header names, found {h!r}")

    def __repr__(self) -> str:
        return f"GenericHttpSettings(name={self.name!r}, lookup_url={self.lookup_url!r})"


# union of every connector's settings; msgspec picks the struct by the ``type`` key
ConnectorSettings = (
    SugarCrmSettings | SuiteCrmSettings | VtigerSettings | OdooSettings | GenericHttpSettings
)
