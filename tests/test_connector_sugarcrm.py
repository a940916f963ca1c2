"""SugarCRM / SuiteCRM v4_1 connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.settings import SuiteCrmSettings
from connectors.sugarcrm import SugarCrmConnector
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.lookup.card import PersonKind
from tests.fakes.sugarcrm import SugarCrm
from tests.test_connector_generic_http import record

HOSTILE = "' OR 1=1 --"


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
    kw: dict[str, object] = {
        "name": "suite",
        "url": str(server.make_url("")).rstrip("/"),
        "username": crm.username,
        "password": crm.password,
        "users": {"201": "u-sally"},
        "timeout_ms": 400,
        "write_timeout_ms": 1000,
    }
    kw.update(over)
    conn = SugarCrmConnector(SuiteCrmSettings(**kw), public_url="https://gw.example")
    await conn.start()
    return conn


@pytest.fixture
async def conn(aiohttp_server, crm):
    c = await make(aiohttp_server, crm)
    yield c
    await c.close()


@pytest.mark.parametrize(
    ("e164", "raw", "name", "kind"),
    [
        ("+34612345678", "612345678", "Ana García", PersonKind.CONTACT),  # stored spaced E.164
        ("+12125550100", "2125550100", "Bob Smith", PersonKind.CONTACT),  # stored US national
        ("+34612345679", "0034612345679", "Luis Pérez", PersonKind.LEAD),  # stored digits
        ("+34910000000", "910000000", "Acme SL", PersonKind.ACCOUNT),  # stored 0034... digits
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
    assert await conn.lookup("+34612345678", "") is not None
    crm.expire_sessions()
    card = await conn.lookup("+34612345678", "")
    assert card is not None and card.display_name == "Ana García"
    assert crm.logins == 2


async def test_wrong_password_is_a_clear_error(aiohttp_server, crm):
    conn = await make(aiohttp_server, crm, password="wrong")
    try:
        with pytest.raises(ConnectorError, match="login refused"):
            await conn.lookup("+34612345678", "")
        assert "wrong" not in (conn.health().last_error or "")
        # the next calls do not hammer the CRM with failing logins (accounts get locked)
        with pytest.raises(ConnectorError, match="not retried"):
            await conn.lookup("+34612345678", "")
        assert crm.faults.requests.count("login") == 1
    finally:
        await conn.close()


async def test_hostile_caller_id_finds_nothing_and_breaks_nothing(conn, crm):
    # the stand-in really runs the fragment: an unescaped one matches every contact
    naive = await conn._entries("Contacts", f"contacts.phone_work = '{HOSTILE}'", ("id",), 1.0)
    assert {e["id"] for e in naive} == {r["id"] for r in crm.tables["Contacts"]}
    crm.queries.clear()
    assert await conn.lookup(HOSTILE, HOSTILE) is None
    assert await conn.lookup("+34612345678", "612' OR '1'='1") is not None
    assert all("1=1" not in q and "'1'='1" not in q for q in crm.queries)
    assert conn.health().last_error is None


async def test_answered_call_is_logged_once_with_relations(conn, crm):
    rec = record(caller_name=HOSTILE + " <b>x</b>")
    await conn.log_call(rec)
    await conn.log_call(rec)  # the outbox retried after a lost answer
    (call,) = crm.tables["Calls"]
    assert call["direction"] == "Inbound" and call["status"] == "Held"
    assert call["date_start"] == "2023-11-14 22:13:20"  # UTC
    assert (call["duration_hours"], call["duration_minutes"]) == ("0", "1")
    assert (call["parent_type"], call["parent_id"]) == ("Contacts", "c-ana")
    assert call["assigned_user_id"] == "u-sally"
    assert call["name"].startswith("Inbound call " + HOSTILE) and len(call["name"]) <= 50
    assert "https://gw.example/api/v1/recordings/call-1" in call["description"]
    assert "wants a quote" in call["description"] and "interested" in call["description"]
    assert crm.relationships == [(call["id"], "contacts", "c-ana")]


async def test_missed_call_from_unknown_number(conn, crm):
    await conn.log_call(
        record(
            "call-2",
            caller="+34699000111",
            answered_by="",
            answered_at=None,
            outcome="abandoned",
            talk_seconds=0,
        )
    )
    (call,) = crm.tables["Calls"]
    assert call["status"] == "Not Held" and call["assigned_user_id"] == crm.user_id
    assert "parent_id" not in call and crm.relationships == []


async def test_outbound_call_to_a_lead(conn, crm):
    await conn.log_call(record("call-3", direction="outbound", caller="201", dialed="+34612345679"))
    (call,) = crm.tables["Calls"]
    assert call["direction"] == "Outbound" and call["parent_type"] == "Leads"
    assert crm.relationships == [(call["id"], "leads", "l-luis")]


async def test_crm_errors_and_timeouts(conn, crm):
    crm.faults.down = True
    with pytest.raises(ConnectorError):
        await conn.lookup("+34612345678", "")
    with pytest.raises(ConnectorError):
        await conn.log_call(record())
    crm.faults.down = False
    crm.faults.hang = True
    with pytest.raises(ConnectorTimeout):
        await conn.lookup("+34612345678", "")
    crm.faults.hang = False
    assert crm.tables["Calls"] == []
    assert "no answer within" in (conn.health().last_error or "")
