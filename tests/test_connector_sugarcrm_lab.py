"""The SuiteCRM connector against a stand-in seeded like the real lab (issue #9).

Phone numbers are stored as people typed them; values come back HTML-encoded; the WHERE
validator refuses some query shapes with fault 40; errors come as faults or HTML 500s.
"""

from __future__ import annotations

import re

import pytest

from connectors.base import CrmRefused, RecordRejected
from connectors.settings import SuiteCrmSettings
from connectors.sugarcrm import SugarCrmConnector
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.lookup.card import PersonKind
from tests.fakes import connector_harness as harness
from tests.fakes import sugarcrm as lab_ids
from tests.fakes.sugarcrm import SugarCrm


@pytest.fixture
def crm() -> SugarCrm:
    return SugarCrm.lab()


async def make(aiohttp_server, crm: SugarCrm, **over: object) -> SugarCrmConnector:
    server = await aiohttp_server(crm.app())
    kw = harness.settings_for(server, name="suite", username=crm.username, password=crm.password)
    settings = SuiteCrmSettings(**{**kw, "users": {"201": lab_ids.SALLY}, **over})
    return SugarCrmConnector(settings, public_url=harness.PUBLIC_URL)


conn = harness.connector_fixture(make)

_LOOKUP = re.compile(r"\((\w+\.phone_\w+ LIKE '[%0-9]+')( OR \w+\.phone_\w+ LIKE '[%0-9]+')*\)")
_MARKER = re.compile(r"calls\.description LIKE '%centralita-call:[\w.:-]+%'")


def safe_query(q: str) -> bool:
    """Only digits and '%' in a lookup's literals (never a fault-40 shape), or the marker."""
    return bool(_LOOKUP.fullmatch(q) or _MARKER.fullmatch(q))


# (number as the PBX gives it, raw, who, kind, record id): stored as in the lab
LAB_CALLERS = [
    ("+34911234567", "911234567", "Ana García", PersonKind.CONTACT, lab_ids.ANA),
    ("+34911234568", "0034911234568", "Bob Martín", PersonKind.CONTACT, lab_ids.BOB),
    ("+34911234569", "+34911234569", "Carla Ruiz", PersonKind.CONTACT, lab_ids.CARLA),
    ("+12125550100", "0012125550100", "Dan Jones", PersonKind.CONTACT, lab_ids.DAN),
    ("+34911234571", "911234571", "Zoë Ñúñez-O'Hara", PersonKind.CONTACT, lab_ids.ZOE),
    ("+34911234570", "911234570", "Eva López", PersonKind.LEAD, lab_ids.EVA),
    ("+34911234572", "911234572", "Fax Only", PersonKind.LEAD, lab_ids.FAX_ONLY),
    ("+34912000111", "912000111", "Acme Iberia", PersonKind.ACCOUNT, lab_ids.ACME),
    ("+34913000222", "913000222", "O'Brien & Sons ", PersonKind.ACCOUNT, lab_ids.OBRIEN),
    ("+34913000223", "913000223", "O'Brien & Sons ", PersonKind.ACCOUNT, lab_ids.OBRIEN),
]


@pytest.mark.parametrize(("e164", "raw", "name", "kind", "rid"), LAB_CALLERS)
async def test_every_typed_form_is_found(conn, crm, e164, raw, name, kind, rid):
    card = await conn.lookup(e164, raw)
    assert card is not None, e164
    assert (card.display_name, card.kind, card.person_id) == (name, kind, rid)
    assert card.number == e164 and card.source == "suite"
    assert conn.health().last_error is None
    assert all(safe_query(q) for q in crm.queries)


async def test_card_shows_names_as_typed_and_maps_the_owner(conn):
    zoe = await conn.lookup("+34911234571", "")
    assert zoe is not None
    assert zoe.display_name == "Zoë Ñúñez-O'Hara"  # arrives as "Ñúñez-O&#039;Hara"
    assert (zoe.company, zoe.account_id) == ("O'Brien & Sons ", lab_ids.OBRIEN)
    ana = await conn.lookup("+34911234567", "")
    assert ana is not None and ana.company == "Acme Iberia" and ana.owner == "201"
    eva = await conn.lookup("+34911234570", "")
    assert eva is not None and eva.lead_status == "New" and eva.company == "Lopez SL"
    assert eva.owner == "201" and eva.extra["module"] == "Leads"
    assert eva.external_url == (
        f"{conn._http.base_url}/index.php?module=Leads&action=DetailView&record={lab_ids.EVA}"
    )


async def test_html_is_decoded_exactly_once(conn, crm):
    crm.add(
        "Contacts",
        first_name='Quote "Q" <b>',
        last_name="O'Neil & R&amp;D",  # typed with entity-looking text
        phone_mobile="+34 600 000 001",
        account_id=lab_ids.OBRIEN,
    )
    card = await conn.lookup("+34600000001", "")
    assert card is not None
    # the CRM sends '&#039; &quot; &lt; &gt;' and '&' raw: only those four are reversed
    assert card.display_name == """Quote "Q" <b> O'Neil & R&amp;D"""


async def test_contact_wins_over_lead_with_the_same_number(conn):
    card = await conn.lookup("+34911234567", "")  # Ana García (contact), a lead "911 234 567"
    assert card is not None and card.kind is PersonKind.CONTACT


