"""The campaigns' scheduler: enrolls matching leads and runs each member's due step.

Every ``tick`` (each ``campaigns.tick_seconds``, or sooner when a call's wrap-up moves a member
on) does, in order:

1. the bus events received since the last tick (a won lead leaves ``converted``, an
   unsubscribe leaves every campaign, a call task's call or wrap-up finishes its run);
2. enrolls the new matches of every running campaign, due at the next business hour of each
   lead's time zone;
3. takes the due members in batches and runs their steps through :mod:`.engine`.

Idempotency: a step runs at most once per member. E-mails are claimed (``sending``) and
committed BEFORE the SMTP conversation; the store's write lock is never held while SMTP talks;
a ``sending`` run found at start-up was cut short by a crash and becomes ``unknown`` (maybe
sent, never sent again). Steps without I/O (wait, branch, set, stop) record their run and move
the member in one transaction, so a restart cannot replay them either.

Call tasks: the run (``task_created``) and the follow-up land together in the worklist of the
agent the step's ``assign`` names; a ``pool`` task (or an ``owner`` task of a lead nobody owns)
has no owner and is visible to every agent of the pool until one of them calls the lead. The
member waits for that call: its end (``CallEnded`` by the assigned agent or a pool member)
records the outcome and gives the agent :data:`WRAPUP_GRACE` to save the wrap-up; the wrap-up
(``WrapUpSaved``) records the disposition and moves the member on at once. A task not done in
``expire_days`` expires and the member goes on.

Daily caps count e-mails sent (claimed) and call tasks created per calendar day of the
campaign's time zone; a member over the cap waits for the next day's opening hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.campaigns import engine
from gateway.campaigns.calendar import BusinessCalendar, day_start, language_for, timezone_for
from gateway.campaigns.mailer import OutgoingMail, SendResult
from gateway.campaigns.model import (
    CampaignStatus,
    LeaveReason,
    RunStatus,
    SendEmail,
    SetFields,
    Wait,
    step_kind,
)
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.store import Campaign, CampaignStore, Member
from gateway.campaigns.templates import person_context
from gateway.campaigns.unsubscribe import LinkSigner, compose, signing_secret
from gateway.intel.besthour import next_best_time
from gateway.store.db import Database
from gateway.store.events import LeadStatusChanged, LeadUnsubscribed, WrapUpSaved
from gateway.store.models import Email, Person, Phone
from gateway.store.repositories import PersonRepository, numbers_of_people
from gateway.store.validation import FieldError

if TYPE_CHECKING:
    from gateway.store.scoring_service import ScoringService

log = logging.getLogger("gateway.campaigns")
# the store-wide lock a tick holds (Database.exclusive): one gateway at a time claims and
# sends campaign steps, so the holder knows a run left 'sending' is nobody's live send
SENDS_LOCK = "campaigns:sends"

DAY = 86400.0
WRAPUP_GRACE = 15 * 60.0  # after a task's call ends: time for the agent to save the wrap-up
RETRY_AFTER_ERROR = 3600.0  # a member whose step raised is tried again this much later
ENROLL_BATCH = 5000
MAX_STEPS_PER_VISIT = 60  # > the 50 steps a campaign may have: a visit always ends
# the people columns a visit reads (gateway.store.models.Person's fields, but the lists)
_PERSON_COLS = (
    "id, kind, first_name, last_name, company, title, account_id, owner, status, lost_reason,"
    " source, score, country, do_not_call, email_opt_out, created_at, updated_at, language,"
    " lost_at"
)


class MailSender(Protocol):
    """What the scheduler needs of the mailer (gateway.campaigns.mailer.Mailer)."""

    async def send(self, mail: OutgoingMail, *, at: float | None = None) -> SendResult: ...

    async def send_many(
        self,
        items: Sequence[_Pending],
        make: Callable[[_Pending], OutgoingMail | None],
        *,
        at: float | None = None,
    ) -> list[SendResult | None]: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class TickReport:
    """What one tick did (logged, returned to tests and the bench)."""

    enrolled: int = 0
    visited: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0
    calls: int = 0
    expired: int = 0
    left: dict[str, int] = field(default_factory=dict)
    deferred: int = 0  # outside business hours: due at the next opening
    capped: int = 0  # over a daily cap: due at the next day's opening
    errors: int = 0
    events: int = 0

    def add(self, other: TickReport) -> None:
        """Count ``other``'s figures in too (a batch's, once it has committed)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for k, v in theirs.items():
                    mine[k] = mine.get(k, 0) + v
            else:
                setattr(self, f.name, mine + theirs)


@dataclass(frozen=True, slots=True)
class DayPlan:
    """What a day holds for the running campaigns, as planned at ``at``."""

    at: float
    enrolled: int
    due: int  # members whose step falls due within the next 24 h
    emails: int  # e-mail steps among them (within caps)
    calls: int  # call tasks among them (within caps)
    held_by_cap: int  # due, but beyond a daily cap: the next day
    seconds: float


@dataclass(slots=True)
class MailJob:
    """Everything needed to build one member's e-mail (run already claimed: ``run_id`` is set
    when the batch's claims are in)."""

    run_id: int
    campaign: Campaign
    member: Member
    step: SendEmail
    person: Person
    address: str
    language: str
    owner_name: str | None
    at: float


@dataclass(slots=True)
class _Lead:
    """A member's lead as a visit reads it."""

    person: Person
    language: str
    address: str | None  # the address an e-mail goes to (not opted out, not bounced)
    facts: engine.Facts


@dataclass(slots=True)
class _Runs:
    """A member's runs in this campaign, by step."""

    by_step: dict[int, dict[str, Any]] = field(default_factory=dict)

    def last(self, kind: str) -> dict[str, Any] | None:
        found = [r for s, r in sorted(self.by_step.items()) if r["kind"] == kind]
        return found[-1] if found else None


@dataclass(slots=True)
class _Pending:
    job: MailJob
    next_index: int
    lead: _Lead
    runs: _Runs
    mail: OutgoingMail | None = None
    result: SendResult | None = None
    error: str = ""


