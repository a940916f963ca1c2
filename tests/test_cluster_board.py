"""The live board across instances (gateway/cluster/board.py) on a real Redis (Debian's
redis-server): an agent signed in on one instance is seated on every instance's board, so the
PBX owner pops calls up to them and every supervisor sees them; a presence chosen on one shows
on the others; the seats of an instance that dies leave the others' boards once its key
expires; Redis going away leaves each instance its own seats, and everything is shared again
when it comes back. End to end (two gateways on the simulated PBX, the agent signed in only on
the standby, the owner's pop-up at their tab): tests/test_cluster_fanout.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.cluster.board import SharedBoard
from gateway.cluster.settings import ClusterSettings
from gateway.panel.board import AVAILABLE, PAUSED, Board, RemoteSeat, Seat
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_fanout import until

LEASE, RENEW = 2.0, 0.5


class Node:
    """One instance's board and its share of the cluster's."""

    def __init__(self, board: Board, shared: SharedBoard) -> None:
        self.board, self.shared = board, shared
        self.lost: list[str] = []

    def sign_in(self, name: str, role: str = "agent", *exts: str) -> None:
        self.board.sign_in(name, name.title(), role, exts)
        self.shared.changed(name)

    def sign_out(self, name: str) -> None:
        self.board.sign_out(name)
        self.shared.changed(name)

    def seated(self) -> set[str]:
        return {a.username for a in self.board.agents.values() if a.signed_in}


@pytest.fixture
async def nodes(
    redis_server: RedisServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Any]]:
    made: list[Node] = []

    async def make(name: str) -> Node:
        settings = ClusterSettings(
            redis_url=redis_server.url, instance=name, lease_seconds=LEASE, renew_seconds=RENEW
        )
        board = Board()
        node = Node(board, SharedBoard(settings, board))
        node.shared.on_lost = node.lost.extend
        await node.shared.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.shared.close()


async def test_an_agent_signed_in_on_one_instance_is_seated_on_the_others(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    a.sign_in("ana", "agent", "101")
    b: Node = await nodes("gw-b")  # started after: reads A's seats
    assert b.board.agents_at(["101"]) == ["ana"]
    b.sign_in("sofia", "supervisor")
    b.sign_in("bruno", "agent", "102")
    # the owner (A) rings 102: bruno, signed in on B only, is told; so is B's supervisor
    await until("A to seat B's agents", lambda: a.board.agents_at(["102"]) == ["bruno"])
    assert a.board.watchers() == ["sofia"] and a.board.local_watchers() == []
    assert b.board.watchers() == ["sofia"]
    # the board a supervisor loads lists each agent once, wherever they signed in
    for node in (a, b):
        agents = [x["username"] for x in node.board.snapshot()["agents"]]
        assert agents == ["ana", "bruno", "sofia"]

    # a presence chosen on B shows on A
    b.board.set_status("bruno", PAUSED, "lunch", at=100.0)
    b.shared.changed("bruno")
    await until("A to see bruno paused", lambda: a.board.agents["bruno"].presence == PAUSED)
    assert a.board.agents["bruno"].to_json()["reason"] == "lunch"

    # signed in on both: one agent; signing out on one leaves them seated (union of seats)
    b.sign_in("ana", "agent", "103")
    await until("A to seat ana at 103 too", lambda: a.board.agents_at(["103"]) == ["ana"])
    assert a.board.agents["ana"].extensions == ("101", "103")
    assert [x["username"] for x in a.board.snapshot()["agents"]].count("ana") == 1
    a.sign_out("ana")
    await until("B to hear A's sign-out", lambda: b.board.agents_at(["101"]) == [])
    assert "ana" in a.seated() and "ana" in b.seated()
    assert a.board.agents_at(["101", "103"]) == ["ana"] == b.board.agents_at(["103"])
    b.sign_out("ana")
    await until("ana to leave A's board", lambda: "ana" not in a.seated())
    assert a.board.agents_at(["103"]) == []
    assert a.shared.health()["redis_ok"] and a.shared.health()["other_instances"] == ["gw-b"]


async def test_the_latest_presence_wins_across_instances(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    a.sign_in("ana", "agent", "101")
    b.sign_in("ana", "agent", "101")
    await until("both to seat ana from the other", lambda: a.board.remote_seats("gw-b"))
    a.board.set_status("ana", PAUSED, "training", at=200.0)
    a.shared.changed("ana")
    await until("B to take A's choice", lambda: b.board.agents["ana"].reason == "training")
    # ana then chooses on B, whose clock runs behind A's: chosen after, it wins everywhere
    b.board.set_status("ana", AVAILABLE, "", at=150.0)
    b.shared.changed("ana")
    await until("A to take B's later choice", lambda: a.board.agents["ana"].presence == AVAILABLE)
    assert b.board.agents["ana"].presence == AVAILABLE
    # a record older than what the board holds (a slow instance's) does not undo it
    stale = RemoteSeat(Seat("Ana", "agent", ("101",)), PAUSED, "old", 100.0)
    assert not a.board.seat_remote("gw-c", "ana", stale)
    assert a.board.agents["ana"].presence == AVAILABLE
    assert a.board.agents_at(["101"]) == ["ana"]


async def test_the_seats_of_an_instance_that_died_leave_the_board_when_its_key_expires(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    b.sign_in("bruno", "agent", "102")
    b.sign_in("sofia", "supervisor")
    await until("A to seat B's agents", lambda: a.seated() == {"bruno", "sofia"})
    await b.shared.close(release=False)  # as a crash: nothing removed, the key expires
    died = time.monotonic()
    await until("B's seats to leave A's board", lambda: not a.seated(), within=LEASE + 3)
    took = time.monotonic() - died
    assert took <= LEASE + RENEW + 1, took  # the key's lifetime plus A's beat
    assert sorted(a.lost) == ["bruno", "sofia"]  # A's own supervisors are told
    assert a.board.agents_at(["102"]) == [] and a.board.watchers() == []
    assert a.shared.health()["other_instances"] == []

    # a planned stop takes them off at once, without waiting for the key
    c: Node = await nodes("gw-c")
    c.sign_in("carla", "agent", "103")
    await until("A to seat carla", lambda: a.board.agents_at(["103"]) == ["carla"])
    stopped = time.monotonic()
    await c.shared.close()
    await until("carla to leave A's board", lambda: not a.seated(), within=LEASE)
    assert time.monotonic() - stopped < RENEW * 2


async def test_redis_away_each_instance_keeps_its_own_seats_and_shares_again_after(
    nodes: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    a.sign_in("ana", "agent", "101")
    b.sign_in("bruno", "agent", "102")
    await until("both boards to hold both", lambda: a.seated() == b.seated() == {"ana", "bruno"})

    redis_server.stop()
    await until("A to see Redis away", lambda: not a.shared.health()["redis_ok"])
    # sign-ins go on meanwhile, on each instance's own board
    a.sign_in("carla", "agent", "103")
    assert a.board.agents_at(["103"]) == ["carla"]
    await until("A to keep only its own", lambda: a.seated() == {"ana", "carla"}, LEASE + 3)
    await until("B to keep only its own", lambda: b.seated() == {"bruno"}, LEASE + 3)
    for name in ("gw-a", "gw-b"):  # one clear line per outage
        lines = [r for r in caplog.records if f"board share instance={name}: Redis at" in r.message]
        assert len(lines) == 1, lines
    assert b.shared.health()["redis_error"]

    redis_server.start()  # same port, none of the data
    everyone = {"ana", "bruno", "carla"}
    await until("A to share again", lambda: a.seated() == everyone, LEASE + 5)
    await until("B to share again", lambda: b.seated() == everyone, LEASE + 5)
    assert b.board.agents_at(["103"]) == ["carla"]
    assert a.shared.health()["redis_ok"] and b.shared.health()["redis_ok"]
    b.sign_out("bruno")  # and changes flow again
    await until("A to hear bruno leave", lambda: a.seated() == {"ana", "carla"})


async def test_what_is_not_a_record_of_ours_is_skipped(
    nodes: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    redis = a.shared.redis
    channel = a.shared.channel
    for junk in (
        "not json",
        "7|{not json",
        '8|{"i": "gw-x"}',
        '9|["i", "seats"]',
        '10|{"i": "gw-b", "full": true, "seats": {"eve": {"role": "root"}}}',
        '11|{"i": "gw-b", "seats": {"eve": {"display_name": "Eve", "role": "agent",'
        ' "extensions": ["1" ], "status": "available", "reason": "", "status_at": "soon"}}}',
    ):
        await redis.publish(channel, junk)
    # a hash another writer garbled: its good records count, its bad ones do not
    await redis.hset(
        "centralita:board:seats:gw-z",
        mapping={
            "": "1",
            "zoe": json.dumps(
                {"display_name": "Zoe", "role": "agent", "extensions": ["104"],
                 "status": "available", "reason": "", "status_at": 0}
            ),
            "mallory": "{oops",
            "trent": json.dumps({"display_name": "T", "role": "agent", "extensions": [5]}),
        },
    )  # fmt: skip
    await redis.zadd("centralita:board:instances", {"gw-z": 4_000_000_000_000})
    await until("A to read gw-z", lambda: a.board.agents_at(["104"]) == ["zoe"])
    await until("B to read gw-z", lambda: b.board.agents_at(["104"]) == ["zoe"])
    await until("the junk to be counted", lambda: a.shared.health()["skipped"] >= 7)
    assert "eve" not in a.board.agents and "mallory" not in a.board.agents
    assert "trent" not in a.board.agents
    assert a.shared.health()["redis_ok"]  # skipped, not a failure
    b.sign_in("bruno", "agent", "102")  # and the share goes on
    await until("A to seat bruno", lambda: a.board.agents_at(["102"]) == ["bruno"])
