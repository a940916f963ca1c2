"""The lookup chain: store first, connectors within the budget, cache with invalidation.

The external CRMs are real aiohttp servers on loopback (slow, failing or answering), reached
by a small connector over real HTTP; the store is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import ConnectorHealth, CrmConnector
from gateway.errors import ConnectorError
from gateway.lookup.cache import CardCache
from gateway.lookup.card import CallerCard, FollowUp, Insight, Interaction, PersonKind
from gateway.lookup.chain import LookupChain
from gateway.lookup.settings import LookupSettings
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import (
    AccountRepository,
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)
from tests.postgres_fixtures import open_store

LAB = "+34911234567"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeCrm:
    """A CRM over HTTP whose behaviour the test picks: found, unknown, fail or hang."""

    def __init__(self, mode: str, name: str = "Jo Remote") -> None:
        self.mode = mode
        self.name = name
        self.requests: list[str] = []
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/lookup", self.lookup)
        return app

    async def lookup(self, request: web.Request) -> web.Response:
        self.requests.append(request.query["number"])
        self.arrived.set()
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "fail":
            return web.json_response({"error": "db down"}, status=500)
        if self.mode == "unknown":
            return web.json_response({}, status=404)
        return web.json_response({"name": self.name, "id": "42"})


class HttpConnector:
    """Just enough of a connector to talk to FakeCrm over real HTTP."""

    def __init__(self, name: str, base_url: str, session: aiohttp.ClientSession) -> None:
        self.name = name
        self.base_url = base_url
        self.session = session
        self.cancelled = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def lookup(self, e164: str, raw: str) -> CallerCard | None:
        try:
            async with self.session.get(f"{self.base_url}/lookup", params={"number": e164}) as r:
                if r.status == 404:
                    return None
                if r.status != 200:
                    raise ConnectorError(f"{self.name} answered HTTP {r.status}")
                body = await r.json()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return CallerCard(
            number=e164,
            kind=PersonKind.CONTACT,
            display_name=body["name"],
            person_id=body["id"],
            external_url=f"{self.base_url}/contacts/{body['id']}",
        )

    async def log_call(self, record: dict[str, object]) -> None: ...

    def health(self) -> ConnectorHealth:
        return ConnectorHealth(self.name)


STORE_ENGINES = ("sqlite", "postgresql")


@pytest.fixture
async def db(store_location: str):
    d = await open_store(store_location)
    yield d
    await d.close()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def crm(aiohttp_server: Any, session: aiohttp.ClientSession):
    servers: list[FakeCrm] = []

    async def make(mode: str, name: str = "crm", who: str = "Jo Remote") -> HttpConnector:
        fake = FakeCrm(mode, who)
        servers.append(fake)
        server = await aiohttp_server(fake.app())
        conn = HttpConnector(name, str(server.make_url("")).rstrip("/"), session)
        conn.fake = fake  # type: ignore[attr-defined]
        return conn

    yield make
    for fake in servers:
        fake.release.set()


def settings(**over: Any) -> LookupSettings:
    return LookupSettings(**{"default_region": "ES", "budget_ms": 300, **over})


async def add_lab_contact(db: Database) -> int:
    acc = await AccountRepository(db).create({"name": "Ibérica Logística"})
    result = await PersonRepository(db).create(
        PersonType.LEAD,
        {
            "first_name": "Lucía",
            "last_name": "Martín",
            "account_id": acc.id,
            "owner": "ana",
            "status": "qualified",
            "score": 7.5,
            "phones": ["+34 911 23 45 67"],
        },
    )
    return result.person.id


class CountingSource(StoreCardSource):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.calls = 0

    def find(self, e164: str) -> CallerCard | None:
        self.calls += 1
        return super().find(e164)


def test_connector_fake_fits_the_protocol(session: aiohttp.ClientSession) -> None:
    assert isinstance(HttpConnector("x", "http://127.0.0.1", session), CrmConnector)


# -- store ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "+34911234567",
        "+34 911 23 45 67",
        "911 23 45 67",
        "0034911234567",
        "(91) 123-45-67",
        "tel:+34-911-234-567",
        "+34 911 23 45 67;ext=12",
        "+34 911 23 45 67 x12",
        "\u0660\u0660\u0663\u0664\u0669\u0661\u0661\u0662\u0663\u0664\u0665\u0666\u0667",
        "\uff0b\uff13\uff14\uff19\uff11\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
    ],
)
async def test_every_format_finds_the_stored_caller(db: Database, raw: str) -> None:
    pid = await add_lab_contact(db)
    await ActivityRepository(db).add(pid, "note", "asked for a quote", at=10.0)
    await FollowUpRepository(db).add(pid, 20.0, "send the quote")
    chain = LookupChain(StoreCardSource(db), [], settings())
    card = await chain.lookup(raw)
    assert card.number == LAB
    assert (card.kind, card.display_name, card.company) == (
        PersonKind.LEAD,
        "Lucía Martín",
        "Ibérica Logística",
    )
    assert (card.owner, card.lead_status, card.lead_score) == ("ana", "qualified", 7.5)
    assert (card.person_id, card.source, card.country, card.line_type) == (
        str(pid),
        "store",
        "ES",
        "fixed_line",
    )
    assert [i.summary for i in card.interactions] == ["asked for a quote"]
    assert [f.title for f in card.follow_ups] == ["send the quote"]


async def test_card_shows_last_five_interactions_newest_first(db: Database) -> None:
    pid = await add_lab_contact(db)
    for i in range(8):
        await ActivityRepository(db).add(pid, "note", f"note {i}", at=float(i))
    card = await LookupChain(StoreCardSource(db), [], settings()).lookup(LAB)
    assert [i.summary for i in card.interactions] == [f"note {i}" for i in (7, 6, 5, 4, 3)]


async def test_the_whole_card_is_the_same_on_either_engine(db: Database) -> None:
    """Every part of a store card, ties included (PostgreSQL reads it in one statement of its
    own, SQLite in two): both engines must give exactly this card."""
    pid = await add_lab_contact(db)
    acts = ActivityRepository(db)
    for n, at in enumerate((5.0, 7.0, 7.0, 7.0, 3.0, 9.0)):  # three at the same moment
        await acts.add(pid, "call", f"call {n}", at=at)
    await acts.add(pid, "note", "private to the agent", at=99.0, call_id="c-1")  # not shown
    tasks = FollowUpRepository(db)
    ids = [(await tasks.add(pid, due, f"task {n}")).id for n, due in enumerate((50.0, 40.0, 40.0))]
    await tasks.complete((await tasks.add(pid, 1.0, "done already")).id)
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO person_metrics (person_id, metric, value, label, reason, params,"
            " computed_at) VALUES (?, 'card', NULL, NULL, 'card', ?, 0)",
            (pid, '[["churn_30", 0.25, "low", "churn.own", {"percent": 25}]]'),
        )
    await PersonRepository(db).update(pid, {"do_not_call": True, "status": "lost",
                                            "lost_reason": "price"})  # fmt: skip
    card = await LookupChain(StoreCardSource(db), [], settings()).lookup(LAB)
    assert card == CallerCard(
        number=LAB,
        kind=PersonKind.LEAD,
        display_name="Lucía Martín",
        company="Ibérica Logística",
        person_id=str(pid),
        account_id=card.account_id,
        owner="ana",
        lead_status="lost",
        lead_score=7.5,
        country="ES",
        line_type="fixed_line",
        # newest first; at the same moment, the one added last first
        interactions=tuple(
            Interaction("call", at, f"call {n}")
            for n, at in ((5, 9.0), (3, 7.0), (2, 7.0), (1, 7.0), (0, 5.0))
        ),
        # soonest first; on the same day, the one added first first
        follow_ups=(
            FollowUp(str(ids[1]), 40.0, "task 1"),
            FollowUp(str(ids[2]), 40.0, "task 2"),
            FollowUp(str(ids[0]), 50.0, "task 0"),
        ),
        extra={"do_not_call": "1", "lost_reason": "price"},
        insight=(Insight("churn_30", 0.25, "low", "churn.own", {"percent": 25}),),
    )
    assert card.account_id is not None
    assert all(type(i.at) is float for i in card.interactions)


async def test_account_switchboard_number_gives_an_account_card(db: Database) -> None:
    await AccountRepository(db).create({"name": "Acme", "phones": ["910 00 00 00"]})
    card = await LookupChain(StoreCardSource(db), [], settings()).lookup("+34910000000")
    assert (card.kind, card.display_name) == (PersonKind.ACCOUNT, "Acme")


@pytest.mark.parametrize(
    ("raw", "number", "country", "line_type"),
    [
        ("+44 20 7946 0018", "+442079460018", "GB", "fixed_line"),
        ("612 000 111", "+34612000111", "ES", "mobile"),
    ],
)
async def test_unknown_number_gets_a_card_with_country_and_line_type(
    db: Database, raw: str, number: str, country: str, line_type: str
) -> None:
    card = await LookupChain(StoreCardSource(db), [], settings()).lookup(raw)
    assert (card.kind, card.number, card.country, card.line_type) == (
        PersonKind.UNKNOWN,
        number,
        country,
        line_type,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("abc", "letters"),
        ("9" * 40, "too many digits"),
        (None, "as text"),
        ("<script>", "contains '<'"),
        ("+999 1234", "country code"),
    ],
)
async def test_invalid_input_gets_a_card_saying_why(db: Database, raw: Any, reason: str) -> None:
    chain = LookupChain(StoreCardSource(db), [], settings())
    card = await chain.lookup(raw)
    assert card.kind is PersonKind.UNKNOWN
    assert reason in card.extra["invalid"]
    assert len(chain.cache) == 0


async def test_extension_is_never_looked_up_as_a_number(db: Database) -> None:
    source = CountingSource(db)
    chain = LookupChain(source, [], settings())
    card = await chain.lookup("101")
    assert (card.kind, card.number, card.line_type) == (PersonKind.UNKNOWN, "101", "extension")
    assert source.calls == 0 and len(chain.cache) == 0


async def test_broken_store_still_gives_a_card(db: Database, caplog: Any) -> None:
    class Broken:
        def find(self, e164: str) -> CallerCard | None:
            raise RuntimeError("disk on fire")

        def watch(self, listener: Any) -> None: ...

    card = await LookupChain(Broken(), [], settings()).lookup(LAB)
    assert card.number == LAB and card.kind is PersonKind.UNKNOWN
    assert "store failed" in caplog.text


# -- connectors and the budget ------------------------------------------------------------


async def test_store_hit_does_not_ask_connectors(db: Database, crm: Any) -> None:
    await add_lab_contact(db)
    remote = await crm("found")
    card = await LookupChain(StoreCardSource(db), [remote], settings()).lookup(LAB)
    assert card.source == "store"
    assert remote.fake.requests == []


async def test_connector_answers_when_the_store_does_not_know(db: Database, crm: Any) -> None:
    remote = await crm("found", name="sugar")
    card = await LookupChain(StoreCardSource(db), [remote], settings()).lookup("0044 20 7946 0018")
    assert remote.fake.requests == ["+442079460018"]
    assert (card.display_name, card.source, card.number, card.country) == (
        "Jo Remote",
        "sugar",
        "+442079460018",
        "GB",
    )
    assert card.external_url is not None and card.external_url.endswith("/contacts/42")


async def test_slow_connector_is_cut_off_at_the_budget(db: Database, crm: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "gateway.lookup")
    slow = await crm("hang", name="slowcrm")
    chain = LookupChain(StoreCardSource(db), [slow], settings(budget_ms=50))
    card = await asyncio.wait_for(chain.lookup("612000111"), timeout=10)
    assert card.kind is PersonKind.UNKNOWN and card.number == "+34612000111"
    assert slow.fake.requests == ["+34612000111"]
    await asyncio.sleep(0)  # let the cancellation reach the connector
    assert slow.cancelled == 1
    assert "slowcrm gave no answer" in caplog.text


async def test_slow_and_failing_connectors_do_not_hide_a_good_one(
    db: Database, crm: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, "gateway.lookup")
    slow = await crm("hang", name="slowcrm")
    failing = await crm("fail", name="brokencrm")
    good = await crm("found", name="goodcrm", who="Ada Good")
    chain = LookupChain(StoreCardSource(db), [slow, failing, good], settings(budget_ms=80))
    card = await asyncio.wait_for(chain.lookup("612000111"), timeout=10)
    # the slow one is listed first, so the chain waits for it until the budget ends,
    # then returns the best answer it has
    assert (card.display_name, card.source) == ("Ada Good", "goodcrm")
    assert "brokencrm failed" in caplog.text and "HTTP 500" in caplog.text
    assert "slowcrm gave no answer" in caplog.text


async def test_first_listed_connector_wins_and_lower_ones_are_not_awaited(
    db: Database, crm: Any
) -> None:
    first = await crm("found", name="primary", who="From Primary")
    slow = await crm("hang", name="secondary")
    chain = LookupChain(StoreCardSource(db), [first, slow], settings(budget_ms=10_000))
    card = await asyncio.wait_for(chain.lookup("612000111"), timeout=5)
    assert (card.display_name, card.source) == ("From Primary", "primary")
    await asyncio.sleep(0)
    assert slow.cancelled == 1


async def test_connector_returning_junk_is_ignored(db: Database, caplog: Any) -> None:
    class Junk:
        name = "junk"

        async def lookup(self, e164: str, raw: str) -> Any:
            return {"name": "not a card"}

    card = await LookupChain(StoreCardSource(db), [Junk()], settings()).lookup("612000111")  # type: ignore[list-item]
    assert card.kind is PersonKind.UNKNOWN
    assert "not a card" in caplog.text


# -- cache --------------------------------------------------------------------------------


async def test_cache_hit_miss_and_expiry(db: Database) -> None:
    await add_lab_contact(db)
    clock = Clock()
    source = CountingSource(db)
    chain = LookupChain(source, [], settings(cache_ttl=60, negative_ttl=5), clock=clock)
    await chain.lookup(LAB)
    await chain.lookup("911 23 45 67")  # another format of the same number: a hit
    assert source.calls == 1
    await chain.lookup("612000111")
    await chain.lookup("612000111")
    assert source.calls == 2  # the negative answer is cached too
    clock.t += 6  # past the negative TTL, within the positive one
    await chain.lookup("612000111")
    await chain.lookup(LAB)
    assert source.calls == 3
    clock.t += 60
    await chain.lookup(LAB)
    assert source.calls == 4
    stats = chain.cache.stats()
    assert (stats.hits, stats.misses) == (3, 4)


async def test_a_lookup_never_shows_a_write_before_its_commit(db: Database) -> None:
    """A card reads committed data only: a person written in a transaction that is then
    rolled back never pops up, not even while the transaction is open."""
    chain = LookupChain(StoreCardSource(db), [], settings(cache_ttl=0, negative_ttl=0))
    with pytest.raises(RuntimeError, match="undo"):
        async with db.transaction():
            await add_lab_contact(db)
            assert not (await chain.lookup(LAB)).known
            raise RuntimeError("undo")
    assert not (await chain.lookup(LAB)).known
    await add_lab_contact(db)
    assert (await chain.lookup(LAB)).display_name == "Lucía Martín"


async def test_store_changes_invalidate_the_cached_card(db: Database) -> None:
    clock = Clock()
    chain = LookupChain(StoreCardSource(db), [], settings(), clock=clock)
    assert (await chain.lookup(LAB)).kind is PersonKind.UNKNOWN  # cached as unknown
    pid = await add_lab_contact(db)
    assert (await chain.lookup(LAB)).display_name == "Lucía Martín"
    await PersonRepository(db).update(pid, {"first_name": "Lucia"})
    assert (await chain.lookup(LAB)).display_name == "Lucia Martín"
    await ActivityRepository(db).add(pid, "note", "called back")
    assert [i.summary for i in (await chain.lookup(LAB)).interactions] == ["called back"]
    await PersonRepository(db).update(pid, {"phones": ["612345678"]})
    assert (await chain.lookup(LAB)).kind is PersonKind.UNKNOWN
    assert (await chain.lookup("612345678")).display_name == "Lucia Martín"


async def test_write_during_a_connector_wait_is_not_hidden_by_a_stale_card(
    db: Database, crm: Any
) -> None:
    slow = await crm("hang", name="slowcrm")
    chain = LookupChain(StoreCardSource(db), [slow], settings(budget_ms=200))
    pending = asyncio.ensure_future(chain.lookup(LAB))
    await asyncio.wait_for(slow.fake.arrived.wait(), timeout=5)
    await add_lab_contact(db)  # lands while the chain waits for the CRM
    assert (await pending).kind is PersonKind.UNKNOWN
    assert (await chain.lookup(LAB)).display_name == "Lucía Martín"


def test_cache_size_is_bounded_least_recently_used_first() -> None:
    clock = Clock()
    cache = CardCache(ttl=60, negative_ttl=5, max_size=2, clock=clock)
    cards = {n: CallerCard(number=n, kind=PersonKind.CONTACT) for n in ("+1", "+2", "+3")}
    cache.put("+1", cards["+1"])
    cache.put("+2", cards["+2"])
    assert cache.get("+1") is cards["+1"]  # +1 is now the most recent
    cache.put("+3", cards["+3"])
    assert (cache.get("+1"), cache.get("+2"), cache.get("+3")) == (cards["+1"], None, cards["+3"])
    cache.invalidate("+1")
    assert cache.get("+1") is None and len(cache) == 1
