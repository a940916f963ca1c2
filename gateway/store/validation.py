"""Checks every field that reaches the store, from the API or a CSV row, with the same rules.

Each problem is a :class:`FieldError` naming the field (``phones[1].number``) and the reason,
so the API can answer 422 and the CSV import can report the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError, InvalidNumber
from gateway.lookup.numbers import normalize
from gateway.store.models import ContactType, LeadSource, LeadStatus, PersonType

MAX_TEXT = 200
MAX_LONG_TEXT = 10_000
MAX_ITEMS = 20  # numbers or e-mails per person
MAX_TAGS = 50  # tags per person
MAX_TAG = 60  # characters of one tag (as campaigns' segments take them)
_LANGUAGE = re.compile(r"[a-z]{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_REGION = re.compile(r"[A-Za-z]{2}")


class FieldError(GatewayError):
    """One field of an input is wrong; ``field`` is its path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PhoneIn:
    raw: str
    e164: str
    type: str
    do_not_call: bool = False


@dataclass(frozen=True, slots=True)
class EmailIn:
    email: str
    type: str
    opted_out: bool = False


@dataclass(slots=True)
class PersonIn:
    """A validated person input. ``columns`` holds only the fields given (for PATCH);
    ``phones``/``emails`` are None when not given."""

    columns: dict[str, Any] = field(default_factory=dict)
    phones: list[PhoneIn] | None = None
    emails: list[EmailIn] | None = None
    tags: list[str] | None = None


_TEXT_FIELDS = ("first_name", "last_name", "company", "title", "lost_reason")
_PERSON_FIELDS = frozenset(
    (
        *_TEXT_FIELDS,
        "name",
        "account_id",
        "owner",
        "status",
        "source",
        "score",
        "country",
        "do_not_call",
        "email_opt_out",
        "phones",
        "emails",
        "phone",
        "email",
        "language",
        "tags",
    )
)
_ACCOUNT_FIELDS = frozenset(("name", "domain", "country", "owner", "phones"))


def text(value: object, name: str, *, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(name, f"expected text, got {_kind(value)}")
    value = value.strip()
    if len(value) > limit:
        raise FieldError(name, f"too long ({len(value)} characters, at most {limit})")
    if "\x00" in value:
        raise FieldError(name, "contains a NUL character")
    return value


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "y",
        "0",
        "false",
        "no",
        "n",
        "",
    ):
        return value.strip().lower() in ("1", "true", "yes", "y")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise FieldError(name, f"expected true or false, got {value!r}"[:200])


def enum_value(value: Any, name: str, enum: type[Any]) -> str:
    allowed = [e.value for e in enum]
    if isinstance(value, str) and value.strip().lower() in allowed:
        return value.strip().lower()
    raise FieldError(name, f"expected one of {', '.join(allowed)}, got {value!r}"[:300])


