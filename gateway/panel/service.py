"""PanelService: everything behind the agent panel, between the bus, the store and the hub.

It listens to the tracker's call events on the bus (synchronous handlers that only update the
pure :class:`Board` and queue work), looks each new caller up once, and pushes typed messages
to the agents concerned and to every signed-in supervisor. Sign-in, presence (with QueuePause
in the PBX), call history, wrap-up, recordings and click-to-call are its methods; the HTTP
routes in ``routes.py`` only translate requests into these calls.

Ordering: the pop-up of a new call waits for its caller lookup; events of that call arriving
meanwhile (answered, ended) are held and sent right after it, so an agent never sees a call
answered before it rang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.access import ROLE_SCOPES
from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.api.auth import Principal
from gateway.calls.events import CallAnswered, CallEnded, CallRinging
from gateway.cluster.relay import NoOwner, RelayLost
from gateway.config import GatewayConfig
from gateway.errors import AmiError, ApiError
from gateway.lookup.card import CallerCard
from gateway.lookup.numbers import display_format
from gateway.metrics import LOOKUP_SECONDS, POPUP_SECONDS
from gateway.panel.aftercall import AFTER_CALL_REASON, AfterCallWork
from gateway.panel.board import AVAILABLE, PAUSED, Board, LiveCall
from gateway.panel.clicktocall import Attempt, ClickToCall
from gateway.panel.controls import CallControls
from gateway.panel.ratelimit import SignInGuard, SlidingWindowLimiter
from gateway.panel.sessions import COOKIE, Session, SessionStore
from gateway.panel.settings import PanelSettings
from gateway.panel.users import Role, UserError, UserRepository, check_extensions
from gateway.push import messages as m
from gateway.push.hub import AgentHub
from gateway.store.calllog import (
    CallRecordError,
    decode_cursor,
    display_fields,
    encode_cursor,
    number_filter,
)
from gateway.store.db import Database, SqlParam
from gateway.store.events import WrapUpSaved
from gateway.store.models import PersonType

if TYPE_CHECKING:  # redis is imported only by a clustered gateway
    from gateway.cluster.board import SharedBoard
    from gateway.cluster.fanout import RedisFanout
    from gateway.cluster.relay import OwnerRelay
    from gateway.cluster.settings import ClusterSettings
    from gateway.cluster.signin import RedisSignInGuard
from gateway.store.repositories import (
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)
from gateway.store.validation import FieldError

log = logging.getLogger("gateway.panel")

MISSED = ("noanswer", "abandoned", "busy")
# the wrap-up was saved but the after-call work the PBX's owner runs could not be ended there
# (clustered: docs/scale-out.md); shown by the panel as ``wrapup.pbx_warning``
AFTER_CALL_NOT_ENDED = (
    "Saved, but the phone system is not reachable right now to end your after-call work;"
    " your queues may keep you paused until it ends on its own."
)
AFTER_CALL_UNCONFIRMED = (
    "Saved, but the phone system did not confirm the end of your after-call work;"
    " your queues may keep you paused until it ends on its own."
)
PENDING_WRAPUPS_KEPT = 200  # per user, newest first (the desk's pending list holds as many)
# how often open sockets are checked against the sessions table, which `centralita user`
# changes from another process (changes made through the API take effect at once)
SESSION_CHECK_SECONDS = 30.0
USER_SCOPES = {role: ROLE_SCOPES[role.value] for role in Role}  # gateway/access.py decides

Writeback = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    """A call whose pop-up waits for its caller card; its later messages wait behind it."""

    held: list[tuple[list[str], m.Encoded]] = field(default_factory=list)


class PanelService:
    """Sign-in, pop-ups, presence, history, wrap-up, recordings and click-to-call."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Any,
        lookup: Any,
        links: Mapping[str, Any],
        cfg: GatewayConfig,
        settings: PanelSettings | None = None,
        clock: Callable[[], float] = time.time,
        writeback: Writeback | None = None,
        cluster: ClusterSettings | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.lookup = lookup
        self.links = links
        self.cfg = cfg
        self.settings = settings or PanelSettings()
        self.clock = clock
        self.writeback = writeback
        self.users = UserRepository(db)
        self.sessions = SessionStore(db, ttl=self.settings.session_hours * 3600)
        self.people = PersonRepository(db, cfg.lookup.default_region)
        self.activities = ActivityRepository(db)
        self.follow_ups = FollowUpRepository(db)
        self.board = Board()
        # clustered: pop-ups go through Redis to whichever instance holds each agent's tabs
        self.fanout: RedisFanout | None = None
        if cluster is not None:
            from gateway.cluster.fanout import RedisFanout

            self.fanout = RedisFanout(cluster, buffer_size=self.settings.buffer_size)
        self.hub = AgentHub(
            self.agent_of,
            buffer_size=self.settings.buffer_size,
            max_pending=self.settings.max_pending,
            allowed_origins=self.settings.allowed_origins,
            fanout=self.fanout,
        )
        if self.fanout is not None:
            self.fanout.bind(self.hub)
        # clustered: the board's seats and chosen presence shared with the other instances,
        # so the PBX owner pops calls up to agents signed in elsewhere, and every supervisor
        # sees everyone
        self.shared_board: SharedBoard | None = None
        if cluster is not None:
            from gateway.cluster.board import SharedBoard

            self.shared_board = SharedBoard(cluster, self.board, on_lost=self._tell_left)
        s = self.settings
        self.sign_ins = SignInGuard(s.login_attempts, s.login_window)
        # clustered: the same limits counted in Redis, for every instance at once
        self.shared_sign_ins: RedisSignInGuard | None = None
        if self.fanout is not None and cluster is not None:
            from gateway.cluster.signin import RedisSignInGuard

            self.shared_sign_ins = RedisSignInGuard(
                self.fanout.redis, self.sign_ins, prefix=cluster.key_prefix
            )
        # clustered: click-to-call, call controls and queue pauses are carried out by the
        # instance that owns each PBX's link, wherever the request lands
        self.relay: OwnerRelay | None = None
        if cluster is not None:
            from gateway.cluster.relay import OwnerRelay

            self.relay = OwnerRelay(cluster, links)
            self.links = self.relay.routed()
        self.clicktocall = ClickToCall(
            db,
            links,
            cfg,
            self._publish_progress,
            SlidingWindowLimiter(s.originate_limit, s.originate_window),
            clock,
            relay=self.relay,
        )
        self.aftercall = AfterCallWork(
            self.board,
            s.after_call_seconds,
            clock,
            self._queue_pause,
            lambda user, type_, data: self.hub.publish([user], m.encode(type_, data)),
            self._publish_presence,
            self._spawn,
        )
        self.controls = CallControls(
            self.board,
            links,
            cfg,
            s,
            self.clicktocall.check_number,
            self.clicktocall.owners.get,
            self._publish_presence,
            lambda user, type_, data: self.hub.publish([user], m.encode(type_, data)),
            clock,
            relay=self.relay,
        )
        if self.relay is not None:
            # what only a PBX's owner keeps of a desk: its after-call work (timer and queue
            # pause), and the parts of a tab's state it alone knows
            self.relay.handle("desk.aftercall", self._serve_after_call)
            self.relay.handle("desk.state", self._serve_state)
        self.dispositions = {d.id: d.label for d in s.dispositions}
        self._pending: dict[str, _Pending] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._attribution: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
        self._announced_followups: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self.rings_published = 0
        # presence chosen during a call, as last stored (agent_presence.pending), and the
        # choices read back at start that wait for the PBX's live picture to be applied
        self._pending_stored: dict[str, bool] = {}
        self._restored_pending: set[str] = set()
        # after-call work as last stored: (until, call) of agents who are in it
        self._acw_stored: dict[str, tuple[float, str | None]] = {}

    @classmethod
    def from_gateway(
        cls, gateway: Any, settings: PanelSettings | None = None, **kw: Any
    ) -> PanelService:
        """Built on a ``gateway.app.Gateway`` whose store is open."""
        cfg = gateway.cfg
        return cls(
            db=gateway.db,
            bus=gateway.bus,
            lookup=gateway.lookup,
            links=gateway.links,
            cfg=cfg,
            settings=settings or getattr(cfg, "panel", None),
            clock=getattr(gateway, "clock", time.time),
            cluster=getattr(cfg, "cluster", None),
            **kw,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def attach(self) -> None:
        """Subscribe to the call events (idempotent)."""
        if self._unsubscribe:
            return
        sub = self.bus.subscribe
        self._unsubscribe = [
            sub(CallRinging, self.on_ringing),
            sub(CallAnswered, self.on_answered),
            sub(CallEnded, self.on_ended),
            sub(AmiEvent, self.clicktocall.on_ami_event),
            sub(AmiEvent, self.controls.on_ami_event),
            sub(ResyncSnapshot, self.on_resync),
            sub(ResyncSnapshot, self.clicktocall.on_resync),
        ]

    async def start(self) -> None:
        self.attach()
        if self.fanout is not None:
            await self.fanout.start()
        if self.relay is not None:
            await self.relay.start()
        for s in await self.sessions.active():
            self.board.sign_in(s.username, s.display_name, s.role.value, s.extensions)
        rows = await self.db.conn.execute_fetchall(
            "SELECT username, status, reason, pending, after_call_until, after_call_call,"
            " updated_at FROM agent_presence"
        )
        for r in rows:
            agent = self.board.set_status(
                r["username"], r["status"], r["reason"], float(r["updated_at"] or 0)
            )
            self._pending_stored[r["username"]] = bool(r["pending"])
            if agent is not None and r["pending"]:
                # chosen during a call before a restart: the end of that call (if the PBX
                # still has it) or the first live picture of the PBX (if not) applies it
                agent.pending = True
                self._restored_pending.add(agent.username)
            if r["after_call_until"] is not None:
                self._acw_stored[r["username"]] = (r["after_call_until"], r["after_call_call"])
                if agent is not None and agent.signed_in:
                    # wrapping up when the gateway stopped: the timer ends it as it would
                    # have (at once if its time is up); on_resync squares the queues
                    agent.after_call_until = r["after_call_until"]
                    agent.after_call_call = r["after_call_call"]
        if self.shared_board is not None:  # after the seats and presence read back above
            await self.shared_board.start()
        self._workers = [
            asyncio.create_task(self._attribute_calls(), name="panel-call-attribution"),
            asyncio.create_task(self._watch_followups(), name="panel-followups"),
            asyncio.create_task(self._watch_sessions(), name="panel-sessions"),
            asyncio.create_task(self.aftercall.run(), name="panel-after-call-work"),
        ]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        await self.hub.close()
        if self.shared_board is not None:
            await self.shared_board.close()
        if self.fanout is not None:
            await self.fanout.close()
        await self.clicktocall.close()
        await self.controls.close()
        if self.relay is not None:  # after them: their last writes go through its client
            await self.relay.close()
        # calls already ended keep their attribution
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._attribution.join(), 5)
        for task in [*self._workers, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._workers, *self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- authentication ----------------------------------------------------------------------

    async def session_of(self, request: web.Request) -> Session | None:
        return await self.sessions.get(request.cookies.get(COOKIE))

    async def agent_of(self, request: web.Request) -> str | None:
        """The hub's authenticator: the signed-in user's name, from the session cookie."""
        s = await self.session_of(request)
        return s.username if s else None

    async def api_principal(self, request: web.Request) -> Principal | None:
        """For ``API_AUTHENTICATORS``: a signed-in panel user may call /api/v1 too."""
        s = await self.session_of(request)
        if s is None:
            return None
        return Principal(s.username, "user", USER_SCOPES[s.role], s.role.value)

    async def login(
        self, username: Any, password: Any, extensions: Any, address: str
    ) -> tuple[str, Session]:
        """Check the password (limits: ``SignInGuard``) and open a session."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, "bad_request", "Expected a user name and a password.")
        name = username.strip().lower()[:40]
        now = self.clock()
        shared = self.shared_sign_ins
        if shared is not None:
            wait = await shared.wait(name, address, now)
        else:
            wait = self.sign_ins.wait(name, address, now)
        if wait:
            raise ApiError(
                429,
                "too_many_attempts",
                f"Too many failed sign-ins; try again in {int(wait) + 1} s.",
                {"retry_after": int(wait) + 1},
            )
        user = await self.users.verify(name, password)
        if user is None:
            if shared is not None:
                await shared.failed(name, address, now)
            else:
                self.sign_ins.failed(name, address, now)
            log.info("panel sign-in refused user=%r from %s", name, address)
            raise ApiError(401, "bad_credentials", "Wrong user name or password.")
        if shared is not None:
            await shared.succeeded(name, address, now)
        else:
            self.sign_ins.succeeded(name, address, now)
        chosen: tuple[str, ...] = user.extensions
        if extensions not in (None, "", []):
            try:
                chosen = check_extensions(extensions)
            except UserError as e:
                raise ApiError(400, "bad_extension", str(e)) from e
        token, session = await self.sessions.create(user, chosen)
        await self.hub.revalidate(user.username)  # tabs of a session the cap just ended
        agent = self.board.sign_in(user.username, user.display_name, user.role.value, chosen)
        log.info("panel sign-in user=%s extensions=%s", user.username, ",".join(chosen) or "-")
        self._publish_presence(agent.username)
        del agent
        return token, session

    async def logout(self, token: str | None) -> None:
        username = await self.sessions.end(token)
        if username is None:
            return
        remaining = [s for s in await self.sessions.active() if s.username == username]
        if remaining:
            s = remaining[-1]
            self.board.sign_in(s.username, s.display_name, s.role.value, s.extensions)
        else:
            agent = self.board.sign_out(username)
            if agent is None or not agent.signed_in:  # (still signed in on another instance)
                self.aftercall.signed_out(username)
            await self.hub.disconnect(username)
        self._publish_presence(username)

    async def check_sessions(self, username: str | None = None) -> None:
        """After a user's account changed (disabled, deleted, new password, role), here or
        through ``centralita user`` in another process: close the tabs whose session ended
        and take whoever has no session left off the board. ``None`` checks everyone."""
        await self.hub.revalidate(username)
        latest = {s.username: s for s in await self.sessions.active()}  # oldest first
        names = [username] if username else list(self.board.agents)
        for name in names:
            agent = self.board.agents.get(name)
            s = latest.get(name)
            if s is not None:
                if username:  # role or name may have changed
                    self.board.sign_in(s.username, s.display_name, s.role.value, s.extensions)
                    self._publish_presence(name)
            elif agent is not None and self.board.local_seat(name) is not None:
                self.board.sign_out(name)  # (seated still if signed in on another instance)
                self._publish_presence(name)

    async def _watch_sessions(self) -> None:
        while True:
            await asyncio.sleep(SESSION_CHECK_SECONDS)
            try:
                await self.check_sessions()
            except Exception:
                log.exception("panel: session check failed")

    # -- messages ----------------------------------------------------------------------------

    def _send(self, key: str | None, agents: list[str], msg: m.Encoded) -> None:
        pending = self._pending.get(key) if key else None
        if pending is not None:
            pending.held.append((agents, msg))
            return
        self.hub.publish(agents, msg)

    def _audience(self, *groups: Any) -> list[str]:
        out: list[str] = []
        for group in (*groups, self.board.watchers()):
            for name in group:
                if name and name not in out:
                    out.append(name)
        return out

    def _publish_presence(self, username: str) -> None:
        agent = self.board.agents.get(username)
        if agent is None:
            return
        self.hub.publish(self._audience([username]), m.encode(m.PRESENCE, agent.to_json()))
        if self.shared_board is not None:
            self.shared_board.changed(username)
        if agent.pending != self._pending_stored.get(username, False):
            self._store_pending(username, agent.pending)
        acw = (
            None
            if agent.after_call_until is None
            else (agent.after_call_until, agent.after_call_call)
        )
        if acw != self._acw_stored.get(username):
            self._store_after_call(username, acw)

    def _tell_left(self, usernames: list[str]) -> None:
        """Agents of another instance left the board without a sign-out (it died, or Redis
        went away): this instance's supervisors are told; the other instances tell theirs."""
        watchers = self.board.local_watchers()
        for name in usernames:
            agent = self.board.agents.get(name)
            if agent is not None and watchers:
                self.hub.publish(watchers, m.encode(m.PRESENCE, agent.to_json()))

    def _store_pending(self, username: str, pending: bool) -> None:
        """Keep the "pending" flag of a presence on disk, so a restart does not lose it."""
        self._pending_stored[username] = pending

        async def write() -> None:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "UPDATE agent_presence SET pending = ? WHERE username = ?",
                    (int(pending), username),
                )

        self._spawn(write(), f"panel-pending-{username}")

    def _store_after_call(self, username: str, acw: tuple[float, str | None] | None) -> None:
        """Keep an agent's after-call work on disk, so a restart ends it (and its queue
        pause) instead of forgetting it."""
        if acw is None:
            self._acw_stored.pop(username, None)
        else:
            self._acw_stored[username] = acw
        until, call = acw if acw is not None else (None, None)
        now = self.clock()

        async def write() -> None:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO agent_presence (username, updated_at, after_call_until,"
                    " after_call_call) VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE"
                    " SET after_call_until = excluded.after_call_until,"
                    " after_call_call = excluded.after_call_call",
                    (username, now, until, call),
                )

        self._spawn(write(), f"panel-after-call-{username}")

    def on_resync(self, snap: ResyncSnapshot) -> None:
        """The PBX's live picture after a (re)connect; the tracker has replayed its calls onto
        the board already (same bus, subscribed first). A pending presence restored from disk
        whose call is gone applies now; one whose call goes on waits for its end. The queue
        pauses the gateway itself makes (after-call work) are squared with what it knows."""
        self.board.resynced(snap.pbx)  # clustered: the PBX's calls are shared whole again
        for name in sorted(self._restored_pending):
            self._restored_pending.discard(name)
            self.aftercall.apply_restored(name)
        self._square_after_call_pauses(snap)

    def _square_after_call_pauses(self, snap: ResyncSnapshot) -> None:
        """A member paused for after-call work that the gateway no longer counts (it ended
        while the gateway or the link was down) is set back to the agent's own choice; an
        agent wrapping up whom the PBX does not hold paused is paused. Other pauses, made on
        the phone or by hand, are the PBX's business and are left alone."""
        acw_paused: set[str] = set()
        unpaused: set[str] = set()
        for f in snap.queues:
            if f.get("Event") != "QueueMember":
                continue
            iface = f.get("Location") or f.get("Interface") or f.get("StateInterface") or ""
            if f.get("Paused") == "1":
                if f.get("PausedReason") == AFTER_CALL_REASON:
                    acw_paused.add(iface)
            else:
                unpaused.add(iface)
        channel = self.cfg.originate.agent_channel
        for agent in list(self.board.agents.values()):
            if not agent.signed_in or not agent.extensions:
                continue
            ifaces = {channel.format(ext=ext) for ext in agent.extensions}
            wrapping_up = agent.after_call_until is not None
            if not wrapping_up and ifaces & acw_paused:
                self.aftercall.restore_queues(agent.username)
            elif wrapping_up and agent.status != PAUSED and ifaces & unpaused:
                self.aftercall.pause_for_after_call(agent.username)

    def _publish_progress(self, agent: str, data: dict[str, Any]) -> None:
        self.hub.publish([agent], m.encode(m.CLICKTOCALL_PROGRESS, data))

    # -- call events (bus handlers: synchronous, quick) --------------------------------------

    def on_ringing(self, e: CallRinging) -> None:
        call, new = self.board.ringing(e)
        if new:
            self._pending[call.key] = _Pending()
            # the pop-up shows the call as it was when it started ringing, whatever happens
            # to it while the lookup runs (those changes follow in their own messages)
            rang = time.perf_counter()
            self._spawn(
                self._pop_up(call, call.to_json(), e.number, rang), f"panel-popup-{call.key}"
            )
            return
        self._send_ringing(call)

    def _send_ringing(self, call: LiveCall) -> None:
        data = {"call": call.to_json(), "card": self._cards.get(call.key)}
        self._send(call.key, self._audience(call.involved), m.encode(m.CALL_RINGING, data))

    async def _pop_up(
        self, call: LiveCall, snapshot: dict[str, Any], number: str | None, rang: float
    ) -> None:
        card_json: dict[str, Any] | None = None
        try:
            if number and self.lookup is not None:
                card_json = card_to_json(
                    await self.lookup.lookup(number), self.cfg.lookup.default_region
                )
                LOOKUP_SECONDS.labels("panel").observe(time.perf_counter() - rang)
        except Exception:  # the pop-up goes out without a card rather than not at all
            log.exception("panel lookup failed call=%s", call.key)
        finally:
            pending = self._pending.pop(call.key, None)
            if card_json is not None:
                self._cards[call.key] = card_json
            data = {"call": snapshot, "card": card_json}
            self.hub.publish(self._audience(call.involved), m.encode(m.CALL_RINGING, data))
            POPUP_SECONDS.observe(time.perf_counter() - rang)
            self.rings_published += 1
            for agents, msg in pending.held if pending else ():
                self.hub.publish(agents, msg)
            self.board.set_card(call.key, card_json)  # clustered: shared with the call
            if call.state == "ended":
                self._cards.pop(call.key, None)
                if card_json is not None:  # it ended before its lookup: its wrap-up gets it
                    self._spawn(self._card_of_wrapup(call.key, card_json), f"panel-card-{call.key}")

    def on_answered(self, e: CallAnswered) -> None:
        call, takers = self.board.answered(e)
        self.clicktocall.on_answered(e)
        if call is None:
            return
        data = {"call": call.to_json()}
        self._send(call.key, self._audience(call.involved), m.encode(m.CALL_ANSWERED, data))
        for name in takers:
            self.aftercall.call_answered(name)
            self._publish_presence(name)

    def on_ended(self, e: CallEnded) -> None:
        r = e.record
        call, freed = self.board.ended(e)
        c2c = self.clicktocall.on_ended(e)
        key = r.log_id
        involved = set(call.involved) if call else set()
        involved.update(self.board.agents_at([*r.agents_rang, *r.agents_answered]))
        if c2c:
            involved.add(c2c)
        takers = self.board.agents_at(
            r.agents_answered or ([r.answered_by] if r.answered_by else [])
        )
        if r.click_to_call and c2c and c2c not in takers:
            takers.append(c2c)
        call_data: dict[str, Any] = {
            **(call.to_json() if call else {"id": key, "pbx": r.pbx, "linkedid": r.linkedid}),
            "state": "ended",
            "direction": r.direction.value,
            "number": r.dialed if r.direction.value == "outbound" else r.caller,
            "caller": r.caller,
            "caller_name": r.caller_name,
            "outcome": r.outcome.value,
            "answered_by": r.answered_by,
            "ring_seconds": r.ring_seconds,
            "talk_seconds": r.talk_seconds,
            "total_seconds": r.total_seconds,
            "ended_at": r.ended_at,
            "recordings": len(r.recordings),
        }
        data = {"call": call_data, "wrapup": takers}
        self._send(key, self._audience(involved), m.encode(m.CALL_ENDED, data))
        if takers:  # they owe a wrap-up: kept on disk until saved (a reload, a restart)
            self._spawn(
                self._keep_wrapups(takers, call_data, self._cards.get(key), r.ended_at),
                f"panel-wrapups-{key}",
            )
        if key not in self._pending:
            self._cards.pop(key, None)
        self.controls.call_ended(key, freed)
        for name in freed:  # they talked on it: after-call work (or their pending presence)
            self.aftercall.call_ended(name, key)
        for name in freed:
            self._publish_presence(name)
        if involved:
            self._attribution.put_nowait((key, sorted(involved)))

    # -- wrap-ups not saved yet ---------------------------------------------------------------

    async def _keep_wrapups(
        self,
        users: list[str],
        call: dict[str, Any],
        card: dict[str, Any] | None,
        ended_at: float | None,
    ) -> None:
        at = ended_at or self.clock()
        rows = [
            (u, call["id"], json.dumps({**call, "wrapup": [u]}), json.dumps(card), at)
            for u in users
        ]
        try:
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "INSERT OR REPLACE INTO pending_wrapups"
                    " (username, call_id, call, card, ended_at) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                # an agent who never saves does not grow the table without end
                await conn.executemany(
                    "DELETE FROM pending_wrapups WHERE username = ? AND call_id NOT IN"
                    " (SELECT call_id FROM pending_wrapups WHERE username = ?"
                    " ORDER BY ended_at DESC, call_id DESC LIMIT ?)",
                    [(u, u, PENDING_WRAPUPS_KEPT) for u in users],
                )
        except Exception:
            log.exception("panel: could not keep the pending wrap-ups of %s", call.get("id"))

    async def _card_of_wrapup(self, call_id: str, card: dict[str, Any]) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE pending_wrapups SET card = ? WHERE call_id = ? AND card = 'null'",
                (json.dumps(card), call_id),
            )

    async def pending_wrapups(self, username: str) -> list[dict[str, Any]]:
        """The user's ended calls whose wrap-up is not saved, newest first, with their card."""
        rows = await self.db.conn.execute_fetchall(
            "SELECT call, card FROM pending_wrapups WHERE username = ?"
            " ORDER BY ended_at DESC, call_id DESC LIMIT ?",
            (username, PENDING_WRAPUPS_KEPT),
        )
        return [{"call": json.loads(r["call"]), "card": json.loads(r["card"])} for r in rows]

    async def _attribute_calls(self) -> None:
        while True:
            key, users = await self._attribution.get()
            try:
                async with self.db.transaction() as conn:
                    await conn.executemany(
                        "INSERT OR IGNORE INTO call_users (call_id, username) VALUES (?, ?)",
                        [(key, u) for u in users],
                    )
            except Exception:
                log.exception("panel: could not record who took call %s users=%s", key, users)
            finally:
                self._attribution.task_done()

    async def flush(self) -> None:
        """Wait until every ended call's attribution is stored (tests, shutdown)."""
        await self._attribution.join()

    # -- follow-ups --------------------------------------------------------------------------

    async def _watch_followups(self) -> None:
        while True:
            try:
                await self.announce_due_followups()
            except Exception:
                log.exception("panel: follow-up check failed")
            await asyncio.sleep(self.settings.followup_check_seconds)

    async def announce_due_followups(self) -> int:
        """Tell each agent signed in here about their follow-ups that fell due (once each;
        an agent signed in on another instance is told by that one, from its store)."""
        now = self.clock()
        sent = 0
        for agent in list(self.board.agents.values()):
            if not agent.signed_in or self.board.local_seat(agent.username) is None:
                continue
            for task in await self.follow_ups.open_due(owner=agent.username, before=now):
                if task.id in self._announced_followups:
                    continue
                self._announced_followups.add(task.id)
                person = await self.people.get(task.person_id)
                data = {
                    "id": task.id,
                    "person_id": task.person_id,
                    "person": person.display_name if person else "",
                    "number": person.phones[0].e164 if person and person.phones else None,
                    "title": task.title,
                    "due_at": task.due_at,
                }
                self.hub.publish([agent.username], m.encode(m.FOLLOWUP_DUE, data))
                sent += 1
        return sent

    # -- presence ----------------------------------------------------------------------------

    async def set_presence(self, session: Session, status: Any, reason: Any) -> dict[str, Any]:
        """Available or paused, in the panel and in the PBX's queues (QueuePause)."""
        if status not in (AVAILABLE, PAUSED):
            raise ApiError(400, "bad_status", "Status must be 'available' or 'paused'.")
        reason = str(reason or "")[:60].replace("\r", " ").replace("\n", " ")
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO agent_presence (username, status, reason, updated_at)"
                " VALUES (?,?,?,?) ON CONFLICT (username) DO UPDATE SET status = excluded.status,"
                " reason = excluded.reason, updated_at = excluded.updated_at",
                (session.username, status, reason, self.clock()),
            )
        now = self.clock()
        agent = self.board.set_status(session.username, status, reason, now)
        if agent is None:
            agent = self.board.sign_in(
                session.username, session.display_name, session.role.value, session.extensions
            )
            self.board.set_status(session.username, status, reason, now)
        acw = agent.shared_after_call if agent.after_call_until is None else None
        pbx = acw[1].partition(":")[0] if acw is not None and acw[1] else ""
        if self._owned_elsewhere(pbx):
            # in after-call work the PBX's owner runs: the choice ends it there, and the
            # owner sends the queue action (its timer must not apply the old choice later)
            body = {"op": "presence", "username": session.username, "status": status,
                    "reason": reason, "at": agent.status_at}  # fmt: skip
            ended, warning = await self._after_call_on_owner(pbx, body)
            if ended or warning:
                if ended:  # as the owner's share will say in a moment
                    self.board.share_after_call(pbx, session.username, None)
                self._publish_presence(session.username)
                return {**agent.to_json(), "pbx_warning": warning}
        warning = await self._choose(session.username, session.extensions, status, reason)
        return {**agent.to_json(), "pbx_warning": warning}

    async def _choose(
        self, username: str, extensions: tuple[str, ...], status: str, reason: str
    ) -> str:
        """Apply a presence the agent chose (already on the board): to the queues now, or,
        on a call, kept as pending and applied at its end. Returns the PBX's warning."""
        if not self.aftercall.chose(username):
            # on a call: kept as pending (shown so) and applied, with the queues, at its end
            self._publish_presence(username)
            return ""
        warning = await self._queue_pause(extensions, status == PAUSED, reason)
        self._publish_presence(username)
        return warning

    async def _queue_pause(self, extensions: tuple[str, ...], paused: bool, reason: str) -> str:
        if not extensions:
            return ""
        failures = []
        for name, link in self.links.items():
            for ext in extensions:
                action = {
                    "Action": "QueuePause",
                    "Interface": self.cfg.originate.agent_channel.format(ext=ext),
                    "Paused": "true" if paused else "false",
                }
                if reason and paused:
                    action["Reason"] = reason
                try:
                    await link.send_action(action)
                except AmiError as e:
                    if "Interface not found" not in str(e):  # not a queue member: no-op
                        failures.append(f"{name}: {e}")
        if failures:
            log.warning("panel QueuePause failed: %s", "; ".join(failures))
            return "The phone system could not be updated: " + "; ".join(failures)[:300]
        return ""

    # -- state for a (re)loading tab ---------------------------------------------------------

    async def state(self, session: Session) -> dict[str, Any]:
        """``state_of`` for a tab that loads it. Clustered, the calls other instances share
        are caught up first, and the number given is the one before: the tab resumes from it,
        so the state must hold everything up to it (a message sent again is only a repeat)."""
        seq, epoch = self.hub.last_seq(session.username), self.hub.epoch
        if self.shared_board is not None:
            await self.shared_board.calls.settle()
        owned = await self._asked_of_owners(session.username)
        doc = self.state_of(session, owned)
        if self.hub.epoch == epoch:
            doc["seq"] = seq
        return doc

    def state_of(
        self, session: Session, owned: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The tab's state; ``owned``: what the owners of the PBXs this instance does not
        run keep of the agent (``_owned_state``, through the relay)."""
        agent = self.board.agents.get(session.username)
        mine = self._owned_state(session.username, None)
        for part in owned or ():
            mine["clicktocall"] += part["clicktocall"]
            mine["held"] += part["held"]
            mine["consulting"].update(part["consulting"])
            mine["spy"] = mine["spy"] or part["spy"]
        presence = agent.to_json() if agent else None
        if presence is not None and presence["spy"] is None:
            presence["spy"] = mine["spy"]
        calls = [
            # (a call another instance owns comes with the card its owner found)
            {"call": c.to_json(), "card": self._cards.get(c.key, c.card)}
            for c in self.board.calls_of(session.username)
        ]
        return {
            "me": session.to_json(),
            "presence": presence,
            "calls": calls,
            "clicktocall": mine["clicktocall"],
            "dispositions": [{"id": k, "label": v} for k, v in self.dispositions.items()],
            "after_call_seconds": self.aftercall.seconds,
            "held": mine["held"],
            "consulting": mine["consulting"],
            "seq": self.hub.last_seq(session.username),
            "epoch": self.hub.epoch,
        }

    # -- what only a PBX's owner keeps (clustered: asked of it through the relay) -------------

    def _owned_elsewhere(self, pbx: str) -> bool:
        """Whether another instance of the cluster runs ``pbx``'s link (not this one)."""
        return self.relay is not None and pbx in self.links and not self.relay.local(pbx)

    def _owned_state(self, username: str, pbx: str | None) -> dict[str, Any]:
        """What this instance, as the owner of ``pbx`` (None: of every PBX it runs), keeps of
        the agent's desk: click-to-calls in progress, calls on hold and in an attended
        transfer, a supervisor listening in."""

        def on(key: str) -> bool:
            return pbx is None or key.partition(":")[0] == pbx

        agent = self.board.agents.get(username)
        attempts = self.clicktocall.of(username)
        return {
            "clicktocall": [a.to_json() for a in attempts if pbx is None or a.pbx == pbx],
            "held": [k for k in self.controls.held_of(username) if on(k)],
            "consulting": {k: c for k, c in self.controls.consulting_of(username).items() if on(k)},
            "spy": agent.to_json()["spy"] if agent is not None else None,
        }

    async def _serve_state(self, pbx: str, body: dict[str, Any]) -> dict[str, Any]:
        """Another instance loads a tab's state: this owner's part of it."""
        username = body.get("username")
        if not isinstance(username, str) or not 0 < len(username) <= 100:
            raise ApiError(400, "bad_request", "That state request is not valid.")
        return self._owned_state(username, pbx)

    async def _asked_of_owners(self, username: str) -> list[dict[str, Any]]:
        """``_owned_state`` of the agent from the owner of each PBX this instance does not
        run; a PBX whose owner does not answer adds nothing (the tab's messages follow)."""
        pbxs = [p for p in self.links if self._owned_elsewhere(p)]
        if self.relay is None or not pbxs:
            return []
        relay = self.relay

        async def ask(pbx: str) -> dict[str, Any] | None:
            try:
                doc = await relay.call(pbx, "desk.state", {"username": username}, within=1.0)
            except (NoOwner, RelayLost, ApiError, AmiError) as e:
                log.info("panel: the state of %s lacks pbx=%s's part: %s", username, pbx, e)
                return None
            return _owned_part(doc)

        return [doc for doc in await asyncio.gather(*map(ask, pbxs)) if doc is not None]

    async def _wrapped_up(self, username: str, call_id: str) -> str:
        """The wrap-up of ``call_id`` was saved: the after-call work it started ends, here or
        on the PBX's owner. Returns a warning for the agent ('' when ended or none)."""
        if self.aftercall.wrapped_up(username, call_id):
            return ""
        pbx = call_id.partition(":")[0]
        if not self._owned_elsewhere(pbx):
            return ""
        body = {"op": "wrapup", "username": username, "call_id": call_id}
        ended, warning = await self._after_call_on_owner(pbx, body)
        if ended:  # as the owner's share will say in a moment
            self.board.share_after_call(pbx, username, None)
        return warning

    async def _after_call_on_owner(self, pbx: str, body: dict[str, Any]) -> tuple[bool, str]:
        """Ask the owner of ``pbx`` to end the agent's after-call work (``_serve_after_call``):
        (ended there, a warning for the agent)."""
        assert self.relay is not None
        timeout = next((p.action_timeout for p in self.cfg.pbx if p.name == pbx), 5.0)
        try:  # the owner may send a QueuePause per extension first (a presence chosen)
            result = await self.relay.call(pbx, "desk.aftercall", body, within=3 * timeout + 1)
        except NoOwner as e:
            log.warning("panel: after-call work of %s not ended on pbx=%s: %s",
                        body["username"], pbx, e)  # fmt: skip
            return False, AFTER_CALL_NOT_ENDED
        except (RelayLost, ApiError, AmiError) as e:
            log.warning("panel: after-call work of %s on pbx=%s not confirmed: %s",
                        body["username"], pbx, e)  # fmt: skip
            return False, AFTER_CALL_UNCONFIRMED
        if not isinstance(result, dict):
            return False, AFTER_CALL_UNCONFIRMED
        return result.get("ended") is True, str(result.get("pbx_warning") or "")[:400]

    async def _serve_after_call(self, pbx: str, body: dict[str, Any]) -> dict[str, Any]:
        """Another instance's agent ended the after-call work this owner runs: their wrap-up
        was saved (``wrapup``) or they chose a presence (``presence``), as on this instance."""
        op, username = body.get("op"), body.get("username")
        if not isinstance(username, str) or not 0 < len(username) <= 100:
            raise ApiError(400, "bad_request", "That after-call request is not valid.")
        if op == "wrapup":
            call_id = body.get("call_id")
            if not isinstance(call_id, str) or len(call_id) > 200:
                raise ApiError(400, "bad_request", "That after-call request is not valid.")
            return {"ended": self.aftercall.wrapped_up(username, call_id), "pbx_warning": ""}
        status, reason, at = body.get("status"), body.get("reason"), body.get("at")
        if op != "presence" or status not in (AVAILABLE, PAUSED) or not isinstance(reason, str):
            raise ApiError(400, "bad_request", "That after-call request is not valid.")
        if not isinstance(at, int | float) or not _is_date(float(at)):
            raise ApiError(400, "bad_request", "That after-call request is not valid.")
        agent = self.board.agents.get(username)
        if agent is None or agent.after_call_until is None:
            return {"ended": False, "pbx_warning": ""}  # over already: the choice is theirs
        reason = reason[:60]
        # the choice reaches this board with the agent's seat too; taken now, so that the
        # end of the after-call work applies it
        self.board.set_status(username, status, reason, float(at))
        warning = await self._choose(username, agent.extensions, status, reason)
        return {"ended": True, "pbx_warning": warning}

    def board_of(self, session: Session) -> dict[str, Any]:
        if not session.role.sees_everyone:
            raise ApiError(403, "forbidden", "Only supervisors see the live board.")
        snap = self.board.snapshot()
        for a in snap["agents"]:
            a["tabs"] = self.hub.connections(a["username"])
        return snap

    # -- history -----------------------------------------------------------------------------

    async def history(self, session: Session, q: Mapping[str, str]) -> dict[str, Any]:
        """Calls the user may see, newest first; filters: since, until, outcome, number (any
        format, or its last digits), missed, agent (supervisors), limit; paging: ``cursor``
        (``next_cursor`` of the previous page; ``before`` still works)."""
        where = ["1 = 1"]
        args: list[SqlParam] = []
        if not session.role.sees_everyone:
            where.append("c.id IN (SELECT call_id FROM call_users WHERE username = ?)")
            args.append(session.username)
        elif q.get("agent"):
            where.append("c.id IN (SELECT call_id FROM call_users WHERE username = ?)")
            args.append(q["agent"].strip().lower())
        for name, op in (("since", ">="), ("until", "<")):
            if q.get(name):
                where.append(f"c.started_at {op} ?")
                args.append(_time_param(q[name], name))
        if q.get("before"):
            where.append("c.started_at < ?")
            args.append(_time_param(q["before"], "before"))
        if q.get("outcome"):
            where.append("c.outcome = ?")
            args.append(q["outcome"])
        if q.get("missed") in ("1", "true"):
            where.append(f"c.outcome IN ({','.join('?' * len(MISSED))}) AND c.direction = ?")
            args += [*MISSED, "inbound"]
        if q.get("number"):
            clause, more = number_filter(q["number"], self.cfg.lookup.default_region)
            where.append(clause)
            args += more
        if q.get("cursor"):  # the same paging as /api/v1/calls: pass back next_cursor
            try:
                started, last_id = decode_cursor(q["cursor"])
            except CallRecordError:
                raise ApiError(400, "bad_cursor", "cursor: not one this list returned") from None
            where.append("(c.started_at < ? OR (c.started_at = ? AND c.id < ?))")
            args += [started, started, last_id]
        try:
            limit = max(1, min(int(q.get("limit") or 50), 200))
        except ValueError:
            raise ApiError(400, "bad_limit", "limit must be a number") from None
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT c.*, (SELECT group_concat(username) FROM call_users u"
                " WHERE u.call_id = c.id) AS users"
                f" FROM calls c WHERE {' AND '.join(where)}"
                " ORDER BY c.started_at DESC, c.id DESC LIMIT ?",
                [*args, limit + 1],
            )
        )
        more_rows = len(rows) > limit
        rows = rows[:limit]
        extras = await display_fields(self.db, rows, self.cfg.lookup.default_region)
        items = [{**_call_row(r), **extra} for r, extra in zip(rows, extras, strict=True)]
        last = items[-1] if items and more_rows else None
        return {
            "items": items,
            "next_cursor": encode_cursor(last["started_at"], last["id"]) if last else None,
            "next_before": last["started_at"] if last else None,  # older tabs' paging
        }

    async def may_access(self, session: Session, call_id: str) -> bool:
        if session.role.sees_everyone:
            return True
        for attempt in range(2):
            rows = await self.db.conn.execute_fetchall(
                "SELECT 1 FROM call_users WHERE call_id = ? AND username = ?",
                (call_id, session.username),
            )
            if rows or attempt:
                return bool(rows)
            # a call that just ended may still be on its way to call_users: an agent who
            # saves the wrap-up at once must not be told it is not their call
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), 2)
        return False

    async def call_for(self, session: Session, call_id: str) -> dict[str, Any]:
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT c.*, NULL AS users FROM calls c WHERE c.id = ?", (call_id,)
            )
        )
        if not rows:
            raise ApiError(404, "not_found", "No such call.")
        if not await self.may_access(session, call_id):
            raise ApiError(403, "forbidden", "This call is not in your history.")
        return _call_row(rows[0])

    # -- wrap-up -----------------------------------------------------------------------------

    async def wrap_up(self, session: Session, call_id: str, body: Any) -> dict[str, Any]:
        """Notes, disposition and an optional follow-up: on the call log, on the person's
        timeline, and handed to the CRM write-back."""
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "Expected a JSON object.")
        notes = body.get("notes") or ""
        disposition = body.get("disposition") or ""
        if not isinstance(notes, str) or len(notes) > 10_000:
            raise ApiError(400, "bad_notes", "Notes must be text of at most 10,000 characters.")
        if disposition and disposition not in self.dispositions:
            raise ApiError(
                400,
                "bad_disposition",
                f"Unknown disposition; expected one of: {', '.join(self.dispositions)}.",
            )
        follow_up_at = _follow_up_time(body.get("follow_up_at"))
        call = await self.call_for(session, call_id)
        if follow_up_at is not None and call.get("person_id") is None:
            raise ApiError(
                409,
                "no_person",
                "Save the caller as a lead or contact first, then schedule the follow-up.",
            )
        # imported lazily: the call log is the store helper's module
        from gateway.store.calllog import CallLog

        await CallLog(self.db).annotate(call_id, notes=notes, disposition=disposition)
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM pending_wrapups WHERE username = ? AND call_id = ?",
                (session.username, call_id),
            )
        warning = await self._wrapped_up(session.username, call_id)  # ends its after-call work
        person_id = call.get("person_id")
        label = self.dispositions.get(disposition, "")
        task = None
        if person_id is not None:
            summary = f"Call {call_id.split(':', 1)[-1]}" + (f": {label}" if label else "")
            if notes or label:
                await self.activities.add(  # call_id: seen only by who may see the call
                    int(person_id),
                    "note",
                    summary,
                    body=notes,
                    author=session.username,
                    call_id=call_id,
                )
            if follow_up_at is not None:
                title = str(body.get("follow_up_title") or f"Call back ({label or 'follow-up'})")
                task = await self.follow_ups.add(
                    int(person_id), follow_up_at, title[:200], owner=session.username
                )
        self.bus.publish(
            WrapUpSaved(
                call_id=call_id,
                agent=session.username,
                at=self.clock(),
                person_id=int(person_id) if person_id is not None else None,
                disposition=disposition,
                outcome=str(call.get("outcome") or ""),
            )
        )
        if self.writeback is not None:
            record = {**call, "notes": notes, "disposition": disposition, "agent": session.username}
            try:
                await self.writeback(record)
            except Exception:  # the CRM may be down: the outbox retries, the agent goes on
                log.exception("panel: write-back of wrap-up failed call=%s", call_id)
        return {
            "call_id": call_id,
            "notes": notes,
            "disposition": disposition,
            "follow_up": task.to_dict() if task else None,
            "pbx_warning": warning,
        }

    async def create_person(self, session: Session, body: Any) -> dict[str, Any]:
        """The pop-up's one-click "create lead / contact" for an unknown number."""
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "Expected a JSON object.")
        kind = body.get("kind")
        if kind not in ("lead", "contact"):
            raise ApiError(400, "bad_kind", "kind must be 'lead' or 'contact'.")
        data = {
            k: body[k]
            for k in ("first_name", "last_name", "name", "company", "email", "phone", "country")
            if body.get(k)
        }
        data.setdefault("owner", session.username)
        if kind == "lead":
            data["status"] = "new"
        try:
            result = await self.people.create(
                PersonType(kind), data, source="inbound_call" if kind == "lead" else "api"
            )
        except FieldError as e:
            raise ApiError(400, "bad_field", str(e)) from e
        person = result.person
        return {"outcome": result.outcome, "person": person.to_dict()}

    # -- recordings --------------------------------------------------------------------------

    async def recording_path(self, session: Session, call_id: str, index: int) -> Path:
        """The file of a call's recording, if this user may hear it and it lies inside the
        recordings folder (a name with ``..`` or an absolute path elsewhere is refused)."""
        call = await self.call_for(session, call_id)
        names = call.get("recordings") or []
        if not 0 <= index < len(names):
            raise ApiError(404, "not_found", "This call has no such recording.")
        return safe_recording_path(self.cfg.recordings.directory, names[index])

    # -- click-to-call -----------------------------------------------------------------------

    async def originate(self, session: Session, number: Any) -> Attempt:
        return await self.clicktocall.start(session.username, session.extensions, number)


