"""The calls in progress across instances (gateway/cluster/calls.py) on a real Redis (Debian's
redis-server): the PBX owner's calls, the presence they make and its queue figures show on
every board; only the lease holder writes, a takeover replaces the dead owner's calls whole, a
dead owner's calls expire when nobody takes its PBX, an instance that lost a PBX drops its own
stale calls, and what is not ours is skipped. The PBX's lease is set by hand here (the owner
loop is gateway/cluster/owner.py's, tested in tests/test_cluster_lease.py). End to end, with
gateways on the simulated PBX: tests/test_cluster_calls_gateways.py."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.cluster.calls import SharedCalls
from gateway.cluster.settings import ClusterSettings
from gateway.panel.board import AFTER_CALL_WORK, ON_CALL, Board
from tests.redis_fixtures import RedisServer, redis_server  # noqa: F401
from tests.test_cluster_fanout import until
from tests.test_panel_support import answered, ended, ringing

LEASE, RENEW = 2.0, 0.5
LEASE_KEY = "centralita:pbx:sim:lease"  # the test events' PBX is "sim"


class Node:
    """One instance's board and its share of the calls; every agent seated on each board (as
    the shared board would seat them: tests/test_cluster_board.py)."""

    def __init__(self, board: Board, shared: SharedCalls) -> None:
        self.board, self.shared = board, shared

    def shown(self) -> list[str]:
        return [c.key for c in self.board.live_calls()]

    def presence(self, name: str) -> str:
        return self.board.agents[name].presence


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
        board.sign_in("ana", "Ana", "agent", ("101",))
        board.sign_in("bruno", "Bruno", "agent", ("102",))
        board.sign_in("sofia", "Sofía", "supervisor", ())
        node = Node(board, SharedCalls(settings, board))
        await node.shared.start()
        made.append(node)
        return node

    yield make
    for node in made:
        await node.shared.close()


async def test_the_owners_calls_and_the_presence_they_make_show_on_every_board(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    await a.shared.redis.set(LEASE_KEY, "gw-a|1")  # A holds the PBX

    # a call rings 101 (ana) on A, the owner: B's board has it ringing, with its card
    call, _ = a.board.ringing(ringing("c1", ("101",), caller="+34911000001"))
    a.board.set_card(call.key, {"name": "Lucía Pérez", "number": "+34911000001"})
    await until("B to have the card", lambda: b.board.calls_of("ana"))
    await until("B to have the card", lambda: b.board.calls_of("ana")[0].card is not None)
    (seen,) = b.board.calls_of("ana")
    assert seen.to_json() == call.to_json()  # the call object the call.* messages carry
    assert seen.card == {"name": "Lucía Pérez", "number": "+34911000001"}
    assert b.board.calls_of("bruno") == [] and b.board.calls == {}  # not B's own
    assert [c["id"] for c in b.board.snapshot()["calls"]] == ["sim:c1"]  # the supervisors'
    assert b.presence("ana") == "available"  # ringing is not busy

    # answered by ana: on a call on B's board too
    a.board.answered(answered("c1", "101"))
    await until("B to see ana on the call", lambda: b.presence("ana") == ON_CALL)
    assert b.board.calls_of("ana")[0].to_json()["state"] == "answered"
    assert b.board.snapshot()["agents"][0]["status"] == ON_CALL

    # the call ends; A's after-call work (gateway/panel/aftercall.py) shows on B, until it ends
    a.board.ended(ended("c1", ["101"], "101"))
    agent = a.board.agents["ana"]
    agent.after_call_until, agent.after_call_call = 1795346500.0, "sim:c1"
    a.shared.agent_changed("ana")
    await until("B to see ana wrapping up", lambda: b.presence("ana") == AFTER_CALL_WORK)
    assert b.board.calls_of("ana") == [] and b.shown() == []
    shown = b.board.agents["ana"].to_json()
    assert (shown["until"], shown["after_call_call"]) == (1795346500.0, "sim:c1")
    agent.after_call_until = agent.after_call_call = None
    a.shared.agent_changed("ana")
    await until("B to see ana free", lambda: b.presence("ana") == "available")

    # queue figures, as the wallboard feed hands them over
    figures = {
        "queues": [_queue("sales", waiting=2)],
        "members": {"101": _member("101", "on_call")},
    }
    a.shared.publish_figures("sim", figures)
    await until("B to have A's figures", lambda: "sim" in b.shared.remote_figures())
    assert b.shared.remote_figures()["sim"] == figures
    assert a.shared.remote_figures() == {}  # its own are the wallboard's, not shared ones
    health = b.shared.health()
    assert health["redis_ok"] and health["shared_pbxs"] == ["sim"] and health["owned"] == []
    assert a.shared.health()["owned"] == ["sim"]

    # a board started later reads what is in progress
    a.board.ringing(ringing("c2", ("102",)))
    await until("B to have c2", lambda: b.shown() == ["sim:c2"])
    c: Node = await nodes("gw-c")
    await until("C to read A's calls", lambda: c.shown() == ["sim:c2"])
    assert c.board.calls_of("bruno")[0].key == "sim:c2"


async def test_only_the_lease_holder_writes_and_a_takeover_replaces_the_dead_owners_calls(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    c: Node = await nodes("gw-c")
    await a.shared.redis.set(LEASE_KEY, "gw-a|1")
    for lid, ext in (("live", "101"), ("short", "102")):
        a.board.ringing(ringing(lid, (ext,)))
        a.board.answered(answered(lid, ext))
    await until("C to see A's two calls", lambda: c.shown() == ["sim:live", "sim:short"])

    # B is not the owner: what its own board has of the PBX is written nowhere (and, the
    # PBX being another's, it is no call of B's: dropped)
    b.board.ringing(ringing("ghost", ("101",)))
    await until("B's write to be refused", lambda: "sim:ghost" not in b.board.calls)
    a.board.ringing(ringing("later", ("102",)))  # (A's next write is heard after B's try)
    await until("C to see A's third", lambda: "sim:later" in c.shown())
    assert "sim:ghost" not in c.shown() and b.shared.written == 0

    # A dies; its calls stay on the boards through the takeover...
    await a.shared.close()
    await a.shared.redis.delete(LEASE_KEY)
    assert sorted(c.shown()) == ["sim:later", "sim:live", "sim:short"]
    # ...B takes the PBX and resyncs: only "live" is still up ("short" and "later" ended in
    # the gap). B's whole write replaces A's calls: each call once, on every board
    await b.shared.redis.set(LEASE_KEY, "gw-b|2")
    b.board.ringing(ringing("live", ("101",)))
    b.board.answered(answered("live", "101"))
    b.board.resynced("sim")
    await until("C to take B's calls", lambda: c.shown() == ["sim:live"])
    assert b.shown() == ["sim:live"] and b.board.shared_pbxs() == []  # B's own, once
    assert c.presence("ana") == ON_CALL and c.presence("bruno") == "available"
    assert b.shared.health()["owned"] == ["sim"]
    raw = await c.shared.redis.hgetall("centralita:calls:pbx:sim")
    assert raw["^owner"] == "gw-b|2" and sorted(raw) == ["", "^owner", "c:sim:live"]

    # a takeover with nothing live: the whole (empty) write clears the boards
    await b.shared.close()
    await c.shared.redis.set(LEASE_KEY, "gw-c|3")
    c.board.resynced("sim")
    await until("C's board to hold no call", lambda: c.shown() == [])
    assert c.presence("ana") == "available"


async def test_a_dead_owners_calls_expire_when_nobody_takes_the_pbx_over(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    await a.shared.redis.set(LEASE_KEY, "gw-a|1")
    a.board.ringing(ringing("c1", ("101",)))
    a.board.answered(answered("c1", "101"))
    await until("B to see the call", lambda: b.presence("ana") == ON_CALL)
    await a.shared.close()  # dies: nobody renews its hash, nobody takes the PBX
    died = time.monotonic()
    await until("the call to leave B's board", lambda: b.shown() == [], within=3 * LEASE + 3)
    took = time.monotonic() - died
    assert 2 * LEASE - RENEW <= took <= 2 * LEASE + RENEW + 1, took  # its expiry plus a beat
    assert b.presence("ana") == "available" and b.board.shared_pbxs() == []


async def test_an_instance_that_lost_its_pbx_drops_its_own_calls_of_it(
    nodes: Callable[..., Any],
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    await a.shared.redis.set(LEASE_KEY, "gw-a|1")
    a.board.ringing(ringing("c1", ("101",)))
    a.board.answered(answered("c1", "101"))
    await until("B to see the call", lambda: b.shown() == ["sim:c1"])
    # A paused too long: B holds the lease now, resynced, and the call ended meanwhile
    await a.shared.redis.set(LEASE_KEY, "gw-b|2")
    b.board.resynced("sim")
    # A's tracker was reset (gateway/app.py): the call it still shows would never end there
    await until("A to drop its stale call", lambda: a.board.calls == {})
    await until("A's board to follow B's", lambda: a.shown() == [])
    assert a.presence("ana") == "available" and a.shared.health()["owned"] == []
    b.board.ringing(ringing("c2", ("102",)))  # and A shows B's calls
    await until("A to see B's call", lambda: a.shown() == ["sim:c2"])


async def test_redis_back_without_its_data_the_owner_writes_its_calls_again(
    nodes: Callable[..., Any],
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    await a.shared.redis.set(LEASE_KEY, "gw-a|1")
    a.board.ringing(ringing("c1", ("101",)))
    await until("B to see the call", lambda: b.shown() == ["sim:c1"])

    redis_server.stop()
    await until("A to see Redis away", lambda: not a.shared.health()["redis_ok"])
    a.board.answered(answered("c1", "101"))  # meanwhile: A's own board goes on
    assert a.presence("ana") == ON_CALL
    # B no longer hears the owner: the call leaves its board after a lease
    await until("B to forget A's calls", lambda: b.shown() == [], within=LEASE + 3)
    lines = [r for r in caplog.records if "calls share instance=gw-b: Redis at" in r.message]
    assert len(lines) == 1, lines  # one clear line per outage

    # same port, none of the data: the owner loop takes the PBX again and the link resyncs
    redis_server.start()
    await a.shared.redis.set(LEASE_KEY, "gw-a|2")
    a.board.resynced("sim")
    await until("B to see the call again", lambda: b.presence("ana") == ON_CALL, LEASE + 5)
    assert b.shown() == ["sim:c1"] and b.shared.health()["redis_ok"]


def test_a_call_joined_in_progress_goes_on_the_board_when_the_resync_is_replayed() -> None:
    """A takeover's (or a restart's) resync replays an answered call as an answer alone: the
    new owner's board must hold it (else its whole write would take it off every board)."""
    board = Board()
    board.sign_in("ana", "Ana", "agent", ("101",))
    call, takers = board.answered(answered("j1", "101"))
    assert (call, takers, board.calls) == (None, [], {})  # an answer alone: kept aside
    board.answered(answered("x1", "101"))
    board.ringing(ringing("x1", ("101",)))  # (this one then rang: an ordinary call)
    assert board.resynced("other") == [] and "sim:j1" not in board.calls
    assert board.resynced("sim") == ["ana"]
    assert sorted(board.calls) == ["sim:j1", "sim:x1"]
    assert board.calls["sim:x1"].state == "ringing"
    joined = board.calls["sim:j1"]
    assert (joined.state, joined.answered_agent, joined.number) == (
        "answered",
        "ana",
        "+34911234567",
    )
    assert board.agents["ana"].presence == ON_CALL
    assert board.resynced("sim") == []  # replayed once
    board.ended(ended("j1", ["101"], "101"))
    assert board.agents["ana"].presence == "available"


