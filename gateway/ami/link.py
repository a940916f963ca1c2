"""AmiLink: one resilient AMI connection per PBX, publishing what it sees on the bus.

panoramisk carries the wire: its ``AMIProtocol`` owns the transport and matches responses to
``Action`` futures by ActionID. Three of its weak spots are replaced here (see FIELD-NOTES):
events take a lean path (our ``FrameParser`` with an event filter, then straight onto the bus,
no per-event ``CaseInsensitiveDict``); reconnects back off exponentially with a cap instead of
a fixed 2 s; and the keepalive ``Ping`` is actually checked, so a silent half-open connection
is declared dead within two ping intervals. Pending actions fail with ``AmiNotConnected``
when the link drops instead of hanging forever (``AmiConnectionLost`` when the action had
been sent, so the PBX may have carried it out), and every action has a timeout.

Lifecycle of one connection: connect → login (plain or MD5 challenge) → events on →
resync (CoreShowChannels, QueueStatus) published as ``ResyncSnapshot`` → watch (ping) →
on any failure: ``DOWN``, wait the backoff, start again. A session that stayed up for a
ping interval starts the next backoff from ``reconnect.initial`` again: one drop after hours
of service is not the continuation of an old outage.

With ``record_to`` every byte read is written through to the file at once (no userspace
buffer), so a capture copied from a running gateway is complete up to the last read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from gateway.ami.events import AmiEvent, LinkStateChanged, LinkStatus, PbxRestarted, ResyncSnapshot
from gateway.ami.frames import AmiFrame, EventFilter, FrameParser
from gateway.bus import Bus
from gateway.config import PbxSettings
from gateway.errors import AmiActionTimeout, AmiAuthError, AmiError, AmiNotConnected
from gateway.metrics import AMI_ACTION_SECONDS

log = logging.getLogger("gateway.ami")


class AmiConnectionLost(AmiNotConnected):
    """The link dropped after the action was sent: the PBX may have carried it out.

    Callers that must not act twice (an Originate) reconcile with what the PBX shows once
    the link is back (``AmiLink.wait_ready``) instead of assuming nothing happened.
    """


# Events the link itself needs whatever the filter says.
LINK_EVENTS = frozenset({"FullyBooted", "Shutdown", "Reload"})


class _LinkProtocol(AMIProtocol):
    """panoramisk's protocol with our parser in ``data_received``."""

    def __init__(self, link: AmiLink) -> None:
        super().__init__()
        self.link = link
        self.version: str | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.factory = self.link  # panoramisk reads forgetable_actions/awaiting_actions here
        self.encoding = "utf-8"
        self.parser = FrameParser(drop=self.link.event_filter)

    def data_received(self, data: bytes) -> None:
        link = self.link
        if link.lease_check is not None and not link.lease_check():
            # a cluster instance whose lease may have passed to another (this process was
            # frozen past its renewal): what it reads now is the new owner's to log
            link.lease_lapsed(self.transport)
            return
        link.bytes_received(data)
        frames = self.parser.feed(data)
        if self.parser.errors:
            link.parse_errors(self.parser.errors)
            self.parser.errors.clear()
        if self.version is None and self.parser.banner:
            self.version = self.parser.banner.partition("/")[2]
            link.banner = self.parser.banner
        responses = self.responses
        for frame in frames:
            aid = frame.get("ActionID")
            if aid is not None and aid in responses:
                try:
                    self.handle_message(Message(frame))
                except Exception:  # a malformed answer must not kill the read path
                    log.exception("pbx=%s bad answer to action %r", link.name, aid)
            if "Event" in frame:
                link.event_received(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.link.connection_lost(exc)


@dataclass(slots=True)
class _PendingSnapshot:
    """A CoreShowChannels answer being collected from the read path."""

    action_id: str
    reconnect: bool
    queues: list[AmiFrame]
    channels: list[AmiFrame] = field(default_factory=list)


@dataclass(slots=True)
class LinkHealth:
    """What ``/health`` shows for one PBX."""

    name: str
    host: str
    port: int
    status: str
    connected: bool
    logged_in: bool
    since: float | None
    last_event_age: float | None
    reconnects: int
    last_error: str | None
    banner: str | None
    parse_errors: int


class AmiLink:
    """Keeps one PBX connected and logged in, forever, until ``stop()``."""

    # read by panoramisk's AMIProtocol.close(): nothing is re-sent after a reconnect, because
    # a click-to-call re-sent blindly could ring a customer twice
    forgetable_actions: tuple[str, ...] = ("ping", "login")

    def __init__(
        self,
        settings: PbxSettings,
        bus: Bus,
        *,
        event_filter: EventFilter | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.bus = bus
        self.event_filter = event_filter
        self.clock = clock
        self.rng = rng or random.Random()
        self.status = LinkStatus.DOWN
        self.since: float | None = None
        self.last_rx: float | None = None
        self.last_event_at: float | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        self.banner: str | None = None
        self.parse_error_count = 0
        self.events_received = 0
        self.awaiting_actions: list[Action] = []  # panoramisk appends here; we never resend
        self._protocol: _LinkProtocol | None = None
        self._lost: asyncio.Future[Exception | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._record: BinaryIO | None = None
        self._uptime: tuple[float, float] | None = None  # (Uptime seconds, seen at)
        self._connected_once = False
        self._resyncs = 0
        self._snapshot: _PendingSnapshot | None = None
        self._ready = asyncio.Event()  # set while logged in with the resync snapshot published
        self._ready_at: float | None = None
        # in a cluster: False once this instance's lease on the PBX may have lapsed; nothing
        # read after that reaches the bus (gateway/cluster/owner.py)
        self.lease_check: Callable[[], bool] | None = None
        self._lease_lapses = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and stay connected until ``stop()``; a stopped link may start again (an
        instance of a cluster that takes the PBX over a second time)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._lease_lapses = 0
        if self.settings.record_to:
            # unbuffered: each read goes to the file as it arrives, never sits in a buffer
            self._record = open(self.settings.record_to, "ab", buffering=0)  # noqa: SIM115
        self._task = asyncio.create_task(self._run(), name=f"ami-link-{self.name}")

    async def stop(self, *, logoff: bool = True) -> None:
        """Disconnect. ``logoff=False`` closes the socket at once, without waiting up to a
        second for the PBX to acknowledge a Logoff (a cluster instance whose lease is running
        out must stop reading now)."""
        self._stopping = True
        if logoff and self._protocol is not None and not self._protocol.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._send({"Action": "Logoff"}), 1.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close_transport()
        self._set_status(LinkStatus.DOWN, "stopped")
        if self._record is not None:
            self._record.close()
            self._record = None

    async def _run(self) -> None:
        s = self.settings
        delay = s.reconnect.initial
        while not self._stopping:
            self._set_status(LinkStatus.CONNECTING)
            self._ready_at = None
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except AmiAuthError as e:
                self._fail(f"login refused: {e}")
            except (TimeoutError, OSError, AmiError, ConnectionError) as e:
                self._fail(_describe(e))
            except Exception as e:  # never let the supervisor die
                log.exception("pbx=%s unexpected link error", self.name)
                self._fail(_describe(e))
            finally:
                self._close_transport()
            if self._stopping:
                break
            if self._ready_at is not None and self.clock() - self._ready_at >= s.ping_interval:
                delay = s.reconnect.initial  # it stayed up: this is a new incident
            self._set_status(LinkStatus.DOWN, self.last_error or "")
            wait = delay * (0.8 + 0.4 * self.rng.random())  # jitter: PBX restarts hit everyone
            log.info("pbx=%s reconnect_in=%.2fs", self.name, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, s.reconnect.maximum)
            self.reconnects += 1

    async def _session(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._snapshot = None
        # asyncio.timeout, not wait_for: Python 3.11's wait_for returns a connection made just
        # as stop() cancels (the cancel is lost and the link carries on logging in)
        async with asyncio.timeout(s.connect_timeout):
            _, protocol = await loop.create_connection(lambda: _LinkProtocol(self), s.host, s.port)
        self._protocol = protocol
        self._set_status(LinkStatus.CONNECTED)
        await self._login()
        self._set_status(LinkStatus.READY)
        reconnect = self._connected_once
        self._connected_once = True
        await self._resync(reconnect)
        self._ready_at = self.clock()
        self._ready.set()
        await self._watch()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the link is logged in and its resync snapshot has been published
        (components above have rebuilt their picture); False if that takes over ``timeout``."""
        if self._ready.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    async def _login(self) -> None:
        s = self.settings
        if s.auth == "md5":
            challenge = await self._send({"Action": "Challenge", "AuthType": "MD5"})
            if not _ok(challenge) or not challenge.get("Challenge"):
                raise AmiAuthError(challenge.get("Message") or "challenge refused")
            key = hashlib.md5((challenge["Challenge"] + s.secret).encode()).hexdigest()
            resp = await self._send(
                {"Action": "Login", "AuthType": "MD5", "Username": s.username, "Key": key}
            )
        else:
            resp = await self._send(
                {"Action": "Login", "Username": s.username, "Secret": s.secret, "Events": "on"}
            )
        if not _ok(resp):
            raise AmiAuthError(resp.get("Message") or "authentication failed")
        if s.auth == "md5":
            await self._send({"Action": "Events", "EventMask": "on"})

    async def _resync(self, reconnect: bool) -> None:
        """Read the live picture so components above can rebuild state after a gap.

        The snapshot is published from the read path the moment its last frame arrives
        (``event_received``), so it takes its place in the event order: an event that follows
        it on the wire reaches the tracker after it, never before (a snapshot applied late
        would resurrect a call whose Hangup was already seen).
        """
        queues: list[AmiFrame] = []
        if self.settings.queues:
            try:
                queues = _as_list(await self.send_action({"Action": "QueueStatus"}))
            except AmiError as e:  # app_queue not loaded: not fatal
                log.warning("pbx=%s QueueStatus failed: %s", self.name, e)
        self._resyncs += 1
        pending = _PendingSnapshot(
            action_id=f"centralita-resync-{self._resyncs}",
            reconnect=reconnect,
            queues=[
                f for f in queues if f.get("Event") in ("QueueParams", "QueueMember", "QueueEntry")
            ],
        )
        self._snapshot = pending
        await self.send_action({"Action": "CoreShowChannels", "ActionID": pending.action_id})

    async def _watch(self) -> None:
        """Ping every interval; a ping unanswered for a whole interval means the link is dead."""
        assert self._lost is not None
        interval = self.settings.ping_interval
        while True:
            done, _ = await asyncio.wait({self._lost}, timeout=interval)
            if done:
                exc = self._lost.result()
                raise ConnectionError(f"connection lost: {_describe(exc) if exc else 'closed'}")
            try:
                await self.send_action({"Action": "Ping"}, timeout=interval)
            except AmiActionTimeout as e:
                raise ConnectionError(
                    f"no answer to Ping within {interval:g}s: connection presumed dead"
                ) from e

    # -- actions -----------------------------------------------------------------------------

    async def send_action(
        self, action: dict[str, Any], *, timeout: float | None = None, as_list: bool | None = None
    ) -> Any:
        """Send an action and wait for its answer (a list of frames for event-list actions).

        Raises AmiNotConnected when the link is down, AmiActionTimeout when the PBX does not
        answer in time, AmiError when it answers ``Response: Error``.
        """
        if self.status not in (LinkStatus.READY, LinkStatus.CONNECTED):
            raise AmiNotConnected(f"pbx {self.name!r} is not connected")
        result = await self._send(action, timeout=timeout, as_list=as_list)
        first = result[0] if isinstance(result, list) else result
        if first.get("Response") == "Error":
            raise AmiError(f"{action.get('Action')}: {first.get('Message', 'error')}")
        return result

    async def _send(
        self, action: dict[str, Any], *, timeout: float | None = None, as_list: bool | None = None
    ) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            raise AmiNotConnected(f"pbx {self.name!r} is not connected")
        for key, value in action.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                if "\r" in str(v) or "\n" in str(v) or "\r" in key or "\n" in key:
                    # a newline would let a value smuggle headers (or a whole action) in
                    raise AmiError(f"refusing action {action.get('Action')!r}: newline in {key}")
        act = Action(dict(action), as_list=as_list)
        started = time.perf_counter()
        try:
            return await self._answer_to(act, protocol, timeout, as_list)
        finally:
            AMI_ACTION_SECONDS.labels(self.name, str(action.get("Action", ""))).observe(
                time.perf_counter() - started
            )

    async def _answer_to(
        self, act: Action, protocol: _LinkProtocol, timeout: float | None, as_list: bool | None
    ) -> Any:
        name = act.get("Action", "")
        future = protocol.send(act, as_list=as_list)
        lost = self._lost
        wait_for = timeout if timeout is not None else self.settings.action_timeout
        waiters: set[asyncio.Future[Any]] = {future}
        if lost is not None:
            waiters.add(lost)
        done, _ = await asyncio.wait(waiters, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            result = future.result()
            return _plain(result)
        protocol.responses.pop(act.id, None)
        if not future.done():
            future.cancel()
        if lost is not None and lost in done:
            raise AmiConnectionLost(f"pbx {self.name!r}: connection lost during {name}")
        raise AmiActionTimeout(f"{name}: no answer within {wait_for:g}s")

    # -- callbacks from the protocol (synchronous: they run in the read path) -----------------

    def bytes_received(self, data: bytes) -> None:
        self.last_rx = self.clock()
        if self._record is not None:
            self._record.write(data)

    def event_received(self, frame: AmiFrame) -> None:
        now = self.clock()
        self.last_event_at = now
        self.events_received += 1
        name = frame["Event"]
        if name in LINK_EVENTS:
            self._link_event(name, frame, now)
        self.bus.publish(AmiEvent(self.name, frame, now))
        snap = self._snapshot
        if snap is not None and frame.get("ActionID") == snap.action_id:
            if name == "CoreShowChannel":
                snap.channels.append(frame)
            elif name == "CoreShowChannelsComplete":
                self._snapshot = None
                log.info(
                    "pbx=%s resync channels=%d queue_items=%d reconnect=%s",
                    self.name, len(snap.channels), len(snap.queues), snap.reconnect,
                )  # fmt: skip
                self.bus.publish(
                    ResyncSnapshot(self.name, now, snap.channels, snap.queues, snap.reconnect)
                )

    def lease_lapsed(self, transport: Any) -> None:
        if self._lease_lapses == 0:
            log.warning("pbx=%s lease lapsed: dropping what the PBX sends, closing", self.name)
        self._lease_lapses += 1
        with contextlib.suppress(Exception):
            transport.close()

    def parse_errors(self, errors: list[Any]) -> None:
        self.parse_error_count += len(errors)
        for err in errors[:5]:
            log.warning(
                "pbx=%s skipped bad AMI input: %s sample=%r", self.name, err.reason, err.sample
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._ready.clear()  # before the supervisor even notices: nothing may act on it now
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(exc)
        if self._protocol is not None:
            for act in list(self._protocol.responses.values()):
                if not act.future.done():
                    act.future.set_exception(
                        AmiConnectionLost(f"pbx {self.name!r}: connection lost")
                    )
            self._protocol.responses.clear()

    def _link_event(self, name: str, frame: AmiFrame, now: float) -> None:
        if name == "Shutdown":
            log.warning("pbx=%s asterisk shutting down restart=%s", self.name, frame.get("Restart"))
            self.bus.publish(PbxRestarted(self.name, now, "shutdown"))
        elif name == "FullyBooted":
            try:
                uptime = float(frame.get("Uptime", ""))
            except ValueError:
                return
            if self._uptime is not None:
                prev_uptime, seen = self._uptime
                if uptime + 5 < prev_uptime + (now - seen):
                    log.warning("pbx=%s asterisk restarted uptime=%s", self.name, uptime)
                    self.bus.publish(PbxRestarted(self.name, now, "uptime reset"))
            self._uptime = (uptime, now)

    # -- state -------------------------------------------------------------------------------

    def _set_status(self, status: LinkStatus, detail: str = "") -> None:
        if status == self.status:
            return
        if status is not LinkStatus.READY:
            self._ready.clear()
        self.status = status
        self.since = self.clock()
        log.info(
            "pbx=%s link=%s host=%s:%d%s",
            self.name,
            status.value,
            self.settings.host,
            self.settings.port,
            f" detail={detail!r}" if detail else "",
        )
        self.bus.publish(LinkStateChanged(self.name, status, self.since, detail))

    def _fail(self, why: str) -> None:
        self.last_error = why
        log.warning("pbx=%s link_error=%r", self.name, why)

    def _close_transport(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            with contextlib.suppress(Exception):
                protocol.transport.close()
            for act in list(protocol.responses.values()):
                if not act.future.done():
                    act.future.set_exception(AmiConnectionLost(f"pbx {self.name!r}: link closed"))
            protocol.responses.clear()

    def health(self) -> LinkHealth:
        now = self.clock()
        return LinkHealth(
            name=self.name,
            host=self.settings.host,
            port=self.settings.port,
            status=self.status.value,
            connected=self.status in (LinkStatus.CONNECTED, LinkStatus.READY),
            logged_in=self.status is LinkStatus.READY,
            since=self.since,
            last_event_age=None
            if self.last_event_at is None
            else round(now - self.last_event_at, 3),
            reconnects=self.reconnects,
            last_error=self.last_error,
            banner=self.banner,
            parse_errors=self.parse_error_count,
        )


def _ok(resp: Any) -> bool:
    return isinstance(resp, dict) and resp.get("Response") in ("Success", "Follows", "Goodbye")


def _plain(result: Any) -> Any:
    """panoramisk Messages → plain dicts, so nothing above the link depends on panoramisk."""
    if isinstance(result, list):
        return [_plain(m) for m in result]
    plain = dict(result)
    if not plain.get("content"):
        plain.pop("content", None)  # panoramisk adds an empty body to every Message
    return plain


def _as_list(result: Any) -> list[AmiFrame]:
    return result if isinstance(result, list) else [result]


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
