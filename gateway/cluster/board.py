"""SharedBoard: the panel's live board across the instances of a cluster (docs/scale-out.md).

Each instance's :class:`~gateway.panel.board.Board` is filled by the sign-ins made on that
instance; the PBX owner pops a call up only to agents on its board, and a supervisor sees only
the agents on theirs. With a ``cluster:`` section this module shares the board's *seats* (who
is signed in, as whom, at which extensions) and the presence each agent chose (status, reason
and when) through Redis:

* Each instance keeps its own seats in a hash, ``<prefix>:board:seats:<instance>`` (one JSON
  record per agent), and writes every change there and PUBLISHes it on ``<prefix>:board`` in
  the same script, so a change and its announcement cannot part.
* Every ``renew_seconds`` it renews its hash's expiry (``lease_seconds``, as a PBX lease) and
  its entry in ``<prefix>:board:instances`` (a sorted set scored by the time its seats
  expire). An instance that dies stops renewing: its hash expires, and every other instance,
  which looks at that set on the same beat, drops its seats. An instance that finds it was
  counted as gone (it paused too long, or Redis restarted without its data) writes all its
  seats again and announces them whole.
* Every instance subscribes to the channel; on (re)subscribing it reads every live
  instance's hash and replaces what it knew of them, so an instance that starts, or finds
  Redis back, sees everyone. Records are whole states, so a change both read and heard is
  applied twice to the same effect.
* An agent seated on several instances is one agent on the board (the union of the seats);
  the presence chosen last (by the choosing instance's clock) wins everywhere.
* Redis away: one log line, ``/health`` shows it (``cluster.board``); once nothing could be
  renewed for ``lease_seconds`` (the others' seats may have expired meanwhile) the board keeps
  this instance's own seats only, until Redis answers and everything is read again.

What comes from Redis is our instances' writing, but it is parsed defensively: a record that
is not what this module writes is logged and skipped.

The calls in progress, the presence they make and the wallboard's queue figures are shared by
:class:`~gateway.cluster.calls.SharedCalls`, which this board starts, stops and reports with
its own (``calls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gateway.cluster import channel
from gateway.cluster.calls import SharedCalls
from gateway.cluster.channel import REDIS_FAILURES
from gateway.cluster.settings import ClusterSettings
from gateway.panel.board import AVAILABLE, PAUSED, Board, RemoteSeat, Seat

log = logging.getLogger("gateway.cluster.board")

_STATUSES = (AVAILABLE, PAUSED)
_MAX_TEXT = 200  # a display name or reason longer than this is not one we wrote
_MAX_EXTENSIONS = 64

# ARGV: seats hash, channel, ttl ms, message, full (1/0), then pairs (agent, record or '' to
# remove). The hash's field '' is its version, counted up at every write and sent before the
# message ("<version>|<json>"): a reader that loaded the hash knows which announcements it
# holds already. ``full`` replaces every seat (the version goes on). The hash keeps its
# expiry; the refresh (below) renews it. Answers the version.
_WRITE = """
local hash, ttl = ARGV[1], tonumber(ARGV[3])
if ARGV[5] == '1' then
  local v = redis.call('HGET', hash, '')
  redis.call('DEL', hash)
  if v then redis.call('HSET', hash, '', v) end
end
local v = redis.call('HINCRBY', hash, '', 1)
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', hash, ARGV[i])
  else
    redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
  end
