"""Reports as tables, written as CSV (for other programs) or XLSX (for people).

:func:`table` turns any report the API answers (the dict of one of ``model``'s ``*Report``
structs) into a :class:`Table`: its list of rows (``rows``, ``cells`` or ``stages``), one
column per figure, a kind per column (text, count, rate, seconds, amount) and the totals row
when the report has one.

* CSV is for programs: the columns keep the API's field names, rates are fractions and
  durations seconds with a ``.`` decimal point, so a script reads the same file whatever the
  language of the person who downloaded it. UTF-8 with a byte-order mark, so a spreadsheet
  opening it by double click shows "Sofía" and not "SofÃ­a".
* XLSX (openpyxl) is for people: headers in their language, numbers stored as numbers with a
  format (``85.3%``, ``1,234``), the header row frozen and filterable, and a second sheet
  saying what was asked (range, filters, time zone).

Text from outside (an agent's or a queue's name) never becomes a formula: CSV cells get the
OWASP quote (as ``gateway.store.csv_io`` does) and XLSX cells are typed as strings.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from gateway.reports.charts import FUNNEL_KEYS, disposition_label, group_text
from gateway.reports.locale import Wording

__all__ = ["Column", "Table", "table", "to_csv", "to_xlsx"]

Kind = Literal["text", "count", "rate", "seconds", "number"]
Cell = str | int | float | None

# a cell starting with one of these is a formula to a spreadsheet (fullwidth forms too): the
# CSV cell gets a leading quote, the rule of gateway/store/csv_io.py
_FORMULA = re.compile("^'*[=+\\-@\t\r\uff1d\uff0b\uff0d\uff20]")
_SHEET_NAME = re.compile(r"[\[\]:*?/\\]")
_LISTS = ("rows", "cells", "stages", "best")
_RATE_FIELDS = {"answer_rate", "service_level", "rate", "rate_of_leads", "win_rate", "share"}
_SECONDS_FIELDS = {"asa", "aht", "aht_p90", "callback_median_s", "median_s", "p90_s"}
_NUMBER_FORMATS: dict[Kind, str] = {
    "count": "#,##0",
    "rate": "0.0%",
    "seconds": "#,##0",
    "number": "#,##0.00",
    "text": "@",
}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: the API's field name (the CSV header), the header a person reads, and
    what its values are."""

    key: str
    header: str
    kind: Kind


@dataclass(slots=True)
class Table:
    """A report as rows of cells; ``about`` lists (label, value) pairs describing the query."""

    name: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    totals: list[Cell] | None = None
    about: list[tuple[str, str]] = field(default_factory=list)


def _kind(key: str, value: object) -> Kind:
    if key in _RATE_FIELDS or key.endswith("_rate"):
        return "rate"
    if key in _SECONDS_FIELDS or key.endswith("_s"):
        return "seconds"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "text"
    return "count" if isinstance(value, int) else "number"


def _header(key: str, w: Wording) -> str:
    catalog_key = f"reports.col_{key}"
    return w.t(catalog_key) if w.has(catalog_key) else key


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """``{"amount": {"EUR": 10.0}}`` -> ``{"amount_EUR": 10.0}``: one column per currency."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, Mapping):
            for sub, x in v.items():
                out[f"{k}_{sub}"] = x
        elif not isinstance(v, list):
            out[k] = v
    return out


def _readable(
    name: str, key: str, value: Any, group_by: str, w: Wording, row: Mapping[str, Any]
) -> Any:
    """A value in the person's language (the XLSX and the e-mail show these; CSV keeps the
    API's): a group's date, hour or weekday, a disposition's or a funnel stage's name."""
    if key == "label" and "key" in row:
        if name == "dispositions":
            return disposition_label(str(row["key"]), str(value or ""), w)
        if "offered" in row:
            return group_text(str(row["key"]), str(value or ""), group_by, w)
    if key == "weekday" and isinstance(value, int):
        return w.weekday(value, long=True)
    if key == "key" and name == "funnel" and value in FUNNEL_KEYS:
        return w.t(FUNNEL_KEYS[value])
    return value


def table(name: str, report: Mapping[str, Any], w: Wording, *, readable: bool = True) -> Table:
    """The table of ``report`` (as the API answers it). ``readable``: group labels in the
    person's language (for XLSX and e-mail); False keeps the values as the API has them."""
    query = report.get("query") or {}
    group_by = str(query.get("group_by", ""))
    found = next((k for k in _LISTS if isinstance(report.get(k), list)), None)
    items: list[dict[str, Any]] = [_flatten(r) for r in report.get(found, [])] if found else []
    if not items:  # a report of figures, not rows (time to first contact): one row of them
        single = _flatten({k: v for k, v in report.items() if k not in ("query", "timezone")})
        items = [single] if single else []
    keys: list[str] = []
    for item in items:
        keys += [k for k in item if k not in keys]
    totals_src = report.get("totals")
    columns = []
    for k in keys:
        sample = next((i[k] for i in items if i.get(k) is not None), None)
        columns.append(Column(k, _header(k, w), _kind(k, sample)))

    def cells(item: Mapping[str, Any]) -> list[Cell]:
        out: list[Cell] = []
        for c in columns:
            v = item.get(c.key)
            if readable:
                v = _readable(name, c.key, v, group_by, w, item)
            out.append(v if v is None or isinstance(v, str | int | float) else str(v))
        return out

    totals: list[Cell] | None = None
    if isinstance(totals_src, Mapping):
        flat = _flatten(totals_src)
        flat["key"], flat["label"] = "", w.t("reports.total")
        totals = [flat.get(c.key) if c.key != "label" else flat["label"] for c in columns]
    return Table(
        name=name,
        title=w.t(f"reports.report_{name}") if w.has(f"reports.report_{name}") else name,
        columns=columns,
        rows=[cells(i) for i in items],
        totals=totals,
        about=_about(report, w),
    )


