"""vTiger web service connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.settings import VtigerSettings
from connectors.vtiger import VtigerConnector
from gateway.errors import ConnectorError
from tests.fakes import connector_harness as harness
from tests.fakes.vtiger import Vtiger

# VTQL wants a column after 'or' ('1'='1' is a syntax error there), so the tautology that
# works on the real CRM is this one
TAUTOLOGY = "' or phone like '%"


@pytest.fixture
def crm() -> Vtiger:
    crm = Vtiger()
    acme = crm.add("Accounts", accountname="Acme SL", phone="0034910000000")
    crm.add(
        "Contacts",
        id="12x7",
        firstname="Ana",
        lastname="García",
        account_id=acme,
        mobile="+34 612 34 56 78",
        assigned_user_id="19x5",
    )
    crm.add("Contacts", firstname="Bob", lastname="Smith", homephone="(212) 555-0100")
    crm.add(
        "Leads",
        id="10x9",
        firstname="Luis",
        lastname="Pérez",
        company="Pérez SA",
        leadstatus="Hot",
        phone="612345679",
    )
    return crm


async def make(aiohttp_server, crm: Vtiger, **over: object) -> VtigerConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(
        server, name="tiger", username=crm.username, access_key=crm.access_key
    )
    settings = VtigerSettings(**{**kw, "users": {"201": "19x5"}, **over})
    return VtigerConnector(settings, public_url=harness.PUBLIC_URL)


conn = harness.connector_fixture(make)


@pytest.mark.parametrize(("e164", "raw", "name", "kind"), harness.KNOWN_CALLERS)
async def test_lookup_finds_every_stored_spelling(conn, e164, raw, name, kind):
    card = await conn.lookup(e164, raw)
    assert card is not None and card.display_name == name and card.kind is kind
    assert card.external_url is not None and card.external_url.endswith(
        "record=" + (card.person_id or "").partition("x")[2]
    )


async def test_lookup_card_and_miss(conn, crm):
    card = await conn.lookup("+34612345678", "")
    assert card is not None
    assert (card.company, card.owner, card.person_id) == ("Acme SL", "201", "12x7")
    lead = await conn.lookup("+34612345679", "")  # stored as 612345679
    assert lead is not None and (lead.company, lead.lead_status) == ("Pérez SA", "Hot")
    assert await conn.lookup("+34699000111", "") is None
    assert crm.logins == 1


@pytest.mark.parametrize("code", ["INVALID_SESSIONID", "SESSION_LEFT_IDLE"])
async def test_expired_session_logs_in_again(conn, crm, code):
    await harness.check_logs_in_again(conn, lambda: crm.expire_sessions(code), lambda: crm.logins)


async def test_wrong_access_key_is_a_clear_error(aiohttp_server, crm):
    async with harness.started(await make(aiohttp_server, crm, access_key="nope")) as conn:
        await harness.check_refused_login(
            conn, crm.faults, login="login", secret="nope", refusal="INVALID_USER_CREDENTIALS"
        )


async def test_hostile_caller_id_finds_nothing(conn, crm):
    # the stand-in really evaluates the query: a naive one would return every contact
    naive = await conn._query(f"select id from Contacts where phone = '{TAUTOLOGY}';", 1.0)
    assert len(naive) == len(crm.tables["Contacts"])
    crm.queries.clear()
    assert await conn.lookup(harness.HOSTILE, harness.HOSTILE) is None
    assert await conn.lookup(TAUTOLOGY, TAUTOLOGY) is None
    assert await conn.lookup("+34612345678", "612' or '1'='1") is not None
    assert all("1=1" not in q and "like '%'" not in q for q in crm.queries)


async def test_answered_call_becomes_a_held_call_event_once(conn, crm):
    rec = harness.record(caller_name=harness.HOSTILE)
    await conn.log_call(rec)
    await conn.log_call(rec)
    (ev,) = crm.tables["Events"]
    assert ev["activitytype"] == "Call" and ev["eventstatus"] == "Held"
    # UTC as sent: vTiger stores event times as given (see test_connector_vtiger_writeback)
    assert (ev["date_start"], ev["time_start"]) == ("2023-11-14", "22:13:20")
    assert (ev["due_date"], ev["time_end"]) == ("2023-11-14", "22:14:20")
    assert ev["contact_id"] == "12x7" and ev["assigned_user_id"] == "19x5"
    assert harness.HOSTILE in ev["subject"]
    assert harness.PUBLIC_URL + "/api/v1/recordings/call-1" in ev["description"]


async def test_missed_call_to_lead_is_not_held(conn, crm):
    await conn.log_call(
        harness.missed("call-9", direction="outbound", caller="201", dialed="+34612345679")
    )
    (ev,) = crm.tables["Events"]
    assert ev["eventstatus"] == "Not Held" and ev["parent_id"] == "10x9"
    assert ev["assigned_user_id"] == "19x5"  # the agent who dialed


async def test_crm_errors_and_timeouts(conn, crm):
    crm.faults.fail_next = 1
    with pytest.raises(ConnectorError):
        await conn.lookup("+34612345678", "")
    assert await conn.lookup("+34612345678", "") is not None  # next one works
    await harness.check_down_then_hanging(conn, crm.faults)
    assert crm.tables["Events"] == []
