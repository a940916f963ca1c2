"""The outbox's rule for failures: an outage holds a CRM's queue in order; a CRM that answers
with an error about one record parks that record after a few tries and lets the rest go on."""

from __future__ import annotations

import pytest

from connectors.base import ConnectorHealth, CrmRefused
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.writeback.outbox import Backoff, Outbox
from tests.test_outbox import Clock, open_db


class ScriptedCrm:
    """A connector whose answer per call id is set by the test; records what it accepted."""

    name = "crm"

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.refuse: set[str] = set()  # the CRM answers with a fault for these
        self.down = False  # every request fails as if the CRM were unreachable
        self.timeout = False
        self.attempts: dict[str, int] = {}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def lookup(self, e164: str, raw: str) -> None:
        return None

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(self.name)

    async def log_call(self, record: dict[str, object]) -> None:
        rid = str(record["id"])
        self.attempts[rid] = self.attempts.get(rid, 0) + 1
        if self.down:
            raise ConnectorError("crm.example: connection refused")
        if self.timeout:
            raise ConnectorTimeout("crm.example: no answer within 15 s")
        if rid in self.refuse:
            raise CrmRefused("crm.example: set_entry failed: 'Access Denied' (fault 40)")
        self.accepted.append(rid)


@pytest.fixture
async def db(tmp_path):
    conn = await open_db(tmp_path / "gw.db")
    yield conn
    await conn.close()


def rec(rid: str) -> dict[str, object]:
    return {"id": rid, "caller": "+12125550100", "started_at": 1_700_000_000.0}


async def test_a_refused_caller_no_longer_holds_back_the_calls_behind_it(db):
    crm, clock = ScriptedCrm(), Clock()
    crm.refuse.add("us-caller")
    box = Outbox(db, [crm], clock, backoff=Backoff(initial=10, maximum=10), reject_limit=3)
    for rid in ("first", "us-caller", "second", "third"):
        await box.enqueue(rec(rid))
    assert await box.deliver_due("crm") == 3
    assert crm.accepted == ["first", "second", "third"]
    await box.enqueue(rec("fourth"))  # arrives while the refused one waits for its retry
    assert await box.deliver_due("crm") == 1 and crm.accepted[-1] == "fourth"
    assert crm.attempts["us-caller"] == 1  # its own backoff, not retried on every pass
    for _ in range(2):
        clock.now += 10
        await box.deliver_due("crm")
    assert crm.attempts["us-caller"] == 3
    (parked,) = await box.parked()
    assert (parked.record_id, parked.attempts) == ("us-caller", 3)
    assert parked.last_error is not None and "fault 40" in parked.last_error
    clock.now += 1000
    assert await box.deliver_due("crm") == 0 and crm.attempts["us-caller"] == 3  # parked: left
    (st,) = await box.stats()
    assert (st.pending, st.delivered, st.parked) == (0, 4, 1)


@pytest.mark.parametrize("failure", ["down", "timeout"])
async def test_an_outage_holds_the_whole_queue_in_order(db, failure):
    crm, clock = ScriptedCrm(), Clock()
    setattr(crm, failure, True)
    box = Outbox(db, [crm], clock, backoff=Backoff(initial=5, maximum=60), reject_limit=2)
    for rid in ("a", "b", "c"):
        await box.enqueue(rec(rid))
    for step in range(4):  # many more failures than reject_limit: never parked for an outage
        assert await box.deliver_due("crm") == 0
        assert crm.attempts == {"a": step + 1}  # only the head is tried; nothing overtakes it
        assert await box.next_due_in("crm") > 0  # the worker naps instead of spinning
        assert (await box.stats())[0].held_until is not None  # /health shows the hold
        clock.now += 60
    setattr(crm, failure, False)
    assert await box.deliver_due("crm") == 3
    assert crm.accepted == ["a", "b", "c"]
    assert await box.parked() == []
    assert (await box.stats())[0].held_until is None


async def test_parked_records_are_listed_and_re_driven_one_by_one_or_all(db):
    crm, clock = ScriptedCrm(), Clock()
    crm.refuse.update({"x", "y"})
    box = Outbox(db, [crm], clock, reject_limit=1)
    for rid in ("x", "y", "z"):
        await box.enqueue(rec(rid))
    assert await box.deliver_due("crm") == 1
    parked = await box.parked("crm")
    assert [p.record_id for p in parked] == ["x", "y"]
    crm.refuse.clear()  # the administrator fixed the CRM side
    assert await box.retry_parked("crm", ids=[parked[1].id]) == 1
    assert await box.deliver_due("crm") == 1 and crm.accepted == ["z", "y"]
    assert [p.record_id for p in await box.parked()] == ["x"]
    assert await box.retry_parked() == 1  # every connector, every parked row
    assert await box.deliver_due("crm") == 1 and crm.accepted == ["z", "y", "x"]
    assert await box.parked() == []