def safe_recording_path(directory: str, name: Any) -> Path:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ApiError(404, "not_found", "Recording not found.")
    root = Path(directory).resolve()
    candidate = Path(name)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ApiError(404, "not_found", "Recording file not found.") from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        log.warning("panel refused recording outside %s: %r", root, name)
        raise ApiError(404, "not_found", "Recording file not found.")
    return resolved


def card_to_json(card: CallerCard, region: str = "") -> dict[str, Any]:
    """The card as the panel gets it; ``number_display`` is how a person of ``region`` reads
    the number (national for their own country, international otherwise)."""
    d = dataclasses.asdict(card)
    d["number_display"] = display_format(card.number, region) if card.number else ""
    d["kind"] = card.kind.value
    d["known"] = card.known
    d["do_not_call"] = card.extra.get("do_not_call") == "1"
    return d


def _call_row(r: Any) -> dict[str, Any]:
    keys = r.keys()
    d = {k: r[k] for k in keys if k not in ("caller_e164", "other_e164", "saved_at", "users")}
    for f in ("agents_rang", "agents_answered", "transfers", "recordings", "warnings"):
        try:
            d[f] = json.loads(d.get(f) or "[]")
        except ValueError:
            d[f] = []
    d["users"] = (r["users"] or "").split(",") if "users" in keys and r["users"] else []
    d["number"] = d.get("dialed") if d.get("direction") == "outbound" else d.get("caller")
    d["click_to_call"] = bool(d.get("click_to_call"))
    return d