async def test_what_is_not_a_record_of_ours_is_skipped(nodes: Callable[..., Any]) -> None:
    a: Node = await nodes("gw-a")
    b: Node = await nodes("gw-b")
    redis = a.shared.redis
    for junk in (
        "not a change",
        "sim|x|gw-x|1|{}",
        "sim|1|gw-x|1|{not json",
        'sim|2|gw-x|1|{"full": true, "set": []}',
        'sim|3|gw-x|1|{"full": true, "set": {"c:sim:1": {"call": {"id": "sim:1"}}}}',
        'sim|4|gw-x|1|{"full": true, "set": {"w:ana": {"until": "soon"}, "zz": 1}}',
    ):
        await redis.publish("centralita:calls", junk)
    # a hash another writer garbled: its good records count, its bad ones do not
    good = {"call": _call_json("sim:ok", "ok"), "card": None, "involved": ["ana"], "talking": []}
    bad_state = {**good, "call": {**_call_json("sim:bad", "bad"), "state": "exploded"}}
    await redis.hset(
        "centralita:calls:pbx:sim",
        mapping={
            "": "1",
            "^owner": "gw-z|9",
            "c:sim:ok": json.dumps(good),
            "c:sim:bad": json.dumps(bad_state),
            "c:other:x": json.dumps(good),  # a call of another PBX in this one's hash
            "q": json.dumps({"queues": [{"queue": "sales", "waiting": -1}], "members": {}}),
            "w:bruno": "{oops",
        },
    )
    await redis.sadd("centralita:calls:pbxs", "sim")
    await until("A to read gw-z's good call", lambda: a.shown() == ["sim:ok"])
    await until("B to read gw-z's good call", lambda: b.shown() == ["sim:ok"])
    await until("the junk to be counted", lambda: b.shared.health()["skipped"] >= 7)
    assert b.board.calls_of("ana")[0].key == "sim:ok"
    assert b.shared.remote_figures() == {} and b.presence("bruno") == "available"
    assert b.shared.health()["redis_ok"]  # skipped, not a failure
    # and the share goes on: the owner's next whole write replaces it all
    await redis.set(LEASE_KEY, "gw-a|10")
    a.board.ringing(ringing("c1", ("101",)))
    a.board.resynced("sim")
    await until("B to take A's calls", lambda: b.shown() == ["sim:c1"])


