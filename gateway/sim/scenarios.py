"""Call scenarios as data: the real captures' event streams, re-timed and re-labelled per call.

Pure (no asyncio, no I/O, no wall clock): ``render_call(name, start=..., ids=..., **params)``
returns the AMI frames of one call with their emission times, computed from ``start`` and
the scenario's phase lengths (ring, talk, ...); ``render.py`` writes them out as a capture
file. The simulated PBX holds a ``CallScript`` instead, the same frames rendered one at a
time when each is due, so starting a call never blocks its event loop for a whole render.

How a template becomes a call:
* ``templates.py`` holds each capture's exact frame sequence with per-call values replaced by
  format fields (see ``build_templates.py``). Events are grouped in *bursts*: Asterisk reacts
  to one stimulus (answer, hangup, timeout) with a few ms of events, then waits.
* Each scenario names its *phases* (``ring_seconds``, ``talk_seconds``...) as spans between
  bursts. Changing a phase shifts every later burst; events keep their tiny offsets inside
  their burst, so the capture's interleaving (and its Timestamp inversions) survives.
* Time-derived values (CDR times, billsec, duration, queue HoldTime/TalkTime, DIALEDTIME...)
  are stored relative to bursts and recomputed, so they stay consistent with the Timestamps.
* Two channel flavours, each with its own captures. ``lab`` is the Local-channel lab
  (``templates.py``: Local channel halves, the capture client's own Originate of the customer
  handset). ``pjsip`` is a production-like Asterisk whose phones and trunk are PJSIP endpoints
  (``templates_pjsip.py``: ``PJSIP/trunk-…`` and ``PJSIP/101-…``, one channel per leg, RTCP
  reports, hold from the handset). Bursts differ between the two, so phases are per flavour;
  two scenarios (hold/resume, customer no-answer) were only captured over PJSIP.
* Noise (RTCP reports, a handset re-registering) rides on the burst before it; when a
  shorter phase leaves it after the next burst, it is dropped, as a shorter real call has
  fewer RTCP reports.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from gateway.sim.template_layout import ScenarioTemplate, TemplateChannel
from gateway.sim.templates import TEMPLATES
from gateway.sim.templates_pjsip import PJSIP_TEMPLATES

FLAVOURS = ("lab", "pjsip")
DEFAULT_START = 1795346324.0
_MIN_PHASE = 0.6  # keeps a phase longer than the 0.5 s intra-phase bursts (Answer delay)
_CDR_TIME = "%Y-%m-%d %H:%M:%S"
_FIELD = re.compile(r"(?<!\{)\{([a-z_0-9]+)\}")
_NOISE = frozenset({"RTCPSent", "RTCPReceived", "ChallengeSent", "SuccessfulAuth"})
_SOURCES: dict[str, dict[str, ScenarioTemplate]] = {"lab": TEMPLATES, "pjsip": PJSIP_TEMPLATES}


def template(name: str, flavour: str) -> ScenarioTemplate:
    """The captured template of scenario ``name`` in ``flavour`` (clear errors otherwise)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}, expected one of {FLAVOURS}")
    source = _SOURCES[flavour]
    if name not in source:
        raise ValueError(
            f"scenario {name!r} has no {flavour} capture; {flavour} has {sorted(source)}"
        )
    return source[name]


