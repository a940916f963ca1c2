"""Lead scoring: the pure model, the store edge (real SQLite file), and the HTTP API with calls
ending on the gateway's bus, as a lead's score and the agent's worklist would show them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import Gateway, create_app
from gateway.store.calllog import CallLog
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import ActivityRepository, FollowUpRepository, PersonRepository
from gateway.store.scoring import (
    DAY,
    LeadFacts,
    ScoringParameter,
    ScoringSettings,
    manual_inputs,
    score,
)
from gateway.store.scoring_service import SCORING, ScoringService
from gateway.store.validation import FieldError
from tests.test_panel_support import API_TOKEN, ended, make_config

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NOW = 1_795_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def with_engagement() -> ScoringSettings:
    """The product map's two manual parameters plus one fed by answered calls."""
    return ScoringSettings(
        parameters=[
            ScoringParameter(name="proximity", weight=2),
            ScoringParameter(name="interest", weight=1),
            ScoringParameter(
                name="engagement", weight=1, derive="answered_calls", points_each=5, default=0
            ),
        ]
    )


# -- the pure model ------------------------------------------------------------------------------


@pytest.mark.parametrize(("proximity", "interest"), [(9, 8), (10, 0), (0, 10), (3.5, 7), (10, 10)])
def test_default_global_is_two_proximity_plus_interest_over_three(
    proximity: float, interest: float
) -> None:
    facts = LeadFacts(now=NOW, manual={"proximity": proximity, "interest": interest})
    result = score(facts, ScoringSettings())
    assert result.global_score == round((2 * proximity + interest) / 3, 2)
    assert [(p.name, p.value, p.weight) for p in result.parts] == [
        ("proximity", proximity, 2.0),
        ("interest", interest, 1.0),
    ]


def test_unknown_parts_are_left_out_and_nothing_known_is_no_score() -> None:
    settings = ScoringSettings()
    only_proximity = score(LeadFacts(now=NOW, manual={"proximity": 6}), settings)
    assert only_proximity.global_score == 6
    assert only_proximity.parts[1].value is None and only_proximity.parts[1].detail == "not set"
    assert score(LeadFacts(now=NOW), settings).global_score is None
    pessimist = ScoringSettings(
        parameters=[
            ScoringParameter(name="proximity", weight=2),
            ScoringParameter(name="interest", weight=1, default=0),
        ]
    )
    assert score(LeadFacts(now=NOW, manual={"proximity": 6}), pessimist).global_score == 4


def test_derived_parameters_count_recent_events_and_decay_with_time() -> None:
    settings = ScoringSettings(
        parameters=[
            ScoringParameter(name="calls", derive="answered_calls", window_days=30, points_each=4),
            ScoringParameter(name="forms", derive="form_fills", window_days=7, points_each=3),
            ScoringParameter(name="fresh", derive="recency", window_days=10),
            ScoringParameter(
                name="origin", derive="lead_source", by_source={"web_form": 8, "import": 2}
            ),
        ]
    )
    facts = LeadFacts(
        now=NOW,
        source="web_form",
        answered_call_times=(NOW - 1 * DAY, NOW - 29 * DAY, NOW - 31 * DAY),  # last one too old
        form_fill_times=(NOW - 2 * DAY, NOW - 8 * DAY),
        last_contact_at=NOW - 2.5 * DAY,
    )
    parts = {p.name: p for p in score(facts, settings).parts}
    assert parts["calls"].value == 8 and "2 answered call(s)" in parts["calls"].detail
    assert parts["forms"].value == 3
    assert parts["fresh"].value == 7.5
    assert parts["origin"].value == 8
    many = LeadFacts(now=NOW, answered_call_times=tuple(NOW - i * 60 for i in range(9)))
    assert {p.name: p.value for p in score(many, settings).parts}["calls"] == 10  # capped
    old = LeadFacts(now=NOW, last_contact_at=NOW - 40 * DAY, source="api")
    parts = {p.name: p for p in score(old, settings).parts}
    assert parts["fresh"].value == 0
    assert parts["origin"].value is None  # a source with no value in by_source


def test_scoring_section_errors_name_the_key() -> None:
    bad = [
        ({"parameters": [{"name": "x", "weight": 0}]}, "weight"),
        ({"parameters": [{"name": "x", "default": 11}]}, "default"),
        ({"parameters": [{"name": "x"}, {"name": "x"}]}, "parameters"),
        ({"parameters": [{"name": "x", "derive": "astrology"}]}, "derive"),
        ({"parameters": [{"name": "Bad Name"}]}, "name"),
    ]
    for raw, key in bad:
        with pytest.raises(msgspec.ValidationError, match=key):
            msgspec.convert(raw, ScoringSettings, strict=True)