def _call_json(key: str, linkedid: str) -> dict[str, Any]:
    return {
        "id": key, "pbx": "sim", "linkedid": linkedid, "direction": "inbound",
        "caller": "+34911000001", "caller_name": None, "did": None, "dialed": None,
        "number": "+34911000001", "queue": None, "click_to_call": False, "call_id": None,
        "started_at": 1795346400.0, "state": "ringing", "ringing": ["101"], "agents": ["ana"],
        "answered_by": None, "answered_agent": None, "answered_at": None,
    }  # fmt: skip


def _queue(name: str, waiting: int) -> dict[str, Any]:
    return {
        "queue": name, "waiting": waiting, "longest_wait_since": 1795346400.0, "answered": 3,
        "answered_in_sl": 2, "abandoned": 1, "abandoned_short": 0, "service_level": 66.7,
        "service_level_seconds": 20.0, "average_speed_of_answer": 4.5,
        "average_handle_time": None, "members": 2, "available": 1, "on_call": 1, "paused": 0,
    }  # fmt: skip


def _member(ext: str, state: str) -> dict[str, Any]:
    return {
        "extension": ext, "interface": f"PJSIP/{ext}", "member_name": f"Agent {ext}",
        "queues": ["sales"], "state": state, "since": 1795346400.0, "reason": "",
        "calls_taken": 4,
    }  # fmt: skip