@dataclass(frozen=True, slots=True)
class Phase:
    """A span of a scenario whose length is a parameter (seconds between two bursts)."""

    param: str
    from_burst: int
    to_burst: int


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """What a scenario is: its template, phases, and the outcome the tracker should see."""

    name: str
    kind: str  # "inbound" | "queue" | "click_to_call"
    outcome: str
    phases: tuple[Phase, ...] | None = ()  # bursts of the lab capture; None: not captured
    defaults: Mapping[str, Any] = field(default_factory=dict)
    pjsip_phases: tuple[Phase, ...] = ()  # bursts of the PJSIP capture

    @property
    def flavours(self) -> tuple[str, ...]:
        """The flavours with a capture of this scenario."""
        return FLAVOURS if self.phases is not None else ("pjsip",)

    @property
    def params(self) -> tuple[str, ...]:
        """The phase parameters, the same names in every flavour."""
        return tuple(p.param for p in self.pjsip_phases)

    def phases_for(self, flavour: str) -> tuple[Phase, ...]:
        template(self.name, flavour)  # an unknown flavour or a missing capture is an error
        return self.pjsip_phases if flavour == "pjsip" else self.phases or ()

    def phase_defaults(self, flavour: str = "lab") -> dict[str, float]:
        """Each phase's length in the capture."""
        bursts = template(self.name, flavour)["bursts"]
        phases = self.phases_for(flavour)
        return {p.param: round(bursts[p.to_burst] - bursts[p.from_burst], 6) for p in phases}


_INBOUND = {"caller_name": "", "action_id": "orig-1"}
_RING = Phase("ring_seconds", 0, 1)
_QUEUE_RING = Phase("ring_seconds", 1, 2)  # from QueueCallerJoin to the member's answer
_C2C_ANSWERED = (
    _RING,
    Phase("customer_ring_seconds", 1, 2),
    Phase("talk_seconds", 2, 3),
)
_C2C = {"caller_name": "Click-to-call", "action_id": "c2c-1"}
SPECS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in (
        ScenarioSpec(
            "inbound_answered",
            "inbound",
            "answered",
            (_RING, Phase("talk_seconds", 1, 3)),
            _INBOUND,
            (_RING, Phase("talk_seconds", 1, 2)),
        ),
        ScenarioSpec(
            "inbound_missed_noanswer", "inbound", "noanswer", (_RING,), _INBOUND, (_RING,)
        ),
        ScenarioSpec("inbound_busy", "inbound", "busy", (), _INBOUND),
        ScenarioSpec(
            "inbound_caller_abandons", "inbound", "abandoned", (_RING,), _INBOUND, (_RING,)
        ),
        ScenarioSpec(
            "queue_answered",
            "queue",
            "answered",
            (_QUEUE_RING, Phase("talk_seconds", 2, 4)),
            _INBOUND,
            (_QUEUE_RING, Phase("talk_seconds", 2, 3)),
        ),
        ScenarioSpec(
            "queue_abandoned", "queue", "abandoned", (_QUEUE_RING,), _INBOUND, (_QUEUE_RING,)
        ),
        ScenarioSpec(
            "click_to_call",
            "click_to_call",
            "answered",
            _C2C_ANSWERED,
            {**_C2C, "gateway_call_id": "gw-c2c-0001"},
            _C2C_ANSWERED,
        ),
        ScenarioSpec(
            "click_to_call_agent_noanswer",
            "click_to_call",
            "failed",
            (_RING,),
            {**_C2C, "gateway_call_id": "gw-c2c-0002"},
            (_RING,),
        ),
        ScenarioSpec(
            "click_to_call_agent_busy",
            "click_to_call",
            "failed",
            (),
            {**_C2C, "gateway_call_id": "gw-c2c-0003"},
        ),
        ScenarioSpec(
            "blind_transfer",
            "inbound",
            "transferred",
            (
                _RING,
                Phase("talk_seconds", 1, 3),
                Phase("transfer_ring_seconds", 3, 4),
                Phase("transfer_talk_seconds", 4, 6),
            ),
            {**_INBOUND, "transfer_action_id": "gw-3"},
            (
                _RING,
                Phase("talk_seconds", 1, 2),
                Phase("transfer_ring_seconds", 2, 3),
                Phase("transfer_talk_seconds", 3, 4),
            ),
        ),
        # captured over PJSIP only: a SIP hold from the agent's handset, then the resume
        ScenarioSpec(
            "inbound_hold_resume",
            "inbound",
            "answered",
            None,
            _INBOUND,
            (
                _RING,
                Phase("talk_seconds", 1, 2),  # until the agent puts the caller on hold
                Phase("hold_seconds", 2, 3),
                Phase("talk_after_hold_seconds", 3, 4),
            ),
        ),
        # the agent answers, the customer's phone rings until Dial's 30 s timeout
        ScenarioSpec(
            "click_to_call_customer_noanswer",
            "click_to_call",
            "noanswer",
            None,
            {**_C2C, "gateway_call_id": "gw-c2c-0004"},
            (_RING, Phase("customer_ring_seconds", 1, 2)),
        ),
    )
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SPECS)
_PHASE_PARAMS = frozenset(name for spec in SPECS.values() for name in spec.params)


