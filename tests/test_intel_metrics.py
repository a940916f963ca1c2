"""Customer metrics from a small hand-checked fixture: a customer with one purchase, one with
none, a regular customer who is late, a bounced e-mail, a record missing its data. The right
answers are worked out in the comments next to each assertion (rules: gateway/intel/metrics.py).
Then the same on a real store: events recompute them, the caller card shows the few that
matter in the card's one query, and campaign segments select on them."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.calls.model import CallRecord, Direction, Outcome
from gateway.campaigns.model import Segment
from gateway.campaigns.segment import count_segment
from gateway.intel.besthour import AnswerProfile, tally
from gateway.intel.metrics import (
    CARD_METRICS,
    METRICS,
    CallFact,
    Cohort,
    DealFact,
    EmailFact,
    Facts,
    Metric,
    PhoneFact,
    Profile,
    TouchFact,
    compute,
)
from gateway.intel.service import IntelService
from gateway.intel.wording import reason_text
from gateway.lookup.card import CallerCard
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.store.events import WrapUpSaved
from tests.postgres_fixtures import open_store

STORE_ENGINES = ("sqlite", "postgresql")

TZ = ZoneInfo("Europe/Madrid")  # June: UTC+2
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0
MOBILE = "+34612345678"  # a valid Spanish mobile


def by_name(metrics: list[Metric]) -> dict[str, Metric]:
    assert [m.name for m in metrics] == list(METRICS)
    return {m.name: m for m in metrics}


def won(days_ago: float, amount: float | None = 100.0, currency: str = "EUR") -> DealFact:
    at = NOW - days_ago * DAY
    return DealFact("won", amount, currency, at, at, product="Plan", title="Order")


FULL = Profile(
    kind="contact",
    first_name="Lucía",
    last_name="Gómez",
    company="Acme",
    country="ES",
    owner="ana",
    phones=(PhoneFact(MOBILE),),
    emails=(EmailFact("lucia@example.com"),),
)


def test_a_customer_with_one_purchase() -> None:
    facts = Facts(FULL, deals=(won(100, 250.0),))
    m = by_name(compute(facts, NOW, TZ))
    assert (m["recency"].value, m["recency"].reason) == (100, "recency.days")
    assert m["frequency"].value == 1
    assert (m["monetary"].value, m["monetary"].label) == (250.0, "EUR")
    assert m["clv_historic"].value == 250.0
    # R: 100 days is within 180 -> 3; F: 1 -> 1; M: 250 -> 2; R 3 with F 1-2: needs attention
    assert m["rfm_segment"].label == "needs_attention"
    assert m["rfm_segment"].value == 312
    # one purchase has no rhythm of its own, and no cohort was given: it says so
    for name in ("churn_30", "churn_60", "clv_projected"):
        assert (m[name].value, m[name].label, m[name].reason) == (None, None, "no_rhythm")

    # with the cohort's rhythm (60 days): (100 + 30) / 60 = 2.167 rhythms late at the horizon,
    # risk (2.167 - 1.5) / 1.5 = 0.44; at 60 days (160 / 60 - 1.5) / 1.5 = 0.78
    m = by_name(compute(facts, NOW, TZ, Cohort(median_gap_days=60.0, customers=40)))
    assert (m["churn_30"].value, m["churn_30"].label) == (0.44, "medium")
    assert (m["churn_60"].value, m["churn_60"].label) == (0.78, "high")
    assert m["churn_30"].reason == "churn.cohort"
    assert m["churn_30"].params == {"days": 100, "gap_days": 60, "horizon": 30, "percent": 44}
    # 12 months: 250 per purchase x 365 / 60 purchases x (1 - 0.78) = 334.58
    assert m["clv_projected"].value == 334.58
    assert m["clv_projected"].reason == "clv.projected_cohort"
    # the last touch is the purchase, 100 days ago: past the 90-day horizon, score 0
    assert (m["last_activity"].value, m["last_activity"].label) == (0, "purchase")
    # churn 0.44 is "medium": the phone works, so call
    assert (m["next_best"].label, m["next_best"].reason) == ("call_back", "next.churn")


def test_a_lead_with_no_purchases_says_so() -> None:
    lead = Profile(
        kind="lead",
        first_name="Pedro",
        country="ES",
        owner="ana",
        status="new",
        phones=(PhoneFact(MOBILE),),
    )
    m = by_name(compute(Facts(lead), NOW, TZ, Cohort(60.0, 40)))
    for name in ("recency", "monetary", "clv_historic", "clv_projected", "churn_30", "churn_60"):
        assert m[name].value is None and m[name].reason == "no_purchases", name
    assert (m["frequency"].value, m["frequency"].reason) == (0, "no_purchases")
    assert (m["rfm_segment"].label, m["rfm_segment"].value) == ("prospect", None)
    assert (m["last_activity"].value, m["last_activity"].reason) == (None, "no_activity")
    assert m["marketing"].reason == "no_campaigns"
    assert m["engagement"].reason == "no_contact"
    assert m["satisfaction"].reason == "no_rated_calls"
    assert m["best_hour"].reason == "no_calls"
    assert (m["best_channel"].label, m["best_channel"].reason) == ("phone", "channel.only_phone")
    # no e-mail (20) and no company (10) missing: 70, fair
    assert (m["data_quality"].value, m["data_quality"].label) == (70, "fair")
    assert m["data_quality"].params["missing"] == ["valid_email", "company"]
    assert (m["next_best"].label, m["next_best"].reason) == ("call_back", "next.lead_new")
    assert reason_text(m["recency"], "es") == "Todavía no ha comprado."
    assert reason_text(m["recency"], "en") == "No purchases yet."


def _at_local(days_ago: int, hour: int) -> float:
    d = datetime.fromtimestamp(NOW - days_ago * DAY, TZ)
    return d.replace(hour=hour, minute=0, second=0).timestamp()


def test_a_regular_customer_who_is_late() -> None:
    calls = (
        CallFact("c1", _at_local(5, 10), "outbound", "answered", "interested"),
        CallFact("c2", _at_local(12, 10), "outbound", "answered", "complaint"),
        CallFact("c3", _at_local(6, 16), "outbound", "noanswer"),
        CallFact("c4", _at_local(7, 16), "outbound", "busy"),
    )
    facts = Facts(FULL, deals=(won(110), won(80), won(50)), calls=calls)
    m = by_name(compute(facts, NOW, TZ))
    # buys every 30 days (gaps 30, 30), last 50 days ago: (50 + 30) / 30 = 2.67 rhythms,
    # risk (2.67 - 1.5) / 1.5 = 0.78; at 60 days (110 / 30 - 1.5) / 1.5 > 1: 1.0
    assert (m["churn_30"].value, m["churn_30"].label, m["churn_30"].reason) == (
        0.78,
        "high",
        "churn.own",
    )
    assert m["churn_60"].value == 1.0
    # 100 a purchase, 365 / 30 a year, nobody left to keep at 60 days: 0
    assert m["clv_projected"].value == 0.0
    # R: 50 days -> 4; F: 3 -> 3; M: 300 -> 2; R >= 3 and F >= 3: loyal
    assert (m["rfm_segment"].label, m["rfm_segment"].params["r"]) == ("loyal", 4)
    assert m["monetary"].value == 300.0
    # answered at 10:00 twice, not at 16:00 twice; no cohort: the prior is their own 2/4,
    # worth two calls: 10:00 (2 + 1) / (2 + 2) = 75%, 16:00 (0 + 1) / (2 + 2) = 25%; hours
    # nobody was called at are not recommended (None)
    assert (m["best_hour"].value, m["best_hour"].label) == (10, "10:00")
    rates: list[int | None] = [None] * 24
    rates[10], rates[16] = 75, 25
    assert m["best_hour"].params == {
        "hour": "10:00", "percent": 75, "calls": 2, "answered": 2, "rates": rates,
        "tz": "Europe/Madrid",
    }  # fmt: skip
    # 180 days: answered 2 of 4 calls, 3 purchases: (2 + 3) / (5 + 2) = 71
    assert m["engagement"].value == 71
    # one "interested", one "complaint": 50
    assert m["satisfaction"].value == 50
    # last touch: the call 5 days ago (at 10:00 local, 7 h before "now" 5 days later... whole
    # days: 5); score 100 x (1 - 5.x / 90) = 94
    assert (m["last_activity"].label, m["last_activity"].params["days"]) == ("call", 5)
    assert m["last_activity"].value == 94
    # phone: (2 answered + 0 in + 1) / (4 + 2) = 50%; e-mail: (0 + 1) / (0 + 2) = 50%: phone
    assert m["best_channel"].label == "phone"
    assert (m["next_best"].label, m["next_best"].reason) == ("call_back", "next.churn")
    assert m["next_best"].params["percent"] == 78
    text = reason_text(m["churn_30"], "en")
    assert text == "50 days since the last purchase; buys every 30 days: 78% risk within 30 days."


def test_the_best_hour_leans_on_everybodys_answers() -> None:
    # everybody (the cohort): 10 outbound calls at 11:00 local, 8 answered; 10 at 17:00, 2
    # answered: overall 10/20, hours 11:00 (8 + 5) / (10 + 10) = 65%, 17:00 (2 + 5) / 20 = 35%
    day = datetime(2026, 5, 25, tzinfo=TZ)  # a Monday
    calls = [(day.replace(hour=11).timestamp(), i < 8) for i in range(10)]
    calls += [(day.replace(hour=17).timestamp(), i < 2) for i in range(10)]
    cohort = Cohort(answers=AnswerProfile(tally(calls, TZ)))
    # never called (an inbound call says when they call, not when they answer): everybody's
    inbound = CallFact("in", day.replace(hour=17).timestamp(), "inbound", "answered")
    m = by_name(compute(Facts(FULL, calls=(inbound,)), NOW, TZ, cohort))
    assert (m["best_hour"].label, m["best_hour"].reason) == ("11:00", "best_hour.everyone")
    assert m["best_hour"].params["percent"] == 65 and m["best_hour"].params["calls"] == 0
    assert reason_text(m["best_hour"], "en") == (
        "Not called yet: people answer most at 11:00 (estimated rate 65%)."
    )
    assert reason_text(m["best_hour"], "es") == (
        "Aún sin llamadas: la gente contesta más a las 11:00 (tasa estimada 65 %)."
    )
    # answered twice at 17:00: (2 + 2 x 0.35) / 4 = 68% beats 11:00's 65%
    at17 = day.replace(hour=17, minute=30).timestamp()
    mine = tuple(CallFact(f"o{i}", at17 - i * DAY, "outbound", "answered") for i in range(2))
    m = by_name(compute(Facts(FULL, calls=mine), NOW, TZ, cohort))
    assert (m["best_hour"].label, m["best_hour"].reason) == ("17:00", "best_hour.rate")
    assert m["best_hour"].params["percent"] == 68
    assert m["best_hour"].params["rates"][11] == 65  # never called then: everybody's


def test_a_bounced_email_and_campaign_touches() -> None:
    person = Profile(
        first_name="Ana",
        company="Acme",
        country="ES",
        owner="luis",
        phones=(PhoneFact(MOBILE),),
        emails=(EmailFact("ana@bad.example", bounced=True),),
    )
    touches = (
        TouchFact("email", "bounced", NOW - 20 * DAY),
        TouchFact("email", "sent", NOW - 10 * DAY, opened_at=NOW - 9 * DAY),
        TouchFact("call", "called", NOW - 8 * DAY, call_outcome="answered"),
        TouchFact("call", "task_created", NOW - DAY),  # not done yet: not counted
    )
    m = by_name(compute(Facts(person, touches=touches), NOW, TZ))
    # an open is half a reply, an answered call a whole: (0.5 + 1) / 3 touches = 50
    assert m["marketing"].value == 50
    assert m["marketing"].params == {
        "emails": 2,
        "opened": 1,
        "replied": 0,
        "calls": 1,
        "answered": 1,
    }
    # the only address bounced: 100 - 20 = 80, still good, but e-mail is not a channel
    assert (m["data_quality"].value, m["data_quality"].label) == (80, "good")
    assert m["data_quality"].params == {"missing": ["valid_email"], "bounced": 1}
    assert (m["best_channel"].label, m["best_channel"].reason) == ("phone", "channel.only_phone")
    assert reason_text(m["data_quality"], "es") == "Falta o no es válido: un correo que funcione."


def test_missing_data_asks_for_an_update() -> None:
    nobody = Profile(kind="lead", status="new")
    m = by_name(compute(Facts(nobody), NOW, TZ))
    assert (m["data_quality"].value, m["data_quality"].label) == (0, "poor")
    assert m["data_quality"].params["missing"] == [
        "callable_phone",
        "valid_email",
        "name",
        "owner",
        "company",
        "country",
    ]
    assert m["best_channel"].reason == "unreachable"
    assert (m["next_best"].label, m["next_best"].reason) == ("update_data", "next.update_data")
    assert reason_text(m["next_best"], "en") == (
        "Complete the record first: a callable number, an e-mail that works, name, owner, "
        "company, country."
    )
    # a do-not-call number is not a callable one
    dnc = Profile(
        first_name="Eva",
        company="Acme",
        country="ES",
        owner="ana",
        phones=(PhoneFact(MOBILE, do_not_call=True),),
        emails=(EmailFact("eva@example.com", opted_out=True),),
    )
    m = by_name(compute(Facts(dnc), NOW, TZ))
    assert m["data_quality"].params["missing"] == ["callable_phone"]
    assert (m["next_best"].label, m["next_best"].reason) == ("none", "next.unreachable")


def test_overdue_follow_up_open_deal_and_lost_deal() -> None:
    m = by_name(compute(Facts(FULL, follow_ups=(NOW - 3 * DAY,)), NOW, TZ))
    assert (m["next_best"].reason, m["next_best"].params["days"]) == ("next.follow_up_overdue", 3)
    stale = DealFact(
        "proposal", 900.0, "EUR", NOW - 20 * DAY, title="Renewal", updated_at=NOW - 10 * DAY
    )
    m = by_name(compute(Facts(FULL, deals=(stale,)), NOW, TZ))
    assert (m["next_best"].reason, m["next_best"].params["days"]) == ("next.open_deal", 10)
    assert reason_text(m["next_best"], "es") == (
        "Oportunidad abierta «Renewal» (Propuesta) sin tocar desde hace 10 días: llamar."
    )
    lost = DealFact("lost", 500.0, "EUR", NOW - 90 * DAY, NOW - 45 * DAY)
    m = by_name(compute(Facts(FULL, deals=(lost,)), NOW, TZ))
    assert (m["next_best"].label, m["next_best"].params["days"]) == ("revive_lost_deal", 45)
    # a lost deal is not a purchase
    assert m["frequency"].value == 0


# -- on a real store ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _card(source: StoreCardSource, e164: str) -> CallerCard | None:
    """The store's card (awaited on PostgreSQL, whose lookup is a query on its connection)."""
    found = source.find(e164)
    return await found if inspect.isawaitable(found) else found


