"""The best hour to call someone, from the answers to outbound calls (pure: no I/O, no clock).

Answer rates are counted per local weekday x hour (a *slot*) and per hour of the day, and each
rate is an estimate that a few calls cannot swing: a Beta prior adds some calls' worth of
answers at a rate the level above says.

* A group (everybody, a segment) starts each slot and each hour at the **overall** outbound
  answer rate of the last year, worth :data:`PRIOR_WEIGHT` calls: a slot with one lucky answer
  does not beat a slot with forty calls at 70 %.
* One person starts each hour (and slot) at **everybody's** rate for it, worth
  :data:`PERSON_WEIGHT` calls: a lead never called gets the hour at which people answer most;
  after a few calls their own answers take over.

Only hours somebody was called at are recommended (an hour nobody was ever called at has no
evidence at all, and the prior alone would rank it as well as any). The hour of one person is
across weekdays: a lead has a handful of calls, far too few to tell Tuesday 10:00 from Thursday
10:00, and "call at 10:00" is what an agent or a campaign can act on.

:func:`next_best_time` turns a person's hour rates into the instant to call within a window,
inside the business hours a calendar says (``gateway.campaigns.calendar``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

PRIOR_WEIGHT = 10.0  # a group's slot or hour: calls' worth of belief in the overall rate
PERSON_WEIGHT = 2.0  # one person's hour: calls' worth of belief in everybody's rate for it
HISTORY_DAYS = 365  # the calls the rates are counted from
UNKNOWN_RATE = 0.5  # the overall rate when nobody was ever called (nothing is recommended then)
HOUR = 3600.0

Slot = tuple[int, int]  # (weekday 0 = Monday, hour 0-23), local time


@dataclass(frozen=True, slots=True)
class Tally:
    """Outbound calls made and answered."""

    attempts: int = 0
    answered: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.attempts + other.attempts, self.answered + other.answered)

    def rate(self, prior: float, weight: float) -> float:
        """The posterior mean: ``(answered + weight x prior) / (attempts + weight)``."""
        return (self.answered + weight * prior) / (self.attempts + weight)


def tally(calls: Iterable[tuple[float, bool]], tz: ZoneInfo) -> dict[Slot, Tally]:
    """(started_at, answered) of outbound calls -> their tally per local slot in ``tz``."""
    out: dict[Slot, Tally] = {}
    for at, answered in calls:
        local = datetime.fromtimestamp(at, tz)
        slot = (local.weekday(), local.hour)
        out[slot] = out.get(slot, Tally()) + Tally(1, int(answered))
    return out


def by_hour(cells: Mapping[Slot, Tally]) -> list[Tally]:
    """The 24 hours' tallies (every weekday together)."""
    hours = [Tally()] * 24
    for (_, h), t in cells.items():
        hours[h] = hours[h] + t
    return hours


def total(cells: Mapping[Slot, Tally]) -> Tally:
    out = Tally()
    for t in cells.values():
        out = out + t
    return out


@dataclass(frozen=True, slots=True)
class AnswerProfile:
    """A group's outbound answers per slot (everybody's, over :data:`HISTORY_DAYS`): its own
    rates, and the prior of one person's."""

    cells: Mapping[Slot, Tally] = field(default_factory=dict)

    @property
    def overall(self) -> Tally:
        return total(self.cells)

    @property
    def overall_rate(self) -> float | None:
        """Answered / called over every slot; None when nobody was called."""
        t = self.overall
        return t.answered / t.attempts if t.attempts else None

    def _base(self) -> float:
        rate = self.overall_rate
        return UNKNOWN_RATE if rate is None else rate

    def slot_rate(self, slot: Slot) -> float:
        return self.cells.get(slot, Tally()).rate(self._base(), PRIOR_WEIGHT)

    def hour_rates(self) -> list[float]:
        base = self._base()
        return [t.rate(base, PRIOR_WEIGHT) for t in by_hour(self.cells)]

    def tried_hours(self) -> list[bool]:
        return [t.attempts > 0 for t in by_hour(self.cells)]


def best_hour(
    rates: Sequence[float], tried: Sequence[int], candidates: Sequence[bool]
) -> int | None:
    """The candidate hour with the highest rate; on a tie the one with more calls, then the
    earlier. None when no hour is a candidate."""
    hours = [h for h in range(24) if candidates[h]]
    if not hours:
        return None
    return max(hours, key=lambda h: (rates[h], tried[h], -h))


@dataclass(frozen=True, slots=True)
class PersonHours:
    """One person's 24 hour rates (in the zone they were counted in) and their best hour."""

    rates: tuple[float, ...]
    own: tuple[Tally, ...]  # the person's own calls per hour
    candidates: tuple[bool, ...]  # hours the person or anybody was called at
    best: int | None
    from_prior: bool  # the person was never called: the best hour is everybody's

    def recommendable(self) -> list[float | None]:
        """The rates of the candidate hours, None for the others (:func:`next_best_time`)."""
        return [r if c else None for r, c in zip(self.rates, self.candidates, strict=True)]


def person_hours(
    own: Mapping[Slot, Tally],
    everybody: AnswerProfile | None,
) -> PersonHours:
    """The person's hour rates: each hour from everybody's rate for it (:data:`PERSON_WEIGHT`
    calls' worth); without everybody's (nobody else was ever called), from the person's own
    overall rate. Candidate hours: those the person or anybody was called at."""
    hours = by_hour(own)
    mine = total(own)
    tried_by_anyone = everybody.tried_hours() if everybody is not None else [False] * 24
    if everybody is not None and everybody.overall.attempts:
        prior = everybody.hour_rates()
    elif mine.attempts:
        prior = [mine.answered / mine.attempts] * 24
    else:
        return PersonHours(tuple([UNKNOWN_RATE] * 24), tuple(hours), (False,) * 24, None, True)
    rates = tuple(t.rate(p, PERSON_WEIGHT) for t, p in zip(hours, prior, strict=True))
    candidates = tuple(hours[h].attempts > 0 or tried_by_anyone[h] for h in range(24))
    best = best_hour(rates, [t.attempts for t in hours], candidates)
    return PersonHours(rates, tuple(hours), candidates, best, mine.attempts == 0)


def next_best_time(
    rates: Sequence[float | None],
    now: float,
    window: float,
    tz: ZoneInfo,
    next_open: Callable[[float], float],
) -> float:
    """The instant to call within ``window`` seconds from ``now``: the first open moment
    (``next_open``: the business calendar of the person's zone) of the open hour with the
    highest rate, the earliest on a tie. ``rates`` are per hour of ``tz`` (None: never
    recommended). With no open hour in the window, the first open moment after ``now``."""
    first = next_open(now)
    until = now + window
    if first > until:
        return first
    local = datetime.fromtimestamp(first, tz)
    hour_start = local.replace(minute=0, second=0, microsecond=0).timestamp()
    best_at, best_rate = first, rates[local.hour]
    at = hour_start
    while at <= until:
        moment = next_open(max(at, now))
        if moment < at + HOUR and moment <= until:
            rate = rates[datetime.fromtimestamp(moment, tz).hour]
            if rate is not None and (best_rate is None or rate > best_rate):
                best_at, best_rate = moment, rate
        at += HOUR
    return best_at
