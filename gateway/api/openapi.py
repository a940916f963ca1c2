"""The OpenAPI 3.1 document of ``/api/v1``, served public at ``GET /api/v1/openapi.json``.

Every body schema and every query parameter is emitted from the msgspec structs in
``gateway/api/schemas.py``, the same types the handlers decode requests with and encode
responses through, so the document cannot drift from the code. This module adds only what
structs do not say: paths, scopes, summaries and which errors each route answers. Every
operation names the scope it needs twice: in ``x-scopes`` (for tools) and in its description
(for people). tests/test_api_openapi.py compares the documented routes with the registered
ones, checks each documented scope against the 403 the route really answers, and validates
real responses.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from aiohttp import web

from gateway.api import audit, callername
from gateway.api import outbox as outbox_api
from gateway.api import schemas as s
from gateway.api import users as users_api
from gateway.campaigns import api as campaigns_api
from gateway.campaigns import model as campaign_model
from gateway.campaigns import segment as campaign_segment
from gateway.campaigns import store as campaign_store
from gateway.intel import api as intel_api
from gateway.panel.sessions import COOKIE
from gateway.reports.model import BestHourReport

__all__ = ["OPENAPI_PATH", "build_document", "setup_openapi"]

OPENAPI_PATH = "/api/v1/openapi.json"
API_VERSION = "2.0.0"
REF = "#/components/schemas/{name}"

Schema = dict[str, Any]

# the structs named in the document; msgspec adds every struct and enum they refer to
_BODIES: tuple[Any, ...] = (
    s.Error,
    s.Person,
    s.PersonWritten,
    s.PersonDetail,
    s.PersonPage,
    s.ContactInput,
    s.LeadInput,
    s.Activity,
    s.ActivityInput,
    s.FollowUp,
    s.FollowUpInput,
    s.Account,
    s.AccountInput,
    s.AccountPage,
    s.CallerCard,
    s.CallRecord,
    s.CallPage,
    s.CallAnnotation,
    s.OriginateRequest,
    s.OriginateAttempt,
    s.ImportRequest,
    s.ImportReport,
    s.ScoreDoc,
    s.FormFill,
    s.Worklist,
    audit.AuditPage,
    outbox_api.OutboxDoc,
    outbox_api.RetryRequest,
    outbox_api.RetryResult,
    campaigns_api.CampaignList,
    campaigns_api.CampaignDoc,
    campaign_model.CampaignIn,
    campaign_store.CampaignResults,
    campaigns_api.MemberPage,
    campaigns_api.ReplyMarked,
    campaign_model.Segment,
    campaign_segment.SegmentCount,
    campaigns_api.PreviewIn,
    campaigns_api.Preview,
    campaigns_api.UnsubscribeIn,
    campaigns_api.Unsubscribed,
    intel_api.DealInput,
    intel_api.Deal,
    intel_api.DealPage,
    intel_api.DealImportReport,
    intel_api.PersonMetrics,
    BestHourReport,
)


def _ref(name: str) -> Schema:
    return {"$ref": REF.format(name=name)}


def _schemas() -> dict[str, Schema]:
    _, components = msgspec.json.schema_components(_BODIES, ref_template=REF)
    return dict(components)


def _query_parameters(query: type[msgspec.Struct]) -> list[Schema]:
    """The struct's fields as query parameters, each with its schema, bounds and default.
    Enums are referenced from the components (``_schemas`` emits them)."""
    (ref,), components = msgspec.json.schema_components((query,), ref_template=REF)
    struct = components[ref["$ref"].rsplit("/", 1)[1]]
    required = set(struct.get("required", ()))
    out = []
    for name, schema in struct["properties"].items():
        schema = dict(schema)
        description = schema.pop("description", "")
        options = schema.get("anyOf")
        if options and {"type": "null"} in options:  # absent rather than null in a query
            rest = [o for o in options if o != {"type": "null"}]
            schema.pop("anyOf")
            schema = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **schema}
            schema.pop("default", None)
            description = description or rest[0].get("description", "")
            schema.pop("description", None)
        param = _param(name, "query", schema, description) | {"required": name in required}
        if schema.get("type") == "array":  # comma-separated: a repeated parameter is a 400
            param |= {"style": "form", "explode": False}
        out.append(param)
    return out


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


def _parameters() -> dict[str, Schema]:
    return {
        "Id": _param("id", "path", {"type": "string", "pattern": "^[0-9]+$"}, "numeric id"),
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
    query = s.LeadQuery if kind == "lead" else s.ContactQuery
    return {
        base: {
            "get": _op(
                tag,
                f"List {plural}",
                "crm:read",
                {"200": _json(_ref("PersonPage"), f"A page of {plural}, newest first.")},
                parameters=_query_parameters(query),
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
                parameters=_query_parameters(s.LookupQuery),
            )
        },
        "/api/v1/callername": {
            "get": _op(
                "Lookup",
                "The caller's name as plain text, for Asterisk's CURL()",
                "lookup",
                {
                    "200": {
                        "description": "The name (printable, one line, at most 60 "
                        "characters); empty when unknown or over the time limit.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                parameters=_query_parameters(callername.CallerNameQuery),
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
                parameters=_query_parameters(s.AccountQuery),
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
                "List calls",
                "calls:read",
                {"200": _json(_ref("CallPage"), "A page of call records.")},
                description="A signed-in panel agent sees only the calls they took part in.",
                parameters=_query_parameters(s.CallQuery),
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
    paths.update(_scoring_paths())
    paths["/api/v1/outbox"] = {
        "get": _op(
            "Write-back",
            "CRM write-back queues and the records parked in them",
            "outbox:read",
            {"200": _json(_ref("OutboxDoc"), "Each queue's figures and the parked records.")},
            description="A record a CRM kept refusing (it answered with an error about that "
            "record) is parked after a few attempts so the calls behind it go on; an outage "
            "holds the whole queue instead (`held_until`). See docs/connectors/outbox.md.",
            parameters=_query_parameters(outbox_api.OutboxQuery),
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
    paths[audit.PATH] = {
        "get": _op(
            "Audit",
            "Changes of do-not-call, opt-out and owners",
            "audit:read",
            {"200": _json(_ref("AuditPage"), "One page of the audit log, newest first.")},
            description="One entry per field changed: who, when, old and new value "
            "(panel: supervisors and admins).",
            parameters=_query_parameters(audit.AuditQuery),
        )
    }
    paths.update(users_api.openapi_paths())  # /users: administration (admins, users:*)
    paths.update(_campaign_paths())  # follow-up campaigns (supervisors, campaigns:*)
    paths.update(_intel_paths())  # deals and customer metrics
    paths.update(_report_file_paths())  # reports as SVG charts, CSV and XLSX
    paths.update(_report_json_paths())  # the reports as JSON
    return paths


def _report_file_paths() -> dict[str, Schema]:
    from gateway.reports import routes as report_files

    names = sorted(report_files.REPORTS)
    files = {
        "image/svg+xml": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
        report_files.XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}},
    }
    op = _op(
        "Reports",
        "A report as a chart (SVG), CSV or XLSX",
        report_files.SCOPE,
        {"200": {"description": "The file (CSV and XLSX as an attachment).", "content": files}},
        parameters=[
            _param("name", "path", {"type": "string", "enum": names}, "the report"),
            _param("format", "path", {"type": "string", "enum": ["svg", "csv", "xlsx"]}),
            *_query_parameters(report_files.FileQuery),
        ],
        errors=(404,),
        description="The JSON report's query, plus `lang` (es/en; else Accept-Language) for "
        f"the words. Charts: {', '.join(sorted(report_files.CHARTS))}. CSV keeps the API's "
        "field names, fractions and seconds; XLSX has headers in the language and formats.",
    )
    return {"/api/v1/reports/{name}.{format}": {"get": op}}


def _report_json_paths() -> dict[str, Schema]:
    from gateway.reports import api as reports_api
    from gateway.reports.model import ReportQuery

    shapes = reports_api.SHAPES
    refs, _ = msgspec.json.schema_components(tuple(shapes.values()), ref_template=REF)
    one_of = [{"$ref": ref} for ref in dict.fromkeys(r["$ref"] for r in refs)]
    op = _op(
        "Reports",
        "A report as JSON",
        reports_api.SCOPE,
        {"200": _json({"oneOf": one_of}, "The report (its shape by name).")},
        parameters=[
            _param("name", "path", {"type": "string", "enum": sorted(shapes)}, "the report"),
            *_query_parameters(ReportQuery),
        ],
        errors=(404,),
        description="Reports: "
        + ", ".join(f"`{n}` ({t.__name__})" for n, t in shapes.items())
        + ". Days are calendar days in `panel.timezone`; rates are fractions, durations "
        "seconds. See docs/api.md (Reports) for how each figure is counted.",
    )
    return {"/api/v1/reports/{name}": {"get": op}}


def _report_schemas() -> dict[str, Schema]:
    from gateway.reports import api as reports_api

    _, components = msgspec.json.schema_components(
        tuple(reports_api.SHAPES.values()), ref_template=REF
    )
    return dict(components)


def _intel_paths() -> dict[str, Schema]:
    deal = _json(_ref("Deal"), "The deal (`outcome`: created or updated).")
    create = _op(
        "Deals",
        "Record a deal (an order when won)",
        "crm:write",
        {"201": deal, "200": deal},
        body=_ref("DealInput"),
        description="For a person (`person_id`, or the person with `email` or `phone`) or an "
        "account. With `external_id`, posting it again updates that deal. The metrics of "
        "the people it concerns are recomputed before the answer.",
    )
    imported = _op(
        "Deals",
        "Import deals from CSV",
        "crm:write",
        {"200": _json(_ref("DealImportReport"), "Rows created, updated, and the bad ones.")},
        description="`text/csv` with a header row naming `DealInput` fields (person_id, "
        "email, phone, account_id, title, stage, amount, currency, product, closed_at, "
        "created_at, lost_reason, external_id). A bad row is reported and skipped. "
        "Panel: supervisors and admins.",
    )
    imported["requestBody"] = {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
    imported["responses"]["400"] = _r("BadRequest")
    imported["responses"]["422"] = _r("Unprocessable")
    imported["responses"]["413"] = _error_response(
        "Body over the server's request size limit (`too_large`)."
    )
    imported["responses"] = dict(sorted(imported["responses"].items()))
    return {
        "/api/v1/deals": {
            "get": _op(
                "Deals",
                "A person's or an account's deals, newest first",
                "crm:read",
                {"200": _json(_ref("DealPage"), "One page of deals.")},
                parameters=_query_parameters(intel_api.DealQuery),
            ),
            "post": create,
        },
        "/api/v1/deals/import": {"post": imported},
        "/api/v1/people/{id}/metrics": {
            "parameters": [_p("Id")],
            "get": _op(
                "Deals",
                "A person's customer metrics, each with its reason",
                "crm:read",
                {"200": _json(_ref("PersonMetrics"), "Every metric, in a fixed order.")},
                description="RFM, lifetime value (historic and projected), churn risk at 30 "
                "and 60 days, last activity, marketing, engagement, satisfaction, best channel "
                "and hour, data quality and the next best interaction. `value` null: the data "
                "cannot give a number; `reason` says why. `text` words it in `lang`.",
                parameters=_query_parameters(intel_api.MetricsQuery),
                errors=(404,),
            ),
        },
        "/api/v1/leads/{id}/best-hour": {
            "parameters": [_p("Id")],
            "get": _op(
                "Leads",
                "When to call a lead: answer rates by weekday and hour",
                "crm:read",
                {"200": _json(_ref("BestHourReport"), "Every weekday x hour and every hour.")},
                description="The lead's outbound calls of the last year per local weekday x "
                "hour (`panel.timezone`) and per hour, each rate leaning on everybody's for "
                "the same slot (`prior`, worth a few calls), so a lead called twice is not "
                "judged on two calls and a lead never called gets everybody's best hour. "
                "`best_hour` is the hour the worklist and campaign call tasks use.",
                errors=(404,),
            ),
        },
        "/api/v1/segments/best-hour": {
            "post": _op(
                "Campaigns",
                "When to call a segment's leads: answer rates by weekday and hour",
                "campaigns:read",
                {"200": _json(_ref("BestHourReport"), "Every weekday x hour and every hour.")},
                body=_ref("Segment"),
                description="The outbound calls of the last year to the leads the segment "
                "holds now (a campaign's `segment`), per weekday x hour and per hour, each "
                "rate pulled toward the overall answer rate (`prior`). Panel: supervisors "
                "and admins.",
            ),
        },
    }


def _conflict(op: Schema, description: str) -> Schema:
    op["responses"]["409"] = _error_response(description)
    op["responses"] = dict(sorted(op["responses"].items()))
    return op


def _campaign_paths() -> dict[str, Schema]:
    tag = "Campaigns"
    ident = [_p("Id")]
    one = _json(_ref("CampaignDoc"), "The campaign.")
    busy = "The campaign's status does not allow it (`campaign_busy`, details `{status, action}`)."
    checked = (
        "The body is the campaign's one definition (segment, steps, caps) the panel edits and "
        "the scheduler runs. Besides types, a 422 names the field when a branch points "
        "backwards or past the end, an e-mail step lacks the campaign's language, the time "
        "zone is unknown, or a template would not render (`steps[2].templates.es.html`, with "
        "the line in `reason`)."
    )

    def status_op(summary: str, description: str) -> Schema:
        op = _op(tag, summary, "campaigns:write", {"200": one}, errors=(404,),
                 description=description)  # fmt: skip
        return _conflict(op, busy)

    return {
        "/api/v1/campaigns": {
            "get": _op(
                tag,
                "List campaigns with their key figures",
                "campaigns:read",
                {"200": _json(_ref("CampaignList"), "Every campaign, newest first.")},
                parameters=_query_parameters(campaigns_api.CampaignQuery),
            ),
            "post": _op(
                tag,
                "Create a campaign (a draft)",
                "campaigns:write",
                {"201": _json(_ref("CampaignDoc"), "Created, as a draft: nobody enters yet.")},
                body=_ref("CampaignIn"),
                description=checked,
            ),
        },
        "/api/v1/campaigns/preview": {
            "post": _op(
                tag,
                "Render an e-mail step as a lead would get it",
                "campaigns:read",
                {"200": _json(_ref("Preview"), "Subject, HTML and plain text.")},
                body=_ref("PreviewIn"),
                errors=(404,),
                description="With a sample lead, or the fields of `person_id`. The unsubscribe "
                "link is a sample that does nothing; the footer with it is added in the "
                "version's language when the template has no `{{ unsubscribe_url }}`.",
            )
        },
        "/api/v1/campaigns/{id}": {
            "parameters": ident,
            "get": _op(tag, "Read a campaign", "campaigns:read", {"200": one}, errors=(404,)),
            "put": _conflict(
                _op(
                    tag,
                    "Replace a campaign's definition",
                    "campaigns:write",
                    {"200": one},
                    body=_ref("CampaignIn"),
                    errors=(404,),
                    description="Drafts and paused campaigns only. " + checked,
                ),
                busy,
            ),
            "delete": _conflict(
                _op(
                    tag,
                    "Delete a draft",
                    "campaigns:write",
                    {"204": NO_CONTENT},
                    errors=(404,),
                    description="A campaign that has started is ended instead: its history stays.",
                ),
                busy,
            ),
        },
        "/api/v1/campaigns/{id}/start": {
            "parameters": ident,
            "post": status_op(
                "Start or resume a campaign",
                "Matching leads enter at the scheduler's next tick; resuming moves every "
                "member's due time on by the length of the pause.",
            ),
        },
        "/api/v1/campaigns/{id}/pause": {
            "parameters": ident,
            "post": status_op("Pause a campaign", "Members hold where they are; nobody enters."),
        },
        "/api/v1/campaigns/{id}/end": {
            "parameters": ident,
            "post": status_op(
                "End a campaign for good", "Every active member leaves with reason `ended`."
            ),
        },
        "/api/v1/campaigns/{id}/results": {
            "parameters": ident,
            "get": _op(
                tag,
                "A campaign's funnel and totals",
                "campaigns:read",
                {"200": _json(_ref("CampaignResults"), "Per step and in total.")},
                errors=(404,),
                description="Entered and left (by reason), each step's runs by status, "
                "opens, replies, calls answered and dispositions; e-mails sent, failed, "
                "bounced; unsubscribes; conversions (won while a member) and revived deals "
                "by lost reason.",
            ),
        },
        "/api/v1/campaigns/{id}/members": {
            "parameters": ident,
            "get": _op(
                tag,
                "A campaign's members",
                "campaigns:read",
                {"200": _json(_ref("MemberPage"), "One page of members, oldest first.")},
                parameters=_query_parameters(campaigns_api.MemberQuery),
                errors=(404,),
            ),
        },
        "/api/v1/campaigns/{id}/members/{member_id}/replied": {
            "parameters": [
                *ident,
                _param(
                    "member_id",
                    "path",
                    {"type": "string", "pattern": "^[0-9]+$"},
                    "numeric id of the member",
                ),
            ],
            "post": _conflict(
                _op(
                    tag,
                    "Record that a member replied to the campaign's e-mail",
                    "campaigns:write",
                    {"200": _json(_ref("ReplyMarked"), "The e-mail marked replied.")},
                    errors=(404,),
                    description="The member's last e-mail is marked replied; the member "
                    "leaves (`replied`) at its next step unless a later step branches on a "
                    "reply.",
                ),
                "No e-mail was sent to this member yet (`no_email`).",
            ),
        },
        "/api/v1/segments/count": {
            "post": _op(
                tag,
                "How many leads a segment holds now",
                "campaigns:read",
                {"200": _json(_ref("SegmentCount"), "Total, reachable by e-mail and phone.")},
                body=_ref("Segment"),
                description="The live count the campaign form shows; lost leads are counted "
                "per lost reason. Dates are days in the panel's time zone.",
            ),
        },
        "/api/v1/leads/{id}/unsubscribe": {
            "parameters": ident,
            "post": _op(
                "Leads",
                "Opt a lead out of e-mail on their behalf",
                "crm:write",
                {"200": _json(_ref("Unsubscribed"), "Opted out (or already was).")},
                body=_ref("UnsubscribeIn"),
                errors=(404,),
                description="The same way out as the link in campaign e-mails: the person "
                "and all their addresses are opted out, every campaign drops them, it is "
                "recorded (audit log, unsubscribes) and `lead.unsubscribed` is sent to "
                "webhooks. The body is optional.",
            ),
        },
    }


def _scoring_paths() -> dict[str, Schema]:
    ident = [_p("Id")]
    score = _json(_ref("ScoreDoc"), "The score, its parts and the manual inputs.")
    inputs = msgspec.json.schema(s.ScoreInputs)
    put = _op(
        "Leads",
        "Set a lead's manual score inputs",
        "crm:write",
        {"200": score},
        body=inputs,
        errors=(404,),
    )
    put["requestBody"]["content"]["application/json"]["schema"]["minProperties"] = 1
    return {
        "/api/v1/leads/{id}/score": {
            "parameters": ident,
            "get": _op(
                "Leads", "A lead's score and its parts", "crm:read", {"200": score}, errors=(404,)
            ),
        },
        "/api/v1/leads/{id}/score-inputs": {"parameters": ident, "put": put},
        "/api/v1/leads/{id}/form-fills": {
            "parameters": ident,
            "post": _op(
                "Leads",
                "Record a web form the lead filled in",
                "crm:write",
                {"201": _json(_ref("ScoreDoc"), "The score after it.")},
                body=_ref("FormFill"),
                errors=(404,),
            ),
        },
        "/api/v1/worklist": {
            "get": _op(
                "Leads",
                "Who to call next: best score first, then earliest follow-up",
                "crm:read",
                {"200": _json(_ref("Worklist"), "One page of the worklist.")},
                parameters=_query_parameters(s.WorklistQuery),
            )
        },
    }


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
        p | {"required": False, "description": f"text/csv only: {p.get('description', '')}"}
        for p in _query_parameters(s.ImportQuery)
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
    r["503"] = _error_response(
        "No PBX is connected (`pbx_down`; in a cluster: no instance owns the PBX, or its owner"
        " did not take the request in time); nothing was dialed."
    )
    r["504"] = _error_response(
        "In a cluster: the PBX's owner took the request but did not confirm it in time"
        " (`pbx_no_answer`); the call may have been placed."
    )
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
                "Campaigns",
                "Deals",
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
                    "supervisor: lookup, calls:read, crm:write; supervisor also campaigns:write; "
                    "admin: *). Agents see only their own calls and may not delete records, "
                    "import or use campaigns (403, details.role = supervisor).",
                },
            },
            "schemas": {**_schemas(), **users_api.schemas(), **_report_schemas()},
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
