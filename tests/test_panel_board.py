"""The panel's pure parts: who hears about a call, presence, and the attempt limiter."""

from __future__ import annotations

from gateway.panel.board import Board
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


def test_limiter_counts_per_key_within_the_window() -> None:
    limit = SlidingWindowLimiter(2, 60.0)
    assert limit.take("ana", 0.0) == 0 and limit.take("ana", 1.0) == 0
    assert limit.take("ana", 2.0) == 58.0  # refused, and not counted
    assert limit.take("bruno", 2.0) == 0
    assert limit.take("ana", 60.5) == 0  # the first attempt left the window
    limit.reset("ana")
    assert limit.retry_after("ana", 61.0) == 0