@dataclass(slots=True)
class _BatchWrites:
    """Writes a batch's visits leave for the end of the batch, so that each is one statement
    for the whole batch rather than one round trip to the store's thread per member: e-mail
    claims (member id, campaign id, step, day), leaves (reason, member id), moves (step, due
    time, member id) and instant steps done with nothing to say (a wait, a stop)."""

    claims: list[tuple[int, int, int, str]] = field(default_factory=list)
    leaves: list[tuple[str, int]] = field(default_factory=list)
    moves: list[tuple[int, float, int]] = field(default_factory=list)  # (step, due, member id)
    done: list[tuple[int, int, int, str, float]] = field(default_factory=list)  # instant steps


class CampaignScheduler:
    """Runs the running campaigns: one instance per gateway (see module docstring)."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        mailer: MailSender,
        settings: CampaignSettings,
        clock: Callable[[], float],
        public_url: str,
        panel_tz: str,
        scoring: ScoringService | None = None,
        *,
        mail: MailSettings | None = None,
        default_region: str = "ES",
    ) -> None:
        self.db = db
        self.bus = bus
        self.mailer = mailer
        self.settings = settings
        self.clock = clock
        self.public_url = public_url.rstrip("/")
        self.panel_tz = panel_tz
        self.scoring = scoring
        self.store = CampaignStore(db)
        self.people = PersonRepository(db, default_region)
        self.calendar = BusinessCalendar(settings)
        self.mail = mail or getattr(mailer, "settings", None) or MailSettings()
        self._signer: LinkSigner | None = None
        self._zones: dict[str, ZoneInfo] = {}
        self._owner_names: dict[str, str | None] = {}  # agent username -> display name
        self._open_at: dict[tuple[float, ZoneInfo], bool] = {}  # (at, zone): business hours?
        self._day_at: dict[tuple[float, ZoneInfo], str] = {}  # (at, zone): calendar day
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._tick_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = [
            bus.subscribe(LeadStatusChanged, self._queue),
            bus.subscribe(LeadUnsubscribed, self._queue),
            bus.subscribe(WrapUpSaved, self._queue),
            bus.subscribe(CallEnded, self._queue),
        ]
        self._recovered = False
        self.last_report: TickReport | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """E-mails claimed but never finished (a crash mid-send) become 'unknown' and are
        never sent again. Only while this gateway holds the campaigns' send lock (always on
        SQLite, where a store has one gateway): every tick, claims and sends hold it to the
        end, so then a run still 'sending' is no live gateway's. Without it (another gateway
        is ticking now) nothing is touched and a later tick recovers instead."""
        async with self.db.exclusive(SENDS_LOCK) as mine:
            if not mine:
                return 0
            self._recovered = True
            n = await self.store.recover_sending()
        if n:
            log.warning("campaigns: %d e-mail(s) cut short by a stop marked unknown", n)
        return n

    async def start(self) -> None:
        if not self._recovered:
            await self.recover()
        if self._task is None:
            self._events_task = asyncio.create_task(self._event_worker(), name="campaign-events")
            self._task = asyncio.create_task(self._loop(), name="campaign-scheduler")

    async def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        async with self._tick_lock:  # a tick under way finishes first: no send cut short
            for task in (self._task, self._events_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self._task = self._events_task = None
        await self.mailer.close()

    async def settled(self) -> None:
        """Wait until every bus event received so far has been handled."""
        await self._events.join()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_seconds)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("campaigns: tick failed")

    # -- the tick ----------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> TickReport:
        """Handle received events, enroll new matches, run every due member's step."""
        async with self._tick_lock, self.db.exclusive(SENDS_LOCK) as mine:
            if not mine:  # another gateway on this store runs the campaigns' tick now
                return TickReport()
            # on a shared store another gateway may have died mid-send since the last tick
            if not self._recovered or self.db.engine != "sqlite":
                await self.recover()
            now = self.clock() if now is None else now
            self._owner_names.clear()  # an agent renamed since the last tick is seen now
            self._open_at.clear()
            self._day_at.clear()
            report = TickReport()
            report.events = await self._drain_events()
            for campaign in await self.store.list(status=CampaignStatus.RUNNING):
                report.enrolled += await self._enroll(campaign, now)
            await self._run_due(now, report)
            self.last_report = report
            if report.visited or report.enrolled:
                log.info(
                    "campaigns: tick enrolled=%d visited=%d sent=%d failed=%d bounced=%d "
                    "calls=%d left=%s deferred=%d capped=%d",
                    report.enrolled,
                    report.visited,
                    report.sent,
                    report.failed,
                    report.bounced,
                    report.calls,
                    report.left,
                    report.deferred,
                    report.capped,
                )
            return report

    async def _run_due(self, now: float, report: TickReport) -> None:
        """Every due member, batch by batch, in three stages: prepare (read the members,
        decide their steps, claim their e-mails), send, record (what each send did; the
        members move on). One batch is on the wire at a time; the store's work for the batches
        around it (the next one prepared, the one before recorded) is done meanwhile, so that
        the mail server is never kept waiting for the store."""
        seen: dict[int, int] = {}
        sending: asyncio.Task[None] | None = None
        sent: list[_Pending] = []  # the batch on the wire: its members are not due yet
        try:
            while True:
                in_flight = {p.job.member.id for p in sent}
                due = await self.store.due_members(now, self.settings.batch_size, exclude=in_flight)
                # a member back at a step this tick already visited is stuck: stop (the next
                # tick tries again) rather than spin
                fresh = [(m, c) for m, c in due if seen.get(m.id) != m.step]
                for m, _c in fresh:
                    seen[m.id] = m.step
                if not fresh and sending is None:
                    return
                pending = await self._prepare(fresh, now, report) if fresh else []
                if sending is not None:  # one batch on the wire at a time
                    await sending
                    sending = None
                recording, sent = sent, pending
                if pending:
                    sending = asyncio.create_task(self._send_all(pending, now))
                if recording:  # the batch just sent, while the next one is on the wire
                    await self._record(recording, now, report)
        except Exception:
            if sending is not None:
                # the store failed: the batch on the wire is let finish and is recorded, rather
                # than cut short and left for the recovery to call 'unknown'
                try:
                    await sending
                    await self._record(sent, now, report)
                except Exception:
                    log.exception("campaigns: recording a sent batch of %d failed", len(sent))
            raise
        except BaseException:  # cancelled: the gateway stops
            if sending is not None and not sending.done():
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            raise

    # -- enrollment --------------------------------------------------------------------------

    def zone(self, name: str) -> ZoneInfo:
        z = self._zones.get(name)
        if z is None:
            try:
                z = ZoneInfo(name)
            except (ValueError, KeyError):
                z = ZoneInfo(self.settings.default_timezone)
            self._zones[name] = z
        return z

    def campaign_zone(self, campaign: Campaign) -> ZoneInfo:
        return self.zone(campaign.definition.timezone or self.settings.default_timezone)

    async def _enroll(self, campaign: Campaign, now: float) -> int:
        """Every new match of a running campaign enters, due at its zone's next opening."""
        default_tz = campaign.definition.timezone or self.settings.default_timezone
        segment_tz = self.zone(self.panel_tz)
        total, after = 0, 0
        while True:
            ids = await self.store.candidates(
                campaign, segment_tz, now, ENROLL_BATCH, after_id=after
            )
            if not ids:
                return total
            after = ids[-1]
            zones = await self._timezones(ids, default_tz)
            by_zone: dict[str, list[int]] = {}
            for pid in ids:
                by_zone.setdefault(zones[pid], []).append(pid)
            added = 0
            for name, pids in by_zone.items():
                due = self.calendar.next_open(now, self.zone(name))
                added += await self.store.enroll(campaign, pids, now, due, zones)
            total += added
            if len(ids) < ENROLL_BATCH:
                return total

    async def _timezones(self, ids: Sequence[int], default: str) -> dict[int, str]:
        marks = ",".join("?" * len(ids))
        country: dict[int, str] = {}
        numbers: dict[int, list[str]] = {pid: [] for pid in ids}
        for r in await self.db.conn.execute_fetchall(
            f"SELECT id, country FROM people WHERE id IN ({marks})", list(ids)
        ):
            country[r[0]] = r[1] or ""
        for r in await self.db.conn.execute_fetchall(
            f"SELECT person_id, e164 FROM phones WHERE person_id IN ({marks}) ORDER BY id",
            list(ids),
        ):
            numbers[r[0]].append(r[1])
        cache: dict[tuple[str, str], str] = {}
        out: dict[int, str] = {}
        for pid in ids:
            c, nums = country.get(pid, ""), numbers[pid]
            # a number's zone depends on its country code and area prefix, never on the
            # subscriber digits: 100,000 leads need only a few hundred look-ups
            key = (c, "|".join(n[:7] for n in nums[:3]))
            zone = cache.get(key)
            if zone is None:
                zone = cache[key] = timezone_for(c, nums[:3], default)
            out[pid] = zone
        return out

    # -- one batch of due members ------------------------------------------------------------

    async def _prepare(
        self, due: list[tuple[Member, Campaign]], now: float, report: TickReport
    ) -> list[_Pending]:
        """Phase 1 of a batch, one transaction: decisions, instant steps, claims (e-mails
        claimed here are committed before any of them is sent). A savepoint per member would
        keep one member's failure from undoing the others, but costs two round trips to the
        store's thread for each: the batch runs without them, and only when a member fails is
        it undone and run again member by member, each in a savepoint."""
        t0 = time.perf_counter()
        try:
            pending, part = await self._visit_batch(due, now, careful=False)
        except Exception as e:
            log.warning(
                "campaigns: batch of %d undone (%s: %s); running it again member by member",
                len(due),
                type(e).__name__,
                e,
            )
            pending, part = await self._visit_batch(due, now, careful=True)
        report.add(part)
        log.debug("campaigns: batch of %d: visit %.3f s", len(due), time.perf_counter() - t0)
        return pending

    async def _record(self, pending: list[_Pending], now: float, report: TickReport) -> None:
        """The last stage of a batch, one transaction: what each send did, and its members
        carried on (due now, at their next step)."""
        t0 = time.perf_counter()
        async with self.db.transaction() as conn:
            done = [await self._finish_mail(conn, p, now, report) for p in pending]
            moves = {p.job.member.id: (p.next_index, now, p.job.member.id) for p in pending}
            # an economy: carry each member on through the instant steps after its e-mail (a
            # wait, the end) with what the visit read, rather than read its lead again in
            # another batch; a member it moves or lets go needs no move of its own (one write
            # of its row, not two). Best effort, in a savepoint: when it fails, the members
            # are moved on as above and that next batch does it.
            try:
                async with self.db.transaction():
                    await self._carry_on(pending, done, now, report, moves)
            except Exception as e:
                moves = {p.job.member.id: (p.next_index, now, p.job.member.id) for p in pending}
                log.warning(
                    "campaigns: carrying %d members on failed (%s: %s); they are due now",
                    len(pending),
                    type(e).__name__,
                    e,
                )
            await self.store.finish_sends(done, list(moves.values()))
        log.debug(
            "campaigns: batch of %d: record and carry on %.3f s",
            len(pending),
            time.perf_counter() - t0,
        )

    async def _carry_on(
        self,
        pending: list[_Pending],
        done: list[tuple[str, str, str | None, int]],
        now: float,
        report: TickReport,
        moves: dict[int, tuple[int, float, int]],
    ) -> None:
        """Visit each member of a sent batch again, instant steps only; the members it moves
        or lets go are taken out of ``moves`` (member id -> the move after the e-mail)."""
        writes = _BatchWrites()
        caps: dict[tuple[int, str, str], int] = {}
        for p, (status, *_rest) in zip(pending, done, strict=True):
            p.runs.by_step[p.next_index - 1] = _run_row(p.job.run_id, "email", status)
            if status == RunStatus.BOUNCED:  # the address is no more: facts changed
                continue
            member = p.job.member.at_step(p.next_index)
            await self._visit(
                member,
                p.job.campaign,
                p.lead,
                p.runs,
                now,
                caps,
                report,
                writes,
                instant_only=True,
            )
        for _step, _due, member_id in writes.moves:
            moves.pop(member_id, None)
        for _reason, member_id in writes.leaves:
            moves.pop(member_id, None)
        await self._flush(writes, now)

    async def _visit_batch(
        self, due: list[tuple[Member, Campaign]], now: float, *, careful: bool
    ) -> tuple[list[_Pending], TickReport]:
        """Phase 1 of a batch. Not ``careful``: the first failing member raises and the whole
        batch is rolled back (nothing of it counted). ``careful``: each member in a savepoint,
        a failing one logged and retried later while the others go on."""
        # read afresh on each attempt: a visit changes its lead and runs in place
        leads = await self._leads([m.person_id for m, _ in due])
        runs = await self._runs([m.id for m, _ in due])
        caps: dict[tuple[int, str, str], int] = {}
        pending: list[_Pending] = []
        report = TickReport()
        writes = _BatchWrites()
        async with self.db.transaction():
            for member, campaign in due:
                lead = leads.get(member.person_id)
                report.visited += 1
                if lead is None:  # the person was deleted (cascade) mid-tick
                    continue
                member_runs = runs.get(member.id, _Runs())
                if not careful:
                    job = await self._visit(
                        member, campaign, lead, member_runs, now, caps, report, writes
                    )
                    if job is not None:
                        pending.append(job)
                    continue
                try:
                    async with self.db.transaction():  # a savepoint: one member's failure
                        job = await self._visit(
                            member, campaign, lead, member_runs, now, caps, report
                        )
                        if job is not None:
                            pending.append(job)
                except Exception:
                    report.errors += 1
                    log.exception(
                        "campaigns: member %d (campaign %d, step %d) failed",
                        member.id,
                        campaign.id,
                        member.step,
                    )
                    await self.store.advance(member.id, member.step, now + RETRY_AFTER_ERROR)
            await self._flush(writes, now)
            if writes.claims:
                claimed = await self.store.claim_emails(writes.claims, now)
                # a claim refused means that step already ran (another visit, another
                # process): that member is not sent to, and is visited again next batch
                kept = []
                for p in pending:
                    run_id = claimed.get((p.job.member.id, p.next_index - 1))
                    if run_id is not None:
                        p.job.run_id = run_id
                        kept.append(p)
                pending = kept
        return pending, report

    async def _visit(
        self,
        member: Member,
        campaign: Campaign,
        lead: _Lead,
        runs: _Runs,
        now: float,
        caps: dict[tuple[int, str, str], int],
        report: TickReport,
        writes: _BatchWrites | None = None,
        *,
        instant_only: bool = False,
    ) -> _Pending | None:
        """Run the member's steps until one takes time (an e-mail, a call task, a wait).
        With ``writes``, its claims, moves and leaving are left to the end of the batch;
        ``instant_only``: stop before an e-mail or a call, leaving the member due at it now."""
        steps = campaign.definition.steps
        tz = self.zone(member.timezone or self.settings.default_timezone)
        index = member.step
        actor = f"campaign:{campaign.id}"
        for _ in range(MAX_STEPS_PER_VISIT):
            facts = _with_history(lead.facts, runs)
            claimed_row = runs.by_step.get(index)
            claimed = (
                engine.Claimed(claimed_row["kind"], RunStatus(claimed_row["status"]))
                if claimed_row is not None
                else None
            )
            action = engine.decide(steps, index, facts, claimed)
            if isinstance(action, engine.Leave):
                await self._leave(member, action.reason, now, writes)
                report.left[action.reason.value] = report.left.get(action.reason.value, 0) + 1
                return None
            if isinstance(action, engine.MoveOn):
                index = action.next
                continue
            if isinstance(action, engine.Expire):
                assert claimed_row is not None
                await self.store.finish_run(claimed_row["id"], RunStatus.EXPIRED)
                await self._close_follow_up(claimed_row.get("follow_up_id"), now)
                claimed_row["status"] = RunStatus.EXPIRED.value
                report.expired += 1
                index = action.next
                continue
            if isinstance(action, engine.Skip):
                run_id = await self.store.claim_run(
                    member, action.index, action.kind, now, "", RunStatus.SKIPPED
                )
                if run_id is not None:
                    await self.store.finish_run(run_id, RunStatus.SKIPPED, detail=action.why)
                runs.by_step[action.index] = _run_row(run_id, action.kind, RunStatus.SKIPPED)
                report.skipped += 1
                index = action.next
                continue
            if isinstance(action, engine.Jump):
                detail = f"{'then' if action.held else 'otherwise'} -> " + (
                    "stop" if action.target is None else str(action.target)
                )
                await self._done(member, action.index, "branch", now, detail, runs, writes)
                if action.target is None:
                    await self._leave(member, LeaveReason.COMPLETED, now, writes)
                    _count(report.left, LeaveReason.COMPLETED.value)
                    return None
                index = action.target
                continue
            if isinstance(action, engine.Apply):
                detail = await self._apply(member, lead, action.step, actor)
                await self._done(member, action.index, "set", now, detail, runs, writes)
                index = action.index + 1
                continue
            if isinstance(action, engine.Finish):
                await self._done(member, action.index, "stop", now, "", runs, writes)
                await self._leave(member, LeaveReason.COMPLETED, now, writes)
                _count(report.left, LeaveReason.COMPLETED.value)
                return None
            if isinstance(action, engine.Delay):
                step = action.step
                if isinstance(step, Wait):
                    due = self.calendar.after_wait(now, tz, days=step.days, hours=step.hours)
                else:
                    due = self.calendar.next_time(now, tz, step.weekday, step.hour, step.minute)
                await self._done(member, action.index, step_kind(step), now, "", runs, writes)
                index = action.index + 1
                if due <= now:  # a zero wait inside business hours: straight on
                    continue
                await self._advance(member, index, due, writes)
                return None
            if instant_only:  # an e-mail or a call: the next batch's visit does it
                if index != member.step:
                    await self._advance(member, index, now, writes)
                return None
            # e-mail or call: only inside the lead's business hours, within the daily cap
            kind = "email" if isinstance(action, engine.SendMail) else "call"
            if not self._is_open(now, tz):
                await self.store.advance(member.id, index, self.calendar.next_open(now, tz))
                report.deferred += 1
                return None
            ctz = self.campaign_zone(campaign)
            day = self._local_day(now, ctz)
            cap = (
                campaign.definition.daily_email_cap
                if kind == "email"
                else campaign.definition.daily_call_cap
            )
            if cap is not None:
                key = (campaign.id, day, kind)
                if key not in caps:
                    caps[key] = await self.store.count_runs(campaign.id, day, kind)
                if caps[key] >= cap:
                    next_day = day_start(date.fromisoformat(day) + timedelta(days=1), ctz)
                    await self.store.advance(
                        member.id, index, self.calendar.next_open(max(next_day, now), tz)
                    )
                    report.capped += 1
                    return None
                caps[key] += 1
            if isinstance(action, engine.SendMail):
                if member.step != index:
                    await self._advance(member, index, now, writes)
                if writes is not None:
                    writes.claims.append((member.id, member.campaign_id, index, day))
                    run_id = 0  # the batch's claim gives it
                else:
                    new_run = await self.store.claim_run(
                        member, index, "email", now, day, RunStatus.SENDING
                    )
                    if new_run is None:  # claimed by an earlier visit: never twice
                        index += 1
                        continue
                    run_id = new_run
                assert lead.address is not None
                lang = language_for(
                    lead.language, lead.person.country, campaign.definition.language
                )
                job = MailJob(
                    run_id=run_id,
                    campaign=campaign,
                    member=member,
                    step=action.step,
                    person=lead.person,
                    address=lead.address,
                    language=lang,
                    owner_name=await self._owner_name(lead.person.owner),
                    at=now,
                )
                return _Pending(job, index + 1, lead, runs)
            assert isinstance(action, engine.CreateCall)
            await self._create_call(member, campaign, lead, action, now, day, tz)
            report.calls += 1
            return None
        raise RuntimeError(f"member {member.id}: more than {MAX_STEPS_PER_VISIT} steps in a visit")

    # a tick's members share its "now" and a few zones: each answer is worked out once

    def _is_open(self, now: float, tz: ZoneInfo) -> bool:
        key = (now, tz)
        found = self._open_at.get(key)
        if found is None:
            found = self._open_at[key] = self.calendar.is_open(now, tz)
        return found

    def _local_day(self, now: float, tz: ZoneInfo) -> str:
        key = (now, tz)
        found = self._day_at.get(key)
        if found is None:
            found = self._day_at[key] = self.calendar.local_day(now, tz)
        return found

    async def _leave(
        self, member: Member, reason: LeaveReason, now: float, writes: _BatchWrites | None
    ) -> None:
        if writes is None:
            await self.store.leave(member.id, reason, now)
        else:
            writes.leaves.append((reason.value, member.id))

    async def _flush(self, writes: _BatchWrites, now: float) -> None:
        """A batch's leaves, moves and instant steps (its e-mail claims are the caller's)."""
        if writes.leaves:
            await self.store.leave_many(writes.leaves, now)
        await self.store.advance_many(writes.moves)
        await self.store.done_many(writes.done)

    async def _advance(
        self, member: Member, step: int, due: float, writes: _BatchWrites | None
    ) -> None:
        if writes is None:
            await self.store.advance(member.id, step, due)
        else:
            writes.moves.append((step, due, member.id))

    async def _done(
        self,
        member: Member,
        index: int,
        kind: str,
        now: float,
        detail: str,
        runs: _Runs,
        writes: _BatchWrites | None = None,
    ) -> None:
        run_id = None
        if writes is not None and not detail:
            writes.done.append((member.id, member.campaign_id, index, kind, now))
        else:
            run_id = await self.store.claim_run(member, index, kind, now, "", RunStatus.DONE)
            if run_id is not None and detail:
                await self.store.finish_run(run_id, RunStatus.DONE, detail=detail)
        runs.by_step[index] = _run_row(run_id, kind, RunStatus.DONE)

    # -- set fields --------------------------------------------------------------------------

    async def _apply(self, member: Member, lead: _Lead, step: SetFields, actor: str) -> str:
        """Change the lead as the step says; returns what was done (the run's detail)."""
        pid = member.person_id
        data: dict[str, Any] = {}
        if step.status is not None:
            data["status"] = step.status.value
        if step.owner is not None:
            data["owner"] = step.owner or None
        done: list[str] = []
        if data:
            try:
                person = await self.people.update(pid, data, actor=actor)
            except FieldError as e:  # e.g. "lost" needs a lost_reason the lead lacks
                done.append(f"not changed: {e}")
            else:
                if person is not None:
                    lead.person = person
                    lead.facts = _replace_status(lead.facts, person.status)
                done.append(", ".join(f"{k}={v}" for k, v in data.items()))
        if step.add_tags:
            await self.db.conn.executemany(
                "INSERT OR IGNORE INTO person_tags (person_id, tag) VALUES (?, ?)",
                [(pid, t) for t in step.add_tags],
            )
            done.append("tags+" + ",".join(step.add_tags))
        if step.score_inputs:
            values: dict[str, float | None] = dict(step.score_inputs)
            if self.scoring is not None:
                result = await self.scoring.set_inputs(pid, values, actor)
                if result is not None:
                    lead.facts = _replace_score(lead.facts, result.global_score)
            done.append("score_inputs")
        return "; ".join(done)

    # -- call tasks --------------------------------------------------------------------------

    async def _create_call(
        self,
        member: Member,
        campaign: Campaign,
        lead: _Lead,
        action: engine.CreateCall,
        now: float,
        day: str,
        tz: ZoneInfo,
    ) -> None:
        step = action.step
        owner, pool = await self._assignee(member, lead.person, step.assign, step.pool)
        run_id = await self.store.claim_run(
            member, action.index, "call", now, day, RunStatus.TASK_CREATED
        )
        if run_id is None:
            return
        due = now
        if step.best_hour_within_days > 0:
            due = await self._best_time(member.person_id, now, tz, step.best_hour_within_days)
        conn = self.db.conn
        cur = await conn.execute(
            "INSERT INTO follow_ups (person_id, due_at, title, owner, created_at,"
            " campaign_run_id, pool) VALUES (?,?,?,?,?,?,?)",
            (
                member.person_id,
                due,
                step.title,
                owner,
                now,
                run_id,
                json.dumps(pool) if pool else "",
            ),
        )
        await self.store.finish_run(
            run_id, RunStatus.TASK_CREATED, follow_up_id=cur.lastrowid, agent=owner
        )
        self.db.numbers_changed(await numbers_of_people(conn, [member.person_id]))
        await self.store.advance(member.id, action.index, due + step.expire_days * DAY)

    async def _best_time(self, person_id: int, now: float, tz: ZoneInfo, days: float) -> float:
        """When the lead's call task falls due: the open hour within ``days`` at which they
        answer most, by their stored best-hour metric (its 24 hour rates and their zone);
        ``now`` when there is no such metric yet."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT params FROM person_metrics WHERE person_id = ? AND metric = 'best_hour'",
            (person_id,),
        )
        try:
            params = json.loads(next(iter(rows))[0])
            rates = [None if r is None else float(r) for r in params["rates"]]
            zone = ZoneInfo(str(params["tz"]))
        except (StopIteration, ValueError, KeyError, TypeError, ZoneInfoNotFoundError):
            return now
        if len(rates) != 24:
            return now
        return next_best_time(
            rates, now, days * DAY, zone, lambda at: self.calendar.next_open(at, tz)
        )

    async def _assignee(
        self, member: Member, person: Person, assign: str, pool: list[str]
    ) -> tuple[str | None, list[str]]:
        """(owner, pool): an owner, or no owner and the pool that may take the task."""
        if assign == "owner":
            return (person.owner, []) if person.owner else (None, list(pool))
        if assign == "pool":
            return None, list(pool)
        # different_agent: not whoever called the lead last (in this campaign, else ever)
        last = member.last_agent or await self._last_caller(person.id)
        others = [a for a in pool if a != last] or list(pool)
        marks = ",".join("?" * len(others))
        load = {
            r[0]: r[1]
            for r in await self.db.conn.execute_fetchall(
                f"SELECT owner, count(*) FROM follow_ups WHERE done = 0 AND campaign_run_id"
                f" IS NOT NULL AND owner IN ({marks}) GROUP BY owner",
                others,
            )
        }
        return min(others, key=lambda a: (load.get(a, 0), others.index(a))), []

    async def _last_caller(self, person_id: int) -> str | None:
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT u.username FROM calls c JOIN call_users u ON u.call_id = c.id"
                " WHERE c.person_id = ? ORDER BY c.started_at DESC LIMIT 1",
                (person_id,),
            )
        )
        return rows[0][0] if rows else None

    async def _close_follow_up(
        self, follow_up_id: int | None, now: float, taken_by: str | None = None
    ) -> None:
        if follow_up_id is None:
            return
        conn = self.db.conn
        await conn.execute(
            "UPDATE follow_ups SET done = 1, done_at = ?, owner = coalesce(?, owner)"
            " WHERE id = ? AND done = 0",
            (now, taken_by, follow_up_id),
        )
        rows = list(
            await conn.execute_fetchall(
                "SELECT person_id FROM follow_ups WHERE id = ?", (follow_up_id,)
            )
        )
        if rows:
            self.db.numbers_changed(await numbers_of_people(conn, [rows[0][0]]))

    # -- e-mail ------------------------------------------------------------------------------

    async def _send_all(self, pending: list[_Pending], now: float) -> None:
        if self._signer is None:
            secret = await signing_secret(self.db, self.settings)
            self._signer = LinkSigner(secret, self.settings.unsubscribe_days)
        signer = self._signer

        def make(p: _Pending) -> OutgoingMail | None:
            """The e-mail of one claimed run, built when a connection is ready for it."""
            job = p.job
            try:
                context = person_context(
                    job.person,
                    job.owner_name,
                    email=job.address,
                    sender_name=self.mail.from_name,
                )
                p.mail = compose(
                    job.step,
                    context,
                    to=job.address,
                    language=job.language,
                    campaign_language=job.campaign.definition.language,
                    run_id=job.run_id,
                    at=job.at,
                    signer=signer,
                    mail=self.mail,
                    public_url=self.public_url,
                    track_opens=self.settings.track_opens,
                )
            except Exception as e:  # a template that fails for this lead: a failed send
                log.exception("campaigns: rendering run %d failed", job.run_id)
                p.error = f"render: {e}"
                return None
            return p.mail

        t0 = time.perf_counter()
        try:
            results = await self.mailer.send_many(pending, make, at=now)
        except Exception as e:  # the mailer should not raise; never lose the batch
            log.exception("campaigns: sending a batch of %d failed", len(pending))
            for p in pending:
                p.error = p.error or f"send: {e}"
            return
        for p, result in zip(pending, results, strict=True):
            p.result = result
        log.debug("campaigns: sent %d in %.3f s", len(pending), time.perf_counter() - t0)

    async def _finish_mail(
        self, conn: Any, p: _Pending, now: float, report: TickReport
    ) -> tuple[str, str, str | None, int]:
        """Count what one send did and mark a bounced address; returns the run's row for
        ``CampaignStore.finish_sends`` (the batch is written at once)."""
        job = p.job
        if p.result is None:
            status, detail = RunStatus.FAILED, p.error
        else:
            status = RunStatus(p.result.status)
            detail = p.result.detail
        message_id = p.mail.message_id if p.mail is not None and p.result is not None else None
        if status is RunStatus.SENT:
            report.sent += 1
        elif status is RunStatus.BOUNCED:
            report.bounced += 1
            # the server refused the address: no later step (of any campaign) uses it
            await conn.execute(
                "UPDATE emails SET bounced_at = ?, bounce_detail = ?"
                " WHERE person_id = ? AND lower(email) = lower(?)",
                (now, detail[:500], job.member.person_id, job.address),
            )
        else:
            report.failed += 1
        return status.value, detail[:500], message_id, job.run_id

    # -- reading leads and runs --------------------------------------------------------------

    async def _leads(self, ids: list[int]) -> dict[int, _Lead]:
        """The leads of a batch, with their numbers, addresses (and which bounced) and tags:
        four statements for the whole batch, each reading only the columns a visit uses, by
        position (``PersonRepository.hydrate`` reads every column by name: a third of the
        time a batch spent reading)."""
        conn = self.db.conn
        unique = list(dict.fromkeys(ids))
        marks = ",".join("?" * len(unique))
        people: dict[int, Person] = {}
        language: dict[int, str] = {}
        for r in await conn.execute_fetchall(
            f"SELECT {_PERSON_COLS} FROM people WHERE id IN ({marks})", unique
        ):
            people[r[0]] = Person(
                id=r[0],
                kind=r[1],
                first_name=r[2],
                last_name=r[3],
                company=r[4],
                title=r[5],
                account_id=r[6],
                owner=r[7],
                status=r[8],
                lost_reason=r[9],
                source=r[10],
                score=r[11],
                country=r[12],
                do_not_call=bool(r[13]),
                email_opt_out=bool(r[14]),
                created_at=r[15],
                updated_at=r[16],
                language=r[17],
                lost_at=r[18],
            )
            language[r[0]] = r[17] or ""
        for r in await conn.execute_fetchall(
            "SELECT person_id, raw, e164, type, do_not_call, id FROM phones"
            f" WHERE person_id IN ({marks}) ORDER BY id",
            unique,
        ):
            people[r[0]].phones.append(Phone(r[1], r[2], r[3], bool(r[4]), r[5]))
        bounced: set[tuple[int, str]] = set()
        for r in await conn.execute_fetchall(
            "SELECT person_id, email, type, opted_out, id, bounced_at IS NOT NULL FROM emails"
            f" WHERE person_id IN ({marks}) ORDER BY id",
            unique,
        ):
            people[r[0]].emails.append(Email(r[1], r[2], bool(r[3]), r[4]))
            if r[5]:
                bounced.add((r[0], r[1].lower()))
        for r in await conn.execute_fetchall(
            f"SELECT person_id, tag FROM person_tags WHERE person_id IN ({marks}) ORDER BY tag",
            unique,
        ):
            people[r[0]].tags.append(r[1])
        return {pid: _lead_of(person, language[pid], bounced) for pid, person in people.items()}

    async def _runs(self, member_ids: list[int]) -> dict[int, _Runs]:
        marks = ",".join("?" * len(member_ids))
        out: dict[int, _Runs] = {}
        for r in await self.db.conn.execute_fetchall(
            f"SELECT id, member_id, step, kind, status, opened_at, replied_at, call_outcome,"
            f" disposition, follow_up_id FROM campaign_step_runs WHERE member_id IN ({marks})",
            member_ids,
        ):
            out.setdefault(r["member_id"], _Runs()).by_step[r["step"]] = dict(r)
        return out

    async def _owner_name(self, owner: str | None) -> str | None:
        """The display name of a lead's agent, for ``owner.name`` in templates: read once a
        tick (a campaign's thousands of leads share a few dozen agents)."""
        if not owner:
            return None
        if owner not in self._owner_names:
            rows = list(
                await self.db.conn.execute_fetchall(
                    "SELECT display_name FROM users WHERE username = ?", (owner,)
                )
            )
            self._owner_names[owner] = (rows[0][0] or owner) if rows else owner
        return self._owner_names[owner]

    # -- bus events --------------------------------------------------------------------------

    def _queue(self, event: object) -> None:
        """Bus handler (sync, quick): handled in the events task, or by the next tick."""
        self._events.put_nowait(event)

    async def _event_worker(self) -> None:
        while True:
            event = await self._events.get()
            try:
                async with self._tick_lock:
                    await self._handle(event)
            except Exception:
                log.exception("campaigns: handling %s failed", type(event).__name__)
            finally:
                self._events.task_done()

    async def _drain_events(self) -> int:
        n = 0
        while not self._events.empty():
            event = self._events.get_nowait()
            try:
                await self._handle(event)
                n += 1
            except Exception:
                log.exception("campaigns: handling %s failed", type(event).__name__)
            finally:
                self._events.task_done()
        return n

    async def _handle(self, event: object) -> None:
        now = self.clock()
        if isinstance(event, LeadStatusChanged):
            if event.old == "lost" and event.new != "lost":
                # a lost deal moving on while in a campaign: what revival campaigns count
                await self.store.mark_revived(event.person_id)
            if event.new == "won":
                await self.store.leave_all(event.person_id, LeaveReason.CONVERTED, now)
        elif isinstance(event, LeadUnsubscribed):
            if event.person_id is not None:
                await self.store.leave_all(event.person_id, LeaveReason.UNSUBSCRIBED, now)
        elif isinstance(event, WrapUpSaved):
            if event.person_id is not None:
                await self._call_done(
                    event.person_id, {event.agent}, now, event.outcome, event.disposition, True
                )
        elif isinstance(event, CallEnded):
            await self._call_ended(event, now)

    async def _call_ended(self, event: CallEnded, now: float) -> None:
        record = event.record
        number = record.dialed if record.direction.value == "outbound" else record.caller
        if not number:
            return
        person = await self.people.find_by_number(number)
        if person is None:
            return
        exts = {e for e in (record.caller, record.answered_by, *record.agents_answered) if e}
        agents = await self._users_of(exts)
        if agents:
            await self._call_done(person.id, agents, now, record.outcome.value, None, False)

    async def _users_of(self, extensions: set[str]) -> set[str]:
        if not extensions:
            return set()
        out = set()
        for r in await self.db.conn.execute_fetchall(
            "SELECT username, extensions FROM users WHERE disabled = 0"
        ):
            try:
                own = set(json.loads(r[1] or "[]"))
            except ValueError:
                continue
            if own & extensions:
                out.add(r[0])
        return out

    async def _call_done(
        self,
        person_id: int,
        agents: set[str],
        now: float,
        outcome: str,
        disposition: str | None,
        wrapped_up: bool,
    ) -> None:
        """A call with the lead ended (``wrapped_up`` False: by one of ``agents``) or its
        wrap-up was saved: finish the waiting call runs and move their members on."""
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT r.id, r.step, r.status, r.agent, r.follow_up_id, m.id AS member_id,"
                " f.pool FROM campaign_step_runs r"
                " JOIN campaign_members m ON m.id = r.member_id"
                " LEFT JOIN follow_ups f ON f.id = r.follow_up_id"
                " WHERE m.person_id = ? AND m.state = 'active' AND r.step = m.step"
                " AND r.kind = 'call' AND r.status IN ('task_created', 'called')",
                (person_id,),
            )
        )
        if not rows:
            return
        async with self.db.transaction():
            for r in rows:
                allowed = {r["agent"]} if r["agent"] else set(json.loads(r["pool"] or "[]"))
                takers = agents & allowed if allowed else agents
                if not wrapped_up and not takers:
                    continue  # somebody else called the lead: the task still waits
                if not wrapped_up and r["status"] == RunStatus.CALLED.value:
                    continue  # a second call before the wrap-up: the first one counts
                agent = min(takers) if takers else min(agents)
                fields: dict[str, Any] = {"agent": agent}
                if outcome:
                    fields["call_outcome"] = outcome
                if disposition is not None:
                    fields["disposition"] = disposition
                await self.store.finish_run(r["id"], RunStatus.CALLED, **fields)
                await self._close_follow_up(r["follow_up_id"], now, taken_by=agent)
                await self.store.set_last_agent(r["member_id"], agent)
                # the wrap-up says what happened: on at once; a call without one yet: the
                # agent has a moment to save it before the member moves on without it
                due = now if wrapped_up else now + WRAPUP_GRACE
                await self.store.advance(r["member_id"], r["step"], due)
        self._wake.set()

    # -- planning (bench, capacity) ----------------------------------------------------------

    async def plan_day(self, now: float | None = None) -> DayPlan:
        """Enroll every new match, then count what the next 24 h hold per campaign within
        its caps (read-only beyond the enrollment)."""
        started = time.perf_counter()
        now = self.clock() if now is None else now
        enrolled = 0
        campaigns = await self.store.list(status=CampaignStatus.RUNNING)
        for c in campaigns:
            enrolled += await self._enroll(c, now)
        due = emails = calls = held = 0
        for c in campaigns:
            kinds = [step_kind(s) for s in c.definition.steps]
            per_kind: dict[str, int] = {}
            for r in await self.db.conn.execute_fetchall(
                "SELECT step, count(*) FROM campaign_members WHERE campaign_id = ?"
                " AND state = 'active' AND due_at < ? GROUP BY step",
                (c.id, now + DAY),
            ):
                due += r[1]
                if r[0] < len(kinds):
                    per_kind[kinds[r[0]]] = per_kind.get(kinds[r[0]], 0) + r[1]
            for kind, cap in (
                ("email", c.definition.daily_email_cap),
                ("call", c.definition.daily_call_cap),
            ):
                n = per_kind.get(kind, 0)
                allowed = n if cap is None else min(n, cap)
                held += n - allowed
                if kind == "email":
                    emails += allowed
                else:
                    calls += allowed
        return DayPlan(now, enrolled, due, emails, calls, held, time.perf_counter() - started)