def scenario_names(flavour: str = "lab") -> tuple[str, ...]:
    """The scenarios captured in ``flavour``."""
    return tuple(n for n, spec in SPECS.items() if flavour in spec.flavours)


COMMON_DEFAULTS: dict[str, Any] = {
    "caller": "+34911234567",
    "did": "5551000",
    "agents": ("101", "102"),
    "queue": "sales",
    "trunk": "trunk",
    "gateway_call_id": "",
    "transfer_action_id": "",
    "login_time": None,
}


# --- ids ----------------------------------------------------------------------------------
@dataclass(slots=True)
class IdAllocator:
    """Asterisk's two global counters: the uniqueid sequence and the channel name suffix."""

    next_uid: int = 0
    next_chan: int = 0

    def uid(self) -> int:
        self.next_uid += 1
        return self.next_uid - 1

    def chan(self) -> int:
        self.next_chan += 1
        return self.next_chan - 1


@dataclass(slots=True)
class CallIds:
    """The ids one call holds, by template channel index, so a re-render keeps them."""

    alloc: IdAllocator
    uids: dict[int, int] = field(default_factory=dict)
    chans: dict[int, int] = field(default_factory=dict)  # by Local pair index

    def uid(self, index: int) -> int:
        if index not in self.uids:
            self.uids[index] = self.alloc.uid()
        return self.uids[index]

    def chan(self, pair: int) -> int:
        if pair not in self.chans:
            self.chans[pair] = self.alloc.chan()
        return self.chans[pair]


# --- compiled templates --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Event:
    burst: int
    delta: float
    kind: str
    headers: tuple[tuple[str, str], ...]
    block: str  # the whole frame as one format string (fast bulk path)
    noise: bool  # dropped when a shorter phase leaves it after the next burst
    name: str  # its Event header ("" for a response)
    # (key, value, whether the value has format fields): a literal value is not formatted
    fields: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    flavour: str
    bursts: tuple[float, ...]
    events: tuple[_Event, ...]
    kept: tuple[int, ...]  # template channel indices present in this flavour
    channel_names: dict[int, str]  # index -> name format string
    created: dict[int, tuple[int, float]]  # index -> (burst, delta) of its first event
    bridges: int
    uptime: int


def _channel_name(flavour: str, ch: TemplateChannel) -> str:
    seq = "{cs" + str(ch["pair"]) + "}"
    role, half = ch["role"], ch["half"]
    if flavour == "lab":
        base = {"in": "{did}@from-pstn", "cust": "{caller}@pstn-customers"}.get(
            role, "{" + role + "}@agents"
        )
        return f"Local/{base}-{seq};{half}"
    if role in ("in", "cust"):
        return "PJSIP/{trunk}-" + seq
    return "PJSIP/{" + role + "}-" + seq


@cache
def _compile(name: str, flavour: str) -> _Compiled:
    tpl = template(name, flavour)
    channels = tpl["channels"]
    events: list[_Event] = []
    for burst, delta, kind, headers in tpl["events"]:
        pairs = tuple((k, v) for k, v in headers)
        block = "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
        event = dict(pairs).get("Event", "")
        fields = tuple((k, v, "{" in v or "}" in v) for k, v in pairs)
        events.append(_Event(burst, delta, kind, pairs, block, event in _NOISE, event, fields))
    created: dict[int, tuple[int, float]] = {}
    for i, ch in enumerate(channels):
        ev = tpl["events"][ch["first"]]
        created[i] = (ev[0], ev[1])
    kept = tuple(range(len(channels)))
    return _Compiled(
        name=name,
        flavour=flavour,
        bursts=tuple(tpl["bursts"]),
        events=tuple(events),
        kept=kept,
        channel_names={i: _channel_name(flavour, channels[i]) for i in kept},
        created=created,
        bridges=tpl["bridges"],
        uptime=tpl["uptime"],
    )


