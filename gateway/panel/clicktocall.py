"""Click-to-call: ring the agent's phone first, then the customer through the dialplan.

The number is checked before anything reaches the PBX: ``dial_safe`` refuses every character
that could inject into a Dial string or channel name, ``normalize`` makes it E.164, the
do-not-call flags of the store refuse it with a clear message, and a per-agent sliding window
limits how fast one agent can originate. Then an async ``Originate`` of the agent's channel
into ``originate.context`` carries ``GATEWAY_CALL_ID`` so the tracker marks the call as ours.

Progress reported to the agent (``clicktocall.progress``):
``calling_agent`` → ``calling_customer`` (the agent picked up: OriginateResponse Success) →
``connected`` (the customer answered: CallAnswered with our call id) → ``ended``; or
``failed`` with a reason: ``agent_noanswer``, ``agent_busy``, ``customer_busy``,
``customer_noanswer``, ``invalid_number``, ``pbx_down``, ``pbx_lost``, ``failed``.

When the AMI link drops after the Originate was sent, nobody knows whether the PBX carried
it out (a live test: the agent answered and the customer was dialed while the panel said
"nothing was dialed"). So the attempt is reconciled instead of failed: once the link is back
and resynced, the call id variable is looked for on the agent's live channels (``Getvar``),
then in the call log; the attempt follows what is found. Only when the call is in neither
place does it fail (``pbx_lost``), and the message does not claim nothing rang.

In a cluster (a ``relay``: gateway/cluster/relay.py) the instance that got the request checks
the number, the do-not-call list and the agent's limit (counted in Redis for every instance),
and the PBX's owner places and follows the call: a request from another instance reaches it
with the call id chosen there, which is also what keeps it from being dialed twice. Each
attempt is copied to Redis (gateway/cluster/attempts.py), so its state reads back from any
instance, and a new owner of the PBX adopts the attempts of one that died: it looks for each
on the PBX as after a drop, and follows it there or says it was lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.ami.link import AmiConnectionLost
from gateway.calls.events import CallAnswered, CallEnded
from gateway.cluster.relay import NoOwner, RelayLost
from gateway.config import GatewayConfig
from gateway.errors import AmiActionTimeout, AmiError, AmiNotConnected, ApiError, InvalidNumber
from gateway.lookup.numbers import dial_safe, normalize
from gateway.panel.ratelimit import SlidingWindowLimiter
from gateway.store.db import Database

if TYPE_CHECKING:  # redis is imported only by a clustered gateway
    from gateway.cluster.attempts import SharedAttempts
    from gateway.cluster.ratelimit import SharedRateLimit
    from gateway.cluster.relay import OwnerRelay

log = logging.getLogger("gateway.panel")

# Asterisk's OriginateResponse Reason codes (AST_CONTROL_*): why the agent's leg failed
_AGENT_REASONS = {
    "0": ("failed", "The PBX could not ring your phone."),
    "1": ("agent_noanswer", "Your phone hung up before answering."),
    "3": ("agent_noanswer", "You did not answer your phone."),
    "5": ("agent_busy", "Your phone is busy."),
    "8": ("failed", "Your phone is unreachable (congestion)."),
}
MESSAGES = {
    "calling_agent": "Calling you… pick up your phone.",
    "calling_customer": "Calling the customer…",
    "connected": "Connected.",
    "ended": "Call ended.",
    "customer_busy": "The customer's line is busy.",
    "customer_noanswer": "The customer did not answer.",
    "pbx_down": "The phone system is not reachable right now; nothing was dialed.",
    "checking": "The connection to the phone system dropped; checking whether the call went ahead…",
    "pbx_lost": "The connection to the phone system dropped while placing the call, and the"
    " call is not there now. Check your phone before calling again.",
    "invalid_number": "That number cannot be dialed.",
}
# a request the PBX's owner took but never answered for (it died on it): not known whether
# anything rang
NO_ANSWER = (
    "The phone system took the call but did not confirm it in time; check your phone before"
    " calling again."
)
_FINAL = frozenset({"ended", "failed"})
_STATES = frozenset({"calling_agent", "calling_customer", "connected", *_FINAL})
_CALL_ID = re.compile(r"^gw-c2c-[0-9a-f]{12}$")
# a PJSIP Asterisk answers a busy agent with Reason 0 (IAX2 and chan_sip said 5): the DialEnd
# of the originate's own dial, which arrives just before, says what really happened
_DIAL_STATUS = {
    "BUSY": _AGENT_REASONS["5"],
    "NOANSWER": _AGENT_REASONS["3"],
    "CANCEL": _AGENT_REASONS["1"],
    "CHANUNAVAIL": _AGENT_REASONS["8"],
    "CONGESTION": _AGENT_REASONS["8"],
}

Publish = Callable[[str, dict[str, Any]], None]  # (agent, progress data)


@dataclass(slots=True)
class Attempt:
    call_id: str
    agent: str
    extension: str
    number: str
    pbx: str
    state: str = "calling_agent"
    reason: str = ""
    message: str = MESSAGES["calling_agent"]
    customer_ended: str | None = None  # the outcome, when the call ended before we knew why
    reconciled: bool = False  # found again after a drop: no OriginateResponse will come
    linkedid: str = ""  # of an adopted attempt: its events carry no call id (see on_resync)
    handed_over: bool = False  # another instance follows it now: nothing more said from here

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], agent: str, pbx: str) -> Attempt | None:
        """An attempt as ``to_json`` wrote it (another instance's); None if it is not one."""
        fields = [doc.get(k) for k in ("call_id", "number", "extension", "reason", "message")]
        state = doc.get("state")
        if not all(isinstance(f, str) and len(f) <= 1000 for f in fields) or state not in _STATES:
            return None
        call_id, number, extension, reason, message = (str(f) for f in fields)
        return cls(call_id, agent, extension, number, pbx, str(state), reason, message)

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "number": self.number,
            "extension": self.extension,
            "state": self.state,
            "reason": self.reason,
            "message": self.message,
        }


