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
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.ami.events import AmiEvent
from gateway.ami.link import AmiConnectionLost
from gateway.calls.events import CallAnswered, CallEnded
from gateway.config import GatewayConfig
from gateway.errors import AmiActionTimeout, AmiError, AmiNotConnected, ApiError, InvalidNumber
from gateway.lookup.numbers import dial_safe, normalize
from gateway.panel.ratelimit import SlidingWindowLimiter
from gateway.store.db import Database

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
_FINAL = frozenset({"ended", "failed"})
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

    def on_ami_event(self, event: AmiEvent) -> None:
        """Keep how the PBX ended each originate's dial of an agent's phone: an originate's
        DialEnd has no ``Channel`` (nothing dialed from a channel), only ``DestChannel``."""
        f = event.frame
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
        wait = self.limiter.take(agent, self.clock())
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many calls in a short time; try again in {int(wait) + 1} s.",
                {"retry_after": int(wait) + 1},
            )
        pbx = next(
            (name for name, link in self.links.items() if _link_up(link)),
            None,
        )
        if pbx is None:
            raise ApiError(503, "pbx_down", MESSAGES["pbx_down"])
        attempt = Attempt(f"gw-c2c-{secrets.token_hex(6)}", agent, extensions[0], number, pbx)
        self.attempts[attempt.call_id] = attempt
        self.owners[attempt.call_id] = agent
        while len(self.owners) > 10_000:  # a call whose end we never saw must not stay forever
            del self.owners[next(iter(self.owners))]
        self._report(attempt)
        task = asyncio.create_task(self._originate(attempt), name=f"c2c-{attempt.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return attempt

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
        if a.state in _FINAL or a.state == "connected":
            return  # the tracker's events have settled it meanwhile
        found: str | None = None
        if ready:
            try:
                found = await self._find_live(a, link)
            except AmiError as e:  # dropped again, or the PBX refused: the log may still know
                log.warning("click-to-call %s: live check failed: %s", a.call_id, e)
        a.reconciled = True
        if found is not None:
            log.info("click-to-call %s found live on %s after the drop", a.call_id, found)
            if found == "Up" and a.state == "calling_agent":
                self._move(a, "calling_customer")  # the agent's leg is answered
            elif a.state == "calling_agent":
                a.message = MESSAGES["calling_agent"]
                self._report(a)
            return
        outcome = a.customer_ended or await self._logged_outcome(a.call_id)
        if a.state in _FINAL:
            return
        if outcome is not None:
            log.info("click-to-call %s ended during the drop: %s", a.call_id, outcome)
            self._customer_gone(a, outcome)
        else:
            self._fail(a, "pbx_lost", MESSAGES["pbx_lost"])

    async def _find_live(self, a: Attempt, link: Any) -> str | None:
        """The state of the agent's channel carrying our call id, None when there is none.

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
                return str(f.get("ChannelStateDesc") or "")
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
        a = self.attempts.get(e.call_id or "")
        if a is not None and a.state not in _FINAL:
            self._move(a, "connected")

    def on_ended(self, e: CallEnded) -> str | None:
        """Follow a call's end; returns the agent who originated it (None: not ours)."""
        call_id = e.record.call_id or ""
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
        self.publish(a.agent, a.to_json())
        if a.state in _FINAL:
            self.attempts.pop(a.call_id, None)
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


def _link_up(link: Any) -> bool:
    health = getattr(link, "health", None)
    if health is None:
        return True
    try:
        return bool(health().logged_in)
    except Exception:
        return False