def optional_int(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FieldError(name, "expected an id (integer), got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise FieldError(name, f"expected an id (integer), got {value!r}"[:200])


def score(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise FieldError(name, "expected a number from 0 to 10, got a boolean")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise FieldError(name, f"expected a number from 0 to 10, got {value!r}"[:200]) from None
    if not math.isfinite(f) or not 0 <= f <= 10:
        raise FieldError(name, f"expected a number from 0 to 10, got {value!r}"[:200])
    return f


# a date the panel can show: 1970 to the year 9999 (Unix seconds)
_LATEST_TIME = 253_402_300_799.0


def finite(value: Any, name: str) -> float:
    """A real number. NaN and ±Infinity (``1e999`` in JSON, ``inf`` in a CSV cell) are never
    stored: every card, lookup and list that carried one would be invalid JSON from then on."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(name, f"expected a number, got {_kind(value)}")
    try:
        f = float(value)
    except (ValueError, OverflowError):
        raise FieldError(name, f"expected a number, got {value!r}"[:200]) from None
    if not math.isfinite(f):
        raise FieldError(name, f"expected a finite number, got {value!r}"[:200])
    return f


def timestamp(value: Any, name: str) -> float:
    """A moment as Unix seconds (finite, from 1970 to the year 9999)."""
    f = finite(value, name)
    if not 0 <= f <= _LATEST_TIME:
        raise FieldError(name, f"expected a date as Unix seconds (1970 to 9999), got {value!r}")
    return f


def region(value: Any, name: str) -> str:
    v = text(value, name)
    if v and not _REGION.fullmatch(v):
        raise FieldError(name, f"expected a two-letter country code such as ES, got {v!r}")
    return v.upper()


def language(value: Any, name: str) -> str:
    """A two-letter ISO 639-1 code (``es``, ``en``), lower-cased; empty: from the country."""
    v = text(value, name, limit=8).lower()
    if v and not _LANGUAGE.fullmatch(v):
        raise FieldError(name, f"expected a two-letter language code such as es, got {v!r}")
    return v


def tags(value: Any, name: str) -> list[str]:
    """Tags as given (trimmed), each once, in order; a tag is 1 to 60 characters."""
    items = value if isinstance(value, list) else None
    if items is None:
        if value is None:
            return []
        raise FieldError(name, f"expected a list of tags, got {_kind(value)}")
    if len(items) > MAX_TAGS:
        raise FieldError(name, f"too many ({len(items)}, at most {MAX_TAGS})")
    out: list[str] = []
    for i, item in enumerate(items):
        tag = text(item, f"{name}[{i}]", limit=MAX_TAG)
        if not tag:
            raise FieldError(f"{name}[{i}]", "expected a tag, got an empty text")
        if tag not in out:
            out.append(tag)
    return out


def owner(value: Any, name: str) -> str | None:
    v = text(value, name, limit=64)
    return v or None


def phone(value: Any, name: str, default_region: str) -> PhoneIn:
    """A number as ``"+34 911..."`` or ``{"number", "type", "do_not_call", "region"}``."""
    if isinstance(value, str):
        value = {"number": value}
    if not isinstance(value, Mapping):
        raise FieldError(name, f"expected a number or an object, got {_kind(value)}")
    for key in value:
        if key not in ("number", "type", "do_not_call", "region", "raw", "e164", "id"):
            raise FieldError(f"{name}.{key}", "unknown field")
    raw = text(value.get("number", value.get("raw")), f"{name}.number", limit=64)
    if not raw:
        raise FieldError(f"{name}.number", "required")
    reg = region(value.get("region"), f"{name}.region") or default_region
    try:
        n = normalize(raw, reg)
    except InvalidNumber as e:
        raise FieldError(f"{name}.number", f"{raw!r}: {e}") from None
    typ = enum_value(value.get("type") or "work", f"{name}.type", ContactType)
    return PhoneIn(
        raw, n.e164, typ, boolean(value.get("do_not_call", False), f"{name}.do_not_call")
    )


def email(value: Any, name: str) -> EmailIn:
    if isinstance(value, str):
        value = {"email": value}
    if not isinstance(value, Mapping):
        raise FieldError(name, f"expected an address or an object, got {_kind(value)}")
    for key in value:
        if key not in ("email", "type", "opted_out", "id"):
            raise FieldError(f"{name}.{key}", "unknown field")
    addr = text(value.get("email"), f"{name}.email", limit=254)
    if not _EMAIL.fullmatch(addr):
        raise FieldError(f"{name}.email", f"not an e-mail address: {addr!r}")
    typ = enum_value(value.get("type") or "work", f"{name}.type", ContactType)
    return EmailIn(addr, typ, boolean(value.get("opted_out", False), f"{name}.opted_out"))


def person_input(data: Any, kind: PersonType, *, partial: bool, default_region: str) -> PersonIn:
    """Validate a contact or lead; ``partial`` for updates (only the given fields change)."""
    if not isinstance(data, Mapping):
        raise FieldError("body", f"expected a JSON object, got {_kind(data)}")
    for key in data:
        if key not in _PERSON_FIELDS:
            raise FieldError(str(key)[:64], "unknown field")
    out = PersonIn()
    c = out.columns
    for f in _TEXT_FIELDS:
        if f in data:
            c[f] = text(data[f], f)
    if "name" in data and "first_name" not in data and "last_name" not in data:
        first, _, last = text(data["name"], "name").partition(" ")
        c["first_name"], c["last_name"] = first, last.strip()
    if "account_id" in data:
        c["account_id"] = optional_int(data["account_id"], "account_id")
    if "owner" in data:
        c["owner"] = owner(data["owner"], "owner")
    if "country" in data:
        c["country"] = region(data["country"], "country")
    for f in ("do_not_call", "email_opt_out"):
        if f in data:
            c[f] = boolean(data[f], f)
    if "score" in data:
        c["score"] = score(data["score"], "score")
    if "language" in data:
        c["language"] = language(data["language"], "language")
    if "tags" in data:
        out.tags = tags(data["tags"], "tags")
    if kind is PersonType.LEAD:
        if "status" in data:
            c["status"] = enum_value(data["status"], "status", LeadStatus)
        if "source" in data:
            c["source"] = enum_value(data["source"], "source", LeadSource)
        explicit = not partial or "lost_reason" in c
        if c.get("status") == "lost" and not c.get("lost_reason") and explicit:
            raise FieldError("lost_reason", "required when status is lost")
    else:
        for f in ("status", "source", "lost_reason"):
            if data.get(f):
                raise FieldError(f, "only leads have this field; this is a contact")
        c.pop("lost_reason", None)
    reg = c.get("country") or default_region
    if "phones" in data or "phone" in data:
        items = _as_list(data.get("phones"), "phones") + (
            [data["phone"]] if data.get("phone") else []
        )
        out.phones = [phone(v, f"phones[{i}]", reg) for i, v in enumerate(items)]
    if "emails" in data or "email" in data:
        items = _as_list(data.get("emails"), "emails") + (
            [data["email"]] if data.get("email") else []
        )
        out.emails = [email(v, f"emails[{i}]") for i, v in enumerate(items)]
    if not partial:
        has_name = c.get("first_name") or c.get("last_name") or c.get("company")
        if not has_name and not out.phones and not out.emails:
            raise FieldError("name", "required: give a name, a company, a phone or an e-mail")
    return out


def account_input(
    data: Any, *, partial: bool, default_region: str
) -> tuple[dict[str, Any], list[PhoneIn] | None]:
    if not isinstance(data, Mapping):
        raise FieldError("body", f"expected a JSON object, got {_kind(data)}")
    for key in data:
        if key not in _ACCOUNT_FIELDS:
            raise FieldError(str(key)[:64], "unknown field")
    c: dict[str, Any] = {}
    if "name" in data or not partial:
        c["name"] = text(data.get("name"), "name")
        if not c["name"]:
            raise FieldError("name", "required")
    if "domain" in data:
        c["domain"] = text(data["domain"], "domain")
    if "country" in data:
        c["country"] = region(data["country"], "country")
    if "owner" in data:
        c["owner"] = owner(data["owner"], "owner")
    phones = None
    if "phones" in data:
        reg = c.get("country") or default_region
        items = _as_list(data["phones"], "phones")
        phones = [phone(v, f"phones[{i}]", reg) for i, v in enumerate(items)]
    return c, phones


def _as_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FieldError(name, f"expected a list, got {_kind(value)}")
    if len(value) > MAX_ITEMS:
        raise FieldError(name, f"too many ({len(value)}, at most {MAX_ITEMS})")
    return value


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)
