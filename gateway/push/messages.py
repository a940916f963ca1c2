"""Wire messages of the agent websocket: typed JSON, encoded once per event, numbered per agent.

A message on the wire is ``{"seq": N, "type": "...", "data": {...}}``. The ``type``/``data``
part is the same for every recipient of one event, so it is encoded once (:func:`encode`) and
each recipient's sequence number is spliced in front as text (:meth:`Encoded.with_seq`): a ring
fanned out to 30 tabs costs one ``json.dumps``. ``docs/panel-websocket.md`` documents every type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Types the server sends. Control messages (hello, refresh) carry the sequence number they
# refer to but are not buffered or replayed themselves.
HELLO = "hello"
REFRESH = "refresh"
CALL_RINGING = "call.ringing"
CALL_ANSWERED = "call.answered"
CALL_ENDED = "call.ended"
PRESENCE = "presence"
FOLLOWUP_DUE = "followup.due"
CLICKTOCALL_PROGRESS = "clicktocall.progress"

EVENT_TYPES = frozenset(
    {CALL_RINGING, CALL_ANSWERED, CALL_ENDED, PRESENCE, FOLLOWUP_DUE, CLICKTOCALL_PROGRESS}
)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One event as JSON text without its opening brace, ready to take a sequence number."""

    type: str
    tail: str  # '"type":"...","data":{...}}'

    def with_seq(self, seq: int) -> str:
        return f'{{"seq":{seq},{self.tail}'


def encode(type_: str, data: dict[str, Any]) -> Encoded:
    """Encode an event once; ``data`` holds only JSON types (untrusted text stays text)."""
    body = json.dumps({"type": type_, "data": data}, ensure_ascii=False, separators=(",", ":"))
    return Encoded(type_, body[1:])


def control(type_: str, seq: int, data: dict[str, Any] | None = None) -> str:
    """A control message (hello, refresh): carries the current sequence number, not its own."""
    return json.dumps(
        {"seq": seq, "type": type_, "data": data or {}}, ensure_ascii=False, separators=(",", ":")
    )
