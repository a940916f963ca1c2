"""Odoo JSON-RPC connector against its stand-in server."""

from __future__ import annotations

import pytest

from connectors.base import CrmRefused, RecordRejected
from connectors.odoo import OdooConnector
from connectors.settings import OdooSettings
from gateway.errors import ConnectorError, ConnectorTimeout
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


# -- numbers as users type them ----------------------------------------------------------

# (how the number was typed, the field, the record's country, the caller's E.164)
TYPED = [
    ("+34 911 234 567", "phone", None, "+34911234567"),
    ("911 234 569", "mobile", None, "+34911234569"),  # no prefix: the company's country (ES)
    ("0034911234568", "phone", None, "+34911234568"),
    ("+1 (212) 555-0177", "phone", None, "+12125550177"),
    ("+34 (91) 123-4572", "phone", None, "+34911234572"),
    ("212 555 0142", "phone", "US", "+12125550142"),  # no prefix: the record's country
]


def seed_typed(crm: Odoo) -> Odoo:
    # decoys first: longer numbers holding the same digits, and an archived contact
    crm.add("res.partner", name="Decoy long", phone="+34 911 234 5670")
    crm.add("res.partner", name="Decoy ext", phone="00 1 212 555 01770")
    crm.add("res.partner", name="Old Ana", phone="+34 911 234 567", active=False)
    for typed, fname, country, _ in TYPED:
        extra = {"country": country} if country else {}
        crm.add("res.partner", name=f"Typed {typed}", **{fname: typed}, **extra)
    # the landline of a contact who also has a mobile: phone_sanitized holds only the mobile
    crm.add("res.partner", name="Two Numbers", mobile="612 00 00 01", phone="911 234 573")
    crm.add("crm.lead", name="Lost deal", contact_name="Lola Lost", phone="911 234 574")
    crm.edit("crm.lead", crm.rows["crm.lead"][-1]["id"], active=False, probability=0.0)
    return crm


@pytest.mark.parametrize("phone_validation", [True, False])
async def test_every_typed_format_is_found_and_only_that_number(aiohttp_server, phone_validation):
    crm = seed_typed(Odoo(has_phone_validation=phone_validation))
    if phone_validation:  # the stand-in stores what Odoo 17 computes
        by_name = {r["name"]: r.get("phone_sanitized") for r in crm.rows["res.partner"]}
        assert by_name["Typed 911 234 569"] == "+34911234569"
        assert by_name["Typed 212 555 0142"] == "+12125550142"
        assert by_name["Two Numbers"] == "+34612000001"
    async with harness.started(await make(aiohttp_server, crm)) as conn:
        for typed, _, _, e164 in TYPED:
            card = await conn.lookup(e164, "")
            assert card is not None and card.display_name == f"Typed {typed}", (typed, card)
            assert card.number == e164
        landline = await conn.lookup("+34911234573", "")
        assert landline is not None and landline.display_name == "Two Numbers"
        lost = await conn.lookup("+34911234574", "")
        assert lost is not None and (lost.display_name, lost.lead_status) == ("Lola Lost", "Lost")
        assert await conn.lookup("+34911234570", "") is None  # digits inside a longer number
    sent = repr(crm.domains)
    assert ("phone_sanitized" in sent) is phone_validation
    assert ("=like" in sent) is not phone_validation


async def test_hostile_numbers_find_nothing_and_break_nothing(conn, crm):
    for bad in (harness.HOSTILE, "%", "_", "'", '"', "\x00", "+34%", "+3461234567_", "+34\x00"):
        assert await conn.lookup(bad, bad) is None
    for domain in crm.domains:
        for leaf in domain:
            value = leaf[2] if isinstance(leaf, list) else ""
            assert not set(str(value)) & set("'\"_\x00"), domain
            assert value == "" or "OR" not in str(value)
    card = await conn.lookup("+34612345678", "%' OR 1=1 --")
    assert card is not None and card.display_name == "Ana García"
    assert conn.health().last_error is None


# -- what the outbox learns from a failed write ------------------------------------------


@pytest.mark.parametrize(
    ("exception", "record_refused"),
    [
        ("odoo.exceptions.AccessError", False),
        ("builtins.KeyError", False),
        ("odoo.exceptions.ValidationError", True),
        ("odoo.exceptions.UserError", True),
        ("odoo.exceptions.MissingError", True),
    ],
)
async def test_an_odoo_error_on_write_is_a_refusal_not_an_outage(
    conn, crm, exception, record_refused
):
    crm.refuse["res.partner", "message_post"] = (exception, "You are not allowed to do that")
    with pytest.raises(CrmRefused) as info:
        await conn.log_call(harness.record())
    assert isinstance(info.value, RecordRejected) is record_refused
    assert exception.rpartition(".")[2] in str(info.value)
    assert crm.rows["mail.message"] == []
    del crm.refuse["res.partner", "message_post"]
    await conn.log_call(harness.record())  # Odoo accepts again: the same record goes through
    assert len(crm.rows["mail.message"]) == 1


async def test_outages_on_write_stay_outages(conn, crm):
    crm.faults.fail_next = 10
    with pytest.raises(ConnectorError) as info:
        await conn.log_call(harness.record())
    assert not isinstance(info.value, CrmRefused)
    crm.faults.fail_next = 0
    crm.faults.hang = True
    try:
        with pytest.raises(ConnectorTimeout) as timed_out:
            await conn.log_call(harness.record())
        assert not isinstance(timed_out.value, CrmRefused)
    finally:
        crm.faults.hang = False


async def test_a_stale_uid_during_a_write_logs_in_again(conn, crm):
    assert await conn.lookup("+34612345678", "") is not None
    crm.renumber_user()
    await conn.log_call(harness.record())
    assert len(crm.rows["mail.message"]) == 1 and crm.logins == 2
