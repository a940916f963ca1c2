"""Reports as CSV and XLSX (gateway/reports/export.py) and as files over HTTP
(gateway/reports/routes.py): the XLSX is read back with openpyxl (numbers are numbers, headers
in the reader's language, hostile names are text, never formulas), the CSV keeps the API's
field names and plain numbers, and only supervisors and admins get them."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import openpyxl
import pytest

from gateway.reports.export import table, to_csv, to_xlsx
from gateway.reports.locale import wording
from gateway.store.calllog import CallLog
from tests.test_panel_support import PanelWorld, open_world
from tests.test_reports_charts import AGENTS, DISPOSITIONS, FUNNEL, HEAT, HOSTILE, SUMMARY

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _book(data: bytes) -> Any:
    return openpyxl.load_workbook(io.BytesIO(data))


def test_xlsx_reads_back_with_numbers_formats_and_spanish_headers() -> None:
    w = wording("es")
    data = to_xlsx([table("calls", msgspec.to_builtins(SUMMARY), w)], w)
    book = _book(data)
    assert book.sheetnames == ["Llamadas", "Consulta"]
    ws = book["Llamadas"]
    headers = [c.value for c in ws[1]]
    assert headers[:5] == ["Clave", "Grupo", "Recibidas", "Atendidas", "Perdidas"]
    col = {h: i for i, h in enumerate(headers)}
    first = [c for c in ws[2]]
    assert first[col["Grupo"]].value == "30 nov"
    assert first[col["Recibidas"]].value == 1234 and first[col["Recibidas"]].data_type == "n"
    rate = first[col["Tasa de respuesta"]]
    assert rate.value == pytest.approx(1000 / 1234) and rate.number_format == "0.0%"
    assert (
        ws.freeze_panes == "A2"
        and ws.auto_filter.ref == f"A1:{ws.cell(1, len(headers)).column_letter}5"
    )
    total = [c.value for c in ws[6]]  # four days, then the totals row
    assert total[col["Grupo"]] == "Total" and total[col["Recibidas"]] == 1354
    assert ws[6][0].font.b
    about = {r[0].value: r[1].value for r in book["Consulta"].iter_rows(min_row=2) if r[0].value}
    assert about["Desde"] == "lunes, 30 nov 2026" and about["Zona horaria"] == "Europe/Madrid"


def test_xlsx_in_english_and_several_sheets() -> None:
    w = wording("en")
    tables = [
        table("agents", msgspec.to_builtins(AGENTS), w),
        table("heatmap", msgspec.to_builtins(HEAT), w),
        table("dispositions", msgspec.to_builtins(DISPOSITIONS), w),
        table("funnel", msgspec.to_builtins(FUNNEL), w),
    ]
    book = _book(to_xlsx(tables, w))
    assert book.sheetnames == ["Agents", "Missed by hour", "Dispositions", "Funnel", "Query"]
    heat = book["Missed by hour"]
    assert [c.value for c in heat[1]] == ["Weekday", "Hour", "Missed", "Offered"]
    assert [c.value for c in heat[2]] == ["Monday", 0, 0, 20]
    assert heat.max_row == 1 + 7 * 24
    disp = book["Dispositions"]
    assert [c.value for c in disp[2]] == ["interested", "Interested", 30]
    assert [c.value for c in disp[3]][1] == "No disposition"
    funnel = book["Funnel"]
    assert [c.value for c in funnel[1]] == ["Key", "Count", "Rate", "Of the leads"]
    assert [c.value for c in funnel[5]] == ["Won", 45, 0.15, 0.0225]


def test_hostile_names_stay_text_in_xlsx_and_csv() -> None:
    w = wording("en")
    doc = msgspec.to_builtins(AGENTS)
    doc["rows"][0]["label"] = '=HYPERLINK("http://evil.example","x")'
    ws = _book(to_xlsx([table("agents", doc, w)], w))["Agents"]
    cell = ws.cell(2, 2)
    assert cell.value == '=HYPERLINK("http://evil.example","x")' and cell.data_type == "s"
    assert ws.cell(3, 2).value == HOSTILE.replace("\x01", "")  # XML cannot hold \x01
    rows = list(
        csv.reader(io.StringIO(to_csv(table("agents", doc, w, readable=False)).decode("utf-8-sig")))
    )
    assert rows[1][1] == '\'=HYPERLINK("http://evil.example","x")'  # OWASP: quoted


def test_csv_keeps_field_names_fractions_and_seconds() -> None:
    w = wording("es")  # the reader's language does not change the CSV
    data = to_csv(table("calls", msgspec.to_builtins(SUMMARY), w, readable=False))
    assert data.startswith("\ufeff".encode())  # spreadsheets then read it as UTF-8
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0]["key"] == "2026-11-30" and rows[0]["offered"] == "1234"
    assert rows[0]["answer_rate"] == "0.8104"
    assert rows[2]["answer_rate"] == ""  # no calls: no rate
    assert rows[-1]["label"] == "Total" and rows[-1]["offered"] == "1354"


# -- over HTTP -----------------------------------------------------------------------------

DAY = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()  # 11:00 in Madrid


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[PanelWorld]:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    log = CallLog(w.gw.db)  # type: ignore[arg-type]
    for n, (queue, by) in enumerate([("sales", "101"), ("sales", ""), ("support", "102")]):
        await log.save({
            "id": f"lab:{n}", "pbx": "lab", "linkedid": str(n), "direction": "inbound",
            "caller": "+34911234567", "did": "+34910000000", "queue": queue,
            "agents_rang": ["101", "102"], "answered_by": by,
            "outcome": "answered" if by else "abandoned",
            "started_at": DAY + n * 60, "answered_at": DAY + n * 60 + 5 if by else None,
            "ended_at": DAY + n * 60 + 50, "talk_seconds": 45.0 if by else 0.0,
        })  # fmt: skip
    yield w
    await gen.aclose()


async def test_a_supervisor_downloads_the_calls_as_xlsx_csv_and_svg(world: PanelWorld) -> None:
    s = await world.sign_in("sofia")
    q = "start=2026-11-30&end=2026-11-30&group_by=queue"
    async with s.get(world.url(f"/api/v1/reports/calls.xlsx?{q}&lang=es")) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == XLSX
        assert 'filename="calls-2026-11-30-2026-11-30.xlsx"' in r.headers["Content-Disposition"]
        ws = _book(await r.read())["Llamadas"]
    headers = [c.value for c in ws[1]]
    rows = {row[headers.index("Grupo")]: row for row in ws.iter_rows(min_row=2, values_only=True)}
    assert rows["sales"][headers.index("Recibidas")] == 2
    assert rows["sales"][headers.index("Atendidas")] == 1
    assert rows["Total"][headers.index("Recibidas")] == 3
    async with s.get(world.url(f"/api/v1/reports/calls.csv?{q}")) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
        text = (await r.read()).decode("utf-8-sig")
    assert text.splitlines()[0].startswith("key,label,offered,answered")
    async with s.get(
        world.url(f"/api/v1/reports/calls.svg?{q}"), headers={"Accept-Language": "es-ES,es;q=0.9"}
    ) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("image/svg+xml")
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        svg = await r.text()
    assert "Llamadas y tasa de respuesta" in svg and "3 llamadas recibidas" in svg


async def test_files_refuse_agents_unknown_reports_and_bad_ranges(world: PanelWorld) -> None:
    agent = await world.sign_in("ana")
    async with agent.get(
        world.url("/api/v1/reports/calls.xlsx?start=2026-11-30&end=2026-11-30")
    ) as r:
        assert r.status == 403
    s = await world.sign_in("sofia")
    async with s.get(world.url("/api/v1/reports/nothing.csv?start=2026-11-30&end=2026-11-30")) as r:
        assert r.status == 404 and (await r.json())["error"]["id"] == "unknown_report"
    async with s.get(
        world.url("/api/v1/reports/pipeline.svg?start=2026-11-30&end=2026-11-30")
    ) as r:
        assert r.status == 404 and (await r.json())["error"]["id"] == "no_chart"
    async with s.get(world.url("/api/v1/reports/calls.csv?start=2026-12-01&end=2026-11-30")) as r:
        assert r.status == 400 and (await r.json())["error"]["details"]["field"] == "end"
    async with s.get(
        world.url("/api/v1/reports/calls.csv?start=2026-11-30&end=2026-11-30&lang=fr")
    ) as r:
        assert r.status == 400 and (await r.json())["error"]["details"]["field"] == "lang"
