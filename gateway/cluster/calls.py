"""SharedCalls: the calls in progress on every instance's board (docs/scale-out.md).

Only the instance holding a PBX's lease reads that PBX's events, so only its board has the
PBX's calls in progress, the presence they make (on a call, after-call work) and the
wallboard's queue figures. This module shares them through Redis, so that the board,
``/panel/api/state`` and the wallboard of every instance show them:

* **The owner writes, off the pop-up's path.** Every change to its board's own calls (a ring,
  an answer, an end, the pop-up's card) is only noted where it happens
  (:class:`~gateway.panel.board.CallListener`); one task writes what changed since its last
  round trip, one script call per PBX. Each PBX has a hash, ``<prefix>:calls:pbx:<pbx>``:
  ``c:<call key>`` one call (its JSON as the ``call.*`` messages carry it, the caller's card,
  who was told of it, who talks on it), ``w:<agent>`` the after-call work the end of one of
  its calls started, ``q`` the wallboard's figures of its queues; ``''`` a version counted up
  at every write, and ``^owner`` the lease (``<instance>|<token>``) it was written under. The
  same script PUBLISHes the change on ``<prefix>:calls``.
* **Fenced by the lease.** The script writes only while ``<prefix>:pbx:<pbx>:lease`` names
  this instance, and a write under another lease than the hash's (a takeover, or this
  instance taking the PBX back) must replace the whole hash. The new owner writes whole after
  its resync: the dead owner's calls are replaced, never doubled, and those that ended inside
  the takeover's gap go.
* **Expiring.** The owner renews its hashes' expiry (``2 x lease_seconds``) every
  ``renew_seconds``: a dead owner's calls stay through a takeover, until the new owner's
  whole write replaces them, and expire if nobody takes the PBX over.
* **Everyone reads.** Every instance subscribes to the channel and, every ``renew_seconds``,
  compares each PBX's version in Redis with the one it applied; on a gap (a missed message,
  this instance starting, Redis back) it reads the hash whole. The shared calls are held on
  the board apart from its own (:meth:`~gateway.panel.board.Board.share_call`): they are
  shown, and pop nothing up (the owner's pop-ups reach every tab through the fanout).
* **An instance that lost a PBX** (another one holds its lease now) drops the calls its own
  board still had of it: its tracker was reset, and those calls end at the new owner.
* **Redis away**: one log line, ``/health`` (``cluster.board.calls``); once nothing could be
  read for ``lease_seconds`` the other instances' calls leave the board (they may have ended
  meanwhile); when Redis answers, every owner writes its PBXs whole and everyone reads again.

What comes from Redis is written by our own instances, but it is parsed defensively: a record
that is not what this module writes is logged, skipped, and the PBX read whole again later.
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
from gateway.cluster.channel import REDIS_FAILURES
from gateway.cluster.settings import ClusterSettings
from gateway.panel.board import Board, LiveCall

log = logging.getLogger("gateway.cluster.calls")

_MAX_TEXT = 1000  # a caller name, a number, an id longer than this is not one we wrote
_MAX_NAMES = 200  # agents ringing, told of or talking on one call
_MAX_RECORD = 256 * 1024  # characters of one record (a call with its card)
_DIRECTIONS = ("inbound", "outbound", "internal")
_CALL_STATES = ("ringing", "answered")
_OPTIONAL_TEXTS = (
    "caller", "caller_name", "did", "dialed", "number", "queue", "call_id", "answered_by",
    "answered_agent",
)  # fmt: skip
_MEMBER_STATES = ("available", "ringing", "on_call", "after_call_work", "paused", "signed_out")
_QUEUE_COUNTS = (
    "waiting", "answered", "answered_in_sl", "abandoned", "abandoned_short", "members",
    "available", "on_call", "paused",
)  # fmt: skip
_QUEUE_FIGURES = (
    "longest_wait_since", "service_level", "service_level_seconds", "average_speed_of_answer",
    "average_handle_time",
)  # fmt: skip

# ARGV: hash, lease key, channel, registry, pbx, instance, ttl ms, full (1/0), message, then
# pairs (field, record or '' to remove). Writes only while the lease names this instance;
# a hash written under another lease is only replaced whole. Answers {version, lease}, or
# {-1, lease} (not this instance's) or {0, lease} (write it whole first).
_WRITE = """
local hash, lease_key, channel, registry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local pbx, me, ttl, full = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1'
local lease = redis.call('GET', lease_key)
if not lease or string.sub(lease, 1, #me + 1) ~= me .. '|' then return {-1, lease or ''} end
if not full and redis.call('HGET', hash, '^owner') ~= lease then return {0, lease} end
if full then
  local v = redis.call('HGET', hash, '')
  redis.call('DEL', hash)
  if v then redis.call('HSET', hash, '', v) end
end
redis.call('HSET', hash, '^owner', lease)
local v = redis.call('HINCRBY', hash, '', 1)
for i = 10, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', hash, ARGV[i])
  else
    redis.call('HSET', hash, ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', hash, ttl)
redis.call('SADD', registry, pbx)
redis.call('PUBLISH', channel, pbx .. '|' .. v .. '|' .. lease .. '|' .. ARGV[9])
return {v, lease}
"""
# ARGV: key prefix, ttl ms, then pairs (pbx, the lease this instance wrote it under or '').
# Renews the expiry of the hashes still this instance's, and answers, for those PBXs and
# every one ever shared: pbx, its lease's value, its hash's owner, its hash's version.
_BEAT = """
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local mine, names, seen = {}, {}, {}
for i = 3, #ARGV, 2 do
  mine[ARGV[i]] = ARGV[i + 1]
  seen[ARGV[i]] = true
  names[#names + 1] = ARGV[i]
end
for _, pbx in ipairs(redis.call('SMEMBERS', prefix .. ':calls:pbxs')) do
  if not seen[pbx] then
    seen[pbx] = true
    names[#names + 1] = pbx
  end
end
local out = {}
for _, pbx in ipairs(names) do
  local hash = prefix .. ':calls:pbx:' .. pbx
  local lease = redis.call('GET', prefix .. ':pbx:' .. pbx .. ':lease') or ''
  local owner = redis.call('HGET', hash, '^owner') or ''
  local version = redis.call('HGET', hash, '') or ''
  if mine[pbx] and mine[pbx] ~= '' and mine[pbx] == owner and lease == owner then
    redis.call('PEXPIRE', hash, ttl)
  end
  out[#out + 1] = pbx
  out[#out + 1] = lease
  out[#out + 1] = owner
  out[#out + 1] = version
end
return out
"""


class SharedCalls:
    """This instance's calls in progress written to Redis, and the other owners' read into
    its board (:meth:`Board.share_call`), with their after-call work and queue figures."""

    def __init__(
        self,
        settings: ClusterSettings,
        board: Board,
        *,
        retry_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.board = board
        self.instance = settings.name
        self.period = retry_seconds if retry_seconds is not None else settings.renew_seconds
        # a dead owner's calls stay through a takeover (the next owner replaces them whole)
        self.ttl_ms = max(1, round(settings.lease_seconds * 2000))
        self.monotonic = monotonic
        self.prefix = settings.key_prefix
        self.channel = f"{self.prefix}:calls"
        self.registry = f"{self.prefix}:calls:pbxs"
        self.redis: Redis = channel.client(settings)
        self._sub_redis: Redis = channel.client(settings, read_timeout=False)
        self._write = self.redis.register_script(_WRITE)
        self._beat = self.redis.register_script(_BEAT)
        self.error: str | None = "not started"
        self.written = 0  # records of this instance's calls written (and published)
        self.skipped = 0  # records from Redis that were not ours to read
        # -- writing: what changed since the last round trip, and what Redis has of ours
        self._dirty_calls: set[str] = set()
        self._dirty_agents: set[str] = set()
        self._dirty_figures: set[str] = set()
        self._full: set[str] = set()  # PBXs to be written whole (a resync, Redis back)
        self._figures: dict[str, str] = {}  # pbx -> this instance's wallboard figures (JSON)
        self._written: dict[str, dict[str, str]] = {}  # pbx -> field -> record, in Redis
        self._mine: dict[str, str] = {}  # pbx -> the lease its hash was last written under
        self._resyncs: dict[str, int] = {}  # pbx -> resyncs seen (a lost PBX's calls: below)
        # -- reading: what this board holds of the other owners' hashes
        self._known: dict[str, tuple[str, int]] = {}  # pbx -> (owner lease, version) applied
        self._gaps: set[str] = set()  # PBXs to be read whole at the next beat
        self._remote_figures: dict[str, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._rewrite = True  # everything of this instance to be written whole again
        self._heard_at = monotonic()  # the last successful beat
        self._tasks: list[asyncio.Task[None]] = []
        board.listener = self

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe and read the other owners' calls; never fails (Redis may be away)."""
        self._tasks = [
            asyncio.create_task(self._listen(), name="calls-share-listen"),
            asyncio.create_task(self._flush_loop(), name="calls-share-flush"),
            asyncio.create_task(self._beat_loop(), name="calls-share-beat"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._synced.wait(), self.settings.renew_seconds * 2)

    async def close(self) -> None:
        """Stop. What this instance wrote stays: those calls go on at the PBX, and the next
        owner replaces them (or they expire)."""
        if self.board.listener is self:
            self.board.listener = None
        await channel.stop(self._tasks, (self.redis, self._sub_redis), "calls share")
        self._tasks = []

    def health(self) -> dict[str, Any]:
        return {
            "redis_ok": self.error is None,
            "redis_error": self.error,
            "owned": sorted(self._mine),
            "calls_here": len(self.board.calls),
            "shared_pbxs": sorted({*self.board.shared_pbxs(), *self._remote_figures}),
            "shared_calls": sum(len(self.board.shared_calls(p)) for p in self.board.shared_pbxs()),
            "written": self.written,
            "skipped": self.skipped,
        }

    # -- what changed here (synchronous: on the pop-up's path, so only noted) ----------------

    def call_changed(self, key: str) -> None:
        self._dirty_calls.add(key)
        self._wake.set()

    def resynced(self, pbx: str) -> None:
        self._resyncs[pbx] = self._resyncs.get(pbx, 0) + 1
        self._full.add(pbx)
        self._wake.set()

    def agent_changed(self, username: str) -> None:
        """The agent's presence changed here (their after-call work may have begun or ended)."""
        self._dirty_agents.add(username)
        self._wake.set()

    def publish_figures(self, pbx: str, figures: dict[str, Any]) -> None:
        """The wallboard's figures of ``pbx`` as this instance has them (written if this
        instance owns the PBX and they changed)."""
        text = json.dumps(figures, separators=(",", ":"), sort_keys=True, default=str)
        if text != self._figures.get(pbx):
            self._figures[pbx] = text
            self._dirty_figures.add(pbx)
            self._wake.set()

    def remote_figures(self) -> dict[str, dict[str, Any]]:
        """The wallboard's figures of the PBXs other instances own: pbx -> {queues, members}."""
        return dict(self._remote_figures)

    # -- writing -----------------------------------------------------------------------------

    def _call_record(self, key: str) -> str:
        call = self.board.calls.get(key)
        if call is None:
            return ""
        doc = {
            "call": call.to_json(),
            "card": call.card,
            "involved": sorted(call.involved),
            "talking": self.board.talking(key),
        }
        return json.dumps(doc, separators=(",", ":"), default=str)

    def _after_call(self, username: str) -> tuple[str | None, str]:
        """(pbx, record) of the agent's after-call work here; (None, '') when none."""
        agent = self.board.agents.get(username)
        if agent is None or agent.after_call_until is None or not agent.after_call_call:
            return None, ""
        pbx = agent.after_call_call.partition(":")[0]
        doc = {"until": agent.after_call_until, "call": agent.after_call_call}
        return pbx, json.dumps(doc, separators=(",", ":"))

    def _whole(self, pbx: str) -> dict[str, str]:
        fields = {
            "c:" + key: self._call_record(key)
            for key, c in self.board.calls.items()
            if c.pbx == pbx
        }
        for name in self.board.agents:
            target, record = self._after_call(name)
            if target == pbx:
                fields["w:" + name] = record
        if pbx in self._figures:
            fields["q"] = self._figures[pbx]
        return fields

    def _own_pbxs(self) -> set[str]:
        """The PBXs this instance has something of (written, or to write if it owns them)."""
        acw = {self._after_call(name)[0] for name in self.board.agents}
        calls = {c.pbx for c in self.board.calls.values()}
        return {*self._mine, *calls, *self._figures, *(p for p in acw if p is not None)}

    def _collect(self) -> dict[str, tuple[bool, dict[str, str]]]:
        """What to write, per PBX: (whole, fields) since the last round trip."""
        full, self._full = self._full, set()
        calls, self._dirty_calls = self._dirty_calls, set()
        agents, self._dirty_agents = self._dirty_agents, set()
        figures, self._dirty_figures = self._dirty_figures, set()
        out: dict[str, dict[str, str]] = {}

        def put(pbx: str, field: str, record: str) -> None:
            if pbx not in full and record != self._written.get(pbx, {}).get(field, ""):
                out.setdefault(pbx, {})[field] = record

        for key in calls:
            put(key.partition(":")[0], "c:" + key, self._call_record(key))
        for name in agents:
            field = "w:" + name
            target, record = self._after_call(name)
            for pbx in [p for p, w in self._written.items() if field in w and p != target]:
                put(pbx, field, "")
            if target is not None:
                put(target, field, record)
        for pbx in figures:
            put(pbx, "q", self._figures.get(pbx, ""))
        todo = {pbx: (False, fields) for pbx, fields in out.items()}
        for pbx in full:
            todo[pbx] = (True, self._whole(pbx))
        return todo

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.error is not None or self._rewrite:
                continue  # the beat writes everything once Redis answers
            try:
                for pbx, (full, fields) in self._collect().items():
                    await self._send(pbx, fields, full=full)
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as e:
                self._failed(e)
                self._rewrite = True
            except Exception:
                log.exception("calls share: a change could not be written; writing all again")
                self._rewrite = True

    async def _send(self, pbx: str, fields: dict[str, str], *, full: bool) -> None:
        resyncs = self._resyncs.get(pbx, 0)
        # the records are JSON already: the message embeds them as they are
        parts = ",".join(json.dumps(f) + ":" + (r or "null") for f, r in fields.items())
        message = '{"full":' + ("true" if full else "false") + ',"set":{' + parts + "}}"
        args: list[Any] = [
            f"{self.prefix}:calls:pbx:{pbx}", f"{self.prefix}:pbx:{pbx}:lease", self.channel,
            self.registry, pbx, self.instance, self.ttl_ms, "1" if full else "0", message,
        ]  # fmt: skip
        for field, record in fields.items():
            args += [field, record]
        status, lease = await self._write(args=args)
        status, lease = int(status), str(lease or "")
        if status < 0:  # another instance's PBX (or nobody's): nothing of ours to write
            self._lost(pbx, lease, resyncs)
            return
        if status == 0:  # written under another lease (a takeover): whole first
            self._full.add(pbx)
            self._wake.set()
            return
        if full or self._mine.get(pbx) != lease:
            self._written[pbx] = {}
        self._mine[pbx] = lease
        written = self._written[pbx]
        for field, record in fields.items():
            if record:
                written[field] = record
            else:
                written.pop(field, None)
        self.written += len(fields)
        if pbx in self._known or pbx in self.board.shared_pbxs():
            self._forget(pbx)  # this instance's own now: its board has them

    def _lost(self, pbx: str, lease: str, resyncs: int) -> None:
        """The lease of ``pbx`` is not this instance's (``lease`` is who holds it, '' none)."""
        self._mine.pop(pbx, None)
        self._written.pop(pbx, None)
        holder = lease.rpartition("|")[0]
        # another instance owns it: the calls this board still has of it are over here (the
        # tracker was reset); unless a resync came meanwhile (this instance took it back)
        if holder and holder != self.instance and self._resyncs.get(pbx, 0) == resyncs:
            stale = [k for k, c in self.board.calls.items() if c.pbx == pbx]
            if stale:
                self.board.forget_calls(pbx)
                log.info(
                    "calls share: pbx=%s is %s's now; %d calls left this board", pbx, holder,
                    len(stale),
                )  # fmt: skip

    # -- reading -----------------------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except REDIS_FAILURES as e:
                self._failed(e)
            except Exception:
                log.exception("calls share: the beat failed; trying again")
            if self.monotonic() - self._heard_at > self.settings.lease_seconds:
                for pbx in {*self.board.shared_pbxs(), *self._remote_figures, *self._known}:
                    self._forget(pbx)  # not heard for a lease: they may have ended
            await asyncio.sleep(self.period)

    async def _heartbeat(self) -> None:
        if self._rewrite:  # Redis back (or first contact): ours whole, and anew
            self._rewrite = False
            self._full |= self._own_pbxs()
            self._wake.set()
        resyncs = dict(self._resyncs)
        wanted = {c.pbx: "" for c in self.board.calls.values()} | self._mine
        args: list[Any] = [self.prefix, self.ttl_ms]
        for pbx, lease in wanted.items():
            args += [pbx, lease]
        answer = list(await self._beat(args=args))
        self._heard_at = self.monotonic()
        seen: set[str] = set()
        for i in range(0, len(answer) - 3, 4):
            pbx, lease, owner, version = (str(x or "") for x in answer[i : i + 4])
            seen.add(pbx)
            if lease.rpartition("|")[0] != self.instance and pbx in wanted:
                self._lost(pbx, lease, resyncs.get(pbx, 0))
            if owner and owner == self._mine.get(pbx):
                continue  # ours
            if not version or not owner:  # nothing shared (expired, or never written)
                self._forget(pbx)
                continue
            try:
                current = (owner, int(version))
            except ValueError:
                self._skip(f"the version of pbx {pbx!r}")
                continue
            if pbx in self._gaps or self._known.get(pbx) != current:
                await self._load(pbx)
        for pbx in {*self.board.shared_pbxs(), *self._remote_figures} - seen:
            self._forget(pbx)

    async def settle(self) -> None:
        """Bring what this board holds of the other owners' calls up to what Redis holds now,
        before a tab's state is read: the state must hold every change whose message the tab
        will not be sent again. (A change and its message reach this instance on two
        connections, in either order; in Redis the change is written first.) Bounded by
        ``renew_seconds``; with Redis away the state is what this board has."""
        if self.error is not None:
            return
        try:
            async with asyncio.timeout(self.settings.renew_seconds):
                answer = list(await self._beat(args=[self.prefix, self.ttl_ms]))
                for i in range(0, len(answer) - 3, 4):
                    pbx, _lease, owner, version = (str(x or "") for x in answer[i : i + 4])
                    if not owner or owner == self._mine.get(pbx) or not version.isdigit():
                        continue
                    if self._known.get(pbx) != (owner, int(version)):
                        await self._load(pbx)
        except REDIS_FAILURES as e:
            log.info("calls share: a state was read without catching up (%s)", channel.describe(e))

    async def _load(self, pbx: str) -> None:
        """Replace what this board holds of ``pbx`` with its hash as Redis has it."""
        raw = dict(await self.redis.hgetall(f"{self.prefix}:calls:pbx:{pbx}"))
        owner = str(raw.pop("^owner", ""))
        try:
            version = int(raw.pop("", 0))
        except ValueError:
            self._skip(f"the version of pbx {pbx!r}")
            version = 0
        if not owner:
            self._forget(pbx)  # expired between the beat and this read
            return
        if owner == self._mine.get(pbx):
            return
        known = self._known.get(pbx)
        if known is not None and known[0] == owner and version < known[1]:
            return  # an announcement newer than this read was applied already
        self._gaps.discard(pbx)
        self._known[pbx] = (owner, version)
        self._apply(pbx, raw, full=True)

    async def _listen(self) -> None:
        await channel.subscribe_forever(
            self._sub_redis,
            self.channel,
            resume=self._resume,
            on_message=self.on_message,
            healthy=lambda: self.error is None,
            failed=self._failed,
            ready=self._synced,
            period=self.period,
            log=log,
        )

    async def _resume(self) -> None:
        """Subscribed (again): ours written whole, everyone else's read whole."""
        self._rewrite = True
        self._known.clear()  # what was heard before may have been missed since
        await self._heartbeat()
        if self.error is not None and self.error != "not started":
            log.warning(
                "calls share instance=%s: Redis answers again; calls are shared again",
                self.instance,
            )
        self.error = None
        self._wake.set()

    def on_message(self, data: Any) -> None:
        """One change of another owner's calls: ``<pbx>|<version>|<lease>|<json>``."""
        try:
            pbx, version_text, holder, token, text = str(data).split("|", 4)
            version = int(version_text)
            doc = json.loads(text)
            full, fields = doc.get("full") is True, doc["set"]
            if not pbx or not isinstance(fields, dict):
                raise ValueError("not a change of calls")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self._skip(f"a message on {self.channel} ({type(e).__name__}: {e})")
            return
        if holder == self.instance:
            return  # ours, heard back
        owner = f"{holder}|{token}"
        known = self._known.get(pbx)
        if known is not None and known[0] == owner and version <= known[1]:
            return  # the last read of the hash held it already
        if known is not None and _token(known[0]) > _token(owner):
            return  # an earlier owner's, heard after the hash of a later one was read
        if not full and (known is None or known[0] != owner):
            self._gaps.add(pbx)  # a change of what was not read yet: the beat reads it whole
            return
        if not full and known is not None and version != known[1] + 1:
            self._gaps.add(pbx)  # one was missed: applied, and the beat reads it whole
        self._known[pbx] = (owner, version)
        self._apply(pbx, fields, full=full)

    def _apply(self, pbx: str, fields: dict[Any, Any], *, full: bool) -> None:
        if full:
            self.board.drop_shared(pbx)
            self._remote_figures.pop(pbx, None)
        bad = False
        for field, record in fields.items():
            kind, _, name = str(field).partition(":")
            if field == "q":
                figures = None if record is None else _parse_figures(record)
                if record is not None and figures is None:
                    bad = True
                elif figures is None:
                    self._remote_figures.pop(pbx, None)
                else:
                    self._remote_figures[pbx] = figures
            elif kind == "c" and name.startswith(pbx + ":") and len(name) <= _MAX_TEXT:
                parsed = None if record is None else _parse_call(pbx, name, record)
                if record is not None and parsed is None:
                    bad = True
                elif parsed is None:
                    self.board.share_call(pbx, name, None)
                else:
                    self.board.share_call(pbx, name, *parsed)
            elif kind == "w" and 0 < len(name) <= _MAX_TEXT:
                acw = None if record is None else _parse_after_call(record)
                if record is not None and acw is None:
                    bad = True
                else:
                    self.board.share_after_call(pbx, name, acw)
            else:
                bad = True
        if bad:
            self._skip(f"records of pbx {pbx!r}")
            self._gaps.add(pbx)  # what this board holds of it is in doubt: read it whole

    def _forget(self, pbx: str) -> None:
        self.board.drop_shared(pbx)
        self._remote_figures.pop(pbx, None)
        self._known.pop(pbx, None)
        self._gaps.discard(pbx)

    def _skip(self, what: str) -> None:
        self.skipped += 1
        log.warning("calls share instance=%s: skipped %s: not a record of ours", self.instance,
                    what)  # fmt: skip

    def _failed(self, e: BaseException) -> None:
        self.error = channel.failed(
            log, self.error, e, who=f"calls share instance={self.instance}",
            settings=self.settings, meanwhile="the board shows this instance's calls only "
            f"until it answers (retrying every {self.period:g}s)",
        )  # fmt: skip


# -- parsing what comes from Redis (None: not a record of ours) ------------------------------


def _doc(record: Any) -> Any:
    if isinstance(record, str):
        if len(record) > _MAX_RECORD:
            return None
        try:
            return json.loads(record)
        except ValueError:
            return None
    return record


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= _MAX_TEXT


def _names(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or len(value) > _MAX_NAMES:
        return None
    if not all(isinstance(v, str) and 0 < len(v) <= _MAX_TEXT for v in value):
        return None
    return tuple(value)


def _time(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < 1e11


def _parse_call(pbx: str, key: str, record: Any) -> tuple[LiveCall, tuple[str, ...]] | None:
    """A call record as :meth:`SharedCalls._call_record` writes it."""
    doc = _doc(record)
    if not isinstance(doc, dict) or not isinstance(doc.get("call"), dict):
        return None
    c, card = doc["call"], doc.get("card")
    involved, talking = _names(doc.get("involved")), _names(doc.get("talking"))
    ringing, agents = _names(c.get("ringing")), _names(c.get("agents"))
    if involved is None or talking is None or ringing is None or agents is None:
        return None
    if card is not None and not isinstance(card, dict):
        return None
    if c.get("id") != key or c.get("pbx") != pbx or not _text(c.get("linkedid")):
        return None
    if c.get("direction") not in _DIRECTIONS or c.get("state") not in _CALL_STATES:
        return None
    if not all(c.get(k) is None or _text(c.get(k)) for k in _OPTIONAL_TEXTS):
        return None
    if not isinstance(c.get("click_to_call"), bool) or not _time(c.get("started_at")):
        return None
    if not (c.get("answered_at") is None or _time(c.get("answered_at"))):
        return None
    call = LiveCall(
        key=key,
        pbx=pbx,
        linkedid=c["linkedid"],
        direction=c["direction"],
        caller=c.get("caller"),
        caller_name=c.get("caller_name"),
        did=c.get("did"),
        dialed=c.get("dialed"),
        number=c.get("number"),
        queue=c.get("queue"),
        click_to_call=c["click_to_call"],
        call_id=c.get("call_id"),
        started_at=float(c["started_at"]),
        state=c["state"],
        ringing=ringing,
        ringing_agents=agents,
        answered_by=c.get("answered_by"),
        answered_agent=c.get("answered_agent"),
        answered_at=None if c.get("answered_at") is None else float(c["answered_at"]),
        involved=set(involved),
        card=card,
    )
    return call, talking


def _parse_after_call(record: Any) -> tuple[float, str | None] | None:
    doc = _doc(record)
    if not isinstance(doc, dict) or not _time(doc.get("until")):
        return None
    call = doc.get("call")
    if not (call is None or _text(call)):
        return None
    return float(doc["until"]), call


def _parse_figures(record: Any) -> dict[str, Any] | None:
    """The wallboard's figures of one PBX: {"queues": [...], "members": {ext: {...}}}, as
    gateway/panel/wallboard.py's ``queues()`` and ``members()`` answer them."""
    doc = _doc(record)
    if not isinstance(doc, dict):
        return None
    queues, members = doc.get("queues"), doc.get("members")
    if not isinstance(queues, list) or not isinstance(members, dict):
        return None
    for q in queues:
        if not isinstance(q, dict) or not _text(q.get("queue")):
            return None
        if not all(_count(q.get(k)) for k in _QUEUE_COUNTS):
            return None
        if not all(q.get(k) is None or _number(q.get(k)) for k in _QUEUE_FIGURES):
            return None
    for ext, m in members.items():
        if not (_text(ext) and isinstance(m, dict) and m.get("extension") == ext):
            return None
        if m.get("state") not in _MEMBER_STATES or not _number(m.get("since")):
            return None
        if not all(_text(m.get(k)) for k in ("interface", "member_name", "reason")):
            return None
        if _names(m.get("queues")) is None or not _count(m.get("calls_taken")):
            return None
    return {"queues": queues, "members": members}


def _token(owner: str) -> int:
    """The fencing token of a lease value ``<instance>|<token>`` (0 when it has none)."""
    token = owner.rpartition("|")[2]
    return int(token) if token.isdigit() else 0


def _count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value < 10**9


def _number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value == value
        and abs(value) < 1e12
    )
