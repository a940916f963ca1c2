"""What a campaign does next for one member: a pure decision, no I/O, no clock.

The scheduler (:mod:`gateway.campaigns.scheduler`) gathers the member's :class:`Facts`, asks
:func:`decide` and carries the answer out (claims the step run, sends, creates the call task,
computes due times with the business calendar). Keeping the rules here lets every path of a
sequence be tested without a database, a mail server or an event loop.

Rules, in order, before any step runs:

1. a won lead leaves ``converted``;
2. a lead who replied to one of the campaign's e-mails leaves ``replied`` -- unless a later
   step branches on ``replied``: then the campaign's author decides what a reply does;
3. a step already claimed for this member (a restart, a crash between claim and move on) is
   never run again: a call task still waiting expires when it falls due, anything else moves on;
4. a step that cannot reach the lead (no usable address or number) is skipped; when no later
   step could reach them either, the member leaves ``unsubscribed`` / ``do_not_call`` (when that
   is why) or ``unreachable``.

Members stay when their segment stops matching (a status changed by hand): campaigns often
*want* to move a lead out of its segment (a SetFields step, a revived lost deal); only a won lead
(rule 1) and the suppression flags (rule 4 and the unsubscribe event) take a lead out early.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.campaigns.model import (
    Branch,
    CallTask,
    Condition,
    LeaveReason,
    RunStatus,
    SendEmail,
    SetFields,
    Step,
    Stop,
    Wait,
    WaitUntil,
)

# call outcomes (gateway.calls.model.Outcome values) that count as "the lead answered"
ANSWERED_OUTCOMES = frozenset({"answered", "transferred"})


@dataclass(frozen=True, slots=True)
class Facts:
    """What the engine may know about a member's lead and its past steps in this campaign."""

    status: str | None = None
    score: float | None = None
    opened: bool = False  # the last e-mail sent was opened
    replied: bool = False  # the last e-mail sent was answered
    replied_any: bool = False  # any e-mail of this membership was answered
    answered_call: bool = False  # the last call task's call was answered
    disposition: str | None = None  # the last call task's disposition
    can_email: bool = True  # an address not opted out / bounced, person not opted out
    can_call: bool = True  # a number not do-not-call, person not do-not-call
    # why e-mail / calls cannot reach the lead (a LeaveReason): unsubscribed / do_not_call
    # when the lead asked, unreachable when there is simply no address or number
    email_block: LeaveReason = LeaveReason.UNREACHABLE
    call_block: LeaveReason = LeaveReason.UNREACHABLE


@dataclass(frozen=True, slots=True)
class Claimed:
    """The run row already present for the member's current step (kind and status)."""

    kind: str
    status: RunStatus


# -- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leave:
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class MoveOn:
    """The current step already ran (claimed before a restart): go to ``next`` now."""

    next: int


@dataclass(frozen=True, slots=True)
class Expire:
    """The call task of the current step was not done in time: expire it, go to ``next``."""

    next: int


@dataclass(frozen=True, slots=True)
class Skip:
    """The step cannot reach the lead: record it skipped (``why``) and go to ``next``."""

    index: int
    kind: str
    why: str
    next: int


@dataclass(frozen=True, slots=True)
class SendMail:
    index: int
    step: SendEmail


@dataclass(frozen=True, slots=True)
class CreateCall:
    index: int
    step: CallTask


@dataclass(frozen=True, slots=True)
class Delay:
    """A wait: the next step (``index + 1``) falls due when the step says."""

    index: int
    step: Wait | WaitUntil


@dataclass(frozen=True, slots=True)
class Apply:
    index: int
    step: SetFields


@dataclass(frozen=True, slots=True)
class Jump:
    """A branch was evaluated: go to ``target`` (None: leave completed)."""

    index: int
    held: bool  # the condition held
    target: int | None


@dataclass(frozen=True, slots=True)
class Finish:
    """A stop step: record it and leave completed."""

    index: int


Action = Leave | MoveOn | Expire | Skip | SendMail | CreateCall | Delay | Apply | Jump | Finish

INSTANT = (MoveOn, Expire, Skip, Jump, Apply)  # actions after which the member goes straight on


# -- rules ---------------------------------------------------------------------------------


def holds(condition: Condition, facts: Facts) -> bool:
    """Whether a branch condition is true for these facts."""
    kind = condition.kind
    if kind == "opened":
        return facts.opened
    if kind == "replied":
        return facts.replied
    if kind == "answered_call":
        return facts.answered_call
    if kind == "disposition":
        return facts.disposition is not None and facts.disposition in condition.values
    if kind == "score_at_least":
        return (
            facts.score is not None
            and condition.value is not None
            and facts.score >= condition.value
        )
    if kind == "status":
        return facts.status is not None and facts.status in condition.values
    raise ValueError(f"unknown condition {kind!r}")


def _reply_handled(steps: list[Step], index: int) -> bool:
    return any(isinstance(s, Branch) and s.condition.kind == "replied" for s in steps[index:])


def _reach_block(steps: list[Step], index: int, facts: Facts) -> LeaveReason | None:
    """None when some step from ``index`` on can still reach the lead (or none of them tries
    to); else why not (the first contact step's reason)."""
    first: LeaveReason | None = None
    for s in steps[index:]:
        if isinstance(s, SendEmail):
            if facts.can_email:
                return None
            first = first or facts.email_block
        elif isinstance(s, CallTask):
            if facts.can_call:
                return None
            first = first or facts.call_block
    return first


def branch_target(step: Branch, index: int, held: bool) -> int | None:
    """Where a branch goes: a step index, or None for "stop"."""
    target = step.then if held else step.otherwise
    if target == "stop":
        return None
    if target is None:
        return index + 1
    return target


def decide(steps: list[Step], index: int, facts: Facts, claimed: Claimed | None = None) -> Action:
    """The one thing to do now for a member at step ``index``."""
    if facts.status == "won":
        return Leave(LeaveReason.CONVERTED)
    if facts.replied_any and not _reply_handled(steps, index):
        return Leave(LeaveReason.REPLIED)
    if index >= len(steps):
        return Leave(LeaveReason.COMPLETED)
    if claimed is not None:
        if claimed.kind == "call" and claimed.status is RunStatus.TASK_CREATED:
            return Expire(index + 1)
        # a finished run (or 'sending'/'unknown' after a crash): never again, move on;
        # a branch or a stop that ran already left its mark in the member's step index
        return MoveOn(index + 1)
    step = steps[index]
    if isinstance(step, SendEmail | CallTask):
        can = facts.can_email if isinstance(step, SendEmail) else facts.can_call
        if not can:
            block = _reach_block(steps, index, facts)  # this step cannot: can a later one?
            if block is not None:
                return Leave(block)
            kind = "email" if isinstance(step, SendEmail) else "call"
            why = facts.email_block if isinstance(step, SendEmail) else facts.call_block
            return Skip(index, kind, str(why), index + 1)
        if isinstance(step, SendEmail):
            return SendMail(index, step)
        return CreateCall(index, step)
    if isinstance(step, Wait | WaitUntil):
        return Delay(index, step)
    if isinstance(step, Branch):
        held = holds(step.condition, facts)
        return Jump(index, held, branch_target(step, index, held))
    if isinstance(step, SetFields):
        return Apply(index, step)
    if isinstance(step, Stop):
        return Finish(index)
    raise TypeError(f"unknown step {type(step).__name__}")
