"""The live picture the panel shows: who sits at which extension, their presence, calls in progress.

Pure (no I/O, no asyncio, no clock): the panel service feeds it sign-ins and the tracker's call
events; it answers who must hear about each event and what the supervisors' board shows.

In a cluster (docs/scale-out.md) the board also holds what other instances share through
Redis: their sign-ins (``seat_remote``) and the calls in progress of the PBXs they own
(``share_call``, ``share_after_call``: gateway/cluster/calls.py). Those calls are kept apart
from ``calls`` (this instance's own, from its tracker): they are shown (``snapshot``,
``calls_of``, the presence they make) but never drive this instance's pop-ups or after-call
work, which are the PBX owner's. A ``listener`` hears of every change to this instance's own
calls, so that the share can publish them off the pop-up's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.calls.events import CallAnswered, CallEnded, CallRinging

AVAILABLE, PAUSED, ON_CALL, OFFLINE = "available", "paused", "on_call", "offline"
AFTER_CALL_WORK = "after_call_work"  # wrap-up time after an answered call (aftercall.py)
_UNSEEN_KEPT = 1000  # answers of calls never seen ringing, kept until the next resync


@dataclass(slots=True)
class AgentState:
    username: str
    display_name: str
    role: str
    extensions: tuple[str, ...] = ()
    status: str = AVAILABLE  # what the agent chose: available or paused
    reason: str = ""
    signed_in: bool = False
    calls: set[str] = field(default_factory=set)  # call keys the agent is talking on
    # after-call work: until when, and for which call (its wrap-up ends it early)
    after_call_until: float | None = None
    after_call_call: str | None = None
    # the agent chose ``status`` while on a call or in after-call work: applied when free
    pending: bool = False
    # a supervisor listening to this agent's call: who and how (listen, whisper, barge)
    spied_by: str | None = None
    spy_mode: str = ""
    # when ``status``/``reason`` were chosen (the gateway's clock): across instances the
    # latest choice wins (gateway/cluster/board.py)
    status_at: float = 0.0
    # in a cluster, what the owners of other PBXs share (gateway/cluster/calls.py): the keys
    # of their calls this agent talks on, and the after-call work one of them started
    shared_calls: frozenset[str] = frozenset()
    shared_after_call: tuple[float, str | None] | None = None

    @property
    def presence(self) -> str:
        if not self.signed_in:
            return OFFLINE
        if self.calls or self.shared_calls:
            return ON_CALL
        if self.after_call_until is not None or self.shared_after_call is not None:
            return AFTER_CALL_WORK
        return self.status

    @property
    def after_call(self) -> tuple[float, str | None] | None:
        """(until, call) of the after-call work the agent is in: this instance's, else the one
        a PBX owner elsewhere shares."""
        if self.after_call_until is not None:
            return self.after_call_until, self.after_call_call
        return self.shared_after_call

    def to_json(self) -> dict[str, Any]:
        presence = self.presence
        acw = self.after_call if presence == AFTER_CALL_WORK else None
        return {
            "username": self.username,
            "display_name": self.display_name or self.username,
            "role": self.role,
            "extensions": list(self.extensions),
            "status": presence,
            "reason": self.reason if presence == PAUSED else "",
            "until": acw[0] if acw else None,
            "after_call_call": acw[1] if acw else None,
            # what the agent chose while busy, shown as "pending" until it applies
            "pending": (
                {"status": self.status, "reason": self.reason}
                if self.pending and presence in (ON_CALL, AFTER_CALL_WORK)
                else None
            ),
            "spy": {"by": self.spied_by, "mode": self.spy_mode} if self.spied_by else None,
        }


@dataclass(frozen=True, slots=True)
class Seat:
    """One instance's sign-in of an agent: as whom, in which role, at which extensions."""

    display_name: str
    role: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RemoteSeat:
    """An agent signed in on another instance of a cluster, and the presence chosen there."""

    seat: Seat
    status: str = AVAILABLE
    reason: str = ""
    status_at: float = 0.0


