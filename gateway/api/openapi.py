"""The OpenAPI 3.1 document of ``/api/v1``, served public at ``GET /api/v1/openapi.json``.

Built as a dict from the same constants the handlers check (outcomes, lead statuses, page
sizes, text limits), so an enum changed in the code changes here too. Every operation names the
scope it needs twice: in ``x-scopes`` (for tools) and in its description (for people).
tests/test_api_openapi.py compares the documented routes with the registered ones, checks each
documented scope against the 403 the route really answers, and validates real responses.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api.calls import DIRECTIONS, OUTCOMES
from gateway.api.outbox import schemas as outbox_schemas
from gateway.api.params import MAX_QUERY_TEXT
from gateway.api.scoring import openapi_paths as scoring_paths
from gateway.panel.sessions import COOKIE
from gateway.store.csv_io import IMPORT_FIELDS
from gateway.store.models import ActivityKind, ContactType, LeadSource, LeadStatus
from gateway.store.repositories import MAX_PAGE
from gateway.store.validation import MAX_ITEMS, MAX_TEXT

__all__ = ["OPENAPI_PATH", "build_document", "setup_openapi"]

OPENAPI_PATH = "/api/v1/openapi.json"
API_VERSION = "1.0.0"

Schema = dict[str, Any]

# -- schema helpers --------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(description: str = "", limit: int = MAX_TEXT) -> Schema:
    s: Schema = {"type": "string", "maxLength": limit}
    if description:
        s["description"] = description
    return s


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), closed: bool = False) -> Schema:
    s: Schema = {"type": "object", "properties": props}
    if required:
        s["required"] = list(required)
    if closed:
        s["additionalProperties"] = False
    return s


def _extend(base: Schema, props: dict[str, Schema]) -> Schema:
    """``base`` with more (required) properties: flat rather than ``allOf``, so the object
    reads as one and a client can close it with ``additionalProperties: false``."""
    return _obj({**base["properties"], **props}, (*base["required"], *props))


def _values(enum: Any) -> list[str]:
    return [e.value for e in enum]


EPOCH = {"type": "number", "description": "epoch seconds (UTC)"}
CONTACT_TYPES = _values(ContactType)


def _schemas() -> dict[str, Schema]:
    phone_in = _obj(
        {
            "number": _text("as typed; normalized to E.164 with `region`", 64),
            "type": {"type": "string", "enum": CONTACT_TYPES, "default": "work"},
            "do_not_call": {"type": "boolean", "default": False},
            "region": _text("two-letter country code for a national number", 2),
        },
        ("number",),
        closed=True,
    )
    email_in = _obj(
        {
            "email": {"type": "string", "maxLength": 254},
            "type": {"type": "string", "enum": CONTACT_TYPES, "default": "work"},
            "opted_out": {"type": "boolean", "default": False},
        },
        ("email",),
        closed=True,
    )
    phones_in: Schema = {
        "type": "array",
        "maxItems": MAX_ITEMS,
        "items": {"oneOf": [{"type": "string", "maxLength": 64}, _ref("PhoneInput")]},
        "description": "replaces every number of the record when given",
    }
    person_common: dict[str, Schema] = {
        "first_name": _text(),
        "last_name": _text(),
        "name": _text("split into first and last name when neither is given"),
        "company": _text(),
        "title": _text(),
        "account_id": _nullable({"type": "integer"}),
        "owner": _nullable(_text("owner agent's user name", 64)),
        "score": _nullable({"type": "number", "minimum": 0, "maximum": 10}),
        "country": _text("two-letter country code, default region for national numbers", 2),
        "do_not_call": {"type": "boolean"},
        "email_opt_out": {"type": "boolean"},
        "phones": phones_in,
        "phone": {
            "oneOf": [{"type": "string", "maxLength": 64}, _ref("PhoneInput")],
            "description": "one more number, added to `phones`",
        },
        "emails": {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {"oneOf": [{"type": "string", "maxLength": 254}, _ref("EmailInput")]},
            "description": "replaces every address of the record when given",
        },
        "email": {
            "oneOf": [{"type": "string", "maxLength": 254}, _ref("EmailInput")],
            "description": "one more address, added to `emails`",
        },
    }
    lead_only: dict[str, Schema] = {
        "status": {"type": "string", "enum": _values(LeadStatus)},
        "source": {"type": "string", "enum": _values(LeadSource)},
        "lost_reason": _text("required when status is `lost`"),
    }
    phone = _obj(
        {
            "id": _nullable({"type": "integer"}),
            "raw": {"type": "string", "description": "as typed, shown back to people"},
            "e164": {"type": "string", "description": "as indexed and looked up"},
            "type": {"type": "string", "enum": CONTACT_TYPES},
            "do_not_call": {"type": "boolean"},
        },
        ("id", "raw", "e164", "type", "do_not_call"),
    )
    email = _obj(
        {
            "id": _nullable({"type": "integer"}),
            "email": {"type": "string"},
            "type": {"type": "string", "enum": CONTACT_TYPES},
            "opted_out": {"type": "boolean"},
        },
        ("id", "email", "type", "opted_out"),
    )
    person = _obj(
        {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["contact", "lead"]},
            "name": {"type": "string", "description": "first and last name"},
            "first_name": {"type": "string"},
            "last_name": {"type": "string"},
            "company": {"type": "string"},
            "title": {"type": "string"},
            "account_id": _nullable({"type": "integer"}),
            "owner": _nullable({"type": "string"}),
            "status": _nullable({"type": "string", "enum": _values(LeadStatus)}),
            "lost_reason": {"type": "string"},
            "source": _nullable({"type": "string", "enum": _values(LeadSource)}),
            "score": _nullable({"type": "number", "minimum": 0, "maximum": 10}),
            "country": {"type": "string"},
            "do_not_call": {"type": "boolean"},
            "email_opt_out": {"type": "boolean"},
            "phones": {"type": "array", "items": _ref("Phone")},
            "emails": {"type": "array", "items": _ref("Email")},
            "created_at": EPOCH,
            "updated_at": EPOCH,
        },
        (
            "id", "kind", "name", "first_name", "last_name", "company", "title", "account_id",
            "owner", "status", "lost_reason", "source", "score", "country", "do_not_call",
            "email_opt_out", "phones", "emails", "created_at", "updated_at",
        ),
    )  # fmt: skip
    activity = _obj(
        {
            "id": {"type": "integer"},
            "person_id": {"type": "integer"},
            "kind": {"type": "string", "enum": _values(ActivityKind)},
            "at": EPOCH,
            "summary": {"type": "string"},
            "body": {"type": "string"},
            "call_id": _nullable({"type": "string", "description": "the call log record"}),
            "author": _nullable({"type": "string"}),
        },
        ("id", "person_id", "kind", "at", "summary", "body", "call_id", "author"),
    )
    follow_up = _obj(
        {
            "id": {"type": "integer"},
            "person_id": {"type": "integer"},
            "due_at": EPOCH,
            "title": {"type": "string"},
            "owner": _nullable({"type": "string"}),
            "done": {"type": "boolean"},
            "done_at": _nullable(EPOCH),
        },
        ("id", "person_id", "due_at", "title", "owner", "done", "done_at"),
    )
    account = _obj(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "domain": {"type": "string"},
            "country": {"type": "string"},
            "owner": _nullable({"type": "string"}),
            "phones": {"type": "array", "items": _ref("Phone")},
            "created_at": EPOCH,
            "updated_at": EPOCH,
        },
        ("id", "name", "domain", "country", "owner", "phones", "created_at", "updated_at"),
    )
    card = _obj(
        {
            "number": {"type": "string", "description": "E.164 when it parsed, else as received"},
            "kind": {"type": "string", "enum": ["contact", "lead", "account", "unknown"]},
            "known": {"type": "boolean", "description": "false: nobody has this number"},
            "display_name": {"type": "string", "description": "untrusted text: render as text"},
            "company": {"type": "string"},
            "person_id": _nullable({"type": "string"}),
            "account_id": _nullable({"type": "string"}),
            "owner": _nullable({"type": "string"}),
            "lead_status": _nullable({"type": "string"}),
            "lead_score": _nullable({"type": "number"}),
            "country": _nullable({"type": "string", "description": "ISO region, e.g. ES"}),
            "line_type": _nullable({"type": "string", "description": "mobile, fixed_line..."}),
            "interactions": {
                "type": "array",
                "description": "newest first",
                "items": _obj(
                    {"kind": {"type": "string"}, "at": EPOCH, "summary": {"type": "string"}},
                    ("kind", "at", "summary"),
                ),
            },
            "follow_ups": {
                "type": "array",
                "items": _obj(
                    {"id": {"type": "string"}, "due_at": EPOCH, "title": {"type": "string"}},
                    ("id", "due_at", "title"),
                ),
            },
            "source": {"type": "string", "description": "`store` or the connector's name"},
            "external_url": _nullable({"type": "string", "description": "the external record"}),
            "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        (
            "number", "kind", "known", "display_name", "company", "person_id", "account_id",
            "owner", "lead_status", "lead_score", "country", "line_type", "interactions",
            "follow_ups", "source", "external_url", "extra",
        ),
    )  # fmt: skip
    call = _obj(
        {
            "id": {"type": "string", "description": "`<pbx>:<linkedid>`"},
            "linkedid": {"type": "string"},
            "pbx": {"type": "string"},
            "direction": {"type": "string", "enum": [*DIRECTIONS, ""]},
            "click_to_call": {"type": "boolean"},
            "call_id": _nullable(
                {"type": "string", "description": "the originate `call_id` of a click-to-call"}
            ),
            "caller": {"type": "string"},
            "caller_name": {"type": "string", "description": "untrusted text: render as text"},
            "did": {"type": "string", "description": "inbound: the number the caller dialed"},
            "dialed": {"type": "string", "description": "outbound/internal: what was dialed"},
            "queue": {"type": "string"},
            "agents_rang": {"type": "array", "items": {"type": "string"}},
            "answered_by": {"type": "string", "description": "empty when nobody answered"},
            "transfers": {
                "type": "array",
                "items": _obj(
                    {
                        "kind": {"type": "string", "enum": ["blind", "attended"]},
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                    }
                ),
            },
            "outcome": {"type": "string", "enum": [*OUTCOMES, ""]},
            "started_at": EPOCH,
            "answered_at": _nullable(EPOCH),
            "ended_at": _nullable(EPOCH),
            "ring_seconds": _nullable({"type": "number"}),
            "talk_seconds": _nullable({"type": "number", "description": "billsec"}),
            "total_seconds": _nullable({"type": "number"}),
            "hangup_cause": {"type": "string"},
            "recordings": {"type": "array", "items": {"type": "string"}},
            "reconstructed": {
                "type": "boolean",
                "description": "part of the call happened out of sight; some fields estimated",
            },
            "notes": {"type": "string"},
            "disposition": {"type": "string"},
            "person_id": _nullable({"type": "integer", "description": "the matched contact/lead"}),
        },
    )
    call["required"] = list(call["properties"])  # the log stores every field of every call
    attempt = _obj(
        {
            "call_id": {
                "type": "string",
                "description": "the attempt's id; the call record carries it as `call_id`",
            },
            "number": {"type": "string", "description": "the customer's number, E.164"},
            "extension": {"type": "string", "description": "the agent's extension rung first"},
            "state": {
                "type": "string",
                "enum": ["calling_agent", "calling_customer", "connected", "ended", "failed"],
            },
            "reason": {
                "type": "string",
                "description": "why it failed: agent_noanswer, agent_busy, customer_busy, "
                "customer_noanswer, invalid_number, pbx_down, failed; empty otherwise",
            },
            "message": {"type": "string", "description": "human-readable progress"},
        },
        ("call_id", "number", "extension", "state", "reason", "message"),
    )
    import_report = _obj(
        {
            "kind": {"type": "string", "enum": ["contacts", "leads"]},
            "rows": {"type": "integer"},
            "created": {"type": "integer"},
            "updated": {
                "type": "integer",
                "description": "rows folded into an existing person (same number or e-mail)",
            },
            "imported": {"type": "integer"},
            "strict": {"type": "boolean"},
            "errors": {
                "type": "array",
                "description": "the first 1000 bad rows",
                "items": _obj(
                    {
                        "line": {"type": "integer", "description": "the header is line 1"},
                        "field": _nullable({"type": "string"}),
                        "reason": {"type": "string"},
                    },
                    ("line", "field", "reason"),
                ),
            },
            "error_count": {"type": "integer"},
        },
        ("kind", "rows", "created", "updated", "imported", "strict", "errors", "error_count"),
    )

    def page(item: str, key: str, description: str) -> Schema:
        return _obj(
            {
                "items": {"type": "array", "items": _ref(item)},
                key: _nullable({"type": "integer" if key == "next_offset" else "string"}),
            },
            ("items", key),
        ) | {"description": description}

    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "id": {
                            "type": "string",
                            "description": "stable, for programs: unauthorized, forbidden, "
                            "not_found, invalid_parameter, invalid_json, invalid_field, ...",
                        },
                        "message": {"type": "string", "description": "for people"},
                        "details": {
                            "description": "more about the error, or null: `{field, reason}` "
                            "for invalid_parameter and invalid_field, `{scope}` for forbidden, "
                            "`{retry_after}` for rate_limited"
                        },
                    },
                    ("id", "message", "details"),
                )
            },
            ("error",),
        ),
        "PhoneInput": phone_in,
        "EmailInput": email_in,
        "Phone": phone,
        "Email": email,
        "ContactInput": _obj(person_common, closed=True)
        | {"description": "Create: a name, a company, a phone or an e-mail is required."},
        "LeadInput": _obj({**person_common, **lead_only}, closed=True)
        | {"description": "Create: a name, a company, a phone or an e-mail is required."},
        "Person": person,
        "PersonWritten": _extend(
            person,
            {
                "outcome": {
                    "type": "string",
                    "enum": ["created", "updated"],
                    "description": "`updated`: folded into an existing person with the same "
                    "number or e-mail (dedupe)",
                }
            },
        ),
        "PersonDetail": _extend(
            person,
            {
                "activities": {
                    "type": "array",
                    "items": _ref("Activity"),
                    "description": "the 20 newest",
                },
                "follow_ups": {"type": "array", "items": _ref("FollowUp"), "description": "open"},
            },
        ),
        "PersonPage": page("Person", "next_offset", "`next_offset` is null on the last page"),
        "Activity": activity,
        "ActivityInput": _obj(
            {
                "kind": {"type": "string", "enum": _values(ActivityKind), "default": "note"},
                "summary": _text(),
                "body": _text(limit=10_000),
            }
        ),
        "FollowUp": follow_up,
        "FollowUpInput": _obj(
            {
                "due_at": EPOCH,
                "title": _text(),
                "owner": _nullable(_text("default: the caller's name", 64)),
            },
            ("due_at", "title"),
        ),
        "Account": account,
        "AccountInput": _obj(
            {
                "name": _text("required on create"),
                "domain": _text(),
                "country": _text("two-letter country code", 2),
                "owner": _nullable(_text(limit=64)),
                "phones": phones_in,
            },
            closed=True,
        ),
        "AccountPage": page("Account", "next_offset", "`next_offset` is null on the last page"),
        "CallerCard": card,
        "CallRecord": call,
        "CallPage": page(
            "CallRecord", "next_cursor", "newest first; pass `next_cursor` back as `cursor`"
        ),
        "CallAnnotation": _obj(
            {"notes": _text(limit=10_000), "disposition": _text(limit=10_000)}, closed=True
        ),
        "OriginateRequest": _obj(
            {
                "extension": {"type": "string", "description": "the agent's extension, e.g. 101"},
                "number": {
                    "type": "string",
                    "description": "the customer's number; national numbers use the "
                    "configured default region",
                },
            },
            ("extension", "number"),
        ),
        "OriginateAttempt": attempt,
        "ImportRequest": _obj(
            {
                "kind": {"type": "string", "enum": ["contacts", "leads", "contact", "lead"]},
                "csv": {"type": "string", "description": "the CSV text, header line first"},
                "mapping": {
                    "type": "object",
                    "description": "CSV column -> field; default: columns named like fields",
                    "additionalProperties": {"type": "string", "enum": sorted(IMPORT_FIELDS)},
                },
                "strict": {
                    "type": "boolean",
                    "default": False,
                    "description": "true: import nothing when any row is bad (422)",
                },
                "default_region": {"type": "string", "minLength": 2, "maxLength": 2},
            },
            ("kind", "csv"),
        ),
        "ImportReport": import_report,
    }


# -- responses and parameters ------------------------------------------------------------------


def _error_response(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _responses() -> dict[str, Schema]:
    unauthorized = _error_response(
        "No credentials, an unknown token, or a malformed Authorization header (`unauthorized`)."
    )
    unauthorized["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="..."'}
    }
    return {
        "BadRequest": _error_response(
            "A query parameter is wrong (`invalid_parameter`, details `{field, reason}`) or the "
            "body is not JSON (`invalid_json`)."
        ),
        "Unauthorized": unauthorized,
        "Forbidden": _error_response(
            "The token or user lacks the scope (`forbidden`, details `{scope}`)."
        ),
        "NotFound": _error_response("No such record (`not_found`)."),
        "Unprocessable": _error_response(
            "A field of the body is wrong (`invalid_field`, details `{field, reason}`; the field "
            "is a path such as `phones[1].number`)."
        ),
    }


def _param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    p: Schema = {"name": name, "in": where, "schema": schema}
    if where == "path":
        p["required"] = True
    if description:
        p["description"] = description
    return p


def _query_text(name: str, description: str) -> Schema:
    return _param(name, "query", {"type": "string", "maxLength": MAX_QUERY_TEXT}, description)


def _parameters() -> dict[str, Schema]:
    return {
        "Id": _param("id", "path", {"type": "string", "pattern": "^[0-9]+$"}, "numeric id"),
        "Limit": _param(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
            "page size",
        ),
        "Offset": _param(
            "offset",
            "query",
            {"type": "integer", "minimum": 0, "default": 0},
            "from the previous page's `next_offset`",
        ),
        "Owner": _query_text("owner", "only records owned by this user name"),
        "Query": _query_text("q", "search text: name, company, e-mail or number"),
    }


def _p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _r(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    tag: str,
    summary: str,
    scope: str,
    responses: dict[str, Schema],
    *,
    description: str = "",
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    errors: tuple[int, ...] = (),
) -> Schema:
    """One operation with its scope and the errors every protected route can answer."""
    text = f"Needs scope `{scope}`."
    if description:
        text = f"{description}\n\n{text}"
    out: Schema = {
        "tags": [tag],
        "summary": summary,
        "description": text,
        "operationId": "",  # filled in by build_document from the method and path
        "security": [{"bearerAuth": [scope]}, {"panelSession": [scope]}],
        "x-scopes": [scope],
    }
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    all_responses = dict(responses)
    all_responses["401"] = _r("Unauthorized")
    all_responses["403"] = _r("Forbidden")
    for status in errors:
        all_responses[str(status)] = _r(_STATUS_RESPONSES[status])
    if body is not None or parameters:
        all_responses.setdefault("400", _r("BadRequest"))
    if body is not None:
        all_responses.setdefault("422", _r("Unprocessable"))
    out["responses"] = dict(sorted(all_responses.items()))
    return out


_STATUS_RESPONSES = {400: "BadRequest", 404: "NotFound", 422: "Unprocessable"}
NO_CONTENT: Schema = {"description": "Deleted."}


# -- paths -----------------------------------------------------------------------------------


def _person_paths(plural: str, kind: str) -> dict[str, Schema]:
    base = f"/api/v1/{plural}"
    tag = plural.capitalize()
    input_schema = _ref("LeadInput" if kind == "lead" else "ContactInput")
    filters = [_p("Owner"), _p("Query")]
    if kind == "lead":
        filters += [
            _param("status", "query", {"type": "string", "enum": _values(LeadStatus)}),
            _param("source", "query", {"type": "string", "enum": _values(LeadSource)}),
        ]
    filters.append(
        _param("account_id", "query", {"type": "string", "pattern": "^[0-9]+$"}, "account id")
    )
    return {
        base: {
            "get": _op(
                tag,
                f"List {plural}",
                "crm:read",
                {"200": _json(_ref("PersonPage"), f"A page of {plural}, newest first.")},
                parameters=[*filters, _p("Limit"), _p("Offset")],
            ),
            "post": _op(
                tag,
                f"Create a {kind}",
                "crm:write",
                {
                    "201": _json(_ref("PersonWritten"), "Created (`outcome: created`)."),
                    "200": _json(
                        _ref("PersonWritten"),
                        "Folded into an existing person with the same number or e-mail "
                        "(`outcome: updated`).",
                    ),
                },
                body=input_schema,
                description="Deduplicated by phone number and e-mail address.",
            ),
        },
        base + "/{id}": {
            "parameters": [_p("Id")],
            "get": _op(
                tag,
                f"Read a {kind} with its timeline",
                "crm:read",
                {"200": _json(_ref("PersonDetail"), f"The {kind}, activities and follow-ups.")},
                errors=(404,),
            ),
            "patch": _op(
                tag,
                f"Change a {kind}",
                "crm:write",
                {"200": _json(_ref("Person"), f"The {kind} as changed.")},
                body=input_schema,
                description="Only the fields given change; `phones`/`emails` replace the lists.",
                errors=(404,),
            ),
            "delete": _op(tag, f"Delete a {kind}", "crm:write", {"204": NO_CONTENT}, errors=(404,)),
        },
        base + "/{id}/activities": {
            "parameters": [_p("Id")],
            "post": _op(
                tag,
                f"Add a note, call or e-mail to a {kind}'s timeline",
                "crm:write",
                {"201": _json(_ref("Activity"), "The activity; `author` is the caller's name.")},
                body=_ref("ActivityInput"),
                errors=(404,),
            ),
        },
        base + "/{id}/follow-ups": {
            "parameters": [_p("Id")],
            "post": _op(
                tag,
                f"Schedule a follow-up task on a {kind}",
                "crm:write",
                {"201": _json(_ref("FollowUp"), "The task.")},
                body=_ref("FollowUpInput"),
                errors=(404,),
            ),
        },
    }


def _paths() -> dict[str, Schema]:
    account_id = [_p("Id")]
    paths: dict[str, Schema] = {
        OPENAPI_PATH: {
            "get": {
                "tags": ["Meta"],
                "summary": "This document",
                "description": "Public: needs no credentials.",
                "operationId": "",
                "security": [],
                "x-scopes": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "description": "OpenAPI 3.1"}, "The OpenAPI document."
                    )
                },
            }
        },
        "/api/v1/lookup": {
            "get": _op(
                "Lookup",
                "Look a caller up by number",
                "lookup",
                {"200": _json(_ref("CallerCard"), "The caller card; `known: false` if nobody.")},
                description="The embedded store first, then the configured CRM connectors, "
                "within the lookup time budget.",
                parameters=[
                    _param(
                        "number",
                        "query",
                        {"type": "string", "maxLength": 100},
                        "the number in any format, e.g. `+34911234567` (URL-encode the +)",
                    )
                    | {"required": True}
                ],
            )
        },
        **_person_paths("contacts", "contact"),
        **_person_paths("leads", "lead"),
        "/api/v1/accounts": {
            "get": _op(
                "Accounts",
                "List accounts",
                "crm:read",
                {"200": _json(_ref("AccountPage"), "A page of accounts, newest first.")},
                parameters=[_p("Owner"), _p("Query"), _p("Limit"), _p("Offset")],
            ),
            "post": _op(
                "Accounts",
                "Create an account",
                "crm:write",
                {"201": _json(_ref("Account"), "Created.")},
                body=_ref("AccountInput"),
            ),
        },
        "/api/v1/accounts/{id}": {
            "parameters": account_id,
            "get": _op(
                "Accounts",
                "Read an account",
                "crm:read",
                {"200": _json(_ref("Account"), "The account.")},
                errors=(404,),
            ),
            "patch": _op(
                "Accounts",
                "Change an account",
                "crm:write",
                {"200": _json(_ref("Account"), "The account as changed.")},
                body=_ref("AccountInput"),
                errors=(404,),
            ),
            "delete": _op(
                "Accounts", "Delete an account", "crm:write", {"204": NO_CONTENT}, errors=(404,)
            ),
        },
        "/api/v1/import": {"post": _import_op()},
        "/api/v1/calls": {
            "get": _op(
                "Calls",
                "List calls, newest first",
                "calls:read",
                {"200": _json(_ref("CallPage"), "A page of call records.")},
                description="A signed-in panel agent sees only the calls they took part in.",
                parameters=[
                    *(
                        _param(
                            name,
                            "query",
                            {"type": "string"},
                            f"started {word}: epoch seconds or ISO 8601 (UTC without offset)",
                        )
                        for name, word in (("since", "at or after"), ("until", "before"))
                    ),
                    _query_text("extension", "an extension that rang or answered"),
                    _param("outcome", "query", {"type": "string", "enum": list(OUTCOMES)}),
                    _query_text("number", "caller, DID or dialed number, as typed or E.164"),
                    _param("direction", "query", {"type": "string", "enum": list(DIRECTIONS)}),
                    _p("Limit"),
                    _query_text("cursor", "the previous page's `next_cursor`"),
                ],
            )
        },
        "/api/v1/calls/{id}": {
            "parameters": [_param("id", "path", {"type": "string"}, "`<pbx>:<linkedid>`")],
            "get": _op(
                "Calls",
                "Read a call record",
                "calls:read",
                {"200": _json(_ref("CallRecord"), "The call record.")},
                errors=(404,),
            ),
            "patch": _op(
                "Calls",
                "Set a call's notes and disposition",
                "calls:write",
                {"200": _json(_ref("CallRecord"), "The call record as changed.")},
                body=_ref("CallAnnotation"),
                errors=(404,),
            ),
        },
        "/api/v1/originate": {"post": _originate_op()},
        "/api/v1/originate/{call_id}": {
            "parameters": [_param("call_id", "path", {"type": "string"}, "from POST originate")],
            "get": _op(
                "Click-to-call",
                "Follow a click-to-call",
                "originate",
                {"200": _json(_ref("OriginateAttempt"), "Where the attempt is.")},
                description="Attempts are kept a while after they end.",
                errors=(404,),
            ),
        },
    }
    paths.update(scoring_paths())  # /leads/{id}/score, score-inputs, form-fills, /worklist
    paths["/api/v1/outbox"] = {
        "get": _op(
            "Write-back",
            "CRM write-back queues and the records parked in them",
            "outbox:read",
            {"200": _json(_ref("OutboxDoc"), "Each queue's figures and the parked records.")},
            description="A record a CRM kept refusing (it answered with an error about that "
            "record) is parked after a few attempts so the calls behind it go on; an outage "
            "holds the whole queue instead (`held_until`). See docs/connectors/outbox.md.",
            parameters=[_query_text("connector", "only this connector's parked records")],
        )
    }
    paths["/api/v1/outbox/retry"] = {
        "post": _op(
            "Write-back",
            "Re-drive parked records",
            "outbox:write",
            {"200": _json(_ref("RetryResult"), "How many records went back in their queue.")},
            description="After fixing the cause on the CRM side: every parked record, one "
            "connector's (`connector`), or the listed outbox row ids (`ids`).",
            body=_ref("RetryRequest"),
            errors=(404,),
        )
    }
    return paths


def _import_op() -> Schema:
    op = _op(
        "Import",
        "Import contacts or leads from CSV",
        "crm:write",
        {"200": _json(_ref("ImportReport"), "What was imported, and the bad rows.")},
        body=_ref("ImportRequest"),
        description="A JSON body, or the CSV itself as `text/csv` with the options in the "
        "query (`kind`, `strict`, `region`, `mapping` as JSON). Rows are checked with the "
        "same rules as the API and deduplicated. With `strict`, any bad row rejects the "
        "whole file: 422 `import_rejected` with the report in `details`.",
    )
    op["requestBody"]["content"]["text/csv"] = {"schema": {"type": "string"}}
    op["parameters"] = [
        _param("kind", "query", {"type": "string", "enum": ["contacts", "leads"]}, "text/csv"),
        _param("strict", "query", {"type": "string", "enum": ["true", "false"]}, "text/csv"),
        _param("region", "query", {"type": "string", "maxLength": 2}, "text/csv"),
        _param("mapping", "query", {"type": "string"}, "text/csv: a JSON object"),
    ]
    op["responses"]["413"] = _error_response(
        "Body over the server's request size limit (`too_large`)."
    )
    return op


def _originate_op() -> Schema:
    op = _op(
        "Click-to-call",
        "Ring an agent, then dial the customer",
        "originate",
        {
            "202": _json(
                _ref("OriginateAttempt"),
                "Started; follow it with GET /api/v1/originate/{call_id}.",
            )
        },
        body=_ref("OriginateRequest"),
        description="The agent's phone rings first; once answered, the customer is dialed "
        "through the configured dialplan context. The number is checked against dial-string "
        "injection and the do-not-call list before anything reaches the PBX.",
    )
    r = op["responses"]
    r["400"] = _error_response(
        "Not JSON (`invalid_json`) or a number that cannot be dialed (`invalid_number`)."
    )
    r["403"] = _error_response(
        "Lacks the scope (`forbidden`) or the number is on the do-not-call list (`do_not_call`)."
    )
    r["429"] = _error_response(
        "Too many calls in a short time (`rate_limited`, details `{retry_after}` in seconds)."
    )
    r["503"] = _error_response("No PBX is connected (`pbx_down`); nothing was dialed.")
    op["responses"] = dict(sorted(r.items()))
    return op


def _operation_id(method: str, path: str) -> str:
    words = [w.strip("{}").replace("-", "_") for w in path.removeprefix("/api/v1/").split("/")]
    return "_".join([method, *(w.replace(".", "_") for w in words)])


def build_document() -> dict[str, Any]:
    """The whole document, fresh each call (callers may change their copy)."""
    paths = _paths()
    for path, item in paths.items():
        for method, op in item.items():
            if method != "parameters":
                op["operationId"] = _operation_id(method, path)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Centralita API",
            "version": API_VERSION,
            "summary": "Caller lookup, CRM records, call log and click-to-call.",
            "description": "JSON in and out. Every route but this document needs an API token "
            "(`Authorization: Bearer <token>`) or a panel session, with the scope each "
            "operation names (`x-scopes`). `*` allows everything; `X:write` also allows "
            '`X:read`. Errors are `{"error": {"id", "message", "details"}}`. '
            "See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": name}
            for name in (
                "Lookup",
                "Contacts",
                "Leads",
                "Accounts",
                "Import",
                "Calls",
                "Click-to-call",
                "Meta",
            )
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `api.tokens` in the config; its "
                    "`scopes` decide what it may do.",
                },
                "panelSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "A signed-in panel user; scopes follow the role (agent and "
                    "supervisor: lookup, calls:read, crm:write; admin: *). Agents see only "
                    "their own calls and may not delete records or import (403, "
                    "details.role = supervisor).",
                },
            },
            "schemas": {**_schemas(), **outbox_schemas()},
            "responses": _responses(),
            "parameters": _parameters(),
        },
    }


# -- serving ---------------------------------------------------------------------------------

DOCUMENT_BODY: web.AppKey[bytes] = web.AppKey("openapi_document", bytes)


async def serve_document(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[DOCUMENT_BODY],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


def setup_openapi(app: web.Application) -> None:
    """Serve the document at ``GET /api/v1/openapi.json``, public."""
    app[DOCUMENT_BODY] = json.dumps(build_document(), indent=1).encode()
    app.router.add_get(OPENAPI_PATH, serve_document)  # public: see auth.PUBLIC_PATHS
