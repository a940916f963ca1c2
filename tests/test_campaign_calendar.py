"""Business hours in the lead's own time zone: DST days, holidays, weekends, WaitUntil, and the
zone and language a lead is written to in."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.campaigns.calendar import BusinessCalendar, language_for, timezone_for
from gateway.campaigns.settings import CampaignSettings, OpeningHours

MADRID = ZoneInfo("Europe/Madrid")
MEXICO = ZoneInfo("America/Mexico_City")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")

CHRISTMAS = date(2025, 12, 25)  # a Thursday


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> float:
    return datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()


def local(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%a %Y-%m-%d %H:%M %Z")


@pytest.fixture
def cal() -> BusinessCalendar:
    # the default hours: Monday to Friday, 09:00-19:00
    return BusinessCalendar(CampaignSettings(holidays=[CHRISTMAS]))


def test_open_hours_are_start_inclusive_end_exclusive(cal: BusinessCalendar) -> None:
    assert not cal.is_open(at(MADRID, 2025, 6, 3, 8, 59), MADRID)
    assert cal.is_open(at(MADRID, 2025, 6, 3, 9, 0), MADRID)
    assert cal.is_open(at(MADRID, 2025, 6, 3, 18, 59), MADRID)
    assert not cal.is_open(at(MADRID, 2025, 6, 3, 19, 0), MADRID)
    assert not cal.is_open(at(MADRID, 2025, 6, 7, 12, 0), MADRID)  # Saturday


def test_next_open_is_the_instant_itself_when_open(cal: BusinessCalendar) -> None:
    t = at(MADRID, 2025, 6, 3, 11, 17)
    assert cal.next_open(t, MADRID) == t


def test_friday_evening_goes_to_monday_nine(cal: BusinessCalendar) -> None:
    friday = at(MADRID, 2025, 6, 6, 20, 30)
    assert local(cal.next_open(friday, MADRID), MADRID) == "Mon 2025-06-09 09:00 CEST"
    early = at(MADRID, 2025, 6, 4, 6, 0)  # Wednesday before opening: the same morning
    assert local(cal.next_open(early, MADRID), MADRID) == "Wed 2025-06-04 09:00 CEST"


def test_weekend_across_spring_dst_change_opens_at_nine_summer_time(
    cal: BusinessCalendar,
) -> None:
    # Europe/Madrid goes 02:00 CET -> 03:00 CEST on Sunday 2025-03-30
    friday = at(MADRID, 2025, 3, 28, 19, 30)
    monday = cal.next_open(friday, MADRID)
    assert local(monday, MADRID) == "Mon 2025-03-31 09:00 CEST"
    assert monday == datetime(2025, 3, 31, 7, 0, tzinfo=UTC).timestamp()


def test_weekend_across_autumn_dst_change_opens_at_nine_winter_time(
    cal: BusinessCalendar,
) -> None:
    # Europe/Madrid goes 03:00 CEST -> 02:00 CET on Sunday 2025-10-26
    friday = at(MADRID, 2025, 10, 24, 21, 0)
    monday = cal.next_open(friday, MADRID)
    assert local(monday, MADRID) == "Mon 2025-10-27 09:00 CET"
    assert monday == datetime(2025, 10, 27, 8, 0, tzinfo=UTC).timestamp()


def test_wait_in_days_keeps_the_wall_clock_over_dst(cal: BusinessCalendar) -> None:
    spring = at(MADRID, 2025, 3, 28, 10, 0)
    after = cal.after_wait(spring, MADRID, days=7, hours=0)
    assert local(after, MADRID) == "Fri 2025-04-04 10:00 CEST"
    assert after - spring == 7 * 86400 - 3600  # that week was an hour short

    autumn = at(MADRID, 2025, 10, 24, 10, 0)
    after = cal.after_wait(autumn, MADRID, days=7, hours=0)
    assert local(after, MADRID) == "Fri 2025-10-31 10:00 CET"
    assert after - autumn == 7 * 86400 + 3600


def test_wait_in_hours_is_elapsed_time_then_next_open(cal: BusinessCalendar) -> None:
    t = at(MADRID, 2025, 6, 5, 10, 0)  # Thursday
    assert local(cal.after_wait(t, MADRID, days=0, hours=3), MADRID) == "Thu 2025-06-05 13:00 CEST"
    # 10 hours from Thursday 10:00 is 20:00, closed: Friday 09:00
    assert local(cal.after_wait(t, MADRID, days=0, hours=10), MADRID) == "Fri 2025-06-06 09:00 CEST"
    # two days from Thursday lands on Saturday: Monday 09:00
    assert local(cal.after_wait(t, MADRID, days=2, hours=0), MADRID) == "Mon 2025-06-09 09:00 CEST"


def test_holiday_is_closed_all_day_in_the_leads_own_zone(cal: BusinessCalendar) -> None:
    eve = at(MADRID, 2025, 12, 24, 19, 30)
    assert not cal.is_open(at(MADRID, 2025, 12, 25, 11, 0), MADRID)
    assert local(cal.next_open(eve, MADRID), MADRID) == "Fri 2025-12-26 09:00 CET"

    # 23:30 on the 24th in Madrid is 16:30 on the 24th in Mexico City: open there
    madrid_late = at(MADRID, 2025, 12, 24, 23, 30)
    assert cal.is_open(madrid_late, MEXICO)
    assert not cal.is_open(madrid_late, MADRID)
    # 10:00 on the 25th in Madrid is 03:00 on the 25th in Mexico City: holiday there too
    christmas_morning = at(MADRID, 2025, 12, 25, 10, 0)
    assert local(cal.next_open(christmas_morning, MEXICO), MEXICO) == "Fri 2025-12-26 09:00 CST"


def test_leads_in_the_americas_open_at_their_own_nine(cal: BusinessCalendar) -> None:
    # mid-March 2025: New York already on summer time (since 9 March), Madrid not yet, and
    # Mexico City no longer changes its clocks (since 2022)
    before_dawn = datetime(2025, 3, 17, 5, 0, tzinfo=UTC).timestamp()  # Monday
    assert cal.next_open(before_dawn, MADRID) == datetime(2025, 3, 17, 8, 0, tzinfo=UTC).timestamp()
    assert (
        cal.next_open(before_dawn, NEW_YORK) == datetime(2025, 3, 17, 13, 0, tzinfo=UTC).timestamp()
    )
    assert (
        cal.next_open(before_dawn, MEXICO) == datetime(2025, 3, 17, 15, 0, tzinfo=UTC).timestamp()
    )
    # a Madrid Friday afternoon is Friday morning in New York: still open there
    friday = at(MADRID, 2025, 3, 21, 17, 0)
    assert cal.is_open(friday, NEW_YORK)
    # and Friday 19:30 in New York is the weekend for them too: their Monday 09:00
    ny_evening = at(NEW_YORK, 2025, 3, 21, 19, 30)
    assert local(cal.next_open(ny_evening, NEW_YORK), NEW_YORK) == "Mon 2025-03-24 09:00 EDT"


def test_split_day_reopens_after_the_break() -> None:
    cal = BusinessCalendar(
        CampaignSettings(
            business_hours=[
                OpeningHours(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="14:00"),
                OpeningHours(days=["mon", "tue", "wed", "thu"], start="16:00", end="19:00"),
            ]
        )
    )
    assert local(cal.next_open(at(MADRID, 2025, 6, 3, 14, 30), MADRID), MADRID) == (
        "Tue 2025-06-03 16:00 CEST"
    )
    # Friday afternoon has no second shift
    assert local(cal.next_open(at(MADRID, 2025, 6, 6, 14, 30), MADRID), MADRID) == (
        "Mon 2025-06-09 09:00 CEST"
    )


def test_wait_until_weekday_before_at_and_after_the_hour(cal: BusinessCalendar) -> None:
    tuesday = 1
    before = at(MADRID, 2025, 6, 3, 9, 30)  # Tuesday 09:30, before 10:00
    assert local(cal.next_time(before, MADRID, tuesday, 10, 0), MADRID) == (
        "Tue 2025-06-03 10:00 CEST"
    )
    exactly = at(MADRID, 2025, 6, 3, 10, 0)  # strictly after: next week
    assert local(cal.next_time(exactly, MADRID, tuesday, 10, 0), MADRID) == (
        "Tue 2025-06-10 10:00 CEST"
    )
    after = at(MADRID, 2025, 6, 3, 10, 1)
    assert local(cal.next_time(after, MADRID, tuesday, 10, 0), MADRID) == (
        "Tue 2025-06-10 10:00 CEST"
    )
    wednesday = at(MADRID, 2025, 6, 4, 8, 0)
    assert local(cal.next_time(wednesday, MADRID, tuesday, 10, 0), MADRID) == (
        "Tue 2025-06-10 10:00 CEST"
    )


def test_wait_until_any_day_and_closed_moments(cal: BusinessCalendar) -> None:
    thursday = at(MADRID, 2025, 6, 5, 11, 0)
    assert local(cal.next_time(thursday, MADRID, None, 10, 30), MADRID) == (
        "Fri 2025-06-06 10:30 CEST"
    )
    # Friday 11:00 -> Saturday 10:30 is closed -> Monday 09:00
    friday = at(MADRID, 2025, 6, 6, 11, 0)
    assert local(cal.next_time(friday, MADRID, None, 10, 30), MADRID) == (
        "Mon 2025-06-09 09:00 CEST"
    )
    # an hour before opening falls to the opening
    monday = at(MADRID, 2025, 6, 9, 6, 0)
    assert local(cal.next_time(monday, MADRID, 0, 7, 0), MADRID) == "Mon 2025-06-09 09:00 CEST"
    # a holiday Thursday at 10:00 -> Friday 09:00
    wednesday = at(MADRID, 2025, 12, 24, 12, 0)
    assert local(cal.next_time(wednesday, MADRID, 3, 10, 0), MADRID) == ("Fri 2025-12-26 09:00 CET")


def test_wait_until_an_hour_in_the_leads_zone_across_dst() -> None:
    always = BusinessCalendar(CampaignSettings(business_hours=[]))  # no hours limit
    # Sunday 2025-03-30 02:30 does not exist in Madrid: the clock shows 03:30 then
    saturday = at(MADRID, 2025, 3, 29, 12, 0)
    moment = always.next_time(saturday, MADRID, 6, 2, 30)
    assert local(moment, MADRID) == "Sun 2025-03-30 03:30 CEST"
    # Sunday 2025-10-26 02:30 happens twice: the first one
    saturday = at(MADRID, 2025, 10, 25, 12, 0)
    moment = always.next_time(saturday, MADRID, 6, 2, 30)
    assert local(moment, MADRID) == "Sun 2025-10-26 02:30 CEST"
    # a weekly 10:00 over the change stays 10:00 of the wall clock
    before_change = at(MADRID, 2025, 10, 21, 10, 0)  # Tuesday
    assert local(always.next_time(before_change, MADRID, 1, 10, 0), MADRID) == (
        "Tue 2025-10-28 10:00 CET"
    )


def test_local_day_is_the_leads_calendar_day(cal: BusinessCalendar) -> None:
    t = datetime(2025, 3, 30, 23, 30, tzinfo=UTC).timestamp()
    assert cal.local_day(t, MADRID) == "2025-03-31"
    assert cal.local_day(t, MEXICO) == "2025-03-30"


def test_timezone_from_numbers_and_country() -> None:
    assert timezone_for("US", ["+12125551234"], "Europe/Madrid") == "America/New_York"
    assert timezone_for("US", ["+14155550123"], "Europe/Madrid") == "America/Los_Angeles"
    assert timezone_for("", ["+525512345678"], "Europe/Madrid") == "America/Mexico_City"
    assert timezone_for("MX", [], "Europe/Madrid") == "America/Mexico_City"
    assert timezone_for("US", [], "Europe/Madrid") == "America/New_York"
    # a Spanish mobile could be Canary or mainland: the country's main zone
    assert timezone_for("", ["+34612345678"], "UTC") == "Europe/Madrid"
    assert timezone_for("ES", ["+34922123456"], "UTC") == "Atlantic/Canary"
    # a foreign number does not move a lead out of their country
    assert timezone_for("MX", ["+12125551234"], "UTC") == "America/Mexico_City"
    # nothing known: the default; garbage numbers are ignored
    assert timezone_for("", [], "Europe/Madrid") == "Europe/Madrid"
    assert timezone_for("", ["not a number"], "America/New_York") == "America/New_York"


def test_language_of_a_lead() -> None:
    assert language_for("en", "ES", "es") == "en"  # theirs when known
    assert language_for("", "MX", "en") == "es"
    assert language_for("", "US", "es") == "en"
    assert language_for("", "", "es") == "es"
