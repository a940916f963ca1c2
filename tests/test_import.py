"""CSV import and export on a real SQLite file: good rows, bad rows, strict mode, round trip."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.store.csv_io import export_csv, import_csv
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from gateway.store.validation import FieldError

MAPPING = {
    "Nombre": "first_name",
    "Apellidos": "last_name",
    "Empresa": "company",
    "Móvil": "mobile",
    "Fijo": "work_phone",
    "Correo": "email",
    "Estado": "status",
}
# semicolons, as Spanish spreadsheets write CSV; line 4 is bad, the row on line 5 spans lines
# 5-6, line 8 has a bad status, line 9 duplicates line 2 by number in another format
CSV = (
    "Nombre;Apellidos;Empresa;Móvil;Fijo;Correo;Estado\n"
    "Ana;López;Sierra Solar;612 34 56 78;;ana@sierra.example;new\n"
    "Luis;Gil;;;+34 911 00 11 22;luis@gil.example;contacted\n"
    "Bad;Phone;;call me;;;new\n"
    '"Multi\nline";Pérez;;633 11 22 33;;;won\n'
    "Eva;Ros;;;;eva@ros.example;qualified\n"
    "Max;Sanz;;699 00 00 00;;;sold\n"
    "Ana M.;López Ruiz;;+34612345678;;;new\n"
)


@pytest.fixture
async def db(tmp_path: Path):
    d = await Database.open(tmp_path / "crm.db", clock=lambda: 1_700_000_000.0)
    yield d
    await d.close()


async def test_bad_rows_are_reported_by_line_and_good_rows_kept(db: Database) -> None:
    report = await import_csv(db, CSV, "leads", MAPPING)
    assert [(e.line, e.field) for e in report.errors] == [(4, "Móvil"), (8, "Estado")]
    assert "letters" in report.errors[0].reason
    assert "sold" in report.errors[1].reason
    assert (report.rows, report.created, report.updated) == (7, 4, 1)
    assert report.summary() == (
        "7 rows: 4 leads created, 1 updated (same number or e-mail as an existing person),"
        " 2 bad rows"
    )
    leads = (await PersonRepository(db).list(kind=PersonType.LEAD, limit=100)).items
    assert sorted(p.first_name for p in leads) == ["Ana", "Eva", "Luis", "Multi\nline"]
    ana = next(p for p in leads if p.first_name == "Ana")
    assert (ana.source, ana.status, ana.company) == ("import", "new", "Sierra Solar")
    assert [(ph.raw, ph.type) for ph in ana.phones] == [("612 34 56 78", "mobile")]


async def test_strict_imports_nothing_when_a_row_is_bad(db: Database) -> None:
    report = await import_csv(db, CSV, "leads", MAPPING, strict=True)
    assert len(report.errors) == 2
    assert report.summary() == "7 rows: 2 bad rows; strict import, nothing imported"
    assert report.imported == 0
    assert (await PersonRepository(db).list()).items == []


async def test_strict_rolls_back_rows_that_fail_in_the_database(db: Database) -> None:
    # account 42 does not exist: only the database can tell, after earlier rows were written
    text = "name,phone,account_id\nAna,612345678,\nBo,699000000,42\n"
    report = await import_csv(db, text, "contacts", strict=True)
    assert [(e.line, e.field) for e in report.errors] == [(3, "account_id")]
    assert report.imported == 0
    assert (await PersonRepository(db).list()).items == []
    loose = await import_csv(db, text, "contacts", strict=False)
    assert (loose.created, len(loose.errors)) == (1, 1)


async def test_strict_with_good_rows_imports_all(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("\ufeffFirst name,Last name,Work phone,Email\nAna,Gil,911234567,a@g.example\n")
    report = await import_csv(db, path, "contacts", strict=True)  # default mapping, BOM
    assert (report.created, report.errors) == (1, [])
    person = await PersonRepository(db).find_by_number("+34911234567")
    assert person is not None and person.emails[0].email == "a@g.example"


async def test_default_region_applies_to_numbers_without_country_code(db: Database) -> None:
    report = await import_csv(db, "name,phone\nJo,(415) 555-0134\n", "leads", default_region="US")
    assert report.created == 1
    assert await PersonRepository(db).find_by_number("+14155550134") is not None


@pytest.mark.parametrize(
    ("text", "mapping", "field"),
    [
        ("a,b\n1,2\n", {"a": "first_name", "zzz": "last_name"}, "mapping.zzz"),
        ("a,b\n1,2\n", {"a": "password"}, "mapping.a"),
        ("", None, "csv"),
        ("x,y\n1,2\n", None, "mapping"),
    ],
)
async def test_wrong_mapping_is_refused_before_anything(
    db: Database, text: str, mapping: dict[str, str] | None, field: str
) -> None:
    with pytest.raises(FieldError) as e:
        await import_csv(db, text, "contacts", mapping)
    assert e.value.field == field


async def test_wrong_kind_is_refused(db: Database) -> None:
    with pytest.raises(FieldError, match="contacts or leads"):
        await import_csv(db, "name\nA\n", "accounts")


async def test_row_with_too_many_cells_is_reported(db: Database) -> None:
    report = await import_csv(db, "name,phone\nAna,612345678,extra\nBo,699000000\n", "contacts")
    assert [(e.line, e.reason) for e in report.errors] == [(2, "more cells than header columns")]
    assert report.created == 1


async def test_export_round_trips_through_import(db: Database, tmp_path: Path) -> None:
    await import_csv(db, CSV, "leads", MAPPING)
    out = io.StringIO()
    assert await export_csv(db, "leads", out) == 4
    text = out.getvalue()
    assert text.splitlines()[0].startswith("id,kind,first_name,last_name")
    assert "612 34 56 78" in text
    again = await import_csv(db, text, "leads")
    assert (again.created, again.updated, again.errors) == (0, 4, [])
    path = tmp_path / "out.csv"
    assert await export_csv(db, "contacts", path) == 0
    assert path.read_text().startswith("id,kind")


async def test_export_neutralizes_spreadsheet_formulas(db: Database) -> None:
    await PersonRepository(db).create(
        PersonType.CONTACT, {"name": '=HYPERLINK("http://x")', "phone": "+34 911 23 45 67"}
    )
    out = io.StringIO()
    await export_csv(db, "contacts", out)
    row = out.getvalue().splitlines()[1]
    assert "'=HYPERLINK" in row
    assert ",'+34 911 23 45 67," in row  # quoted like any cell starting with +; import unquotes


async def test_import_dedupes_against_the_store_and_earlier_rows(db: Database) -> None:
    people = PersonRepository(db)
    known = await people.create(PersonType.CONTACT, {"name": "Old Timer", "phone": "699000000"})
    text = (
        "name,phone,email\n"
        "Ana Uno,612000001,ana@x.example\n"
        "Ana Dos,612000002,ANA@x.example\n"  # same e-mail as line 2: folded into Ana Uno
        "New Name,+34 699 000 000,old@x.example\n"  # the stored person's number
        "Bea,612000003,\n"
        "Bea Again,612000003,bea@x.example\n"  # same number as line 5
    )
    report = await import_csv(db, text, "contacts")
    assert (report.created, report.updated, report.errors) == (2, 3, [])
    ana = await people.find_by_number("612000002")
    assert ana is not None and ana.display_name == "Ana Uno"
    assert sorted(p.e164 for p in ana.phones) == ["+34612000001", "+34612000002"]
    old = await people.find_by_number("699000000")
    assert old is not None and old.id == known.person.id
    assert [e.email for e in old.emails] == ["old@x.example"]
    bea = await people.find_by_number("612000003")
    assert bea is not None and [e.email for e in bea.emails] == ["bea@x.example"]
    assert len((await people.list(limit=100)).items) == 3
