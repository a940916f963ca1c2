"""The reports' charts as standalone SVG text: pure functions of a report and a :class:`Wording`.

No script and no stylesheet: every colour and font is a presentation attribute, so the same
text is valid as a downloaded file, as an ``<img>``, and inline in the panel under its strict
CSP (``style-src 'self'`` would drop a ``style=`` attribute, not a ``fill=``). Each chart is
``role="img"`` named by its ``<title>`` and summed up by its ``<desc>``; each mark carries its
own ``<title>`` (a tooltip, and what a screen reader reads when it walks the marks). Colours
of marks have at least 3:1 contrast against the white background (WCAG 1.4.11) and stacked
marks are split by a white gap, so hue is never the only cue; text has 4.5:1.

Names from outside (agents, queues, dispositions) are escaped and stripped of characters XML
cannot hold, so a hostile label is text, never markup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape, quoteattr

from gateway.reports.locale import Wording
from gateway.reports.model import (
    DispositionReport,
    FunnelReport,
    HeatmapReport,
    SummaryReport,
    SummaryRow,
)

__all__ = [
    "PALETTE",
    "agents_chart",
    "contrast",
    "dispositions_chart",
    "funnel_chart",
    "group_label",
    "group_text",
    "missed_heatmap_chart",
    "volume_chart",
]

# mark colours: each has >= 4.5:1 against white (tests/test_reports_charts.py measures them)
PALETTE = {
    "answered": "#1d4ed8",  # blue 700
    "missed": "#b45309",  # amber 700
    "rate": "#6d28d9",  # violet 700
    "bar": "#0f766e",  # teal 700
}
BACKGROUND = "#ffffff"
INK = "#1f2937"  # text: 14:1 on white
MUTED = "#4b5563"  # axis labels: 7.5:1
GRID = "#e5e7eb"  # gridlines are not information; the axis labels are
# the heatmap: white to dark red; each cell's number is drawn in whichever of INK or white
# reads best on it
HEAT = ("#f3f4f6", "#fde8d7", "#fbc49a", "#f28a4c", "#c2410c", "#7c2d12")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
MAX_ROWS = 30  # bars in a ranking chart; the rest are counted in a note
CHAR_WIDTH = 6.6  # average advance of a 12 px sans-serif character, for laying labels out

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


# -- colour --------------------------------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    """Relative luminance (WCAG 2)."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _ink_on(fill: str) -> str:
    return INK if contrast(INK, fill) >= contrast("#ffffff", fill) else "#ffffff"


# -- the document --------------------------------------------------------------------------


def _text(value: object) -> str:
    return escape(_NOT_XML.sub("", str(value)))


def _attr(value: object) -> str:
    return quoteattr(_NOT_XML.sub("", str(value)))


def _num(v: float) -> str:
    return f"{v:.1f}".removesuffix(".0")


def _clip(label: str, chars: int) -> str:
    return label if len(label) <= chars else label[: max(1, chars - 1)] + "…"


