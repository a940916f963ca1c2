"""The call log on a real SQLite file: written once, filtered, attached to the caller's person."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.lookup.card import CallFacts
from gateway.store.calllog import CallLog, CallRecordError
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import ActivityRepository, PersonRepository


@pytest.fixture
async def db(tmp_path: Path):
    d = await Database.open(tmp_path / "crm.db", clock=lambda: 1_700_000_000.0)
    yield d
    await d.close()


def record(n: int, **over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": f"lab:1700000000.{n}",
        "linkedid": f"1700000000.{n}",
        "pbx": "lab",
        "direction": "inbound",
        "click_to_call": False,
        "caller": "+34911234567",
        "caller_name": "<script>alert(1)</script>",
        "did": "+34910000000",
        "dialed": "",
        "queue": "sales",
        "agents_rang": ["101", "102"],
        "answered_by": "102",
        "transfers": [{"kind": "blind", "from": "102", "to": "103"}],
        "outcome": "answered",
        "started_at": 1_700_000_000.0 + n * 60,
        "answered_at": 1_700_000_005.0 + n * 60,
        "ended_at": 1_700_000_050.0 + n * 60,
        "ring_seconds": 5.0,
        "talk_seconds": 45.0,
        "total_seconds": 50.0,
        "hangup_cause": "16",
        "recordings": [f"/var/spool/asterisk/monitor/{n}.wav"],
        "reconstructed": False,
    }
    r.update(over)
    return r


async def test_save_is_idempotent_and_round_trips_every_field(db: Database) -> None:
    log = CallLog(db)
    rec = record(1)
    assert await log.save(rec) is True
    assert await log.save(dict(rec, outcome="noanswer")) is False  # the same end seen twice
    stored = await log.get(rec["id"])
    assert stored is not None
    for key, value in rec.items():
        assert stored[key] == (value or None if key == "dialed" else value), key
    # nothing set reads as null, as in the tracker's record: never ""
    assert (stored["notes"], stored["disposition"], stored["person_id"]) == (None, None, None)
    assert len((await log.list()).items) == 1


async def test_bad_records_are_refused_clearly(db: Database) -> None:
    log = CallLog(db)
    with pytest.raises(CallRecordError, match="'id'"):
        await log.save({"started_at": 1.0})
    with pytest.raises(CallRecordError, match="started_at"):
        await log.save({"id": "x:1"})
    # without an id, the pbx and linkedid make one
    assert await log.save({"pbx": "lab", "linkedid": "17.1", "started_at": 5.0})
    assert not await log.save({"id": "lab:17.1", "started_at": 5.0})
    # junk in optional fields is stored as empty, never crashes
    assert await log.save(
        {
            "id": "x:2",
            "started_at": "12",
            "agents_rang": "101",
            "talk_seconds": "NaN",
            "ring_seconds": float("inf"),
        }
    )
    stored = await log.get("x:2")
    assert stored is not None
    assert (stored["started_at"], stored["agents_rang"], stored["talk_seconds"]) == (12.0, [], None)


async def test_call_becomes_an_activity_of_the_callers_person(db: Database) -> None:
    people = PersonRepository(db)
    inbound_person = (
        await people.create(PersonType.CONTACT, {"name": "Lucía", "phone": "911 23 45 67"})
    ).person
    outbound_person = (
        await people.create(PersonType.LEAD, {"name": "Max", "phone": "0044 20 7946 0018"})
    ).person
    source = StoreCardSource(db)
    log = CallLog(db, "ES")
    await log.save(record(1))
    await log.save(record(1))  # twice: still one activity
    await log.save(record(2, direction="outbound", caller="101", did="", dialed="00442079460018"))
    await log.save(record(3, direction="internal", caller="101", dialed="102", did=""))
    acts = await ActivityRepository(db).for_person(inbound_person.id)
    assert [(a.kind, a.call_id) for a in acts] == [("call", "lab:1700000000.1")]
    assert "answered by 102" in acts[0].summary
    out_acts = await ActivityRepository(db).for_person(outbound_person.id)
    assert [a.call_id for a in out_acts] == ["lab:1700000000.2"]
    stored = await log.get("lab:1700000000.1")
    assert stored is not None and stored["person_id"] == inbound_person.id
    card = source.find("+34911234567")
    assert card is not None and card.interactions[0].kind == "call"
    # what the log says of the call, for a reader to word in their language
    facts = CallFacts("inbound", "answered", "102", 45.0)
    assert acts[0].call == facts and card.interactions[0].call == facts
    assert out_acts[0].call == CallFacts("outbound", "answered", "102", 45.0)


async def test_filters(db: Database) -> None:
    log = CallLog(db, "ES")
    await log.save(record(1))
    await log.save(record(2, outcome="noanswer", answered_by="", agents_rang=["103"]))
    await log.save(
        record(
            3,
            direction="outbound",
            caller="101",
            did="",
            dialed="612345678",
            agents_rang=[],
            answered_by="101",
        )
    )
    await log.save(record(4, caller="+447700900123"))

    async def ids(**filters: Any) -> list[str]:
        return [c["id"].rsplit(".", 1)[1] for c in (await log.list(**filters)).items]

    assert await ids() == ["4", "3", "2", "1"]
    assert await ids(outcome="noanswer") == ["2"]
    assert await ids(direction="outbound") == ["3"]
    assert await ids(extension="103") == ["2"]
    assert await ids(extension="101") == ["4", "3", "1"]  # rang or answered
    assert await ids(extension="102") == ["4", "1"]
    assert await ids(number="0044 7700 900123") == ["4"]  # any format of the caller
    assert await ids(number="+34 612 34 56 78") == ["3"]  # the dialed number
    assert await ids(number="+34910000000") == ["4", "2", "1"]  # the DID
    assert await ids(since=1_700_000_000.0 + 120, until=1_700_000_000.0 + 240) == ["3", "2"]
    assert await ids(number="junk';--") == []


async def test_cursor_pagination_walks_everything_once(db: Database) -> None:
    log = CallLog(db)
    for n in range(7):
        await log.save(record(n))
    await log.save(record(99, id="lab:same-start", started_at=1_700_000_000.0 + 3 * 60))
    seen: list[str] = []
    cursor = None
    while True:
        page = await log.list(limit=3, cursor=cursor)
        seen += [c["id"] for c in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 8 and len(set(seen)) == 8
    with pytest.raises(CallRecordError):
        await log.list(cursor="not-a-cursor")


async def test_annotate(db: Database) -> None:
    log = CallLog(db)
    await log.save(record(1))
    assert await log.annotate("lab:1700000000.1", notes="wants a quote", disposition="callback")
    stored = await log.get("lab:1700000000.1")
    assert stored is not None
    assert (stored["notes"], stored["disposition"]) == ("wants a quote", "callback")
    assert not await log.annotate("lab:nope", notes="x")
