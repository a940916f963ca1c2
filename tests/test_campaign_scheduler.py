"""The campaign scheduler inside a real gateway: a real SQLite file, a real SMTP server on
loopback (aiosmtpd) and a fake clock moved by the test, which calls ``tick()`` itself.

Times are Madrid business hours (Mon-Fri 09:00-19:00) unless a lead lives elsewhere."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from gateway.app import Gateway
from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord, Direction, Outcome
from gateway.campaigns.model import (
    Branch,
    CallTask,
    CampaignIn,
    Condition,
    EmailTemplate,
    SendEmail,
    SetFields,
    Step,
    Stop,
    Wait,
)
from gateway.campaigns.scheduler import RETRY_AFTER_ERROR, CampaignScheduler
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.store import CampaignStore
from gateway.config import GatewayConfig, StoreSettings
from gateway.panel.users import UserRepository
from gateway.store.events import WrapUpSaved
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from gateway.store.scoring import ScoringSettings
from gateway.store.scoring_service import ScoringService
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
HOUR = 3600.0
DAY = 86400.0


def at(tz: ZoneInfo, *when: int) -> float:
    return datetime(*when, tzinfo=tz).timestamp()  # type: ignore[misc]


# Friday 7 March 2025 (winter time: Madrid UTC+1, Mexico City UTC-6)
FRI_0700 = at(MADRID, 2025, 3, 7, 7, 0)
FRI_0900 = at(MADRID, 2025, 3, 7, 9, 0)
MON_0900 = at(MADRID, 2025, 3, 10, 9, 0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def email(subject: str) -> SendEmail:
    return SendEmail(
        templates={
            "es": EmailTemplate(subject=subject, html="<p>Hola {{ lead.first_name }}</p>"),
            "en": EmailTemplate(subject=f"EN {subject}", html="<p>Hi {{ lead.first_name }}</p>"),
        }
    )


class World:
    """A gateway on a store file and an SMTP sink; ``reopen`` is a restart."""

    def __init__(self, tmp_path: Path, sink: SmtpSink, clock: Clock) -> None:
        self.cfg = GatewayConfig(
            store=StoreSettings(path=str(tmp_path / "store.db")),
            campaigns=CampaignSettings(tick_seconds=3600),  # the test ticks
            mail=MailSettings(host=sink.host, port=sink.port, from_address="ventas@example.com"),
        )
        self.sink = sink
        self.clock = clock
        self.gw: Gateway | None = None

    async def open(self) -> Gateway:
        self.gw = Gateway(self.cfg, clock=self.clock)
        await self.gw.start()
        return self.gw

    async def close(self) -> None:
        if self.gw is not None:
            await self.gw.stop()
            self.gw = None

    async def reopen(self) -> Gateway:
        await self.close()
        return await self.open()

    @property
    def db(self) -> Any:
        assert self.gw is not None and self.gw.db is not None
        return self.gw.db

    @property
    def scheduler(self) -> CampaignScheduler:
        assert self.gw is not None and self.gw.campaigns is not None
        return self.gw.campaigns

    async def tick(self, when: float) -> Any:
        self.clock.now = when
        return await self.scheduler.tick()

    async def lead(self, first: str, **fields: Any) -> int:
        data = {"first_name": first, "status": "new", "source": "web_form", **fields}
        result = await PersonRepository(self.db).create(PersonType.LEAD, data)
        return result.person.id

    async def campaign(self, steps: list[Step], **fields: Any) -> int:
        store = CampaignStore(self.db)
        fields.setdefault("name", "Nurture")
        c = await store.create(CampaignIn(steps=steps, **fields), "ana", FRI_0700)
        await store.set_status(c.id, "running", self.clock.now)
        return c.id

    async def rows(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.db.conn.execute_fetchall(sql, args))

    async def member_states(self) -> dict[int, tuple[str, str | None]]:
        return {
            r[0]: (r[1], r[2])
            for r in await self.rows(
                "SELECT person_id, state, left_reason FROM campaign_members ORDER BY id"
            )
        }

    def to(self) -> list[str]:
        return [str(m["To"]) for m in self.sink.messages]


@pytest.fixture
async def world(tmp_path: Path, smtp_sink: SmtpSink) -> AsyncIterator[World]:  # noqa: F811
    w = World(tmp_path, smtp_sink, Clock(FRI_0700))
    await w.open()
    yield w
    await w.close()


async def test_a_sequence_runs_to_its_end_inside_each_leads_business_hours(world: World) -> None:
    madrid = await world.lead("Lucía", country="ES", emails=["lucia@example.es"])
    mexico = await world.lead(
        "Diego", country="MX", emails=["diego@example.mx"], phones=["+52 55 1234 5678"]
    )
    await world.campaign([email("Uno"), Wait(days=2), email("Dos")])

    report = await world.tick(FRI_0700)  # before opening: both enter, nothing is sent
    assert report.enrolled == 2 and world.sink.messages == []
    await world.tick(FRI_0900)  # Madrid opens; Mexico City is at 02:00
    assert world.to() == ["lucia@example.es"]
    first = world.sink.messages[0]
    assert first["Subject"] == "Uno"
    assert "Hola Lucía" in first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert (
        first["List-Unsubscribe"].startswith("<") and "/unsubscribe/" in first["List-Unsubscribe"]
    )
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    await world.tick(at(MEXICO, 2025, 3, 7, 8, 59))
    assert len(world.sink.messages) == 1
    await world.tick(at(MEXICO, 2025, 3, 7, 9, 0))  # 16:00 in Madrid
    assert world.to() == ["lucia@example.es", "diego@example.mx"]

    # two days after Friday is Sunday: closed; the second e-mail waits for Monday 09:00
    await world.tick(at(MADRID, 2025, 3, 9, 12, 0))
    await world.tick(MON_0900 - 60)
    assert len(world.sink.messages) == 2
    await world.tick(MON_0900)
    assert world.to()[2:] == ["lucia@example.es"]
    assert world.sink.messages[2]["Subject"] == "Dos"
    await world.tick(at(MEXICO, 2025, 3, 10, 9, 0))
    assert world.to()[3:] == ["diego@example.mx"]

    sent = await world.rows(
        "SELECT m.person_id, r.step, r.at FROM campaign_step_runs r"
        " JOIN campaign_members m ON m.id = r.member_id"
        " WHERE r.kind = 'email' AND r.status = 'sent' ORDER BY r.at"
    )
    assert [tuple(r) for r in sent] == [
        (madrid, 0, FRI_0900),
        (mexico, 0, at(MEXICO, 2025, 3, 7, 9, 0)),
        (madrid, 2, MON_0900),
        (mexico, 2, at(MEXICO, 2025, 3, 10, 9, 0)),
    ]
    assert await world.member_states() == {
        madrid: ("left", "completed"),
        mexico: ("left", "completed"),
    }
    await world.tick(MON_0900 + 7 * DAY)
    assert len(world.sink.messages) == 4


async def test_a_restart_in_the_middle_sends_nothing_twice(world: World) -> None:
    lead = await world.lead("Ana", emails=["ana@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos"), email("Tres")])
    await world.tick(FRI_0900)
    assert world.to() == ["ana@example.es"]

    await world.reopen()  # a clean restart on the same file
    await world.tick(FRI_0900 + 60)
    assert len(world.sink.messages) == 1

    # a crash in the middle of the second e-mail: the run was claimed ('sending') and the
    # member had not moved on when the process died
    await world.tick(MON_0900 - HOUR)
    await world.close()
    w2 = await world.open()
    assert w2.db is not None
    member = (await world.rows("SELECT id FROM campaign_members WHERE person_id = ?", lead))[0][0]
    async with w2.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO campaign_step_runs (member_id, campaign_id, step, kind, status, at, day)"
            " SELECT id, campaign_id, 2, 'email', 'sending', ?, '2025-03-10' FROM"
            " campaign_members WHERE id = ?",
            (MON_0900, member),
        )
        await conn.execute(
            "UPDATE campaign_members SET step = 2, due_at = ? WHERE id = ?", (MON_0900, member)
        )
    await world.reopen()  # start-up marks the cut-short send 'unknown'
    await world.tick(MON_0900 + 60)
    assert [m["Subject"] for m in world.sink.messages] == ["Uno", "Tres"]
    runs = await world.rows(
        "SELECT step, status FROM campaign_step_runs WHERE member_id = ? ORDER BY step", member
    )
    assert [tuple(r) for r in runs] == [(0, "sent"), (1, "done"), (2, "unknown"), (3, "sent")]
    await world.reopen()
    await world.tick(MON_0900 + DAY)
    assert len(world.sink.messages) == 2


async def test_a_lead_that_is_won_or_replies_leaves(world: World) -> None:
    won = await world.lead("Gana", emails=["gana@example.es"])
    replies = await world.lead("Responde", emails=["responde@example.es"])
    stays = await world.lead("Sigue", emails=["sigue@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    assert len(world.sink.messages) == 3

    await PersonRepository(world.db).update(won, {"status": "won"})
    run = await world.rows(
        "SELECT r.id FROM campaign_step_runs r JOIN campaign_members m ON m.id = r.member_id"
        " WHERE m.person_id = ? AND r.kind = 'email'",
        replies,
    )
    await CampaignStore(world.db).mark_replied(run[0][0], FRI_0900 + HOUR)
    await world.tick(MON_0900)
    assert world.to()[3:] == ["sigue@example.es"]
    assert await world.member_states() == {
        won: ("left", "converted"),
        replies: ("left", "replied"),
        stays: ("left", "completed"),
    }


async def test_opt_out_and_bounces_stop_the_mail(world: World) -> None:
    bounces = await world.lead("Rebota", emails=["rebota@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    world.sink.fail_next(550)  # the server refuses the address
    await world.tick(FRI_0900)
    assert world.sink.messages == [] and world.sink.refused[0][0] == 550
    marked = await world.rows("SELECT bounced_at FROM emails WHERE person_id = ?", bounces)
    assert marked[0][0] == FRI_0900
    opts_out = await world.lead("Baja", emails=["baja@example.es"])
    await world.tick(FRI_0900 + HOUR)
    assert world.to() == ["baja@example.es"]
    await PersonRepository(world.db).update(opts_out, {"email_opt_out": True})
    await world.tick(MON_0900)
    assert world.to() == ["baja@example.es"]  # nothing more to either
    assert await world.member_states() == {
        bounces: ("left", "unreachable"),
        opts_out: ("left", "unsubscribed"),
    }
    runs = await world.rows("SELECT status FROM campaign_step_runs WHERE kind = 'email'")
    assert sorted(r[0] for r in runs) == ["bounced", "sent"]


async def _users(world: World) -> None:
    users = UserRepository(world.db)
    await users.add("ana", "a-long-password-1", "agent", ["101"], "Ana")
    await users.add("luis", "a-long-password-2", "agent", ["102"], "Luis")
    await users.add("eva", "a-long-password-3", "agent", ["103"], "Eva")


def _worklist_service(world: World) -> ScoringService:
    return ScoringService(world.db, ScoringSettings(), clock=world.clock)


async def test_call_tasks_land_in_the_right_worklist_and_the_disposition_moves_the_lead_on(
    world: World,
) -> None:
    await _users(world)
    keen = await world.lead("Keen", owner="ana", phones=["+34 600 000 001"])
    cold = await world.lead("Cold", owner="luis", phones=["+34 600 000 002"])
    steps: list[Step] = [
        CallTask(title="Llamar para recuperar", assign="owner"),
        Branch(condition=Condition(kind="disposition", values=["interested"]), then=3),
        Stop(),
        SetFields(status="qualified", add_tags=["revived"]),
    ]
    await world.campaign(steps, name="Recuperar")
    await world.tick(FRI_0900)

    service = _worklist_service(world)
    ana, _ = await service.worklist(owner="ana")
    assert [(i.person.id, i.campaign) for i in ana] == [(keen, "Recuperar")]
    assert ana[0].next_follow_up is not None
    assert ana[0].next_follow_up.title == "Llamar para recuperar"
    luis, _ = await service.worklist(owner="luis")
    assert [(i.person.id, i.campaign) for i in luis] == [(cold, "Recuperar")]

    # nothing happens while the calls are not made
    await world.tick(FRI_0900 + HOUR)
    assert (await world.member_states())[keen] == ("active", None)

    world.clock.now = FRI_0900 + 2 * HOUR
    bus = world.gw.bus  # type: ignore[union-attr]
    bus.publish(WrapUpSaved("sim:1", "ana", world.clock.now, keen, "interested", "answered"))
    bus.publish(WrapUpSaved("sim:2", "luis", world.clock.now, cold, "not_interested", "answered"))
    await world.scheduler.settled()
    await world.tick(FRI_0900 + 2 * HOUR)

    assert await world.member_states() == {keen: ("left", "completed"), cold: ("left", "completed")}
    people = PersonRepository(world.db)
    keen_p, cold_p = await people.get(keen), await people.get(cold)
    assert keen_p is not None and keen_p.status == "qualified"
    assert cold_p is not None and cold_p.status == "new"
    tags = await world.rows("SELECT tag FROM person_tags WHERE person_id = ?", keen)
    assert [r[0] for r in tags] == ["revived"]
    runs = await world.rows(
        "SELECT disposition, call_outcome, agent, status FROM campaign_step_runs"
        " WHERE kind = 'call' ORDER BY member_id"
    )
    assert [tuple(r) for r in runs] == [
        ("interested", "answered", "ana", "called"),
        ("not_interested", "answered", "luis", "called"),
    ]
    open_tasks = await world.rows("SELECT count(*) FROM follow_ups WHERE done = 0")
    assert open_tasks[0][0] == 0
    # the task is done and the lead qualified: off ana's list (the list is for calling)
    assert (await service.worklist(owner="ana"))[0] == []


async def test_a_pool_task_is_seen_by_the_pool_until_one_agent_calls(world: World) -> None:
    await _users(world)
    lead = await world.lead("Nadie", phones=["+34 600 000 003"])  # nobody owns it
    steps: list[Step] = [
        CallTask(title="Llamada", assign="pool", pool=["ana", "luis"], expire_days=2),
        Branch(condition=Condition(kind="answered_call"), then=3),
        email("No contesta"),
        Stop(),
    ]
    await world.campaign(steps)
    await world.tick(FRI_0900)
    service = _worklist_service(world)
    for agent in ("ana", "luis"):
        items, _ = await service.worklist(owner=agent)
        assert [i.person.id for i in items] == [lead], agent
    assert (await service.worklist(owner="eva"))[0] == []

    # luis calls the lead: the task is his and done; without a wrap-up the member moves on
    # once the agent had time to save one
    record = CallRecord(
        linkedid="1741334400.1",
        pbx="sim",
        direction=Direction.OUTBOUND,
        outcome=Outcome.ANSWERED,
        started_at=FRI_0900 + HOUR,
        ended_at=FRI_0900 + HOUR + 60,
        caller="102",
        dialed="+34600000003",
    )
    world.clock.now = FRI_0900 + HOUR + 60
    world.gw.bus.publish(CallEnded(record))  # type: ignore[union-attr]
    await world.scheduler.settled()
    task = await world.rows("SELECT owner, done FROM follow_ups")
    assert [tuple(r) for r in task] == [("luis", 1)]
    await world.tick(FRI_0900 + HOUR + 120)
    assert (await world.member_states())[lead] == ("active", None)  # the wrap-up may come
    await world.tick(FRI_0900 + 2 * HOUR)
    assert await world.member_states() == {lead: ("left", "completed")}  # answered: stop
    assert world.sink.messages == []
    member = await world.rows("SELECT last_agent FROM campaign_members")
    assert member[0][0] == "luis"


async def test_an_unmade_call_task_expires_and_the_member_goes_on(world: World) -> None:
    await _users(world)
    lead = await world.lead("Olvidada", owner="ana", phones=["+34 600 000 004"], emails=["o@x.es"])
    steps: list[Step] = [CallTask(title="Llamar", expire_days=1), email("Tras la llamada")]
    await world.campaign(steps)
    await world.tick(FRI_0900)
    await world.tick(FRI_0900 + DAY - 60)
    assert world.sink.messages == []
    await world.tick(FRI_0900 + DAY)  # Saturday: expired; the e-mail waits for Monday
    assert world.sink.messages == []
    status = await world.rows("SELECT status FROM campaign_step_runs WHERE kind = 'call'")
    assert status[0][0] == "expired"
    assert (await world.rows("SELECT done FROM follow_ups"))[0][0] == 1
    await world.tick(MON_0900)
    assert world.to() == ["o@x.es"]
    assert (await world.member_states())[lead] == ("left", "completed")


async def test_the_daily_cap_moves_the_rest_to_the_next_days(world: World) -> None:
    for i in range(5):
        await world.lead(f"L{i}", emails=[f"l{i}@example.es"])
    await world.campaign([email("Uno")], daily_email_cap=2)
    report = await world.tick(FRI_0900)
    assert len(world.sink.messages) == 2 and report.capped == 3
    await world.tick(FRI_0900 + 5 * HOUR)
    assert len(world.sink.messages) == 2
    await world.tick(MON_0900)  # the next day's opening (Saturday and Sunday are closed)
    assert len(world.sink.messages) == 4
    await world.tick(MON_0900 + DAY)
    assert len(world.sink.messages) == 5
    days = await world.rows(
        "SELECT day, count(*) FROM campaign_step_runs WHERE status = 'sent' GROUP BY day"
    )
    assert [tuple(r) for r in days] == [("2025-03-07", 2), ("2025-03-10", 2), ("2025-03-11", 1)]


async def test_a_paused_campaign_holds_its_members_and_takes_nobody_in(world: World) -> None:
    first = await world.lead("Primera", emails=["primera@example.es"])
    cid = await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0700)
    store = CampaignStore(world.db)
    await store.set_status(cid, "paused", FRI_0700 + 60)
    later = await world.lead("Luego", emails=["luego@example.es"])
    report = await world.tick(FRI_0900 + HOUR)
    assert world.sink.messages == [] and report.enrolled == 0
    assert list(await world.member_states()) == [first]
    await world.tick(MON_0900)
    assert world.sink.messages == []

    world.clock.now = MON_0900 + HOUR
    await store.set_status(cid, "running", world.clock.now)
    await world.tick(MON_0900 + 4 * HOUR)
    assert sorted(world.to()) == ["luego@example.es", "primera@example.es"]
    assert list(await world.member_states()) == [first, later]


async def test_a_member_that_fails_holds_back_no_one_else(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch runs without a savepoint per member; one member's failure undoes it and it
    runs again member by member: the others are sent once, the failing one is retried later."""
    uno = await world.lead("Uno", emails=["uno@example.es"])
    dos = await world.lead("Dos", emails=["dos@example.es"], owner="pepe")
    tres = await world.lead("Tres", emails=["tres@example.es"])
    await world.campaign([email("Hola"), email("Otra")])
    await world.tick(FRI_0700)  # they enter, due at the opening
    scheduler = world.scheduler
    owner_name = scheduler._owner_name

    async def failing_for_pepe(owner: str | None) -> str | None:
        if owner == "pepe":
            raise RuntimeError("disk I/O error")
        return await owner_name(owner)

    monkeypatch.setattr(scheduler, "_owner_name", failing_for_pepe)
    with caplog.at_level(logging.WARNING, logger="gateway.campaigns"):
        report = await world.tick(FRI_0900)
    assert sorted(world.to()) == sorted(["uno@example.es", "tres@example.es"] * 2)
    assert report.errors == 1
    undone = [r for r in caplog.records if "undone" in r.getMessage()]
    assert len(undone) == 1 and "disk I/O error" in undone[0].getMessage()
    caplog.clear()
    runs = await world.rows(
        "SELECT m.person_id, r.step, r.status FROM campaign_step_runs r"
        " JOIN campaign_members m ON m.id = r.member_id ORDER BY m.person_id, r.step"
    )
    assert [tuple(r) for r in runs] == [
        (uno, 0, "sent"), (uno, 1, "sent"), (tres, 0, "sent"), (tres, 1, "sent"),
    ]  # fmt: skip

    monkeypatch.setattr(scheduler, "_owner_name", owner_name)  # the disk is back
    await world.tick(FRI_0900 + 60)
    assert len(world.sink.messages) == 4  # Dos waits out its retry delay
    with caplog.at_level(logging.WARNING, logger="gateway.campaigns"):
        await world.tick(FRI_0900 + RETRY_AFTER_ERROR)
    assert world.to()[4:] == ["dos@example.es", "dos@example.es"]
    assert caplog.records == []  # a batch with no failure is never undone
    assert await world.member_states() == {
        uno: ("left", "completed"),
        dos: ("left", "completed"),
        tres: ("left", "completed"),
    }


