"""A metric's reason as a sentence, from the panel's own catalogs (so the API and the panel say
the same words): ``intel.reason.<code>`` with ``{param}`` filled in; a list parameter (what a
record lacks) is each item's ``intel.missing.<item>`` joined by commas."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from gateway.intel.metrics import Metric

CATALOGS = Path(__file__).resolve().parents[2] / "web" / "panel" / "assets" / "i18n"
LANGUAGES = ("en", "es")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # a day sent as text ("since")


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


_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
_MONTHS = {
    "es": ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"],
    "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
}


def money_text(lang: str, value: float, currency: str) -> str:
    """An amount in whole units as the reader writes it and the panel shows it: "12.500 €"
    (es: a point between thousands from 10,000 on, as the RAE writes them) or "€12,500"."""
    symbol = _SYMBOLS.get(currency)
    amount = f"{round(value):,}"
    if lang == "es":
        amount = amount.replace(",", "." if abs(value) >= 9_999.5 else "")
    if lang == "es":
        return f"{amount}\u00a0{symbol or currency}"
    return f"{symbol}{amount}" if symbol else f"{amount} {currency}"


def _day_text(lang: str, iso: str) -> str:
    """2026-02-03 -> "3 feb 2026" (es) or "3 Feb 2026" (en)."""
    y, m, d = (int(x) for x in iso.split("-"))
    return f"{d} {_MONTHS.get(lang, _MONTHS['en'])[m - 1]} {y}"


def _value(lang: str, name: str, value: Any, currency: str) -> str:
    if name in ("amount", "average") and isinstance(value, int | float):
        return money_text(lang, float(value), currency)
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return _day_text(lang, value)
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
    currency = str(metric.params.get("currency") or "EUR")
    for name, value in metric.params.items():
        out = out.replace("{" + name + "}", _value(lang, name, value, currency))
    return out