async def _person(db: Database, **kw: object) -> int:
    cols = {"kind": "contact", "first_name": "", "created_at": NOW, "updated_at": NOW, **kw}
    async with db.transaction() as conn:
        cur = await conn.execute(
            f"INSERT INTO people ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
            list(cols.values()),
        )
    return int(cur.lastrowid or 0)


async def _deal(db: Database, pid: int, stage: str, days_ago: float, amount: float) -> None:
    at = NOW - days_ago * DAY
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO deals (person_id, title, stage, amount, currency, created_at,"
            " updated_at, closed_at) VALUES (?, 'Order', ?, ?, 'EUR', ?, ?, ?)",
            (pid, stage, amount, at, at, at if stage in ("won", "lost") else None),
        )


@pytest.fixture
async def store(store_location: str) -> object:
    db = await open_store(store_location)
    yield db
    await db.close()


async def test_events_recompute_and_the_card_shows_the_few_that_matter(store: Database) -> None:
    db = store
    clock = Clock(NOW)
    pid = await _person(
        db, first_name="Lucía", last_name="Gómez", company="Acme", country="ES", owner="ana"
    )
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO phones (person_id, raw, e164, type) VALUES (?, ?, ?, 'mobile')",
            (pid, MOBILE, MOBILE),
        )
    for days in (110, 80, 50):
        await _deal(db, pid, "won", days, 100.0)
    source = StoreCardSource(db)
    stale: list[str] = []
    source.watch(stale.append)
    first = await _card(source, MOBILE)
    assert first is not None
    assert first.insight == ()  # nothing computed yet

    service = IntelService(db, tz=TZ, default_region="ES", clock=clock)
    bus = Bus()
    service.subscribe(bus)
    worker = asyncio.create_task(service.run())
    try:
        bus.publish(WrapUpSaved("sim:9", "ana", NOW, pid, "interested", "answered"))
        await service.settled()
        card = await _card(source, MOBILE)
        assert card is not None
        assert [i.name for i in card.insight] == list(CARD_METRICS)
        shown = {i.name: i for i in card.insight}
        assert shown["rfm_segment"].label == "loyal"
        assert shown["clv_historic"].value == 300.0
        assert (shown["churn_30"].value, shown["churn_30"].label) == (0.78, "high")
        assert shown["churn_30"].params["gap_days"] == 30
        assert shown["data_quality"].params["missing"] == ["valid_email"]
        assert shown["next_best"].label == "call_back"
        assert stale == [MOBILE]  # the cached card was told to go

        # a call ends: it counts before the call log has written it (the record on the bus)
        record = CallRecord(
            linkedid="77",
            pbx="sim",
            direction=Direction.OUTBOUND,
            outcome=Outcome.ANSWERED,
            started_at=NOW - 3600,
            ended_at=NOW - 3000,
            dialed="612345678",
        )
        bus.publish(CallEnded(record))
        await service.settled()
        metrics, _ = await service.stored(pid)
        best = {m.name: m for m in metrics}["best_hour"]
        local_hour = datetime.fromtimestamp(NOW - 3600, TZ).hour
        assert (best.value, best.params["calls"]) == (local_hour, 1)
    finally:
        worker.cancel()


