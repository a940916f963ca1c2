"""AgentHub: the agents' websockets, one bounded queue per connection drained by a writer task.

Theory of operation (the Home Assistant ``websocket_api`` shape):

* Each agent (a signed-in user name) has a *channel*: a sequence counter and a bounded buffer of
  the last ``buffer_size`` messages sent to them. Every browser tab of that agent is a
  *connection* on the channel. Publishing gives the message the channel's next number, keeps it
  in the buffer and appends it to each connection's pending queue: it never awaits, so the bus
  handler that publishes is never held up by a slow browser.
* A writer task drains a connection's queue onto the socket; it is started when a message is
  queued and ends once the queue is empty, so an idle tab costs no task (the hub holds
  thousands of sockets that wait most of the day). A connection whose queue grows past
  ``max_pending`` is a client that cannot keep up: it is closed (code 4008) rather than
  letting memory grow; the browser reconnects and catches up from the buffer.
* A tab that reconnects sends ``since=<last seq seen>&epoch=<server epoch>``: it gets every
  buffered message after ``since``, or one ``refresh`` message when the gap is no longer
  buffered or the server restarted (new epoch); it then reloads its state over HTTP.
* The handshake is checked before the upgrade: the ``Origin`` must be this server (a page on
  another site cannot open a socket with the agent's cookie), and the authenticator (the
  session cookie) must name a user. Heartbeat pings drop dead connections.
* Clustered (``fanout``: gateway/cluster/fanout.py), ``publish`` hands the message to the
  fanout, which numbers and keeps it in Redis and brings it back to every instance's hub
  through :meth:`AgentHub.deliver`; a reconnecting tab is answered from Redis's buffer, so it
  may come back to any instance. Without one, nothing of this runs.
* The hub pings each socket itself, every ``heartbeat`` s on a clock of its own that starts at
  a random point: aiohttp's heartbeat rounds every ping time up to a whole second, so 1,000
  sockets that connected together were all pinged in the same loop pass, and no pop-up went
  out until every ping had. A socket that sends nothing back within ``heartbeat / 2`` of a
  ping is dead: it is aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from gateway.push.messages import HELLO, REFRESH, Encoded, control

log = logging.getLogger("gateway.push")

Authenticator = Callable[[web.Request], Awaitable[str | None]]
ConnectionListener = Callable[[str, int], None]  # (agent, connections now)

SLOW_CLIENT_CLOSE = 4008  # application close code: "you fell behind, reconnect"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One agent's channel as the shared store has it: the cluster's epoch, the last number,
    and the messages after ``since`` (None: that gap is no longer kept)."""

    epoch: str
    seq: int
    missed: Sequence[str] | None


class Fanout(Protocol):
    """Where a clustered hub's messages go (gateway/cluster/fanout.py): numbered and kept in a
    shared store, then handed back to every instance's hub through :meth:`AgentHub.deliver`.
    Without one the hub numbers, keeps and delivers everything itself."""

    def publish(self, agents: Iterable[str], message: Encoded, replay: bool) -> None: ...

    async def snapshot(self, agent: str, since: int) -> Snapshot | None:
        """None: the store cannot be reached now."""


@dataclass(slots=True, eq=False)
class _Connection:
    agent: str
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    request: web.Request | None = None  # the handshake, to check its session again later
    # a list, not a deque: nearly always empty, and an empty deque holds a 0.5 KiB block
    # (x 10,000 sockets); it never holds more than ``max_pending``
    pending: list[str] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None  # draining ``pending``, while there is any
    closing: bool = False
    slow: bool = False
    heard: float = 0.0  # loop time of the last frame from the browser
    pinged: float = 0.0  # loop time of the last ping sent
    beat: asyncio.TimerHandle | None = None  # the next ping, or the check of its answer
    # clustered: (seq, text) delivered while the handshake reads the shared store
    held: list[tuple[int, str]] | None = None
    floor: int = 0  # clustered: the number the handshake's replay went up to


@dataclass(slots=True)
class _Channel:
    seq: int = 0
    buffer: deque[tuple[int, str]] = field(default_factory=deque)
    connections: set[_Connection] = field(default_factory=set)


