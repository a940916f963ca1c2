"""What the agents see when the PBX owner dies: the takeover, the gap and the calls caught in it.

Shared by ``bench/failover.py`` (two ``centralita run`` processes, 100 agents on the standby)
and ``bench/popup_latency.py --instances 2`` (10,000 agents, the owner killed after the latency
phase), so that both print the same figures, measured the same way:

* the takeover: from the kill until the standby's ``/health`` says it owns the PBX and its
  link is logged in (``owns``, polled by ``until``);
* the gap: from the kill until the first pop-up of a call that started ringing after it;
* the calls that started ringing between the kill and the takeover: how many got their pop-up
  and how late (from their ring), and the calls whose pop-up never came.

Only calls at agents whose socket is on the survivor count: a socket on the killed instance
is gone with it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp


async def until(condition: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Seconds until ``condition()`` holds, polled every 20 ms; exits the bench after
    ``within`` s."""
    t0 = time.monotonic()
    while not await condition():
        if time.monotonic() - t0 > within:
            raise SystemExit(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


async def owns(http: aiohttp.ClientSession, url: str) -> bool:
    """The instance at ``url`` holds the PBX's lease and its link is logged in (its /health;
    the bench's one PBX)."""
    try:
        async with http.get(f"{url}/health") as r:
            (line,) = (await r.json())["pbx"]
    except (aiohttp.ClientError, ValueError, KeyError):
        return False
    return bool(line["this_instance_owns"] and line["logged_in"])


@dataclass
class Failover:
    """One kill's figures, in seconds from the kill (``late_ms``: per call, from its ring)."""

    takeover: float
    gap: float | None  # None: no call that rang after the kill popped up
    calls: int  # calls that rang (at the survivor's agents)
    in_gap: int  # of which started ringing between the kill and the takeover
    late_ms: list[float]  # those of them that popped up: ring -> pop-up
    missing: int  # calls without a pop-up
    missing_before: int  # of which rang before the kill


def failover_figures(
    rings: list[tuple[str, float]], arrivals: dict[str, float], killed: float, takeover: float
) -> Failover:
    """``rings``: (linkedid, when the PBX started its ring, ``time.time``) of the calls at the
    survivor's agents; ``arrivals``: linkedid -> first pop-up at an agent's socket;
    ``killed``: when the owner was killed; ``takeover``: seconds from then until the
    survivor owned the PBX."""
    taken_at = killed + takeover
    after = [(lid, t) for lid, t in rings if t >= killed]
    in_gap = [(lid, t) for lid, t in after if t < taken_at]
    first_after = min((arrivals[lid] for lid, _ in after if lid in arrivals), default=None)
    return Failover(
        takeover=takeover,
        gap=None if first_after is None else first_after - killed,
        calls=len(rings),
        in_gap=len(in_gap),
        late_ms=[(arrivals[lid] - t) * 1000 for lid, t in in_gap if lid in arrivals],
        missing=sum(1 for lid, _ in rings if lid not in arrivals),
        missing_before=sum(1 for lid, t in rings if t < killed and lid not in arrivals),
    )


def describe(f: Failover, survivor: str) -> str:
    """The figures as one line (``survivor``: the instance's name in it)."""
    gap = "never" if f.gap is None else f"{f.gap:.2f} s"
    late = sorted(f.late_ms)
    return (
        f"takeover {f.takeover:.2f} s, gap until the next pop-up {gap};"
        f" {f.in_gap} calls rang before {survivor} took over, {len(late)} of them popped"
        + (
            f" (late by {statistics.median(late) / 1000:.2f} s median, {late[-1] / 1000:.2f} s max)"
            if late
            else ""
        )
        + f"; calls without a pop-up: {f.missing} of {f.calls} ({f.missing_before} before the kill)"
    )
