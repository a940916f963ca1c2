"""The wallboard's figures from a known stream of queue events (field names as Asterisk 22
sends them, see tests/data/ami-traces/asterisk-22.10.1-pjsip/queue_*.ami)."""

from __future__ import annotations

from typing import Any

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
    (11, agent("AgentCalled", "u3", "102")),
    (12, abandon("u4", 2)),  # hung up within 5 s: left out of the service level
    (12, leave("u4")),
    (26, agent("AgentRingNoAnswer", "u3", "102", RingTime="15")),  # 102 did not pick up
    (30, agent("AgentCalled", "u3", "102")),  # the queue tries again
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


def test_a_ring_no_answer_counts_nothing_and_frees_the_agent() -> None:
    wb = fed(until=20)
    assert (wb.members(T0 + 20)["102"]["state"], wb.members(T0 + 20)["102"]["since"]) == (
        "ringing",
        T0 + 11,
    )
    wb = fed(until=28)
    at28 = wb.members(T0 + 28)["102"]
    assert (at28["state"], at28["since"]) == ("available", T0 + 26)
    [sales] = wb.queues(T0 + 28)
    assert (sales["waiting"], sales["longest_wait"]) == (1, 19.0)  # u3 still waits
    assert (sales["answered"], sales["abandoned"], sales["abandoned_short"]) == (1, 2, 1)
    assert sales["service_level"] == 50.0  # the unanswered ring is neither: 1 of 2


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


# -- a restart: today's figures from the call log, then the live events --------------------------

MIDNIGHT = 1795993200.0  # 2026-11-30 00:00 in Madrid


def logged(lid: str, outcome: str, started: float, wait: float, talk: float = 0.0) -> dict:
    """A call log row (``gateway/store/calllog.py:queue_calls``)."""
    answered = outcome in ("answered", "transferred")
    return {
        "pbx": "sim",
        "linkedid": lid,
        "queue": "sales",
        "outcome": outcome,
        "started_at": started,
        "answered_at": started + wait if answered else None,
        "ended_at": started + wait + talk,
        "queue_wait_seconds": wait,
        "talk_seconds": talk,
        "answered_by": "101" if answered else None,
    }


def counts(wb: Wallboard, at: float) -> tuple[Any, ...]:
    [q] = wb.queues(at)
    return (q["answered"], q["answered_in_sl"], q["abandoned"], q["abandoned_short"])


def test_the_call_log_refills_today_and_no_call_counts_twice() -> None:
    wb = Wallboard(service_level_seconds=20, short_abandon_seconds=5, timezone="Europe/Madrid")
    rows = [
        logged("a", "answered", T0 - 600, wait=8, talk=100),
        logged("b", "abandoned", T0 - 500, wait=3),  # short
        logged("c", "abandoned", T0 - 400, wait=30),
        logged("y", "answered", MIDNIGHT - 3600, wait=5, talk=50),  # yesterday
        logged("z", "answered", MIDNIGHT - 30, wait=40, talk=60),  # answered after midnight
        logged("n", "noanswer", T0 - 300, wait=60),  # the queue gave up: not a figure
        {**logged("d", "answered", T0 - 200, wait=2, talk=9), "queue": None},  # no queue
    ]
    assert [wb.count_logged(r, T0) for r in rows] == [True, True, True, False, True, False, False]
    [sales] = wb.queues(T0)
    assert counts(wb, T0) == (2, 1, 2, 1)
    assert sales["service_level"] == 33.3  # 1 within 20 s of 3 (2 answered + 1 real abandon)
    assert (sales["average_speed_of_answer"], sales["average_handle_time"]) == (24.0, 80.0)
    assert not wb.count_logged(rows[0], T0 + 1)  # read twice: counted once

    # a call answered before the restart ends after it: its answer counts now, once
    wb.feed(agent("AgentComplete", "p", "101", HoldTime="12", TalkTime="90"), T0 + 10)
    assert counts(wb, T0 + 10) == (3, 2, 2, 1)
    # its record follows and has the last word on the times (as the next restart reads them)
    assert wb.count_logged(logged("p", "answered", T0 - 100, wait=12, talk=92), T0 + 11)
    assert counts(wb, T0 + 11) == (3, 2, 2, 1)
    [sales] = wb.queues(T0 + 11)
    assert sales["average_handle_time"] == 84.0  # (100 + 60 + 92) / 3, not 90's 83.3

    # a live queue call adds exactly one, however its events and its record interleave
    wb.feed(agent("AgentConnect", "n2", "101", HoldTime="25"), T0 + 20)
    assert counts(wb, T0 + 20) == (4, 2, 2, 1)
    wb.feed(agent("AgentComplete", "n2", "101", HoldTime="25", TalkTime="30"), T0 + 50)
    wb.count_logged(logged("n2", "answered", T0 - 5, wait=25, talk=30), T0 + 51)
    wb.feed(abandon("n3", 9), T0 + 60)
    wb.count_logged(logged("n3", "abandoned", T0 + 51, wait=9), T0 + 61)
    assert counts(wb, T0 + 61) == (4, 2, 3, 1)
    [sales] = wb.queues(T0 + 61)
    assert sales["average_speed_of_answer"] == 21.2  # (8 + 40 + 12 + 25) / 4


def test_after_call_work_of_the_calls_from_the_log_counts_once_the_member_is_known() -> None:
    wb = Wallboard()
    wb.count_logged(logged("a", "answered", T0 - 600, wait=8, talk=100), T0)
    [sales] = wb.queues(T0)
    assert sales["average_handle_time"] == 100.0
    wb.resync([member("101", "1")], T0 + 1)  # the queue gives 101 ten seconds of wrap-up
    [sales] = wb.queues(T0 + 1)
    assert sales["average_handle_time"] == 110.0
    wb.resync([member("101", "1")], T0 + 2)  # every reconnect reads it again: added once
    [sales] = wb.queues(T0 + 2)
    assert sales["average_handle_time"] == 110.0


def test_time_in_state_of_a_member_first_seen_starts_when_the_pbx_says() -> None:
    wb = Wallboard()
    wb.resync(
        [
            {**member("101", "1"), "LoginTime": str(int(T0 - 3600)), "LastCall": str(int(T0 - 60))},
            {**member("102", "1", "1", "lunch"), "LastPause": str(int(T0 - 900))},
            {**member("103", "1"), "LoginTime": "0", "LastCall": "0"},  # never: from now
            {**member("104", "1"), "LastCall": str(int(T0 + 999))},  # a clock ahead: not used
        ],
        T0,
    )
    since = {ext: m["since"] for ext, m in wb.members(T0).items()}
    assert since == {"101": T0 - 60, "102": T0 - 900, "103": T0, "104": T0}
    wb.resync([{**member("101", "1"), "LastCall": str(int(T0 + 5))}], T0 + 10)
    assert wb.members(T0 + 10)["101"]["since"] == T0 - 60  # known already: unchanged


def test_a_day_in_madrid_has_23_or_25_hours_when_the_clocks_change() -> None:
    from zoneinfo import ZoneInfo

    from gateway.panel.wallboard import day_bounds

    madrid = ZoneInfo("Europe/Madrid")
    assert day_bounds(T0, madrid) == (MIDNIGHT, MIDNIGHT + 86400)
    start, end = day_bounds(1792900800.0, madrid)  # 2026-10-25 05:00 Madrid, back to CET
    assert (start, end - start) == (1792879200.0, 25 * 3600)
    start, end = day_bounds(1774771200.0, madrid)  # 2026-03-29 10:00 Madrid, on to CEST
    assert (start, end - start) == (1774738800.0, 23 * 3600)
