"""A metric's reason as a sentence, from the panel's own catalogs (so the API and the panel say
the same words): ``intel.reason.<code>`` with ``{param}`` filled in; a list parameter (what a
record lacks) is each item's ``intel.missing.<item>`` joined by commas."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from gateway.intel.metrics import Metric

CATALOGS = Path(__file__).resolve().parents[2] / "web" / "panel" / "assets" / "i18n"
LANGUAGES = ("en", "es")


@functools.lru_cache(maxsize=8)
def catalog(lang: str) -> dict[str, Any]:
    path = CATALOGS / f"{lang}.json"
    if lang not in LANGUAGES or not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _lookup(lang: str, key: str) -> Any:
    own = catalog(lang)
    return own[key] if key in own else catalog("en").get(key)


def _value(lang: str, name: str, value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(_lookup(lang, f"intel.missing.{v}") or v) for v in value)
    if name == "stage" and value:
        return str(_lookup(lang, f"stage.{value}") or value)
    if name in ("channel", "kind") and value:
        return str(_lookup(lang, f"intel.{name}.{value}") or value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def reason_text(metric: Metric, lang: str) -> str:
    """The reason in ``lang`` (English when the catalog lacks it; the code when both do)."""
    text = _lookup(lang, f"intel.reason.{metric.reason}")
    if isinstance(text, dict):  # a plural: {"one": ..., "other": ...} on params["count"]
        text = text.get("one" if metric.params.get("count") == 1 else "other")
    if not isinstance(text, str):
        return metric.reason
    out = text
    for name, value in metric.params.items():
        out = out.replace("{" + name + "}", _value(lang, name, value))
    return out
