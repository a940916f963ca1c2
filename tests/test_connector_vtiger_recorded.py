"""The vTiger connector against what real vTiger 8.0.0 showed (issue #9): numbers stored as
people typed them, the unknown user refused at getchallenge, ACCESS_DENIED from a query,
hostile caller IDs. The stand-in is seeded with the recording lab's data (``Vtiger.lab()``)
and is itself checked against the recording (``test_connector_vtiger_replay.py``)."""

from __future__ import annotations

import re

import pytest

from connectors.base import CrmRefused
from connectors.settings import VtigerSettings
from connectors.transport import LoginRefused
from connectors.vtiger import VtigerConnector
from gateway.errors import ConnectorError
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes.vtiger import Vtiger


@pytest.fixture
def crm() -> Vtiger:
    return Vtiger.lab()


async def make(aiohttp_server, crm: Vtiger, **over: object) -> VtigerConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(
        server, name="tiger", username=crm.username, access_key=crm.access_key
    )
    settings = VtigerSettings(**{**kw, "users": {"201": "19x1"}, **over})
    return VtigerConnector(settings, public_url=harness.PUBLIC_URL)


conn = harness.connector_fixture(make)


# (E.164 of the caller, stored as, who, kind, id, company)
TYPED = [
    ("+34911234567", "phone '+34 911 234 567'", "Ana García", PersonKind.CONTACT, "12x4", "Acme Iberia"),
    ("+34911234568", "mobile '0034911234568'", "Bob Martín", PersonKind.CONTACT, "12x5", ""),
    ("+34911234569", "homephone '911234569'", "Carla Ruiz", PersonKind.CONTACT, "12x6", ""),
    ("+12125550100", "phone '+1 (212) 555-0100'", "Dan Jones", PersonKind.CONTACT, "12x7", ""),
    ("+34911234571", "otherphone '+34911234571'", "Zoë Ñúñez-O'Hara", PersonKind.CONTACT, "12x8", "O'Brien & Sons <Ltd>"),
    ("+34911234573", "assistantphone '911234573'", "Ramón Assistant", PersonKind.CONTACT, "12x9", ""),
    ("+34911234570", "lead mobile '+34911234570'", "Eva López", PersonKind.LEAD, "10x10", "Lopez SL"),
    ("+34911234572", "lead fax '+34 (91) 123-4572'", "Fax Only", PersonKind.LEAD, "10x11", "Fax SL"),
    ("+34912000111", "account phone '+34 912 000 111'", "Acme Iberia", PersonKind.ACCOUNT, "11x2", "Acme Iberia"),
    ("+34913000223", "account otherphone '913000223'", "O'Brien & Sons <Ltd>", PersonKind.ACCOUNT, "11x3", "O'Brien & Sons <Ltd>"),
]  # fmt: skip


@pytest.mark.parametrize(("e164", "stored", "name", "kind", "rid", "company"), TYPED)
async def test_numbers_stored_as_people_typed_them_are_found(
    conn, e164, stored, name, kind, rid, company
):
    card = await conn.lookup(e164, e164[3:])
    assert card is not None, f"{name} ({stored}) not found for {e164}"
    assert (card.display_name, card.kind, card.person_id) == (name, kind, rid)
    assert card.company == company  # raw as vTiger answers it: nothing decoded
    assert card.owner == "201"  # 19x1 mapped back through users


async def test_national_number_with_spaces_is_found(conn, crm):
    crm.update("12x4", phone="911 234 567")  # phone matrix b: no prefix, spaces
    card = await conn.lookup("+34911234567", "911234567")
    assert card is not None and card.person_id == "12x4"


async def test_wildcard_hits_that_are_other_numbers_are_dropped(conn, crm):
    # the digits 9,1,1,2,3,4,5,6,7 in order, but another number; listed before Ana
    wrong = crm.add("Contacts", firstname="Wrong", lastname="Number", phone="+34 911 0234 567")
    crm.tables["Contacts"].insert(0, crm.tables["Contacts"].pop())
    card = await conn.lookup("+34911234567", "")
    assert card is not None and card.display_name == "Ana García"
    assert any("like '%9%1%1%2%3%4%5%6%7'" in q for q in crm.queries)
    crm.update("12x4", phone="")
    assert await conn.lookup("+34911234567", "") is None  # only the other number is left
    assert crm.tables["Contacts"][0]["id"] == wrong


async def test_deleted_contact_is_not_found(conn):
    assert await conn.lookup("+34911234599", "911234599") is None


async def test_queries_are_valid_vtql(conn, crm):
    """No grouping parentheses, the final ';', and no error answered for any lookup."""
    for e164, *_ in TYPED:
        await conn.lookup(e164, "")
    grouping = re.compile(r"\b(where|and|or)\s*\(", re.I)  # '(' only around in-lists
    assert crm.queries and all(q.endswith(";") and not grouping.search(q) for q in crm.queries)
    assert conn.health().last_error is None


async def test_unknown_user_is_a_refused_login_not_retried_on_every_call(aiohttp_server, crm):
    """vTiger 8 refuses an unknown user at getchallenge (003): a login problem, held back."""
    async with harness.started(await make(aiohttp_server, crm, username="nosuchuser")) as c:
        with pytest.raises(LoginRefused, match="username does not exists"):
            await c.lookup("+34911234567", "")
        await harness.check_refused_login(
            c, crm.faults, login="getchallenge", secret=crm.access_key, refusal="not retried"
        )
    assert crm.faults.requests.count("login") == 0


async def test_access_denied_from_a_query_is_not_a_login_problem(conn, crm):
    crm.denied_modules = {"Leads"}  # the API user's profile cannot see Leads
    for _ in range(2):  # asked again each time, no login hold-off
        with pytest.raises(CrmRefused, match="ACCESS_DENIED") as err:
            await conn.lookup("+34911234567", "")
        assert not isinstance(err.value, LoginRefused)
    assert crm.logins == 1
    crm.denied_modules = set()
    assert await conn.lookup("+34911234567", "") is not None


async def test_wrong_access_key_is_refused_at_login(aiohttp_server, crm):
    async with harness.started(await make(aiohttp_server, crm, access_key="not-the-key")) as c:
        await harness.check_refused_login(
            c, crm.faults, login="login", secret="not-the-key", refusal="INVALID_USER_CREDENTIALS"
        )


HOSTILE = ["' OR 1=1 --", "%", "_", "%%%%%%%%", "'", '"', "\\", "\x00", "+34%", "+34_________",
           "'; select * from Contacts;", "%9%1%1%2%3%4%5%6%", "9' or phone like '%"]  # fmt: skip


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_numbers_find_nothing_and_break_nothing(conn, crm, hostile):
    assert await conn.lookup(hostile, hostile) is None
    assert all(hostile not in q and "\x00" not in q for q in crm.queries)
    assert await conn.lookup("+34911234567", hostile) is not None  # still answering
    assert conn.health().last_error is None


async def test_crm_error_answers_are_not_outages(conn, crm):
    """A ``success: false`` is the CRM refusing (CrmRefused); HTTP 5xx is an outage."""
    crm.faults.fail_next = 1
    with pytest.raises(ConnectorError) as err:
        await conn.lookup("+34911234567", "")
    assert not isinstance(err.value, CrmRefused)
    with pytest.raises(CrmRefused, match="QUERY_SYNTAX_ERROR"):
        async with conn._tracked(1.0):
            await conn._query("select id from Contacts where (phone = 'x');", 1.0)