class ClickToCall:
    """Validates, rate-limits and places click-to-calls, and follows each to its end."""

    def __init__(
        self,
        db: Database,
        links: Mapping[str, Any],
        cfg: GatewayConfig,
        publish: Publish,
        limiter: SlidingWindowLimiter,
        clock: Callable[[], float],
        relay: OwnerRelay | None = None,
    ) -> None:
        self.db = db
        self.links = links
        self.cfg = cfg
        self.publish = publish
        self.limiter = limiter
        self.clock = clock
        self.attempts: dict[str, Attempt] = {}
        self.finished: dict[str, Attempt] = {}  # insertion-ordered: oldest first
        self.owners: dict[str, str] = {}  # call id -> agent, until the call's record ends
        self._tasks: set[asyncio.Task[None]] = set()
        self._agent_dials: dict[tuple[str, str], str] = {}  # (pbx, extension) -> DialStatus
        self._linked: dict[tuple[str, str], str] = {}  # (pbx, linkedid) -> adopted call id
        self._placing: set[str] = set()  # recorded in Redis, not registered here yet
        # clustered: requests carried out by the PBX's owner, attempts and limits in Redis
        self.relay = relay
        self.shared: SharedAttempts | None = None
        self.rate: SharedRateLimit | None = None
        if relay is not None:
            from gateway.cluster.attempts import SharedAttempts
            from gateway.cluster.ratelimit import SharedRateLimit

            self.shared = SharedAttempts(relay.redis, relay.settings)
            self.rate = SharedRateLimit(
                relay.redis, limiter, clock, prefix=relay.settings.key_prefix, name="originate"
            )
            relay.handle("c2c.start", self._serve_start)
            relay.on_tell("c2c.drop", self._serve_drop)

    def on_ami_event(self, event: AmiEvent) -> None:
        """Keep how the PBX ended each originate's dial of an agent's phone: an originate's
        DialEnd has no ``Channel`` (nothing dialed from a channel), only ``DestChannel``."""
        f = event.frame
        if self._linked and f.get("Event") == "DialBegin":
            self._adopted_dialing(event.pbx, f)
        if f.get("Event") != "DialEnd" or f.get("Channel"):
            return
        tech_ext = str(f.get("DestChannel", "")).rsplit("-", 1)[0]
        extension = tech_ext.partition("/")[2]
        if extension and any(a.extension == extension for a in self.attempts.values()):
            self._agent_dials[(event.pbx, extension)] = str(f.get("DialStatus", ""))

    def _agent_failure(self, a: Attempt, reason: str) -> tuple[str, str]:
        status = self._agent_dials.pop((a.pbx, a.extension), "")
        if reason in ("0", "") and status in _DIAL_STATUS:
            return _DIAL_STATUS[status]
        return _AGENT_REASONS.get(reason, _AGENT_REASONS["0"])

    async def check_number(self, raw: Any) -> str:
        """The number as E.164, or ApiError 400 (unsafe/invalid) / 403 (do not call)."""
        try:
            safe = dial_safe(raw)
            e164 = normalize(safe, self.cfg.lookup.default_region).e164
        except InvalidNumber as e:
            raise ApiError(400, "invalid_number", f"That number cannot be dialed: {e}.") from e
        rows = await self.db.conn.execute_fetchall(
            "SELECT 1 FROM phones ph LEFT JOIN people p ON p.id = ph.person_id"
            " WHERE ph.e164 = ? AND (ph.do_not_call = 1 OR p.do_not_call = 1) LIMIT 1",
            (e164,),
        )
        if rows:
            raise ApiError(
                403,
                "do_not_call",
                f"{e164} is on the do-not-call list: the call was not placed.",
            )
        return e164

    async def start(self, agent: str, extensions: tuple[str, ...], raw_number: Any) -> Attempt:
        if not extensions:
            raise ApiError(400, "no_extension", "You are signed in without an extension to ring.")
        number = await self.check_number(raw_number)
        wait = await self._take(agent)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many calls in a short time; try again in {int(wait) + 1} s.",
                {"retry_after": int(wait) + 1},
            )
        call_id = f"gw-c2c-{secrets.token_hex(6)}"
        pbx = next(
            (name for name, link in self.links.items() if _link_up(link)),
            None,
        )
        if pbx is not None:
            return await self._place(call_id, agent, extensions[0], number, pbx)
        if self.relay is not None:  # the PBX's owner is another instance
            return await self._forward(call_id, agent, extensions[0], number)
        raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])

    async def _take(self, agent: str) -> float:
        if self.rate is not None:
            return await self.rate.take(agent)
        return self.limiter.take(agent, self.clock())

    async def _place(
        self, call_id: str, agent: str, extension: str, number: str, pbx: str
    ) -> Attempt:
        """Place the call on this instance's link of ``pbx`` and follow it."""
        attempt = Attempt(call_id, agent, extension, number, pbx)
        if self.shared is not None:
            # recorded before the Originate leaves: a requester that gave up on this call
            # (and told its user nothing was dialed) has recorded it first, and wins
            self._placing.add(call_id)  # (a resync meanwhile must not adopt it)
            try:
                created = await self.shared.create(call_id, agent, pbx, attempt.to_json())
            finally:
                self._placing.discard(call_id)
            if created is False:
                log.warning("click-to-call %s came after its requester gave up; not placed",
                            call_id)  # fmt: skip
                raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])
        self.attempts[attempt.call_id] = attempt
        self.owners[attempt.call_id] = agent
        while len(self.owners) > 10_000:  # a call whose end we never saw must not stay forever
            del self.owners[next(iter(self.owners))]
        self._report(attempt)
        task = asyncio.create_task(self._originate(attempt), name=f"c2c-{attempt.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return attempt

    # -- in a cluster: the PBX's owner places it ----------------------------------------------

    async def _forward(self, call_id: str, agent: str, extension: str, number: str) -> Attempt:
        """Have the owner of a PBX place the call (the first PBX whose owner takes it)."""
        assert self.relay is not None
        body = {"call_id": call_id, "agent": agent, "extension": extension, "number": number}
        for pbx in self.links:
            try:
                doc = await self.relay.call(pbx, "c2c.start", body, within=self.relay.wait_seconds)
            except NoOwner:
                continue  # nobody got it: nothing dialed there
            except RelayLost:
                doc = await self._settle(call_id)
            except ApiError as e:
                if e.error_id == "pbx_down":
                    continue  # that owner's link is down: nothing dialed there
                raise
            attempt = Attempt.from_json(doc, agent, pbx) if isinstance(doc, dict) else None
            if attempt is None:
                raise ApiError(500, "internal", "internal error; see the gateway log")
            return attempt
        raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])

    async def _settle(self, call_id: str) -> dict[str, Any]:
        """The owner took the request and did not answer: the attempt as it recorded it, or
        503 when it recorded nothing (and now never will: the record is fenced)."""
        assert self.shared is not None
        fenced = await self.shared.fence(call_id)
        if fenced:
            raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])
        record = await self.shared.read(call_id) if fenced is False else None
        if record is None:
            raise ApiError(504, "pbx_no_answer", NO_ANSWER)
        return record.attempt

    async def _serve_start(self, pbx: str, body: dict[str, Any]) -> dict[str, Any]:
        """Another instance's request, checked there (number, do-not-call, the agent's
        limit): placed here unless this call id is known already (the same request twice)."""
        call_id, agent, extension, number = (
            body.get(k) for k in ("call_id", "agent", "extension", "number")
        )
        if not (
            isinstance(call_id, str)
            and _CALL_ID.match(call_id)
            and isinstance(agent, str)
            and 0 < len(agent) <= 200
            and isinstance(extension, str)
            and re.fullmatch(r"[0-9]{1,20}", extension)  # it goes into the channel's name
            and isinstance(number, str)
            and _is_e164(number)
        ):
            raise ApiError(400, "bad_request", "That click-to-call request is not valid.")
        known = self.find(call_id)
        if known is not None:
            return known.to_json()
        if not _link_up(self.links.get(pbx)):
            raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])
        return (await self._place(call_id, agent, extension, number, pbx)).to_json()

    async def _serve_drop(self, sender: str, body: dict[str, Any]) -> None:
        """The PBX's new owner follows this attempt now: nothing more is said from here."""
        a = self.attempts.pop(str(body.get("call_id")), None)
        if a is not None:
            a.handed_over = True
            self.owners.pop(a.call_id, None)
            log.info("click-to-call %s is followed by %s now", a.call_id, sender)

    def on_resync(self, snap: ResyncSnapshot) -> None:
        """This instance has the PBX's live picture (after taking it over, or a reconnect):
        the attempts another owner left open on it are carried on from here."""
        if self.shared is not None:
            task = asyncio.create_task(self._adopt(snap.pbx), name=f"c2c-adopt-{snap.pbx}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _adopt(self, pbx: str) -> None:
        assert self.shared is not None and self.relay is not None
        for call_id in await self.shared.open_ids(pbx):
            if call_id in self.attempts or call_id in self._placing:
                continue
            record = await self.shared.take_over(call_id, pbx)
            a = Attempt.from_json(record.attempt, record.agent, pbx) if record else None
            if record is None or a is None or a.state in _FINAL or a.call_id != call_id:
                continue
            a.reconciled = True  # its OriginateResponse went to the old owner, if anywhere
            self.attempts[call_id] = a
            self.owners[call_id] = a.agent
            if record.owner != self.relay.instance:
                await self.relay.tell(record.owner, "c2c.drop", {"call_id": call_id})
            log.warning("click-to-call %s of %s on pbx=%s carried on from %s", call_id,
                        a.agent, pbx, record.owner)  # fmt: skip
            await self._follow_adopted(a)

    async def _follow_adopted(self, a: Attempt) -> None:
        """As after a drop: the call on the PBX, then in the log, else lost."""
        found = None
        try:
            found = await self._find_live(a, self.links[a.pbx])
        except AmiError as e:
            log.warning("click-to-call %s: live check failed: %s", a.call_id, e)
        if found is not None:
            state, a.linkedid, channel = found
            if a.linkedid:
                self._linked[(a.pbx, a.linkedid)] = a.call_id
            await self._tell_tracker(a, channel)
            if state == "Up" and a.state == "calling_agent":
                self._move(a, "calling_customer")
            return  # (else nothing new: its record names this instance since take_over)
        outcome = await self._logged_outcome(a.call_id)
        if a.state in _FINAL:
            return
        if outcome is not None:
            self._customer_gone(a, outcome)
        else:
            self._fail(a, "pbx_lost", MESSAGES["pbx_lost"])

    async def _tell_tracker(self, a: Attempt, channel: str) -> None:
        """This owner's tracker joined the call from the channel list, which carries no
        variables: setting the call id again makes the PBX announce it (VarSet), so the call
        is logged as this click-to-call, as the old owner would have logged it."""
        action = {
            "Action": "Setvar",
            "Channel": channel,
            "Variable": self.cfg.tracking.call_id_variable,
            "Value": a.call_id,
        }
        try:
            await self.links[a.pbx].send_action(action)
        except AmiError as e:  # it hung up meanwhile: its end says how it went
            log.info("click-to-call %s: the call id could not be set again: %s", a.call_id, e)

    def _adopted_dialing(self, pbx: str, f: Mapping[str, Any]) -> None:
        """The agent picked up an adopted attempt's first leg, which now dials the customer
        (the OriginateResponse that would have said so went to the old owner)."""
        a = self.attempts.get(self._linked.get((pbx, str(f.get("Linkedid", ""))), ""))
        if a is None or a.state != "calling_agent":
            return
        if re.match(rf"^[^/]+/{re.escape(a.extension)}[-@]", str(f.get("Channel", ""))):
            self._move(a, "calling_customer")

    async def status(self, call_id: str) -> tuple[str, dict[str, Any]] | None:
        """Whose attempt it is and its state, from this instance or (clustered) from Redis."""
        a = self.find(call_id)
        if a is not None:
            return a.agent, a.to_json()
        if self.shared is None or not _CALL_ID.match(call_id):
            return None
        record = await self.shared.read(call_id)
        a = Attempt.from_json(record.attempt, record.agent, "") if record is not None else None
        return (a.agent, a.to_json()) if a is not None else None

    async def _originate(self, a: Attempt) -> None:
        o = self.cfg.originate
        action = {
            "Action": "Originate",
            "Channel": o.agent_channel.format(ext=a.extension),
            "Context": o.context,
            "Exten": a.number,
            "Priority": "1",
            "CallerID": f'"{o.caller_id or "Click-to-call"}" <{a.number}>',
            "Timeout": str(int(o.timeout * 1000)),
            "Async": "true",
            "Variable": [f"{self.cfg.tracking.call_id_variable}={a.call_id}"],
        }
        try:
            frames = await self.links[a.pbx].send_action(action, timeout=o.timeout + 15)
        except AmiConnectionLost:
            await self._reconcile(a)
            return
        except AmiNotConnected:
            self._fail(a, "pbx_down", MESSAGES["pbx_down"])
            return
        except AmiActionTimeout:
            self._fail(a, "failed", "The phone system did not answer in time.")
            return
        except AmiError as e:
            log.warning("click-to-call %s refused by pbx=%s: %s", a.call_id, a.pbx, e)
            self._fail(a, "failed", "The phone system refused the call.")
            return
        frames = frames if isinstance(frames, list) else [frames]
        result = next((f for f in frames if f.get("Event") == "OriginateResponse"), None)
        if result is None or result.get("Response") != "Success":
            code, message = self._agent_failure(a, str((result or {}).get("Reason", "0")))
            self._fail(a, code, message)
            return
        if a.state == "calling_agent":
            if a.customer_ended is not None:
                self._customer_gone(a, a.customer_ended)
            else:
                self._move(a, "calling_customer")

    # -- after a drop: what did the PBX do? ---------------------------------------------------

    async def _reconcile(self, a: Attempt) -> None:
        """The link dropped after the Originate left: find the call before judging it."""
        log.warning("click-to-call %s: link to pbx=%s dropped, reconciling", a.call_id, a.pbx)
        link = self.links[a.pbx]
        a.message = MESSAGES["checking"]
        self._report(a)
        wait_ready = getattr(link, "wait_ready", None)
        ready = bool(wait_ready is not None and await wait_ready(self.cfg.originate.timeout + 15))
        if a.state in _FINAL or a.state == "connected" or a.handed_over:
            return  # the tracker's events have settled it meanwhile, or the PBX's new owner
        found: tuple[str, str, str] | None = None
        if ready:
            try:
                found = await self._find_live(a, link)
            except AmiError as e:  # dropped again, or the PBX refused: the log may still know
                log.warning("click-to-call %s: live check failed: %s", a.call_id, e)
        a.reconciled = True
        if found is not None:
            log.info("click-to-call %s found live on %s after the drop", a.call_id, found[0])
            if found[0] == "Up" and a.state == "calling_agent":
                self._move(a, "calling_customer")  # the agent's leg is answered
            elif a.state == "calling_agent":
                a.message = MESSAGES["calling_agent"]
                self._report(a)
            return
        outcome = a.customer_ended or await self._logged_outcome(a.call_id)
        if a.state in _FINAL or a.handed_over:
            return
        if outcome is not None:
            log.info("click-to-call %s ended during the drop: %s", a.call_id, outcome)
            self._customer_gone(a, outcome)
        else:
            self._fail(a, "pbx_lost", MESSAGES["pbx_lost"])

    async def _find_live(self, a: Attempt, link: Any) -> tuple[str, str, str] | None:
        """The state, Linkedid and name of the agent's channel carrying our call id, None when
        there is none.

        Only the agent's own channels are asked (the Originate put the variable there), one
        ``Getvar`` each: CoreShowChannels does not carry channel variables.
        """
        frames = await link.send_action({"Action": "CoreShowChannels"}, as_list=True)
        own = re.compile(rf"^[^/]+/{re.escape(a.extension)}[-@]")
        variable = self.cfg.tracking.call_id_variable
        for f in frames if isinstance(frames, list) else [frames]:
            channel = f.get("Channel", "")
            if f.get("Event") != "CoreShowChannel" or not own.match(channel):
                continue
            try:
                got = await link.send_action(
                    {"Action": "Getvar", "Channel": channel, "Variable": variable}
                )
            except AmiError:  # hung up in between
                continue
            if isinstance(got, dict) and got.get("Value") == a.call_id:
                state, linkedid = str(f.get("ChannelStateDesc") or ""), str(f.get("Linkedid") or "")
                return state, linkedid, channel
        return None

    async def _logged_outcome(self, call_id: str) -> str | None:
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT outcome FROM calls WHERE call_id = ? ORDER BY started_at DESC LIMIT 1",
                (call_id,),
            )
        )
        return str(rows[0][0]) if rows else None

    # -- events from the tracker -------------------------------------------------------------

    def on_answered(self, e: CallAnswered) -> None:
        a = self.attempts.get(e.call_id or self._linked.get((e.pbx, e.linkedid), ""))
        if a is not None and a.state not in _FINAL:
            self._move(a, "connected")

    def on_ended(self, e: CallEnded) -> str | None:
        """Follow a call's end; returns the agent who originated it (None: not ours)."""
        call_id = e.record.call_id or self._linked.get((e.record.pbx, e.record.linkedid), "")
        owner = self.owners.pop(call_id, None)
        a = self.attempts.get(call_id)
        if a is None or a.state in _FINAL:
            return owner
        outcome = e.record.outcome.value
        if a.state == "calling_agent" and not a.reconciled:
            # the OriginateResponse (why the agent's leg failed, or that it answered) may
            # still be on its way: let it decide
            a.customer_ended = outcome
            return owner
        self._customer_gone(a, outcome)
        return owner

    def _customer_gone(self, a: Attempt, outcome: str) -> None:
        if a.state == "connected" or outcome in ("answered", "transferred"):
            self._move(a, "ended")
        elif outcome == "busy":
            self._fail(a, "customer_busy", MESSAGES["customer_busy"])
        else:
            self._fail(a, "customer_noanswer", MESSAGES["customer_noanswer"])

    def _move(self, a: Attempt, state: str) -> None:
        a.state, a.reason, a.message = state, "", MESSAGES[state]
        self._report(a)

    def _fail(self, a: Attempt, reason: str, message: str) -> None:
        a.state, a.reason, a.message = "failed", reason, message
        self._report(a)

    def _report(self, a: Attempt) -> None:
        if a.handed_over:
            return
        self.publish(a.agent, a.to_json())
        if self.shared is not None:
            self.shared.update(a.call_id, a.pbx, a.to_json(), final=a.state in _FINAL)
        if a.state in _FINAL:
            self.attempts.pop(a.call_id, None)
            self._linked.pop((a.pbx, a.linkedid), None)
            # kept a while so a CRM polling GET /api/v1/originate/{id} sees how it ended
            self.finished[a.call_id] = a
            while len(self.finished) > 1000:
                del self.finished[next(iter(self.finished))]

    def find(self, call_id: str) -> Attempt | None:
        """An attempt in progress, or one of the last thousand that ended."""
        return self.attempts.get(call_id) or self.finished.get(call_id)

    def of(self, agent: str) -> list[Attempt]:
        return [a for a in self.attempts.values() if a.agent == agent]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shared is not None:
            await self.shared.close()


def _is_e164(number: str) -> bool:
    """What ``check_number`` answers: ``+`` and up to 15 digits."""
    return bool(re.fullmatch(r"\+[1-9][0-9]{1,14}", number))


def _link_up(link: Any) -> bool:
    health = getattr(link, "health", None)
    if health is None:
        return True
    try:
        return bool(health().logged_in)
    except Exception:
        return False