@dataclass(slots=True)
class LiveCall:
    key: str  # "<pbx>:<linkedid>", the call log's id
    pbx: str
    linkedid: str
    direction: str
    caller: str | None
    caller_name: str | None
    did: str | None
    dialed: str | None
    number: str | None  # the outside party: the caller in, the dialed number out
    queue: str | None
    click_to_call: bool
    call_id: str | None
    started_at: float
    state: str = "ringing"
    ringing: tuple[str, ...] = ()
    ringing_agents: tuple[str, ...] = ()
    answered_by: str | None = None
    answered_agent: str | None = None
    answered_at: float | None = None
    involved: set[str] = field(default_factory=set)  # every user who was told of this call
    card: dict[str, Any] | None = None  # the caller's card, once the pop-up's lookup found it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "pbx": self.pbx,
            "linkedid": self.linkedid,
            "direction": self.direction,
            "caller": self.caller,
            "caller_name": self.caller_name,
            "did": self.did,
            "dialed": self.dialed,
            "number": self.number,
            "queue": self.queue,
            "click_to_call": self.click_to_call,
            "call_id": self.call_id,
            "started_at": self.started_at,
            "state": self.state,
            "ringing": list(self.ringing),
            "agents": list(self.ringing_agents),
            "answered_by": self.answered_by,
            "answered_agent": self.answered_agent,
            "answered_at": self.answered_at,
        }


class CallListener(Protocol):
    """Told of every change to the board's own calls (gateway/cluster/calls.py publishes them).
    Called synchronously on the pop-up's path: it must only note the change."""

    def call_changed(self, key: str) -> None: ...

    def resynced(self, pbx: str) -> None: ...