async def test_other_numbers_holding_the_digits_are_not_taken(conn, crm):
    # both contain 9,2,2,0,0,0,3,3,3 in order, so the digit-wildcard LIKE returns them
    crm.add("Contacts", first_name="Decoy", last_name="One", phone_work="+49 (9) 22000-3339")
    crm.add("Contacts", first_name="Decoy", last_name="Two", phone_home="0034 1922 000 333")
    assert await conn.lookup("+34922000333", "922000333") is None
    crm.add("Contacts", first_name="Real", last_name="One", phone_other="922-000-333")
    card = await conn.lookup("+34922000333", "922000333")
    assert card is not None and card.display_name == "Real One"


async def test_deleted_and_unknown_numbers_are_not_found(conn):
    assert await conn.lookup("+34911234599", "") is None  # Deleted Person
    assert await conn.lookup("+34699000111", "699000111") is None
    assert conn.health().last_error is None


@pytest.mark.parametrize(
    "hostile", [harness.HOSTILE, "%", "_", "'", '"', "\x00", "%' OR '1'='1", "12\\'; --"]
)
async def test_hostile_numbers_find_nothing_and_break_nothing(conn, crm, hostile):
    assert await conn.lookup(hostile, hostile) is None
    assert await conn.lookup("+34911234567", hostile) is not None  # raw never goes in
    assert all(safe_query(q) for q in crm.queries)
    assert conn.health().last_error is None
    await conn.log_call(harness.missed("call-h", caller=hostile))
    (call,) = crm.tables["Calls"]
    assert "parent_id" not in call and crm.relationships == []


async def test_database_failure_is_a_clear_connector_error(conn, crm):
    crm.db_failures = 1  # HTTP 500 text/html "Database failure. Please refer to ..."
    with pytest.raises(ConnectorError, match=r"HTTP 500.*Database failure") as err:
        await conn.lookup("+34911234567", "")
    assert not isinstance(err.value, CrmRefused)  # the CRM is broken: an outage
    assert "JSON" not in str(err.value)
    assert await conn.lookup("+34911234567", "") is not None  # and it recovers


@pytest.mark.parametrize(
    ("e164", "parent_type", "parent_id", "link"),
    [
        ("+34911234567", "Contacts", lab_ids.ANA, "contacts"),  # "+34 911 234 567"
        ("+34911234568", "Contacts", lab_ids.BOB, "contacts"),  # "0034911234568"
        ("+12125550100", "Contacts", lab_ids.DAN, "contacts"),  # "+1 (212) 555-0100"
        ("+34911234572", "Leads", lab_ids.FAX_ONLY, "leads"),  # "+34 (91) 123-4572"
        ("+34911234573", None, None, None),  # nobody
    ],
)
async def test_call_is_linked_to_the_right_record(conn, crm, e164, parent_type, parent_id, link):
    await conn.log_call(harness.record("call-9", caller=e164))
    (call,) = crm.tables["Calls"]
    assert call["date_start"] == "2023-11-14 22:13:20"  # UTC, 'Y-m-d H:i:s'
    assert (call.get("parent_type"), call.get("parent_id")) == (parent_type, parent_id)
    assert crm.relationships == ([(call["id"], link, parent_id)] if link else [])
    assert call["assigned_user_id"] == lab_ids.SALLY  # agent 201's CRM user


async def test_call_from_an_account_sets_the_parent_only(conn, crm):
    await conn.log_call(harness.record("call-a", caller="+34912000111"))
    (call,) = crm.tables["Calls"]
    assert (call["parent_type"], call["parent_id"]) == ("Accounts", lab_ids.ACME)
    assert crm.relationships == []


async def test_a_refused_write_is_crm_refused_not_an_outage(conn, crm):
    crm.refuse["set_entry"] = 40  # e.g. the API user's role lacks create on Calls
    with pytest.raises(CrmRefused, match="Access Denied"):
        await conn.log_call(harness.record("call-r"))
    crm.refuse.clear()
    await conn.log_call(harness.record("call-r"))  # accepted once the role is fixed
    assert len(crm.tables["Calls"]) == 1


async def test_a_string_fault_number_is_a_refusal_too(conn, crm):
    crm.refuse["set_relationship"] = -1  # "number": "-1", as for an unknown method
    with pytest.raises(CrmRefused, match="fault -1"):
        await conn.log_call(harness.record("call-s", caller="+34911234567"))


async def test_outages_stay_plain_connector_errors(conn, crm):
    crm.faults.fail_next = 1
    with pytest.raises(ConnectorError) as err:
        await conn.log_call(harness.record("call-o"))
    assert not isinstance(err.value, CrmRefused)
    crm.faults.hang = True
    try:
        with pytest.raises(ConnectorTimeout):
            await conn.log_call(harness.record("call-o"))
    finally:
        crm.faults.hang = False
    await conn.log_call(harness.record("call-o"))
    assert len(crm.tables["Calls"]) == 1


async def test_unreadable_call_record_is_rejected(conn):
    with pytest.raises(RecordRejected):
        await conn.log_call(harness.record("call-x", started_at="yesterday"))
