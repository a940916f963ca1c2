"""Every body and query of ``/api/v1``, described once as msgspec structs.

The handlers decode requests with these types (``gateway/api/params.py``: wrong types,
unknown fields and unknown query parameters are refused with the field named), encode
responses through them (so a response can only carry what is described here), and
``gateway/api/openapi.py`` emits its schemas and query parameters from them. A field added
here is validated, answered and documented at once; one added only in a handler is not sent.

Conventions: ids of store records are integers (call records, whose id is
``<pbx>:<linkedid>``, and click-to-call attempts are the two text ids); absent values are
``null``, never ``""``; times are epoch seconds (UTC); lists page with an opaque ``cursor``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.calls.model import Direction, Outcome
from gateway.campaigns.model import RfmSegment
from gateway.store.models import ActivityKind, ContactType, LeadSource, LeadStatus
from gateway.store.repositories import MAX_PAGE
from gateway.store.validation import MAX_ITEMS, MAX_LONG_TEXT, MAX_TAG, MAX_TAGS, MAX_TEXT

MAX_QUERY_TEXT = 200

Text = Annotated[str, Meta(max_length=MAX_TEXT)]
LongText = Annotated[str, Meta(max_length=MAX_LONG_TEXT)]
QueryText = Annotated[str, Meta(max_length=MAX_QUERY_TEXT)]
UserName = Annotated[str, Meta(max_length=64)]
Region = Annotated[str, Meta(max_length=2, description="two-letter country code, e.g. ES")]
# msgspec already refuses 1e999 and NaN while decoding; the bounds keep a date a date
Epoch = Annotated[
    float, Meta(ge=0, le=32_503_680_000, description="epoch seconds (UTC), before year 3000")
]
Score = Annotated[float, Meta(ge=0, le=10)]
Id = Annotated[int, Meta(ge=1, le=2**62)]
Limit = Annotated[int, Meta(ge=1, le=MAX_PAGE, description="page size")]
Cursor = Annotated[
    str,
    Meta(max_length=MAX_QUERY_TEXT, description="the previous page's `next_cursor`, as is"),
]

# -- errors ------------------------------------------------------------------------------------


class ErrorInfo(msgspec.Struct):
    id: Annotated[
        str,
        Meta(
            description="stable, for programs: unauthorized, forbidden, not_found, "
            "invalid_parameter, invalid_json, invalid_field, ..."
        ),
    ]
    message: Annotated[str, Meta(description="for people")]
    details: Annotated[
        Any,
        Meta(
            description="more about the error, or null: `{field, reason}` for "
            "invalid_parameter and invalid_field, `{scope}` for forbidden, `{retry_after}` "
            "for rate_limited"
        ),
    ]


class Error(msgspec.Struct):
    """Every error under /api/ has this body."""

    error: ErrorInfo


# -- CRM records (responses) -------------------------------------------------------------------


class Phone(msgspec.Struct):
    id: int | None
    raw: Annotated[str, Meta(description="as typed, shown back to people")]
    e164: Annotated[str, Meta(description="as indexed and looked up")]
    type: ContactType
    do_not_call: bool


class Email(msgspec.Struct):
    id: int | None
    email: str
    type: ContactType
    opted_out: bool


class Person(msgspec.Struct):
    """A contact or a lead; lead-only fields are null (or empty) on contacts."""

    id: int
    kind: Literal["contact", "lead"]
    name: Annotated[str, Meta(description="first and last name")]
    first_name: str
    last_name: str
    company: str
    title: str
    account_id: int | None
    owner: str | None
    status: LeadStatus | None
    lost_reason: str
    source: LeadSource | None
    score: Score | None
    country: str
    do_not_call: bool
    email_opt_out: bool
    phones: list[Phone]
    emails: list[Email]
    created_at: Epoch
    updated_at: Epoch
    language: Annotated[
        str, Meta(description="two-letter code (es, en) for e-mails; empty: from the country")
    ]
    tags: Annotated[list[str], Meta(description="sorted; campaign segments select by them")]
    lost_at: Annotated[Epoch | None, Meta(description="when the status last became lost")]


class PersonWritten(Person):
    """The person as stored; ``outcome: updated`` when the dedupe rule folded the input into
    an existing person with the same number or e-mail."""

    outcome: Literal["created", "updated"]


class CallFacts(msgspec.Struct):
    direction: Literal["inbound", "outbound", "internal", ""]
    outcome: Annotated[str, Meta(description="answered, noanswer, busy, abandoned...")]
    answered_by: Annotated[str | None, Meta(description="the extension that answered")]
    talk_seconds: float | None


class Activity(msgspec.Struct):
    id: int
    person_id: int
    kind: ActivityKind
    at: Epoch
    summary: str
    body: str
    call_id: Annotated[str | None, Meta(description="the call log record")]
    author: str | None
    call: Annotated[
        CallFacts | None, Meta(description="a call activity: what the call log says of it")
    ] = None


class FollowUp(msgspec.Struct):
    id: int
    person_id: int
    due_at: Epoch
    title: str
    owner: str | None
    done: bool
    done_at: Epoch | None


class PersonDetail(Person):
    activities: Annotated[list[Activity], Meta(description="the 20 newest")]
    follow_ups: Annotated[list[FollowUp], Meta(description="the open ones")]


class Account(msgspec.Struct):
    id: int
    name: str
    domain: str
    country: str
    owner: str | None
    phones: list[Phone]
    created_at: Epoch
    updated_at: Epoch


class PersonPage(msgspec.Struct):
    """Newest first; ``next_cursor`` is null on the last page."""

    items: list[Person]
    next_cursor: str | None


class AccountPage(msgspec.Struct):
    """Newest first; ``next_cursor`` is null on the last page."""

    items: list[Account]
    next_cursor: str | None


# -- CRM inputs (requests) ---------------------------------------------------------------------


class PhoneInput(msgspec.Struct, forbid_unknown_fields=True):
    number: Annotated[str, Meta(max_length=64, description="as typed; normalized to E.164")]
    type: ContactType = ContactType.WORK
    do_not_call: bool = False
    region: Region | UnsetType = UNSET


class EmailInput(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, Meta(max_length=254)]
    type: ContactType = ContactType.WORK
    opted_out: bool = False


PhoneIn = Annotated[str, Meta(max_length=64)] | PhoneInput
EmailIn = Annotated[str, Meta(max_length=254)] | EmailInput


class ContactInput(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Create: a name, a company, a phone or an e-mail is required. Change (PATCH): only the
    fields given change; ``phones``/``emails`` replace the lists."""

    first_name: Text | UnsetType = UNSET
    last_name: Text | UnsetType = UNSET
    name: (
        Annotated[
            str, Meta(max_length=MAX_TEXT, description="split in two when no first/last name")
        ]
        | UnsetType
    ) = UNSET
    company: Text | UnsetType = UNSET
    title: Text | UnsetType = UNSET
    account_id: Id | UnsetType | None = UNSET
    owner: UserName | UnsetType | None = UNSET
    score: Score | UnsetType | None = UNSET
    country: Region | UnsetType = UNSET
    do_not_call: bool | UnsetType = UNSET
    email_opt_out: bool | UnsetType = UNSET
    phones: Annotated[list[PhoneIn], Meta(max_length=MAX_ITEMS)] | UnsetType = UNSET
    phone: PhoneIn | UnsetType = UNSET
    emails: Annotated[list[EmailIn], Meta(max_length=MAX_ITEMS)] | UnsetType = UNSET
    email: EmailIn | UnsetType = UNSET
    language: (
        Annotated[
            str,
            Meta(pattern=r"^([a-z]{2})?$", description="es, en...; empty: from the country"),
        ]
        | UnsetType
    ) = UNSET
    tags: (
        Annotated[
            list[Annotated[str, Meta(min_length=1, max_length=MAX_TAG)]],
            Meta(max_length=MAX_TAGS, description="replaces the person's tags (PATCH)"),
        ]
        | UnsetType
    ) = UNSET


