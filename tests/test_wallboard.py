"""The wallboard's figures from a known stream of queue events (field names as Asterisk 22
sends them, see tests/data/ami-traces/asterisk-22.10.1-pjsip/queue_*.ami)."""

from __future__ import annotations

import pytest

from gateway.panel.settings import PanelSettings
from gateway.panel.wallboard import Wallboard, extension_of

T0 = 1796028600.0  # 2026-11-30 09:50 in Madrid


def member(ext: str, status: str, paused: str = "0", reason: str = "") -> dict[str, str]:
    return {
        "Event": "QueueMember",
        "Queue": "sales",
        "Name": f"Agent {ext}",
        "Location": f"PJSIP/{ext}",
        "StateInterface": f"PJSIP/{ext}",
        "Status": status,
        "Paused": paused,
        "PausedReason": reason,
        "InCall": "0",
        "Wrapuptime": "10",
        "CallsTaken": "0",
    }


def join(uid: str) -> dict[str, str]:
    return {"Event": "QueueCallerJoin", "Queue": "sales", "Uniqueid": uid, "Position": "1"}


def leave(uid: str) -> dict[str, str]:
    return {"Event": "QueueCallerLeave", "Queue": "sales", "Uniqueid": uid}


def abandon(uid: str, hold: int) -> dict[str, str]:
    return {"Event": "QueueCallerAbandon", "Queue": "sales", "Uniqueid": uid, "HoldTime": str(hold)}


def agent(event: str, uid: str, ext: str, **extra: str) -> dict[str, str]:
    return {
        "Event": event,
        "Queue": "sales",
        "Uniqueid": uid,
        "Interface": f"PJSIP/{ext}",
        "MemberName": f"Agent {ext}",
        **extra,
    }


STREAM: list[tuple[float, dict[str, str]]] = [
    (0, join("u1")),
    (1, join("u2")),
    (2, agent("AgentCalled", "u1", "101")),
    (5, leave("u1")),
    (5, agent("AgentConnect", "u1", "101", HoldTime="5", RingTime="3")),
    (8, abandon("u2", 7)),  # a real abandon: counts against the service level
    (8, leave("u2")),
    (9, join("u3")),
    (10, join("u4")),
    (12, abandon("u4", 2)),  # hung up within 5 s: left out of the service level
    (12, leave("u4")),
    (35, leave("u3")),
    (35, agent("AgentConnect", "u3", "102", HoldTime="26", RingTime="2")),  # outside 20 s
    (65, agent("AgentComplete", "u1", "101", HoldTime="5", TalkTime="60", Reason="caller")),
    (70, join("u5")),
    (
        80,
        {
            "Event": "QueueMemberStatus",
            "Queue": "sales",
            "MemberName": "Agent 103",
            "Interface": "PJSIP/103",
            "Status": "1",
            "Paused": "1",
            "PausedReason": "lunch",
        },
    ),
]


def fed(until: float = 1e9) -> Wallboard:
    wb = Wallboard(service_level_seconds=20, short_abandon_seconds=5, timezone="Europe/Madrid")
    wb.resync(
        [
            {"Event": "QueueParams", "Queue": "sales", "Completed": "99", "Abandoned": "42"},
            member("101", "1"),
            member("102", "1"),
            member("103", "5"),
        ],
        T0 - 100,
    )
    for dt, frame in STREAM:
        if dt <= until:
            wb.feed(frame, T0 + dt)
    return wb


def test_queue_figures_from_a_known_stream() -> None:
    [sales] = fed().queues(T0 + 90)
    assert sales == {
        "queue": "sales",
        "waiting": 1,
        "longest_wait": 20.0,
        "longest_wait_since": T0 + 70,
        "answered": 2,
        "answered_in_sl": 1,
        "abandoned": 2,
        "abandoned_short": 1,
        "service_level": 33.3,  # 1 within 20 s of 3 (2 answered + 1 real abandon)
        "service_level_seconds": 20,
        "average_speed_of_answer": 15.5,  # (5 + 26) / 2
        "average_handle_time": 70.0,  # 60 s talk + 10 s after-call work
        "members": 3,
        "available": 1,
        "on_call": 1,
        "paused": 1,
    }


