"""Generic HTTP connector against its stand-in: lookup mapping, signed write-back, failures."""

from __future__ import annotations

import pytest

from connectors.base import RecordRejected
from connectors.generic_http import GenericHttpConnector
from connectors.settings import GenericHttpSettings
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes.connector_harness import record as record  # tests/test_outbox.py imports it
from tests.fakes.generic_http import GenericCrm

PERSON = {
    "name": "Ana García",
    "org": {"name": "Acme SL"},
    "id": 42,
    "stage": "qualified",
    "score": 7.5,
    "url": "https://crm.example/people/42",
}


async def make(aiohttp_server, crm: GenericCrm, **over: object) -> GenericHttpConnector:
    server = await aiohttp_server(crm.app())
    base = str(server.make_url("/api"))
    kw: dict[str, object] = {
        "name": "inhouse",
        "lookup_url": base + "/lookup?number={e164}",
        "log_url": base + "/calls",
        "headers": {"Authorization": f"Bearer {crm.token}"},
        "fields": {
            "display_name": "data.name",
            "company": "data.org.name",
            "person_id": "data.id",
            "lead_status": "data.stage",
            "lead_score": "data.score",
            "external_url": "data.url",
        },
        "hmac_secret": crm.secret,
        "timeout_ms": 300,
        "write_timeout_ms": 300,
    }
    kw.update(over)
    return GenericHttpConnector(
        GenericHttpSettings(**kw), public_url=harness.PUBLIC_URL, clock=lambda: 1_700_000_100.0
    )


async def test_lookup_maps_the_answer_onto_the_card(aiohttp_server):
    crm = GenericCrm(people={"+34612345678": PERSON})
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        card = await conn.lookup("+34612345678", "612345678")
        assert card is not None
        assert (card.display_name, card.company, card.person_id) == ("Ana García", "Acme SL", "42")
        assert card.kind is PersonKind.CONTACT and card.lead_status == "qualified"
        assert card.lead_score == 7.5 and card.external_url == PERSON["url"]
        assert card.source == "inhouse"
        assert await conn.lookup("+34699999999", "699999999") is None
        assert conn.health().last_success is not None and conn.health().last_error is None


async def test_number_is_url_encoded_so_nothing_is_smuggled(aiohttp_server):
    crm = GenericCrm(people={"+34612345678": PERSON, harness.HOSTILE: PERSON})
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        assert await conn.lookup("+34612345678", "") is not None  # '+' arrived as '+'
        # unencoded, this would add a second number=... that the receiver reads instead
        assert await conn.lookup("+34699999999&number=+34612345678", "") is None
        card = await conn.lookup(harness.HOSTILE, harness.HOSTILE)
        assert card is not None  # the stand-in has that literal key: it arrived intact


async def test_signed_record_is_verified_and_stored_once(aiohttp_server):
    crm = GenericCrm(secret="hmac-key")
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        await conn.log_call(harness.record(caller_name="<script>alert(1)</script>"))
        await conn.log_call(harness.record())  # a retry after a lost answer
    assert crm.bad_signatures == 0 and crm.posts == 2
    assert list(crm.calls) == ["call-1"]
    stored = crm.calls["call-1"]
    assert stored["caller_name"] == "<script>alert(1)</script>"
    assert stored["recording_url"] == harness.PUBLIC_URL + "/api/v1/recordings/call-1"


async def test_wrong_secret_is_refused_by_the_receiver(aiohttp_server):
    crm = GenericCrm(secret="hmac-key")
    async with harness.started(await make(aiohttp_server, crm, hmac_secret="other-key")) as conn:
        with pytest.raises(ConnectorError):
            await conn.log_call(harness.record())
        assert crm.bad_signatures == 1 and crm.calls == {}
        assert "HTTP 401" in (conn.health().last_error or "")


async def test_receiver_refusing_the_record_is_permanent(aiohttp_server):
    async with harness.started(await make(aiohttp_server, GenericCrm())) as conn:
        with pytest.raises(RecordRejected):
            await conn.log_call({"direction": "inbound"})  # no id: cannot ever be delivered


async def test_crm_down_and_hanging_raise_connector_errors(aiohttp_server):
    crm = GenericCrm(people={"+34612345678": PERSON})
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        await harness.check_down_then_hanging(conn, crm.faults)
    assert crm.calls == {}