def _time_param(value: str, name: str) -> float:
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if not _is_date(f):
            raise ApiError(400, "bad_time", f"{name}: expected a date (YYYY-MM-DD) or epoch")
        return f
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "bad_time", f"{name}: expected a date (YYYY-MM-DD) or epoch") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _follow_up_time(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        # 1e999 parses as Infinity: stored, it made every card of the person invalid JSON
        if not _is_date(float(value)):
            raise ApiError(400, "bad_time", "follow_up_at: expected a date or epoch seconds")
        return float(value)
    if isinstance(value, str):
        return _time_param(value, "follow_up_at")
    raise ApiError(400, "bad_time", "follow_up_at: expected a date or epoch seconds")


def _owned_part(doc: Any) -> dict[str, Any] | None:
    """An owner's ``_owned_state`` as it came through Redis, or None if it is not one."""
    if not isinstance(doc, dict):
        return None
    attempts, held = doc.get("clicktocall"), doc.get("held")
    consulting, spy = doc.get("consulting"), doc.get("spy")
    if not (isinstance(attempts, list) and all(isinstance(a, dict) for a in attempts)):
        return None
    if not (isinstance(held, list) and all(isinstance(k, str) for k in held)):
        return None
    if not isinstance(consulting, dict) or not (spy is None or isinstance(spy, dict)):
        return None
    return {"clicktocall": attempts, "held": held, "consulting": consulting, "spy": spy}


def _is_date(f: float) -> bool:
    """Finite epoch seconds before the year 3000 (not NaN, not Infinity)."""
    return 0 <= f < 32_503_680_000
