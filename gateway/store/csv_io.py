"""CSV import and export of contacts and leads.

An import runs in one transaction. Each row is validated with the API's rules and written
under the dedupe rule (``repositories.py``); a bad row is reported with its line number in the
file (the header is line 1) and the reason. ``strict=True`` imports nothing when any row is bad;
otherwise the good rows are kept. The mapping says which CSV column feeds which field; without
one, columns named like fields (``first_name``, ``Work phone``...) are used as they are.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import PersonRepository
from gateway.store.validation import FieldError, PersonIn, person_input

MAX_ERRORS_REPORTED = 1000

# target field -> how it lands in the person input; phone/e-mail columns carry their type
_PHONE_FIELDS = {
    "phone": "work",
    "work_phone": "work",
    "mobile": "mobile",
    "mobile_phone": "mobile",
    "home_phone": "home",
}
_EMAIL_FIELDS = {"email": "work", "work_email": "work", "home_email": "home"}
# a number's own do-not-call flag travels in the column beside it (``work_phone_do_not_call``)
_PHONE_DNC_FIELDS = {f"{f}_do_not_call": f for f in ("work_phone", "mobile_phone", "home_phone")}
_PLAIN_FIELDS = (
    "first_name",
    "last_name",
    "name",
    "company",
    "title",
    "owner",
    "country",
    "account_id",
    "status",
    "source",
    "lost_reason",
    "score",
    "do_not_call",
    "email_opt_out",
)
IMPORT_FIELDS = frozenset((*_PLAIN_FIELDS, *_PHONE_FIELDS, *_EMAIL_FIELDS, *_PHONE_DNC_FIELDS))
EXPORT_COLUMNS = (
    "id",
    "kind",
    "first_name",
    "last_name",
    "company",
    "account_id",
    "title",
    "owner",
    "status",
    "source",
    "lost_reason",
    "score",
    "country",
    "do_not_call",
    "work_phone",
    "mobile_phone",
    "home_phone",
    "email",
    *_PHONE_DNC_FIELDS,
)


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # line in the file where the row starts; 1 is the header
    field: str | None
    reason: str


@dataclass(slots=True)
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0  # rows folded into an existing person by the dedupe rule
    errors: list[RowError] = field(default_factory=list)
    strict: bool = False

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def summary(self) -> str:
        """One line for the CLI, e.g. ``12 rows: 10 leads created, 1 updated, 1 bad row``."""
        bad = len(self.errors)
        bad_text = f"{bad} bad row{'s' if bad != 1 else ''}"
        if self.strict and bad:
            return f"{self.rows} rows: {bad_text}; strict import, nothing imported"
        return (
            f"{self.rows} rows: {self.created} {self.kind} created, {self.updated} updated"
            f" (same number or e-mail as an existing person), {bad_text}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "imported": self.imported,
            "strict": self.strict,
            "errors": [
                {"line": e.line, "field": e.field, "reason": e.reason}
                for e in self.errors[:MAX_ERRORS_REPORTED]
            ],
            "error_count": len(self.errors),
        }


def parse_kind(kind: str) -> PersonType:
    k = str(kind).strip().lower().rstrip("s")
    try:
        return PersonType(k)
    except ValueError:
        raise FieldError("kind", f"expected contacts or leads, got {kind!r}"[:200]) from None


def _field_name(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


def default_mapping(header: list[str]) -> dict[str, str]:
    """Columns whose name (case and spaces aside) is an import field map to it."""
    return {col: _field_name(col) for col in header if _field_name(col) in IMPORT_FIELDS}


def _read_text(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        return path_or_text.read_text(encoding="utf-8-sig")
    if "\n" not in path_or_text and len(path_or_text) < 4096 and Path(path_or_text).is_file():
        return Path(path_or_text).read_text(encoding="utf-8-sig")
    return path_or_text.removeprefix("\ufeff")


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _row_input(
    row: Mapping[str, str], mapping: Mapping[str, str], kind: PersonType, region: str
) -> PersonIn:
    data: dict[str, Any] = {}
    phones: list[dict[str, str]] = []
    emails: list[dict[str, str]] = []
    dnc_of: dict[str, str] = {}  # phone field -> its do-not-call cell
    by_field: dict[str, dict[str, str]] = {}
    for column, target in mapping.items():
        value = unquote_cell((row.get(column) or "").strip())
        if not value:
            continue
        if target in _PHONE_DNC_FIELDS:
            dnc_of[_PHONE_DNC_FIELDS[target]] = value
        elif target in _PHONE_FIELDS:
            by_field[target] = {"number": value, "type": _PHONE_FIELDS[target]}
            phones.append(by_field[target])
        elif target in _EMAIL_FIELDS:
            emails.append({"email": value, "type": _EMAIL_FIELDS[target]})
        else:
            data[target] = value
    for target, flag in dnc_of.items():
        if target in by_field:
            by_field[target]["do_not_call"] = flag
    if phones:
        data["phones"] = phones
    if emails:
        data["emails"] = emails
    try:
        return person_input(data, kind, partial=False, default_region=region)
    except FieldError as e:
        # name the CSV column the user knows, not our internal field path
        culprit = next((c for c, t in mapping.items() if e.field.startswith(t)), None)
        if e.field.startswith("phones["):
            idx = int(e.field[7 : e.field.index("]")])
            culprit = [
                c for c, t in mapping.items() if t in _PHONE_FIELDS and row.get(c, "").strip()
            ][idx]
        elif e.field.startswith("emails["):
            idx = int(e.field[7 : e.field.index("]")])
            culprit = [
                c for c, t in mapping.items() if t in _EMAIL_FIELDS and row.get(c, "").strip()
            ][idx]
        raise FieldError(culprit or e.field, e.reason) from None


async def import_csv(
    db: Database,
    path_or_text: str | Path,
    kind: str | PersonType,
    mapping: Mapping[str, str] | None = None,
    strict: bool = False,
    default_region: str = "ES",
) -> ImportReport:
    """Import contacts or leads; a wrong mapping raises FieldError before anything is read."""
    ptype = kind if isinstance(kind, PersonType) else parse_kind(kind)
    report = ImportReport(kind=ptype.value + "s", strict=strict)
    text = _read_text(path_or_text)
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=_dialect(text[:8192]))
    header = [h for h in (reader.fieldnames or []) if h is not None]
    if not header:
        raise FieldError("csv", "empty file: expected a header line with column names")
    if mapping is None:
        mapping = default_mapping(header)
    for column, target in mapping.items():
        if column not in header:
            raise FieldError(f"mapping.{column}", f"no column {column!r} in the file header")
        if target not in IMPORT_FIELDS:
            raise FieldError(
                f"mapping.{column}",
                f"unknown field {target!r}; expected one of {', '.join(sorted(IMPORT_FIELDS))}",
            )
    if not mapping:
        raise FieldError("mapping", "no column maps to a field; give a mapping")
    valid: list[tuple[int, PersonIn]] = []
    line = 2
    for row in reader:
        start, line = line, reader.line_num + 1
        report.rows += 1
        if None in row:
            report.errors.append(RowError(start, None, "more cells than header columns"))
            continue
        try:
            valid.append((start, _row_input(row, mapping, ptype, default_region)))
        except FieldError as e:
            report.errors.append(RowError(start, e.field, e.reason))
    if strict and report.errors:
        return report
    people = PersonRepository(db, default_region)
    try:
        async with db.transaction() as conn:
            outcomes = await people.bulk_create(
                conn, ptype, [inp for _, inp in valid], source="import"
            )
            for (start, _), outcome in zip(valid, outcomes, strict=True):
                if isinstance(outcome, FieldError):
                    report.errors.append(RowError(start, outcome.field, outcome.reason))
                elif outcome == "created":
                    report.created += 1
                else:
                    report.updated += 1
            if strict and report.errors:
                raise _StrictAbort
    except _StrictAbort:
        report.created = report.updated = 0
    report.errors.sort(key=lambda e: e.line)
    return report


class _StrictAbort(Exception):
    """Raised inside the import transaction to roll it back in strict mode."""


# OWASP's CSV-injection rule: a cell starting with one of these is a formula to a spreadsheet
# (the fullwidth forms too: some spreadsheets fold them to ASCII). Such a cell is written with a
# leading quote; a cell that already starts with quotes before one gets one more, so that
# ``unquote_cell`` can take exactly one off on import and every value (``+34 911 234 567``,
# ``-x``, ``'=x``) comes back as it was.
_TRIGGERS = "=+-@\t\r\uff1d\uff0b\uff0d\uff20"
_FORMULA = re.compile(f"^'*[{re.escape(_TRIGGERS)}]")


def _cell(value: object) -> str:
    """Text for a CSV cell; a cell that a spreadsheet would run as a formula gets a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    s = str(value)
    return "'" + s if _FORMULA.match(s) else s