# --- rendering -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimedFrame:
    """One frame of a call: when the PBX emits it, which burst it belongs to, its headers."""

    at: float
    burst: int
    kind: str  # "event" or "response" (a response only the acting client sees)
    headers: dict[str, str]


class _Ctx(dict[str, str]):
    """Format fields; time-derived ones (t_/e_/d_/m_/n_) are computed on first use, and the
    event's own time ``et``/``tv`` (from ``t``, the event being rendered) on each use."""

    def __init__(self, base: dict[str, str], abs_bursts: list[float], shifts: list[float]):
        super().__init__(base)
        self.abs_bursts = abs_bursts
        self.shifts = shifts
        # where each burst's noise must stop: the next burst's start (the last: never)
        self.ends = [*abs_bursts[1:], float("inf")]
        self.t = abs_bursts[0]

    def __missing__(self, key: str) -> str:
        # most events name neither: two strftime calls per event saved
        if key == "et":
            return time.strftime(_CDR_TIME, time.gmtime(int(self.t)))
        if key == "tv":
            return _event_tv(self.t)
        kind, _, rest = key.partition("_")
        nums = [int(x) for x in rest.split("_")]
        if kind == "t":
            value = time.strftime(_CDR_TIME, time.gmtime(int(self.abs_bursts[nums[0]]) + nums[1]))
        elif kind == "e":
            value = str(int(self.abs_bursts[nums[0]]) + nums[1])
        elif kind == "d":  # whole seconds: capture value + its ms fraction + re-timing
            orig, k1, k2, frac_ms = nums
            exact = orig + frac_ms / 1000 + self.shifts[k2] - self.shifts[k1]
            value = str(max(0, int(exact + 1e-6)))
        elif kind == "m":
            orig, k1, k2 = nums
            value = str(max(0, round(orig + 1000 * (self.shifts[k2] - self.shifts[k1]))))
        elif kind == "n":  # an RTCP report's NTP time: this event's Timestamp minus a lag
            return f"{float(self['ts']) - nums[0] / 1e6:.6f}"  # per event: never cached
        else:
            raise KeyError(key)
        self[key] = value
        return value


def scenario_params(name: str, flavour: str = "lab", **params: Any) -> dict[str, Any]:
    """The full parameter set of a scenario: defaults overlaid with ``params``."""
    if name not in SPECS:
        raise ValueError(f"unknown scenario {name!r}, expected one of {SCENARIO_NAMES}")
    spec = SPECS[name]
    out: dict[str, Any] = {**COMMON_DEFAULTS, **spec.phase_defaults(flavour), **spec.defaults}
    if "agent" in params:
        agent = str(params.pop("agent"))
        params["agents"] = (agent, *tuple(params.get("agents", out["agents"]))[1:])
    # a timing another scenario uses is accepted and ignored (busy has no ring time)
    unknown = set(params) - set(out) - _PHASE_PARAMS
    if unknown:
        raise TypeError(f"{name}: unknown parameter(s) {sorted(unknown)}")
    out.update({k: v for k, v in params.items() if k in out})
    return out


def _clean(value: object) -> str:
    text = str(value)
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return text


