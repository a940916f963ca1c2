"""The wallboard, live: feeds :class:`~gateway.panel.wallboard.Wallboard` from the bus, names
the queue members after the panel's users, and pushes a ``wallboard`` message to signed-in
supervisors and admins at most once a second, only when something changed.

Today's counters survive a restart: at start the feed counts today's queue calls from the call
log, and every call that ends is counted from its record too (once: see ``Wallboard``).

A ``wallboard`` message is the latest state, not an event: it is sent to the open tabs only,
without a sequence number and never into the replay buffer (where it would push out a
supervisor's own pop-ups); a supervisor's tab that (re)connects gets one fresh document.

``GET /panel/api/wallboard`` (supervisors, admins) answers the same document::

    {"now": 1796028610.0,
     "queues": [{"pbx", "queue", "waiting", "longest_wait", "longest_wait_since", "answered",
                 "answered_in_sl", "abandoned", "abandoned_short", "service_level",
                 "service_level_seconds", "average_speed_of_answer", "average_handle_time",
                 "members", "available", "on_call", "paused"}],
     "agents": [{"username", "display_name", "extensions", "queues", "state", "since", "reason",
                 "signed_in", "member"}],
     "calls": [<the call object of the call.* messages>]}

Times are epoch seconds; the browser shows live durations (time in state, call length, longest
wait) from ``since``/``started_at``/``answered_at``/``longest_wait_since`` against ``now``.

In a cluster only the PBX's owner reads its queue events: it shares its figures of each PBX
(queues and members) once a second when they changed (gateway/cluster/calls.py), and every
other instance's wall shows them for that PBX, with the calls in progress and the presence
they make, which the board shares the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.calls.events import CallEnded
from gateway.errors import ApiError
from gateway.lookup.numbers import display_format
from gateway.panel import wallboard as wb
from gateway.panel.aftercall import AFTER_CALL_REASON
from gateway.panel.board import AFTER_CALL_WORK
from gateway.panel.settings import PanelSettings
from gateway.push import messages as m
from gateway.store.calllog import queue_calls

log = logging.getLogger("gateway.panel.wallboard")

WALLBOARD = "wallboard"  # the websocket message type
PUSH_INTERVAL = 1.0  # at most one wallboard message a second
REFILL_BEFORE_MIDNIGHT = 6 * 3600.0  # calls started this long before midnight are read too
NAMES_REFRESH = 60.0  # users' extensions are re-read this often (centralita user edits them)
# the most active of a user's several phones is the one shown
_RANK = {
    wb.ON_CALL: 0,
    wb.RINGING: 1,
    wb.AFTER_CALL_WORK: 2,
    wb.AVAILABLE: 3,
    wb.PAUSED: 4,
    wb.SIGNED_OUT: 5,
}
_PRESENCE = {
    "available": wb.AVAILABLE,
    "paused": wb.PAUSED,
    "on_call": wb.ON_CALL,
    AFTER_CALL_WORK: wb.AFTER_CALL_WORK,
}


class WallboardFeed:
    """One :class:`Wallboard` per PBX, the users' names, and the throttled push."""

    def __init__(
        self,
        panel: Any,
        settings: PanelSettings | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.panel = panel
        self.settings = settings or panel.settings
        self.clock: Callable[[], float] = clock or getattr(panel, "clock", None) or time.time
        self.boards: dict[str, wb.Wallboard] = {}
        self.users: dict[str, dict[str, Any]] = {}  # username -> display_name, extensions
        self._presence: dict[str, tuple[str, float]] = {}  # username -> (state, since)
        self._last_key = ""
        self._unsubscribe: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._tabs: dict[str, int] = {}  # username -> open websockets, as last heard
        self.pushes = 0
        self.refilled = 0  # calls counted from the call log at start

    def _board(self, pbx: str) -> wb.Wallboard:
        b = self.boards.get(pbx)
        if b is None:
            s = self.settings
            b = self.boards[pbx] = wb.Wallboard(
                service_level_seconds=s.service_level_seconds,
                short_abandon_seconds=s.short_abandon_seconds,
                timezone=s.timezone,
            )
        return b

    # -- bus ---------------------------------------------------------------------------------

    def attach(self) -> None:
        if not self._unsubscribe:
            sub = self.panel.bus.subscribe
            self._unsubscribe = [
                sub(AmiEvent, self.on_ami),
                sub(ResyncSnapshot, self.on_resync),
                sub(CallEnded, self.on_ended),
            ]
            listeners = self.panel.hub.listeners
            listeners.append(self.on_connections)
            self._unsubscribe.append(lambda: listeners.remove(self.on_connections))

    def on_ami(self, e: AmiEvent) -> None:
        if e.frame.get("Event", "") in wb.EVENTS:
            self._board(e.pbx).feed(e.frame, wb.event_time(e.frame, e.received_at))

    def on_resync(self, e: ResyncSnapshot) -> None:
        self._board(e.pbx).resync(e.queues, e.at)

    def on_ended(self, e: CallEnded) -> None:
        """A queue call the live events missed part of (it began before a restart, or the
        link was down) is counted from its record; the rest are counted already."""
        if e.record.queue:
            self._board(e.pbx).count_logged(e.record.to_json(), self.clock())

    def on_connections(self, username: str, tabs: int) -> None:
        """A supervisor's tab connected: it gets the board as it is now (the wallboard's
        messages are not replayed, and nothing may change for a while on a quiet day)."""
        opened = tabs > self._tabs.get(username, 0)
        self._tabs[username] = tabs
        if tabs == 0:
            del self._tabs[username]
        agent = self.panel.board.agents.get(username)
        # a watcher (Board.watchers), looked up alone: every agent's tab passes here
        if opened and agent is not None and agent.signed_in and agent.role != "agent":
            self.panel.hub.publish([username], m.encode(WALLBOARD, self.snapshot()), replay=False)

    async def refill(self) -> int:
        """Count today's queue calls from the call log: the live counters start at zero with
        the process. Returns how many calls changed a figure."""
        now = self.clock()
        start, end = wb.day_bounds(now, ZoneInfo(self.settings.timezone))
        # a call that started before midnight may have been answered or ended today
        rows = await queue_calls(self.panel.db, start - REFILL_BEFORE_MIDNIGHT, end)
        counted = 0
        for i, r in enumerate(rows):
            if i and not i % 2000:
                await asyncio.sleep(0)  # a busy day is tens of thousands: let the loop breathe
            counted += self._board(str(r["pbx"])).count_logged(r, now)
        self.refilled += counted
        log.info("wallboard: %d calls of today counted from the call log", counted)
        return counted

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.attach()
        await self.load_users()
        try:
            await self.refill()
        except Exception:  # the wall then starts from zero; the daemon must start anyway
            log.exception("wallboard: today's figures could not be read from the call log")
        self._task = asyncio.create_task(self._run(), name="panel-wallboard")

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def lifecycle(self, _: web.Application) -> AsyncIterator[None]:
        await self.start()
        yield
        await self.stop()

    async def load_users(self) -> None:
        users = await self.panel.users.all()
        self.users = {
            u.username: {"display_name": u.display_name, "extensions": tuple(u.extensions)}
            for u in users
            if not getattr(u, "disabled", False)
        }

    async def _run(self) -> None:
        since_names = 0.0
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            try:
                since_names += PUSH_INTERVAL
                if since_names >= NAMES_REFRESH:
                    since_names = 0.0
                    await self.load_users()
                self.share()
                self.push()
            except Exception:  # the wall must not stop for one bad frame
                log.exception("wallboard: push failed")

    def push(self) -> bool:
        """Send the wallboard to the signed-in supervisors if it changed since the last one.

        Clustered, each instance sends its own to the supervisors signed in on it: the other
        instances' boards (a standby's has no queue figures) must not take turns on a wall."""
        watchers = self.panel.board.local_watchers()
        if not watchers:
            self._last_key = ""  # whoever signs in next gets a fresh one
            return False
        doc = self.snapshot()
        key = _change_key(doc)
        if key == self._last_key:
            return False
        self._last_key = key
        self.panel.hub.publish(watchers, m.encode(WALLBOARD, doc), replay=False)
        self.pushes += 1
        return True

    # -- the cluster's share -----------------------------------------------------------------

    def _shared(self) -> Any:
        """The panel's share of the calls (gateway/cluster/calls.py); None unclustered."""
        return getattr(getattr(self.panel, "shared_board", None), "calls", None)

    def share(self) -> None:
        """Clustered: hand this instance's figures of each PBX to the share, which writes
        them when they changed and this instance owns the PBX. ``longest_wait`` is left out
        (it grows every second; a reader works it out from ``longest_wait_since``)."""
        shared = self._shared()
        if shared is None:
            return
        remote = shared.remote_figures()
        now = self.clock()
        for pbx, b in self.boards.items():
            if pbx in remote:
                continue  # another instance owns it: what this one has of it is old
            queues = [{k: v for k, v in q.items() if k != "longest_wait"} for q in b.queues(now)]
            shared.publish_figures(pbx, {"queues": queues, "members": b.members(now)})

    def _figures(self, now: float) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Each PBX's (queues, members): this instance's own, or its owner's when another
        instance owns it."""
        out = {pbx: (b.queues(now), b.members(now)) for pbx, b in self.boards.items()}
        shared = self._shared()
        for pbx, doc in (shared.remote_figures() if shared is not None else {}).items():
            queues = []
            for q in doc["queues"]:
                since = q.get("longest_wait_since")
                wait = round(max(now - since, 0.0), 1) if since is not None else 0.0
                queues.append({**q, "longest_wait": wait})
            out[pbx] = (queues, doc["members"])
        return out

    # -- the document ------------------------------------------------------------------------

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        queues: list[dict[str, Any]] = []
        members: dict[str, dict[str, Any]] = {}
        for pbx, (pbx_queues, pbx_members) in sorted(self._figures(now).items()):
            for q in pbx_queues:
                queues.append({"pbx": pbx, **q})
            for ext, mem in pbx_members.items():
                old = members.get(ext)
                if old is None or _RANK[mem["state"]] < _RANK[old["state"]]:
                    members[ext] = mem
        return {
            "now": now,
            "queues": queues,
            "agents": self._agents(members, now),
            "calls": [self._call(c.to_json()) for c in self.panel.board.live_calls()],
        }

    def _call(self, call: dict[str, Any]) -> dict[str, Any]:
        """A call as the wall shows it: agents by name, the number as people read it."""
        exts = [call.get("answered_by")] if call.get("answered_by") else call.get("ringing") or []
        names = []
        for ext in exts:
            user = self._user_at(str(ext))
            names.append(
                (self.users.get(user, {}).get("display_name") or user) if user else str(ext)
            )
        number = call.get("number") or call.get("caller") or ""
        region = self.panel.cfg.lookup.default_region
        return {
            **call,
            "agent_names": names,
            "number_display": display_format(number, region) if number.startswith("+") else number,
        }

    def _user_at(self, ext: str) -> str | None:
        seated = self.panel.board.agents_at([ext])
        if seated:
            return str(seated[0])
        for name, u in sorted(self.users.items()):
            if ext in u["extensions"]:
                return name
        return None

    def _agents(self, members: dict[str, dict[str, Any]], now: float) -> list[dict[str, Any]]:
        board_agents = self.panel.board.agents
        out: dict[str, dict[str, Any]] = {}
        for ext, mem in members.items():
            user = self._user_at(ext)
            key = user or f"ext:{ext}"
            entry = {
                "username": user,
                "display_name": ext,
                "extensions": [ext],
                "queues": mem["queues"],
                "state": mem["state"],
                "since": mem["since"],
                "reason": mem["reason"],
                "signed_in": False,
                "member": True,
            }
            if user is not None:
                live = board_agents.get(user)
                entry["display_name"] = (
                    (live.display_name if live else "")
                    or self.users.get(user, {}).get("display_name")
                    or user
                )
                entry["signed_in"] = bool(live and live.signed_in)
                busy = live and (live.calls or live.shared_calls)
                if busy and entry["state"] in (wb.AVAILABLE, wb.AFTER_CALL_WORK):
                    entry["state"], entry["since"] = wb.ON_CALL, self._call_since(user, now)
                elif live and live.presence == AFTER_CALL_WORK and entry["state"] == wb.PAUSED:
                    entry["state"], entry["reason"] = wb.AFTER_CALL_WORK, ""
            else:
                entry["display_name"] = mem["member_name"] or ext
            if entry["state"] == wb.PAUSED and entry["reason"] == AFTER_CALL_REASON:
                # the panel's after-call work pauses the queues: it is wrap-up, not a break
                entry["state"], entry["reason"] = wb.AFTER_CALL_WORK, ""
            old = out.get(key)
            if old is None:
                out[key] = entry
            else:  # one user, several phones in the queues: the busiest shows
                old["extensions"] = sorted({*old["extensions"], ext})
                old["queues"] = sorted({*old["queues"], *entry["queues"]})
                if _RANK[entry["state"]] < _RANK[old["state"]]:
                    for k in ("state", "since", "reason"):
                        old[k] = entry[k]
        for name, live in board_agents.items():
            if name in out or not live.signed_in:
                continue
            state = _PRESENCE.get(live.presence, wb.SIGNED_OUT)
            seen = self._presence.get(name)
            since = seen[1] if seen and seen[0] == state else now
            if state == wb.ON_CALL:
                since = self._call_since(name, since)
            self._presence[name] = (state, since)
            out[name] = {
                "username": name,
                "display_name": live.display_name or name,
                "extensions": list(live.extensions),
                "queues": [],
                "state": state,
                "since": since,
                "reason": live.reason if state == wb.PAUSED else "",
                "signed_in": True,
                "member": False,
            }
        return sorted(
            out.values(), key=lambda a: (str(a["display_name"]).lower(), a["username"] or "")
        )

    def _call_since(self, username: str, default: float) -> float:
        board = self.panel.board
        live = board.agents.get(username)
        keys = {*live.calls, *live.shared_calls} if live else set()
        times = [c.answered_at or c.started_at for k in keys if (c := board.call(k)) is not None]
        return min(times) if times else default


def _change_key(doc: dict[str, Any]) -> str:
    """What must differ for a new push: everything but the clock-driven figures."""
    queues = [{k: v for k, v in q.items() if k != "longest_wait"} for q in doc["queues"]]
    return json.dumps([queues, doc["agents"], doc["calls"]], sort_keys=True, default=str)


# -- routes ------------------------------------------------------------------------------------

FEED: web.AppKey[WallboardFeed] = web.AppKey("wallboard", WallboardFeed)


async def get_wallboard(request: web.Request, s: Any) -> Any:
    if not s.role.sees_everyone:
        raise ApiError(403, "forbidden", "Only supervisors see the wallboard.")
    return request.app[FEED].snapshot()


def add_routes(app: web.Application, api: Callable[..., Any], panel: Any) -> None:
    """Create the feed on the app's panel, start it with the app, add its route."""
    feed = WallboardFeed(panel)
    feed.attach()
    app[FEED] = feed
    app.cleanup_ctx.append(feed.lifecycle)
    app.router.add_get("/panel/api/wallboard", api(get_wallboard))
