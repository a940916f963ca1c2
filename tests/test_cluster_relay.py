"""The relay to a PBX's owner (gateway/cluster/relay.py) and the click-to-call records it
protects (gateway/cluster/attempts.py), on a real Redis (Debian's redis-server): a request
reaches the lease holder and its answer (or its error, the same ApiError or AmiError) comes
back; nobody holding the PBX, or a holder that is gone, is a NoOwner at once; a holder that
does not take the request in time loses it for good, even if it comes to it later; an answer
whose message was lost is read from its stored copy. End to end, with two gateways and the
simulated PBX: tests/test_cluster_clicktocall.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.cluster.attempts import SharedAttempts
from gateway.cluster.relay import NoOwner, OwnerRelay, RelayLost
from gateway.cluster.settings import ClusterSettings
from gateway.errors import AmiActionTimeout, AmiError, ApiError
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_fanout import until

LEASE, RENEW = 2.0, 0.5
WAIT = 0.3  # how long a requester waits for the owner to take a request, here


def settings(url: str, name: str) -> ClusterSettings:
    return ClusterSettings(redis_url=url, instance=name, lease_seconds=LEASE, renew_seconds=RENEW)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:  # noqa: F811
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def relays(redis_server: RedisServer) -> AsyncIterator[Callable[..., Any]]:  # noqa: F811
    made: list[OwnerRelay] = []

    async def make(name: str) -> OwnerRelay:
        # a PBX named "lab" without a link here: every request for it travels to its holder
        relay = OwnerRelay(settings(redis_server.url, name), {"lab": None}, wait_seconds=WAIT)
        await relay.start()
        made.append(relay)
        return relay

    yield make
    for relay in made:
        await relay.close()


async def hold_lease(redis: Redis, instance: str) -> None:
    """``instance`` holds the PBX's lease, as its owner loop would have written it."""
    await redis.set("centralita:pbx:lab:lease", f"{instance}|7", px=60_000)


async def test_a_request_reaches_the_holder_and_its_answer_or_error_comes_back(
    relays: Callable[..., Any], redis: Redis
) -> None:
    a: OwnerRelay = await relays("gw-a")
    b: OwnerRelay = await relays("gw-b")
    seen: list[tuple[str, dict[str, Any]]] = []

    async def echo(pbx: str, body: dict[str, Any]) -> Any:
        seen.append((pbx, body))
        if body.get("refuse"):
            raise ApiError(409, "already_on_hold", "This call is already on hold.", {"n": 1})
        if body.get("slow"):
            raise AmiActionTimeout("Redirect: no answer")
        return {"echo": body["x"]}

    a.handle("echo", echo)
    b.handle("echo", echo)
    await hold_lease(redis, "gw-a")
    assert await b.call("lab", "echo", {"x": [1, "dos"]}, within=1) == {"echo": [1, "dos"]}
    assert seen == [("lab", {"x": [1, "dos"]})]  # carried out once, by the holder
    with pytest.raises(ApiError) as refused:
        await b.call("lab", "echo", {"refuse": True}, within=1)
    e = refused.value
    assert (e.status, e.error_id, e.message, e.details) == (
        409, "already_on_hold", "This call is already on hold.", {"n": 1}
    )  # fmt: skip
    with pytest.raises(AmiActionTimeout, match="Redirect: no answer"):
        await b.call("lab", "echo", {"slow": True}, within=1)
    # the holder asking itself runs the handler in place (its own link is down: it answers)
    assert await a.call("lab", "echo", {"x": 3}, within=1) == {"echo": 3}
    # a raw AMI action other than those forwarded is refused by the owner
    with pytest.raises(AmiError, match="refusing a forwarded action 'Originate'"):
        await b.call("lab", "ami", {"action": {"Action": "Originate"}}, within=1)
    assert a.health()["served"] == 4 and b.health()["forwarded"] == 4
    assert a.health()["redis_ok"] and b.health()["redis_error"] is None


async def test_nobody_holding_the_pbx_or_a_gone_holder_is_told_at_once(
    relays: Callable[..., Any], redis: Redis
) -> None:
    b: OwnerRelay = await relays("gw-b")
    with pytest.raises(NoOwner, match="no holder"):
        await b.call("lab", "echo", {}, within=5)
    # the lease names an instance that died (its connections are gone, its lease not yet)
    await hold_lease(redis, "gw-dead")
    async with asyncio.timeout(WAIT):  # not even the wait: Redis says nobody got it
        with pytest.raises(NoOwner, match="holder gw-dead"):
            await b.call("lab", "echo", {}, within=5)
    assert b.health()["no_owner"] == 2