# -- helpers -------------------------------------------------------------------------------


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _run_row(run_id: int | None, kind: str, status: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "kind": kind,
        "status": str(status),
        "opened_at": None,
        "replied_at": None,
        "call_outcome": None,
        "disposition": None,
        "follow_up_id": None,
    }


def _lead_of(person: Person, language: str, bounced: set[tuple[int, str]]) -> _Lead:
    address = None
    if not person.email_opt_out:
        for e in person.emails:
            if not e.opted_out and (person.id, e.email.lower()) not in bounced:
                address = e.email
                break
    if person.email_opt_out or (person.emails and all(e.opted_out for e in person.emails)):
        email_block = LeaveReason.UNSUBSCRIBED
    else:
        email_block = LeaveReason.UNREACHABLE
    can_call = not person.do_not_call and any(not p.do_not_call for p in person.phones)
    if person.do_not_call or (person.phones and all(p.do_not_call for p in person.phones)):
        call_block = LeaveReason.DO_NOT_CALL
    else:
        call_block = LeaveReason.UNREACHABLE
    facts = engine.Facts(
        status=person.status,
        score=person.score,
        can_email=address is not None,
        can_call=can_call,
        email_block=email_block,
        call_block=call_block,
    )
    return _Lead(person, language, address, facts)