def test_member_states_and_time_in_state() -> None:
    wb = fed(until=3)
    assert wb.members(T0 + 3)["101"]["state"] == "ringing"
    assert wb.members(T0 + 3)["101"]["since"] == T0 + 2
    wb = fed(until=70)
    at70 = wb.members(T0 + 70)
    assert (at70["101"]["state"], at70["101"]["since"]) == ("after_call_work", T0 + 65)
    assert (at70["103"]["state"], at70["103"]["since"]) == ("signed_out", T0 - 100)
    at90 = fed().members(T0 + 90)
    assert (at90["101"]["state"], at90["101"]["since"]) == ("available", T0 + 75)
    assert (at90["102"]["state"], at90["102"]["since"]) == ("on_call", T0 + 35)
    assert (at90["103"]["state"], at90["103"]["reason"]) == ("paused", "lunch")
    assert at90["103"]["since"] == T0 + 80
    assert at90["101"]["member_name"] == "Agent 101"


def test_service_level_is_none_before_any_call() -> None:
    wb = Wallboard()
    wb.resync([member("101", "1")], T0)
    [sales] = wb.queues(T0)
    assert sales["service_level"] is None and sales["average_speed_of_answer"] is None
    assert sales["waiting"] == 0 and sales["longest_wait"] == 0.0


def test_counters_start_again_at_midnight_in_madrid_but_callers_keep_waiting() -> None:
    wb = fed()
    midnight_madrid = 1796079600.0  # 2026-12-01 00:00 CET = 2026-11-30 23:00 UTC
    [before] = wb.queues(midnight_madrid - 1)
    assert before["answered"] == 2
    [after] = wb.queues(midnight_madrid + 1)
    assert (after["answered"], after["abandoned"], after["waiting"]) == (0, 0, 1)
    assert after["service_level"] is None


def test_resync_takes_waiting_callers_from_queue_entry() -> None:
    wb = fed()
    wb.resync(
        [
            member("101", "2"),
            {"Event": "QueueEntry", "Queue": "sales", "Uniqueid": "u9", "Wait": "42"},
        ],
        T0 + 200,
    )
    [sales] = wb.queues(T0 + 200)
    assert (sales["waiting"], sales["longest_wait"], sales["answered"]) == (1, 42.0, 2)
    assert set(wb.members(T0 + 200)) == {"101"}  # 102 and 103 left the queue
    assert wb.members(T0 + 200)["101"]["state"] == "on_call"


@pytest.mark.parametrize(
    ("iface", "ext"),
    [("PJSIP/101", "101"), ("Local/101@agents/n", "101"), ("SIP/102-0000a", "102")],
)
def test_members_are_keyed_by_extension(iface: str, ext: str) -> None:
    assert extension_of(iface) == ext


def test_bad_numbers_in_frames_do_not_crash() -> None:
    wb = Wallboard()
    wb.feed(agent("AgentConnect", "x", "101", HoldTime="nan"), T0)
    wb.feed(agent("AgentComplete", "x", "101", TalkTime="abc"), T0 + 1)
    wb.feed({"Event": "QueueMemberStatus", "Interface": "PJSIP/101", "Status": "?"}, T0 + 2)
    [q] = wb.queues(T0 + 3)
    assert (q["answered"], q["average_handle_time"]) == (1, 0.0)


def test_unknown_timezone_is_refused_naming_the_key() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError, match="timezone: unknown time zone"):
        msgspec.convert({"timezone": "Europe/Madird"}, PanelSettings)


def test_an_agent_on_a_call_whom_another_call_rings_is_still_on_a_call() -> None:
    # ringall while 102 talks: Asterisk reports 102's device as 7, "ringing while in use"
    wb = fed(until=40)
    wb.feed(agent("AgentCalled", "u9", "102"), T0 + 41)
    wb.feed(
        {"Event": "QueueMemberStatus", "Queue": "sales", "Interface": "PJSIP/102",
         "MemberName": "Agent 102", "Status": "7", "Paused": "0"},
        T0 + 41,
    )  # fmt: skip
    state = wb.members(T0 + 50)["102"]
    assert (state["state"], state["since"]) == ("on_call", T0 + 35)  # not "ringing" since 41