end
if redis.call('PTTL', hash) < 0 then redis.call('PEXPIRE', hash, ttl) end
redis.call('PUBLISH', ARGV[2], v .. '|' .. ARGV[4])
return v
"""
# ARGV: instances set, seats hash, instance, ttl ms. Renews this instance (its seats expire
# ttl ms from now, by Redis's clock), forgets the instances whose seats expired, and answers
# {lapsed (1: this instance was counted as gone: write everything again), live instances...}.
_REFRESH = """
local set, hash, me, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = redis.call('ZSCORE', set, me)
local lapsed = (not old) or tonumber(old) <= now
redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
redis.call('ZADD', set, now + ttl, me)
redis.call('PEXPIRE', hash, ttl)
local out = {lapsed and 1 or 0}
for _, name in ipairs(redis.call('ZRANGE', set, 0, -1)) do out[#out + 1] = name end
return out
"""


class SharedBoard:
    """This instance's seats written to Redis, and the other instances' merged into its board."""

    def __init__(
        self,
        settings: ClusterSettings,
        board: Board,
        *,
        on_lost: Callable[[list[str]], None] = lambda _agents: None,
        retry_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.board = board
        self.instance = settings.name
        # told of agents unseated here because their instance died or Redis went away (no
        # sign-out was announced for them: this instance tells its own supervisors)
        self.on_lost = on_lost
        self.period = retry_seconds if retry_seconds is not None else settings.renew_seconds
        self.ttl_ms = max(1, round(settings.lease_seconds * 1000))
        self.monotonic = monotonic
        prefix = f"{settings.key_prefix}:board"
        self.channel = prefix
        self.instances_key = f"{prefix}:instances"
        self.seats_prefix = f"{prefix}:seats:"
        self.hash = self.seats_prefix + self.instance
        self.redis: Redis = channel.client(settings)
        self._sub_redis: Redis = channel.client(settings, read_timeout=False)
        self._write = self.redis.register_script(_WRITE)
        self._refresh = self.redis.register_script(_REFRESH)
        self.error: str | None = "not started"
        self.skipped = 0  # records from Redis that were not ours to read
        self.announced = 0  # changes of this instance's seats written and published
        self._written: dict[str, str] = {}  # agent -> the record Redis has of this instance
        self._versions: dict[str, int] = {}  # instance -> the version of its seats applied
        self._lock = asyncio.Lock()  # one writer of this instance's hash at a time
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._rewrite = True  # everything of this instance to be written again
        self._heard_at = monotonic()  # the last successful round trip
        self._tasks: list[asyncio.Task[None]] = []
        # the calls in progress of the PBXs each instance owns, on every board
        self.calls = SharedCalls(settings, board, retry_seconds=retry_seconds, monotonic=monotonic)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Write this instance's seats, read the others'; never fails (Redis may be away)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="board-share-listen"),
            asyncio.create_task(self._flush_loop(), name="board-share-flush"),
            asyncio.create_task(self._refresh_loop(), name="board-share-refresh"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self.settings.renew_seconds * 2)
        await self.calls.start()

    async def close(self, *, release: bool = True) -> None:
        """Stop; this instance's seats leave every board at once (its agents' tabs are closed
        with it). ``release=False`` leaves them to expire as a crash would. The calls this
        instance published stay either way: they go on at the PBX until its next owner
        replaces them, or they expire."""
        await self.calls.close()
        await channel.stop(self._tasks, (), "board share")
        self._tasks = []
        if release and self.error is None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self._send({u: "" for u in self._written}, full=True)
                await self.redis.zrem(self.instances_key, self.instance)
                await self.redis.delete(self.hash)
        await channel.stop((), (self.redis, self._sub_redis), "board share")

    def health(self) -> dict[str, Any]:
        return {
            "redis_ok": self.error is None,
            "redis_error": self.error,
            "instance_seats": len(self.board.local_agents()),
            "other_instances": sorted(self.board.remote_instances()),
            "announced": self.announced,
            "skipped": self.skipped,
            "calls": self.calls.health(),
        }

    # -- this instance's seats ---------------------------------------------------------------

    def changed(self, username: str) -> None:
        """The agent's sign-in or chosen presence may have changed here: written to Redis
        (soon, in one batch with the others) if what Redis has of it differs."""
        self._dirty.add(username)
        self._wake.set()
        self.calls.agent_changed(username)  # after-call work is shared with the calls

    def _record(self, username: str) -> str:
        """What Redis should have of the agent's seat here ('' when not signed in here)."""
        seat = self.board.local_seat(username)
        agent = self.board.agents.get(username)
        if seat is None or agent is None:
            return ""
        return json.dumps(
            {
                "display_name": seat.display_name,
                "role": seat.role,
                "extensions": list(seat.extensions),
                "status": agent.status,
                "reason": agent.reason,
                "status_at": agent.status_at,
            },
            separators=(",", ":"),
        )

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.error is not None or self._rewrite:
                continue  # the refresh writes everything once Redis answers
            dirty, self._dirty = self._dirty, set()
            changes = {}
            for username in dirty:
                record = self._record(username)
                if record != self._written.get(username, ""):
                    changes[username] = record
            if not changes:
                continue
            try:
                async with self._lock:
                    await self._send(changes, full=False)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as e:
                self._failed(e)
                self._rewrite = True
            except Exception:
                log.exception("board share: a change could not be written; writing all again")
                self._rewrite = True

    async def _send(self, changes: dict[str, str], *, full: bool) -> None:
        seats = {u: (json.loads(r) if r else None) for u, r in changes.items()}
        message = json.dumps({"i": self.instance, "full": full, "seats": seats})
        args: list[Any] = [self.hash, self.channel, self.ttl_ms, message, "1" if full else "0"]
        for username, record in changes.items():
            args += [username, record]
        await self._write(args=args)
        for username, record in changes.items():
            if record:
                self._written[username] = record
            else:
                self._written.pop(username, None)
        self.announced += len(changes)

    async def _write_all(self) -> None:
        """This instance's whole seat list, replacing what Redis had, announced as whole."""
        records = {u: r for u in self.board.local_agents() if (r := self._record(u))}
        self._dirty.clear()
        self._written = {}
        await self._send(records, full=True)

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self._renew()
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as e:
                self._failed(e)
            except Exception:
                log.exception("board share: the refresh failed; trying again")
            if self.monotonic() - self._heard_at > self.settings.lease_seconds:
                self._forget_others("Redis away")
            await asyncio.sleep(self.period)

    async def _renew(self) -> None:
        async with self._lock:
            await self._renew_locked()

    async def _renew_locked(self) -> None:
        answer = await self._refresh(
            args=[self.instances_key, self.hash, self.instance, self.ttl_ms]
        )
        self._heard_at = self.monotonic()
        lapsed, live = int(answer[0]), {str(name) for name in answer[1:]}
        if lapsed or self._rewrite:
            # gone from the others' view (or Redis lost everything): all of it, again
            self._rewrite = False
            await self._write_all()
            self._wake.set()  # changes made meanwhile
        for instance in sorted({*self._versions, *self.board.remote_instances()}):
            if instance not in live:
                self._versions.pop(instance, None)
                self._lost(self.board.drop_instance(instance), f"instance {instance} gone")
        for instance in sorted(live - {self.instance, *self._versions}):
            await self._load(instance)

    # -- the other instances' seats ----------------------------------------------------------

    async def _listen(self) -> None:
        await channel.subscribe_forever(
            self._sub_redis,
            self.channel,
            resume=self._resync,
            on_message=self.on_message,
            healthy=lambda: self.error is None,
            failed=self._failed,
            ready=self._synced,
            period=self.period,
            log=log,
        )

    async def _resync(self) -> None:
        """Subscribed (again): this instance's seats written whole, everyone else's read."""
        self._rewrite = True
        self._versions.clear()  # what was heard before may have been missed since: read all
        await self._renew()  # writes ours, drops the instances gone, loads the live ones
        if self.error is not None and self.error != "not started":
            log.warning(
                "board share instance=%s: Redis answers again; the board is shared again",
                self.instance,
            )
        self.error = None
        self._heard_at = self.monotonic()
        self._wake.set()

    async def _load(self, instance: str) -> None:
        """Replace what this board has of ``instance`` with its hash as Redis has it."""
        raw = dict(await self.redis.hgetall(self.seats_prefix + instance))
        try:
            version = int(raw.pop("", 0))
        except ValueError:
            self._skip(f"the version of {instance!r}'s seats")
            version = 0
        if version and version < self._versions.get(instance, 0):
            return  # an announcement newer than this read was applied already
        self._versions[instance] = version
        self._apply(instance, raw, full=True)

    def on_message(self, data: Any) -> None:
        """One announcement from the channel (another instance's change, or all its seats)."""
        try:
            head, _, text = str(data).partition("|")
            version = int(head)
            doc = json.loads(text)
            instance, full, seats = doc["i"], doc.get("full") is True, doc["seats"]
            if not isinstance(instance, str) or not isinstance(seats, dict):
                raise ValueError("not an announcement")
        except (ValueError, TypeError, KeyError) as e:
            self._skip(f"a message on {self.channel} ({type(e).__name__}: {e})")
            return
        if instance == self.instance:
            return  # ours, heard back
        # a whole list always applies (its instance may have started its count again); a
        # change the last read of the hash held already does not
        known = self._versions.get(instance)
        if not full and (known is None or version <= known):
            return  # (not read yet: the next refresh reads the whole hash)
        self._versions[instance] = version
        self._apply(instance, seats, full=full)

    def _apply(self, instance: str, seats: dict[Any, Any], *, full: bool) -> None:
        parsed: dict[str, RemoteSeat | None] = {}
        bad = False
        for username, record in seats.items():
            remote = None if record is None else _parse(record)
            if not isinstance(username, str) or not 0 < len(username) <= _MAX_TEXT:
                self._skip(f"an agent name from {instance!r}")
                bad = True
            elif record is not None and remote is None:
                self._skip(f"the seat of {username!r} from {instance!r}")
                bad = True
            else:
                parsed[username] = remote
        if bad:  # what this board holds of it is in doubt: the next refresh reads it whole
            self._versions.pop(instance, None)
        if full:  # whoever it no longer lists has left it
            for username in self.board.remote_seats(instance):
                parsed.setdefault(username, None)
        left = []
        for username, remote in parsed.items():
            changed = self.board.seat_remote(instance, username, remote)
            if changed and full and not self.board.agents[username].signed_in:
                left.append(username)  # (a sign-out is told by its own instance)
        self._lost(left, f"instance {instance} no longer lists them")

    def _forget_others(self, why: str) -> None:
        self._versions.clear()
        for instance in self.board.remote_instances():
            self._lost(self.board.drop_instance(instance), why)

    def _lost(self, agents: list[str], why: str) -> None:
        if not agents:
            return
        log.info("board share: %d agents left the board (%s)", len(agents), why)
        try:
            self.on_lost(agents)
        except Exception:
            log.exception("board share: telling of agents who left failed")

    def _skip(self, what: str) -> None:
        self.skipped += 1
        log.warning("board share instance=%s: skipped %s: not a record of ours", self.instance,
                    what)  # fmt: skip

    def _failed(self, e: BaseException) -> None:
        self.error = channel.failed(
            log, self.error, e, who=f"board share instance={self.instance}",
            settings=self.settings, meanwhile="the board shows this instance's sign-ins only "
            f"until it answers (retrying every {self.period:g}s)",
        )  # fmt: skip


def _parse(record: Any) -> RemoteSeat | None:
    """A seat record as :meth:`SharedBoard._record` writes it (a JSON text in the hash, an
    object in a message); None when it is anything else."""
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except ValueError:
            return None
    if not isinstance(record, dict):
        return None
    name, role, exts = record.get("display_name"), record.get("role"), record.get("extensions")
    status, reason, at = record.get("status"), record.get("reason"), record.get("status_at")
    if not (isinstance(name, str) and len(name) <= _MAX_TEXT):
        return None
    if role not in ("agent", "supervisor", "admin"):
        return None
    if not (isinstance(exts, list) and len(exts) <= _MAX_EXTENSIONS):
        return None
    if not all(isinstance(e, str) and 0 < len(e) <= 40 for e in exts):
        return None
    if status not in _STATUSES or not (isinstance(reason, str) and len(reason) <= _MAX_TEXT):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 <= at < 1e11:
        return None
    return RemoteSeat(Seat(name, role, tuple(exts)), status, reason, float(at))
