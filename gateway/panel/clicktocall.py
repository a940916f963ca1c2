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
``customer_noanswer``, ``invalid_number``, ``pbx_down``, ``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
    "invalid_number": "That number cannot be dialed.",
}
_FINAL = frozenset({"ended", "failed"})

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
            reason = (result or {}).get("Reason", "0")
            code, message = _AGENT_REASONS.get(str(reason), _AGENT_REASONS["0"])
            self._fail(a, code, message)
            return
        if a.state == "calling_agent":
            if a.customer_ended is not None:
                self._customer_gone(a, a.customer_ended)
            else:
                self._move(a, "calling_customer")

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
        if a.state == "calling_agent":
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
