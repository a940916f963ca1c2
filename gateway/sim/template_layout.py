"""The shape of a generated scenario template (``templates.py``), shared by its writer and reader.

``build_templates.py`` writes data in this layout and ``scenarios.py`` reads it; spelling it out
once lets the type checker hold both sides to the same layout.
"""

from __future__ import annotations

from typing import TypedDict


class TemplateChannel(TypedDict):
    """One symbolic channel of a capture: which Local half of which pair, and its first event."""

    role: str  # "in", "cust" or "a<n>" (the n-th agent)
    half: int  # 1 or 2: the ;1 / ;2 side of the Local channel pair
    pair: int
    first: int  # index in ``events`` of the channel's first event


# burst index, delta in s after the burst, "event" or "response", [[header, format string], ...]
TemplateEvent = tuple[int, float, str, list[list[str]]]


class ScenarioTemplate(TypedDict):
    """One capture as a template: burst offsets, channels, counts and the event sequence."""

    bursts: list[float]
    channels: list[TemplateChannel]
    bridges: int
    uptime: int
    events: list[TemplateEvent]