class LeadInput(ContactInput, forbid_unknown_fields=True, omit_defaults=True):
    """Create: a name, a company, a phone or an e-mail is required; ``lost_reason`` with
    ``status: lost``."""

    status: LeadStatus | UnsetType = UNSET
    source: LeadSource | UnsetType = UNSET
    lost_reason: Text | UnsetType = UNSET


class AccountInput(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Create: ``name`` is required."""

    name: Text | UnsetType = UNSET
    domain: Text | UnsetType = UNSET
    country: Region | UnsetType = UNSET
    owner: UserName | UnsetType | None = UNSET
    phones: Annotated[list[PhoneIn], Meta(max_length=MAX_ITEMS)] | UnsetType = UNSET


class ActivityInput(msgspec.Struct, forbid_unknown_fields=True):
    kind: ActivityKind = ActivityKind.NOTE
    summary: Text = ""
    body: LongText = ""


class FollowUpInput(msgspec.Struct, forbid_unknown_fields=True):
    due_at: Epoch
    title: Text
    owner: Annotated[UserName | None, Meta(description="default: the caller's name")] | (
        UnsetType
    ) = UNSET


class ImportRequest(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["contacts", "leads", "contact", "lead"]
    csv: Annotated[str, Meta(description="the CSV text, header line first")]
    mapping: Annotated[
        dict[str, str] | None,
        Meta(description="CSV column -> field; default: columns named like fields"),
    ] = None
    strict: Annotated[bool, Meta(description="true: import nothing when any row is bad")] = False
    default_region: Region | None = None


class ImportRowError(msgspec.Struct):
    line: Annotated[int, Meta(description="the header is line 1")]
    field: str | None
    reason: str


class ImportReport(msgspec.Struct):
    kind: Literal["contacts", "leads"]
    rows: int
    created: int
    updated: Annotated[int, Meta(description="rows folded into an existing person")]
    imported: int
    strict: bool
    errors: Annotated[list[ImportRowError], Meta(description="the first 1000 bad rows")]
    error_count: int


# -- lookup ------------------------------------------------------------------------------------


class CardInteraction(msgspec.Struct):
    kind: str
    at: Epoch
    summary: Annotated[str, Meta(description="in English; a call's `call` says it as data")]
    call: Annotated[
        CallFacts | None, Meta(description="a call activity: what the call log says of it")
    ] = None


class CardFollowUp(msgspec.Struct):
    id: int
    due_at: Epoch
    title: str


class CardInsight(msgspec.Struct):
    """One customer metric on the card; ``GET /api/v1/people/{id}/metrics`` has them all."""

    name: str
    value: float | None
    label: str | None
    reason: Annotated[str, Meta(description="stable code: intel.reason.<code>")]
    params: dict[str, Any]


class CallerCard(msgspec.Struct):
    """Who is calling. ``person_id``/``account_id`` are the embedded store's ids (null when
    the card came from a CRM connector: that CRM's own id is ``external_id``)."""

    number: Annotated[str, Meta(description="E.164 when it parsed, else as received")]
    kind: Literal["contact", "lead", "account", "unknown"]
    known: Annotated[bool, Meta(description="false: nobody has this number")]
    display_name: Annotated[str, Meta(description="untrusted text: render as text")]
    company: str
    person_id: int | None
    account_id: int | None
    external_id: Annotated[str | None, Meta(description="the record's id in its CRM")]
    owner: str | None
    lead_status: str | None
    lead_score: float | None
    country: Annotated[str | None, Meta(description="ISO region, e.g. ES")]
    line_type: Annotated[str | None, Meta(description="mobile, fixed_line...")]
    interactions: Annotated[list[CardInteraction], Meta(description="newest first")]
    follow_ups: list[CardFollowUp]
    source: Annotated[str, Meta(description="`store` or the connector's name")]
    external_url: str | None
    extra: dict[str, str]
    insight: Annotated[
        list[CardInsight],
        Meta(description="customer metrics (segment, value, churn risk, data quality, next step)"),
    ] = []


# -- calls -------------------------------------------------------------------------------------


class CallTransfer(msgspec.Struct):
    kind: Literal["blind", "attended"]
    from_: str | None = msgspec.field(name="from")
    to: str | None


class CallRecord(msgspec.Struct):
    """One finished call: the tracker's record (``centralita replay`` prints the same
    fields), plus what the log adds: ``id``, ``caller_e164``, notes, disposition, person."""

    id: Annotated[str, Meta(description="`<pbx>:<linkedid>`")]
    linkedid: str
    pbx: str
    direction: Annotated[Direction | None, Meta(description="null only on hand-made records")]
    click_to_call: bool
    call_id: Annotated[str | None, Meta(description="the originate `call_id` of a click-to-call")]
    caller: Annotated[str | None, Meta(description="as the carrier or phone presented it")]
    caller_e164: Annotated[str | None, Meta(description="`caller` in E.164, when a number")]
    caller_name: Annotated[str | None, Meta(description="untrusted text: render as text")]
    did: Annotated[str | None, Meta(description="inbound: the number the caller dialed")]
    dialed: Annotated[str | None, Meta(description="outbound/internal: what was dialed")]
    queue: str | None
    agents_rang: Annotated[list[str], Meta(description="in the order they first rang")]
    agents_answered: Annotated[list[str], Meta(description="in the order they answered")]
    answered_by: Annotated[str | None, Meta(description="null when nobody answered")]
    transfers: list[CallTransfer]
    outcome: Annotated[Outcome | None, Meta(description="null only on hand-made records")]
    started_at: float
    answered_at: float | None
    ended_at: float | None
    ring_seconds: float | None
    queue_wait_seconds: Annotated[
        float | None, Meta(description="queue calls: joining the queue until answer or hang-up")
    ]
    talk_seconds: Annotated[float | None, Meta(description="billsec")]
    total_seconds: float | None
    hangup_cause: str | None
    recordings: list[str]
    reconstructed: Annotated[
        bool, Meta(description="part of the call happened out of sight; see `warnings`")
    ]
    warnings: list[str]
    notes: Annotated[str | None, Meta(description="the agent's notes, null until set")]
    disposition: Annotated[str | None, Meta(description="a configured disposition id")]
    person_id: Annotated[int | None, Meta(description="the matched contact or lead")]


class CallPage(msgspec.Struct):
    """In the order asked (``sort``); ``next_cursor`` is null on the last page."""

    items: list[CallRecord]
    next_cursor: str | None


class CallAnnotation(msgspec.Struct, forbid_unknown_fields=True):
    notes: LongText | UnsetType = UNSET
    disposition: (
        Annotated[
            str, Meta(max_length=64, description="one of the panel's configured dispositions")
        ]
        | UnsetType
    ) = UNSET


# -- click-to-call -----------------------------------------------------------------------------


class OriginateRequest(msgspec.Struct, forbid_unknown_fields=True):
    extension: Annotated[
        str, Meta(max_length=16, description="a panel user's extension, rung first, e.g. 101")
    ]
    number: Annotated[
        str,
        Meta(max_length=64, description="the customer's number; national numbers use the "
             "configured default region"),
    ]  # fmt: skip


class OriginateAttempt(msgspec.Struct):
    call_id: Annotated[str, Meta(description="the attempt's id; the call record carries it")]
    number: Annotated[str, Meta(description="the customer's number, E.164")]
    extension: str
    state: Literal["calling_agent", "calling_customer", "connected", "ended", "failed"]
    reason: Annotated[
        str,
        Meta(description="why it failed: agent_noanswer, agent_busy, customer_busy, "
             "customer_noanswer, invalid_number, pbx_down, failed; empty otherwise"),
    ]  # fmt: skip
    message: Annotated[str, Meta(description="human-readable progress")]


# -- lead scoring ------------------------------------------------------------------------------


class ScorePart(msgspec.Struct):
    name: str
    value: Score | None
    weight: float
    derive: Literal["manual", "answered_calls", "form_fills", "recency", "lead_source"]
    detail: str


class ScoreInput(msgspec.Struct):
    value: Score
    set_by: str | None
    set_at: Epoch


class ScoreDoc(msgspec.Struct):
    id: int
    global_: Score | None = msgspec.field(name="global")
    parts: list[ScorePart]
    inputs: dict[str, ScoreInput]


ScoreInputs = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Score | None],
    Meta(description="manual parameter -> 0 to 10; null clears it; others are unchanged"),
]


