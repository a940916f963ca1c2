"""The reports' SVG charts (gateway/reports/charts.py): well-formed standalone SVG, named for a
screen reader, with the words and numbers of the reader's language, marks that meet 3:1
contrast, and hostile names shown as text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date

import pytest

from gateway.reports import charts
from gateway.reports.locale import wording
from gateway.reports.model import (
    CountRow,
    DispositionReport,
    FunnelReport,
    FunnelStage,
    HeatCell,
    HeatmapReport,
    ReportQuery,
    SummaryReport,
    SummaryRow,
)

NS = {"svg": "http://www.w3.org/2000/svg"}
Q = ReportQuery(start=date(2026, 11, 30), end=date(2026, 12, 6))
HOSTILE = '<script>alert("x")</script> & Ana \x01'


def _row(key: str, offered: int, answered: int, label: str = "", **kw: object) -> SummaryRow:
    rate = answered / offered if offered else None
    return SummaryRow(key=key, label=label or key, offered=offered, answered=answered,
                      missed=offered - answered, answer_rate=rate, **kw)  # type: ignore[arg-type]  # fmt: skip


SUMMARY = SummaryReport(
    query=Q,
    timezone="Europe/Madrid",
    rows=[
        _row("2026-11-30", 1234, 1000),
        _row("2026-12-01", 80, 72),
        _row("2026-12-02", 0, 0),  # no calls: no rate, the line breaks
        _row("2026-12-03", 40, 20),
    ],
    totals=_row("", 1354, 1092),
)
AGENTS = SummaryReport(
    query=ReportQuery(start=Q.start, end=Q.end, group_by="agent"),
    timezone="Europe/Madrid",
    rows=[
        _row("101", 500, 480, "Lucía Martín", ring_no_answer=3, aht=195.0),
        _row("102", 300, 250, HOSTILE, ring_no_answer=12, aht=3725.0),
    ],
    totals=_row("", 800, 730),
)
HEAT = HeatmapReport(
    query=Q,
    timezone="Europe/Madrid",
    cells=[
        HeatCell(
            weekday=d, hour=h, missed=(7 if (d, h) == (0, 10) else 1 if h == 9 else 0), offered=20
        )
        for d in range(7)
        for h in range(24)
    ],
)
DISPOSITIONS = DispositionReport(
    query=Q,
    rows=[
        CountRow(key="interested", label="Interested", count=30),
        CountRow(key="", label="", count=10),
        CountRow(key="budget_sent", label=HOSTILE, count=5),
    ],
    total=45,
)
FUNNEL = FunnelReport(
    query=Q,
    stages=[
        FunnelStage(key="lead", count=2000, rate=None, rate_of_leads=1.0),
        FunnelStage(key="contacted", count=1500, rate=0.75, rate_of_leads=0.75),
        FunnelStage(key="qualified", count=300, rate=0.2, rate_of_leads=0.15),
        FunnelStage(key="won", count=45, rate=0.15, rate_of_leads=0.0225),
    ],
)


def _all(lang: str) -> dict[str, str]:
    w = wording(lang)
    return {
        "volume": charts.volume_chart(SUMMARY, w),
        "heatmap": charts.missed_heatmap_chart(HEAT, w),
        "agents": charts.agents_chart(AGENTS, w),
        "dispositions": charts.dispositions_chart(DISPOSITIONS, w),
        "funnel": charts.funnel_chart(FUNNEL, w),
    }


def _texts(root: ET.Element) -> list[str]:
    """What each <text> shows (its own text, without the <title> tooltip inside it)."""
    return [
        (t.text or "") + "".join(c.tail or "" for c in t) for t in root.iter(f"{{{NS['svg']}}}text")
    ]


def _titles(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{NS['svg']}}}title")]


@pytest.mark.parametrize("lang", ["es", "en"])
def test_every_chart_is_well_formed_svg_named_for_screen_readers(lang: str) -> None:
    for name, svg in _all(lang).items():
        root = ET.fromstring(svg)  # raises on anything not well-formed
        assert root.tag == f"{{{NS['svg']}}}svg", name
        assert root.get("role") == "img" and root.get("lang") == lang
        title_id, desc_id = root.get("aria-labelledby", "").split()
        assert root.find(f"svg:title[@id='{title_id}']", NS) is not None, name
        desc = root.find(f"svg:desc[@id='{desc_id}']", NS)
        assert desc is not None and desc.text, name
        assert root.get("viewBox", "").startswith("0 0 ")
        # standalone and CSP-proof: no script, no stylesheet, no style attribute, nothing fetched
        assert "<script" not in svg and "<style" not in svg and " style=" not in svg, name
        assert "href" not in svg, name


def test_volume_chart_speaks_spanish_with_spanish_numbers_and_dates() -> None:
    svg = charts.volume_chart(SUMMARY, wording("es"))
    root = ET.fromstring(svg)
    texts = _texts(root)
    assert "Llamadas y tasa de respuesta" in texts
    assert {"Atendidas", "Perdidas", "Tasa de respuesta"} <= set(texts)  # the legend
    assert "30 nov" in texts and "1 dic" in texts  # the x axis
    assert "100\u00a0%" in texts  # the rate axis: CLDR puts a no-break space before %
    desc = root.find("svg:desc", NS)
    assert desc is not None and desc.text is not None
    # 1354 stays ungrouped in Spanish (four digits), 80,6 % has a decimal comma
    assert "1354 llamadas recibidas, 1092 atendidas, 262 perdidas" in desc.text
    assert "80,6\u00a0%" in desc.text
    tips = _titles(root)
    assert any(t.startswith("lunes, 30 nov 2026: 1234 recibidas, 1000 atendidas") for t in tips)


def test_volume_chart_speaks_english_with_english_numbers_and_dates() -> None:
    svg = charts.volume_chart(SUMMARY, wording("en"))
    root = ET.fromstring(svg)
    texts = _texts(root)
    assert "Calls and answer rate" in texts
    assert "Nov 30" in texts and "Dec 1" in texts
    assert "100%" in texts
    desc = root.find("svg:desc", NS)
    assert desc is not None and desc.text is not None
    assert "1,354 calls offered, 1,092 answered, 262 missed; answer rate 80.6%" in desc.text
    assert any(t.startswith("Monday, Nov 30, 2026: 1,234 offered") for t in _titles(root))


def test_a_day_without_calls_breaks_the_rate_line_instead_of_dropping_to_zero() -> None:
    root = ET.fromstring(charts.volume_chart(SUMMARY, wording("en")))
    lines = root.findall("svg:polyline", NS)
    dots = [c for c in root.findall("svg:circle", NS) if c.find("svg:title", NS) is not None]
    assert len(dots) == 3  # three days had calls
    assert len(lines) == 1 and len(lines[0].get("points", "").split()) == 2  # 30 nov -> 1 dic


def test_heatmap_has_a_cell_per_weekday_and_hour_with_its_number() -> None:
    root = ET.fromstring(charts.missed_heatmap_chart(HEAT, wording("es")))
    cells = [r for r in root.findall("svg:rect", NS) if r.find("svg:title", NS) is not None]
    assert len(cells) == 7 * 24
    tips = _titles(root)
    assert "lunes 10:00: 7 perdidas de 20" in tips
    assert "domingo 23:00: 0 perdidas de 20" in tips
    texts = _texts(root)
    assert {"lun", "mar", "mié", "jue", "vie", "sáb", "dom"} <= set(texts)
    desc = root.find("svg:desc", NS)
    assert desc is not None and "Más perdidas: lunes a las 10:00 (7)." in (desc.text or "")
    # the shade is not the only cue: every cell with misses prints its number, readable on it
    for rect in cells:
        fill = rect.get("fill", "")
        assert fill in charts.HEAT


def test_heatmap_numbers_are_readable_on_their_cells() -> None:
    svg = charts.missed_heatmap_chart(HEAT, wording("en"))
    for fill, ink in re.findall(
        r'<rect [^>]*fill="(#[0-9a-f]{6})"[^>]*><title>[^<]*</title></rect><text [^>]*fill="(#[0-9a-f]{6})"',
        svg,
    ):
        assert charts.contrast(fill, ink) >= 4.5, (fill, ink)


def test_mark_colours_have_3_to_1_contrast_against_the_background() -> None:
    for name, colour in charts.PALETTE.items():
        assert charts.contrast(colour, charts.BACKGROUND) >= 3.0, name
    assert charts.contrast(charts.INK, charts.BACKGROUND) >= 4.5
    assert charts.contrast(charts.MUTED, charts.BACKGROUND) >= 4.5


def test_hostile_names_are_text_and_control_characters_are_dropped() -> None:
    for svg in (
        charts.agents_chart(AGENTS, wording("en")),
        charts.dispositions_chart(DISPOSITIONS, wording("en")),
    ):
        root = ET.fromstring(svg)  # \x01 would make it unparseable
        assert root.find(".//svg:script", NS) is None
        assert any('<script>alert("x")</script> & Ana' in t for t in _titles(root))


def test_agent_chart_shows_answered_rings_not_answered_and_handle_time() -> None:
    root = ET.fromstring(charts.agents_chart(AGENTS, wording("es")))
    texts = _texts(root)
    assert "Lucía Martín" in texts
    assert "480 · tiempo medio 3 min 15 s" in texts
    assert "250 · tiempo medio 1 h 02 min" in texts
    assert "12" in texts


def test_dispositions_use_the_catalog_names_and_shares() -> None:
    es = _texts(ET.fromstring(charts.dispositions_chart(DISPOSITIONS, wording("es"))))
    assert "Interesado" in es and "Sin resultado" in es
    assert "30 (66,7\u00a0%)" in es
    en = _texts(ET.fromstring(charts.dispositions_chart(DISPOSITIONS, wording("en"))))
    assert "Interested" in en and "No disposition" in en and "30 (66.7%)" in en


def test_funnel_shows_each_stage_with_its_rate_from_the_stage_before() -> None:
    es = _texts(ET.fromstring(charts.funnel_chart(FUNNEL, wording("es"))))
    assert [t for t in es if t in {"Leads", "Contactados", "Cualificados", "Ganados"}] == [
        "Leads",
        "Contactados",
        "Cualificados",
        "Ganados",
    ]
    assert "2000" in es and "1500 (75\u00a0% de la etapa anterior)" in es
    en = _texts(ET.fromstring(charts.funnel_chart(FUNNEL, wording("en"))))
    assert "2,000" in en and "45 (15% of the stage before)" in en


@pytest.mark.parametrize(
    "lang, text", [("es", "No hay datos en este periodo"), ("en", "No data in this period")]
)
def test_an_empty_range_says_so(lang: str, text: str) -> None:
    w = wording(lang)
    empty = SummaryReport(query=Q, timezone="UTC", rows=[], totals=_row("", 0, 0))
    for svg in (
        charts.volume_chart(empty, w),
        charts.agents_chart(empty, w),
        charts.dispositions_chart(DispositionReport(query=Q, rows=[], total=0), w),
        charts.funnel_chart(FunnelReport(query=Q, stages=[]), w),
    ):
        assert text in _texts(ET.fromstring(svg))


def test_locale_number_formats() -> None:
    es, en = wording("es-ES"), wording("en-GB")
    assert (es.integer(1234), es.integer(12345), es.integer(1234567)) == (
        "1234",
        "12.345",
        "1.234.567",
    )
    assert (en.integer(1234), en.integer(12345)) == ("1,234", "12,345")
    assert es.percent(0.853) == "85,3\u00a0%" and en.percent(0.853) == "85.3%"
    assert es.percent(0.5) == "50\u00a0%" and en.percent(None) == "\u2013"
    assert es.seconds(75) == "1 min 15 s" and en.seconds(9420) == "2 h 37 min"
    assert wording("fr").lang == "en"
