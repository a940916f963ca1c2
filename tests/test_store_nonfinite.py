"""Nothing non-finite is ever stored: NaN and ±Infinity are refused by the store itself, with an
error naming the field, whichever way they come in (API, panel, CSV import, scoring inputs)."""

from __future__ import annotations

import json
import math

import pytest

from gateway.store.csv_io import import_csv
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import FollowUpRepository, PersonRepository
from gateway.store.scoring import ScoringSettings
from gateway.store.scoring_service import ScoringService
from gateway.store.validation import FieldError

NON_FINITE = [math.inf, -math.inf, math.nan, "1e999", "nan", "-Infinity"]


async def _lead(db: Database) -> int:
    created = await PersonRepository(db).create(
        PersonType.LEAD, {"name": "Eva", "phone": "+34 600 000 020"}
    )
    return created.person.id


@pytest.mark.parametrize("due", NON_FINITE)
async def test_a_follow_up_due_date_is_never_stored_non_finite(db: Database, due: object) -> None:
    pid = await _lead(db)
    with pytest.raises(FieldError) as info:
        await FollowUpRepository(db).add(pid, due, "call back")  # type: ignore[arg-type]
    assert info.value.field == "due_at"
    rows = await db.conn.execute_fetchall("SELECT count(*) FROM follow_ups")
    assert next(iter(rows))[0] == 0
    task = await FollowUpRepository(db).add(pid, 1_900_000_000, "call back")
    assert json.dumps({"due_at": task.due_at}, allow_nan=False)


async def test_a_far_future_or_negative_due_date_is_refused(db: Database) -> None:
    pid = await _lead(db)
    for due in (1e300, -1.0):
        with pytest.raises(FieldError, match="due_at"):
            await FollowUpRepository(db).add(pid, due, "call back")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
async def test_a_scoring_input_is_never_stored_non_finite(db: Database, value: float) -> None:
    pid = await _lead(db)
    service = ScoringService(db, ScoringSettings())
    with pytest.raises(FieldError) as info:
        await service.set_inputs(pid, {"proximity": value}, "ana")
    assert info.value.field == "proximity"
    with pytest.raises(FieldError, match=r"^at:"):
        await service.add_form_fill(pid, "web", at=value)
    rows = await db.conn.execute_fetchall(
        "SELECT (SELECT count(*) FROM score_inputs) + (SELECT count(*) FROM form_fills)"
    )
    assert next(iter(rows))[0] == 0


@pytest.mark.parametrize("cell", ["inf", "nan", "-Infinity", "1e999"])
async def test_a_csv_score_cell_that_is_not_finite_names_the_column(
    db: Database, cell: str
) -> None:
    report = await import_csv(db, f"name,phone,score\nEva,600000021,{cell}\n", "leads")
    assert [(e.line, e.field) for e in report.errors] == [(2, "score")]
    assert report.created == 0
