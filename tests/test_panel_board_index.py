"""The board answers "who watches" and "who was talking on this call" without walking every
agent: those answers must follow every sign-in, sign-out, answer and hang-up exactly."""

from __future__ import annotations

from gateway.panel.board import Board
from tests.test_panel_support import answered, ended, ringing


def test_watchers_follow_sign_ins_sign_outs_and_role_changes() -> None:
    board = Board()
    board.sign_in("ana", "Ana", "agent", ("101",))
    assert board.watchers() == []
    board.sign_in("sofia", "Sofía", "supervisor", ("100",))
    board.sign_in("root", "Root", "admin", ())
    assert board.watchers() == ["sofia", "root"]
    board.watchers().append("intruder")  # a caller's copy: the board's answer is unchanged
    assert board.watchers() == ["sofia", "root"]
    board.sign_out("sofia")
    assert board.watchers() == ["root"]
    board.sign_in("ana", "Ana", "supervisor", ("101",))  # promoted, signs in again
    assert board.watchers() == ["ana", "root"]  # in the board's order of agents
    board.sign_in("root", "Root", "agent", ())
    assert board.watchers() == ["ana"]


def test_a_transferred_call_frees_everyone_who_talked_on_it_in_board_order() -> None:
    board = Board()
    board.sign_in("ana", "Ana", "agent", ("101",))
    board.sign_in("bruno", "Bruno", "agent", ("102",))
    board.sign_in("carla", "Carla", "agent", ("103",))
    board.ringing(ringing("t.1", ("103",)))
    board.answered(answered("t.1", "103"))
    board.answered(answered("t.1", "101"))  # transferred to ana: both on the call
    board.ringing(ringing("t.2", ("102",)))
    board.answered(answered("t.2", "102"))
    assert board.agents["carla"].presence == board.agents["ana"].presence == "on_call"
    call, freed = board.ended(ended("t.1", ["103", "101"], "101"))
    assert call is not None and freed == ["ana", "carla"]
    assert board.agents["ana"].calls == board.agents["carla"].calls == set()
    assert board.agents["bruno"].calls == {"sim:t.2"}  # another call is untouched
    assert board.ended(ended("t.1", ["103"], "103")) == (None, [])  # told twice: nobody
    _, freed = board.ended(ended("t.2", ["102"], "102"))
    assert freed == ["bruno"] and board.agents["bruno"].presence == "available"