def _with_history(facts: engine.Facts, runs: _Runs) -> engine.Facts:
    """The lead's facts plus what this membership's e-mails and calls did."""
    if not runs.by_step:  # nothing done yet: the lead's facts say it all
        return facts
    email = call = None
    replied_any = False
    for _step, r in sorted(runs.by_step.items()):  # the last of each kind wins
        kind = r["kind"]
        if kind == "email":
            email = r
            replied_any = replied_any or r["replied_at"] is not None
        elif kind == "call":
            call = r
    return engine.Facts(
        status=facts.status,
        score=facts.score,
        opened=email is not None and email["opened_at"] is not None,
        replied=email is not None and email["replied_at"] is not None,
        replied_any=replied_any,
        answered_call=call is not None and (call["call_outcome"] or "") in engine.ANSWERED_OUTCOMES,
        disposition=None if call is None else call["disposition"],
        can_email=facts.can_email,
        can_call=facts.can_call,
        email_block=facts.email_block,
        call_block=facts.call_block,
    )


def _replace_status(facts: engine.Facts, status: str | None) -> engine.Facts:
    from dataclasses import replace

    return replace(facts, status=status)


def _replace_score(facts: engine.Facts, score: float | None) -> engine.Facts:
    from dataclasses import replace

    return replace(facts, score=score)