def test_the_scoring_section_reads_from_a_config_mapping() -> None:
    """Until config.py has a ``scoring:`` key, the struct converts on its own the same way."""
    raw = {"parameters": [{"name": "proximity", "weight": 2}, {"name": "interest"}]}
    settings = msgspec.convert(raw, ScoringSettings, strict=True)
    assert settings.manual_names == ("proximity", "interest")
    assert settings.parameters[1].weight == 1.0


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"proximity": 11}, "proximity", "from 0 to 10"),
        ({"interest": -0.5}, "interest", "from 0 to 10"),
        ({"interest": "8"}, "interest", "found text"),
        ({"interest": True}, "interest", "found bool"),
        ({"budget": 5}, "budget", "proximity, interest"),
        ({}, "body", "at least one"),
        ([8, 5], "body", "JSON object"),
    ],
)
def test_manual_inputs_are_checked_field_by_field(body: Any, field: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        manual_inputs(body, ScoringSettings())
    assert info.value.field == field and reason in info.value.reason


def test_manual_inputs_accept_the_scale_and_null_clears() -> None:
    got = manual_inputs({"proximity": 0, "interest": None}, ScoringSettings())
    assert got == {"proximity": 0.0, "interest": None}
    assert manual_inputs({"proximity": 10}, ScoringSettings()) == {"proximity": 10.0}


# -- the store edge ------------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "x.db", clock=Clock())
    yield database
    await database.close()


async def _lead(db: Database, name: str, number: str, **fields: Any) -> int:
    result = await PersonRepository(db).create(
        PersonType.LEAD, {"first_name": name, "phones": [number], **fields}
    )
    return result.person.id


async def _stored_score(db: Database, pid: int) -> float | None:
    person = await PersonRepository(db).get(pid)
    assert person is not None
    return person.score


async def test_inputs_calls_and_form_fills_feed_the_stored_score(db: Database) -> None:
    settings = ScoringSettings(
        parameters=[
            *ScoringSettings().parameters,
            ScoringParameter(name="engagement", derive="answered_calls", points_each=5, default=0),
            ScoringParameter(name="forms", derive="form_fills", points_each=10, default=0),
        ]
    )
    service = ScoringService(db, settings, clock=Clock())
    pid = await _lead(db, "Ana", "+34911234567")
    assert await service.recompute(pid) is not None
    assert await _stored_score(db, pid) == 0  # engagement and forms default to 0
    await service.set_inputs(pid, {"proximity": 9, "interest": 6}, "ana")
    # (2*9 + 6 + 0 + 0) / 5
    assert await _stored_score(db, pid) == 4.8
    log = CallLog(db)
    for i, outcome in enumerate(["answered", "noanswer", "answered"]):
        saved = await log.save(
            {
                "id": f"sim:{i}",
                "direction": "inbound",
                "caller": "+34911234567",
                "outcome": outcome,
                "started_at": NOW - DAY * (i + 1),
            }
        )
        assert saved
    await service.recompute(pid)
    assert await _stored_score(db, pid) == round((2 * 9 + 6 + 10 + 0) / 5, 2)
    assert await service.add_form_fill(pid, "pricing")
    assert await _stored_score(db, pid) == round((2 * 9 + 6 + 10 + 10) / 5, 2)
    inputs = await service.inputs(pid)
    assert inputs["proximity"]["value"] == 9 and inputs["proximity"]["set_by"] == "ana"
    await service.set_inputs(pid, {"interest": None}, "ana")
    assert "interest" not in await service.inputs(pid)
    assert await _stored_score(db, pid) == round((2 * 9 + 10 + 10) / 4, 2)


async def test_contacts_and_unknown_ids_are_not_scored(db: Database) -> None:
    service = ScoringService(db, ScoringSettings(), clock=Clock())
    contact = await PersonRepository(db).create(
        PersonType.CONTACT, {"first_name": "Eva", "phones": ["+34911000111"]}
    )
    assert await service.recompute(contact.person.id) is None
    assert await service.recompute(9999) is None
    assert not await service.add_form_fill(contact.person.id, "pricing")


async def test_a_lead_the_model_knows_nothing_about_keeps_its_imported_score(
    db: Database,
) -> None:
    service = ScoringService(db, ScoringSettings(), clock=Clock())
    imported = await _lead(db, "Imported", "+34911000222", score=7.5)
    scored = await _lead(db, "Scored", "+34911000333")
    await service.set_inputs(scored, {"proximity": 3, "interest": 3}, None)
    await service.rescore_all()
    assert await _stored_score(db, imported) == 7.5
    assert await _stored_score(db, scored) == 3


# -- the HTTP API and the bus ------------------------------------------------------------------


async def scored_app(
    tmp_path: Path, settings: ScoringSettings | None = None, clock: Clock | None = None
) -> tuple[web.Application, Gateway]:
    """The app ``centralita run`` serves (create_app sets scoring up), with this test's
    settings and clock."""
    cfg = make_config(tmp_path)
    gw = Gateway(cfg)
    app = await create_app(cfg, gw)
    service = app[SCORING]
    service.settings = settings or ScoringSettings()
    service.clock = clock or Clock()
    return app, gw


@pytest.fixture
async def api(
    aiohttp_client: Any, tmp_path: Path
) -> AsyncIterator[tuple[TestClient, Gateway, ScoringService, Clock]]:
    clock = Clock()
    app, gw = await scored_app(tmp_path, with_engagement(), clock)
    client = await aiohttp_client(app)
    yield client, gw, app[SCORING], clock


async def _post_lead(client: TestClient, name: str, number: str, **fields: Any) -> int:
    body = {"first_name": name, "phones": [number], **fields}
    resp = await client.post("/api/v1/leads", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    pid: int = (await resp.json())["id"]
    return pid


async def _score_doc(client: TestClient, pid: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/leads/{pid}/score", headers=AUTH)
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_agent_sets_proximity_and_interest_and_reads_the_parts(
    api: tuple[TestClient, Gateway, ScoringService, Clock],
) -> None:
    client, _gw, _service, _clock = api
    pid = await _post_lead(client, "Lucía", "+34911234567")
    resp = await client.put(
        f"/api/v1/leads/{pid}/score-inputs", json={"proximity": 8, "interest": 5}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["global"] == round((2 * 8 + 5 + 0) / 4, 2)
    assert {p["name"]: p["value"] for p in doc["parts"]} == {
        "proximity": 8,
        "interest": 5,
        "engagement": 0,
    }
    assert doc["inputs"]["proximity"]["set_by"] == "crm"
    lead = await (await client.get(f"/api/v1/leads/{pid}", headers=AUTH)).json()
    assert lead["score"] == doc["global"]  # what the card, lists and campaigns read
    assert (await _score_doc(client, pid))["global"] == doc["global"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"proximity": 10.5}, "proximity"),
        ({"interest": "high"}, "interest"),
        ({"engagement": 3}, "engagement"),  # computed from calls, not set by hand
        ({"<script>": 1}, "<script>"),
    ],
)
async def test_bad_inputs_get_422_naming_the_field_and_change_nothing(
    api: tuple[TestClient, Gateway, ScoringService, Clock], body: dict[str, Any], field: str
) -> None:
    client, _gw, _service, _clock = api
    pid = await _post_lead(client, "Lucía", "+34911234567")
    await client.put(f"/api/v1/leads/{pid}/score-inputs", json={"proximity": 4}, headers=AUTH)
    resp = await client.put(f"/api/v1/leads/{pid}/score-inputs", json=body, headers=AUTH)
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["id"] == "invalid_field" and err["details"]["field"] == field
    assert (await _score_doc(client, pid))["inputs"]["proximity"]["value"] == 4


async def test_score_routes_refuse_strangers_contacts_and_unknown_ids(
    api: tuple[TestClient, Gateway, ScoringService, Clock],
) -> None:
    client, _gw, _service, _clock = api
    pid = await _post_lead(client, "Lucía", "+34911234567")
    assert (await client.get(f"/api/v1/leads/{pid}/score")).status == 401
    resp = await client.post(
        "/api/v1/contacts", json={"first_name": "Eva", "phones": ["+34911000111"]}, headers=AUTH
    )
    contact = (await resp.json())["id"]
    for path in (f"/api/v1/leads/{contact}/score", "/api/v1/leads/424242/score"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404 and (await resp.json())["error"]["id"] == "not_found"
    resp = await client.put(
        "/api/v1/leads/424242/score-inputs", json={"proximity": 1}, headers=AUTH
    )
    assert resp.status == 404
    resp = await client.put(f"/api/v1/leads/{pid}/score-inputs", data=b"{", headers=AUTH)
    assert resp.status == 400 and (await resp.json())["error"]["id"] == "invalid_json"


async def test_an_answered_call_raises_the_callers_score(
    api: tuple[TestClient, Gateway, ScoringService, Clock],
) -> None:
    client, gw, service, clock = api
    pid = await _post_lead(client, "Lucía", "+34911234567")
    other = await _post_lead(client, "Pablo", "+34911999888")
    await client.put(
        f"/api/v1/leads/{pid}/score-inputs", json={"proximity": 6, "interest": 6}, headers=AUTH
    )
    before = (await _score_doc(client, pid))["global"]
    gw.bus.publish(ended("c-missed", ["101"], None, caller="+34911234567", started_at=clock.now))
    await service.settled()
    assert (await _score_doc(client, pid))["global"] == before  # a missed call is no engagement
    gw.bus.publish(ended("c-1", ["101"], "101", caller="+34 911 23 45 67", started_at=clock.now))
    await service.settled()
    lead = await (await client.get(f"/api/v1/leads/{pid}", headers=AUTH)).json()
    assert lead["score"] == round((2 * 6 + 6 + 5) / 4, 2) > before
    parts = {p["name"]: p for p in (await _score_doc(client, pid))["parts"]}
    assert parts["engagement"]["value"] == 5 and "1 answered call" in parts["engagement"]["detail"]
    # the call log writes the same call a moment later: it is not counted twice
    assert gw.call_log is not None
    for _ in range(500):
        if await gw.call_log.get("sim:c-1") is not None:
            break
        await asyncio.sleep(0.01)
    assert await gw.call_log.get("sim:c-1") is not None, "the call log never wrote the call"
    gw.bus.publish(ended("c-1", ["101"], "101", caller="+34911234567", started_at=clock.now))
    await service.settled()
    assert (await _score_doc(client, pid))["global"] == lead["score"]
    untouched = await (await client.get(f"/api/v1/leads/{other}", headers=AUTH)).json()
    assert untouched["score"] is None
    # a month later the call has left the window
    clock.now += 31 * DAY
    assert (await _score_doc(client, pid))["global"] == round((2 * 6 + 6 + 0) / 4, 2)


async def test_a_form_fill_is_recorded_and_rescored(
    api: tuple[TestClient, Gateway, ScoringService, Clock],
) -> None:
    client, _gw, _service, _clock = api
    pid = await _post_lead(client, "Lucía", "+34911234567")
    resp = await client.post(
        f"/api/v1/leads/{pid}/form-fills", json={"form": "pricing"}, headers=AUTH
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        f"/api/v1/leads/{pid}/form-fills", json={"at": "yesterday"}, headers=AUTH
    )
    assert resp.status == 422 and (await resp.json())["error"]["details"]["field"] == "at"
    resp = await client.post("/api/v1/leads/424242/form-fills", json={}, headers=AUTH)
    assert resp.status == 404


async def test_worklist_orders_by_score_then_due_date_and_filters_by_owner(
    api: tuple[TestClient, Gateway, ScoringService, Clock],
) -> None:
    client, gw, _service, clock = api
    assert gw.db is not None
    tasks = FollowUpRepository(gw.db)

    async def lead(name: str, number: str, p: float | None, **fields: Any) -> int:
        pid = await _post_lead(client, name, number, **fields)
        if p is not None:
            resp = await client.put(
                f"/api/v1/leads/{pid}/score-inputs",
                json={"proximity": p, "interest": p},
                headers=AUTH,
            )
            assert resp.status == 200
        return pid

    warm = await lead("Warm", "+34911000001", 5, owner="ana")
    hot = await lead("Hot", "+34911000002", 9, owner="luis")
    warm_later = await lead("WarmLater", "+34911000003", 5, owner="ana")
    unscored = await lead("Unscored", "+34911000004", None, owner="ana")
    won_with_task = await lead("WonTask", "+34911000005", 2, owner="luis")
    won_idle = await lead("WonIdle", "+34911000006", 10, owner="ana")
    await tasks.add(warm, clock.now + 3600, "call back", "ana")
    await tasks.add(warm_later, clock.now + 7200, "call back", "ana")
    await tasks.add(warm_later, clock.now + 99999, "later", "ana")
    await tasks.add(won_with_task, clock.now + 60, "upsell", "ana")
    for pid in (won_with_task, won_idle):
        resp = await client.patch(f"/api/v1/leads/{pid}", json={"status": "won"}, headers=AUTH)
        assert resp.status == 200, await resp.text()

    resp = await client.get("/api/v1/worklist", headers=AUTH)
    assert resp.status == 200
    doc = await resp.json()
    order = [i["person"]["id"] for i in doc["items"]]
    assert order == [hot, warm, warm_later, won_with_task, unscored]
    by_id = {i["person"]["id"]: i for i in doc["items"]}
    assert by_id[warm_later]["open_follow_ups"] == 2
    assert by_id[warm_later]["next_follow_up"]["title"] == "call back"
    assert by_id[hot]["next_follow_up"] is None and by_id[hot]["score"] == round(
        (2 * 9 + 9 + 0) / 4, 2
    )

    mine = await (await client.get("/api/v1/worklist?owner=ana", headers=AUTH)).json()
    assert [i["person"]["id"] for i in mine["items"]] == [warm, warm_later, won_with_task, unscored]
    page = await (await client.get("/api/v1/worklist?limit=2", headers=AUTH)).json()
    assert [i["person"]["id"] for i in page["items"]] == [hot, warm] and page["next_cursor"]
    rest = f"/api/v1/worklist?limit=2&cursor={page['next_cursor']}"
    page = await (await client.get(rest, headers=AUTH)).json()
    assert hot not in [i["person"]["id"] for i in page["items"]]
    assert (await client.get("/api/v1/worklist?limit=0", headers=AUTH)).status == 400
    assert (await client.get("/api/v1/worklist")).status == 401


async def test_a_note_counts_as_contact_for_recency(db: Database) -> None:
    settings = ScoringSettings(
        parameters=[ScoringParameter(name="fresh", derive="recency", window_days=10)]
    )
    clock = Clock()
    service = ScoringService(db, settings, clock=clock)
    pid = await _lead(db, "Ana", "+34911234567")
    assert (await service.recompute(pid)) is not None
    assert await _stored_score(db, pid) is None  # never contacted: no score
    await ActivityRepository(db).add(pid, "note", "spoke at the fair", at=NOW - 5 * DAY)
    await service.recompute(pid)
    assert await _stored_score(db, pid) == 5


async def test_a_call_ended_before_the_call_log_wrote_it_counts_once(db: Database) -> None:
    """The bus hands the record to scoring and to the call log writer at the same moment:
    whichever runs first, the call counts once."""
    settings = ScoringSettings(
        parameters=[ScoringParameter(name="engagement", derive="answered_calls", points_each=4)]
    )
    service = ScoringService(db, settings, clock=Clock())
    pid = await _lead(db, "Ana", "+34911234567")
    record = ended("L1", ["101"], "101", caller="+34911234567", started_at=NOW - 60).record
    assert await service.lead_of_call(record) == pid
    await service.recompute(pid, extra_call=record)  # not in the call log yet
    assert await _stored_score(db, pid) == 4
    saved = await CallLog(db).save({**record.to_json(), "id": "sim:L1", "pbx": "sim"})
    assert saved
    await service.recompute(pid, extra_call=record)  # now in both: still one call
    assert await _stored_score(db, pid) == 4
    missed = ended("L2", ["101"], None, caller="+34911234567", started_at=NOW - 30).record
    await service.recompute(pid, extra_call=missed)
    assert await _stored_score(db, pid) == 4
    stranger = ended("L3", ["101"], "101", caller="+34600999999").record
    assert await service.lead_of_call(stranger) is None


async def test_the_openapi_fragment_documents_exactly_the_scoring_routes(tmp_path: Path) -> None:
    """What gateway/api/openapi.py merges in: a valid document, one operation per route."""
    from openapi_spec_validator import validate

    from gateway.api.openapi import build_document

    doc = build_document()
    validate(doc)
    fragment = {
        path: item
        for path, item in doc["paths"].items()
        if path.endswith(("/score", "/score-inputs", "/form-fills", "/worklist"))
    }
    documented = {
        (method.upper(), path)
        for path, item in fragment.items()
        for method in item
        if method != "parameters"
    }
    app, gw = await scored_app(tmp_path)
    registered = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource and r.resource.canonical in fragment and r.method != "HEAD"
    }
    assert registered == documented
    assert gw.db is not None
    await gw.db.close()
