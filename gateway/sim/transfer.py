"""Attended transfers on the simulated PBX, as Asterisk does them after an AMI ``Atxfer``.

``Atxfer`` moves the agent's (transferer's) channel into a new bridge with a consultation leg
``Local/<exten>@<context>-<id>;1`` while the customer waits; then, as in Asterisk 12+'s
attended-transfer state machine (main/bridge_basic.c):

* ``Hangup`` of the transferer's channel completes it: the customer goes on with the target
  (the simulator continues the call as its captured blind transfer to that extension);
* ``CancelAtxfer`` (the ``atxferabort`` feature code, ``*1`` by default) or a ``Hangup`` of the
  consultation leg drops the consultation: the agent is back in the customer's bridge.

A subclass rather than new methods in ``pbx.py`` (owned elsewhere): tests that need attended
transfers use :class:`AttendedTransferPbx`; adding it to ``SimulatedPbx``'s bases is all the
demo needs to get the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.ami.frames import AmiFrame
from gateway.sim.pbx import Session, SimulatedPbx
from gateway.sim.state import LiveChannel


@dataclass(slots=True)
class Consultation:
    """The transferer talking to the target; ``bridge``: the customer's bridge to go back to."""

    linkedid: str
    exten: str
    local: str  # the consultation leg (;1)
    bridge: str


class AttendedTransferPbx(SimulatedPbx):
    """The simulated PBX with Atxfer consultations that can be completed or cancelled."""

    # features.conf atxferabort; "" makes CancelAtxfer fail as an Asterisk without it does
    atxfer_abort = "*1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consultations: dict[str, Consultation] = {}  # by the transferer's channel

    def _action_atxfer(self, session: Session, action: AmiFrame) -> None:
        super()._action_atxfer(session, action)
        channel, exten = action.get("Channel", ""), action.get("Exten", "")
        agent = self.channels.get(channel)
        if agent is None or not exten or channel in self.consultations:
            return  # refused above (or already consulting: Asterisk ignores the feature)
        context = action.get("Context", "") or "default"
        local = f"Local/{exten}@{context}-{self.ids.chan():08x};1"
        uid = f"{self.boot_time:.0f}.{self.ids.uid()}"
        bridge = f"consult-{uid}"
        headers = {
            "Channel": local,
            "ChannelState": "6",
            "ChannelStateDesc": "Up",
            "CallerIDNum": exten,
            "CallerIDName": "<unknown>",
            "ConnectedLineNum": agent.headers.get("CallerIDNum", ""),
            "ConnectedLineName": "<unknown>",
            "Language": "en",
            "AccountCode": "",
            "Context": context,
            "Exten": exten,
            "Priority": "1",
            "Uniqueid": uid,
            "Linkedid": agent.linkedid,
        }
        self.channels[local] = LiveChannel(
            headers, self.clock.now(), agent.linkedid, "AppDial", "(Outgoing Line)", bridge
        )
        self.consultations[channel] = Consultation(agent.linkedid, exten, local, agent.bridge)
        agent.bridge = bridge

    def _action_cancelatxfer(self, session: Session, action: AmiFrame) -> None:
        channel = action.get("Channel", "")
        if not channel:
            session.respond(action, {"Response": "Error", "Message": "No channel specified"})
        elif channel not in self.channels:
            session.respond(
                action, {"Response": "Error", "Message": "Channel specified does not exist"}
            )
        elif not self.atxfer_abort:
            session.respond(
                action, {"Response": "Error", "Message": "No disconnect feature code found"}
            )
        else:
            session.respond(
                action, {"Response": "Success", "Message": "CancelAtxfer successfully queued"}
            )
            self._back_to_customer(channel)

    def _action_hangup(self, session: Session, action: AmiFrame) -> None:
        spec = action.get("Channel", "")
        consult = self.consultations.get(spec)
        if consult is not None:
            # the transferer hangs up: the transfer completes, the consultation leg goes away
            # (Local optimisation) and the customer talks to the target
            self.consultations.pop(spec)
            self.channels.pop(consult.local, None)
            completion = {**action, "Exten": consult.exten}
            self._transfer(session, completion, "Channel Hungup")
            return
        by_leg = next((a for a, c in self.consultations.items() if c.local == spec), None)
        if by_leg is not None:
            self._back_to_customer(by_leg)
            session.respond(action, {"Response": "Success", "Message": "Channel Hungup"})
            return
        super()._action_hangup(session, action)

    def target_hangs_up(self, transferer: str) -> None:
        """Test control: the target hangs up the consultation; the agent is back."""
        self._back_to_customer(transferer)

    def _back_to_customer(self, transferer: str) -> None:
        consult = self.consultations.pop(transferer, None)
        if consult is None:
            return
        local = self.channels.pop(consult.local, None)
        agent = self.channels.get(transferer)
        if agent is not None:
            agent.bridge = consult.bridge
        uid = local.headers.get("Uniqueid", "") if local else ""
        self._broadcast(
            {"Event": "Hangup", "Privilege": "call,all", "Channel": consult.local,
             "Uniqueid": uid, "Linkedid": consult.linkedid, "Cause": "16",
             "Cause-txt": "Normal Clearing"}
        )  # fmt: skip
