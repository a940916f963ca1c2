"""OwnerRelay: a request for a PBX carried out by the instance that owns that PBX's AMI link.

In a cluster only one instance holds each PBX's link (gateway/cluster/owner.py), but a load
balancer sends an agent's browser, or a CRM's API call, to any instance. Click-to-call, the
call controls and queue pauses therefore travel to the owner through Redis and come back
with the owner's answer, the same answer it gives its own users (docs/scale-out.md):

* **Sending.** One script reads the PBX's lease (``<prefix>:pbx:<name>:lease``, value
  ``<instance>|<token>``) and PUBLISHes the request on the holder's channel,
  ``<prefix>:relay:to:<instance>``, in the same step. Redis answers how many subscribers got
  it: none (nobody holds the lease, or its holder is dead and its connection gone) is a
  :class:`NoOwner` at once, nothing waited for and nothing done.
* **Claiming.** The owner takes a request with ``SET <prefix>:relay:claim:<id> NX`` before
  doing anything; the requester that waited ``wait_seconds`` in vain tries the same key with
  ``abandoned``. Exactly one of them wins: a request the requester gave up on (and told its
  user so) is never carried out later by an owner that was slow, frozen or just taking over;
  a request the owner took is answered for (:class:`RelayLost` when its answer never came).
* **Answering.** The owner stores its answer (``<prefix>:relay:reply:<id>``, one minute) and
  PUBLISHes it on the requester's channel in one script; a requester whose message was lost
  reads the stored copy. An :class:`~gateway.errors.ApiError` travels as its status, id,
  message and details; an :class:`~gateway.errors.AmiError` as its class and text.

Redis is trusted infrastructure here (as for the leases and the board), but what comes from
it is still parsed defensively, the raw AMI actions an owner accepts are limited to
``FORWARDED_ACTIONS``, and nothing secret rides in a request: an agent's name, role and
extensions, never a session token, a password or an AMI secret. The access checks
(gateway/access.py) run on the instance that got the HTTP request; the owner checks what only
it can know (that the live call is the agent's).

This module imports Redis only when a relay is built: the panel imports its exceptions
whether or not the gateway runs in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.cluster import channel
from gateway.cluster.settings import ClusterSettings
from gateway.errors import AmiActionTimeout, AmiError, AmiNotConnected, ApiError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("gateway.cluster.relay")

# what a handler receives: the PBX's name and the request's body (decoded JSON)
Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
CLAIM_MS = 10 * 60 * 1000  # a claim outlives any requester's wait by far
REPLY_MS = 60 * 1000
# the raw AMI actions an owner sends for another instance (the panel's queue pauses); the
# panel's other actions travel as service requests, which the owner builds itself
FORWARDED_ACTIONS = frozenset({"QueuePause"})
_AMI_ERRORS: dict[str, type[AmiError]] = {
    "AmiNotConnected": AmiNotConnected,
    "AmiActionTimeout": AmiActionTimeout,
    "AmiError": AmiError,
}
_MAX_TEXT = 1000  # an error text from Redis longer than this is cut

# KEYS[1] the PBX's lease; ARGV[1] the channels' prefix, ARGV[2] this instance, ARGV[3] the
# request. Answers {holder or '', subscribers that got it}; -1: this instance holds it.
_SEND = """
local v = redis.call('GET', KEYS[1])
if not v then return {'', 0} end
local holder = string.match(v, '^(.*)|%d+$') or v
if holder == ARGV[2] then return {holder, -1} end
return {holder, redis.call('PUBLISH', ARGV[1] .. holder, ARGV[3])}
"""
# KEYS[1] the reply's key; ARGV[1] the requester's channel, ARGV[2] the reply, ARGV[3] ttl ms
_REPLY = """
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
"""


class NoOwner(Exception):
    """Nobody got the request: no instance holds the PBX, its holder is not listening, or the
    holder let the request go unclaimed until the requester gave up. Nothing was done."""


class RelayLost(Exception):
    """The owner took the request, but its answer did not come in time: whether it was
    carried out is not known here."""


class OwnerRelay:
    """Sends requests to the owner of a PBX and carries out those sent to this instance."""

    def __init__(
        self,
        settings: ClusterSettings,
        links: Mapping[str, Any],
        *,
        wait_seconds: float | None = None,
    ) -> None:
        from gateway.cluster import channel  # Redis, only for a clustered gateway

        self.settings = settings
        self.instance = settings.name
        self.links = links  # this instance's own links (up only while it owns their PBX)
        self.prefix = f"{settings.key_prefix}:relay:"
        self.channel = f"{self.prefix}to:{self.instance}"
        # how long a requester waits for the owner to take a request: far more than the
        # owner needs (a claim is one round trip), far less than a user waits for a button
        self.wait_seconds = wait_seconds or max(1.0, 2 * settings.renew_seconds)
        self.redis: Redis = channel.client(settings)
        self._sub_redis: Redis = channel.client(settings, read_timeout=False)
        self._failures = channel.REDIS_FAILURES
        self._send = self.redis.register_script(_SEND)
        self._reply = self.redis.register_script(_REPLY)
        self._handlers: dict[str, Handler] = {"ami": self._serve_ami}
        self._tellers: dict[str, Handler] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.error: str | None = "not started"
        self.forwarded = 0  # requests sent to another instance
        self.served = 0  # requests of other instances carried out here
        self.no_owner = 0  # requests nobody got (answered 503 at once, or after the wait)
        self.lost = 0  # requests taken whose answer never came
        self.dropped = 0  # requests that came here after their requester gave up
        self.skipped = 0  # messages that were not ours to read

    # -- lifecycle ---------------------------------------------------------------------------

    def handle(self, kind: str, handler: Handler) -> None:
        """Carry out the requests of ``kind`` sent to this instance with ``handler``; what it
        returns (JSON) or raises (ApiError, AmiError) is the requester's answer."""
        self._handlers[kind] = handler

    def on_tell(self, kind: str, handler: Handler) -> None:
        """Messages of ``kind`` sent here with :meth:`tell` (no answer, no claim)."""
        self._tellers[kind] = handler

    async def start(self) -> None:
        """Subscribe to this instance's channel; never fails (Redis may be away)."""
        from gateway.cluster import channel

        self._listener = asyncio.create_task(
            channel.subscribe_forever(
                self._sub_redis,
                self.channel,
                resume=self._subscribed,
                on_message=self._on_message,
                healthy=lambda: True,
                failed=self._failed,
                ready=self._ready,
                period=self.settings.renew_seconds,
                log=log,
            ),
            name="relay-listen",
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.settings.renew_seconds * 2)

    async def close(self) -> None:
        from gateway.cluster import channel

        tasks = [*self._tasks, *([self._listener] if self._listener else [])]
        self._listener = None
        await channel.stop(tasks, (), "relay")
        for client in (self.redis, self._sub_redis):
            # bounded: a client whose connection went away mid-read may never finish closing
            with contextlib.suppress(Exception):
                async with asyncio.timeout(channel.CLOSE_SECONDS):
                    await client.aclose()

    def health(self) -> dict[str, Any]:
        return {
            "redis_ok": self.error is None,
            "redis_error": self.error,
            "forwarded": self.forwarded,
            "served": self.served,
            "no_owner": self.no_owner,
            "lost": self.lost,
            "dropped": self.dropped,
            "skipped": self.skipped,
        }

    # -- asking the owner --------------------------------------------------------------------

    def local(self, pbx: str) -> bool:
        """Whether this instance runs the PBX's link now (logged in): then it acts itself."""
        return _logged_in(self.links.get(pbx))

    async def call(self, pbx: str, kind: str, body: dict[str, Any], *, within: float) -> Any:
        """The owner's answer to ``body``: its result, or the ApiError/AmiError it raised.

        Raises :class:`NoOwner` when nobody got the request (nothing was done), and
        :class:`RelayLost` when the owner took it but did not answer within ``within``
        seconds of the wait. When this instance holds the lease itself (its link is down)
        the handler runs here, and answers as the owner would."""
        rid = secrets.token_hex(8)
        message = json.dumps(
            {"t": "req", "id": rid, "from": self.instance, "pbx": pbx, "kind": kind, "body": body}
        )
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        try:
            lease = f"{self.settings.key_prefix}:pbx:{pbx}:lease"
            try:
                holder, received = await self._send(
                    keys=[lease], args=[f"{self.prefix}to:", self.instance, message]
                )
            except self._failures as e:
                self._failed(e)
                self.no_owner += 1
                raise NoOwner(f"Redis failed: {e}") from None
            self._ok()
            if int(received) == -1:
                return await self._handlers[kind](pbx, body)
            if not holder or int(received) == 0:
                self.no_owner += 1
                raise NoOwner(f"pbx {pbx}: {'holder ' + holder if holder else 'no holder'}")
            self.forwarded += 1
            with contextlib.suppress(TimeoutError):
                return _answer(await asyncio.wait_for(asyncio.shield(future), self.wait_seconds))
            if await self._abandon(rid):
                self.no_owner += 1
                log.warning(
                    "relay: %s for pbx=%s was not taken by %s within %gs; given up",
                    kind, pbx, holder, self.wait_seconds,
                )  # fmt: skip
                raise NoOwner(f"pbx {pbx}: {holder} did not take it")
            with contextlib.suppress(TimeoutError):
                return _answer(await asyncio.wait_for(future, within))
            stored = await self._stored_reply(rid)
            if stored is not None:
                return _answer(stored)
            self.lost += 1
            log.warning(
                "relay: %s for pbx=%s taken by %s, no answer within %gs",
                kind, pbx, holder, self.wait_seconds + within,
            )  # fmt: skip
            raise RelayLost(f"pbx {pbx}: {holder} took it and did not answer")
        finally:
            self._waiting.pop(rid, None)

    async def tell(self, instance: str, kind: str, body: dict[str, Any]) -> None:
        """A message for another instance that needs no answer (lost if it is not there)."""
        message = json.dumps({"t": "tell", "from": self.instance, "kind": kind, "body": body})
        try:
            await self.redis.publish(f"{self.prefix}to:{instance}", message)
        except self._failures as e:
            self._failed(e)

    def routed(self) -> dict[str, RoutedLink]:
        """Every PBX's link as any instance may use it for ``FORWARDED_ACTIONS``."""
        return {name: RoutedLink(self, name, link) for name, link in self.links.items()}

    async def _abandon(self, rid: str) -> bool:
        """Give the request up, unless the owner took it meanwhile (True: given up)."""
        try:
            taken = await self.redis.set(
                f"{self.prefix}claim:{rid}", f"abandoned:{self.instance}", nx=True, px=CLAIM_MS
            )
        except self._failures as e:  # not known: count it as taken, never as not done
            self._failed(e)
            return False
        return bool(taken)

    async def _stored_reply(self, rid: str) -> dict[str, Any] | None:
        try:
            raw = await self.redis.get(f"{self.prefix}reply:{rid}")
        except self._failures as e:
            self._failed(e)
            return None
        return _decode(raw)

    # -- carrying out the others' requests ---------------------------------------------------

    async def _subscribed(self) -> None:
        if self.error is not None and self.error != "not started":
            log.warning("relay instance=%s: Redis answers again", self.instance)
        self.error = None

    def _on_message(self, raw: str) -> None:
        msg = _decode(raw)
        kind = msg.get("t") if msg is not None else None
        if msg is None or kind not in ("req", "rep", "tell"):
            self._skip("a message that is not a request, answer or tell")
            return
        if kind == "rep":
            future = self._waiting.get(str(msg.get("id")))
            if future is not None and not future.done():
                future.set_result(msg)
            return
        self._spawn(self._serve(msg) if kind == "req" else self._told(msg))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: dict[str, Any]) -> None:
        rid, sender, pbx, kind, body = (msg.get(k) for k in ("id", "from", "pbx", "kind", "body"))
        if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in (rid, sender, pbx, kind)):
            self._skip("a request without its id, sender, PBX or kind")
            return
        assert isinstance(rid, str) and isinstance(sender, str)
        assert isinstance(pbx, str) and isinstance(kind, str)
        try:
            taken = await self.redis.set(
                f"{self.prefix}claim:{rid}", f"taken:{self.instance}", nx=True, px=CLAIM_MS
            )
        except self._failures as e:
            self._failed(e)  # the requester gives up or finds it lost; nothing done here
            return
        if not taken:
            self.dropped += 1
            log.info("relay: %s from %s for pbx=%s came after it was given up", kind, sender, pbx)
            return
        self.served += 1
        reply: dict[str, Any] = {"t": "rep", "id": rid, "ok": True}
        try:
            handler = self._handlers.get(kind)
            if handler is None or pbx not in self.links or not isinstance(body, dict):
                raise ApiError(
                    502, "pbx_refused", f"Instance {self.instance} cannot do {kind[:40]!r} here."
                )
            reply["result"] = await handler(pbx, body)
        except ApiError as e:
            reply.update(ok=False, error=_error_json(e))
        except AmiError as e:
            reply.update(ok=False, ami={"type": type(e).__name__, "message": str(e)})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay: %s from %s for pbx=%s failed", kind, sender, pbx)
            reply.update(ok=False, error=_error_json(_INTERNAL))
        try:
            await self._reply(
                keys=[f"{self.prefix}reply:{rid}"],
                args=[f"{self.prefix}to:{sender}", json.dumps(reply), REPLY_MS],
            )
        except self._failures as e:
            self._failed(e)

    async def _told(self, msg: dict[str, Any]) -> None:
        handler = self._tellers.get(str(msg.get("kind")))
        body = msg.get("body")
        if handler is None or not isinstance(body, dict):
            self._skip("a tell of a kind this instance does not know")
            return
        try:
            await handler(str(msg.get("from")), body)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("relay: a %r message failed", msg.get("kind"))

    async def _serve_ami(self, pbx: str, body: dict[str, Any]) -> Any:
        """A raw action another instance sends through :class:`RoutedLink`: only those of
        ``FORWARDED_ACTIONS``, with plain text values, as this instance would send them."""
        action = body.get("action")
        if not isinstance(action, dict) or action.get("Action") not in FORWARDED_ACTIONS:
            name = action.get("Action") if isinstance(action, dict) else None
            raise AmiError(f"refusing a forwarded action {str(name)[:40]!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in action.items()):
            raise AmiError(f"refusing a forwarded {action['Action']}: values must be text")
        link = self.links.get(pbx)
        if link is None:
            raise AmiNotConnected(f"pbx {pbx!r} is not connected")
        timeout = body.get("timeout")
        wait = float(timeout) if isinstance(timeout, int | float) and 0 < timeout <= 60 else None
        return await link.send_action(dict(action), timeout=wait)

    # -- Redis failures ----------------------------------------------------------------------

    def _failed(self, e: BaseException) -> None:
        self.error = channel.failed(
            log, self.error, e, who=f"relay instance={self.instance}", settings=self.settings,
            meanwhile="requests for PBXs owned by other instances are answered 503 until it "
            "answers",
        )  # fmt: skip

    def _ok(self) -> None:
        if self.error is not None and self.error != "not started":
            log.warning("relay instance=%s: Redis answers again", self.instance)
            self.error = None

    def _skip(self, what: str) -> None:
        self.skipped += 1
        log.warning("relay instance=%s: skipped %s", self.instance, what)


class RoutedLink:
    """A PBX's link as any instance of the cluster may use it: this instance's own while it
    owns the PBX, otherwise the owner's through the relay (``FORWARDED_ACTIONS`` only).
    Failures read as the local link's do: AmiNotConnected when no instance owns the PBX."""

    def __init__(self, relay: OwnerRelay, pbx: str, link: Any) -> None:
        self.relay = relay
        self.pbx = pbx
        self.link = link

    def health(self) -> Any:
        return self.link.health()

    async def send_action(
        self, action: dict[str, Any], *, timeout: float | None = None, as_list: bool | None = None
    ) -> Any:
        if self.relay.local(self.pbx):
            return await self.link.send_action(action, timeout=timeout, as_list=as_list)
        wait = timeout if timeout is not None else _action_timeout(self.link)
        try:
            return await self.relay.call(
                self.pbx, "ami", {"action": action, "timeout": wait}, within=wait + 1
            )
        except NoOwner:
            raise AmiNotConnected(f"pbx {self.pbx!r}: no instance reaches it now") from None
        except RelayLost:
            raise AmiActionTimeout(f"pbx {self.pbx!r}: its owner did not answer") from None


_INTERNAL = ApiError(500, "internal", "internal error; see the gateway log")


def _error_json(e: ApiError) -> dict[str, Any]:
    return {"status": e.status, "id": e.error_id, "message": e.message, "details": e.details}


def _answer(reply: dict[str, Any]) -> Any:
    """The result in an owner's reply, or the error it carries raised here."""
    if reply.get("ok") is True:
        return reply.get("result")
    ami = reply.get("ami")
    if isinstance(ami, dict):
        cls = _AMI_ERRORS.get(str(ami.get("type")), AmiError)
        raise cls(str(ami.get("message", ""))[:_MAX_TEXT])
    error = reply.get("error")
    if not isinstance(error, dict):
        raise _INTERNAL
    status, eid = error.get("status"), error.get("id")
    if not (isinstance(status, int) and 400 <= status <= 599 and isinstance(eid, str)):
        raise _INTERNAL
    raise ApiError(
        status, eid[:80], str(error.get("message", ""))[:_MAX_TEXT], error.get("details")
    )


def _decode(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, str | bytes):
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _logged_in(link: Any) -> bool:
    health = getattr(link, "health", None)
    if health is None:
        return False
    try:
        return bool(health().logged_in)
    except Exception:
        return False


def _action_timeout(link: Any) -> float:
    settings = getattr(link, "settings", None)
    timeout = getattr(settings, "action_timeout", 5.0)
    return float(timeout) if isinstance(timeout, int | float) else 5.0