async def test_when_carrying_members_on_after_their_mail_fails_the_next_batch_does_it(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After a batch's e-mails, each member goes on through the instant steps that follow
    (here a wait) with what its visit read; when that fails, it is undone and the members,
    due at once, are visited again: the wait starts, nothing is sent twice, nothing is lost."""
    ana = await world.lead("Ana", emails=["ana@example.es"])
    luis = await world.lead("Luis", emails=["luis@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0700)
    store = world.scheduler.store
    done_many = store.done_many
    failures = []

    async def fails_once(done: Any) -> None:
        if done and not failures:
            failures.append(len(done))
            raise RuntimeError("database is locked")
        await done_many(done)

    monkeypatch.setattr(store, "done_many", fails_once)
    with caplog.at_level(logging.WARNING, logger="gateway.campaigns"):
        report = await world.tick(FRI_0900)
    assert failures == [2]  # the carrying on of both members, undone
    assert any("carrying 2 members on failed" in r.getMessage() for r in caplog.records)
    assert report.sent == 2 and sorted(world.to()) == ["ana@example.es", "luis@example.es"]
    runs = await world.rows(
        "SELECT m.person_id, r.step, r.status FROM campaign_step_runs r"
        " JOIN campaign_members m ON m.id = r.member_id ORDER BY m.person_id, r.step"
    )
    assert [tuple(r) for r in runs] == [
        (ana, 0, "sent"), (ana, 1, "done"), (luis, 0, "sent"), (luis, 1, "done"),
    ]  # fmt: skip
    due = await world.rows("SELECT step, due_at FROM campaign_members ORDER BY person_id")
    assert [tuple(r) for r in due] == [(2, MON_0900)] * 2  # a day after Friday: Monday

    await world.tick(MON_0900 - 60)
    assert len(world.sink.messages) == 2
    await world.tick(MON_0900)
    assert [m["Subject"] for m in world.sink.messages] == ["Uno", "Uno", "Dos", "Dos"]
    assert await world.member_states() == {ana: ("left", "completed"), luis: ("left", "completed")}


async def test_batches_overlap_without_sending_anything_twice(world: World) -> None:
    """With batches of 2, the next batch is prepared while one is on the wire: seven leads,
    two e-mails each with nothing between them, arrive once each, in order, in one tick."""
    world.cfg = msgspec.structs.replace(
        world.cfg, campaigns=CampaignSettings(tick_seconds=3600, batch_size=2)
    )
    await world.reopen()
    leads = [await world.lead(f"L{i}", emails=[f"l{i}@example.es"]) for i in range(7)]
    await world.campaign([email("Uno"), email("Dos"), Wait(days=1), Stop()])
    await world.tick(FRI_0700)
    report = await world.tick(FRI_0900)
    assert report.sent == 14 and report.failed == 0
    by_address: dict[str, list[str]] = {}
    for m in world.sink.messages:
        by_address.setdefault(str(m["To"]), []).append(str(m["Subject"]))
    assert by_address == {f"l{i}@example.es": ["Uno", "Dos"] for i in range(7)}
    due = await world.rows("SELECT person_id, step, due_at, state FROM campaign_members")
    assert sorted(tuple(r) for r in due) == [(p, 3, MON_0900, "active") for p in leads]


async def test_a_batch_sent_before_the_store_fails_is_recorded_as_sent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is recorded while the next one is on the wire; when the store fails while the
    batch after that is prepared, the batch on the wire is let finish and recorded as sent
    (not cut short and left for the recovery to call 'unknown'), and the next tick sends
    nothing twice."""
    world.cfg = msgspec.structs.replace(
        world.cfg, campaigns=CampaignSettings(tick_seconds=3600, batch_size=2)
    )
    await world.reopen()
    for i in range(6):
        await world.lead(f"L{i}", emails=[f"l{i}@example.es"])
    await world.campaign([email("Uno")])
    await world.tick(FRI_0700)
    store = world.scheduler.store
    due_members = store.due_members
    calls = []

    async def fails_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:  # while the second batch is on the wire
            raise RuntimeError("database is locked")
        return await due_members(*args, **kwargs)

    monkeypatch.setattr(store, "due_members", fails_third)
    with pytest.raises(RuntimeError, match="locked"):
        await world.tick(FRI_0900)
    runs = await world.rows("SELECT status, count(*) FROM campaign_step_runs GROUP BY status")
    assert [tuple(r) for r in runs] == [("sent", 4)]
    monkeypatch.setattr(store, "due_members", due_members)
    await world.reopen()
    report = await world.tick(FRI_0900 + 60)
    assert report.sent == 2
    assert sorted(world.to()) == [f"l{i}@example.es" for i in range(6)]


async def test_the_agent_s_name_in_an_email_is_read_once_a_tick_and_follows_a_rename(
    world: World,
) -> None:
    """``{{ owner.name }}`` is the lead's agent's display name (their username when they have
    no account); many leads of one agent read it once, and a rename shows in the next tick."""
    await _users(world)
    for i in range(3):
        await world.lead(f"A{i}", emails=[f"a{i}@example.es"], owner="ana")
    await world.lead("P", emails=["p@example.es"], owner="pepe")  # an agent without an account
    step = SendEmail(
        templates={"es": EmailTemplate(subject="Hola", html="<p>Te escribe {{ owner.name }}</p>")}
    )
    await world.campaign([step, Wait(days=1), step])
    await world.tick(FRI_0900)

    def signatures() -> dict[str, str]:
        return {
            str(m["To"]): m.get_body(("html",)).get_content().split("</p>")[0]  # type: ignore[union-attr]
            for m in world.sink.messages
        }

    assert signatures() == {
        **{f"a{i}@example.es": "<p>Te escribe Ana" for i in range(3)},
        "p@example.es": "<p>Te escribe pepe",
    }
    await UserRepository(world.db).update("ana", display_name="Ana Pérez")
    world.sink.clear()
    await world.tick(MON_0900)
    assert signatures()["a0@example.es"] == "<p>Te escribe Ana Pérez"