def _dial_fields(flavour: str, p: dict[str, Any]) -> dict[str, str]:
    agents = tuple(p["agents"])
    out: dict[str, str] = {}
    for i in range(2):
        a = _clean(agents[i] if i < len(agents) else agents[-1])
        out[f"a{i}"] = a
        if flavour == "lab":  # the PJSIP templates spell dial strings with {a0}, {trunk}
            out[f"dial_a{i}"] = f"Local/{a}@agents"
            out[f"ds_a{i}"] = f"{a}@agents"
            out[f"dsn_a{i}"] = f"{a}@agents/n"
            out[f"if_a{i}"] = f"Local/{a}@agents/n"
    if flavour == "lab":
        caller, did = _clean(p["caller"]), _clean(p["did"])
        out.update(
            dial_in=f"Local/{did}@from-pstn",
            ds_in=f"{did}@from-pstn",
            dial_cust=f"Local/{caller}@pstn-customers",
            ds_cust=f"{caller}@pstn-customers",
        )
    return out


class CallScript:
    """Every frame of one call of scenario ``name``, the first burst at ``start``, each
    rendered when asked for (``script[i]``): what is known up front is cheap (when each
    frame is due, its burst, the Linkedid), the headers are formatted one frame at a time.

    The simulated PBX renders a frame when it emits it: rendering the ~100 frames of a
    call at once blocked its event loop ~1 ms at every call start. What it keeps per call
    meanwhile is flat tuples of numbers, which the garbage collector stops tracking.
    ``ids`` carries the uniqueid/channel counters; ``from_burst`` skips earlier bursts (a
    live call switching scenario mid-way).
    """

    __slots__ = ("_at", "_bursts", "_ctx", "_events", "_index", "_t", "linkedid")

    def __init__(
        self,
        name: str,
        *,
        start: float,
        flavour: str,
        ids: CallIds,
        from_burst: int = 0,
        **params: Any,
    ) -> None:
        comp = _compile(name, flavour)
        ctx = _context(comp, start, ids, params)
        index: list[int] = []
        ts: list[float] = []
        ats: list[float] = []
        at = start
        for i, ev in enumerate(comp.events):
            if ev.burst < from_burst:
                continue
            t = ctx.abs_bursts[ev.burst] + ev.delta
            if ev.noise and t >= ctx.ends[ev.burst]:
                continue
            at = max(at, t)
            index.append(i)
            ts.append(t)
            ats.append(at)
        self._events = comp.events
        self._ctx = ctx
        self._index = tuple(index)
        self._t = tuple(ts)
        self._at = tuple(ats)
        self._bursts = tuple(comp.events[i].burst for i in index)
        first = next((i for i in index if comp.events[i].name == "Newchannel"), None)
        self.linkedid = "" if first is None else self._header(first, "Linkedid")

    def _header(self, event: int, key: str) -> str:
        value = next(v for k, v, _ in self._events[event].fields if k == key)
        return value.format_map(self._ctx)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> TimedFrame:
        ev = self._events[self._index[i]]
        ctx = self._ctx
        if ev.kind == "event":  # a response names no time: it keeps the last event's
            t = ctx.t = self._t[i]
            ctx["ts"] = f"{t:.6f}"
        fmt = str.format_map
        headers = {k: fmt(v, ctx) if templated else v for k, v, templated in ev.fields}
        return TimedFrame(self._at[i], ev.burst, ev.kind, headers)

    def at(self, i: int) -> float:
        """When frame ``i`` is due (never before the frame ahead of it)."""
        return self._at[i]

    def burst(self, i: int) -> int:
        return self._bursts[i]

    def burst_times(self) -> dict[int, float]:
        """Each burst's time (of its last frame)."""
        return dict(zip(self._bursts, self._at, strict=True))

    def burst_start(self, burst: int, default: float) -> float:
        """The time of the first frame of ``burst`` (``default`` if it has none)."""
        return next((a for b, a in zip(self._bursts, self._at, strict=True) if b == burst), default)