class FormFill(msgspec.Struct, forbid_unknown_fields=True):
    form: Text
    at: Epoch | None = None


class BestHourHint(msgspec.Struct):
    """When the lead answers most (``GET /api/v1/leads/{id}/best-hour`` has the detail)."""

    hour: Annotated[int, Meta(ge=0, le=23, description="in `panel.timezone`")]
    label: Annotated[str, Meta(description="`HH:00`")]
    percent: Annotated[int | None, Meta(description="the estimated answer rate then")]
    now: Annotated[bool, Meta(description="the current hour is the best one")]
    source: Annotated[
        Literal["own", "everyone"],
        Meta(description="the lead's own calls, or (never called) everybody's"),
    ]


class CustomerMetric(msgspec.Struct):
    """One customer metric of a person (``GET /api/v1/people/{id}/metrics``, the worklist's
    items): ``value`` and ``label`` null when the data cannot give one, and ``reason`` says
    why (``no_purchases``, ``no_rhythm``...): never a number the data does not support."""

    name: str
    value: float | None
    label: Annotated[str | None, Meta(description="segment, risk band, currency, channel, action")]
    reason: Annotated[str, Meta(description="stable code: intel.reason.<code> in the catalogs")]
    params: dict[str, Any]
    text: Annotated[str, Meta(description="the reason in the query's `lang`")]