class _Svg:
    """An SVG document being written: elements appended as text, escaped on the way in."""

    def __init__(self, ident: str, width: int, height: int, title: str, desc: str, lang: str):
        self.ident = re.sub(r"[^A-Za-z0-9_-]", "-", ident) or "chart"
        self.width, self.height = width, height
        self.title, self.desc, self.lang = title, desc, lang
        self.parts: list[str] = []

    def add(self, tag: str, attrs: dict[str, object], tip: str | None = None) -> None:
        a = "".join(f" {k.replace('_', '-')}={_attr(v)}" for k, v in attrs.items())
        if tip is None:
            self.parts.append(f"<{tag}{a}/>")
        else:
            self.parts.append(f"<{tag}{a}><title>{_text(tip)}</title></{tag}>")

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        anchor: str = "start",
        size: int = 12,
        fill: str = INK,
        weight: str | None = None,
        tip: str | None = None,
    ) -> None:
        a = f' x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}"'
        if anchor != "start":
            a += f' text-anchor="{anchor}"'
        if weight:
            a += f' font-weight="{weight}"'
        inner = f"<title>{_text(tip)}</title>" if tip else ""
        self.parts.append(f"<text{a}>{inner}{_text(content)}</text>")

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str,
        tip: str | None = None,
        **extra: object,
    ) -> None:
        attrs: dict[str, object] = {
            "x": _num(x),
            "y": _num(y),
            "width": _num(max(w, 0.0)),
            "height": _num(max(h, 0.0)),
            "fill": fill,
        }
        attrs.update(extra)
        self.add("rect", attrs, tip)

    def line(
        self, x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1
    ) -> None:
        self.add(
            "line",
            {"x1": _num(x1), "y1": _num(y1), "x2": _num(x2), "y2": _num(y2), "stroke": stroke,
             "stroke_width": _num(width)},
        )  # fmt: skip

    def legend(self, x: float, y: float, items: Sequence[tuple[str, str, str]]) -> None:
        """Swatches and names in a row: (kind "box"|"line", colour, name)."""
        for kind, colour, name in items:
            if kind == "line":
                self.line(x, y - 4, x + 18, y - 4, colour, 2.5)
                self.add("circle", {"cx": _num(x + 9), "cy": _num(y - 4), "r": "3", "fill": colour})
                x += 24
            else:
                self.rect(x, y - 10, 12, 12, colour)
                x += 17
            self.text(x, y, name, fill=INK)
            x += len(name) * CHAR_WIDTH + 20

    def empty(self, message: str) -> None:
        self.text(
            self.width / 2, self.height / 2 + 10, message, anchor="middle", size=14, fill=MUTED
        )

    def render(self) -> str:
        t_id, d_id = f"{self.ident}-title", f"{self.ident}-desc"
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img" '
            f'aria-labelledby="{t_id} {d_id}" lang="{self.lang}" font-family={_attr(FONT)}>'
            f'<title id="{t_id}">{_text(self.title)}</title>'
            f'<desc id="{d_id}">{_text(self.desc)}</desc>'
            f'<rect width="{self.width}" height="{self.height}" fill="{BACKGROUND}"/>'
        )
        heading = (
            f'<text x="16" y="26" font-size="15" font-weight="600" fill="{INK}">'
            f"{_text(self.title)}</text>"
        )
        return head + heading + "".join(self.parts) + "</svg>\n"


def _nice_ceiling(value: float) -> float:
    """The axis top: ``value`` rounded up to 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _count_axis(most: float) -> tuple[float, list[float]]:
    """An axis for counts: whole-number ticks (no "3.8 calls"), about four of them."""
    step = max(1.0, _nice_ceiling(most / 4)) if most > 0 else 1.0
    top = step * max(1, math.ceil(most / step))
    return top, [step * i for i in range(int(top / step) + 1)]


# -- labels of groups ----------------------------------------------------------------------


def group_label(row: SummaryRow, group_by: str, w: Wording, *, long: bool = False) -> str:
    """What a person reads for a row's group: a date, an hour, a weekday, a disposition's name
    in the chosen language, or the name the report gave (a queue, an agent)."""
    return group_text(row.key, row.label, group_by, w, long=long)


def group_text(key: str, label: str, group_by: str, w: Wording, *, long: bool = False) -> str:
    """:func:`group_label` of a group's key and label."""
    try:
        if group_by == "day":
            d = date.fromisoformat(key)
            return w.full_day(d) if long else w.day(d)
        if group_by == "hour":
            return w.hour(int(key))
        if group_by == "weekday":
            return w.weekday(int(key), long=long)
    except ValueError:
        pass  # a key of another shape: show what the report says
    if group_by == "disposition":
        return disposition_label(key, label, w)
    return label or key


def disposition_label(key: str, label: str, w: Wording) -> str:
    if not key:
        return w.t("reports.no_disposition")
    catalog_key = f"disposition.{key}"
    return w.t(catalog_key) if w.has(catalog_key) else (label or key)


def _range_text(report_start: date, report_end: date, w: Wording) -> str:
    if report_start == report_end:
        return w.full_day(report_start)
    return w.t("reports.range", start=w.day(report_start), end=w.day(report_end))


# -- the charts ----------------------------------------------------------------------------