async def test_nightly_run_measures_the_cohort_and_segments_select(store: Database) -> None:
    db = store
    regular = await _person(db, first_name="Reg", kind="lead", status="won")
    once = await _person(db, first_name="Once", kind="lead", status="won")
    await _person(db, first_name="Never", kind="lead", status="new")
    for days in (130, 90, 50):  # every 40 days
        await _deal(db, regular, "won", days, 100.0)
    await _deal(db, once, "won", 100, 80.0)
    service = IntelService(db, tz=TZ, clock=Clock(NOW))
    cohort = await service.refresh_cohort()
    assert (cohort.median_gap_days, cohort.customers) == (40.0, 2)
    assert await service.recompute_all() == 3
    metrics = {m.name: m for m in (await service.stored(once))[0]}
    # one purchase, the cohort's 40 days: (100 + 30) / 40 = 3.25 rhythms late -> 1.0
    assert (metrics["churn_30"].value, metrics["churn_30"].reason) == (1.0, "churn.cohort")
    # segments: RFM and churn risk
    segment = Segment(kinds=["lead"], rfm_segments=["prospect"])
    assert (await count_segment(db, segment, TZ)).total == 1
    # regular: (50 + 30) / 40 = 2 rhythms -> (2 - 1.5) / 1.5 = 0.33; once: 1.0
    assert (await count_segment(db, Segment(kinds=["lead"], churn_risk_min=0.3), TZ)).total == 2
    assert (await count_segment(db, Segment(kinds=["lead"], churn_risk_min=0.9), TZ)).total == 1
    assert service.next_nightly(NOW) == datetime(2026, 6, 2, 3, 0, tzinfo=TZ).timestamp()