def unquote_cell(value: str) -> str:
    """A cell as exported (``'+34 911 234 567``) back to its value (``+34 911 234 567``)."""
    return value[1:] if value.startswith("'") and _FORMULA.match(value) else value


async def export_csv(db: Database, kind: str | PersonType, out: TextIO | str | Path) -> int:
    """Write every contact or lead as CSV (re-importable with the default mapping); rows count."""
    ptype = kind if isinstance(kind, PersonType) else parse_kind(kind)
    if isinstance(out, str | Path):
        # the CLI's `centralita export` calls this with a path, outside any server loop
        with open(out, "w", encoding="utf-8", newline="") as f:  # noqa: ASYNC230
            return await export_csv(db, ptype, f)
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    people = PersonRepository(db)
    count, last_id = 0, 0
    while True:
        rows = list(
            await db.conn.execute_fetchall(
                "SELECT * FROM people WHERE kind = ? AND id > ? ORDER BY id LIMIT 1000",
                (ptype.value, last_id),
            )
        )
        if not rows:
            return count
        for p in await people.hydrate(db.conn, rows):
            by_type: dict[str, Any] = {}
            for ph in p.phones:
                by_type.setdefault(ph.type, ph)
            d = p.to_dict()
            for kind_ in ("work", "mobile", "home"):
                first = by_type.get(kind_)
                d[f"{kind_}_phone"] = first.raw if first else None
                flagged = first is not None and first.do_not_call
                d[f"{kind_}_phone_do_not_call"] = True if flagged else None
            d["email"] = p.emails[0].email if p.emails else None
            writer.writerow([_cell(d.get(c)) for c in EXPORT_COLUMNS])
            count += 1
        last_id = rows[-1]["id"]
