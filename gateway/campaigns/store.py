"""Campaigns, their members and what each step did, in the store (migration 0012).

The scheduler's idempotency rests here: :meth:`CampaignStore.claim_run` inserts the
(member, step) row under its UNIQUE key before anything is sent or created, so a step runs at
most once per member whatever restarts happen; a run left in 'sending' by a crash becomes
'unknown' at start-up (:meth:`CampaignStore.recover_sending`) and is never sent again.

Every write goes through :meth:`Database.transaction` (a savepoint when the caller already
holds one), so it never lands inside another task's transaction on the shared connection.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from gateway.campaigns.calendar import timezone_for
from gateway.campaigns.model import CampaignIn, CampaignStatus, LeaveReason, RunStatus, step_kind
from gateway.campaigns.segment import segment_where
from gateway.errors import GatewayError
from gateway.store.db import Database, SqlParam

_IN_BATCH = 500  # ids per IN (...) list


class CampaignNotFound(GatewayError):
    """No campaign has that id."""

    def __init__(self, campaign_id: int) -> None:
        super().__init__(f"no campaign with id {campaign_id}")
        self.campaign_id = campaign_id


class CampaignBusy(GatewayError):
    """The campaign's status does not allow that change (edit a running one, delete a
    started one, restart an ended one)."""

    def __init__(self, campaign_id: int, status: str, action: str) -> None:
        super().__init__(f"campaign {campaign_id} is {status}: cannot {action}")
        self.campaign_id = campaign_id
        self.status = status
        self.action = action


@dataclass(slots=True)
class Campaign:
    """A stored campaign: its definition and where it is in its life."""

    id: int
    name: str
    description: str
    status: str  # model.CampaignStatus
    definition: CampaignIn
    created_by: str | None
    created_at: float
    updated_at: float
    started_at: float | None = None
    paused_at: float | None = None
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON for the API: the definition's fields under ``definition``."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "definition": msgspec.to_builtins(self.definition),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "paused_at": self.paused_at,
            "ended_at": self.ended_at,
        }


@dataclass(slots=True)
class Member:
    """One lead's way through one campaign (a row of campaign_members)."""

    id: int
    campaign_id: int
    person_id: int
    round: int
    entered_at: float
    step: int  # the next step to run
    due_at: float  # when it runs (epoch seconds)
    state: str  # active | left
    left_at: float | None
    left_reason: str | None  # model.LeaveReason
    timezone: str
    last_agent: str | None
    revived: bool
    lost_reason: str  # why the lead was lost when it entered ('' when it was not lost)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_step(self, step: int) -> Member:
        """A copy at another step (dataclasses.replace, at a third of its cost: the scheduler
        makes one for every e-mail it sends)."""
        return Member(
            self.id,
            self.campaign_id,
            self.person_id,
            self.round,
            self.entered_at,
            step,
            self.due_at,
            self.state,
            self.left_at,
            self.left_reason,
            self.timezone,
            self.last_agent,
            self.revived,
            self.lost_reason,
        )


