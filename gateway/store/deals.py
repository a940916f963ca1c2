"""Deals: what a converted lead opens in the sales pipeline (table ``deals``, migration 0010).

A deal belongs to a person (B2C), or to an account and the contact who spoke for it (B2B).
``stage`` is one of :data:`STAGES`, the pipeline from first qualification to won or lost.
"""

from __future__ import annotations

from typing import Annotated, Any

import aiosqlite
import msgspec

STAGES = ("qualification", "proposal", "negotiation", "won", "lost")

Title = Annotated[str, msgspec.Meta(max_length=200)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Stage = Annotated[str, msgspec.Meta(pattern=r"^(qualification|proposal|negotiation|won|lost)$")]


class DealIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The body's ``deal``: ``{"title", "amount", "currency", "stage"}``, all optional."""

    title: Title = ""
    amount: Amount | None = None
    currency: Currency = "EUR"
    stage: Stage = "qualification"


_COLUMNS = (
    "id, person_id, account_id, title, stage, amount, currency, owner, created_by,"
    " created_at, updated_at"
)


def _row(r: Any) -> dict[str, Any]:
    keys = [k.strip() for k in _COLUMNS.split(",")]
    return dict(zip(keys, tuple(r), strict=True))


async def create_deal(
    conn: aiosqlite.Connection,
    deal: DealIn,
    person_id: int | None,
    account_id: int | None,
    by: str | None,
    at: float,
) -> dict[str, Any]:
    """Insert a deal inside the caller's transaction; returns it as JSON."""
    cur = await conn.execute(
        "INSERT INTO deals (person_id, account_id, title, stage, amount, currency, owner,"
        " created_by, created_at, updated_at) VALUES (?,?,?,?,?,?,"
        " (SELECT owner FROM people WHERE id = ?),?,?,?)",
        (
            person_id,
            account_id,
            deal.title.strip(),
            deal.stage,
            deal.amount,
            deal.currency,
            person_id,
            by,
            at,
            at,
        ),
    )
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM deals WHERE id = ?", (cur.lastrowid,)
    )
    return _row(next(iter(rows)))


async def deals_of(conn: aiosqlite.Connection, person_id: int) -> list[dict[str, Any]]:
    """A person's deals, and their account's, newest first."""
    rows = await conn.execute_fetchall(
        f"SELECT {_COLUMNS} FROM deals WHERE person_id = ? OR account_id ="
        " (SELECT account_id FROM people WHERE id = ?) ORDER BY created_at DESC, id DESC",
        (person_id, person_id),
    )
    return [_row(r) for r in rows]
