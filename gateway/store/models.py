"""Records of the embedded CRM: accounts, people (contacts and leads), numbers, activities."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from gateway.lookup.card import CallFacts

T = TypeVar("T")


class PersonType(StrEnum):
    CONTACT = "contact"
    LEAD = "lead"


class LeadStatus(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    NURTURING = "nurturing"
    WON = "won"
    LOST = "lost"


class LeadSource(StrEnum):
    WEB_FORM = "web_form"
    INBOUND_CALL = "inbound_call"
    IMPORT = "import"
    API = "api"


class ContactType(StrEnum):
    """How a number or address is used: the same three types for phones and e-mails."""

    MOBILE = "mobile"
    WORK = "work"
    HOME = "home"


class ActivityKind(StrEnum):
    CALL = "call"
    NOTE = "note"
    EMAIL = "email"


@dataclass(slots=True)
class Phone:
    raw: str  # as typed, shown back to people
    e164: str  # as indexed and looked up
    type: str = "work"
    do_not_call: bool = False
    id: int | None = None


@dataclass(slots=True)
class Email:
    email: str
    type: str = "work"
    opted_out: bool = False
    id: int | None = None


@dataclass(slots=True)
class Person:
    """A contact or a lead; lead-only fields (status, source, lost_reason) are None/empty for
    contacts."""

    id: int
    kind: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    title: str = ""
    account_id: int | None = None
    owner: str | None = None
    status: str | None = None
    lost_reason: str = ""
    source: str | None = None
    score: float | None = None
    country: str = ""
    do_not_call: bool = False
    email_opt_out: bool = False
    phones: list[Phone] = field(default_factory=list)
    emails: list[Email] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    language: str = ""  # "es", "en"...; "" = from the country (e-mails, unsubscribe page)
    tags: list[str] = field(default_factory=list)  # campaign segments select by these
    lost_at: float | None = None  # when the status last became "lost"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["name"] = self.display_name
        return d


@dataclass(slots=True)
class Account:
    id: int
    name: str
    domain: str = ""
    country: str = ""
    owner: str | None = None
    phones: list[Phone] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    person_id: int
    kind: str
    at: float  # epoch seconds
    summary: str = ""
    body: str = ""
    call_id: str | None = None
    author: str | None = None
    call: CallFacts | None = None  # its call as the log has it (see CallFacts)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FollowUpTask:
    id: int
    person_id: int
    due_at: float  # epoch seconds
    title: str
    owner: str | None = None
    done: bool = False
    done_at: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a create/import did: ``created`` a new person or ``updated`` an existing one."""

    person: Person
    outcome: str  # "created" | "updated"

    @property
    def created(self) -> bool:
        return self.outcome == "created"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_offset`` is None on the last page."""

    items: list[T]
    next_offset: int | None
