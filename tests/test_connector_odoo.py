"""Odoo JSON-RPC connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.odoo import OdooConnector
from connectors.settings import OdooSettings
from tests.fakes import connector_harness as harness
from tests.fakes.odoo import Odoo


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
    kw = harness.settings_for(server, name="odoo", username=crm.login, password=crm.password)
    settings = OdooSettings(**{**kw, "database": crm.database, "users": {"201": "5"}, **over})
    return OdooConnector(settings, public_url=harness.PUBLIC_URL)


conn = harness.connector_fixture(make)


@pytest.mark.parametrize(("e164", "raw", "name", "kind"), harness.KNOWN_CALLERS)
@pytest.mark.parametrize("phone_validation", [True, False])
async def test_lookup_with_and_without_phone_validation(
    aiohttp_server, e164, raw, name, kind, phone_validation
):
    crm = seed(Odoo(has_phone_validation=phone_validation))
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        card = await conn.lookup(e164, raw)
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
    await harness.check_logs_in_again(conn, crm.renumber_user, lambda: crm.logins)


async def test_wrong_api_key_is_a_clear_error(aiohttp_server, crm):
    async with harness.started(await make(aiohttp_server, crm, password="revoked")) as conn:
        await harness.check_refused_login(conn, crm.faults, login="common.login", secret="revoked")


async def test_hostile_caller_id_is_data(conn, crm):
    assert await conn.lookup(harness.HOSTILE, harness.HOSTILE) is None
    assert await conn.lookup("+34612345678", "612' OR '1'='1") is not None
    flat = repr(crm.domains)
    assert "1=1" not in flat


@pytest.mark.parametrize("version", [16, 17])
async def test_call_is_noted_once_on_the_contact(aiohttp_server, version):
    crm = seed(Odoo(version=version))
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        rec = harness.record(caller_name="<script>alert(1)</script>")
        await conn.log_call(rec)
        await conn.log_call(rec)
    (msg,) = crm.rows["mail.message"]
    assert (msg["model"], msg["res_id"]) == ("res.partner", 11)
    assert msg["subtype_xmlid"] == "mail.mt_note" and msg["author_id"] == 50
    assert "<script>" not in msg["body"] and "&lt;script&gt;" in msg["body"]
    assert harness.PUBLIC_URL + "/api/v1/recordings/call-1" in msg["body"]
    assert "wants a quote" in msg["body"]


async def test_call_with_unknown_number_is_skipped(conn, crm):
    await conn.log_call(harness.record("call-7", caller="+34699000111"))
    assert crm.rows["mail.message"] == []


async def test_crm_errors_and_timeouts(conn, crm):
    await harness.check_down_then_hanging(conn, crm.faults)
    assert crm.rows["mail.message"] == []
