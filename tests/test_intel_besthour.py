"""The best hour to call (gateway/intel/besthour.py, pure), from a hand-checked week of
outbound calls in Madrid (March 2025, UTC+1). Everybody's calls:

    Monday 10:00   4 calls, 1 answered
    Monday 17:00   4 calls, 3 answered
    Tuesday 17:00  2 calls, 2 answered       overall 6 of 10: a prior of 10 calls at 0.6

Everybody's hours: 10:00 (1 + 6) / (4 + 10) = 0.5; 17:00 (5 + 6) / (6 + 10) = 0.6875. One
person's hour leans on everybody's at that hour, worth 2 calls.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.campaigns.calendar import BusinessCalendar
from gateway.campaigns.settings import CampaignSettings, OpeningHours
from gateway.intel.besthour import (
    AnswerProfile,
    Tally,
    next_best_time,
    person_hours,
    tally,
)

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
HOUR, DAY = 3600.0, 86400.0


def at(day: int, hh: int, mm: int = 0, tz: ZoneInfo = MADRID) -> float:
    return datetime(2025, 3, day, hh, mm, tzinfo=tz).timestamp()


MON, TUE, SAT = 3, 4, 8
EVERYBODY = AnswerProfile(
    tally(
        [(at(MON, 10, 5 * i), i == 0) for i in range(4)]
        + [(at(MON, 17, 5 * i), i > 0) for i in range(4)]
        + [(at(TUE, 17, 5 * i), True) for i in range(2)],
        MADRID,
    )
)
WEEKDAYS_9_TO_7 = BusinessCalendar(CampaignSettings())


def test_everybodys_rates_lean_on_the_overall_rate() -> None:
    assert EVERYBODY.overall == Tally(10, 6) and EVERYBODY.overall_rate == 0.6
    assert EVERYBODY.cells[(0, 10)] == Tally(4, 1) and EVERYBODY.cells[(1, 17)] == Tally(2, 2)
    rates = EVERYBODY.hour_rates()
    assert rates[10] == pytest.approx(7 / 14) and rates[17] == pytest.approx(11 / 16)
    assert rates[12] == pytest.approx(0.6)  # never tried: the prior alone
    assert EVERYBODY.slot_rate((1, 17)) == pytest.approx(8 / 12)
    assert EVERYBODY.slot_rate((0, 17)) == pytest.approx(9 / 14)


def test_a_lead_never_called_gets_everybodys_best_hour() -> None:
    hours = person_hours({}, EVERYBODY)
    assert (hours.best, hours.from_prior) == (17, True)
    assert hours.rates[17] == pytest.approx(11 / 16)
    # 12:00 scores 0.6 on the prior alone, above 10:00's 0.5, yet nobody was ever called then:
    # only hours with calls are recommended
    assert hours.recommendable()[12] is None and hours.recommendable()[10] == pytest.approx(0.5)


def test_a_few_calls_of_the_lead_move_its_hour_and_one_lucky_call_does_not() -> None:
    twice = person_hours(tally([(at(MON, 10), True), (at(TUE, 10), True)], MADRID), EVERYBODY)
    # 10:00: (2 + 2 x 0.5) / (2 + 2) = 0.75 beats 17:00's (0 + 2 x 0.6875) / 2 = 0.6875
    assert (twice.best, twice.from_prior) == (10, False)
    assert twice.rates[10] == pytest.approx(0.75) and twice.own[10] == Tally(2, 2)
    once = person_hours(tally([(at(MON, 10), True)], MADRID), EVERYBODY)
    # 10:00: (1 + 1) / 3 = 0.667 < 0.6875: still 17:00
    assert once.best == 17 and once.rates[10] == pytest.approx(2 / 3)


def test_without_anybody_elses_calls_the_leads_own_rate_is_the_prior() -> None:
    own = tally([(at(MON, 10), True), (at(MON, 16), False), (at(TUE, 16), False)], MADRID)
    hours = person_hours(own, None)
    # own overall 1/3: 10:00 (1 + 2/3) / 3 = 0.556; 16:00 (0 + 2/3) / 4 = 0.167
    assert hours.best == 10 and hours.rates[10] == pytest.approx(5 / 9)
    assert [h for h, r in enumerate(hours.recommendable()) if r is not None] == [10, 16]
    nobody = person_hours({}, AnswerProfile({}))
    assert nobody.best is None


def _lead_rates() -> list[float | None]:
    own = tally([(at(MON, 10), True), (at(TUE, 10), True)], MADRID)
    return person_hours(own, EVERYBODY).recommendable()


def test_the_call_falls_due_at_the_best_open_hour_within_the_window() -> None:
    rates = _lead_rates()  # 10:00 0.75, 17:00 0.6875, nothing else recommended

    def when(now: float, days: float, cal: BusinessCalendar = WEEKDAYS_9_TO_7) -> float:
        return next_best_time(rates, now, days * DAY, MADRID, lambda t: cal.next_open(t, MADRID))

    # Monday noon, two days: Tuesday 10:00 (Monday 17:00 is open but not as good)
    assert when(at(MON, 12), 2) == at(TUE, 10)
    # six hours: Monday 17:00 is the best there is
    assert when(at(MON, 12), 0.25) == at(MON, 17)
    # one hour: no recommended hour in the window, so now
    assert when(at(MON, 12, 30), 1 / 24) == at(MON, 12, 30)
    # inside the best hour already: now, not its start
    assert when(at(MON, 10, 20), 2) == at(MON, 10, 20)
    # Saturday: closed until Monday 09:00, then Monday 10:00 is the best
    assert when(at(SAT, 11), 3) == at(10, 10)
    # closed all the window long: the first open moment, whatever the rates
    assert when(at(SAT, 11), 0.5) == at(10, 9)
    # a day that opens at 10:30: the best hour starts when the door opens
    late = BusinessCalendar(
        CampaignSettings(business_hours=[OpeningHours(days=["tue"], start="10:30", end="19:00")])
    )
    assert when(at(MON, 12), 3, late) == at(TUE, 10, 30)


def test_the_leads_own_business_hours_rule_over_the_best_hour() -> None:
    # hours counted in Madrid; a New York lead's day is open 09:00-19:00 New York time =
    # 15:00-01:00 Madrid (UTC-5 and UTC+1): 10:00 Madrid (04:00 there) is never used
    rates = _lead_rates()
    due = next_best_time(
        rates, at(MON, 12), 2 * DAY, MADRID, lambda t: WEEKDAYS_9_TO_7.next_open(t, NEW_YORK)
    )
    assert due == at(MON, 17)
    assert datetime.fromtimestamp(due, NEW_YORK).hour == 11
