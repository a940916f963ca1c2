"""Words and number formats for what the server draws and writes (charts, exports, e-mail).

The words are the panel's own catalogs (``web/panel/assets/i18n/<lang>.json``, keys
``reports.*``), so a chart says what the page around it says and a translator edits one file.
Numbers follow CLDR as the browsers' ``Intl`` does, so a figure reads the same in the panel and
in the chart: Spanish groups thousands with a dot only from five digits (``1234``, ``12.345``)
and puts a no-break space before ``%``; English writes ``1,234`` and ``85.3%``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOGS = Path(__file__).resolve().parent.parent.parent / "web" / "panel" / "assets" / "i18n"
LANGUAGES = ("es", "en")
NBSP = "\u00a0"
NONE = "\u2013"  # an en dash: nothing to divide, no figure

_MONTHS = {
    "es": ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}
_WEEKDAYS = {  # Monday first, as the store counts them (0 = Monday)
    "es": ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_WEEKDAYS_LONG = {
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@lru_cache(maxsize=len(LANGUAGES))
def _catalog(lang: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CATALOGS / f"{lang}.json").read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True, slots=True)
class Wording:
    """One language's words and formats: ``t()`` for catalog keys, the rest for figures."""

    lang: str

    def t(self, key: str, **params: object) -> str:
        """The catalog's text for ``key`` (English when Spanish lacks it; the key when both
        do, as the panel does), ``{name}`` placeholders filled, numbers formatted."""
        text = _catalog(self.lang).get(key, _catalog("en").get(key, key))
        if isinstance(text, dict):  # a plural entry: {"one": ..., "other": ...}
            count = params.get("count")
            text = text.get("one" if count == 1 else "other", key)

        def fill(m: re.Match[str]) -> str:
            if m.group(1) not in params:
                return m.group(0)
            v = params[m.group(1)]
            return self.integer(v) if isinstance(v, int) and not isinstance(v, bool) else str(v)

        return _PLACEHOLDER.sub(fill, str(text))

    def has(self, key: str) -> bool:
        return key in _catalog(self.lang) or key in _catalog("en")

    # -- numbers ---------------------------------------------------------------------------

    def number(self, value: float, decimals: int = 0) -> str:
        """``1234.5`` -> ``1234,5`` (es) / ``1,234.5`` (en); four-digit Spanish numbers are
        not grouped (CLDR's minimum grouping digits)."""
        text = f"{value:,.{decimals}f}"  # 1,234.5: then swap the marks for the locale
        if self.lang != "es":
            return text
        whole, _, frac = text.partition(".")
        digits = whole.lstrip("-").replace(",", "")
        if len(digits) < 5:
            whole = whole.replace(",", "")
        whole = whole.replace(",", ".")
        return f"{whole},{frac}" if frac else whole

    def integer(self, value: float) -> str:
        return self.number(round(value))

    def percent(self, fraction: float | None, decimals: int = 1) -> str:
        """``0.853`` -> ``85,3 %`` / ``85.3%``; None (nothing to divide) -> an en dash."""
        if fraction is None:
            return NONE
        text = self.number(fraction * 100, decimals)
        if decimals and text.endswith(("," + "0" * decimals, "." + "0" * decimals)):
            text = text[: -decimals - 1]  # 85.0% reads as 85%
        return f"{text}{NBSP}%" if self.lang == "es" else f"{text}%"

    def seconds(self, value: float | None) -> str:
        """75 -> ``1 min 15 s``, 9420 -> ``2 h 37 min`` (the panel's duration units)."""
        if value is None:
            return NONE
        s = max(0, round(value))
        m = s // 60
        if not m:
            return self.t("unit.seconds", n=s)
        if m < 60:
            return self.t("unit.minutes_seconds", m=m, s=f"{s % 60:02d}")
        return self.t("unit.hours_minutes", h=m // 60, m=f"{m % 60:02d}")

    # -- calendar --------------------------------------------------------------------------

    def day(self, d: date) -> str:
        """``30 nov`` / ``Nov 30``."""
        month = _MONTHS[self.lang][d.month - 1]
        return f"{d.day} {month}" if self.lang == "es" else f"{month} {d.day}"

    def full_day(self, d: date) -> str:
        """``lunes, 30 nov 2026`` / ``Monday, Nov 30, 2026``."""
        wd = _WEEKDAYS_LONG[self.lang][d.weekday()]
        if self.lang == "es":
            return f"{wd}, {self.day(d)} {d.year}"
        return f"{wd}, {self.day(d)}, {d.year}"

    def weekday(self, index: int, *, long: bool = False) -> str:
        return (_WEEKDAYS_LONG if long else _WEEKDAYS)[self.lang][index % 7]

    @staticmethod
    def hour(h: int) -> str:
        return f"{h:02d}:00"


def wording(lang: str | None) -> Wording:
    """The wording for ``lang`` ("es-ES" counts as "es"); English for anything else."""
    base = (lang or "").split("-")[0].lower()
    return Wording(base if base in LANGUAGES else "en")