class WorklistMetrics(msgspec.Struct):
    """The few customer metrics a caller acts on (the record view has them all)."""

    rfm_segment: Annotated[CustomerMetric, Meta(description="`label`: the RFM segment")]
    churn_30: Annotated[CustomerMetric, Meta(description="`value`: churn risk within 30 days, 0-1")]
    clv_historic: Annotated[
        CustomerMetric, Meta(description="`value`: everything bought so far; `label`: currency")
    ]
    next_best: Annotated[CustomerMetric, Meta(description="`label`: the next best action")]


class WorklistItem(msgspec.Struct):
    person: Person
    score: Score | None
    next_follow_up: FollowUp | None
    open_follow_ups: int
    campaign: Annotated[
        str | None, Meta(description="the campaign whose call task next_follow_up is")
    ] = None
    best_hour: Annotated[
        BestHourHint | None, Meta(description="null: no calls to learn from yet")
    ] = None
    metrics: Annotated[
        WorklistMetrics | None,
        Meta(
            description="null: not computed yet (they are as calls end, deals change, "
            "at start and nightly)"
        ),
    ] = None


class Worklist(msgspec.Struct):
    """In the query's ``sort``: best score first (default), among equal scores the leads
    whose best hour is now, then the earliest follow-up; or highest churn risk or value first,
    ties in that same order. ``next_cursor`` null on the last page."""

    items: list[WorklistItem]
    next_cursor: str | None