def volume_chart(report: SummaryReport, w: Wording, *, ident: str = "volume") -> str:
    """Calls offered per group as stacked bars (answered, then missed), with the answer rate
    as a line on its own 0-100 % axis."""
    width, height = 760, 340
    left, right, top, bottom = 56, 60, 70, 46
    q, totals = report.query, report.totals
    rows = report.rows
    desc = w.t(
        "reports.volume_desc",
        range=_range_text(q.start, q.end, w),
        offered=totals.offered,
        answered=totals.answered,
        missed=totals.missed,
        rate=w.percent(totals.answer_rate),
    )
    svg = _Svg(ident, width, height, w.t("reports.chart_volume"), desc, w.lang)
    names = (w.t("reports.answered"), w.t("reports.missed"), w.t("reports.answer_rate"))
    svg.legend(
        16,
        50,
        [("box", PALETTE["answered"], names[0]), ("box", PALETTE["missed"], names[1]),
         ("line", PALETTE["rate"], names[2])],
    )  # fmt: skip
    if not rows or not any(r.offered for r in rows):
        svg.empty(w.t("reports.no_data"))
        return svg.render()
    plot_w, plot_h = width - left - right, height - top - bottom
    base = top + plot_h
    y_top, ticks = _count_axis(max(r.answered + r.missed for r in rows))
    for v in ticks:
        y = base - v / y_top * plot_h
        svg.line(left, y, left + plot_w, y, GRID)
        svg.text(left - 6, y + 4, w.integer(v), anchor="end", fill=MUTED)
        svg.text(left + plot_w + 6, y + 4, w.percent(v / y_top, 0), fill=MUTED)
    slot = plot_w / len(rows)
    bar = max(1.0, min(40.0, slot * 0.7))
    every = max(1, math.ceil(len(rows) / max(1, plot_w // 64)))
    points: list[tuple[float, float, str] | None] = []
    for i, r in enumerate(rows):
        x = left + i * slot + (slot - bar) / 2
        name = group_label(r, q.group_by, w, long=True)
        tip = w.t(
            "reports.volume_tip",
            group=name,
            offered=r.offered,
            answered=r.answered,
            missed=r.missed,
            rate=w.percent(r.answer_rate),
        )
        h_ans = r.answered / y_top * plot_h
        h_mis = r.missed / y_top * plot_h
        svg.rect(x, base - h_ans, bar, h_ans, PALETTE["answered"], tip)
        # the white stroke parts the two marks so they do not rely on hue alone
        svg.rect(
            x,
            base - h_ans - h_mis,
            bar,
            h_mis,
            PALETTE["missed"],
            tip,
            stroke=BACKGROUND,
            stroke_width="1",
        )
        if i % every == 0:
            svg.text(
                x + bar / 2, base + 18, group_label(r, q.group_by, w), anchor="middle", fill=MUTED
            )
        if r.answer_rate is None:
            points.append(None)
        else:
            points.append((x + bar / 2, base - r.answer_rate * plot_h, tip))
    svg.line(left, base, left + plot_w, base, MUTED)
    # the rate line: broken where a group had no calls (no rate), not drawn through zero
    run: list[tuple[float, float, str]] = []
    for p in [*points, None]:
        if p is not None:
            run.append(p)
            continue
        if len(run) > 1:
            pts = " ".join(f"{_num(x)},{_num(y)}" for x, y, _ in run)
            svg.add(
                "polyline",
                {"points": pts, "fill": "none", "stroke": PALETTE["rate"], "stroke_width": "2.5"},
            )
        for x, y, tip in run:
            svg.add(
                "circle", {"cx": _num(x), "cy": _num(y), "r": "3.5", "fill": PALETTE["rate"]}, tip
            )
        run = []
    svg.text(left + plot_w + 6, top - 10, "%", fill=MUTED)
    return svg.render()


def missed_heatmap_chart(report: HeatmapReport, w: Wording, *, ident: str = "heatmap") -> str:
    """Missed calls by hour (columns) and weekday (rows), darker for more; every cell shows
    its number, so the shade is never the only cue."""
    cell_w, cell_h = 28, 26
    left, top = 56, 78
    width, height = left + 24 * cell_w + 16, top + 7 * cell_h + 40
    q = report.query
    grid = {(c.weekday, c.hour): c for c in report.cells}
    total = sum(c.missed for c in report.cells)
    worst = max(report.cells, key=lambda c: c.missed, default=None)
    peak = (
        w.t(
            "reports.heatmap_peak",
            day=w.weekday(worst.weekday, long=True),
            hour=w.hour(worst.hour),
            n=worst.missed,
        )
        if worst is not None and worst.missed
        else ""
    )
    desc = w.t("reports.heatmap_desc", range=_range_text(q.start, q.end, w), n=total) + (
        " " + peak if peak else ""
    )
    svg = _Svg(ident, width, height, w.t("reports.chart_heatmap"), desc, w.lang)
    most = max((c.missed for c in report.cells), default=0)
    for h in range(24):
        if h % 2 == 0:
            svg.text(
                left + h * cell_w + cell_w / 2, top - 8, f"{h:02d}", anchor="middle", fill=MUTED
            )
    for d in range(7):
        y = top + d * cell_h
        svg.text(left - 8, y + cell_h / 2 + 4, w.weekday(d), anchor="end", fill=MUTED)
        for h in range(24):
            cell = grid.get((d, h))
            missed = cell.missed if cell else 0
            offered = cell.offered if cell else 0
            level = (
                0
                if not missed
                else 1 + min(len(HEAT) - 2, int((missed / most) * (len(HEAT) - 1) - 1e-9))
            )
            fill = HEAT[level]
            x = left + h * cell_w
            tip = w.t(
                "reports.heatmap_tip",
                day=w.weekday(d, long=True),
                hour=w.hour(h),
                missed=missed,
                offered=offered,
            )
            svg.rect(x + 1, y + 1, cell_w - 2, cell_h - 2, fill, tip, rx="2")
            if missed:
                svg.text(
                    x + cell_w / 2,
                    y + cell_h / 2 + 4,
                    w.integer(missed),
                    anchor="middle",
                    size=11,
                    fill=_ink_on(fill),
                )
    # the key: the shades from none to the most, with their meaning in words
    ky = top + 7 * cell_h + 26
    svg.text(left, ky, w.t("reports.heatmap_less"), fill=MUTED)
    kx = left + len(w.t("reports.heatmap_less")) * CHAR_WIDTH + 8
    for i, colour in enumerate(HEAT):
        svg.rect(kx + i * 18, ky - 11, 16, 14, colour)
    svg.text(kx + len(HEAT) * 18 + 6, ky, w.t("reports.heatmap_more", n=most), fill=MUTED)
    return svg.render()


@dataclass(frozen=True, slots=True)
class _Bar:
    value: float
    colour: str
    text: str


def _ranking(
    svg: _Svg,
    labels: Sequence[str],
    bars: Sequence[Sequence[_Bar]],
    tips: Sequence[str],
    *,
    top: int,
    scale: float,
) -> None:
    """Horizontal bars, one band per label (one bar per series), values written after them."""
    label_chars = min(28, max((len(lb) for lb in labels), default=4))
    left = 16 + label_chars * CHAR_WIDTH + 10
    plot_w = svg.width - left - 90
    series = max((len(b) for b in bars), default=1)
    bar_h = 16 if series == 1 else 11
    band = series * bar_h + 12
    for i, (label, group, tip) in enumerate(zip(labels, bars, tips, strict=True)):
        y = top + i * band
        svg.text(
            left - 8, y + series * bar_h / 2 + 4, _clip(label, label_chars), anchor="end", tip=label
        )
        for j, b in enumerate(group):
            length = b.value / scale * plot_w if scale else 0.0
            by = y + j * bar_h
            svg.rect(left, by, length, bar_h - 2, b.colour, tip)
            svg.text(left + length + 6, by + bar_h - 4, b.text, size=11, fill=INK)


def agents_chart(report: SummaryReport, w: Wording, *, ident: str = "agents") -> str:
    """Agents side by side: calls answered and rings not answered, with handle time."""
    rows = [r for r in report.rows if r.answered or r.ring_no_answer or r.offered][:MAX_ROWS]
    hidden = max(
        0, len([r for r in report.rows if r.answered or r.ring_no_answer or r.offered]) - len(rows)
    )
    top = 70
    height = top + max(1, len(rows)) * 34 + (44 if hidden else 24)
    width = 760
    q = report.query
    desc = w.t("reports.agents_desc", range=_range_text(q.start, q.end, w), n=len(rows))
    svg = _Svg(ident, width, height, w.t("reports.chart_agents"), desc, w.lang)
    svg.legend(16, 50, [("box", PALETTE["answered"], w.t("reports.answered")),
                        ("box", PALETTE["missed"], w.t("reports.ring_no_answer"))])  # fmt: skip
    if not rows:
        svg.empty(w.t("reports.no_data"))
        return svg.render()
    scale = _nice_ceiling(max(max(r.answered, r.ring_no_answer) for r in rows))
    labels = [r.label or r.key for r in rows]
    bars = [
        [
            _Bar(
                r.answered,
                PALETTE["answered"],
                w.t("reports.n_answered_aht", n=r.answered, aht=w.seconds(r.aht)),
            ),
            _Bar(r.ring_no_answer, PALETTE["missed"], w.integer(r.ring_no_answer)),
        ]
        for r in rows
    ]
    tips = [
        w.t(
            "reports.agent_tip",
            agent=r.label or r.key,
            answered=r.answered,
            rna=r.ring_no_answer,
            aht=w.seconds(r.aht),
            transfers=r.transfers,
        )
        for r in rows
    ]
    _ranking(svg, labels, bars, tips, top=top, scale=scale)
    if hidden:
        svg.text(16, height - 14, w.t("reports.more_rows", n=hidden), fill=MUTED)
    return svg.render()


def dispositions_chart(
    report: DispositionReport, w: Wording, *, ident: str = "dispositions"
) -> str:
    """How the answered calls were wrapped up, most used first, with each one's share."""
    rows = [r for r in report.rows if r.count][:MAX_ROWS]
    hidden = max(0, len([r for r in report.rows if r.count]) - len(rows))
    top = 44
    height = top + max(1, len(rows)) * 28 + (44 if hidden else 20)
    q = report.query
    desc = w.t("reports.dispositions_desc", range=_range_text(q.start, q.end, w), n=report.total)
    svg = _Svg(ident, 760, height, w.t("reports.chart_dispositions"), desc, w.lang)
    if not rows:
        svg.empty(w.t("reports.no_data"))
        return svg.render()
    labels = [disposition_label(r.key, r.label, w) for r in rows]
    total = report.total or sum(r.count for r in rows)
    texts = [f"{w.integer(r.count)} ({w.percent(r.count / total)})" for r in rows]
    bars = [[_Bar(r.count, PALETTE["bar"], text)] for r, text in zip(rows, texts, strict=True)]
    tips = [f"{label}: {text}" for label, text in zip(labels, texts, strict=True)]
    _ranking(svg, labels, bars, tips, top=top, scale=_nice_ceiling(max(r.count for r in rows)))
    if hidden:
        svg.text(16, height - 14, w.t("reports.more_rows", n=hidden), fill=MUTED)
    return svg.render()


FUNNEL_KEYS = {
    "lead": "reports.stage_lead",
    "contacted": "reports.stage_contacted",
    "qualified": "reports.stage_qualified",
    "won": "reports.stage_won",
}


def funnel_chart(report: FunnelReport, w: Wording, *, ident: str = "funnel") -> str:
    """Leads -> contacted -> qualified -> won (of one campaign, when the query names it): each
    stage's count, its rate from the stage before and from the leads."""
    stages = report.stages
    top = 44
    height = top + max(1, len(stages)) * 28 + 20
    q = report.query
    first = stages[0].count if stages else 0
    last = stages[-1] if stages else None
    desc = w.t(
        "reports.funnel_desc",
        range=_range_text(q.start, q.end, w),
        leads=first,
        won=last.count if last else 0,
        rate=w.percent(last.rate_of_leads if last else None),
    )
    svg = _Svg(ident, 760, height, w.t("reports.chart_funnel"), desc, w.lang)
    if not first:
        svg.empty(w.t("reports.no_data"))
        return svg.render()
    labels = [w.t(FUNNEL_KEYS.get(s.key, s.key)) for s in stages]
    texts = [
        w.integer(s.count)
        if s.rate is None
        else w.t("reports.stage_of_before", n=s.count, rate=w.percent(s.rate))
        for s in stages
    ]
    bars = [
        [_Bar(s.count, PALETTE["answered"], text)] for s, text in zip(stages, texts, strict=True)
    ]
    tips = [
        f"{label}: {w.integer(s.count)} ({w.percent(s.rate_of_leads)})"
        for label, s in zip(labels, stages, strict=True)
    ]
    _ranking(svg, labels, bars, tips, top=top, scale=float(first))
    return svg.render()
