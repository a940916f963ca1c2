"""A simulated Asterisk 22 speaking real AMI over TCP: the demo's PBX and the tests' peer.

What a client sees is what Asterisk 22.10.1 sends (see ``ami-traces/``): the banner with no
blank line after it, Login (plain or MD5 challenge), responses echoing ActionID with
Asterisk's own messages, event lists (CoreShowChannels, Status, QueueStatus), and call event
streams rendered from the real captures (``scenarios.py``), emitted on a ``SimClock``.

The PBX keeps live state by watching the events it emits (channels with their snapshot
headers, bridges, queue entries, channel variables), so CoreShowChannels and Status show the
calls in progress exactly as the event stream described them.

Test controls, in the spirit of wazo's mock ``/_requests``: ``received_actions``,
``drop_connections()``, ``go_silent()``, ``send_shutdown()``, ``inject(raw)``,
``start_call(scenario, **params)`` and, with a ``ManualClock``, ``await advance(seconds)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gateway.ami.frames import AmiFrame, encode_frame
from gateway.sim.clock import ManualClock, RealClock, SimClock, TimerHandle
from gateway.sim.render import event_tv
from gateway.sim.scenarios import (
    SPECS,
    CallIds,
    CallScript,
    IdAllocator,
    TimedFrame,
    scenario_params,
)
from gateway.sim.state import LiveChannel, LiveState, Phone, QueueMember, SimQueue

log = logging.getLogger("gateway.sim")

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
MAX_ACTION_BYTES = 64 * 1024  # a client sending more without a blank line is cut off

# Asterisk's own texts (main/manager.c, apps/app_queue.c)
MSG_UNKNOWN = "Invalid/unknown command. Use Action: ListCommands to show available commands."
MSG_MISSING_ACTION = "Missing action in request"
MSG_DENIED = "Permission denied"
MSG_AUTH_FAILED = "Authentication failed"
MSG_AUTH_OK = "Authentication accepted"
MSG_GOODBYE = "Thanks for all the fish."
MSG_QUEUED = "Originate successfully queued"
MSG_ORIGINATE_FAILED = "Originate failed"
MSG_NO_CHANNEL = "No such channel"
MSG_CHANNEL_NOT_SPECIFIED = "Channel not specified"

CUSTOMER_DIAL_TIMEOUT = 30.0  # Dial(PJSIP/${EXTEN}@trunk,30,...) in the lab's [outbound]
_EXTEN = re.compile(r"^[A-Za-z0-9_]+/([^@/\-]+)")


@dataclass(slots=True)
class LiveCall:
    """One call in progress: its scenario's frames (each rendered when it is emitted) and
    how far they have been emitted."""

    scenario: str
    params: dict[str, Any]
    ids: CallIds
    start: float
    frames: CallScript
    linkedid: str
    emitted: int = 0
    # the one pending emission: armed for the next frame only, never the whole call up front
    # (that was ~100 timers per call, ~800 objects for the garbage collector), and dropped
    # before it runs, so a finished call is freed by refcounting, never left in a cycle
    timer: TimerHandle | None = None
    sync_reply: tuple[Session, str] | None = None  # a sync Originate waiting for its result


class Session:
    """One AMI client connection."""

    def __init__(self, pbx: SimulatedPbx, reader: asyncio.StreamReader, writer: Any) -> None:
        self.pbx = pbx
        self.reader = reader
        self.writer: asyncio.StreamWriter = writer
        self.authenticated = False
        self.events = True
        self.challenge = ""
        self.username = ""
        self.closed = False

    def send(self, data: bytes) -> None:
        if self.closed or self.pbx.silent:
            return
        if self.pbx._batch:  # events of a run in progress were emitted first: they go first
            self.pbx._flush_batch()
        try:
            self.writer.write(data)
        except Exception:  # a client that vanished must not stop the others
            self.close()

    def respond(self, action: AmiFrame, headers: dict[str, str]) -> None:
        out = {"Response": headers.pop("Response")}
        if "ActionID" in action:
            out["ActionID"] = action["ActionID"]
        out.update(headers)
        self.send(encode_frame(out))

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()


def parse_action(block: bytes) -> AmiFrame:
    """One action block as the client sent it (``\\r\\n`` or bare ``\\n`` lines)."""
    frame: AmiFrame = {}
    for raw in block.decode("utf-8", "replace").replace("\r\n", "\n").split("\n"):
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        frame[key] = frame[key] + "\n" + value if key in frame else value
    return frame


MONITOR_DIR = "/var/spool/asterisk/monitor/"


class SimulatedPbx:
    """An asyncio TCP server that behaves like Asterisk 22's AMI, with simulated calls."""

    def __init__(
        self,
        username: str = "gateway",
        secret: str = "gw-lab-secret",
        *,
        clock: SimClock | None = None,
        flavour: str = "lab",
        rng: random.Random | None = None,
        customer_ring_seconds: float = 2.0,
        customer_talk_seconds: float = 3.0,
    ) -> None:
        if flavour not in ("lab", "pjsip"):
            raise ValueError(f"flavour must be 'lab' or 'pjsip', got {flavour!r}")
        self.username = username
        self._secret = secret
        self.clock: SimClock = clock or RealClock()
        self.flavour = flavour
        self.rng = rng or random.Random(0)
        self.customer_ring_seconds = customer_ring_seconds
        self.customer_talk_seconds = customer_talk_seconds
        self.phones: dict[str, Phone] = {}
        self.state = LiveState()
        self.received_actions: list[AmiFrame] = []
        self.calls: dict[str, LiveCall] = {}
        self.global_vars: dict[str, str] = {}
        self.held: set[str] = set()  # channels moved out of their bridge by a dual Redirect
        self.spies: dict[str, str] = {}  # ChanSpy channel -> the channel it listens to
        # where MixMonitor "writes": the captures say /var/spool/asterisk/monitor/; the demo
        # points it at its own folder, where it writes a real WAV for each recording
        self.recordings_dir = MONITOR_DIR
        self.silent = False
        self.ids = IdAllocator()
        self.boot_time = self.clock.now() - 1
        self._sessions: set[Session] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._originates = 0
        # while a run of due frames is emitted: their bytes, written in one go at its end
        # (one send() for the run instead of one per frame: ~16 frames a run at 50 calls/s)
        self._batch: list[bytes] | None = None
        self.host = ""
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=2**20)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("simulated PBX listening on %s:%d (%s)", host, self.port, self.flavour)

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            _disarm(call)
        self.calls.clear()
        if self._server is not None:
            self._server.close()
        for s in list(self._sessions):
            s.close(abort=True)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimulatedPbx:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def channels(self) -> dict[str, LiveChannel]:
        """Live channels by name, as the emitted events described them."""
        return self.state.channels

    @property
    def queues(self) -> dict[str, SimQueue]:
        return self.state.queues

    @property
    def queue_entries(self) -> dict[str, list[str]]:
        return self.state.queue_entries

    @property
    def connected_clients(self) -> int:
        return sum(1 for s in self._sessions if not s.closed)

    def phone(self, extension: str) -> Phone:
        return self.phones.get(extension) or Phone()

    # --- test controls --------------------------------------------------------------------
    async def advance(self, seconds: float) -> None:
        """Manual clock only: move time on, emit everything due, let the bytes go out."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError("advance() needs a ManualClock")
        self.clock.advance(seconds)
        # no drain(): a test that reads only later must not deadlock on a full buffer
        await asyncio.sleep(0)

    def drop_connections(self) -> None:
        """Close every client connection abruptly (TCP reset), calls go on."""
        for s in list(self._sessions):
            s.close(abort=True)

    def go_silent(self) -> None:
        """Keep every TCP connection open but answer nothing, not even Ping."""
        self.silent = True

    def wake_up(self) -> None:
        self.silent = False

    def send_shutdown(self) -> None:
        """Like an Asterisk restart: Shutdown event, connections closed, calls gone,
        and the next login sees a fresh FullyBooted (Uptime reset)."""
        now = self.clock.now()
        self._broadcast(
            {
                "Event": "Shutdown",
                "Privilege": "system,all",
                "Timestamp": f"{now:.6f}",
                "Shutdown": "Cleanly",
                "Restart": "True",
            }
        )
        for s in list(self._sessions):
            s.close()
        for call in self.calls.values():
            _disarm(call)
        self.calls.clear()
        self.state.reset()
        self.boot_time = now

    def inject(self, raw: bytes) -> None:
        """Send arbitrary bytes to every connected client (garbage, truncated frames...)."""
        for s in list(self._sessions):
            s.send(raw)

    def start_call(self, scenario: str, **params: Any) -> str:
        """Start a call of ``scenario`` now; returns its Linkedid.

        Besides the captured scenarios, ``"inbound"`` (params ``agent``, ``dial_timeout``)
        and ``"queue"`` let the phones decide: ``pbx.phones[ext]`` picks answered, busy,
        no-answer or abandoned.
        """
        if scenario == "inbound":
            scenario, params = self._inbound_by_phone(params)
        elif scenario == "queue":
            scenario, params = self._queue_by_phones(params)
        if scenario not in SPECS:
            raise ValueError(f"unknown scenario {scenario!r}")
        if SPECS[scenario].kind == "queue":
            params = self._queue_agents(scenario, params)
        if SPECS[scenario].kind != "click_to_call" and "action_id" not in params:
            self._originates += 1
            params["action_id"] = f"orig-{self._originates}"
        return self._launch(scenario, params).linkedid

    def _inbound_by_phone(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        params = dict(params)
        agent = str(params.pop("agent", "101"))
        dial_timeout = float(params.pop("dial_timeout", 20.0))
        phone = self.phone(agent)
        params["agents"] = (agent, *tuple(params.get("agents", ()))[1:])
        if phone.answer == "busy":
            return "inbound_busy", params
        if phone.answer is True and phone.ring < dial_timeout:
            params.setdefault("ring_seconds", phone.ring)
            return "inbound_answered", params
        params["ring_seconds"] = dial_timeout
        return "inbound_missed_noanswer", params

    def _queue_by_phones(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        params = dict(params)
        queue = self.queues.get(str(params.get("queue", "sales")))
        members = [m.extension for m in queue.members if not m.paused] if queue else []
        answering = [e for e in members if self.phone(e).answer is True]
        if not answering:
            exts = members or ["101"]
            params.setdefault("agents", tuple((exts + exts)[:2]))
            params.setdefault("ring_seconds", 30.0)  # the caller gives up
            return "queue_abandoned", params
        winner = min(answering, key=lambda e: self.phone(e).ring)
        loser = next((e for e in members if e != winner), winner)
        params.setdefault("agents", (loser, winner))
        params.setdefault("ring_seconds", self.phone(winner).ring)
        return "queue_answered", params

    def _queue_agents(self, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
        queue = self.queues.get(str(params.get("queue", "sales")))
        if queue is None or "agents" in params:
            return params
        free = [m.extension for m in queue.members if not m.paused]
        self.rng.shuffle(free)  # ringall: which member picks up first varies call to call
        if not free:
            free = [m.extension for m in queue.members] or ["101"]
            if scenario == "queue_answered":
                raise ValueError("every member of the queue is paused: nobody can answer")
        return {**params, "agents": (free + free)[:2]}

    # --- call engine ----------------------------------------------------------------------
    def _launch(self, scenario: str, params: dict[str, Any]) -> LiveCall:
        scenario_params(scenario, self.flavour, **params)  # validate before touching state
        ids = CallIds(self.ids)
        start = self.clock.now()
        frames = CallScript(scenario, start=start, flavour=self.flavour, ids=ids, **params)
        call = LiveCall(scenario, dict(params), ids, start, frames, frames.linkedid)
        self.calls[call.linkedid] = call
        self._schedule(call)
        return call

    def _schedule(self, call: LiveCall) -> None:
        """Arm the call's timer for its next frame not yet emitted (if any is left)."""
        _disarm(call)
        if call.emitted < len(call.frames):
            at = call.frames.at(call.emitted)
            call.timer = self.clock.call_at(at, partial(self._emit_due, call))

    def _emit_due(self, call: LiveCall) -> None:
        """Emit the run of frames due now (those sharing the first one's time, and any the
        loop is late for, as it would have run their timers together), then re-arm."""
        call.timer = None  # spent: the call no longer holds the callback that holds it
        self._batch = []
        try:
            frames = call.frames
            if call.emitted < len(frames):
                due = max(frames.at(call.emitted), self.clock.now())
                while call.frames is frames and call.emitted < len(frames):
                    if frames.at(call.emitted) > due:
                        break
                    call.emitted += 1
                    self._emit_frame(call, frames[call.emitted - 1])
            if call.emitted >= len(call.frames):
                self.calls.pop(call.linkedid, None)
            elif call.timer is None:
                self._schedule(call)
        except Exception:  # a simulator bug must not take the demo down
            log.exception("simulated call %s failed", call.linkedid)
            _disarm(call)
            self.calls.pop(call.linkedid, None)
        finally:
            self._flush_batch()
            self._batch = None

    def _emit_frame(self, call: LiveCall, tf: TimedFrame) -> None:
        if tf.kind != "event":
            return  # responses go only to the client that acted; handlers send them
        headers = tf.headers
        if headers.get("Event") == "OriginateResponse" and call.sync_reply is not None:
            session, _ = call.sync_reply
            call.sync_reply = None
            ok = headers.get("Response") == "Success"
            action = {"ActionID": headers["ActionID"]} if headers.get("ActionID") else {}
            msg = MSG_QUEUED if ok else MSG_ORIGINATE_FAILED
            session.respond(action, {"Response": "Success" if ok else "Error", "Message": msg})
            return  # a synchronous Originate produces no OriginateResponse event
        if self.recordings_dir != MONITOR_DIR:
            headers = {k: v.replace(MONITOR_DIR, self.recordings_dir) for k, v in headers.items()}
        self._track(headers)
        self._broadcast(headers)

    def in_call(self, extension: str) -> bool:
        """Whether the phone at ``extension`` is talking (a channel of it is up)."""
        return self._member_in_call(extension)

    def _broadcast(self, headers: dict[str, str]) -> None:
        data = encode_frame(headers)
        if self._batch is not None:
            self._batch.append(data)
        else:
            self._send_events(data)

    def _flush_batch(self) -> None:
        if self._batch:
            data = b"".join(self._batch)
            self._batch.clear()
            self._send_events(data)

    def _send_events(self, data: bytes) -> None:
        for s in list(self._sessions):
            if s.authenticated and s.events:
                s.send(data)

    def _track(self, headers: dict[str, str]) -> None:
        self.state.track(headers, self.clock.now())

    def _call_of(self, channel: str) -> LiveCall | None:
        ch = self.channels.get(channel)
        return self.calls.get(ch.linkedid) if ch else None

    def _flush_burst(self, call: LiveCall) -> int:
        """Emit the rest of the burst in progress; return the first burst not yet sent."""
        if call.emitted == 0:
            return 0
        burst = call.frames.burst(call.emitted - 1)
        while call.emitted < len(call.frames) and call.frames.burst(call.emitted) == burst:
            call.emitted += 1
            self._emit_frame(call, call.frames[call.emitted - 1])
        return burst + 1

    def _switch(self, call: LiveCall, scenario: str, params: dict[str, Any]) -> None:
        """Continue a live call as ``scenario`` from the first burst not yet emitted.

        Templates that share a prefix (answered / abandoned / transferred) have the same
        channels and bursts up to the switch point, so the ids carry over.
        """
        next_burst = self._flush_burst(call)
        now = self.clock.now()
        spec = SPECS[scenario]
        old_bursts = call.frames.burst_times()
        params = dict(params)
        for phase in spec.phases_for(self.flavour):
            if phase.from_burst < next_burst <= phase.to_burst:
                began = old_bursts.get(phase.from_burst, call.start)
                params[phase.param] = max(now - began, 0.0)
            elif phase.from_burst >= next_burst and phase.param not in params:
                params[phase.param] = 0.0
        frames = CallScript(
            scenario,
            start=call.start,
            flavour=self.flavour,
            ids=call.ids,
            from_burst=next_burst,
            **params,
        )
        call.scenario, call.params, call.emitted = scenario, params, 0
        call.frames = frames
        if not frames:
            self.calls.pop(call.linkedid, None)
            return
        self._schedule(call)

    def _hangup(self, call: LiveCall) -> None:
        next_burst = call.frames.burst(call.emitted - 1) + 1 if call.emitted else 0
        target = call.scenario
        if next_burst == 1:  # still ringing: the captures' early end
            target = _HANGUP_WHILE_RINGING.get(call.scenario, target)
        elif call.scenario == "queue_answered" and next_burst == 2:
            target = "queue_abandoned"  # in the queue, no member answered yet
        elif call.scenario == "blind_transfer" and self._talking(call, next_burst):
            target = "inbound_answered"  # hung up before the transfer
        params = {k: v for k, v in call.params.items() if not k.endswith("_seconds")}
        phases = SPECS[target].phases_for(self.flavour)
        keep = {p.param for p in phases if p.to_burst < next_burst}
        params.update({k: v for k, v in call.params.items() if k in keep})
        if target == "inbound_answered" and call.scenario == "blind_transfer":
            params.pop("transfer_action_id", None)
        self._switch(call, target, params)

    # --- connections ----------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        self._sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            session.send(BANNER)
            buf = b""
            while not session.closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                # normalise line ends on the whole buffer: a CRLF may straddle two reads
                buf = (buf + chunk).replace(b"\r\n", b"\n")
                while b"\n\n" in buf and not session.closed:
                    block, buf = buf.split(b"\n\n", 1)
                    if block.strip():
                        self._handle(session, parse_action(block))
                if len(buf) > MAX_ACTION_BYTES:
                    log.warning("simulated PBX: client sent an oversized action, closing")
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            session.close()
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    def _handle(self, session: Session, action: AmiFrame) -> None:
        self.received_actions.append(action)
        if self.silent:
            return
        name = action.get("Action", "")
        if not name:
            session.respond(action, {"Response": "Error", "Message": MSG_MISSING_ACTION})
            return
        key = name.lower()
        if not session.authenticated and key not in ("login", "challenge", "logoff"):
            session.respond(action, {"Response": "Error", "Message": MSG_DENIED})
            return
        handler: Callable[[Session, AmiFrame], None] | None = getattr(self, "_action_" + key, None)
        if handler is None:
            session.respond(action, {"Response": "Error", "Message": MSG_UNKNOWN})
            return
        try:
            handler(session, action)
        except Exception:
            log.exception("simulated PBX: action %r failed", name)
            session.respond(action, {"Response": "Error", "Message": "Internal error"})

    # --- actions --------------------------------------------------------------------------
    def _action_challenge(self, session: Session, action: AmiFrame) -> None:
        if action.get("AuthType", "").lower() != "md5":
            session.respond(action, {"Response": "Error", "Message": "Must specify AuthType"})
            return
        session.challenge = str(self.rng.randrange(100_000_000, 999_999_999))
        session.respond(action, {"Response": "Success", "Challenge": session.challenge})

    def _action_login(self, session: Session, action: AmiFrame) -> None:
        user = action.get("Username", "")
        if action.get("AuthType", "").lower() == "md5":
            expected = hashlib.md5((session.challenge + self._secret).encode()).hexdigest()
            ok = bool(session.challenge) and action.get("Key", "").lower() == expected
        else:
            ok = action.get("Secret") == self._secret
        if not ok or user != self.username:
            log.info("simulated PBX: login refused for %r", user)
            session.respond(action, {"Response": "Error", "Message": MSG_AUTH_FAILED})
            session.close()
            return
        session.authenticated = True
        session.username = user
        session.events = action.get("Events", "on").lower() not in ("off", "no", "false", "0")
        session.respond(action, {"Response": "Success", "Message": MSG_AUTH_OK})
        if session.events:
            uptime = str(max(int(self.clock.now() - self.boot_time), 0))
            session.send(
                encode_frame(
                    {
                        "Event": "FullyBooted",
                        "Privilege": "system,all",
                        "Uptime": uptime,
                        "LastReload": uptime,
                        "Status": "Fully Booted",
                    }
                )
            )
        self._broadcast(self._successful_auth(session))

    def _successful_auth(self, session: Session) -> dict[str, str]:
        now = self.clock.now()
        tv = event_tv(now)
        peer = session.writer.get_extra_info("peername") or ("127.0.0.1", 0)
        return {
            "Event": "SuccessfulAuth",
            "Privilege": "security,all",
            "Timestamp": f"{now:.6f}",
            "EventTV": tv,
            "Severity": "Informational",
            "Service": "AMI",
            "EventVersion": "1",
            "AccountID": session.username,
            "SessionID": f"0x{id(session):012x}",
            "LocalAddress": f"IPV4/TCP/127.0.0.1/{self.port}",
            "RemoteAddress": f"IPV4/TCP/{peer[0]}/{peer[1]}",
            "UsingPassword": "0",
            "SessionTV": tv,
        }

    def _action_logoff(self, session: Session, action: AmiFrame) -> None:
        session.respond(action, {"Response": "Goodbye", "Message": MSG_GOODBYE})
        session.close()

    def _action_ping(self, session: Session, action: AmiFrame) -> None:
        now = self.clock.now()
        session.respond(action, {"Response": "Success", "Ping": "Pong", "Timestamp": f"{now:.6f}"})

    def _action_events(self, session: Session, action: AmiFrame) -> None:
        mask = action.get("EventMask", "on").lower()
        session.events = mask not in ("off", "no", "false", "0", "none")
        session.respond(
            action, {"Response": "Success", "Events": "On" if session.events else "Off"}
        )

    def _action_originate(self, session: Session, action: AmiFrame) -> None:
        channel = action.get("Channel", "")
        if not channel:
            session.respond(action, {"Response": "Error", "Message": MSG_CHANNEL_NOT_SPECIFIED})
            return
        m = _EXTEN.match(channel)
        if not m:
            session.respond(action, {"Response": "Error", "Message": "Invalid channel"})
            return
        if not action.get("Exten") and not action.get("Application"):
            session.respond(
                action,
                {"Response": "Error", "Message": "Exten not specified"},
            )
            return
        agent = m.group(1)
        variables = _variables(action)
        timeout = _number(action.get("Timeout"), 30000.0) / 1000.0
        if variables.get("CENTRALITA_SPY"):
            self._spy(session, action, agent, variables["CENTRALITA_SPY"], timeout)
            return
        name, num = _callerid(action.get("CallerID", ""))
        if action.get("Application") and channel.endswith("@from-pstn"):
            # the lab capture client's "customer handset" (see ami-traces/README.md)
            scenario, lab_params = self._lab_inbound(agent, variables, timeout, action)
            lab_params.update(caller=num or "anonymous", caller_name=name)
            self._reply_and_launch(session, action, scenario, lab_params)
            return
        phone = self.phone(agent)
        lab_behaviour = variables.get(f"B{agent}")  # the lab's per-call phone behaviour
        if lab_behaviour in ("busy", "noanswer"):
            phone = Phone(answer=lab_behaviour)
        elif lab_behaviour:
            phone = Phone(ring=_number(lab_behaviour, phone.ring))
        params: dict[str, Any] = {
            "agent": agent,
            "caller": action.get("Exten", "") or agent,
            "caller_name": name,
            "action_id": action.get("ActionID", ""),
            "gateway_call_id": variables.get("GATEWAY_CALL_ID", ""),
        }
        if phone.answer == "busy":
            scenario = "click_to_call_agent_busy"
        elif phone.answer is not True or phone.ring >= timeout:
            scenario = "click_to_call_agent_noanswer"
            params["ring_seconds"] = timeout
        elif variables.get("CUSTRING") == "noanswer" and (
            self.flavour in SPECS["click_to_call_customer_noanswer"].flavours
        ):
            # the customer never picks up: [outbound]'s Dial gives up after its timeout
            scenario = "click_to_call_customer_noanswer"
            params["ring_seconds"] = phone.ring
            params["customer_ring_seconds"] = CUSTOMER_DIAL_TIMEOUT
        else:
            scenario = "click_to_call"
            params["ring_seconds"] = phone.ring
            params["customer_ring_seconds"] = _number(
                variables.get("CUSTRING"), self.customer_ring_seconds
            )
            params["talk_seconds"] = _number(variables.get("CUSTTALK"), self.customer_talk_seconds)
        self._reply_and_launch(session, action, scenario, params)

    def _reply_and_launch(
        self, session: Session, action: AmiFrame, scenario: str, params: dict[str, Any]
    ) -> None:
        is_async = action.get("Async", "").lower() in ("true", "yes", "1", "on")
        if is_async:
            session.respond(action, {"Response": "Success", "Message": MSG_QUEUED})
        call = self._launch(scenario, params)
        if not is_async:
            call.sync_reply = (session, action.get("ActionID", ""))

    def _lab_inbound(
        self, did: str, variables: dict[str, str], patience: float, action: AmiFrame
    ) -> tuple[str, dict[str, Any]]:
        """Which captured scenario the lab dialplan would run for this handset Originate.

        Variables as in the lab's extensions.conf: ROUTE=queue|direct, TARGET, DIALTIMEOUT,
        B<ext> = ring seconds | busy | noanswer; Data = seconds the customer talks.
        """
        talk = _number(action.get("Data"), 3.0)
        params: dict[str, Any] = {"did": did, "action_id": action.get("ActionID", "")}
        if variables.get("ROUTE") == "queue":
            queue = self.queues.get("sales")
            exts = [m.extension for m in queue.members] if queue else ["101", "102"]
            rings = {e: _number(variables.get(f"B{e}"), -1.0) for e in exts}
            answering = [e for e in exts if rings[e] >= 0]
            if not answering:
                params.update(agents=(exts + exts)[:2], ring_seconds=max(talk - 0.5, 0.0))
                return "queue_abandoned", params
            winner = min(answering, key=lambda e: rings[e])
            loser = next((e for e in exts if e != winner), winner)
            ring = rings[winner]
            params.update(agents=(loser, winner), ring_seconds=ring)
            params["talk_seconds"] = max(talk - 0.5 - ring, 0.0)
            return "queue_answered", params
        target = variables.get("TARGET", "101")
        dial_timeout = _number(variables.get("DIALTIMEOUT"), 30.0)
        behaviour = variables.get(f"B{target}", "2")
        params["agents"] = (target,)
        if behaviour == "busy":
            return "inbound_busy", params
        ring = _number(behaviour, float("inf"))  # "noanswer": rings until a timeout
        if min(patience, dial_timeout) <= ring:
            if patience < dial_timeout:
                params["ring_seconds"] = patience
                return "inbound_caller_abandons", params
            params["ring_seconds"] = dial_timeout
            return "inbound_missed_noanswer", params
        params.update(ring_seconds=ring, talk_seconds=talk)
        return "inbound_answered", params

    def _find_channels(self, spec: str) -> list[str]:
        if len(spec) > 1 and spec.startswith("/") and spec.endswith("/"):
            try:
                rx = re.compile(spec[1:-1])
            except re.error:
                return []
            return [n for n in self.channels if rx.search(n)]
        return [spec] if spec in self.channels else []

    def _action_hangup(self, session: Session, action: AmiFrame) -> None:
        spec = action.get("Channel", "")
        if not spec:
            session.respond(action, {"Response": "Error", "Message": "No channel specified"})
            return
        names = self._find_channels(spec)
        if not names:
            session.respond(action, {"Response": "Error", "Message": MSG_NO_CHANNEL})
            return
        done: set[str] = set()
        for n in names:
            call = self._call_of(n)
            if call is not None and call.linkedid not in done:
                done.add(call.linkedid)
                self._hangup(call)
        if not spec.startswith("/"):
            session.respond(action, {"Response": "Success", "Message": "Channel Hungup"})
            return
        session.respond(
            action,
            {
                "Response": "Success",
                "EventList": "start",
                "Message": "Channels hung up will follow",
            },
        )
        aid = {"ActionID": action["ActionID"]} if "ActionID" in action else {}
        for n in names:
            session.send(encode_frame({"Event": "ChannelHungup", **aid, "Channel": n}))
        session.send(
            encode_frame(
                {
                    "Event": "ChannelsHungupListComplete",
                    **aid,
                    "EventList": "Complete",
                    "ListItems": str(len(names)),
                }
            )
        )

    def _transfer(self, session: Session, action: AmiFrame, ok_message: str) -> None:
        channel = action.get("Channel", "")
        exten = action.get("Exten", "")
        if not channel:
            session.respond(action, {"Response": "Error", "Message": MSG_CHANNEL_NOT_SPECIFIED})
            return
        call = self._call_of(channel)
        if call is None:
            session.respond(
                action, {"Response": "Error", "Message": f"Channel does not exist: {channel}"}
            )
            return
        next_burst = call.frames.burst(call.emitted - 1) + 1 if call.emitted else 0
        if call.scenario not in ("inbound_answered", "blind_transfer") or not self._talking(
            call, next_burst
        ):
            # only a direct call in conversation has a captured transfer to continue with
            session.respond(action, {"Response": "Error", "Message": "Redirect failed"})
            return
        if not exten:
            session.respond(action, {"Response": "Error", "Message": "Exten not specified"})
            return
        session.respond(action, {"Response": "Success", "Message": ok_message})
        agents = tuple(call.params.get("agents", ("101",)))
        target = self.phone(exten)
        params = {k: v for k, v in call.params.items() if k not in ("talk_seconds",)}
        params["agents"] = (agents[0], exten)
        params["transfer_ring_seconds"] = target.ring
        answered_at = call.frames.burst_start(1, self.clock.now())
        # the customer keeps the talk time they meant to have; the new ringing eats into it
        talk_left = float(call.params.get("talk_seconds", 3.0)) - (self.clock.now() - answered_at)
        params.setdefault("transfer_talk_seconds", max(talk_left - target.ring, 1.0))
        params["transfer_action_id"] = action.get("ActionID", "")
        self._switch(call, "blind_transfer", params)

    def _talking(self, call: LiveCall, next_burst: int) -> bool:
        """Whether the call is in the conversation before any transfer (its talk phase)."""
        for phase in SPECS[call.scenario].phases_for(self.flavour):
            if phase.param == "talk_seconds":
                return phase.from_burst < next_burst <= phase.to_burst
        return False

    def _action_redirect(self, session: Session, action: AmiFrame) -> None:
        if not action.get("ExtraChannel"):
            self._transfer(session, action, "Redirect successful")
            return
        # both legs of a call moved at once (the panel's hold): the call goes on, as the
        # channels do in Asterisk, in the contexts named; Bridge brings them back together
        names = (action.get("Channel", ""), action["ExtraChannel"])
        missing = next((n for n in names if n not in self.channels), None)
        if missing is not None:
            session.respond(
                action, {"Response": "Error", "Message": f"Channel does not exist: {missing}"}
            )
            return
        self.held.update(names)
        session.respond(action, {"Response": "Success", "Message": "Dual Redirect successful"})

    def _action_bridge(self, session: Session, action: AmiFrame) -> None:
        names = (action.get("Channel1", ""), action.get("Channel2", ""))
        for n in names:
            if n not in self.channels:
                message = f"Channel1 does not exist: {n}"
                if n == names[1]:
                    message = f"Channel2 does not exist: {n}"
                session.respond(action, {"Response": "Error", "Message": message})
                return
        self.held.difference_update(names)
        session.respond(action, {"Response": "Success", "Message": "Channels have been bridged"})

    def _action_atxfer(self, session: Session, action: AmiFrame) -> None:
        # Asterisk dials the target from the transferer's side (the atxfer feature code);
        # the customer stays on hold until the agent completes or cancels it on the phone
        channel, exten = action.get("Channel", ""), action.get("Exten", "")
        if not channel:
            session.respond(action, {"Response": "Error", "Message": "No channel specified"})
        elif not exten:
            session.respond(action, {"Response": "Error", "Message": "No extension specified"})
        elif channel not in self.channels:
            session.respond(
                action, {"Response": "Error", "Message": "Channel specified does not exist"}
            )
        else:
            session.respond(
                action, {"Response": "Success", "Message": "Atxfer successfully queued"}
            )

    def _spy(
        self, session: Session, action: AmiFrame, ext: str, target: str, timeout: float
    ) -> None:
        """An Originate of a supervisor's phone into the ChanSpy context of the dialplan kit."""
        session.respond(action, {"Response": "Success", "Message": MSG_QUEUED})
        phone = self.phone(ext)
        aid = {"ActionID": action["ActionID"]} if "ActionID" in action else {}
        channel = f"PJSIP/{ext}-{self.ids.chan():08x}"
        uid = f"{self.boot_time:.0f}.{self.ids.uid()}"
        base = {"Channel": channel, "Uniqueid": uid, "Linkedid": uid}
        answered = phone.answer is True and phone.ring < timeout

        def result() -> None:
            ok = answered and target in self.channels
            self._broadcast(
                {
                    "Event": "OriginateResponse",
                    "Privilege": "call,all",
                    **aid,
                    "Response": "Success" if ok else "Failure",
                    **base,
                    "Context": action.get("Context", ""),
                    "Exten": action.get("Exten", ""),
                    "Reason": "4" if ok else ("5" if phone.answer == "busy" else "3"),
                    "CallerIDNum": ext,
                    "CallerIDName": "<unknown>",
                }
            )
            if ok:
                self.spies[channel] = target
                event = {"Event": "ChanSpyStart", "Privilege": "call,all"}
                self._broadcast({**event, "SpyerChannel": channel, "SpyeeChannel": target})

        self.clock.call_at(self.clock.now() + min(phone.ring, timeout), result)

    def end_spy(self, channel: str) -> None:
        """Test control: the supervisor hangs up a listen/whisper/barge call."""
        target = self.spies.pop(channel, None)
        if target is None:
            return
        stop = {"Event": "ChanSpyStop", "Privilege": "call,all", "SpyerChannel": channel}
        self._broadcast({**stop, "SpyeeChannel": target})
        self._broadcast(
            {"Event": "Hangup", "Privilege": "call,all", "Channel": channel, "Cause": "16",
             "Cause-txt": "Normal Clearing"}
        )  # fmt: skip

    def _action_blindtransfer(self, session: Session, action: AmiFrame) -> None:
        self._transfer(session, action, "Transfer succeeded")

    def _list(
        self,
        session: Session,
        action: AmiFrame,
        message: str,
        items: list[dict[str, str]],
        complete: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        session.respond(action, {"Response": "Success", "EventList": "start", "Message": message})
        aid = {"ActionID": action["ActionID"]} if "ActionID" in action else {}
        for item in items:
            event = {"Event": item.pop("Event")}
            if item.pop("_aid_first", None):
                event.update(aid)
                event.update(item)
            else:
                event.update(item)
                event.update(aid)
            session.send(encode_frame(event))
        done = {"Event": complete, **aid, "EventList": "Complete", "ListItems": str(len(items))}
        done.update(extra or {})
        session.send(encode_frame(done))

    def _action_coreshowchannels(self, session: Session, action: AmiFrame) -> None:
        now = self.clock.now()
        items = []
        for ch in self.channels.values():
            secs = max(int(now - ch.created), 0)
            items.append(
                {
                    "Event": "CoreShowChannel",
                    "_aid_first": "1",
                    **ch.headers,
                    # Asterisk 22's order (gateway_restart_mid_call.after.ami): BridgeId last
                    "Application": ch.application,
                    "ApplicationData": ch.data,
                    "Duration": f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}",
                    "BridgeId": ch.bridge,
                }
            )
        self._list(session, action, "Channels will follow", items, "CoreShowChannelsComplete")

    def _action_status(self, session: Session, action: AmiFrame) -> None:
        wanted = action.get("Channel", "")
        if wanted and wanted not in self.channels:
            session.respond(action, {"Response": "Error", "Message": MSG_NO_CHANNEL})
            return
        now = self.clock.now()
        items = []
        for name, ch in self.channels.items():
            if wanted and name != wanted:
                continue
            items.append(
                {
                    "Event": "Status",
                    "Privilege": "Call",
                    **ch.headers,
                    "Type": name.split("/", 1)[0],
                    "DNID": "",
                    "EffectiveConnectedLineNum": ch.headers.get("ConnectedLineNum", ""),
                    "EffectiveConnectedLineName": ch.headers.get("ConnectedLineName", ""),
                    "TimeToHangup": "0",
                    "BridgeID": ch.bridge,
                    "Application": ch.application,
                    "Data": ch.data,
                    "Nativeformats": "(ulaw)",
                    "Readformat": "ulaw",
                    "Readtrans": "",
                    "Writeformat": "ulaw",
                    "Writetrans": "",
                    "Callgroup": "0",
                    "Pickupgroup": "0",
                    "Seconds": str(max(int(now - ch.created), 0)),
                }
            )
        self._list(
            session,
            action,
            "Channel status will follow",
            items,
            "StatusComplete",
            {"Items": str(len(items))},
        )

    def _iface(self, extension: str) -> str:
        return f"Local/{extension}@agents/n" if self.flavour == "lab" else f"PJSIP/{extension}"

    def _member_in_call(self, extension: str) -> bool:
        return any(
            re.search(rf"[/]{re.escape(extension)}[@-]", n)
            and ch.headers.get("ChannelStateDesc") == "Up"
            for n, ch in self.channels.items()
        )

    def _member_headers(self, queue: SimQueue, m: QueueMember, name_key: str) -> dict[str, str]:
        iface = self._iface(m.extension)
        in_call = self._member_in_call(m.extension)
        return {
            "Queue": queue.name,
            name_key: m.name,
            "Location" if name_key == "Name" else "Interface": iface,
            "StateInterface": iface,
            "Membership": "static",
            "Penalty": "0",
            "CallsTaken": str(m.calls_taken),
            "LastCall": str(m.last_call),
            "LastPause": str(m.last_pause),
            "LoginTime": str(int(self.boot_time)),
            "InCall": "1" if in_call else "0",
            "Status": "2" if in_call else "1",
            "Paused": "1" if m.paused else "0",
            "PausedReason": m.paused_reason,
            "Wrapuptime": "0",
        }

    def _action_queuestatus(self, session: Session, action: AmiFrame) -> None:
        wanted = action.get("Queue", "")
        items: list[dict[str, str]] = []
        now = self.clock.now()
        for queue in self.queues.values():
            if wanted and queue.name != wanted:
                continue
            waiting = [n for n in self.queue_entries.get(queue.name, []) if n in self.channels]
            items.append(
                {
                    "Event": "QueueParams",
                    "Queue": queue.name,
                    "Max": "0",
                    "Strategy": "ringall",
                    "Calls": str(len(waiting)),
                    "Holdtime": "0",
                    "TalkTime": "0",
                    "Completed": str(queue.completed),
                    "Abandoned": str(queue.abandoned),
                    "ServiceLevel": "0",
                    "ServicelevelPerf": "0.0",
                    "ServicelevelPerf2": "0.0",
                    "Weight": "0",
                }
            )
            for m in queue.members:
                items.append({"Event": "QueueMember", **self._member_headers(queue, m, "Name")})
            for pos, name in enumerate(waiting, 1):
                ch = self.channels[name]
                items.append(
                    {
                        "Event": "QueueEntry",
                        "Queue": queue.name,
                        "Position": str(pos),
                        "Channel": name,
                        "Uniqueid": ch.headers.get("Uniqueid", ""),
                        "CallerIDNum": ch.headers.get("CallerIDNum", ""),
                        "CallerIDName": ch.headers.get("CallerIDName", ""),
                        "ConnectedLineNum": ch.headers.get("ConnectedLineNum", ""),
                        "ConnectedLineName": ch.headers.get("ConnectedLineName", ""),
                        "Wait": str(max(int(now - ch.created), 0)),
                        "Priority": "0",
                    }
                )
        self._list(session, action, "Queue status will follow", items, "QueueStatusComplete")

    def _action_queuepause(self, session: Session, action: AmiFrame) -> None:
        iface = action.get("Interface", "")
        paused_raw = action.get("Paused", "")
        if not iface or not paused_raw:
            session.respond(
                action,
                {"Response": "Error", "Message": "Need 'Interface' and 'Paused' parameters."},
            )
            return
        paused = paused_raw.lower() in ("true", "yes", "1", "on")
        wanted = action.get("Queue", "")
        found = []
        for queue in self.queues.values():
            if wanted and queue.name != wanted:
                continue
            for m in queue.members:
                if iface in (self._iface(m.extension), m.extension, f"PJSIP/{m.extension}"):
                    found.append((queue, m))
        if not found:
            session.respond(action, {"Response": "Error", "Message": "Interface not found"})
            return
        now = self.clock.now()
        for queue, m in found:
            m.paused = paused
            m.paused_reason = action.get("Reason", "") if paused else ""
            if paused:
                m.last_pause = int(now)
            event = {
                "Event": "QueueMemberPause",
                "Privilege": "agent,all",
                "Timestamp": f"{now:.6f}",
                **self._member_headers(queue, m, "MemberName"),
                "Ringinuse": "1",
            }
            event["Reason"] = m.paused_reason
            self._broadcast(event)
        msg = "Interface paused successfully" if paused else "Interface unpaused successfully"
        session.respond(action, {"Response": "Success", "Message": msg})

    def _action_setvar(self, session: Session, action: AmiFrame) -> None:
        var = action.get("Variable", "")
        if not var:
            session.respond(action, {"Response": "Error", "Message": "No variable specified"})
            return
        value = action.get("Value", "")
        channel = action.get("Channel", "")
        if channel:
            ch = self.channels.get(channel)
            if ch is None:
                session.respond(action, {"Response": "Error", "Message": MSG_NO_CHANNEL})
                return
            now = self.clock.now()
            event = {"Event": "VarSet", "Privilege": "dialplan,all", "Timestamp": f"{now:.6f}"}
            event.update(ch.headers)
            event.update({"Variable": var, "Value": value})
            self._track(event)
            self._broadcast(event)
        else:
            self.global_vars[var] = value
        session.respond(action, {"Response": "Success", "Message": "Variable Set"})

    def _action_getvar(self, session: Session, action: AmiFrame) -> None:
        var = action.get("Variable", "")
        if not var:
            session.respond(action, {"Response": "Error", "Message": "No variable specified"})
            return
        channel = action.get("Channel", "")
        if channel:
            ch = self.channels.get(channel)
            if ch is None:
                session.respond(action, {"Response": "Error", "Message": MSG_NO_CHANNEL})
                return
            value = ch.variables.get(var, "")
        else:
            value = self.global_vars.get(var, "")
        session.respond(action, {"Response": "Success", "Variable": var, "Value": value})


# a hangup while a call is still ringing (only its first burst out) ends it the way the
# captures show an early end; every flavour's templates share that first burst
_HANGUP_WHILE_RINGING: dict[str, str] = {
    "inbound_answered": "inbound_caller_abandons",
    "inbound_missed_noanswer": "inbound_caller_abandons",
    "inbound_hold_resume": "inbound_caller_abandons",
    "blind_transfer": "inbound_caller_abandons",
    "queue_answered": "queue_abandoned",
    "click_to_call": "click_to_call_agent_noanswer",
    "click_to_call_customer_noanswer": "click_to_call_agent_noanswer",
}


def _disarm(call: LiveCall) -> None:
    if call.timer is not None:
        call.timer.cancel()
        call.timer = None


def _variables(action: AmiFrame) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in action.get("Variable", "").split("\n"):
        for item in line.split(","):
            key, sep, value = item.partition("=")
            if sep:
                out[key.strip().lstrip("_")] = value.strip()
    return out


def _number(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError:
        return default


def _callerid(raw: str) -> tuple[str, str]:
    m = re.match(r'\s*"?([^"<]*)"?\s*<([^>]*)>', raw)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", raw.strip()