class Board:
    """Agents and live calls; every method returns who must be told about the change."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentState] = {}
        self.calls: dict[str, LiveCall] = {}
        self._at_ext: dict[str, set[str]] = {}
        # asked on every call message: kept rather than found by walking every agent (1,000
        # of them, ~0.1 ms a message); both change only here (sign-in/out, answer, end)
        self._watchers: list[str] | None = None  # None: to be listed again
        self._on_call: dict[str, set[str]] = {}  # call key -> agents talking on it
        # an agent is seated while signed in on this instance (``_local``) or, in a cluster, on
        # any other one (``_remote``: instance -> agent -> seat): the union of them all
        self._local: dict[str, Seat] = {}
        self._remote: dict[str, dict[str, Seat]] = {}
        self._local_watchers: list[str] | None = None
        # the calls of PBXs another instance owns, as it shares them: pbx -> key -> call; who
        # talks on each (key -> agents, and agent -> keys); after-call work the end of one of
        # them started: pbx -> agent -> (until, call)
        self._shared: dict[str, dict[str, LiveCall]] = {}
        self._shared_talking: dict[str, tuple[str, ...]] = {}
        self._shared_on_call: dict[str, set[str]] = {}
        self._shared_acw: dict[str, dict[str, tuple[float, str | None]]] = {}
        self.listener: CallListener | None = None
        # answers of calls never seen ringing, until the resync whose replay they may be
        self._unseen: dict[str, CallAnswered] = {}

    # -- agents ------------------------------------------------------------------------------

    def sign_in(
        self, username: str, display_name: str, role: str, extensions: tuple[str, ...]
    ) -> AgentState:
        """Seat ``username`` on this instance (a second sign-in replaces the first's seat)."""
        self._local[username] = Seat(display_name, role, extensions)
        return self._reseat(username)

    def sign_out(self, username: str) -> AgentState | None:
        """Take this instance's seat away; an agent seated on another instance stays seated."""
        if username not in self.agents:
            return None
        self._local.pop(username, None)
        return self._reseat(username)

    def local_seat(self, username: str) -> Seat | None:
        """The agent's sign-in on this instance, if any (not another instance's)."""
        return self._local.get(username)

    def local_agents(self) -> list[str]:
        """Agents signed in on this instance."""
        return list(self._local)

    # -- other instances' seats (gateway/cluster/board.py) -----------------------------------

    def seat_remote(self, instance: str, username: str, remote: RemoteSeat | None) -> bool:
        """Seat (or, ``None``, unseat) ``username`` as signed in on ``instance``, and take the
        presence chosen there if it is newer than what this board has. True when what the
        board shows of the agent changed."""
        seats = self._remote.get(instance, {})
        agent = self.agents.get(username)
        before = agent.to_json() if agent is not None else None
        if remote is None:
            if seats.pop(username, None) is None:
                return False
        else:
            seats = self._remote.setdefault(instance, seats)
            seats[username] = remote.seat
        agent = self._reseat(username)
        if remote is not None and remote.status_at > agent.status_at:
            agent.status, agent.reason, agent.status_at = (
                remote.status, remote.reason, remote.status_at,
            )  # fmt: skip
        if not seats:
            self._remote.pop(instance, None)
        return agent.to_json() != before

    def drop_instance(self, instance: str) -> list[str]:
        """Forget every seat of ``instance`` (it died, or cannot be heard); returns the agents
        this unseated."""
        seats = self._remote.pop(instance, {})
        gone = []
        for username in seats:
            if not self._reseat(username).signed_in:
                gone.append(username)
        return gone

    def remote_instances(self) -> list[str]:
        return list(self._remote)

    def remote_seats(self, instance: str) -> dict[str, Seat]:
        return dict(self._remote.get(instance, {}))

    def _reseat(self, username: str) -> AgentState:
        """Square the agent's seat with every instance's sign-in: this instance's name and
        role first, then the other instances' (in name order); the extensions of them all."""
        seats = [self._local[username]] if username in self._local else []
        seats += [s[username] for _, s in sorted(self._remote.items()) if username in s]
        agent = self.agents.get(username)
        if agent is None:
            first = seats[0] if seats else Seat(username, "agent", ())
            agent = self.agents[username] = AgentState(username, first.display_name, first.role)
            self._overlay(username)
        self._unseat(agent)
        self._watchers = self._local_watchers = None
        if not seats:
            agent.signed_in = False
            return agent
        extensions: list[str] = []
        for seat in seats:
            extensions += [e for e in seat.extensions if e not in extensions]
        agent.display_name, agent.role = seats[0].display_name, seats[0].role
        agent.extensions = tuple(extensions)
        agent.signed_in = True
        for ext in agent.extensions:
            self._at_ext.setdefault(ext, set()).add(username)
        return agent

    def _unseat(self, agent: AgentState) -> None:
        for ext in agent.extensions:
            seated = self._at_ext.get(ext)
            if seated:
                seated.discard(agent.username)
                if not seated:
                    del self._at_ext[ext]

    def set_status(
        self, username: str, status: str, reason: str = "", at: float = 0.0
    ) -> AgentState | None:
        """The presence the agent chose, ``at`` (the gateway's clock) when they chose it.

        A choice made here comes after every choice this board has seen, even one another
        instance stamped with a clock running ahead: it is stamped just after it, if need be,
        so that the other instances take it (the latest choice wins)."""
        agent = self.agents.get(username)
        if agent is None:
            return None
        agent.status, agent.reason = status, reason
        agent.status_at = max(at, agent.status_at + 0.001) if agent.status_at else at
        return agent

    def agents_at(self, extensions: tuple[str, ...] | list[str]) -> list[str]:
        out: list[str] = []
        for ext in extensions:
            for name in sorted(self._at_ext.get(ext, ())):
                if name not in out:
                    out.append(name)
        return out

    def watchers(self) -> list[str]:
        """Signed-in supervisors and admins: they see every call and every presence change."""
        if self._watchers is None:
            self._watchers = [
                a.username for a in self.agents.values() if a.signed_in and a.role != "agent"
            ]
        return list(self._watchers)

    def local_watchers(self) -> list[str]:
        """The supervisors and admins signed in on this instance (all of them, unclustered)."""
        if self._local_watchers is None:
            self._local_watchers = [n for n, s in self._local.items() if s.role != "agent"]
        return list(self._local_watchers)

    # -- calls -------------------------------------------------------------------------------

    def ringing(self, e: CallRinging) -> tuple[LiveCall, bool]:
        """Apply a ring; returns the call and whether it is new."""
        key = f"{e.pbx}:{e.linkedid}"
        call = self.calls.get(key)
        new = call is None
        self._unseen.pop(key, None)
        if call is None:
            call = self.calls[key] = LiveCall(
                key=key,
                pbx=e.pbx,
                linkedid=e.linkedid,
                direction=e.direction.value,
                caller=e.caller,
                # out, the caller ID is the agent's own: the pop-up's "caller ID" would show the
                # agent their own name beside the number they dialed
                caller_name=None if e.direction.value == "outbound" else e.caller_name,
                did=e.did,
                dialed=e.dialed,
                number=e.number,
                queue=e.queue,
                click_to_call=e.click_to_call,
                call_id=e.call_id,
                started_at=e.at,
            )
        call.queue = call.queue or e.queue
        call.call_id = call.call_id or e.call_id
        call.ringing = tuple(e.ringing)
        call.ringing_agents = tuple(self.agents_at(e.ringing))
        call.involved.update(call.ringing_agents)
        if self.listener is not None:
            self.listener.call_changed(key)
        return call, new

    def answered(self, e: CallAnswered) -> tuple[LiveCall | None, list[str]]:
        """Apply an answer; returns the call and the agents whose presence changed.

        An answer of a call this board never saw ring is kept aside: when it comes from the
        replay of a resync (the tracker joined the call in progress after a restart, or a
        cluster's takeover of the PBX), :meth:`resynced`, which follows the replay, puts the
        call on the board; otherwise it is dropped, as it always was."""
        key = f"{e.pbx}:{e.linkedid}"
        call = self.calls.get(key)
        if call is None:
            self._unseen[key] = e
            while len(self._unseen) > _UNSEEN_KEPT:
                del self._unseen[next(iter(self._unseen))]
            return None, []
        call.state = "answered"
        call.call_id = call.call_id or e.call_id
        call.answered_by = e.by
        call.answered_at = call.answered_at or e.at
        call.ringing = ()
        takers = self.agents_at([e.by]) if e.by else []
        call.answered_agent = takers[0] if takers else None
        call.ringing_agents = ()
        call.involved.update(takers)
        for name in takers:
            self.agents[name].calls.add(call.key)
        if takers:
            self._on_call.setdefault(call.key, set()).update(takers)
        if self.listener is not None:
            self.listener.call_changed(call.key)
        return call, takers

    def ended(self, e: CallEnded) -> tuple[LiveCall | None, list[str]]:
        """Forget the call; returns it (None if never seen ringing) and the agents freed."""
        key = f"{e.pbx}:{e.linkedid}"
        call = self.calls.pop(key, None)
        self._unseen.pop(key, None)
        talking = self._on_call.pop(key, set())
        # in the board's order of agents, as a walk over them all would list them
        freed = list(talking) if len(talking) < 2 else [a for a in self.agents if a in talking]
        for name in freed:
            self.agents[name].calls.discard(key)
        if call is not None:
            call.state = "ended"
            if self.listener is not None:
                self.listener.call_changed(key)
        return call, freed

    def set_card(self, key: str, card: dict[str, Any] | None) -> None:
        """The caller's card the pop-up of ``key`` carried (kept for the share)."""
        call = self.calls.get(key)
        if call is not None and card is not None:
            call.card = card
            if self.listener is not None:
                self.listener.call_changed(key)

    def resynced(self, pbx: str) -> list[str]:
        """The PBX's live calls were read again (a (re)connect) and replayed: the answered
        calls the replay joined in progress go on the board (their agents on a call), and what
        the board holds of the PBX is its whole picture now. Returns the agents now on a call
        of a call joined so."""
        joined = [e for e in self._unseen.values() if e.pbx == pbx]
        self._unseen = {k: e for k, e in self._unseen.items() if e.pbx != pbx}
        busy: list[str] = []
        for e in joined:
            outbound = e.direction.value == "outbound"
            key = f"{e.pbx}:{e.linkedid}"
            if key in self.calls:
                continue
            self.calls[key] = LiveCall(
                key=key,
                pbx=e.pbx,
                linkedid=e.linkedid,
                direction=e.direction.value,
                caller=e.caller,
                caller_name=None,  # (not in an answer; the call log has it at the end)
                did=e.did,
                dialed=e.dialed,
                number=e.dialed if outbound else e.caller,
                queue=e.queue,
                click_to_call=e.click_to_call,
                call_id=e.call_id,
                started_at=e.at,  # the answer's time: its ring was not seen
            )
            busy += [n for n in self.answered(e)[1] if n not in busy]
        if self.listener is not None:
            self.listener.resynced(pbx)
        return busy

    def talking(self, key: str) -> list[str]:
        """The agents talking on this instance's call ``key``, by name."""
        return sorted(self._on_call.get(key, ()))

    def forget_calls(self, pbx: str) -> list[str]:
        """Drop this instance's calls of ``pbx``: another instance owns it now, and this one's
        tracker was reset (those calls end there, not here). Returns the agents freed."""
        freed: set[str] = set()
        for key in [k for k, c in self.calls.items() if c.pbx == pbx]:
            del self.calls[key]
            for name in self._on_call.pop(key, ()):
                agent = self.agents.get(name)
                if agent is not None:
                    agent.calls.discard(key)
                    freed.add(name)
        return sorted(freed)

    def snapshot(self) -> dict[str, Any]:
        return {
            "agents": [a.to_json() for a in sorted(self.agents.values(), key=_agent_order)],
            "calls": [c.to_json() for c in self.live_calls()],
        }

    def calls_of(self, username: str) -> list[LiveCall]:
        return [c for c in self.live_calls() if username in c.involved]

    def live_calls(self) -> list[LiveCall]:
        """Every call in progress, this instance's and those other instances share (a key
        both have is this instance's), oldest first."""
        calls = list(self.calls.values())
        for shared in self._shared.values():
            calls += [c for k, c in shared.items() if k not in self.calls]
        return sorted(calls, key=_call_order)

    def call(self, key: str) -> LiveCall | None:
        """The call ``key``, this instance's or a shared one."""
        call = self.calls.get(key)
        if call is None:
            for shared in self._shared.values():
                call = shared.get(key)
                if call is not None:
                    break
        return call

    # -- other instances' calls (gateway/cluster/calls.py) -----------------------------------

    def share_call(
        self, pbx: str, key: str, call: LiveCall | None, talking: tuple[str, ...] = ()
    ) -> None:
        """Hold (or, ``None``, forget) a call of ``pbx`` as its owner shares it, with the
        agents talking on it."""
        calls = self._shared.setdefault(pbx, {})
        if call is None:
            calls.pop(key, None)
            talking = ()
        else:
            calls[key] = call
        if not calls:
            del self._shared[pbx]
        before = self._shared_talking.pop(key, ())
        if talking:
            self._shared_talking[key] = talking
        for name in set(before) - set(talking):
            keys = self._shared_on_call.get(name)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._shared_on_call[name]
            self._overlay(name)
        for name in talking:
            self._shared_on_call.setdefault(name, set()).add(key)
            self._overlay(name)

    def share_after_call(
        self, pbx: str, username: str, acw: tuple[float, str | None] | None
    ) -> None:
        """Hold (or forget) the after-call work of ``username`` the owner of ``pbx`` shares."""
        held = self._shared_acw.setdefault(pbx, {})
        if acw is None:
            held.pop(username, None)
        else:
            held[username] = acw
        if not held:
            del self._shared_acw[pbx]
        self._overlay(username)

    def drop_shared(self, pbx: str) -> None:
        """Forget everything shared of ``pbx`` (its owner's share expired, or this instance
        owns it now)."""
        for key in list(self._shared.get(pbx, {})):
            self.share_call(pbx, key, None)
        for name in list(self._shared_acw.get(pbx, {})):
            self.share_after_call(pbx, name, None)

    def shared_pbxs(self) -> list[str]:
        """The PBXs whose calls or after-call work another instance shares here."""
        return sorted({*self._shared, *self._shared_acw})

    def shared_calls(self, pbx: str) -> dict[str, LiveCall]:
        return dict(self._shared.get(pbx, {}))

    def _overlay(self, username: str) -> None:
        agent = self.agents.get(username)
        if agent is None:
            return
        agent.shared_calls = frozenset(self._shared_on_call.get(username, ()))
        acws = [h[username] for h in self._shared_acw.values() if username in h]
        agent.shared_after_call = max(acws, key=lambda a: a[0]) if acws else None


def _agent_order(a: AgentState) -> tuple[bool, str]:
    return (not a.signed_in, a.username)


def _call_order(c: LiveCall) -> float:
    return c.started_at
