"""Call controls from the panel, through AMI: hang up, transfer, hold/resume, listen in.

An agent controls only their own live call: the one they answered, or the click-to-call they
placed. The channels of that call are asked from the PBX when the agent acts
(``CoreShowChannels``, filtered on the call's Linkedid): the agent's leg is the channel of their
extension, the customer's leg the one sharing its bridge. Then:

* hang up: ``Hangup`` of the agent's leg (Asterisk ends the bridged customer leg with it);
* blind transfer: ``BlindTransfer`` of the agent's leg to ``<to>@panel.transfer_context``;
* attended transfer: ``Atxfer`` (needs the ``atxfer`` feature code in features.conf): the
  customer waits on hold while the agent's leg calls the target (a ``Local/<to>@<context>``
  consultation leg). The agent then completes it (``Hangup`` of the agent's leg: Asterisk hands
  the customer to the target, or to the still-ringing target as a blind transfer) or cancels it
  (``CancelAtxfer``, the ``atxferabort`` feature code; where the PBX refuses it, a ``Hangup`` of
  the consultation leg, which also brings the agent back to the customer). A consultation ends
  on its own when the target hangs up, the transfer completes (``AttendedTransfer``) or the
  agent's phone hangs up; the agent's tab is told (a ``controls`` message);
* hold: a dual ``Redirect``: the customer to ``hold@panel.hold_context`` (music on hold), the
  agent to ``wait@panel.hold_context``; resume: ``Bridge`` of the two legs again.

A transfer target is an internal extension (digits only) or a number checked exactly like
click-to-call (dial-string injection refused, E.164, do-not-call honoured).

Supervisors listen, whisper or barge (``POST /panel/api/spy``): an ``Originate`` of their own
phone into ``<mode>@panel.spy_context``, whose ``ChanSpy`` (options ``q``, ``w`` whisper, ``B``
barge) listens to the agent's leg named in ``CENTRALITA_SPY``. The board marks the agent as
listened to until the supervisor hangs up (the ``Hangup`` of that channel), the Originate fails
or the agent's call ends.

In a cluster (a ``relay``: gateway/cluster/relay.py) only the instance that owns a PBX's link
knows its live calls and can act on them, so a control asked of another instance is carried
out there: the request names the agent (name, role, extensions: never their session) and the
owner answers exactly as it answers its own agents (``not_your_call``, ``already_on_hold``...).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from gateway.ami.events import AmiEvent
from gateway.cluster.relay import NoOwner, RelayLost
from gateway.config import GatewayConfig
from gateway.errors import AmiError, AmiNotConnected, ApiError
from gateway.lookup.numbers import to_ascii_digits
from gateway.panel.board import Board, LiveCall
from gateway.panel.sessions import Session
from gateway.panel.settings import PanelSettings
from gateway.panel.users import Role

if TYPE_CHECKING:  # redis is imported only by a clustered gateway
    from gateway.cluster.relay import OwnerRelay

log = logging.getLogger("gateway.panel")

# a channel name as Asterisk writes it; anything else from the PBX is not put into an action
_CHANNEL = re.compile(r"^[A-Za-z0-9_]+/[A-Za-z0-9_.@:+~-]{1,120}$")
# the consultation leg an AMI Atxfer dials: Local/<to>@<context>-<id>;1 (its ;2 half rings)
_LOCAL = re.compile(r"^Local/[A-Za-z0-9_.@:+~-]{1,120};1$")
_EXTENSION = re.compile(r"^[0-9]{2,6}$")
_EXTENSION_ANY = re.compile(r"[0-9]{1,20}")  # a signed-in agent's (it goes into channel names)
SPY_VARIABLE = "CENTRALITA_SPY"
PBX_DOWN = "The phone system is not reachable right now."
# the PBX's owner took the request and never answered (it died on it): done or not, unknown
NO_ANSWER = "The phone system took the request but did not confirm it in time; check your phone."


class TransferBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /panel/api/calls/{call_id}/transfer``."""

    to: str
    mode: Literal["blind", "attended"] = "blind"


class SpyBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /panel/api/spy``."""

    agent: str
    mode: Literal["listen", "whisper", "barge"] = "listen"


@dataclass(slots=True)
class Legs:
    """The two channels of an agent's call, as the PBX names them now."""

    agent: str
    customer: str | None


@dataclass(slots=True)
class Consultation:
    """An attended transfer in progress: the agent talks to ``target`` while the customer waits."""

    username: str
    pbx: str
    agent: str  # the transferer's channel: its Hangup completes the transfer
    target: str
    context: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return {"to": self.target, "since": self.since}

    def is_consultation_leg(self, channel: str) -> bool:
        """``Local/<target>@<context>-<id>;1|2``: the leg Atxfer dialed the target on."""
        return channel.startswith(f"Local/{self.target}@{self.context}-")


CheckNumber = Callable[[Any], Awaitable[str]]
Control = Callable[[Session, str, Any], Awaitable[dict[str, Any]]]  # (session, call id, body)
PresenceChanged = Callable[[str], None]
Publish = Callable[[str, str, dict[str, Any]], None]  # (username, type, data)
MESSAGE = "controls"  # websocket type: an attended transfer started or ended


class CallControls:
    """The agent's own call through AMI, and the supervisors' listen/whisper/barge."""

    def __init__(
        self,
        board: Board,
        links: Mapping[str, Any],
        cfg: GatewayConfig,
        settings: PanelSettings,
        check_number: CheckNumber,
        owner_of: Callable[[str], str | None],
        presence_changed: PresenceChanged,
        publish: Publish | None = None,
        clock: Callable[[], float] = time.time,
        relay: OwnerRelay | None = None,
    ) -> None:
        self.board = board
        self.links = links
        self.cfg = cfg
        self.settings = settings
        self.check_number = check_number
        self.owner_of = owner_of  # click-to-call id -> the agent who placed it
        self.presence_changed = presence_changed
        self.publish = publish or (lambda user, type_, data: None)
        self.clock = clock
        self.held: dict[str, Legs] = {}  # call key -> legs parked by hold
        self.spies: dict[str, str] = {}  # supervisor's ChanSpy channel -> agent listened to
        self.consulting: dict[str, Consultation] = {}  # call key -> attended transfer
        self._tasks: set[asyncio.Task[None]] = set()
        self._controls: dict[str, Control] = {
            "hangup": lambda s, call_id, _: self._hangup(s, call_id),
            "transfer": self._transfer,
            "transfer_complete": lambda s, call_id, _: self._complete_transfer(s, call_id),
            "transfer_cancel": lambda s, call_id, _: self._cancel_transfer(s, call_id),
            "hold": lambda s, call_id, _: self._hold(s, call_id),
            "resume": lambda s, call_id, _: self._resume(s, call_id),
        }
        # clustered: controls of calls on a PBX another instance owns are carried out there
        self.relay = relay
        if relay is not None:
            relay.handle("control", self._serve)

    # -- where a control runs ----------------------------------------------------------------

    async def hangup(self, session: Session, call_id: str) -> dict[str, Any]:
        return await self._route("hangup", session, call_id, None)

    async def transfer(self, session: Session, call_id: str, body: TransferBody) -> dict[str, Any]:
        return await self._route("transfer", session, call_id, body)

    async def complete_transfer(self, session: Session, call_id: str) -> dict[str, Any]:
        return await self._route("transfer_complete", session, call_id, None)

    async def cancel_transfer(self, session: Session, call_id: str) -> dict[str, Any]:
        return await self._route("transfer_cancel", session, call_id, None)

    async def hold(self, session: Session, call_id: str) -> dict[str, Any]:
        return await self._route("hold", session, call_id, None)

    async def resume(self, session: Session, call_id: str) -> dict[str, Any]:
        return await self._route("resume", session, call_id, None)

    async def spy(self, session: Session, body: SpyBody) -> dict[str, Any]:
        """Here when this instance owns every PBX; otherwise on the PBX of the agent's call
        when this board knows it, else on each PBX in turn until one has the agent on a call."""
        if self.relay is None or all(self.relay.local(p) for p in self.links):
            return await self._spy(session, body)
        agent = self.board.agents.get(body.agent.strip().lower())
        keys = sorted(agent.calls) if agent is not None else []
        call = next((self.board.calls[k] for k in keys if k in self.board.calls), None)
        here = [p for p in self.links if self.relay.local(p)]
        pbxs = [call.pbx] if call is not None else here + [p for p in self.links if p not in here]
        last = ApiError(409, "agent_not_on_call", "That agent is not on a call now.")
        for pbx in pbxs:
            try:
                if self.relay.local(pbx):
                    return await self._spy(session, body)
                return await self._forward(pbx, "spy", session, "", body)
            except ApiError as e:
                if e.error_id not in ("agent_not_on_call", "pbx_down"):
                    raise
                last = e
        raise last

    async def _route(self, op: str, session: Session, call_id: str, body: Any) -> dict[str, Any]:
        pbx = call_id.partition(":")[0]  # a call's key is <pbx>:<linkedid>
        if self.relay is None or pbx not in self.links or self.relay.local(pbx):
            return await self._controls[op](session, call_id, body)
        return await self._forward(pbx, op, session, call_id, body)

    async def _forward(
        self, pbx: str, op: str, session: Session, call_id: str, body: Any
    ) -> dict[str, Any]:
        """The control carried out by the instance that owns ``pbx``."""
        assert self.relay is not None
        request = {
            "op": op,
            "session": {
                "username": session.username,
                "display_name": session.display_name,
                "role": session.role.value,
                "extensions": list(session.extensions),
                "expires_at": session.expires_at,
            },
            "call_id": call_id,
            "body": msgspec.to_builtins(body) if body is not None else None,
        }
        timeout = next((p.action_timeout for p in self.cfg.pbx if p.name == pbx), 5.0)
        try:
            # the owner sends up to three actions (the channels, then the control)
            result = await self.relay.call(pbx, "control", request, within=3 * timeout + 1)
        except NoOwner:
            raise ApiError(503, "pbx_down", PBX_DOWN) from None
        except RelayLost:
            raise ApiError(504, "pbx_no_answer", NO_ANSWER) from None
        if not isinstance(result, dict):
            raise ApiError(500, "internal", "internal error; see the gateway log")
        return result

    async def _serve(self, pbx: str, request: dict[str, Any]) -> dict[str, Any]:
        """Another instance's control, for an agent it checked the session of: answered as
        this instance answers its own agents."""
        op, call_id, body = request.get("op"), request.get("call_id"), request.get("body")
        session = _session(request.get("session"))
        if session is None or not isinstance(call_id, str) or len(call_id) > 200:
            raise ApiError(400, "bad_request", "That call control request is not valid.")
        try:
            if op == "spy":
                return await self._spy(session, msgspec.convert(body, SpyBody))
            if op == "transfer":
                body = msgspec.convert(body, TransferBody)
        except msgspec.ValidationError as e:
            raise ApiError(400, "bad_request", f"That call control is not valid: {e}") from None
        control = self._controls.get(op) if isinstance(op, str) else None
        if control is None:
            raise ApiError(400, "bad_request", "That call control request is not valid.")
        return await control(session, call_id, body)

    # -- the agent's own call ----------------------------------------------------------------

    def own_call(self, session: Session, call_id: str) -> tuple[LiveCall, str]:
        """The live call and the extension the agent is on, or 404/403."""
        call = self.board.calls.get(call_id)
        if call is None:
            raise ApiError(404, "no_live_call", "This call is not in progress.")
        if call.answered_agent == session.username and call.answered_by:
            return call, call.answered_by
        placed = call.call_id and self.owner_of(call.call_id) == session.username
        if placed and session.extensions:
            return call, session.extensions[0]
        raise ApiError(403, "not_your_call", "Only the agent on this call can control it.")

    async def _hangup(self, session: Session, call_id: str) -> dict[str, Any]:
        call, ext = self.own_call(session, call_id)
        legs = await self._legs(call, ext)
        await self._send(call, {"Action": "Hangup", "Channel": legs.agent})
        self.held.pop(call.key, None)
        return {"call_id": call.key, "action": "hangup", "ok": True}

    async def _transfer(self, session: Session, call_id: str, body: TransferBody) -> dict[str, Any]:
        call, ext = self.own_call(session, call_id)
        if call.state != "answered":
            raise ApiError(409, "not_answered", "Only an answered call can be transferred.")
        self._not_consulting(call)
        target = await self._target(body.to)
        if target == ext:
            raise ApiError(400, "bad_target", "That is your own extension.")
        legs = await self._legs(call, ext)
        context = self.settings.transfer_context
        if body.mode == "blind":
            action = {"Action": "BlindTransfer", "Channel": legs.agent}
        else:
            # Asterisk answers "Atxfer successfully queued"; panoramisk takes any "...successfully
            # queued" for an async Originate's event list and, without an Async header, fails
            # on it (the action then times out): Async false says it is a single answer
            action = {"Action": "Atxfer", "Channel": legs.agent, "Async": "false"}
        action.update({"Context": context, "Exten": target})
        await self._send(call, action)
        if body.mode == "blind":
            return {"call_id": call.key, "action": "transfer", "mode": body.mode, "to": target}
        now = self.clock()
        consult = Consultation(session.username, call.pbx, legs.agent, target, context, now)
        self.consulting[call.key] = consult
        self._tell(consult, call.key, "started")
        return {
            "call_id": call.key,
            "action": "transfer",
            "mode": body.mode,
            "to": target,
            "consulting": consult.to_json(),
        }

    async def _complete_transfer(self, session: Session, call_id: str) -> dict[str, Any]:
        """The customer goes to the target: the agent's leg hangs up, as on the phone."""
        call, _ = self.own_call(session, call_id)
        consult = self._consultation(call)
        await self._send(call, {"Action": "Hangup", "Channel": consult.agent})
        self._over(call.key, "completed")
        return {"call_id": call.key, "action": "transfer_complete", "to": consult.target}

    async def _cancel_transfer(self, session: Session, call_id: str) -> dict[str, Any]:
        """Drop the consultation: the agent is back with the customer."""
        call, _ = self.own_call(session, call_id)
        consult = self._consultation(call)
        try:
            # "CancelAtxfer successfully queued": like Atxfer, a single answer (Async false)
            await self._send(
                call, {"Action": "CancelAtxfer", "Channel": consult.agent, "Async": "false"}
            )
        except ApiError as e:
            if e.status != 502:
                raise
            # an Asterisk before 13.18 or without atxferabort: hang up the consultation leg
            await self._hang_up_consultation(call, consult)
        self._over(call.key, "cancelled")
        return {"call_id": call.key, "action": "transfer_cancel", "to": consult.target}

    def consulting_of(self, username: str) -> dict[str, dict[str, Any]]:
        """This agent's attended transfers in progress, by call key (for a reloading tab)."""
        return {
            k: c.to_json()
            for k, c in self.consulting.items()
            if c.username == username and k in self.board.calls
        }

    def _consultation(self, call: LiveCall) -> Consultation:
        consult = self.consulting.get(call.key)
        if consult is None:
            raise ApiError(409, "no_transfer", "No attended transfer is in progress on this call.")
        return consult

    def _not_consulting(self, call: LiveCall) -> None:
        if call.key in self.consulting:
            raise ApiError(
                409,
                "transfer_in_progress",
                "Complete or cancel the transfer in progress first.",
            )

    async def _hang_up_consultation(self, call: LiveCall, consult: Consultation) -> None:
        try:
            frames = await self._link(call).send_action(
                {"Action": "CoreShowChannels"}, as_list=True
            )
        except AmiNotConnected:
            raise ApiError(503, "pbx_down", PBX_DOWN) from None
        except AmiError as e:
            raise ApiError(502, "pbx_refused", f"The phone system refused: {e}"[:200]) from None
        legs = [
            str(f["Channel"])
            for f in (frames if isinstance(frames, list) else [frames])
            if f.get("Event") == "CoreShowChannel"
            and _LOCAL.match(str(f.get("Channel", "")))
            and consult.is_consultation_leg(str(f.get("Channel", "")))
        ]
        if not legs:
            raise ApiError(409, "no_transfer", "No attended transfer is in progress on this call.")
        for channel in legs:
            await self._send(call, {"Action": "Hangup", "Channel": channel})

    def _over(self, call_key: str, reason: str) -> None:
        consult = self.consulting.pop(call_key, None)
        if consult is not None:
            self._tell(None, call_key, reason, consult.username)

    def _tell(
        self, consult: Consultation | None, call_key: str, reason: str, username: str = ""
    ) -> None:
        data = {
            "call_id": call_key,
            "consulting": consult.to_json() if consult else None,
            "reason": reason,
        }
        self.publish(consult.username if consult else username, MESSAGE, data)

    async def _hold(self, session: Session, call_id: str) -> dict[str, Any]:
        call, ext = self.own_call(session, call_id)
        if call.state != "answered":
            raise ApiError(409, "not_answered", "Only an answered call can be put on hold.")
        self._not_consulting(call)
        if call.key in self.held:
            raise ApiError(409, "already_on_hold", "This call is already on hold.")
        legs = await self._legs(call, ext)
        if legs.customer is None:
            raise ApiError(409, "no_customer_leg", "The other party of this call was not found.")
        context = self.settings.hold_context
        await self._send(
            call,
            {
                "Action": "Redirect",
                "Channel": legs.customer,
                "Context": context,
                "Exten": "hold",
                "Priority": "1",
                "ExtraChannel": legs.agent,
                "ExtraContext": context,
                "ExtraExten": "wait",
                "ExtraPriority": "1",
            },
        )
        self.held[call.key] = legs
        return {"call_id": call.key, "action": "hold", "held": True}

    async def _resume(self, session: Session, call_id: str) -> dict[str, Any]:
        call, _ = self.own_call(session, call_id)
        legs = self.held.get(call.key)
        if legs is None or legs.customer is None:
            raise ApiError(409, "not_on_hold", "This call is not on hold.")
        await self._send(
            call,
            {"Action": "Bridge", "Channel1": legs.agent, "Channel2": legs.customer, "Tone": "no"},
        )
        self.held.pop(call.key, None)
        return {"call_id": call.key, "action": "resume", "held": False}

    def held_of(self, username: str) -> list[str]:
        """The keys of this agent's calls on hold (for a reloading tab)."""
        calls = self.board.calls
        return [k for k in self.held if k in calls and calls[k].answered_agent == username]

    # -- listen / whisper / barge ------------------------------------------------------------

    async def _spy(self, session: Session, body: SpyBody) -> dict[str, Any]:
        if not session.role.sees_everyone:
            raise ApiError(403, "forbidden", "Only supervisors listen to calls.")
        if not session.extensions:
            raise ApiError(400, "no_extension", "You are signed in without an extension to ring.")
        name = body.agent.strip().lower()
        agent = self.board.agents.get(name)
        if agent is None or not agent.signed_in:
            raise ApiError(404, "unknown_agent", "That agent is not signed in.")
        if name == session.username:
            raise ApiError(400, "bad_agent", "You cannot listen to your own call.")
        call = next(
            (self.board.calls[k] for k in sorted(agent.calls) if k in self.board.calls), None
        )
        if call is None or not call.answered_by:
            raise ApiError(409, "agent_not_on_call", "That agent is not on a call now.")
        if agent.spied_by:
            raise ApiError(409, "already_listened", "Someone is already listening to this call.")
        legs = await self._legs(call, call.answered_by)
        o = self.cfg.originate
        action = {
            "Action": "Originate",
            "Channel": o.agent_channel.format(ext=session.extensions[0]),
            "Context": self.settings.spy_context,
            "Exten": body.mode,
            "Priority": "1",
            "CallerID": f'"{body.mode.capitalize()}: {name}" <{call.answered_by}>',
            "Timeout": str(int(o.timeout * 1000)),
            "Async": "true",
            "Variable": [f"{SPY_VARIABLE}={legs.agent}"],
        }
        agent.spied_by, agent.spy_mode = session.username, body.mode
        self.presence_changed(name)
        task = asyncio.create_task(self._originate_spy(call.pbx, action, name, session.username))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return {"agent": name, "mode": body.mode, "state": "calling_you"}

    async def _originate_spy(
        self, pbx: str, action: dict[str, Any], agent: str, supervisor: str
    ) -> None:
        try:
            frames = await self.links[pbx].send_action(
                action, timeout=self.cfg.originate.timeout + 15
            )
        except AmiError as e:
            log.warning("panel spy on %s by %s refused: %s", agent, supervisor, e)
            frames = []
        frames = frames if isinstance(frames, list) else [frames]
        result = next((f for f in frames if f.get("Event") == "OriginateResponse"), None)
        channel = str((result or {}).get("Channel") or "")
        if result is None or result.get("Response") != "Success" or not channel:
            self._stop_spy(agent, supervisor)
            return
        self.spies[channel] = agent

    def on_ami_event(self, event: AmiEvent) -> None:
        """The supervisor hung up: the agent is no longer listened to. An attended transfer
        ended on the PBX's side: completed, or its target or the agent hung up."""
        f = event.frame
        name = f.get("Event")
        if self.consulting and name in ("Hangup", "AttendedTransfer"):
            self._consultation_event(event.pbx, f)
        if name != "Hangup":
            return
        agent = self.spies.pop(str(f.get("Channel", "")), None)
        if agent is not None:
            a = self.board.agents.get(agent)
            self._stop_spy(agent, a.spied_by if a else None)

    def _consultation_event(self, pbx: str, f: Mapping[str, Any]) -> None:
        channel = str(f.get("Channel", ""))
        for key, c in list(self.consulting.items()):
            if c.pbx != pbx:
                continue
            if f.get("Event") == "AttendedTransfer":
                if f.get("OrigTransfererChannel") == c.agent:
                    self._over(key, "completed")
            elif channel == c.agent:
                self._over(key, "completed")  # the agent hung up the phone: Asterisk completes
            elif c.is_consultation_leg(channel):
                self._over(key, "target_left")  # back with the customer

    def call_ended(self, call_key: str, agents: list[str]) -> None:
        self.held.pop(call_key, None)
        self._over(call_key, "call_ended")
        for name in agents:
            a = self.board.agents.get(name)
            if a is not None and a.spied_by:
                self._stop_spy(name, a.spied_by)
                for channel in [c for c, who in self.spies.items() if who == name]:
                    del self.spies[channel]

    def _stop_spy(self, agent: str, supervisor: str | None) -> None:
        a = self.board.agents.get(agent)
        if a is not None and a.spied_by and a.spied_by == supervisor:
            a.spied_by, a.spy_mode = None, ""
            self.presence_changed(agent)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- helpers -----------------------------------------------------------------------------

    async def _target(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ApiError(400, "invalid_number", "That number cannot be dialed.")
        text = to_ascii_digits(raw.strip())
        if _EXTENSION.fullmatch(text):
            return text
        return await self.check_number(raw)  # ApiError 400 invalid_number / 403 do_not_call

    async def _legs(self, call: LiveCall, ext: str) -> Legs:
        link = self._link(call)
        try:
            frames = await link.send_action({"Action": "CoreShowChannels"}, as_list=True)
        except AmiNotConnected:
            raise ApiError(
                503, "pbx_down", "The phone system is not reachable right now."
            ) from None
        except AmiError as e:
            raise ApiError(502, "pbx_refused", f"The phone system refused: {e}"[:200]) from None
        own = re.compile(rf"^[^/]+/{re.escape(ext)}[-@]")
        mine = [
            f
            for f in (frames if isinstance(frames, list) else [frames])
            if f.get("Event") == "CoreShowChannel"
            and f.get("Linkedid") == call.linkedid
            and _CHANNEL.match(str(f.get("Channel", "")))
        ]
        agent = next((f for f in mine if own.match(f["Channel"])), None)
        if agent is None:
            raise ApiError(409, "no_agent_leg", "Your phone is not on this call any more.")
        bridge = agent.get("BridgeId") or ""
        others = [f for f in mine if f is not agent and not own.match(f["Channel"])]
        peer = next((f for f in others if bridge and f.get("BridgeId") == bridge), None)
        if peer is None:
            held = self.held.get(call.key)
            peer = next((f for f in others if held and f["Channel"] == held.customer), None)
        if peer is None:
            peer = next((f for f in others if not f["Channel"].startswith("Local/")), None)
        return Legs(str(agent["Channel"]), str(peer["Channel"]) if peer else None)

    def _link(self, call: LiveCall) -> Any:
        link = self.links.get(call.pbx)
        if link is None:
            raise ApiError(503, "pbx_down", PBX_DOWN)
        return link

    async def _send(self, call: LiveCall, action: dict[str, Any]) -> None:
        try:
            await self._link(call).send_action(action)
        except AmiNotConnected:
            raise ApiError(
                503, "pbx_down", "The phone system is not reachable right now."
            ) from None
        except AmiError as e:
            log.warning("panel %s on %s refused: %s", action["Action"], call.key, e)
            raise ApiError(
                502, "pbx_refused", f"The phone system refused: {e}"[:200], {"ami": str(e)[:200]}
            ) from None


def _session(doc: Any) -> Session | None:
    """The agent another instance acts for, as :meth:`CallControls._forward` sends it."""
    if not isinstance(doc, dict):
        return None
    name, display, role, exts = (
        doc.get(k) for k in ("username", "display_name", "role", "extensions")
    )
    expires = doc.get("expires_at")
    if not (isinstance(name, str) and 0 < len(name) <= 100 and isinstance(display, str)):
        return None
    if role not in [r.value for r in Role] or not isinstance(exts, list) or len(exts) > 16:
        return None
    if not all(isinstance(e, str) and _EXTENSION_ANY.fullmatch(e) for e in exts):
        return None
    at = float(expires) if isinstance(expires, int | float) else 0.0
    return Session(name, display[:200], Role(role), tuple(exts), at)


# -- HTTP routes (registered by gateway/panel/routes.py; access lines in gateway/access.py) ----

RawBody = Callable[[Any], Awaitable[bytes]]


def add_routes(app: Any, api: Callable[..., Any], raw_body: RawBody, panel: Any) -> None:
    """``/panel/api/calls/{call_id}/hangup|transfer|transfer/complete|transfer/cancel|hold|
    resume`` and ``/panel/api/spy``;
    ``api`` is the panel's JSON/session wrapper, ``panel`` the PanelService."""
    from gateway.api.params import decode_json

    controls: CallControls = panel.controls

    async def hangup(request: Any, s: Session) -> Any:
        await raw_body(request)  # a JSON body is required (the wrapper), its content is not
        return await controls.hangup(s, request.match_info["call_id"])

    async def transfer(request: Any, s: Session) -> Any:
        body = decode_json(await raw_body(request), TransferBody, status=400)
        return await controls.transfer(s, request.match_info["call_id"], body)

    async def hold(request: Any, s: Session) -> Any:
        await raw_body(request)
        return await controls.hold(s, request.match_info["call_id"])

    async def resume(request: Any, s: Session) -> Any:
        await raw_body(request)
        return await controls.resume(s, request.match_info["call_id"])

    async def spy(request: Any, s: Session) -> Any:
        body = decode_json(await raw_body(request), SpyBody, status=400)
        return await controls.spy(s, body)

    async def complete(request: Any, s: Session) -> Any:
        await raw_body(request)
        return await controls.complete_transfer(s, request.match_info["call_id"])

    async def cancel(request: Any, s: Session) -> Any:
        await raw_body(request)
        return await controls.cancel_transfer(s, request.match_info["call_id"])

    r = app.router
    r.add_post("/panel/api/calls/{call_id}/hangup", api(hangup))
    r.add_post("/panel/api/calls/{call_id}/transfer", api(transfer))
    r.add_post("/panel/api/calls/{call_id}/transfer/complete", api(complete))
    r.add_post("/panel/api/calls/{call_id}/transfer/cancel", api(cancel))
    r.add_post("/panel/api/calls/{call_id}/hold", api(hold))
    r.add_post("/panel/api/calls/{call_id}/resume", api(resume))
    r.add_post("/panel/api/spy", api(spy))
