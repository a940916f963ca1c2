"""The campaign store on a real SQLite file: life of a campaign, who enters (and re-enters),
steps claimed once per member, pause/resume holding members where they are, and results."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.bus import Bus
from gateway.campaigns.mailer import Mailer
from gateway.campaigns.model import (
    CallTask,
    CampaignIn,
    EmailTemplate,
    Segment,
    SendEmail,
    Stop,
    Wait,
)
from gateway.campaigns.scheduler import CampaignScheduler
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.store import Campaign, CampaignBusy, CampaignNotFound, CampaignStore
from gateway.store.db import Database
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401
from tests.postgres_fixtures import open_store

T0 = 1_750_000_000.0  # 2025-06-15
DAY = 86400.0
MADRID = ZoneInfo("Europe/Madrid")
MONDAY_10 = datetime(2025, 6, 16, 10, 0, tzinfo=MADRID).timestamp()  # open for e-mail


def definition(**kw: object) -> CampaignIn:
    base: dict[str, object] = {
        "name": "Revive no budget",
        "segment": Segment(statuses=["lost"], lost_reasons=["no_budget", "competitor"]),
        "steps": [
            SendEmail(templates={"es": EmailTemplate(subject="Hola", html="<p>Hola</p>")}),
            Wait(days=3),
            CallTask(title="Llamar"),
            Stop(),
        ],
    }
    base.update(kw)
    return CampaignIn(**base)  # type: ignore[arg-type]


STORE_ENGINES = ("sqlite", "postgresql")


@pytest.fixture
async def db(store_location: str) -> AsyncIterator[Database]:
    d = await open_store(store_location, clock=lambda: T0)
    yield d
    await d.close()


@pytest.fixture
def store(db: Database) -> CampaignStore:
    return CampaignStore(db)


async def lead(
    db: Database,
    status: str = "lost",
    lost_reason: str = "no_budget",
    country: str = "",
    phones: Sequence[str] = (),
) -> int:
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO people (kind, status, lost_reason, country, created_at, updated_at)"
            " VALUES ('lead', ?, ?, ?, ?, ?)",
            (status, lost_reason if status == "lost" else "", country, T0, T0),
        )
        pid = cur.lastrowid
        assert pid is not None
        for n in phones:
            await conn.execute(
                "INSERT INTO phones (person_id, raw, e164) VALUES (?,?,?)", (pid, n, n)
            )
    return pid


async def running(store: CampaignStore, **kw: object) -> Campaign:
    c = await store.create(definition(**kw), "user:sup", T0)
    return await store.set_status(c.id, "running", T0)


# -- campaigns ------------------------------------------------------------------------------


async def test_create_get_list_and_to_dict(store: CampaignStore) -> None:
    c = await store.create(definition(description="Para los sin presupuesto"), "user:sup", T0)
    assert c.status == "draft" and c.created_by == "user:sup" and c.started_at is None
    got = await store.get(c.id)
    assert got is not None and got.definition == c.definition
    assert got.name == "Revive no budget" and got.description == "Para los sin presupuesto"
    other = await running(store, name="Nurture web")
    assert [x.id for x in await store.list()] == [other.id, c.id]
    assert [x.id for x in await store.list("running")] == [other.id]
    data = c.to_dict()
    assert data["definition"]["steps"][0]["kind"] == "email"
    assert data["definition"]["segment"]["lost_reasons"] == ["no_budget", "competitor"]
    assert await store.get(9999) is None


async def test_edit_only_while_draft_or_paused_delete_only_drafts(store: CampaignStore) -> None:
    c = await store.create(definition(), None, T0)
    edited = await store.update(c.id, definition(name="Renamed", daily_email_cap=50), T0 + 5)
    assert edited.name == "Renamed" and edited.definition.daily_email_cap == 50
    assert edited.updated_at == T0 + 5
    await store.set_status(c.id, "running", T0 + 10)
    with pytest.raises(CampaignBusy):
        await store.update(c.id, definition(name="While running"), T0 + 20)
    with pytest.raises(CampaignBusy):
        await store.delete(c.id)
    await store.set_status(c.id, "paused", T0 + 30)
    assert (await store.update(c.id, definition(name="While paused"), T0 + 40)).name == (
        "While paused"
    )
    await store.set_status(c.id, "ended", T0 + 50)
    with pytest.raises(CampaignBusy):
        await store.update(c.id, definition(), T0 + 60)
    with pytest.raises(CampaignBusy):
        await store.set_status(c.id, "running", T0 + 60)  # ended is for good

    draft = await store.create(definition(), None, T0)
    await store.delete(draft.id)
    assert await store.get(draft.id) is None
    with pytest.raises(CampaignNotFound):
        await store.delete(draft.id)
    with pytest.raises(CampaignNotFound):
        await store.set_status(draft.id, "running", T0)


async def test_start_keeps_the_first_start_time(store: CampaignStore) -> None:
    c = await running(store)
    assert c.started_at == T0
    await store.set_status(c.id, "paused", T0 + 100)
    again = await store.set_status(c.id, "running", T0 + 200)
    assert again.started_at == T0 and again.paused_at is None
    same = await store.set_status(c.id, "running", T0 + 300)  # no-op
    assert same.updated_at == again.updated_at


# -- members --------------------------------------------------------------------------------


async def test_enroll_adds_new_members_once(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    a, b = await lead(db), await lead(db, lost_reason="competitor")
    assert await store.enroll(c, [a, b, a], T0, T0 + 60, {a: "America/Mexico_City"}) == 2
    assert await store.enroll(c, [a, b], T0 + 5, T0 + 60, {}) == 0
    members = await store.members(c.id)
    assert [(m.person_id, m.round, m.step, m.due_at, m.state) for m in members] == [
        (a, 0, 0, T0 + 60, "active"),
        (b, 0, 0, T0 + 60, "active"),
    ]
    assert members[0].timezone == "America/Mexico_City"
    assert members[1].timezone == ""  # the campaign has no zone of its own: the scheduler's
    assert [m.lost_reason for m in members] == ["no_budget", "competitor"]


async def test_candidates_are_segment_matches_not_yet_in(
    store: CampaignStore, db: Database
) -> None:
    c = await running(store)
    a = await lead(db)
    b = await lead(db, lost_reason="competitor")
    await lead(db, lost_reason="not_ready")  # outside the segment
    await lead(db, status="new")
    assert await store.candidates(c, MADRID, T0, 100) == [a, b]
    assert await store.candidates(c, MADRID, T0, 1) == [a]
    assert await store.candidates(c, MADRID, T0, 100, after_id=a) == [b]
    await store.enroll(c, [a], T0, T0, {})
    assert await store.candidates(c, MADRID, T0, 100) == [b]


async def test_without_reentry_a_lead_who_left_never_comes_back(
    store: CampaignStore, db: Database
) -> None:
    c = await running(store)
    a = await lead(db)
    await store.enroll(c, [a], T0, T0, {})
    [m] = await store.members(c.id)
    assert await store.leave(m.id, "completed", T0 + DAY)
    later = T0 + 400 * DAY
    assert await store.candidates(c, MADRID, later, 100) == []
    assert await store.enroll(c, [a], later, later, {}) == 0


async def test_reentry_after_the_configured_days(store: CampaignStore, db: Database) -> None:
    c = await running(store, reentry_days=30)
    a = await lead(db)
    await store.enroll(c, [a], T0, T0, {})
    [m] = await store.members(c.id)
    # while active: neither a candidate nor a second row
    assert await store.candidates(c, MADRID, T0 + 90 * DAY, 100) == []
    assert await store.enroll(c, [a], T0 + 90 * DAY, T0, {}) == 0
    await store.leave(m.id, "completed", T0 + DAY)
    too_soon = T0 + 30 * DAY  # 29 days after leaving
    assert await store.candidates(c, MADRID, too_soon, 100) == []
    assert await store.enroll(c, [a], too_soon, too_soon, {}) == 0
    enough = T0 + 31 * DAY  # 30 days after leaving
    assert await store.candidates(c, MADRID, enough, 100) == [a]
    assert await store.enroll(c, [a], enough, enough, {}) == 1
    rounds = await store.members(c.id)
    assert [(r.round, r.state, r.entered_at) for r in rounds] == [
        (0, "left", T0),
        (1, "active", enough),
    ]
    assert await store.candidates(c, MADRID, enough, 100) == []


async def test_timezones_from_country_and_numbers(store: CampaignStore, db: Database) -> None:
    ny = await lead(db, country="US", phones=["+12125551234"])
    mx = await lead(db, phones=["+525512345678"])
    nothing = await lead(db)
    zones = await store.timezones_for([ny, mx, nothing], "Europe/Madrid")
    assert zones == {
        ny: "America/New_York",
        mx: "America/Mexico_City",
        nothing: "Europe/Madrid",
    }


async def test_due_members_are_active_members_of_running_campaigns_by_due_time(
    store: CampaignStore, db: Database
) -> None:
    c = await running(store)
    draft = await store.create(definition(name="Draft"), None, T0)
    a, b, x = await lead(db), await lead(db), await lead(db)
    await store.enroll(c, [a], T0, T0 + 300, {})
    await store.enroll(c, [b], T0, T0 + 100, {})
    await store.enroll(draft, [x], T0, T0, {})
    assert await store.due_members(T0 + 50, 10) == []
    due = await store.due_members(T0 + 300, 10)
    assert [(m.person_id, camp.id) for m, camp in due] == [(b, c.id), (a, c.id)]
    assert await store.due_members(T0 + 300, 1) == due[:1]
    [mb, ma] = [m for m, _ in due]
    # the members of a batch still on the wire are left out, and the limit still filled
    assert await store.due_members(T0 + 300, 1, exclude={mb.id}) == due[1:]
    assert await store.due_members(T0 + 300, 10, exclude={mb.id, ma.id}) == []
    assert await store.advance(mb.id, 1, T0 + 10 * DAY)
    assert [m.person_id for m, _ in await store.due_members(T0 + 300, 10)] == [a]
    await store.leave(ma.id, "replied", T0 + 301)
    assert await store.due_members(T0 + 300, 10) == []
    assert not await store.advance(ma.id, 1, T0)  # a member who left stays out
    assert not await store.leave(ma.id, "completed", T0 + 400)  # leaving once is enough
    assert (await store.member(ma.id)).left_reason == "replied"  # type: ignore[union-attr]


async def test_pause_holds_members_and_resume_shifts_due_times(
    store: CampaignStore, db: Database
) -> None:
    c = await running(store)
    a, b = await lead(db), await lead(db)
    await store.enroll(c, [a], T0, T0 + 100, {})
    await store.enroll(c, [b], T0, T0 + 5 * DAY, {})
    [ma, mb] = await store.members(c.id)
    await store.leave(mb.id, "replied", T0 + 50)  # left: not shifted

    paused = await store.set_status(c.id, "paused", T0 + 60)
    assert paused.paused_at == T0 + 60
    assert await store.due_members(T0 + 10 * DAY, 10) == []  # held where they are

    resumed = await store.set_status(c.id, "running", T0 + 60 + 2 * DAY)
    assert resumed.paused_at is None
    after = {m.id: m for m in await store.members(c.id)}
    assert after[ma.id].due_at == T0 + 100 + 2 * DAY  # 40 s of wait were left: still 40 s
    assert after[ma.id].step == ma.step
    assert after[mb.id].due_at == T0 + 5 * DAY
    assert await store.due_members(T0 + 60 + 2 * DAY, 10) == []
    assert [m.id for m, _ in await store.due_members(T0 + 100 + 2 * DAY, 10)] == [ma.id]


async def test_end_makes_every_active_member_leave(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    people = [await lead(db) for _ in range(3)]
    await store.enroll(c, people, T0, T0, {})
    members = await store.members(c.id)
    await store.leave(members[0].id, "converted", T0 + 10)
    ended = await store.set_status(c.id, "ended", T0 + 20)
    assert ended.status == "ended" and ended.ended_at == T0 + 20
    after = await store.members(c.id)
    assert [(m.state, m.left_reason) for m in after] == [
        ("left", "converted"),
        ("left", "ended"),
        ("left", "ended"),
    ]
    assert await store.members(c.id, state="active") == []
    assert await store.due_members(T0 + DAY, 10) == []


async def test_leave_all_takes_a_person_out_everywhere_or_of_one(
    store: CampaignStore, db: Database
) -> None:
    c1, c2 = await running(store), await running(store, name="Other")
    a, b = await lead(db), await lead(db)
    for c in (c1, c2):
        await store.enroll(c, [a, b], T0, T0, {})
    assert await store.leave_all(a, "unsubscribed", T0 + 1) == 2
    assert await store.leave_all(a, "unsubscribed", T0 + 2) == 0
    assert await store.leave_all(b, "do_not_call", T0 + 3, campaign_id=c1.id) == 1
    assert [(m.campaign_id, m.left_reason) for m in await store.memberships(a)] == []
    assert [m.campaign_id for m in await store.memberships(b)] == [c2.id]
    with pytest.raises(ValueError):
        await store.leave_all(b, "bored", T0)  # only the model's reasons


# -- step runs ------------------------------------------------------------------------------


async def test_a_step_is_claimed_once_per_member(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    a, b = await lead(db), await lead(db)
    await store.enroll(c, [a, b], T0, T0, {})
    ma, mb = await store.members(c.id)
    run = await store.claim_run(ma, 0, "email", T0, "2025-06-15", "sending")
    assert run is not None
    assert await store.claim_run(ma, 0, "email", T0 + 1, "2025-06-15", "sending") is None
    # another member, or the next step of the same one, is another run
    assert await store.claim_run(mb, 0, "email", T0, "2025-06-15", "sending") is not None
    assert await store.claim_run(ma, 1, "wait", T0, "2025-06-15", "done") is not None
    await store.finish_run(run, "sent", message_id="<m1@centralita>", detail="a@x.es")
    got = await store.run(run)
    assert got is not None
    assert (got.status, got.message_id, got.detail) == ("sent", "<m1@centralita>", "a@x.es")
    assert [r.step for r in await store.runs(ma.id)] == [0, 1]
    last = await store.last_run(ma.id, "email")
    assert last is not None and last.id == run
    assert await store.last_run(ma.id, "call") is None
    with pytest.raises(TypeError):
        await store.finish_run(run, "sent", person_id=3)  # not a run field


async def test_crash_while_sending_becomes_unknown_and_is_never_claimed_again(
    store: CampaignStore, db: Database
) -> None:
    c = await running(store)
    a = await lead(db)
    await store.enroll(c, [a], T0, T0, {})
    [m] = await store.members(c.id)
    run = await store.claim_run(m, 0, "email", T0, "2025-06-15", "sending")
    assert run is not None
    # the gateway restarts here: start-up recovery
    assert await store.recover_sending() == 1
    assert (await store.run(run)).status == "unknown"  # type: ignore[union-attr]
    assert await store.recover_sending() == 0
    assert await store.claim_run(m, 0, "email", T0 + 60, "2025-06-15", "sending") is None


async def test_daily_counts_for_caps(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    people = [await lead(db) for _ in range(4)]
    await store.enroll(c, people, T0, T0, {})
    ms = await store.members(c.id)
    for m, status in zip(ms, ["sent", "failed", "skipped", "sending"], strict=True):
        await store.claim_run(m, 0, "email", T0, "2025-06-15", status)
    await store.claim_run(ms[0], 2, "call", T0, "2025-06-15", "task_created")
    await store.claim_run(ms[1], 2, "email", T0 + DAY, "2025-06-16", "sent")
    # a skipped step reached nobody: it uses no cap
    assert await store.count_runs(c.id, "2025-06-15", "email") == 3
    assert await store.count_runs(c.id, "2025-06-15", "call") == 1
    assert await store.count_runs(c.id, "2025-06-16", "email") == 1


async def test_opens_replies_and_call_tasks(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    a = await lead(db)
    await store.enroll(c, [a], T0, T0, {})
    [m] = await store.members(c.id)
    mail = await store.claim_run(m, 0, "email", T0, "2025-06-15", "sent")
    assert mail is not None
    assert await store.mark_opened(mail, T0 + 10)
    assert await store.mark_opened(mail, T0 + 20)
    assert await store.mark_replied(mail, T0 + 30)
    got = await store.run(mail)
    assert got is not None and (got.opened_at, got.replied_at) == (T0 + 10, T0 + 30)
    assert not await store.mark_opened(99999, T0)
    async with db.transaction() as conn:
        cur = await conn.execute(
            "INSERT INTO follow_ups (person_id, due_at, title, owner, created_at)"
            " VALUES (?,?,?,?,?)",
            (a, T0, "Llamar", "ana", T0),
        )
        follow_up = cur.lastrowid
    assert follow_up is not None
    call = await store.claim_run(m, 2, "call", T0, "2025-06-15", "task_created")
    assert call is not None
    await store.finish_run(call, "task_created", follow_up_id=follow_up, agent="ana")
    by_task = await store.run_by_follow_up(follow_up)
    assert by_task is not None and by_task.id == call
    assert [r.id for r in await store.open_call_runs(a)] == [call]
    await store.finish_run(call, "called", call_outcome="answered", disposition="interested")
    assert await store.open_call_runs(a) == []
    assert await store.run_by_follow_up(follow_up + 1) is None


async def test_results_count_the_funnel(store: CampaignStore, db: Database) -> None:
    c = await running(store)
    budget = [await lead(db, lost_reason="no_budget") for _ in range(3)]
    rival = [await lead(db, lost_reason="competitor") for _ in range(2)]
    await store.enroll(c, budget + rival, T0, T0, {})
    m = {x.person_id: x for x in await store.members(c.id)}
    statuses = {budget[0]: "sent", budget[1]: "sent", budget[2]: "bounced"}
    statuses |= {rival[0]: "failed", rival[1]: "skipped"}
    runs = {}
    for pid, status in statuses.items():
        runs[pid] = await store.claim_run(m[pid], 0, "email", T0, "2025-06-15", status)
    await store.mark_opened(runs[budget[0]], T0 + 5)  # type: ignore[arg-type]
    await store.mark_opened(runs[budget[1]], T0 + 5)  # type: ignore[arg-type]
    await store.mark_replied(runs[budget[1]], T0 + 6)  # type: ignore[arg-type]
    for pid, outcome, disposition in (
        (budget[0], "answered", "interested"),
        (rival[0], "no-answer", ""),
        (rival[1], "answered", "interested"),
    ):
        call = await store.claim_run(m[pid], 2, "call", T0, "2025-06-15", "task_created")
        assert call is not None
        await store.finish_run(call, "called", call_outcome=outcome, disposition=disposition)
    expired = await store.claim_run(m[budget[2]], 2, "call", T0, "2025-06-15", "expired")
    assert expired is not None
    # a lost lead who moved on while a member is revived; one was won
    await store.mark_revived(budget[0])
    await store.leave(m[budget[0]].id, "converted", T0 + DAY)
    await store.leave(m[budget[1]].id, "replied", T0 + DAY)
    await store.leave_all(rival[0], "unsubscribed", T0 + DAY)
    await store.mark_revived(rival[0])  # no longer a member: not counted

    r = await store.results(c.id)
    assert (r.entered, r.people, r.active) == (5, 5, 2)
    assert r.left == {"converted": 1, "replied": 1, "unsubscribed": 1}
    assert r.entered_by_lost_reason == {"no_budget": 3, "competitor": 2}
    assert r.revived == 1 and r.revived_by_lost_reason == {"no_budget": 1}
    assert (r.converted, r.unsubscribed) == (1, 1)
    assert (r.emails_sent, r.emails_failed, r.emails_bounced) == (2, 1, 1)
    assert (r.emails_opened, r.emails_replied) == (2, 1)
    assert (r.calls_made, r.calls_answered) == (3, 2)
    assert [s.kind for s in r.steps] == ["email", "wait", "call", "stop"]
    email, wait, call, stop = r.steps
    assert email.by_status == {"sent": 2, "bounced": 1, "failed": 1, "skipped": 1}
    assert (email.runs, email.opened, email.replied) == (5, 2, 1)
    assert wait.runs == 0 and stop.runs == 0
    assert call.by_status == {"called": 3, "expired": 1}
    assert call.answered == 2 and call.dispositions == {"interested": 2}
    assert r.to_dict()["steps"][2]["dispositions"] == {"interested": 2}
    with pytest.raises(CampaignNotFound):
        await store.results(9999)


# -- the scheduler's sending on either engine ------------------------------------------------


async def test_a_tick_sends_each_due_mail_once_and_moves_the_members_on(
    db: Database,
    store: CampaignStore,
    smtp_sink: SmtpSink,  # noqa: F811
) -> None:
    """Batches of a tick on either engine: the batch's leads read at once, each claimed
    e-mail sent on kept connections and recorded, a refused address marked, and each member
    carried on through its wait (in a savepoint of the batch's results) to the next e-mail."""
    mail = SendEmail(templates={"es": EmailTemplate(subject="Hola", html="<p>Hola</p>")})
    c = await running(store, steps=[mail, Wait(days=3), mail])
    people = [await lead(db) for _ in range(12)]
    async with db.transaction() as conn:
        for i, pid in enumerate(people):
            address = "gone@example.com" if i == 4 else f"lead{i}@example.com"
            await conn.execute(
                "INSERT INTO emails (person_id, email, email_lower) VALUES (?, ?, ?)",
                (pid, address, address),
            )
    smtp_sink.refuse("gone@example.com", 550)
    settings = MailSettings(host=smtp_sink.host, port=smtp_sink.port, from_address="v@example.com")
    scheduler = CampaignScheduler(
        db,
        Bus(),
        Mailer(settings),
        CampaignSettings(batch_size=5),  # three batches, each sent while the next is read
        lambda: MONDAY_10,
        "https://crm.example.com",
        "Europe/Madrid",
    )
    try:
        first = await scheduler.tick(MONDAY_10)
        again = await scheduler.tick(MONDAY_10)
        later = await scheduler.tick(MONDAY_10 + 3 * DAY)
    finally:
        await scheduler.close()
    assert (first.enrolled, first.sent, first.bounced, first.failed) == (12, 11, 1, 0)
    assert again.sent == 0 and later.sent == 11
    delivered = [d.rcpt_tos[0] for d in smtp_sink.deliveries]
    expected = [f"lead{i}@example.com" for i in range(12) if i != 4]
    assert sorted(delivered) == sorted(expected * 2)  # each of the two e-mails, once each
    rows = await db.conn.execute_fetchall(
        "SELECT step, kind, status, count(*) FROM campaign_step_runs WHERE campaign_id = ?"
        " GROUP BY step, kind, status ORDER BY step, status",
        (c.id,),
    )
    runs = [tuple(r) for r in rows]
    assert (0, "email", "bounced", 1) in runs and (0, "email", "sent", 11) in runs
    assert (1, "wait", "done", 12) in runs and (2, "email", "sent", 11) in runs
    bounced = await db.conn.execute_fetchall(
        "SELECT email FROM emails WHERE bounced_at IS NOT NULL"
    )
    assert [r[0] for r in bounced] == ["gone@example.com"]
