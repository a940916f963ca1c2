"""Calls written to vTiger 8.0.0 as it really behaves: times in UTC whatever the API user's
time zone (recorded 065-072), the event linked to the right record however its number was
typed, and CRM refusals told apart from outages (the outbox parks the one, holds for the
other)."""

from __future__ import annotations

import logging

import pytest

from connectors.base import CrmRefused, RecordRejected
from gateway.errors import ConnectorError, ConnectorTimeout
from tests.fakes import connector_harness as harness
from tests.fakes.vtiger import Vtiger
from tests.test_connector_vtiger_recorded import make


@pytest.fixture
def crm() -> Vtiger:
    return Vtiger.lab()


conn = harness.connector_fixture(make)

# (the customer's number as the call log has it, link field, record id)
LINKS = [
    ("+34911234567", "contact_id", "12x4"),  # stored '+34 911 234 567'
    ("+34911234568", "contact_id", "12x5"),  # stored '0034911234568'
    ("0034911234568", "contact_id", "12x5"),  # the PBX gave it with 00
    ("+12125550100", "contact_id", "12x7"),  # stored '+1 (212) 555-0100'
    ("+34911234571", "contact_id", "12x8"),  # otherphone
    ("+34911234573", "contact_id", "12x9"),  # assistantphone
    ("+34911234570", "parent_id", "10x10"),  # lead mobile
    ("+34911234572", "parent_id", "10x11"),  # lead fax '+34 (91) 123-4572'
    ("+34912000111", "parent_id", "11x2"),  # organization '+34 912 000 111'
]


@pytest.mark.parametrize(("number", "link", "rid"), LINKS)
async def test_event_is_linked_and_starts_at_the_utc_time(aiohttp_server, crm, number, link, rid):
    # an existing config that still says its API user is on Madrid time: ignored
    crm.time_zone = "Europe/Madrid"
    c = await make(aiohttp_server, crm, timezone="Europe/Madrid")
    async with harness.started(c):
        await c.log_call(harness.record(caller=number, caller_name="X"))
    (ev,) = crm.tables["Events"]
    assert ev.get(link) == rid
    assert not ev.get("parent_id" if link == "contact_id" else "contact_id")
    # started_at 1_700_000_000 is 2023-11-14 22:13:20 UTC; 60 s talk
    assert (ev["date_start"], ev["time_start"]) == ("2023-11-14", "22:13:20")
    assert (ev["due_date"], ev["time_end"]) == ("2023-11-14", "22:14:20")
    assert (ev["duration_hours"], ev["duration_minutes"]) == ("0", "1")


async def test_national_number_with_spaces_is_linked(conn, crm):
    crm.update("12x4", phone="911 234 567")
    await conn.log_call(harness.record(caller="+34911234567"))
    (ev,) = crm.tables["Events"]
    assert ev["contact_id"] == "12x4"


async def test_unknown_caller_is_logged_unlinked(conn, crm):
    await conn.log_call(harness.record(caller="+34699000111"))
    (ev,) = crm.tables["Events"]
    assert not ev.get("contact_id") and not ev.get("parent_id")


async def test_timezone_key_is_ignored_with_a_warning_at_start(aiohttp_server, crm, caplog):
    c = await make(aiohttp_server, crm, timezone="Europe/Madrid")
    with caplog.at_level(logging.WARNING, logger="gateway.connectors.vtiger"):
        async with harness.started(c):
            pass
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "timezone" in warning.getMessage() and "ignored" in warning.getMessage()
    assert "UTC" in warning.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gateway.connectors.vtiger"):
        async with harness.started(await make(aiohttp_server, crm)):
            pass
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


async def test_crm_refusal_during_a_write_is_crm_refused(conn, crm):
    crm.denied_modules = {"Events"}  # the API user may not use the Calendar
    with pytest.raises(CrmRefused, match="ACCESS_DENIED") as err:
        await conn.log_call(harness.record())
    assert not isinstance(err.value, RecordRejected)
    assert crm.tables["Events"] == []


async def test_refused_record_is_record_rejected(conn, crm):
    crm.mandatory = {"Events": ("location",)}  # an admin made a field mandatory
    with pytest.raises(RecordRejected, match="MANDATORY_FIELDS_MISSING"):
        await conn.log_call(harness.record())


async def test_outages_stay_plain_connector_errors(conn, crm):
    crm.faults.down = True  # HTTP 500, like the recorded broken logout (073)
    with pytest.raises(ConnectorError) as err:
        await conn.log_call(harness.record())
    assert not isinstance(err.value, CrmRefused)
    crm.faults.down = False
    crm.faults.hang = True
    try:
        with pytest.raises(ConnectorTimeout):
            await conn.log_call(harness.record())
    finally:
        crm.faults.hang = False
    assert crm.tables["Events"] == []
    await conn.log_call(harness.record())  # back up: written once
    await conn.log_call(harness.record())
    assert len(crm.tables["Events"]) == 1
