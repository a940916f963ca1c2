"""After-call work: a timed wrap-up state after each answered call, paused in the queues.

When an agent's answered call ends, the agent goes to ``after_call_work`` until
``panel.after_call_seconds`` have passed or the wrap-up of that call is saved, whichever comes
first; meanwhile their queue memberships are paused (QueuePause, reason "after-call work") so
the queue does not ring them while they write. Then they return to what they chose: available
(unpaused) or paused with their own reason.

A presence chosen while on a call (or during after-call work) is not lost and not applied
mid-call: it is kept as *pending* (shown on the board and to the agent) and applied when the
agent is free. Pure bookkeeping lives on the :class:`~gateway.panel.board.Board`; this module
decides the transitions and sends the queue actions, one agent's actions in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.panel.board import AVAILABLE, PAUSED, AgentState, Board

log = logging.getLogger("gateway.panel")

AFTER_CALL_REASON = "after-call work"
MESSAGE = "aftercall"  # websocket type, see docs/panel-websocket.md

# (extensions, paused, reason) -> a warning ("" when the PBX took it)
QueuePause = Callable[[tuple[str, ...], bool, str], Awaitable[str]]
Publish = Callable[[str, str, dict[str, Any]], None]  # (username, type, data)
PresenceChanged = Callable[[str], None]
Spawn = Callable[[Awaitable[Any], str], None]


class AfterCallWork:
    """Starts, ends and times the after-call work of every agent."""

    def __init__(
        self,
        board: Board,
        seconds: float,
        clock: Callable[[], float],
        queue_pause: QueuePause,
        publish: Publish,
        presence_changed: PresenceChanged,
        spawn: Spawn,
    ) -> None:
        self.board = board
        self.seconds = max(0.0, seconds)
        self.clock = clock
        self.queue_pause = queue_pause
        self.publish = publish
        self.presence_changed = presence_changed
        self.spawn = spawn
        self._locks: dict[str, asyncio.Lock] = {}
        self.warnings: list[str] = []  # the PBX refused a QueuePause (kept for the logs/tests)

    # -- transitions (synchronous: called from bus handlers and routes) -----------------------

    def call_ended(self, username: str, call_key: str) -> None:
        """``username`` talked on ``call_key``, which just ended."""
        agent = self.board.agents.get(username)
        if agent is None or not agent.signed_in or agent.calls:
            return  # still on another call: that call's end decides
        if self.seconds <= 0:
            if agent.pending:
                self._become_free(agent, "call_ended")
            return
        until = self.clock() + self.seconds
        agent.after_call_until, agent.after_call_call = until, call_key
        if agent.status != PAUSED or agent.pending:
            # already paused by choice before the call: the queue is paused, keep their reason
            self._queue(agent, True, AFTER_CALL_REASON)
        self.publish(
            username,
            MESSAGE,
            {"state": "started", "call_id": call_key, "until": until, "seconds": self.seconds},
        )
        self.presence_changed(username)

    def call_answered(self, username: str) -> None:
        """Another call was taken during after-call work: that call's end starts a new one."""
        agent = self.board.agents.get(username)
        if agent is not None and agent.after_call_until is not None:
            call_key = agent.after_call_call
            agent.after_call_until = agent.after_call_call = None
            self.publish(
                username, MESSAGE, {"state": "ended", "call_id": call_key, "reason": "next_call"}
            )

    def wrapped_up(self, username: str, call_key: str) -> bool:
        """The wrap-up of ``call_key`` was saved: its after-call work is over."""
        agent = self.board.agents.get(username)
        if agent is None or agent.after_call_call != call_key or agent.after_call_until is None:
            return False
        self._become_free(agent, "wrapup")
        return True

    def chose(self, username: str) -> bool:
        """The agent chose a presence (already on ``agent.status``). True when it applies
        now; False when it waits (pending) for the end of the call."""
        agent = self.board.agents.get(username)
        if agent is None:
            return True
        if agent.calls:
            agent.pending = True
            return False
        if agent.after_call_until is not None:
            agent.pending = False
            self._end(agent, "presence")  # the queue action is the caller's (set_presence)
            return True
        agent.pending = False
        return True

    def apply_restored(self, username: str) -> bool:
        """A presence chosen during a call before a restart of the gateway (read back from
        disk as pending): applied now, queues included, unless the agent is still on that
        call (then its end applies it, as usual). True when applied."""
        agent = self.board.agents.get(username)
        if agent is None or not agent.pending or agent.calls:
            return False
        self._become_free(agent, "restored")
        return True

    def restore_queues(self, username: str) -> None:
        """Send the agent's own choice to the queues again (paused with their reason, or
        not paused): a resync found an after-call pause the gateway no longer counts."""
        agent = self.board.agents.get(username)
        if agent is not None:
            self._queue(agent, agent.status == PAUSED, agent.reason)

    def pause_for_after_call(self, username: str) -> None:
        """Pause the agent's queues for the after-call work they are in (a resync found
        them unpaused: a restart of the PBX, or the pause never reached it)."""
        agent = self.board.agents.get(username)
        if agent is not None and agent.after_call_until is not None:
            self._queue(agent, True, AFTER_CALL_REASON)

    def signed_out(self, username: str) -> None:
        agent = self.board.agents.get(username)
        if agent is not None:
            agent.after_call_until = agent.after_call_call = None

    def tick(self, now: float | None = None) -> list[str]:
        """End every after-call work whose time is up; returns the agents freed."""
        now = self.clock() if now is None else now
        freed = []
        for agent in list(self.board.agents.values()):
            if agent.after_call_until is not None and agent.after_call_until <= now:
                self._become_free(agent, "timer")
                freed.append(agent.username)
        return freed

    def next_deadline(self) -> float | None:
        times = [a.after_call_until for a in self.board.agents.values() if a.after_call_until]
        return min(times) if times else None

    async def run(self) -> None:
        """The timer: wakes at the nearest deadline (at least once a second)."""
        while True:
            deadline = self.next_deadline()
            wait = 1.0 if deadline is None else min(1.0, max(0.05, deadline - self.clock()))
            await asyncio.sleep(wait)
            try:
                self.tick()
            except Exception:
                log.exception("panel: after-call work timer failed")

    # -- internals ---------------------------------------------------------------------------

    def _end(self, agent: AgentState, reason: str) -> None:
        call_key = agent.after_call_call
        agent.after_call_until = agent.after_call_call = None
        self.publish(
            agent.username,
            MESSAGE,
            {"state": "ended", "call_id": call_key, "reason": reason, "status": agent.status},
        )

    def _become_free(self, agent: AgentState, reason: str) -> None:
        """Back to what the agent chose, in the panel and in the queues."""
        if agent.after_call_until is not None:
            self._end(agent, reason)
        agent.pending = False
        if agent.status == PAUSED:
            self._queue(agent, True, agent.reason)
        else:
            agent.status = AVAILABLE
            self._queue(agent, False, "")
        self.presence_changed(agent.username)

    def _queue(self, agent: AgentState, paused: bool, reason: str) -> None:
        lock = self._locks.setdefault(agent.username, asyncio.Lock())
        extensions = agent.extensions

        async def apply() -> None:
            async with lock:  # one agent's pause and unpause reach the PBX in order
                warning = await self.queue_pause(extensions, paused, reason)
                if warning:
                    self.warnings.append(warning)

        self.spawn(apply(), f"panel-aftercall-{agent.username}")
