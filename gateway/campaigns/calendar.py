"""When a campaign may touch a lead: business hours and holidays in the lead's own time zone.

Pure: no I/O, no clock. Every instant is epoch seconds (UTC); every rule is local wall time of
the zone given, read through :mod:`zoneinfo`, so a day with a DST change is 23 or 25 hours long
and "09:00" is still 09:00 on it. Holidays are local calendar dates of the lead.

``campaigns.business_hours`` may list one day in several entries (a split day: 09:00-14:00 and
16:00-19:00); an empty list means no hours restriction at all (holidays still apply).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

from gateway.campaigns.settings import WEEKDAYS, CampaignSettings

_DAY_MINUTES = 24 * 60
# a calendar whose days are all holidays would never open: give up looking after this long
_SEARCH_DAYS = 400


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


class BusinessCalendar:
    """Open hours per weekday plus holidays, asked about instants in a given time zone."""

    def __init__(self, settings: CampaignSettings) -> None:
        # weekday (0 = Monday) -> sorted, merged [start, end) minute intervals
        hours: list[list[tuple[int, int]]] = [[] for _ in range(7)]
        if not settings.business_hours:
            hours = [[(0, _DAY_MINUTES)] for _ in range(7)]
        for block in settings.business_hours:
            start, end = _minutes(block.start), _minutes(block.end)
            if end <= start:  # config refuses these; an empty block opens nothing
                continue
            for day in block.days:
                hours[WEEKDAYS.index(day)].append((start, end))
        self._hours: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple(_merge(sorted(h))) for h in hours
        )
        self._holidays = frozenset(settings.holidays)

    def is_open(self, at: float, tz: ZoneInfo) -> bool:
        """Whether ``at`` falls in business hours, on a day that is no holiday, in ``tz``."""
        local = datetime.fromtimestamp(at, tz)
        if local.date() in self._holidays:
            return False
        minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
        return any(s <= minute < e for s, e in self._hours[local.weekday()])

    def next_open(self, at: float, tz: ZoneInfo) -> float:
        """The first open instant at or after ``at`` (``at`` itself when open)."""
        if self.is_open(at, tz):
            return at
        day = datetime.fromtimestamp(at, tz).date()
        for offset in range(_SEARCH_DAYS):
            d = day + timedelta(days=offset)
            if d in self._holidays:
                continue
            for start, _end in self._hours[d.weekday()]:
                moment = _local_instant(d, start, tz)
                if moment >= at and self.is_open(moment, tz):
                    return moment
        # no open hour in more than a year (every day a holiday): do not hold the lead forever
        return at

    def after_wait(self, at: float, tz: ZoneInfo, *, days: float, hours: float) -> float:
        """``at`` plus a wait, then the next open instant. Days are calendar days (the same
        wall-clock time N days later, whatever DST does in between); hours are elapsed time."""
        local = datetime.fromtimestamp(at, tz)
        moved = (local + timedelta(days=days)).timestamp() if days else at
        return self.next_open(moved + hours * 3600.0, tz)

    def next_time(
        self, at: float, tz: ZoneInfo, weekday: int | None, hour: int, minute: int
    ) -> float:
        """The next ``weekday`` (0 = Monday; None = any day) at ``hour:minute`` local time,
        strictly after ``at``; when that moment is closed, the next open one after it."""
        day = datetime.fromtimestamp(at, tz).date()
        for offset in range(9):
            d = day + timedelta(days=offset)
            if weekday is not None and d.weekday() != weekday:
                continue
            moment = _local_instant(d, hour * 60 + minute, tz)
            if moment > at:
                return self.next_open(moment, tz)
        raise AssertionError("unreachable: a weekday comes back within 8 days")

    def local_day(self, at: float, tz: ZoneInfo) -> str:
        """``at`` as a local calendar day, ``YYYY-MM-DD`` (what daily caps count)."""
        return datetime.fromtimestamp(at, tz).date().isoformat()


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in intervals:
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _local_instant(d: date, minutes: int, tz: ZoneInfo) -> float:
    """The instant the wall clock of ``tz`` shows ``minutes`` past midnight on ``d``. A wall
    time skipped by a DST jump maps to the same distance past the jump (02:30 -> 03:30); a
    repeated one to its first occurrence (fold=0)."""
    if minutes >= _DAY_MINUTES:
        return datetime.combine(d + timedelta(days=1), time(0), tz).timestamp()
    return datetime.combine(d, time(minutes // 60, minutes % 60), tz).timestamp()


def day_start(d: date, tz: ZoneInfo) -> float:
    """The first instant of local calendar day ``d`` in ``tz`` (segments' date bounds)."""
    return _local_instant(d, 0, tz)


# -- a lead's time zone and language ----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _country_zones() -> dict[str, tuple[str, ...]]:
    """ISO country -> its IANA zones, the most populated first (tzdata's zone.tab order)."""
    zones: dict[str, list[str]] = {}
    for base in TZPATH:
        tab = Path(base) / "zone.tab"
        try:
            lines = tab.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            if not line or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) >= 3:
                zones.setdefault(cols[0], []).append(cols[2])
        break
    return {k: tuple(v) for k, v in zones.items()}


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _country_of_code(country: str) -> tuple[str, ...]:
    """Zones of a country: zone.tab, else phonenumbers' zones for the country's example
    number (when the system has no zone.tab)."""
    zones = _country_zones().get(country.upper())
    if zones:
        return zones
    example = phonenumbers.example_number(country.upper()) if country else None
    if example is None:
        return ()
    return tuple(z for z in phone_timezone.time_zones_for_number(example) if z != "Etc/Unknown")


def timezone_for(country: str, numbers_e164: Sequence[str], default: str) -> str:
    """The IANA zone a lead's hours are counted in: a number whose zone is certain and fits
    the lead's country (a New York landline of a US lead), else the country's main zone, else
    the main zone of a number's country, else ``default``."""
    country_zones = _country_of_code(country) if country else ()
    loose: list[str] = []
    for number in numbers_e164:
        try:
            parsed = phonenumbers.parse(number, None)
        except phonenumbers.NumberParseException:
            continue
        zones = [z for z in phone_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown"]
        fits = not country_zones or (zones and zones[0] in country_zones)
        if len(zones) == 1 and fits and _zone_exists(zones[0]):
            return zones[0]
        region = phonenumbers.region_code_for_number(parsed)
        if region:
            main = _country_of_code(region)
            if main and (not zones or main[0] in zones):
                loose.append(main[0])
        loose.extend(zones)
    for zone in (*country_zones[:1], *loose, default):
        if zone and _zone_exists(zone):
            return zone
    return "UTC"


# countries whose people get Spanish when their language is unknown
SPANISH_COUNTRIES = frozenset(
    {"ES", "MX", "AR", "CO", "CL", "PE", "VE", "EC", "GT", "CU", "BO"}
    | {"DO", "HN", "PY", "SV", "NI", "CR", "PA", "UY", "PR", "GQ"}
)


def language_for(language: str, country: str, default: str) -> str:
    """The language to write to a lead in: theirs when known, else Spanish for a
    Spanish-speaking country and English for any other known country, else ``default``."""
    if language:
        return language.lower()
    if country:
        return "es" if country.upper() in SPANISH_COUNTRIES else "en"
    return default
