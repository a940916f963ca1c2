"""The panel's pure parts: who hears about a call, presence, and the attempt limiter."""

from __future__ import annotations

from gateway.calls.events import Direction
from gateway.panel.board import Board, RemoteSeat, Seat
from gateway.panel.ratelimit import SlidingWindowLimiter
from tests.test_panel_support import answered, ended, ringing


def seated() -> Board:
    board = Board()
    board.sign_in("ana", "Ana", "agent", ("101",))
    board.sign_in("bruno", "Bruno", "agent", ("102",))
    board.sign_in("sofia", "Sofía", "supervisor", ("100",))
    return board


def test_queue_ring_reaches_every_agent_ringing_and_answer_goes_to_all_of_them() -> None:
    board = seated()
    call, new = board.ringing(ringing("q.1", ("101", "102"), queue="sales"))
    assert new and call.ringing_agents == ("ana", "bruno") and call.queue == "sales"
    call, takers = board.answered(answered("q.1", "102"))
    assert takers == ["bruno"] and call is not None
    assert call.answered_agent == "bruno" and call.involved == {"ana", "bruno"}
    assert board.agents["bruno"].presence == "on_call"
    assert board.agents["ana"].presence == "available"
    call, freed = board.ended(ended("q.1", ["101", "102"], "102"))
    assert freed == ["bruno"] and board.agents["bruno"].presence == "available"
    assert board.calls == {}


def test_the_caller_id_name_shown_is_the_other_party_s_never_the_agent_s_own() -> None:
    """Out, the channel's caller ID is the agent's: shown as "caller ID" it named the agent
    beside the number they dialed. In and between colleagues it is the other party's."""
    board = seated()
    out, _ = board.ringing(
        ringing("o.1", ("101",), caller="101", caller_name="Ana García",
                direction=Direction.OUTBOUND, dialed="+33142685300")
    )  # fmt: skip
    assert out.to_json()["caller_name"] is None and out.number == "+33142685300"
    inbound, _ = board.ringing(ringing("i.1", ("102",), caller_name="<b>Lucía</b>"))
    assert inbound.to_json()["caller_name"] == "<b>Lucía</b>"  # rendered as text by the panel
    internal, _ = board.ringing(
        ringing("n.1", ("102",), caller="101", caller_name="Ana García",
                direction=Direction.INTERNAL)
    )  # fmt: skip
    assert internal.to_json()["caller_name"] == "Ana García"


def test_supervisors_watch_and_hot_desk_moves_the_extension() -> None:
    board = seated()
    assert board.watchers() == ["sofia"]
    board.sign_in("ana", "Ana", "agent", ("102",))  # hot desk: ana sits at 102 too now
    assert board.agents_at(["102"]) == ["ana", "bruno"]
    assert board.agents_at(["101"]) == []
    board.sign_out("bruno")
    assert board.agents_at(["102"]) == ["ana"]
    assert board.agents["bruno"].presence == "offline"


def test_ring_set_changes_keep_everyone_who_was_told() -> None:
    board = seated()
    board.ringing(ringing("r.1", ("101",)))
    call, new = board.ringing(ringing("r.1", ()))  # stopped ringing at ana's phone
    assert not new and call.ringing_agents == () and call.involved == {"ana"}


def test_pause_is_kept_apart_from_being_on_a_call() -> None:
    board = seated()
    board.set_status("ana", "paused", "lunch")
    assert board.agents["ana"].to_json()["reason"] == "lunch"
    board.ringing(ringing("p.1", ("101",)))
    board.answered(answered("p.1", "101"))
    assert board.agents["ana"].presence == "on_call"
    board.ended(ended("p.1", ["101"], "101"))
    assert board.agents["ana"].presence == "paused"


def test_seats_of_other_instances_join_the_board_and_leave_with_their_instance() -> None:
    """Clustered (gateway/cluster/board.py): the union of every instance's sign-ins."""
    board = seated()
    carla = RemoteSeat(Seat("Carla", "agent", ("103",)), "paused", "training", 50.0)
    assert board.seat_remote("gw-b", "carla", carla)
    board.seat_remote("gw-b", "marta", RemoteSeat(Seat("Marta", "supervisor", ())))
    # a call at carla's extension reaches her; the supervisor elsewhere watches it
    call, _ = board.ringing(ringing("c.1", ("103",)))
    assert call.ringing_agents == ("carla",)
    assert board.watchers() == ["sofia", "marta"] and board.local_watchers() == ["sofia"]
    assert board.agents["carla"].to_json()["reason"] == "training"
    # ana signed in here and on gw-b at another desk: one agent, seated at both
    assert board.seat_remote("gw-b", "ana", RemoteSeat(Seat("Ana B", "agent", ("104",))))
    assert board.agents_at(["101", "104"]) == ["ana"]
    assert board.agents["ana"].display_name == "Ana"  # this instance's sign-in first
    assert [a["username"] for a in board.snapshot()["agents"]].count("ana") == 1
    board.sign_out("ana")  # signed out here: still seated through gw-b
    assert board.agents["ana"].presence == "available"
    assert board.agents_at(["101"]) == [] and board.agents_at(["104"]) == ["ana"]
    assert board.local_seat("ana") is None
    # gw-b is gone: its agents leave; this instance's stay
    assert sorted(board.drop_instance("gw-b")) == ["ana", "carla", "marta"]
    assert board.agents_at(["103", "104"]) == [] and board.watchers() == ["sofia"]
    assert board.agents["carla"].presence == "offline"
    assert board.agents_at(["102"]) == ["bruno"]


def test_limiter_counts_per_key_within_the_window() -> None:
    limit = SlidingWindowLimiter(2, 60.0)
    assert limit.take("ana", 0.0) == 0 and limit.take("ana", 1.0) == 0
    assert limit.take("ana", 2.0) == 58.0  # refused, and not counted
    assert limit.take("bruno", 2.0) == 0
    assert limit.take("ana", 60.5) == 0  # the first attempt left the window
    limit.reset("ana")
    assert limit.retry_after("ana", 61.0) == 0
