"""SugarCRM / SuiteCRM v4_1 connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.settings import SuiteCrmSettings
from connectors.sugarcrm import SugarCrmConnector
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes.sugarcrm import SugarCrm


@pytest.fixture
def crm() -> SugarCrm:
    crm = SugarCrm()
    crm.add(
        "Contacts",
        id="c-ana",
        first_name="Ana",
        last_name="García",
        account_name="Acme SL",
        account_id="a-acme",
        phone_mobile="+34 612 34 56 78",
        assigned_user_id="u-sally",
        assigned_user_name="sally",
    )
    crm.add("Contacts", id="c-us", first_name="Bob", last_name="Smith", phone_work="(212) 555-0100")
    crm.add(
        "Leads",
        id="l-luis",
        first_name="Luis",
        last_name="Pérez",
        status="New",
        phone_home="612345679",
    )
    crm.add("Accounts", id="a-acme", name="Acme SL", phone_office="0034910000000")
    return crm


async def make(aiohttp_server, crm: SugarCrm, **over: object) -> SugarCrmConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(server, name="suite", username=crm.username, password=crm.password)
    settings = SuiteCrmSettings(**{**kw, "users": {"201": "u-sally"}, **over})
    return SugarCrmConnector(settings, public_url=harness.PUBLIC_URL)


conn = harness.connector_fixture(make)


@pytest.mark.parametrize(
    ("e164", "raw", "name", "kind"),
    [
        *harness.KNOWN_CALLERS,  # stored as spaced E.164, US national, bare digits, 0034 digits
        ("+34612345679", "0034612345679", "Luis Pérez", PersonKind.LEAD),  # raw with 00 prefix
    ],
)
async def test_lookup_finds_every_stored_spelling(conn, e164, raw, name, kind):
    card = await conn.lookup(e164, raw)
    assert card is not None and card.display_name == name and card.kind is kind
    assert card.source == "suite" and card.number == e164
    assert card.external_url is not None and f"record={card.person_id}" in card.external_url


async def test_lookup_card_fields_and_miss(conn, crm):
    card = await conn.lookup("+34612345678", "")
    assert card is not None
    assert (card.company, card.person_id, card.account_id) == ("Acme SL", "c-ana", "a-acme")
    assert card.owner == "201"  # the CRM owner mapped back to the agent
    assert await conn.lookup("+34699000111", "699000111") is None
    assert crm.logins == 1  # one session for all of it
    assert conn.health().last_success is not None


async def test_session_expiry_logs_in_again_once(conn, crm):
    await harness.check_logs_in_again(conn, crm.expire_sessions, lambda: crm.logins)


async def test_wrong_password_is_a_clear_error(aiohttp_server, crm):
    async with harness.started(await make(aiohttp_server, crm, password="wrong")) as conn:
        await harness.check_refused_login(conn, crm.faults, login="login", secret="wrong")


async def test_hostile_caller_id_finds_nothing_and_breaks_nothing(conn, crm):
    # the stand-in really runs the fragment: an unescaped one matches every contact
    naive = await conn._entries("Contacts", "contacts.phone_work = '' OR '1'='1'", ("id",), 1.0)
    assert {e["id"] for e in naive} == {r["id"] for r in crm.tables["Contacts"]}
    crm.queries.clear()
    assert await conn.lookup(harness.HOSTILE, harness.HOSTILE) is None
    assert await conn.lookup("+34612345678", "612' OR '1'='1") is not None
    assert all("1=1" not in q and "'1'='1" not in q for q in crm.queries)
    assert conn.health().last_error is None


async def test_answered_call_is_logged_once_with_relations(conn, crm):
    rec = harness.record(caller_name=harness.HOSTILE + " <b>x</b>")
    await conn.log_call(rec)
    await conn.log_call(rec)  # the outbox retried after a lost answer
    (call,) = crm.tables["Calls"]
    assert call["direction"] == "Inbound" and call["status"] == "Held"
    assert call["date_start"] == "2023-11-14 22:13:20"  # UTC
    assert (call["duration_hours"], call["duration_minutes"]) == ("0", "1")
    assert (call["parent_type"], call["parent_id"]) == ("Contacts", "c-ana")
    assert call["assigned_user_id"] == "u-sally"
    assert call["name"].startswith("Inbound call " + harness.HOSTILE) and len(call["name"]) <= 50
    assert harness.PUBLIC_URL + "/api/v1/recordings/call-1" in call["description"]
    assert "wants a quote" in call["description"] and "interested" in call["description"]
    assert crm.relationships == [(call["id"], "contacts", "c-ana")]


async def test_missed_call_from_unknown_number(conn, crm):
    await conn.log_call(harness.missed("call-2", "abandoned", caller="+34699000111"))
    (call,) = crm.tables["Calls"]
    assert call["status"] == "Not Held" and call["assigned_user_id"] == crm.user_id
    assert "parent_id" not in call and crm.relationships == []


async def test_outbound_call_to_a_lead(conn, crm):
    await conn.log_call(
        harness.record("call-3", direction="outbound", caller="201", dialed="+34612345679")
    )
    (call,) = crm.tables["Calls"]
    assert call["direction"] == "Outbound" and call["parent_type"] == "Leads"
    assert crm.relationships == [(call["id"], "leads", "l-luis")]


async def test_crm_errors_and_timeouts(conn, crm):
    await harness.check_down_then_hanging(conn, crm.faults)
    assert crm.tables["Calls"] == []