def render_call(
    name: str,
    *,
    start: float = DEFAULT_START,
    flavour: str = "lab",
    ids: CallIds | None = None,
    from_burst: int = 0,
    **params: Any,
) -> list[TimedFrame]:
    """Every frame of one call of scenario ``name``, the first burst at ``start``.

    ``ids`` carries the uniqueid/channel counters (a fresh call starts them at 0);
    ``from_burst`` skips earlier bursts (a live call switching scenario mid-way).
    """
    script = CallScript(
        name,
        start=start,
        flavour=flavour,
        ids=ids or CallIds(IdAllocator()),
        from_burst=from_burst,
        **params,
    )
    return [script[i] for i in range(len(script))]


def render_call_bytes(
    name: str, *, start: float, flavour: str = "lab", ids: CallIds, **params: Any
) -> Iterator[tuple[float, bytes]]:
    """The fast path of ``render_call`` for bulk streams: (emission time, frame bytes)."""
    comp = _compile(name, flavour)
    ctx = _context(comp, start, ids, params)
    at = start
    fmt = str.format_map
    gmtime, strftime = time.gmtime, time.strftime
    ends = ctx.ends
    for ev in comp.events:
        if ev.kind != "event":
            continue
        t = ctx.abs_bursts[ev.burst] + ev.delta
        if ev.noise:
            if t >= ends[ev.burst]:
                continue
            ctx["tv"] = _event_tv(t)
        at = at if at > t else t
        ctx["ts"] = f"{t:.6f}"
        ctx["et"] = strftime(_CDR_TIME, gmtime(int(t)))
        yield at, fmt(ev.block, ctx).encode()


def _event_tv(t: float) -> str:
    """Security events' time format: ``2026-11-22T11:18:44.136+0000``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{stamp}.{int(t * 1000) % 1000:03d}+0000"


def _context(comp: _Compiled, start: float, ids: CallIds, params: dict[str, Any]) -> _Ctx:
    spec = SPECS[comp.name]
    p = scenario_params(comp.name, comp.flavour, **params)
    defaults = spec.phase_defaults(comp.flavour)
    shifts = [0.0] * len(comp.bursts)
    for phase in spec.phases_for(comp.flavour):
        extra = max(float(p[phase.param]), _MIN_PHASE) - defaults[phase.param]
        for k in range(phase.to_burst, len(shifts)):
            shifts[k] += extra
    abs_bursts = [start + b + s for b, s in zip(comp.bursts, shifts, strict=True)]
    name = _clean(p["caller_name"])
    base = {
        "caller": _clean(p["caller"]),
        "cname": name,
        "cname_u": name or "<unknown>",
        "did": _clean(p["did"]),
        "queue": _clean(p["queue"]),
        "trunk": _clean(p["trunk"]),
        "gwid": _clean(p["gateway_call_id"]),
        "scenario": comp.name,
        "action_id": _clean(p["action_id"]),
        "transfer_action_id": _clean(p["transfer_action_id"]),
        "login_time": str(
            int(start) - comp.uptime if p["login_time"] is None else int(p["login_time"])
        ),
        **_dial_fields(comp.flavour, p),
    }
    ctx = _Ctx(base, abs_bursts, shifts)
    channels = template(comp.name, comp.flavour)["channels"]
    for i in comp.kept:
        pair = channels[i]["pair"]
        ctx[f"cs{pair}"] = f"{ids.chan(pair):08x}"
    for i in comp.kept:
        burst, delta = comp.created[i]
        ctx[f"u{i}"] = f"{int(abs_bursts[burst] + delta)}.{ids.uid(i)}"
        ctx[f"ch{i}"] = comp.channel_names[i].format_map(ctx)
    seed = ctx[f"u{comp.kept[0]}"]
    for b in range(comp.bridges):
        ctx[f"b{b}"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"centralita-sim/{seed}/{b}"))
    return ctx


def linkedid_of(frames: Iterable[TimedFrame]) -> str:
    """The Linkedid of a rendered call (the uniqueid of its first channel)."""
    for f in frames:
        if "Linkedid" in f.headers:
            return f.headers["Linkedid"]
    return ""


def bursts_of(name: str) -> tuple[float, ...]:
    """The capture's burst offsets of a scenario (seconds from its first event)."""
    return _compile(name, "lab").bursts
