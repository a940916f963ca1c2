"""vTiger web service connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.settings import VtigerSettings
from connectors.vtiger import VtigerConnector
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.lookup.card import PersonKind
from tests.fakes.vtiger import Vtiger
from tests.test_connector_generic_http import record

HOSTILE = "' OR 1=1 --"
TAUTOLOGY = "' or '1'='1"


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
    kw: dict[str, object] = {
        "name": "tiger",
        "url": str(server.make_url("")).rstrip("/"),
        "username": crm.username,
        "access_key": crm.access_key,
        "users": {"201": "19x5"},
        "timezone": "Europe/Madrid",
        "timeout_ms": 400,
        "write_timeout_ms": 1000,
    }
    kw.update(over)
    conn = VtigerConnector(VtigerSettings(**kw), public_url="https://gw.example")
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
        ("+34612345678", "612345678", "Ana García", PersonKind.CONTACT),
        ("+12125550100", "2125550100", "Bob Smith", PersonKind.CONTACT),
        ("+34612345679", "612345679", "Luis Pérez", PersonKind.LEAD),
        ("+34910000000", "910000000", "Acme SL", PersonKind.ACCOUNT),
    ],
)
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
    lead = await conn.lookup("+34612345679", "")
    assert lead is not None and (lead.company, lead.lead_status) == ("Pérez SA", "Hot")
    assert await conn.lookup("+34699000111", "") is None
    assert crm.logins == 1


@pytest.mark.parametrize("code", ["INVALID_SESSIONID", "SESSION_LEFT_IDLE"])
async def test_expired_session_logs_in_again(conn, crm, code):
    assert await conn.lookup("+34612345678", "") is not None
    crm.expire_sessions(code)
    assert await conn.lookup("+34612345678", "") is not None
    assert crm.logins == 2


async def test_wrong_access_key_is_a_clear_error(aiohttp_server, crm):
    conn = await make(aiohttp_server, crm, access_key="nope")
    try:
        with pytest.raises(ConnectorError, match="INVALID_USER_CREDENTIALS"):
            await conn.lookup("+34612345678", "")
        with pytest.raises(ConnectorError, match="not retried"):
            await conn.log_call(record())
        assert crm.faults.requests.count("login") == 1
    finally:
        await conn.close()


async def test_hostile_caller_id_finds_nothing(conn, crm):
    # the stand-in really evaluates the query: a naive one would return every contact
    naive = await conn._query(f"select id from Contacts where phone = '{TAUTOLOGY}';", 1.0)
    assert len(naive) == len(crm.tables["Contacts"])
    crm.queries.clear()
    assert await conn.lookup(HOSTILE, HOSTILE) is None
    assert await conn.lookup(TAUTOLOGY, TAUTOLOGY) is None
    assert await conn.lookup("+34612345678", "612' or '1'='1") is not None
    assert all("1=1" not in q and "'1'='1" not in q for q in crm.queries)


async def test_answered_call_becomes_a_held_call_event_once(conn, crm):
    rec = record(caller_name=HOSTILE)
    await conn.log_call(rec)
    await conn.log_call(rec)
    (ev,) = crm.tables["Events"]
    assert ev["activitytype"] == "Call" and ev["eventstatus"] == "Held"
    # 2023-11-14 22:13:20 UTC is 23:13:20 in Madrid, the API user's zone
    assert (ev["date_start"], ev["time_start"]) == ("2023-11-14", "23:13:20")
    assert (ev["due_date"], ev["time_end"]) == ("2023-11-14", "23:14:20")
    assert ev["contact_id"] == "12x7" and ev["assigned_user_id"] == "19x5"
    assert HOSTILE in ev["subject"]
    assert "https://gw.example/api/v1/recordings/call-1" in ev["description"]


async def test_missed_call_to_lead_is_not_held(conn, crm):
    await conn.log_call(
        record(
            "call-9",
            direction="outbound",
            caller="201",
            dialed="+34612345679",
            answered_at=None,
            outcome="noanswer",
            talk_seconds=0,
        )
    )
    (ev,) = crm.tables["Events"]
    assert ev["eventstatus"] == "Not Held" and ev["parent_id"] == "10x9"
    assert ev["assigned_user_id"] == "19x5"  # the agent who dialed


async def test_crm_errors_and_timeouts(conn, crm):
    crm.faults.fail_next = 1
    with pytest.raises(ConnectorError):
        await conn.lookup("+34612345678", "")
    assert await conn.lookup("+34612345678", "") is not None  # next one works
    crm.faults.hang = True
    with pytest.raises(ConnectorTimeout):
        await conn.log_call(record())
    crm.faults.hang = False
    assert crm.tables["Events"] == []