@dataclass(slots=True)
class StepRun:
    """What one step did for one member (a row of campaign_step_runs)."""

    id: int
    member_id: int
    campaign_id: int
    step: int
    kind: str
    status: str  # model.RunStatus
    at: float
    day: str
    detail: str
    message_id: str | None
    follow_up_id: int | None
    opened_at: float | None
    replied_at: float | None
    call_outcome: str | None
    disposition: str | None
    agent: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class StepResult:
    """The funnel of one step: its runs by status and what came of them."""

    step: int
    kind: str
    runs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    opened: int = 0
    replied: int = 0
    answered: int = 0  # call tasks whose call was answered
    dispositions: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CampaignResults:
    """What a campaign did: members in and out, per step, and the totals the panel shows."""

    campaign_id: int
    entered: int = 0  # member rows (a re-entry counts again)
    people: int = 0  # distinct leads who entered
    active: int = 0
    left: dict[str, int] = field(default_factory=dict)  # by LeaveReason
    steps: list[StepResult] = field(default_factory=list)
    emails_sent: int = 0
    emails_failed: int = 0
    emails_bounced: int = 0
    emails_opened: int = 0
    emails_replied: int = 0
    unsubscribed: int = 0
    calls_made: int = 0
    calls_answered: int = 0
    converted: int = 0  # won while a member
    revived: int = 0  # lost leads that moved on while a member
    revived_by_lost_reason: dict[str, int] = field(default_factory=dict)
    entered_by_lost_reason: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CAMPAIGN_COLS = (
    "id, name, description, status, definition, created_by, created_at, updated_at,"
    " started_at, paused_at, ended_at"
)
_MEMBER_COLS = (
    "id, campaign_id, person_id, round, entered_at, step, due_at, state, left_at, left_reason,"
    " timezone, last_agent, revived, lost_reason"
)
_RUN_COLS = (
    "id, member_id, campaign_id, step, kind, status, at, day, detail, message_id, follow_up_id,"
    " opened_at, replied_at, call_outcome, disposition, agent"
)
# what finish_run may set besides the status
_RUN_FIELDS = frozenset(
    (
        "at",
        "day",
        "detail",
        "message_id",
        "follow_up_id",
        "opened_at",
        "replied_at",
        "call_outcome",
        "disposition",
        "agent",
    )
)

_decode_definition = msgspec.json.Decoder(CampaignIn).decode
_EXCLUDE_LISTED = 10_000  # members left out of due_members by a NOT IN list, at most


def _campaign(r: Sequence[Any]) -> Campaign:
    return Campaign(
        id=r[0],
        name=r[1],
        description=r[2],
        status=r[3],
        definition=_decode_definition(r[4]),
        created_by=r[5],
        created_at=r[6],
        updated_at=r[7],
        started_at=r[8],
        paused_at=r[9],
        ended_at=r[10],
    )


def _member(r: Sequence[Any]) -> Member:
    return Member(
        id=r[0],
        campaign_id=r[1],
        person_id=r[2],
        round=r[3],
        entered_at=r[4],
        step=r[5],
        due_at=r[6],
        state=r[7],
        left_at=r[8],
        left_reason=r[9],
        timezone=r[10],
        last_agent=r[11],
        revived=bool(r[12]),
        lost_reason=r[13],
    )


def _run(r: Sequence[Any]) -> StepRun:
    return StepRun(*r)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _IN_BATCH):
        yield ids[i : i + _IN_BATCH]