async def test_a_request_not_taken_in_time_is_never_carried_out_later(
    relays: Callable[..., Any], redis: Redis
) -> None:
    """A holder that is alive but not answering (a frozen process: its socket is open): the
    requester gives up after its wait and says nothing was done; when the request reaches an
    owner later, the owner drops it instead of doing what the user was told did not happen."""
    a: OwnerRelay = await relays("gw-a")
    b: OwnerRelay = await relays("gw-b")
    done: list[dict[str, Any]] = []

    async def act(pbx: str, body: dict[str, Any]) -> Any:
        done.append(body)
        return "done"

    a.handle("act", act)
    frozen = redis.pubsub()
    await frozen.subscribe("centralita:relay:to:gw-z")
    await hold_lease(redis, "gw-z")
    with pytest.raises(NoOwner, match="gw-z did not take it"):
        await b.call("lab", "act", {"hangup": "PJSIP/101-1"}, within=5)
    late = None
    while late is None:
        late = await frozen.get_message(ignore_subscribe_messages=True, timeout=1)
    await frozen.aclose()  # type: ignore[no-untyped-call]
    # the request comes to an owner after all (gw-z woke up as gw-a, say)
    await redis.publish("centralita:relay:to:gw-a", late["data"])
    await until("gw-a to drop the late request", lambda: a.health()["dropped"] == 1)
    assert done == [] and a.health()["served"] == 0


async def test_a_taken_request_waits_for_its_answer_and_a_lost_answer_is_read_back(
    relays: Callable[..., Any], redis: Redis
) -> None:
    a: OwnerRelay = await relays("gw-a")
    b: OwnerRelay = await relays("gw-b")
    release = asyncio.Event()

    async def slow(pbx: str, body: dict[str, Any]) -> Any:
        await release.wait()
        return body["n"]

    a.handle("slow", slow)
    await hold_lease(redis, "gw-a")
    # taken at once, answered after the requester's first wait: it goes on waiting
    call = asyncio.create_task(b.call("lab", "slow", {"n": 1}, within=5))
    await asyncio.sleep(WAIT * 2)
    release.set()
    assert await call == 1
    # taken, and never answered within the bound: not known whether it was done
    release.clear()
    with pytest.raises(RelayLost, match="gw-a took it"):
        await b.call("lab", "slow", {"n": 2}, within=0.2)
    release.set()
    # the answer's message is lost (here: b no longer listens); its stored copy is read
    assert b._listener is not None
    b._listener.cancel()
    assert await b.call("lab", "slow", {"n": 3}, within=0.5) == 3
    assert b.health()["lost"] == 1


async def test_tell_reaches_the_instance_named(relays: Callable[..., Any]) -> None:
    a: OwnerRelay = await relays("gw-a")
    b: OwnerRelay = await relays("gw-b")
    heard: list[tuple[str, dict[str, Any]]] = []

    async def on_drop(sender: str, body: dict[str, Any]) -> None:
        heard.append((sender, body))

    a.on_tell("c2c.drop", on_drop)
    await b.tell("gw-a", "c2c.drop", {"call_id": "gw-c2c-000000000001"})
    await b.tell("gw-a", "unknown", {})
    await until("gw-a to hear it", lambda: heard)
    assert heard == [("gw-b", {"call_id": "gw-c2c-000000000001"})]
    await until("the unknown kind to be skipped", lambda: a.health()["skipped"] == 1)


async def test_what_is_not_a_message_of_ours_is_skipped(
    relays: Callable[..., Any], redis: Redis
) -> None:
    a: OwnerRelay = await relays("gw-a")
    for junk in ("not json", "[1, 2]", json.dumps({"t": "req", "id": 5}), json.dumps({"t": "?"})):
        await redis.publish("centralita:relay:to:gw-a", junk)
    await until("four messages skipped", lambda: a.health()["skipped"] == 4)
    assert a.health()["served"] == 0


# -- the click-to-call records: created before the Originate, fenced by a requester ----------


async def test_a_record_is_either_created_by_the_owner_or_fenced_by_the_requester(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    a = SharedAttempts(client, settings(redis_server.url, "gw-a"))
    b = SharedAttempts(client, settings(redis_server.url, "gw-b"))
    attempt = {"call_id": "gw-c2c-0000000000aa", "state": "calling_agent"}
    try:
        # the requester gave up first: the owner may not create it (nothing gets dialed)
        assert await b.fence("gw-c2c-0000000000aa") is True
        assert await a.create("gw-c2c-0000000000aa", "ana", "lab", attempt) is False
        assert await b.read("gw-c2c-0000000000aa") is None
        # the owner first: the requester's fence fails and it reads the attempt instead
        assert await a.create("gw-c2c-0000000000bb", "ana", "lab", attempt) is True
        assert await b.fence("gw-c2c-0000000000bb") is False
        record = await b.read("gw-c2c-0000000000bb")
        assert record is not None and (record.owner, record.agent) == ("gw-a", "ana")
        assert await a.open_ids("lab") == ["gw-c2c-0000000000bb"]
        # b takes it over (gw-a died): a late write of gw-a's changes nothing
        taken = await b.take_over("gw-c2c-0000000000bb", "lab")
        assert taken is not None and taken.owner == "gw-a"
        a.update("gw-c2c-0000000000bb", "lab", {**attempt, "state": "failed"}, final=True)
        b.update("gw-c2c-0000000000bb", "lab", {**attempt, "state": "connected"}, final=False)
        await a.close()
        await b.close()
        record = await b.read("gw-c2c-0000000000bb")
        assert record is not None and record.owner == "gw-b"
        assert record.attempt["state"] == "connected"
        b.update("gw-c2c-0000000000bb", "lab", {**attempt, "state": "ended"}, final=True)
        await b.close()
        assert await a.open_ids("lab") == []  # ended: nobody carries it on
        assert await b.take_over("gw-c2c-0000000000bb", "lab") is None
    finally:
        await client.aclose()
