"""Call traffic for the simulated PBX: a live generator for the demo, a bulk stream for benches.

``TrafficGenerator`` starts calls on a ``SimulatedPbx`` at a Poisson rate, mixing scenarios
with realistic parameters: caller numbers in several countries' formats, some with a
caller name, a few with hostile names (the gateway must treat caller ID as data). Arrivals
are scheduled on the PBX clock, so a test with a ``ManualClock`` drives them with
``advance()``, and ``step()`` starts exactly one call.

``render_traffic`` renders many overlapping calls into one capture-shaped byte stream (the
input of ``bench/ami_ingest.py``), with distinct uniqueids and channel names throughout.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gateway.sim.clock import TimerHandle
from gateway.sim.pbx import SimulatedPbx
from gateway.sim.render import session_header
from gateway.sim.scenarios import SPECS, CallIds, IdAllocator, render_call_bytes

# inbound traffic as a contact centre sees it; click-to-call is started by the gateway itself
DEFAULT_MIX: dict[str, float] = {
    "inbound_answered": 0.28,
    "queue_answered": 0.30,
    "inbound_missed_noanswer": 0.08,
    "inbound_busy": 0.05,
    "inbound_caller_abandons": 0.07,
    "queue_abandoned": 0.10,
    "blind_transfer": 0.12,
    "inbound_hold_resume": 0.06,  # PJSIP only: a lab-flavour PBX leaves it out
}

DEFAULT_NUMBERS: tuple[str, ...] = (
    "+34911234567",
    "+34612345678",
    "0034 933 456 789",
    "+44 20 7946 0958",
    "+447700900123",
    "+49 30 901820",
    "+33 1 42 68 53 00",
    "+1 (415) 555-0132",
    "+52 55 1234 5678",
    "+54 9 11 2345-6789",
    "612345678",
    "911234567",
)

DEFAULT_NAMES: tuple[str, ...] = (
    "",
    "",
    "",
    "Ana García",
    "John Smith",
    "Jürgen Müller",
    "Zoë O'Brien",
    "ACME CORP",
    "María-José Núñez",
)

HOSTILE_NAMES: tuple[str, ...] = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Robert'); DROP TABLE contacts;--",
    "${jndi:ldap://x}",
    "{caller}{0}%s%n",
)

DEFAULT_AGENTS: tuple[str, ...] = ("101", "102", "103")

# which of a scenario's ``agents`` end up talking to the caller (the others only ring)
ANSWERING: dict[str, tuple[int, ...]] = {
    "inbound_answered": (0,),
    "inbound_hold_resume": (0,),
    "queue_answered": (1,),  # (the member who only rings, the one who answers)
    "blind_transfer": (0, 1),  # the first answers, then the second takes the transfer
}


def random_params(
    scenario: str,
    rng: random.Random,
    *,
    numbers: Sequence[str] = DEFAULT_NUMBERS,
    agents: Sequence[str] = DEFAULT_AGENTS,
    hostile_rate: float = 0.05,
) -> dict[str, Any]:
    """Plausible parameters for one call of ``scenario`` (ring/talk times, caller, agent)."""
    spec = SPECS[scenario]
    params: dict[str, Any] = {"caller": rng.choice(list(numbers))}
    if rng.random() < hostile_rate:
        params["caller_name"] = rng.choice(HOSTILE_NAMES)
    else:
        params["caller_name"] = rng.choice(DEFAULT_NAMES)
    if spec.kind != "queue":
        first = rng.choice(list(agents))
        others = [a for a in agents if a != first] or [first]
        params["agents"] = (first, rng.choice(others))
    timing = {
        "ring_seconds": (1.0, 9.0),
        "talk_seconds": (8.0, 150.0),
        "customer_ring_seconds": (1.0, 6.0),
        "transfer_ring_seconds": (1.0, 6.0),
        "transfer_talk_seconds": (10.0, 120.0),
        "hold_seconds": (5.0, 60.0),
        "talk_after_hold_seconds": (8.0, 90.0),
    }
    for param in spec.params:
        low, high = timing[param]
        if scenario in ("inbound_missed_noanswer",):
            low, high = 15.0, 30.0  # a dial timeout
        if scenario == "click_to_call_customer_noanswer" and param == "customer_ring_seconds":
            low, high = 30.0, 30.0  # the [outbound] Dial timeout
        params[param] = round(rng.uniform(low, high), 3)
    return params


def _captured(mix: Mapping[str, float], flavour: str, *, explicit: bool) -> dict[str, float]:
    """The default mix without the scenarios ``flavour`` has no capture of; a mix the caller
    chose is kept whole, so that a scenario the flavour lacks fails loudly at the first call."""
    if explicit:
        return dict(mix)
    return {n: w for n, w in mix.items() if n in SPECS and flavour in SPECS[n].flavours}


class TrafficGenerator:
    """Starts a random mix of calls on a simulated PBX at ``calls_per_minute`` (Poisson)."""

    def __init__(
        self,
        pbx: SimulatedPbx,
        calls_per_minute: float,
        mix: Mapping[str, float] | None = None,
        rng: random.Random | None = None,
        numbers: Sequence[str] | None = None,
        *,
        agents: Sequence[str] | None = None,
        hostile_rate: float = 0.05,
    ) -> None:
        if calls_per_minute <= 0:
            raise ValueError("calls_per_minute must be positive")
        self.pbx = pbx
        self.calls_per_minute = calls_per_minute
        self.mix = _captured(mix or DEFAULT_MIX, pbx.flavour, explicit=mix is not None)
        unknown = set(self.mix) - set(SPECS)
        if unknown or not self.mix or min(self.mix.values()) < 0:
            raise ValueError(f"bad scenario mix {self.mix!r} (known: {sorted(SPECS)})")
        self.rng = rng or random.Random()
        self.numbers = list(numbers or DEFAULT_NUMBERS)
        self.agents = list(agents or DEFAULT_AGENTS)
        self.hostile_rate = hostile_rate
        self.started: list[tuple[str, str]] = []  # (scenario, linkedid), oldest first
        self._talking: dict[str, str] = {}  # extension -> the call it answers (or will)
        self._handle: TimerHandle | None = None

    def step(self) -> str:
        """Start one call now; returns its Linkedid."""
        names = list(self.mix)
        scenario = self.rng.choices(names, weights=[self.mix[n] for n in names])[0]
        scenario, params = self._with_free_agents(scenario)
        linkedid = self.pbx.start_call(scenario, **params)
        for i in ANSWERING.get(scenario, ()):
            self._talking[params["agents"][i]] = linkedid
        self.started.append((scenario, linkedid))
        del self.started[:-1000]
        return linkedid

    def busy(self) -> set[str]:
        """Extensions on a call, or booked to answer one that is under way."""
        self._talking = {e: c for e, c in self._talking.items() if c in self.pbx.calls}
        return set(self._talking) | {a for a in self.agents if self.pbx.in_call(a)}

    def _with_free_agents(self, scenario: str) -> tuple[str, dict[str, Any]]:
        """The call's parameters with an answering agent who is free: one agent is never on
        two answered calls at once. With nobody free, the caller meets what a real caller
        would: a busy phone, or a queue nobody answers."""
        busy = self.busy()
        kind = SPECS[scenario].kind
        if kind == "queue":
            queue = self.pbx.queues.get("sales")
            members = [m.extension for m in queue.members if not m.paused] if queue else []
            members = members or (
                [m.extension for m in queue.members] if queue else list(self.agents)
            )
            free = [e for e in members if e not in busy]
            if scenario in ANSWERING and not free:
                scenario = "queue_abandoned"
            params = self._params(scenario)
            if scenario in ANSWERING:
                winner = self.rng.choice(free)
                others = [e for e in members if e != winner] or [winner]
                params["agents"] = (self.rng.choice(others), winner)
            else:
                ringing = list(members)
                self.rng.shuffle(ringing)
                params["agents"] = tuple((ringing + ringing)[:2])
            return scenario, params
        params = self._params(scenario)
        needed = ANSWERING.get(scenario, ())
        if not needed:
            return scenario, params
        free = [a for a in self.agents if a not in busy]
        self.rng.shuffle(free)
        if len(free) >= len(needed):
            agents = list(params["agents"])
            for i, ext in zip(needed, free, strict=False):
                agents[i] = ext
            if len(needed) == 1 and agents[1] == agents[0]:
                agents[1] = next((a for a in self.agents if a != agents[0]), agents[0])
            params["agents"] = tuple(agents)
            return scenario, params
        if free:  # one free agent: a transfer cannot happen, a plain answered call can
            params = self._params("inbound_answered")
            params["agents"] = (free[0], params["agents"][1])
            return "inbound_answered", params
        params = self._params("inbound_busy")
        first = self.rng.choice(sorted(busy & set(self.agents)) or self.agents)
        params["agents"] = (first, params["agents"][1])
        return "inbound_busy", params

    def _params(self, scenario: str) -> dict[str, Any]:
        return random_params(
            scenario,
            self.rng,
            numbers=self.numbers,
            agents=self.agents,
            hostile_rate=self.hostile_rate,
        )

    def start(self) -> None:
        """Keep starting calls on the PBX clock until ``stop()``."""
        if self._handle is None:
            self._schedule_next()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _schedule_next(self) -> None:
        gap = self.rng.expovariate(self.calls_per_minute / 60.0)
        self._handle = self.pbx.clock.call_at(self.pbx.clock.now() + gap, self._arrive)

    def _arrive(self) -> None:
        try:
            self.step()
        except Exception:  # one bad call must not end the demo's traffic
            import logging

            logging.getLogger("gateway.sim").exception("traffic generator: call failed")
        if self._handle is not None:
            self._schedule_next()


def render_traffic(
    n_calls: int,
    start: float,
    rng: random.Random,
    *,
    calls_per_second: float = 20.0,
    mix: Mapping[str, float] | None = None,
    flavour: str = "lab",
) -> bytes:
    """A long capture-shaped stream of ``n_calls`` overlapping calls (for benchmarks).

    Calls arrive as a Poisson process at ``calls_per_second``; every call gets its own
    uniqueids and channel names from one pair of Asterisk-like counters.
    """
    weights = _captured(mix or DEFAULT_MIX, flavour, explicit=mix is not None)
    names = list(weights)
    alloc = IdAllocator()
    streams: list[Iterator[tuple[float, bytes]]] = []
    t = start
    for _ in range(n_calls):
        scenario = rng.choices(names, weights=[weights[n] for n in names])[0]
        params = random_params(scenario, rng)
        streams.append(
            render_call_bytes(scenario, start=t, flavour=flavour, ids=CallIds(alloc), **params)
        )
        t += rng.expovariate(calls_per_second)
    body = b"".join(data for _, data in heapq.merge(*streams, key=lambda item: item[0]))
    return session_header(start) + body