async def test_at_start_missing_and_stale_metrics_are_computed_and_fresh_ones_kept(
    store: Database,
) -> None:
    db = store
    clock = Clock(NOW)
    service = IntelService(db, tz=TZ, clock=clock)
    last_night = datetime(2026, 6, 1, 3, 0, tzinfo=TZ).timestamp()  # NOW is 14:00 in Madrid
    assert service.last_nightly(NOW) == last_night
    assert service.last_nightly(last_night) == last_night
    never = await _person(db, first_name="Never")
    fresh = await _person(db, first_name="Fresh")
    stale = await _person(db, first_name="Stale")
    partial = await _person(db, first_name="Partial")
    clock.now = last_night + 3600  # after last night's run
    await service.recompute(fresh)
    clock.now = last_night - 3600  # before it: the gateway was down at 03:00
    await service.recompute(stale)
    await service.recompute(partial)
    async with db.transaction() as conn:  # a metric a newer version added
        await conn.execute(
            "DELETE FROM person_metrics WHERE person_id = ? AND metric = 'best_hour'", (partial,)
        )

    async def computed() -> dict[int, tuple[int, float]]:
        rows = await db.conn.execute_fetchall(
            "SELECT person_id, count(*), min(computed_at) FROM person_metrics GROUP BY person_id"
        )
        return {r[0]: (r[1], r[2]) for r in rows}

    assert never not in await computed()
    clock.now = NOW
    worker = asyncio.create_task(service.run())  # measures the cohort the catch-up waits for
    try:
        assert await service.catch_up(batch=2) == 3
        after = await computed()
        full = len(METRICS) + 1  # and the card's row
        assert after[never] == after[stale] == after[partial] == (full, NOW)
        assert after[fresh] == (full, last_night + 3600)  # left alone
        assert service.caught_up.is_set()
        assert await service.catch_up() == 0  # nothing left
    finally:
        worker.cancel()