# -- query parameters --------------------------------------------------------------------------
# One struct per list route. An unknown or repeated parameter is a 400; each field becomes a
# documented query parameter of the route.

When = Annotated[
    str, Meta(max_length=40, description="epoch seconds or ISO 8601 (UTC without an offset)")
]


class LookupQuery(msgspec.Struct, forbid_unknown_fields=True):
    number: Annotated[
        str,
        Meta(min_length=1, max_length=100,
             description="the number in any format, e.g. `+34911234567` (URL-encode the +)"),
    ]  # fmt: skip


class ContactQuery(msgspec.Struct, forbid_unknown_fields=True):
    owner: Annotated[QueryText, Meta(description="only records owned by this user")] | None = None
    q: Annotated[QueryText, Meta(description="search: name, company, e-mail or number")] | (
        None
    ) = None
    account_id: Id | None = None
    sort: Annotated[Literal["-created"], Meta(description="newest first (the only order)")] = (
        "-created"
    )
    limit: Limit = 50
    cursor: Cursor | None = None


class LeadQuery(ContactQuery, forbid_unknown_fields=True):
    status: LeadStatus | None = None
    source: LeadSource | None = None


class AccountQuery(msgspec.Struct, forbid_unknown_fields=True):
    owner: Annotated[QueryText, Meta(description="only records owned by this user")] | None = None
    q: Annotated[QueryText, Meta(description="search: name, domain or number")] | None = None
    sort: Annotated[Literal["-created"], Meta(description="newest first (the only order)")] = (
        "-created"
    )
    limit: Limit = 50
    cursor: Cursor | None = None


