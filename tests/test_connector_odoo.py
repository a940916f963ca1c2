"""Odoo JSON-RPC connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.odoo import OdooConnector
from connectors.settings import OdooSettings
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.lookup.card import PersonKind
from tests.fakes.odoo import Odoo
from tests.test_connector_generic_http import record

HOSTILE = "' OR 1=1 --"


def seed(crm: Odoo) -> Odoo:
    crm.add("res.users", id=5, name="Sally", partner_id=[50, "Sally"])
    acme = crm.add("res.partner", name="Acme SL", is_company=True, phone="+34 910 00 00 00")
    crm.add(
        "res.partner",
        id=11,
        name="Ana García",
        is_company=False,
        parent_id=[acme, "Acme SL"],
        commercial_company_name="Acme SL",
        mobile="612 34 56 78",
        user_id=[5, "Sally"],
    )
    crm.add("res.partner", name="Bob Smith", is_company=False, phone="+1 212-555-0100")
    crm.add(
        "crm.lead",
        id=21,
        name="Website enquiry",
        contact_name="Luis Pérez",
        partner_name="Pérez SA",
        phone="0034612345679",
        stage_id=[2, "Qualified"],
        probability=60.0,
        partner_id=False,
    )
    return crm


@pytest.fixture
def crm() -> Odoo:
    return seed(Odoo())


async def make(aiohttp_server, crm: Odoo, **over: object) -> OdooConnector:
    server = await aiohttp_server(crm.app())
    kw: dict[str, object] = {
        "name": "odoo",
        "url": str(server.make_url("")).rstrip("/"),
        "database": crm.database,
        "username": crm.login,
        "password": crm.password,
        "users": {"201": "5"},
        "timeout_ms": 400,
        "write_timeout_ms": 1000,
    }
    kw.update(over)
    conn = OdooConnector(OdooSettings(**kw), public_url="https://gw.example")
    await conn.start()
    return conn


@pytest.fixture
async def conn(aiohttp_server, crm):
    c = await make(aiohttp_server, crm)
    yield c
    await c.close()


CASES = [
    ("+34612345678", "612345678", "Ana García", PersonKind.CONTACT),
    ("+12125550100", "2125550100", "Bob Smith", PersonKind.CONTACT),
    ("+34612345679", "612345679", "Luis Pérez", PersonKind.LEAD),
    ("+34910000000", "910000000", "Acme SL", PersonKind.ACCOUNT),
]


@pytest.mark.parametrize(("e164", "raw", "name", "kind"), CASES)
@pytest.mark.parametrize("phone_validation", [True, False])
async def test_lookup_with_and_without_phone_validation(
    aiohttp_server, e164, raw, name, kind, phone_validation
):
    crm = seed(Odoo(has_phone_validation=phone_validation))
    conn = await make(aiohttp_server, crm)
    try:
        card = await conn.lookup(e164, raw)
    finally:
        await conn.close()
    assert card is not None and card.display_name == name and card.kind is kind
    used = {leaf[0] for d in crm.domains for leaf in d if isinstance(leaf, list)}
    assert ("phone_mobile_search" in used) is phone_validation


async def test_lookup_card_and_miss(conn, crm):
    card = await conn.lookup("+34612345678", "")
    assert card is not None
    assert (card.company, card.owner, card.person_id) == ("Acme SL", "201", "11")
    assert card.external_url is not None and card.external_url.endswith(
        "/web#id=11&model=res.partner&view_type=form"
    )
    lead = await conn.lookup("+34612345679", "")
    assert lead is not None and (lead.lead_status, lead.lead_score) == ("Qualified", 6.0)
    assert await conn.lookup("+34699000111", "") is None
    assert crm.logins == 1


async def test_stale_uid_logs_in_again(conn, crm):
    assert await conn.lookup("+34612345678", "") is not None
    crm.renumber_user()
    assert await conn.lookup("+34612345678", "") is not None
    assert crm.logins == 2


async def test_wrong_api_key_is_a_clear_error(aiohttp_server, crm):
    conn = await make(aiohttp_server, crm, password="revoked")
    try:
        with pytest.raises(ConnectorError, match="login refused"):
            await conn.lookup("+34612345678", "")
        assert "revoked" not in (conn.health().last_error or "")
        with pytest.raises(ConnectorError, match="not retried"):
            await conn.lookup("+34612345678", "")
        assert crm.faults.requests.count("common.login") == 1
    finally:
        await conn.close()


async def test_hostile_caller_id_is_data(conn, crm):
    assert await conn.lookup(HOSTILE, HOSTILE) is None
    assert await conn.lookup("+34612345678", "612' OR '1'='1") is not None
    flat = repr(crm.domains)
    assert "1=1" not in flat


@pytest.mark.parametrize("version", [16, 17])
async def test_call_is_noted_once_on_the_contact(aiohttp_server, version):
    crm = seed(Odoo(version=version))
    conn = await make(aiohttp_server, crm)
    try:
        rec = record(caller_name="<script>alert(1)</script>")
        await conn.log_call(rec)
        await conn.log_call(rec)
    finally:
        await conn.close()
    (msg,) = crm.rows["mail.message"]
    assert (msg["model"], msg["res_id"]) == ("res.partner", 11)
    assert msg["subtype_xmlid"] == "mail.mt_note" and msg["author_id"] == 50
    assert "<script>" not in msg["body"] and "&lt;script&gt;" in msg["body"]
    assert "https://gw.example/api/v1/recordings/call-1" in msg["body"]
    assert "wants a quote" in msg["body"]


async def test_call_with_unknown_number_is_skipped(conn, crm):
    await conn.log_call(record("call-7", caller="+34699000111"))
    assert crm.rows["mail.message"] == []


async def test_crm_errors_and_timeouts(conn, crm):
    crm.faults.down = True
    with pytest.raises(ConnectorError):
        await conn.lookup("+34612345678", "")
    crm.faults.down = False
    crm.faults.hang = True
    with pytest.raises(ConnectorTimeout):
        await conn.log_call(record())
    crm.faults.hang = False
    assert crm.rows["mail.message"] == []
    assert conn.health().last_error is not None