class CampaignStore:
    """Reads and writes campaigns, members and step runs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- campaigns --------------------------------------------------------------------------

    async def create(self, definition: CampaignIn, actor: str | None, at: float) -> Campaign:
        """Store a new campaign as a draft."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO campaigns (name, description, status, definition, created_by,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (
                    definition.name,
                    definition.description,
                    CampaignStatus.DRAFT.value,
                    msgspec.json.encode(definition).decode(),
                    actor,
                    at,
                    at,
                ),
            )
            campaign_id = cur.lastrowid
        assert campaign_id is not None
        found = await self.get(campaign_id)
        assert found is not None
        return found

    async def get(self, campaign_id: int) -> Campaign | None:
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE id = ?", (campaign_id,)
        )
        return _campaign(next(iter(rows))) if rows else None

    async def _must(self, campaign_id: int) -> Campaign:
        found = await self.get(campaign_id)
        if found is None:
            raise CampaignNotFound(campaign_id)
        return found

    async def list(self, status: str | None = None) -> builtins.list[Campaign]:
        """Every campaign (or those in ``status``), newest first."""
        if status is None:
            rows = await self.db.conn.execute_fetchall(
                f"SELECT {_CAMPAIGN_COLS} FROM campaigns ORDER BY id DESC"
            )
        else:
            rows = await self.db.conn.execute_fetchall(
                f"SELECT {_CAMPAIGN_COLS} FROM campaigns WHERE status = ? ORDER BY id DESC",
                (status,),
            )
        return [_campaign(r) for r in rows]

    async def update(self, campaign_id: int, definition: CampaignIn, at: float) -> Campaign:
        """Replace the definition of a draft or paused campaign (CampaignBusy otherwise)."""
        async with self.db.transaction() as conn:
            current = await self._must(campaign_id)
            if current.status not in (CampaignStatus.DRAFT, CampaignStatus.PAUSED):
                raise CampaignBusy(campaign_id, current.status, "edit it")
            await conn.execute(
                "UPDATE campaigns SET name = ?, description = ?, definition = ?, updated_at = ?"
                " WHERE id = ?",
                (
                    definition.name,
                    definition.description,
                    msgspec.json.encode(definition).decode(),
                    at,
                    campaign_id,
                ),
            )
        return await self._must(campaign_id)

    async def delete(self, campaign_id: int) -> None:
        """Delete a draft (CampaignBusy once it has started: its history stays)."""
        async with self.db.transaction() as conn:
            current = await self._must(campaign_id)
            if current.status != CampaignStatus.DRAFT:
                raise CampaignBusy(campaign_id, current.status, "delete it")
            await conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,))

    async def set_status(self, campaign_id: int, status: str, at: float) -> Campaign:
        """Start, pause, resume or end. Resuming moves every active member's due time on by
        the length of the pause (a paused campaign holds its leads where they are); ending
        makes every active member leave with reason 'ended'. The same status is a no-op."""
        target = CampaignStatus(status)
        async with self.db.transaction() as conn:
            current = await self._must(campaign_id)
            was = CampaignStatus(current.status)
            if was == target:
                return current
            allowed = {
                CampaignStatus.DRAFT: (CampaignStatus.RUNNING, CampaignStatus.ENDED),
                CampaignStatus.RUNNING: (CampaignStatus.PAUSED, CampaignStatus.ENDED),
                CampaignStatus.PAUSED: (CampaignStatus.RUNNING, CampaignStatus.ENDED),
                CampaignStatus.ENDED: (),
            }[was]
            if target not in allowed:
                raise CampaignBusy(campaign_id, was.value, f"make it {target.value}")
            if target == CampaignStatus.RUNNING and was == CampaignStatus.PAUSED:
                pause = max(0.0, at - (current.paused_at or at))
                await conn.execute(
                    "UPDATE campaign_members SET due_at = due_at + ?"
                    " WHERE campaign_id = ? AND state = 'active'",
                    (pause, campaign_id),
                )
                await conn.execute(
                    "UPDATE campaigns SET status = 'running', paused_at = NULL, updated_at = ?"
                    " WHERE id = ?",
                    (at, campaign_id),
                )
            elif target == CampaignStatus.RUNNING:
                await conn.execute(
                    "UPDATE campaigns SET status = 'running', updated_at = ?,"
                    " started_at = coalesce(started_at, ?) WHERE id = ?",
                    (at, at, campaign_id),
                )
            elif target == CampaignStatus.PAUSED:
                await conn.execute(
                    "UPDATE campaigns SET status = 'paused', paused_at = ?, updated_at = ?"
                    " WHERE id = ?",
                    (at, at, campaign_id),
                )
            else:
                await conn.execute(
                    "UPDATE campaign_members SET state = 'left', left_at = ?, left_reason = ?"
                    " WHERE campaign_id = ? AND state = 'active'",
                    (at, LeaveReason.ENDED.value, campaign_id),
                )
                await conn.execute(
                    "UPDATE campaigns SET status = 'ended', ended_at = ?, paused_at = NULL,"
                    " updated_at = ? WHERE id = ?",
                    (at, at, campaign_id),
                )
        return await self._must(campaign_id)

    # -- members ----------------------------------------------------------------------------

    async def enroll(
        self,
        campaign: Campaign,
        person_ids: Sequence[int],
        at: float,
        due_at: float,
        timezones: Mapping[int, str],
    ) -> int:
        """Make these people members, due at ``due_at`` at step 0; returns how many entered.
        A person already active stays as is; one who left enters again (round + 1) only when
        the campaign has ``reentry_days`` and they left at least that long ago."""
        reentry = campaign.definition.reentry_days
        cutoff = at - reentry * 86400.0 if reentry is not None else None
        fallback = campaign.definition.timezone or ""
        entered = 0
        async with self.db.transaction() as conn:
            for chunk in _chunks(list(dict.fromkeys(person_ids))):
                marks = ",".join("?" * len(chunk))
                prior: dict[int, tuple[int, int, float | None]] = {
                    r[0]: (r[1], r[2], r[3])
                    for r in await conn.execute_fetchall(
                        "SELECT person_id, max(round),"
                        " max(CASE WHEN state = 'active' THEN 1 ELSE 0 END), max(left_at)"
                        " FROM campaign_members WHERE campaign_id = ?"
                        f" AND person_id IN ({marks}) GROUP BY person_id",
                        (campaign.id, *chunk),
                    )
                }
                rows: builtins.list[tuple[SqlParam, ...]] = []
                for pid in chunk:
                    seen = prior.get(pid)
                    if seen is None:
                        round_ = 0
                    else:
                        last_round, active, left_at = seen
                        if active or cutoff is None or left_at is None or left_at > cutoff:
                            continue
                        round_ = last_round + 1
                    rows.append(
                        (
                            campaign.id,
                            pid,
                            round_,
                            at,
                            due_at,
                            timezones.get(pid, fallback),
                            pid,
                        )
                    )
                if not rows:
                    continue
                before = conn.total_changes
                await conn.executemany(
                    "INSERT OR IGNORE INTO campaign_members (campaign_id, person_id, round,"
                    " entered_at, step, due_at, timezone, lost_reason)"
                    " SELECT ?, ?, ?, ?, 0, ?, ?,"
                    " CASE WHEN status = 'lost' THEN lost_reason ELSE '' END"
                    " FROM people WHERE id = ?",
                    rows,
                )
                entered += conn.total_changes - before
        return entered

    async def candidates(
        self, campaign: Campaign, tz: ZoneInfo, at: float, limit: int, *, after_id: int = 0
    ) -> builtins.list[int]:
        """People the segment holds now who may enter: never members, or (with
        ``reentry_days``) not active and left long enough ago. Ascending ids after
        ``after_id``."""
        where, params = segment_where(campaign.definition.segment, tz)
        reentry = campaign.definition.reentry_days
        if reentry is None:
            blocker = "1 = 1"
            extra: builtins.list[SqlParam] = []
        else:
            blocker = "(m.state = 'active' OR m.left_at > ?)"
            extra = [at - reentry * 86400.0]
        rows = await self.db.conn.execute_fetchall(
            f"SELECT p.id FROM people p WHERE p.id > ? AND {where}"
            " AND NOT EXISTS (SELECT 1 FROM campaign_members m WHERE m.campaign_id = ?"
            f" AND m.person_id = p.id AND {blocker}) ORDER BY p.id LIMIT ?",
            [after_id, *params, campaign.id, *extra, limit],
        )
        return [int(r[0]) for r in rows]

    async def timezones_for(self, person_ids: Sequence[int], default: str) -> dict[int, str]:
        """Each person's zone from their country and numbers (:func:`timezone_for`)."""
        found: dict[int, tuple[str, list[str]]] = {}
        for chunk in _chunks(list(person_ids)):
            marks = ",".join("?" * len(chunk))
            for pid, country in await self.db.conn.execute_fetchall(
                f"SELECT id, country FROM people WHERE id IN ({marks})", tuple(chunk)
            ):
                found[pid] = (country or "", [])
            for pid, e164 in await self.db.conn.execute_fetchall(
                f"SELECT person_id, e164 FROM phones WHERE person_id IN ({marks}) ORDER BY id",
                tuple(chunk),
            ):
                if pid in found:
                    found[pid][1].append(e164)
        return {pid: timezone_for(c, nums, default) for pid, (c, nums) in found.items()}

    async def member(self, member_id: int) -> Member | None:
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_MEMBER_COLS} FROM campaign_members WHERE id = ?", (member_id,)
        )
        return _member(next(iter(rows))) if rows else None

    async def members(
        self,
        campaign_id: int,
        *,
        state: str | None = None,
        left_reason: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> builtins.list[Member]:
        """A campaign's members by ascending id after ``after_id`` (a cursor); ``left_reason``
        (a :class:`LeaveReason`) keeps those who left for it (and implies state 'left')."""
        sql = f"SELECT {_MEMBER_COLS} FROM campaign_members WHERE campaign_id = ? AND id > ?"
        params: builtins.list[SqlParam] = [campaign_id, after_id]
        if left_reason is not None:
            state = "left"  # the (campaign_id, state) index's range, filtered by the reason
            sql += " AND left_reason = ?"
            params.append(LeaveReason(left_reason).value)
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        rows = await self.db.conn.execute_fetchall(sql + " ORDER BY id LIMIT ?", [*params, limit])
        return [_member(r) for r in rows]

    async def memberships(
        self, person_id: int, *, active_only: bool = True
    ) -> builtins.list[Member]:
        """A person's member rows across campaigns, newest first."""
        sql = f"SELECT {_MEMBER_COLS} FROM campaign_members WHERE person_id = ?"
        if active_only:
            sql += " AND state = 'active'"
        rows = await self.db.conn.execute_fetchall(sql + " ORDER BY id DESC", (person_id,))
        return [_member(r) for r in rows]

    async def due_members(
        self, at: float, limit: int, exclude: Collection[int] = ()
    ) -> builtins.list[tuple[Member, Campaign]]:
        """Active members of running campaigns due at or before ``at``, earliest first, but
        those in ``exclude``. One index range per running campaign: a paused campaign's
        members are never read."""
        due: builtins.list[tuple[Member, Campaign]] = []
        # the excluded left out by the statement (each row read costs the store's thread more
        # than the list does), unless the list could pass SQLite's limit of parameters: then
        # read that many rows more and drop them
        listed = 0 < len(exclude) <= _EXCLUDE_LISTED
        skip = f" AND id NOT IN ({','.join('?' * len(exclude))})" if listed else ""
        for campaign in await self.list(status=CampaignStatus.RUNNING):
            params: builtins.list[SqlParam] = [campaign.id, at]
            if listed:
                params += exclude
            rows = await self.db.conn.execute_fetchall(
                f"SELECT {_MEMBER_COLS} FROM campaign_members"
                f" WHERE campaign_id = ? AND state = 'active' AND due_at <= ?{skip}"
                " ORDER BY due_at, id LIMIT ?",
                [*params, limit if listed else limit + len(exclude)],
            )
            due += [(_member(r), campaign) for r in rows if r[0] not in exclude]
        due.sort(key=lambda mc: (mc[0].due_at, mc[0].id))
        return due[:limit]

    async def advance(self, member_id: int, step: int, due_at: float) -> bool:
        """Move an active member to ``step``, due at ``due_at``."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_members SET step = ?, due_at = ?"
                " WHERE id = ? AND state = 'active'",
                (step, due_at, member_id),
            )
            return cur.rowcount > 0

    async def leave(self, member_id: int, reason: str, at: float) -> bool:
        """An active member leaves (False when it had already left)."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_members SET state = 'left', left_at = ?, left_reason = ?"
                " WHERE id = ? AND state = 'active'",
                (at, LeaveReason(reason).value, member_id),
            )
            return cur.rowcount > 0

    async def leave_many(self, leaves: Sequence[tuple[str, int]], at: float) -> None:
        """Active members leave, (reason, member id) each, in one statement."""
        await self._many(
            "UPDATE campaign_members SET state = 'left', left_at = ?, left_reason = ?"
            " WHERE id = ? AND state = 'active'",
            [(at, LeaveReason(reason).value, member_id) for reason, member_id in leaves],
        )

    async def leave_all(
        self, person_id: int, reason: str, at: float, campaign_id: int | None = None
    ) -> int:
        """The person leaves every campaign they are active in (or only ``campaign_id``)."""
        sql = (
            "UPDATE campaign_members SET state = 'left', left_at = ?, left_reason = ?"
            " WHERE person_id = ? AND state = 'active'"
        )
        params: builtins.list[SqlParam] = [at, LeaveReason(reason).value, person_id]
        if campaign_id is not None:
            sql += " AND campaign_id = ?"
            params.append(campaign_id)
        async with self.db.one_statement() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount

    async def set_last_agent(self, member_id: int, agent: str | None) -> None:
        """Remember who made the member's last call (for "a different agent than last time")."""
        async with self.db.one_statement() as conn:
            await conn.execute(
                "UPDATE campaign_members SET last_agent = ? WHERE id = ?", (agent, member_id)
            )

    async def mark_revived(self, person_id: int) -> int:
        """Active members of this person who entered lost are counted as revived."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_members SET revived = 1 WHERE person_id = ? AND state = 'active'"
                " AND lost_reason != '' AND revived = 0",
                (person_id,),
            )
            return cur.rowcount

    # -- step runs --------------------------------------------------------------------------

    async def claim_run(
        self, member: Member, step: int, kind: str, at: float, day: str, status: str
    ) -> int | None:
        """Claim (member, step) before doing it: the new run's id, or None when that step
        already ran (or is running) for this member."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO campaign_step_runs (member_id, campaign_id, step, kind,"
                " status, at, day) VALUES (?,?,?,?,?,?,?)",
                (member.id, member.campaign_id, step, kind, RunStatus(status).value, at, day),
            )
            if cur.rowcount == 0:
                return None
            return cur.lastrowid

    async def claim_emails(
        self, claims: Sequence[tuple[int, int, int, str]], at: float
    ) -> dict[tuple[int, int], int]:
        """:meth:`claim_run` for many e-mail steps at once, (member id, campaign id, step,
        day) each, in one statement: {(member id, step): run id} of those claimed (a step
        that already ran is left out)."""
        out: dict[tuple[int, int], int] = {}
        # SQLite allows 32,766 parameters a statement: 4,000 claims of 5 stay well inside
        for start in range(0, len(claims), 4000):
            chunk = claims[start : start + 4000]
            values = ",".join(["(?,?,?,'email','sending',?,?)"] * len(chunk))
            params: builtins.list[SqlParam] = []
            for member_id, campaign_id, step, day in chunk:
                params += [member_id, campaign_id, step, at, day]
            async with self.db.one_statement() as conn:
                rows = await conn.execute_fetchall(
                    "INSERT OR IGNORE INTO campaign_step_runs (member_id, campaign_id, step,"
                    f" kind, status, at, day) VALUES {values} RETURNING member_id, step, id",
                    params,
                )
            out.update({(r[0], r[1]): r[2] for r in rows})
        return out

    async def finish_run(self, run_id: int, status: str, **fields: SqlParam) -> None:
        """Record what a claimed run did: its status and any of detail, message_id,
        follow_up_id, opened_at, replied_at, call_outcome, disposition, agent, at, day."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise TypeError(f"finish_run: no such field(s) {sorted(unknown)}")
        sets = ", ".join(["status = ?", *(f"{k} = ?" for k in fields)])
        async with self.db.one_statement() as conn:
            await conn.execute(
                f"UPDATE campaign_step_runs SET {sets} WHERE id = ?",
                (RunStatus(status).value, *fields.values(), run_id),
            )

    async def finish_sends(
        self,
        runs: Sequence[tuple[str, str, str | None, int]],
        moves: Sequence[tuple[int, float, int]],
    ) -> None:
        """A batch of e-mail runs done at once: (status, detail, message_id, run_id) and the
        members' moves (step, due_at, member_id). Two statements for the whole batch: one
        round trip per row was most of a campaign's sending time (bench/campaigns.py)."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "UPDATE campaign_step_runs SET status = ?, detail = ?, message_id = ? WHERE id = ?",
                [(RunStatus(status).value, detail, mid, rid) for status, detail, mid, rid in runs],
            )
            await self.advance_many(moves)

    async def advance_many(self, moves: Sequence[tuple[int, float, int]]) -> None:
        """:meth:`advance` for many members in one statement: (step, due_at, member id) each."""
        await self._many(
            "UPDATE campaign_members SET step = ?, due_at = ? WHERE id = ? AND state = 'active'",
            moves,
        )

    async def done_many(self, done: Sequence[tuple[int, int, int, str, float]]) -> None:
        """Instant steps run, with nothing more to record (a wait, a stop): (member id,
        campaign id, step, kind, at) each, in one statement; a step that already ran is left
        as it was."""
        await self._many(
            "INSERT OR IGNORE INTO campaign_step_runs (member_id, campaign_id, step, kind,"
            " status, at, day) VALUES (?,?,?,?,'done',?,'')",
            done,
        )

    async def _many(self, sql: str, rows: Sequence[Sequence[SqlParam]]) -> None:
        """One statement for many rows (none: no round trip at all)."""
        if rows:
            async with self.db.one_statement() as conn:
                await conn.executemany(sql, rows)

    async def run(self, run_id: int) -> StepRun | None:
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_RUN_COLS} FROM campaign_step_runs WHERE id = ?", (run_id,)
        )
        return _run(next(iter(rows))) if rows else None

    async def runs(self, member_id: int) -> builtins.list[StepRun]:
        """A member's runs in the order they were claimed."""
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_RUN_COLS} FROM campaign_step_runs WHERE member_id = ? ORDER BY id",
            (member_id,),
        )
        return [_run(r) for r in rows]

    async def last_run(self, member_id: int, kind: str) -> StepRun | None:
        """The member's most recently claimed run of this kind ("the last e-mail")."""
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_RUN_COLS} FROM campaign_step_runs WHERE member_id = ? AND kind = ?"
            " ORDER BY id DESC LIMIT 1",
            (member_id, kind),
        )
        return _run(next(iter(rows))) if rows else None

    async def count_runs(self, campaign_id: int, day: str, kind: str) -> int:
        """Runs of this kind the campaign made on ``day`` (daily caps); skipped ones, which
        reached nobody, do not count."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT count(*) FROM campaign_step_runs WHERE campaign_id = ? AND day = ?"
            " AND kind = ? AND status != 'skipped'",
            (campaign_id, day, kind),
        )
        return int(next(iter(rows))[0])

    async def recover_sending(self) -> int:
        """At start-up: runs left in 'sending' by a crash become 'unknown' (never resent)."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_step_runs SET status = 'unknown' WHERE status = 'sending'"
            )
            return cur.rowcount

    async def mark_opened(self, run_id: int, at: float) -> bool:
        """The e-mail of this run was opened (the first open counts); False if no such run."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_step_runs SET opened_at = coalesce(opened_at, ?) WHERE id = ?",
                (at, run_id),
            )
            return cur.rowcount > 0

    async def mark_replied(self, run_id: int, at: float) -> bool:
        """The e-mail of this run was answered (the first reply counts)."""
        async with self.db.one_statement() as conn:
            cur = await conn.execute(
                "UPDATE campaign_step_runs SET replied_at = coalesce(replied_at, ?) WHERE id = ?",
                (at, run_id),
            )
            return cur.rowcount > 0

    async def run_by_follow_up(self, follow_up_id: int) -> StepRun | None:
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_RUN_COLS} FROM campaign_step_runs WHERE follow_up_id = ?",
            (follow_up_id,),
        )
        return _run(next(iter(rows))) if rows else None

    async def run_by_message_id(self, message_id: str) -> StepRun | None:
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {_RUN_COLS} FROM campaign_step_runs WHERE message_id = ?", (message_id,)
        )
        return _run(next(iter(rows))) if rows else None

    async def open_call_runs(self, person_id: int) -> builtins.list[StepRun]:
        """This person's call tasks still waiting for the call, oldest first."""
        cols = ", ".join("r." + c.strip() for c in _RUN_COLS.split(","))
        rows = await self.db.conn.execute_fetchall(
            f"SELECT {cols} FROM campaign_step_runs r"
            " JOIN campaign_members m ON m.id = r.member_id"
            " WHERE m.person_id = ? AND r.kind = 'call' AND r.status = 'task_created'"
            " ORDER BY r.id",
            (person_id,),
        )
        return [_run(r) for r in rows]

    # -- results ----------------------------------------------------------------------------

    async def results(self, campaign_id: int) -> CampaignResults:
        """The campaign's funnel and totals (CampaignNotFound when there is no such one)."""
        campaign = await self._must(campaign_id)
        out = CampaignResults(campaign_id=campaign_id)
        conn = self.db.conn
        for state, reason, lost, revived, n in await conn.execute_fetchall(
            "SELECT state, left_reason, lost_reason, revived, count(*)"
            " FROM campaign_members WHERE campaign_id = ?"
            " GROUP BY state, left_reason, lost_reason, revived",
            (campaign_id,),
        ):
            out.entered += n
            if state == "active":
                out.active += n
            elif reason:
                out.left[reason] = out.left.get(reason, 0) + n
            if lost:
                out.entered_by_lost_reason[lost] = out.entered_by_lost_reason.get(lost, 0) + n
                if revived:
                    out.revived += n
                    out.revived_by_lost_reason[lost] = out.revived_by_lost_reason.get(lost, 0) + n
        rows = await conn.execute_fetchall(
            "SELECT count(DISTINCT person_id) FROM campaign_members WHERE campaign_id = ?",
            (campaign_id,),
        )
        out.people = int(next(iter(rows))[0])
        out.converted = out.left.get(LeaveReason.CONVERTED.value, 0)
        out.unsubscribed = out.left.get(LeaveReason.UNSUBSCRIBED.value, 0)

        steps: dict[int, StepResult] = {
            i: StepResult(step=i, kind=step_kind(s))
            for i, s in enumerate(campaign.definition.steps)
        }
        for step, kind, status, n, opened, replied, answered in await conn.execute_fetchall(
            "SELECT step, kind, status, count(*), count(opened_at), count(replied_at),"
            " sum(CASE WHEN call_outcome = 'answered' THEN 1 ELSE 0 END)"
            " FROM campaign_step_runs WHERE campaign_id = ?"
            " GROUP BY step, kind, status",
            (campaign_id,),
        ):
            res = steps.setdefault(step, StepResult(step=step, kind=kind))
            res.runs += n
            res.by_status[status] = res.by_status.get(status, 0) + n
            res.opened += opened
            res.replied += replied
            res.answered += answered or 0
            if kind == "email":
                if status == RunStatus.SENT:
                    out.emails_sent += n
                elif status == RunStatus.FAILED:
                    out.emails_failed += n
                elif status == RunStatus.BOUNCED:
                    out.emails_bounced += n
                out.emails_opened += opened
                out.emails_replied += replied
            elif kind == "call" and status == RunStatus.CALLED:
                out.calls_made += n
                out.calls_answered += answered or 0
        for step, disposition, n in await conn.execute_fetchall(
            "SELECT step, disposition, count(*) FROM campaign_step_runs"
            " WHERE campaign_id = ? AND disposition IS NOT NULL AND disposition != ''"
            " GROUP BY step, disposition",
            (campaign_id,),
        ):
            if step in steps:
                steps[step].dispositions[disposition] = n
        out.steps = [steps[i] for i in sorted(steps)]
        return out