class CallQuery(msgspec.Struct, forbid_unknown_fields=True):
    since: Annotated[When, Meta(description="started at or after")] | None = None
    until: Annotated[When, Meta(description="started before")] | None = None
    extension: Annotated[QueryText, Meta(description="an extension that rang or answered")] | (
        None
    ) = None
    outcome: Outcome | None = None
    number: Annotated[QueryText, Meta(description="caller, DID or dialed, as typed or E.164")] | (
        None
    ) = None
    direction: Direction | None = None
    sort: Annotated[
        Literal["-started_at", "started_at"],
        Meta(description="`-started_at`: newest first; `started_at`: oldest first"),
    ] = "-started_at"
    limit: Limit = 50
    cursor: Cursor | None = None


# the next best action (the ``next_best`` metric's label, gateway/intel/metrics.py)
NextBest = Literal[
    "call_back", "send_offer", "revive_lost_deal", "update_data", "no_action", "none"
]
WorklistSort = Literal["-score", "-churn_risk", "-value"]
_SEGMENTS = "only leads in one of these RFM segments (comma-separated)"
_CHURN = "only leads whose churn risk within 30 days is at least this (0-1)"
_NEXT = "only leads whose next best action is one of these (comma-separated)"


class WorklistQuery(msgspec.Struct, forbid_unknown_fields=True):
    owner: Annotated[QueryText, Meta(description="only leads owned by this user")] | None = None
    # the customer metrics, with a campaign segment's names and meaning (gateway/campaigns/);
    # a list is comma-separated: rfm_segments=at_risk,hibernating
    rfm_segments: Annotated[list[RfmSegment], Meta(max_length=20, description=_SEGMENTS)] | (
        None
    ) = None
    churn_risk_min: Annotated[float, Meta(ge=0, le=1, description=_CHURN)] | None = None
    next_best: Annotated[list[NextBest], Meta(max_length=20, description=_NEXT)] | None = None
    sort: Annotated[
        WorklistSort,
        Meta(
            description="`-score`: best score first, then best hour now, then earliest "
            "follow-up; `-churn_risk`, `-value` (historic value, each lead's own currency): "
            "highest first, unknown last, ties by score"
        ),
    ] = "-score"
    lang: Annotated[
        Literal["en", "es"], Meta(description="the language of each metric's `text`")
    ] = "en"
    limit: Limit = 50
    cursor: Cursor | None = None


class ImportQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Options of a ``text/csv`` import (a JSON import carries them in its body)."""

    kind: Literal["contacts", "leads", "contact", "lead"]
    strict: bool = False
    region: Region | None = None
    mapping: Annotated[str, Meta(description="a JSON object: CSV column -> field")] | None = None


class NoQuery(msgspec.Struct, forbid_unknown_fields=True):
    """Routes that take no query parameters refuse any."""
