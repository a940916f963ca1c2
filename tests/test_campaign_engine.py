"""The campaign engine's decisions, without a database or a clock: which step runs, which is
skipped, where a branch goes, and when a member leaves."""

from __future__ import annotations

import msgspec
import pytest

from gateway.campaigns.engine import (
    Apply,
    Claimed,
    CreateCall,
    Delay,
    Expire,
    Facts,
    Finish,
    Jump,
    Leave,
    MoveOn,
    SendMail,
    Skip,
    decide,
    holds,
)
from gateway.campaigns.model import (
    Branch,
    CallTask,
    Condition,
    EmailTemplate,
    LeaveReason,
    RunStatus,
    SendEmail,
    SetFields,
    Step,
    Stop,
    Wait,
    WaitUntil,
)

T = {"es": EmailTemplate(subject="Hola", html="<p>Hola</p>")}
EMAIL = SendEmail(templates=T)
CALL = CallTask(title="Llamar")
OK = Facts(status="new", score=5.0)


def test_a_sequence_walks_email_wait_email_then_completes() -> None:
    steps: list[Step] = [EMAIL, Wait(days=2), EMAIL]
    assert decide(steps, 0, OK) == SendMail(0, EMAIL)
    assert decide(steps, 1, OK) == Delay(1, Wait(days=2))
    assert decide(steps, 2, OK) == SendMail(2, EMAIL)
    assert decide(steps, 3, OK) == Leave(LeaveReason.COMPLETED)


def test_every_kind_of_step_has_its_action() -> None:
    until = WaitUntil(weekday=1, hour=10)
    setf = SetFields(status="nurturing")
    steps: list[Step] = [CALL, until, setf, Stop()]
    assert decide(steps, 0, OK) == CreateCall(0, CALL)
    assert decide(steps, 1, OK) == Delay(1, until)
    assert decide(steps, 2, OK) == Apply(2, setf)
    assert decide(steps, 3, OK) == Finish(3)


def test_a_won_lead_leaves_converted_before_anything_runs() -> None:
    assert decide([EMAIL], 0, Facts(status="won")) == Leave(LeaveReason.CONVERTED)


def test_a_reply_makes_the_member_leave_unless_a_later_step_branches_on_it() -> None:
    replied = Facts(status="new", replied=True, replied_any=True)
    assert decide([EMAIL, Wait(days=1), EMAIL], 1, replied) == Leave(LeaveReason.REPLIED)
    branch = Branch(condition=Condition(kind="replied"), then="stop")
    steps: list[Step] = [EMAIL, Wait(days=1), branch, EMAIL]
    assert decide(steps, 1, replied) == Delay(1, Wait(days=1))
    assert decide(steps, 2, replied) == Jump(2, True, None)  # "stop": leave completed


def test_an_unreachable_email_step_is_skipped_while_a_later_call_can_reach() -> None:
    opted_out = Facts(status="new", can_email=False, email_block=LeaveReason.UNSUBSCRIBED)
    assert decide([EMAIL, CALL], 0, opted_out) == Skip(0, "email", "unsubscribed", 1)
    assert decide([EMAIL, CALL], 1, opted_out) == CreateCall(1, CALL)


def test_nobody_left_to_reach_leaves_with_the_reason() -> None:
    opted_out = Facts(can_email=False, email_block=LeaveReason.UNSUBSCRIBED)
    assert decide([EMAIL, Wait(days=1), EMAIL], 0, opted_out) == Leave(LeaveReason.UNSUBSCRIBED)
    dnc = Facts(can_call=False, call_block=LeaveReason.DO_NOT_CALL)
    assert decide([CALL], 0, dnc) == Leave(LeaveReason.DO_NOT_CALL)
    nothing = Facts(can_email=False, can_call=False)
    assert decide([EMAIL, CALL], 0, nothing) == Leave(LeaveReason.UNREACHABLE)
    # a later step that does not try to reach anyone (set fields) does not keep them in
    assert decide([EMAIL, SetFields(add_tags=["x"])], 0, opted_out) == Leave(
        LeaveReason.UNSUBSCRIBED
    )


def test_a_claimed_step_never_runs_again() -> None:
    steps: list[Step] = [EMAIL, CALL, EMAIL]
    for status in (RunStatus.SENDING, RunStatus.UNKNOWN, RunStatus.SENT, RunStatus.FAILED):
        assert decide(steps, 0, OK, Claimed("email", status)) == MoveOn(1)
    assert decide(steps, 1, OK, Claimed("call", RunStatus.TASK_CREATED)) == Expire(2)
    assert decide(steps, 1, OK, Claimed("call", RunStatus.CALLED)) == MoveOn(2)


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        (Condition(kind="opened"), Facts(opened=True), True),
        (Condition(kind="opened"), Facts(), False),
        (Condition(kind="answered_call"), Facts(answered_call=True), True),
        (
            Condition(kind="disposition", values=["interested"]),
            Facts(disposition="interested"),
            True,
        ),
        (Condition(kind="disposition", values=["interested"]), Facts(disposition="no"), False),
        (Condition(kind="disposition", values=["interested"]), Facts(), False),
        (Condition(kind="score_at_least", value=7), Facts(score=7.0), True),
        (Condition(kind="score_at_least", value=7), Facts(score=6.9), False),
        (Condition(kind="score_at_least", value=7), Facts(score=None), False),
        (Condition(kind="status", values=["lost", "new"]), Facts(status="lost"), True),
        (Condition(kind="status", values=["lost"]), Facts(status="contacted"), False),
    ],
)
def test_conditions(condition: Condition, facts: Facts, expected: bool) -> None:
    assert holds(condition, facts) is expected


def test_branch_targets_then_otherwise_next_and_stop() -> None:
    b = Branch(condition=Condition(kind="disposition", values=["interested"]), then=3)
    steps: list[Step] = [CALL, b, EMAIL, CALL]
    assert decide(steps, 1, Facts(disposition="interested")) == Jump(1, True, 3)
    assert decide(steps, 1, Facts(disposition="not_interested")) == Jump(1, False, 2)
    b2 = Branch(condition=Condition(kind="opened"), then=None, otherwise="stop")
    assert decide([EMAIL, b2, EMAIL], 1, Facts(opened=False)) == Jump(1, False, None)


def test_steps_decoded_from_stored_json_decide_the_same() -> None:
    raw = msgspec.json.encode([EMAIL, Wait(days=2), Stop()])
    steps = msgspec.json.decode(raw, type=list[Step])
    assert isinstance(decide(steps, 0, OK), SendMail)
    assert decide(steps, 2, OK) == Finish(2)
