"""The call record and the events that carry it, as subscribers (call log, CRMs, push) see them.

Found by mutation testing (issue #11): the ``pbx`` and ``linkedid`` a subscriber reads off an
ended or corrected call, the exact JSON ``centralita replay`` prints for a record, and the
tracking defaults the example config documents.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.ami.frames import iter_capture
from gateway.calls.events import CallCorrected, CallEnded, CallRinging
from gateway.calls.model import CallRecord, Direction, Outcome, Transfer
from gateway.calls.replay import lab_settings
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker
from gateway.config import load_config
from tests.test_replay_traces import tracker_events

RESTART = Path(__file__).parent / "data" / "ami-traces" / "restart"


def test_ended_and_corrected_calls_name_their_pbx_and_call() -> None:
    _, frames = iter_capture((RESTART / "gateway_restart_mid_call.after.ami").read_bytes())
    tracker = CallTracker(lab_settings(), "madrid")
    events = tracker_events(tracker, frames, 1796027613.05)
    done = [e for e in events if isinstance(e, CallEnded | CallCorrected)]
    assert [(type(e).__name__, e.pbx, e.linkedid) for e in done] == [
        ("CallEnded", "madrid", "1796027602.0"),
        ("CallCorrected", "madrid", "1796027602.0"),
    ]


def _ringing(direction: Direction) -> CallRinging:
    return CallRinging(
        pbx="lab",
        linkedid="1.0",
        ringing=("101",),
        direction=direction,
        caller="101" if direction is Direction.OUTBOUND else "+34911234567",
        caller_name=None,
        did=None,
        dialed="+34911234567" if direction is Direction.OUTBOUND else "102",
        queue=None,
        click_to_call=False,
        call_id=None,
        at=1.0,
    )


def test_the_number_to_look_up_is_the_outside_party() -> None:
    assert _ringing(Direction.OUTBOUND).number == "+34911234567"
    assert _ringing(Direction.INBOUND).number == "+34911234567"
    assert _ringing(Direction.INTERNAL).number == "+34911234567"  # the caller's side


def test_record_json_is_exactly_what_replay_prints() -> None:
    rec = CallRecord(
        linkedid="1.0",
        pbx="lab",
        direction=Direction.INBOUND,
        outcome=Outcome.TRANSFERRED,
        started_at=100.0,
        ended_at=160.5,
        caller="+34911234567",
        did="5551000",
        queue="sales",
        agents_rang=["101", "102"],
        agents_answered=["101", "102"],
        answered_by="101",
        transfers=[Transfer("blind", "101", "102", 130.0)],
        answered_at=104.0,
        ring_seconds=4.0,
        queue_wait_seconds=4.0,
        talk_seconds=56.5,
        total_seconds=60.5,
        hangup_cause="16",
        recordings=["/r/1.wav"],
    )
    assert rec.to_json() == {
        "linkedid": "1.0",
        "pbx": "lab",
        "direction": "inbound",
        "click_to_call": False,
        "call_id": None,
        "caller": "+34911234567",
        "caller_name": None,
        "did": "5551000",
        "dialed": None,
        "queue": "sales",
        "agents_rang": ["101", "102"],
        "agents_answered": ["101", "102"],
        "answered_by": "101",
        "transfers": [{"kind": "blind", "from": "101", "to": "102"}],
        "outcome": "transferred",
        "started_at": 100.0,
        "answered_at": 104.0,
        "ended_at": 160.5,
        "ring_seconds": 4.0,
        "queue_wait_seconds": 4.0,
        "talk_seconds": 56.5,
        "total_seconds": 60.5,
        "hangup_cause": "16",
        "recordings": ["/r/1.wav"],
        "reconstructed": False,
        "warnings": [],
    }
    # the JSON holds copies: editing it does not edit the record
    out = rec.to_json()
    out["agents_rang"].append("103")
    out["warnings"].append("x")
    assert rec.agents_rang == ["101", "102"] and rec.warnings == []


def test_the_example_config_states_the_tracking_defaults() -> None:
    """gateway.example.yaml documents every tracking default: an administrator who leaves
    the section out gets exactly what the example says."""
    example = Path(__file__).parent.parent / "config" / "gateway.example.yaml"
    names = set(re.findall(r"\$\{([A-Z_]+)", example.read_text()))
    cfg = load_config(example, env={name: "s3cret-" * 5 for name in names})
    assert cfg.tracking == TrackingSettings()
    assert TrackingSettings().max_open_calls == 10000
    assert TrackingSettings().inbound_contexts == ["from-pstn", "from-trunk", "from-external"]


def test_a_record_names_its_customer_and_its_call_log_id() -> None:
    """What the call log, the scoring and the webhooks attach a call by: the outside party's
    number (the caller in, the number dialed out, none for an internal call) and
    ``<pbx>:<linkedid>``."""

    def record(direction: Direction, caller: str | None, dialed: str | None) -> CallRecord:
        return CallRecord(
            linkedid="1796027602.0",
            pbx="madrid",
            direction=direction,
            outcome=Outcome.ANSWERED,
            started_at=1.0,
            ended_at=2.0,
            caller=caller,
            dialed=dialed,
        )

    numbers = [
        record(Direction.INBOUND, "+34911234567", "101").customer_number,
        record(Direction.OUTBOUND, "101", "+34911234568").customer_number,
        record(Direction.INTERNAL, "101", "102").customer_number,
        record(Direction.INBOUND, None, "101").customer_number,
        record(Direction.OUTBOUND, "101", None).customer_number,
    ]
    assert numbers == ["+34911234567", "+34911234568", "", "", ""]
    assert record(Direction.INBOUND, "1", None).log_id == "madrid:1796027602.0"
