"""The lead scoring model: parameters scored 0-10, one weighted global score. Pure: no I/O.

Each parameter says how its 0-10 value is derived: set by hand through the API (``manual``),
or computed from facts the store gathers (answered calls and form fills in a recent window,
days since the last contact, the lead's source). The global score is the weighted mean of the
known parts, so the default ``proximity`` (weight 2) and ``interest`` (weight 1) give the
product map's ``global = (2*proximity + interest) / 3``.

An unknown part (a manual value nobody set, a count with no window data) takes the
parameter's ``default``; when that is None the part is left out and the weights of the others
are renormalized, and a lead with no known part at all has no score (None), not a zero.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.store.validation import FieldError

SCALE_MAX = 10.0
DAY = 86400.0

Derivation = Literal["manual", "answered_calls", "form_fills", "recency", "lead_source"]
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class ScoringParameter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One scored dimension of a lead and the rule that turns facts into its 0-10 value."""

    name: str
    weight: float = 1.0
    derive: Derivation = "manual"
    # answered_calls / form_fills: each event in the last window_days is worth points_each;
    # recency: 10 on the day of the last contact, falling linearly to 0 at window_days
    window_days: float = 30.0
    points_each: float = 5.0
    # lead_source: value per source (web_form, inbound_call, import, api); others -> default
    by_source: dict[str, float] = msgspec.field(default_factory=dict)
    default: float | None = None  # the value when unknown; None leaves the part out

    def __post_init__(self) -> None:
        # raised as "<field>: expected ..., found ..." so the config error names the key
        if not _NAME.match(self.name):
            raise ValueError(
                f"name: expected lower-case letters, digits and '_', found {self.name!r}"
            )
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight: expected a number > 0, found {self.weight}")
        if not (math.isfinite(self.window_days) and self.window_days > 0):
            raise ValueError(f"window_days: expected a number > 0, found {self.window_days}")
        if not (math.isfinite(self.points_each) and self.points_each >= 0):
            raise ValueError(f"points_each: expected a number >= 0, found {self.points_each}")
        if self.default is not None and not _on_scale(self.default):
            raise ValueError(f"default: expected 0 to 10 or null, found {self.default}")
        for source, value in self.by_source.items():
            if not _on_scale(value):
                raise ValueError(f"by_source: expected 0 to 10 for {source!r}, found {value}")


def _default_parameters() -> list[ScoringParameter]:
    return [
        ScoringParameter(name="proximity", weight=2.0),
        ScoringParameter(name="interest", weight=1.0),
    ]


class ScoringSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``scoring:`` config section: which parameters make up a lead's global score."""

    parameters: list[ScoringParameter] = msgspec.field(default_factory=_default_parameters)

    def __post_init__(self) -> None:
        names = [p.name for p in self.parameters]
        if not names:
            raise ValueError("parameters: expected at least one parameter, found none")
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"parameters: expected unique names, found {name!r} twice")

    @property
    def manual_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters if p.derive == "manual")


@dataclass(frozen=True, slots=True)
class LeadFacts:
    """What the store knows about a lead that scoring may use, as of ``now`` (epoch s)."""

    now: float
    source: str | None = None
    manual: Mapping[str, float] = field(default_factory=dict)
    answered_call_ids: tuple[str, ...] = ()  # the calls behind answered_call_times, in order
    answered_call_times: tuple[float, ...] = ()
    form_fill_times: tuple[float, ...] = ()
    last_contact_at: float | None = None


@dataclass(frozen=True, slots=True)
class ScorePart:
    """One parameter's contribution: its 0-10 value (None: unknown, left out)."""

    name: str
    value: float | None
    weight: float
    derive: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "weight": self.weight,
            "derive": self.derive,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Score:
    global_score: float | None  # weighted mean of the known parts, 2 decimals; None: no part
    parts: tuple[ScorePart, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"global": self.global_score, "parts": [p.to_dict() for p in self.parts]}


def score(facts: LeadFacts, settings: ScoringSettings) -> Score:
    """Every parameter's value from the facts, and their weighted mean."""
    parts = tuple(_part(p, facts) for p in settings.parameters)
    known = [p for p in parts if p.value is not None]
    if not known:
        return Score(None, parts)
    total = sum(p.weight for p in known)
    mean = sum(p.weight * p.value for p in known if p.value is not None) / total
    return Score(round(_clamp(mean), 2), parts)


def _part(param: ScoringParameter, facts: LeadFacts) -> ScorePart:
    value: float | None
    if param.derive == "manual":
        value = facts.manual.get(param.name)
        detail = "set by hand" if value is not None else "not set"
    elif param.derive in ("answered_calls", "form_fills"):
        times = (
            facts.answered_call_times if param.derive == "answered_calls" else facts.form_fill_times
        )
        since = facts.now - param.window_days * DAY
        n = sum(1 for t in times if since <= t <= facts.now)
        value = _clamp(n * param.points_each)
        what = "answered call(s)" if param.derive == "answered_calls" else "form fill(s)"
        detail = f"{n} {what} in the last {param.window_days:g} days"
    elif param.derive == "recency":
        if facts.last_contact_at is None:
            value, detail = None, "never contacted"
        else:
            days = max(0.0, (facts.now - facts.last_contact_at) / DAY)
            value = _clamp(SCALE_MAX * (1 - days / param.window_days))
            detail = f"last contact {days:.1f} days ago"
    else:  # lead_source
        value = param.by_source.get(facts.source) if facts.source else None
        detail = f"source {facts.source or 'unknown'}"
    if value is None and param.default is not None:
        value, detail = param.default, f"{detail}; default"
    return ScorePart(
        param.name,
        None if value is None else round(value, 2),
        param.weight,
        param.derive,
        detail,
    )


def manual_inputs(body: Any, settings: ScoringSettings) -> dict[str, float | None]:
    """Validate ``{"proximity": 8, "interest": null}`` for the manual parameters: each value
    0 to 10, or null to clear it. Raises FieldError naming the first bad field."""
    if not isinstance(body, dict):
        raise FieldError("body", "expected a JSON object of parameter -> 0 to 10")
    if not body:
        raise FieldError("body", f"expected at least one of: {', '.join(settings.manual_names)}")
    out: dict[str, float | None] = {}
    for name, value in body.items():
        if name not in settings.manual_names:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise FieldError(
                shown,
                f"not a manual scoring parameter; expected one of: "
                f"{', '.join(settings.manual_names) or '(none configured)'}",
            )
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(name, f"expected a number from 0 to 10 or null, found {_kind(value)}")
        if not _on_scale(float(value)):
            raise FieldError(name, f"expected a number from 0 to 10, found {value}")
        out[name] = float(value)
    return out


def _on_scale(v: float) -> bool:
    return math.isfinite(v) and 0.0 <= v <= SCALE_MAX


def _clamp(v: float) -> float:
    return min(SCALE_MAX, max(0.0, v))


def _kind(v: Any) -> str:
    names: dict[type, str] = {str: "text", list: "a list", dict: "an object"}
    return names.get(type(v), type(v).__name__)