def _about(report: Mapping[str, Any], w: Wording) -> list[tuple[str, str]]:
    query = report.get("query") or {}
    about: list[tuple[str, str]] = []
    start, end = query.get("start"), query.get("end")
    if start and end:
        about.append((w.t("reports.from"), w.full_day(date.fromisoformat(str(start)))))
        about.append((w.t("reports.to"), w.full_day(date.fromisoformat(str(end)))))
    for k in ("queue", "agent", "did", "campaign_id", "group_by"):
        if query.get(k) is not None:
            about.append((_header(k, w), str(query[k])))
    if report.get("timezone"):
        about.append((w.t("reports.timezone"), str(report["timezone"])))
    return about


# -- CSV -----------------------------------------------------------------------------------


def _csv_cell(value: Cell, kind: Kind) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return (
            f"{value:.4f}".rstrip("0").rstrip(".")
            if kind == "rate"
            else f"{value:.3f}".rstrip("0").rstrip(".")
        )
    s = str(value)
    return "'" + s if _FORMULA.match(s) else s


def to_csv(t: Table) -> bytes:
    """RFC 4180 CSV, UTF-8 with a BOM: the field names, the rows, then the totals row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.key for c in t.columns])
    for row in [*t.rows, *([t.totals] if t.totals else [])]:
        writer.writerow([_csv_cell(v, c.kind) for v, c in zip(row, t.columns, strict=True)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# -- XLSX ----------------------------------------------------------------------------------


def _sheet_title(text: str, taken: set[str]) -> str:
    """Excel's rules: at most 31 characters, none of ``[]:*?/\\``, unique in the book."""
    base = _SHEET_NAME.sub(" ", text).strip()[:31] or "Sheet"
    title, n = base, 2
    while title.lower() in taken:
        suffix = f" {n}"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def _put(ws: Any, row: int, col: int, value: Cell, kind: Kind, bold: bool = False) -> None:
    cell = ws.cell(row=row, column=col)
    if isinstance(value, str):
        # control characters (a hostile caller name) are not allowed in a worksheet's XML
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    cell.value = value
    if isinstance(value, str):
        # openpyxl stores a string starting with "=" as a formula: this one is text, always
        cell.data_type = "s"
    elif value is not None:
        cell.number_format = _NUMBER_FORMATS[kind]
    if bold:
        cell.font = Font(bold=True)


def to_xlsx(tables: Sequence[Table], w: Wording) -> bytes:
    """One sheet per table (header frozen, filterable, columns sized to their text), then a
    sheet saying what each table was asked."""
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    taken: set[str] = set()
    for t in tables:
        ws = book.create_sheet(_sheet_title(t.title, taken))
        widths = [len(c.header) for c in t.columns]
        for j, c in enumerate(t.columns, start=1):
            _put(ws, 1, j, c.header, "text", bold=True)
        body = [*t.rows, *([t.totals] if t.totals else [])]
        for i, row in enumerate(body, start=2):
            is_total = t.totals is not None and i == len(body) + 1
            for j, (v, c) in enumerate(zip(row, t.columns, strict=True), start=1):
                _put(ws, i, j, v, c.kind, bold=is_total)
                widths[j - 1] = max(widths[j - 1], len(str(v)) if v is not None else 0)
        ws.freeze_panes = "A2"
        if t.columns and t.rows:
            last = get_column_letter(len(t.columns))
            ws.auto_filter.ref = f"A1:{last}{len(t.rows) + 1}"  # the totals row stays out
        for j, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(j)].width = min(48, max(8, width + 2))
    about = book.create_sheet(_sheet_title(w.t("reports.sheet_about"), taken))
    r = 1
    for t in tables:
        _put(about, r, 1, t.title, "text", bold=True)
        r += 1
        for label, value in t.about:
            _put(about, r, 1, label, "text")
            _put(about, r, 2, value, "text")
            r += 1
        r += 1
    about.column_dimensions["A"].width = 28
    about.column_dimensions["B"].width = 40
    book.properties.creator = "Centralita"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