class AgentHub:
    """Fans events out to every tab of the agents they concern; replays what a tab missed."""

    def __init__(
        self,
        authenticate: Authenticator,
        *,
        buffer_size: int = 256,
        max_pending: int = 512,
        heartbeat: float = 30.0,
        allowed_origins: Iterable[str] = (),
        fanout: Fanout | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.fanout = fanout
        self.buffer_size = buffer_size
        self.max_pending = max_pending
        self.heartbeat = heartbeat
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.epoch = secrets.token_hex(6)  # a restarted server numbers from 0 again
        self.listeners: list[ConnectionListener] = []
        self.slow_disconnects = 0
        self.messages_sent = 0
        self._channels: dict[str, _Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._jitter = random.Random()

    # -- publishing (synchronous: safe to call from a bus handler) ----------------------------

    def publish(self, agents: Iterable[str], message: Encoded, *, replay: bool = True) -> None:
        """Number ``message`` for each agent, buffer it and queue it on each of their tabs.

        ``replay=False``: a latest-state message (the wallboard) goes to the open tabs only,
        without a number and never into the buffer, so it cannot push out what a reconnecting
        tab must get back; such a tab asks for the current state instead."""
        if self.fanout is not None:  # clustered: numbered in Redis, delivered by deliver()
            self.fanout.publish(agents, message, replay)
            return
        if not replay:
            text = "{" + message.tail
            for agent in agents:
                channel = self._channels.get(agent)
                for conn in tuple(channel.connections) if channel else ():
                    self._enqueue(conn, text)
            return
        for agent in agents:
            channel = self._channels.get(agent)
            if channel is None:
                channel = self._channels[agent] = _Channel()
            channel.seq += 1
            text = message.with_seq(channel.seq)
            channel.buffer.append((channel.seq, text))
            if len(channel.buffer) > self.buffer_size:
                channel.buffer.popleft()
            for conn in tuple(channel.connections):
                self._enqueue(conn, text)

    def deliver(self, agent: str, seq: int, text: str) -> None:
        """Clustered: queue a message numbered by the fanout (``seq`` 0: not numbered) on this
        instance's tabs of ``agent``; a number already delivered here is dropped."""
        channel = self._channels.get(agent)
        if channel is None:
            channel = self._channels[agent] = _Channel()
        if seq:
            if seq <= channel.seq:
                return
            channel.seq = seq
        for conn in tuple(channel.connections):
            if conn.held is not None:
                conn.held.append((seq, text))
            elif seq and seq <= conn.floor:
                continue  # sent already by the handshake's replay (pub/sub was behind)
            else:
                self._enqueue(conn, text)

    def known_seq(self, agent: str, seq: int) -> None:
        """Clustered: the last number of ``agent`` as the shared store has it (at start)."""
        channel = self._channels.get(agent)
        if channel is None:
            channel = self._channels[agent] = _Channel()
        channel.seq = max(channel.seq, seq)

    def new_epoch(self, epoch: str) -> None:
        """Clustered: the shared store lost its numbers (a Redis without its data): numbering
        starts again under a new epoch, and every open tab reloads its state."""
        self.epoch = epoch
        for agent, channel in self._channels.items():
            channel.seq = 0
            channel.buffer.clear()
            for conn in tuple(channel.connections):
                self._enqueue(conn, control(HELLO, 0, {"epoch": epoch}))
                log.info("push agent=%s: new cluster epoch, tab reloads", agent)

    def agents_with_tabs(self) -> list[tuple[str, int]]:
        """(agent, last number delivered here) of every agent with a tab open here."""
        return [(a, c.seq) for a, c in self._channels.items() if c.connections]

    def last_seq(self, agent: str) -> int:
        channel = self._channels.get(agent)
        return channel.seq if channel else 0

    def connections(self, agent: str | None = None) -> int:
        if agent is not None:
            channel = self._channels.get(agent)
            return len(channel.connections) if channel else 0
        return sum(len(c.connections) for c in self._channels.values())

    def buffered(self) -> tuple[int, int]:
        """Messages kept for replay over every agent, and their characters: the memory that
        grows with traffic, up to ``buffer_size`` messages per agent, then stays."""
        texts = [text for c in self._channels.values() for _, text in c.buffer]
        return len(texts), sum(map(len, texts))

    def online(self) -> list[str]:
        """Agents with at least one tab open."""
        return [a for a, c in self._channels.items() if c.connections]

    def _enqueue(self, conn: _Connection, text: str) -> None:
        if conn.closing:
            return
        if len(conn.pending) >= self.max_pending:
            self.slow_disconnects += 1
            log.warning(
                "push agent=%s disconnected: %d messages pending (slow client)",
                conn.agent,
                len(conn.pending),
            )
            conn.closing = conn.slow = True
            conn.pending.clear()
            task = asyncio.get_running_loop().create_task(self._drop_slow(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        conn.pending.append(text)
        self._kick(conn)

    def _kick(self, conn: _Connection) -> None:
        if conn.writer is None and not conn.closing:
            conn.writer = asyncio.get_running_loop().create_task(self._write(conn))

    # -- the websocket route -----------------------------------------------------------------

    def origin_allowed(self, request: web.Request) -> bool:
        """Only pages served by this gateway (or configured origins) may open a socket."""
        origin = request.headers.get("Origin")
        if not origin:
            return False
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == request.host.lower()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /panel/ws?since=N&epoch=E``: checks origin and session, then streams."""
        if not self.origin_allowed(request):
            log.warning("push refused cross-origin socket origin=%r", request.headers.get("Origin"))
            raise web.HTTPForbidden(text="cross-origin websocket refused")
        agent = await self.authenticate(request)
        if agent is None:
            raise web.HTTPUnauthorized(text="sign in first")
        if self._closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        # pings are the hub's (see the module docstring), so are the browser's pongs
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=64 * 1024)
        await ws.prepare(request)
        conn = _Connection(agent, ws, request.transport, request)
        loop = asyncio.get_running_loop()
        conn.heard = loop.time()
        if self.heartbeat > 0:
            first = self.heartbeat * (0.5 + 0.5 * self._jitter.random())
            conn.beat = loop.call_at(conn.heard + first, self._ping, conn)
        channel = self._channels.get(agent)
        if channel is None:
            channel = self._channels[agent] = _Channel()
        if self.fanout is not None:
            # clustered: the tab joins first and holds what arrives while the shared store is
            # read; what the store had is sent, then the held messages it did not have
            conn.held = []
            channel.connections.add(conn)
            try:
                texts, last = await self._catch_up_shared(agent, channel, request.query)
            except BaseException:
                channel.connections.discard(conn)
                conn.closing = True
                if conn.beat is not None:
                    conn.beat.cancel()
                raise
            held, conn.held = conn.held, None
            conn.floor = last
            conn.pending.extend(texts)
            conn.pending.extend(t for s, t in held if s == 0 or s > last)
            self._kick(conn)
        else:
            # greeting and replay are queued before the connection joins the channel, with no
            # await in between: nothing published meanwhile can be lost or sent twice
            conn.pending.extend(self._catch_up(channel, request.query))
            self._kick(conn)
            channel.connections.add(conn)
        self._notify(agent, len(channel.connections))
        try:
            async for msg in ws:
                conn.heard = loop.time()
                if msg.type is WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type is WSMsgType.TEXT and msg.data == '{"type":"ping"}':
                    self._enqueue(conn, control("pong", channel.seq))
                # everything else a client sends is ignored: actions go through HTTP routes
        finally:
            if conn.beat is not None:
                conn.beat.cancel()
                conn.beat = None
            channel.connections.discard(conn)
            conn.closing = True
            if (writer := conn.writer) is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            self._notify(agent, len(channel.connections))
        return ws

    def _catch_up(self, channel: _Channel, query: object) -> list[str]:
        get = getattr(query, "get", lambda _k, _d=None: None)
        hello = control(HELLO, channel.seq, {"epoch": self.epoch})
        since_raw, epoch = get("since"), get("epoch")
        if since_raw is None:
            return [hello]  # a fresh tab loads its state over HTTP after the hello
        try:
            since = int(since_raw)
        except ValueError:
            since = -1
        if epoch != self.epoch or since < 0 or since > channel.seq:
            return [hello, control(REFRESH, channel.seq, {"reason": "server restarted"})]
        if since == channel.seq:
            return [hello]
        oldest = channel.buffer[0][0] if channel.buffer else channel.seq + 1
        if since + 1 < oldest:
            return [hello, control(REFRESH, channel.seq, {"reason": "too far behind"})]
        return [hello, *(text for seq, text in channel.buffer if seq > since)]

    async def _catch_up_shared(
        self, agent: str, channel: _Channel, query: object
    ) -> tuple[list[str], int]:
        """:meth:`_catch_up` from the fanout's shared store; also the last number it had (the
        messages held meanwhile up to it are in the store's answer already)."""
        get = getattr(query, "get", lambda _k, _d=None: None)
        since_raw, epoch = get("since"), get("epoch")
        try:
            since = int(since_raw) if since_raw is not None else 0
        except ValueError:
            since = -1
        assert self.fanout is not None
        snap = await self.fanout.snapshot(agent, max(since, 0))
        if snap is None:  # the store is away: greet with what this instance knows
            seq = channel.seq
            hello = control(HELLO, seq, {"epoch": self.epoch})
            if since_raw is None:
                return [hello], seq
            return [hello, control(REFRESH, seq, {"reason": "cluster store away"})], seq
        if snap.epoch != self.epoch:
            self.new_epoch(snap.epoch)
        seq = snap.seq
        hello = control(HELLO, seq, {"epoch": self.epoch})
        if since_raw is None:
            return [hello], seq
        if epoch != self.epoch or since < 0 or since > seq:
            return [hello, control(REFRESH, seq, {"reason": "server restarted"})], seq
        if snap.missed is None:
            return [hello, control(REFRESH, seq, {"reason": "too far behind"})], seq
        return [hello, *snap.missed], seq

    async def _write(self, conn: _Connection) -> None:
        ws = conn.ws
        try:
            # what is queued while a send awaits the socket is sent by this same loop; the
            # check that ends it and the reset below have no await between them, so nothing
            # queued can be left without a writer
            while conn.pending and not conn.closing:
                await ws.send_str(conn.pending.pop(0))
                self.messages_sent += 1
        except (ConnectionError, RuntimeError) as e:
            conn.closing = True  # no writer again: the handler's read loop ends on its own
            log.info("push agent=%s socket gone: %s", conn.agent, e)
        finally:
            conn.writer = None

    def _ping(self, conn: _Connection) -> None:
        conn.beat = None
        if conn.closing:
            return
        loop = asyncio.get_running_loop()
        conn.pinged = loop.time()
        task = loop.create_task(self._send_ping(conn.ws))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        conn.beat = loop.call_at(conn.pinged + self.heartbeat / 2, self._check_pong, conn)

    async def _send_ping(self, ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.ping()

    def _check_pong(self, conn: _Connection) -> None:
        conn.beat = None
        if conn.closing:
            return
        if conn.heard < conn.pinged:
            log.info("push agent=%s socket dead: no answer to a ping", conn.agent)
            conn.closing = True
            if conn.transport is not None:
                conn.transport.abort()  # type: ignore[attr-defined]
            return
        loop = asyncio.get_running_loop()
        conn.beat = loop.call_at(conn.pinged + self.heartbeat, self._ping, conn)

    async def _drop_slow(self, conn: _Connection) -> None:
        """Close a connection that fell behind; abort it if even the close frame cannot go
        out (its writer may be stuck waiting for the socket to drain)."""
        try:
            await asyncio.wait_for(
                conn.ws.close(code=SLOW_CLIENT_CLOSE, message=b"too slow, reconnect"), 2.0
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            if conn.transport is not None:
                conn.transport.abort()  # type: ignore[attr-defined]

    def _notify(self, agent: str, count: int) -> None:
        for listener in self.listeners:
            try:
                listener(agent, count)
            except Exception:
                log.exception("push connection listener failed agent=%s", agent)

    async def disconnect(self, agent: str, code: int = 4001) -> int:
        """Close every tab of ``agent``; returns how many. 4001 tells the tab it was signed
        out (it goes to the login page); any other code makes it reconnect and catch up."""
        channel = self._channels.get(agent)
        conns = list(channel.connections) if channel else []
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=code, message=b"signed out" if code == 4001 else b"")
        return len(conns)

    async def revalidate(self, agent: str | None = None) -> int:
        """Run the authenticator again on the handshake of every open tab (of ``agent``, or
        everyone's) and close with 4001 each one it no longer accepts: a session that ended
        (signed out elsewhere, user disabled or deleted, password changed) stops receiving
        calls. Returns how many were closed."""
        channels = [self._channels.get(agent)] if agent else list(self._channels.values())
        closed = 0
        for channel in channels:
            for conn in list(channel.connections) if channel else []:
                if conn.closing or conn.request is None:
                    continue
                if await self.authenticate(conn.request) == conn.agent:
                    continue
                closed += 1
                log.info("push agent=%s socket closed: session ended", conn.agent)
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=4001, message=b"signed out")
        return closed

    async def close(self) -> None:
        """Close every socket (server shutdown); browsers reconnect to the next server."""
        self._closing = True
        conns = [c for ch in self._channels.values() for c in ch.connections]
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutting down")
