"""Deals: what a converted lead opens in the sales pipeline (table ``deals``, migration 0010).

A deal belongs to a person (B2C), or to an account and the contact who spoke for it (B2B).
``stage`` is one of :data:`STAGES`, the pipeline from first qualification to won or lost.
Deals kept in another system (a CRM's opportunities, ``gateway/directory/deals.py``) are
written with :func:`write_external` under their ``external_id``, so pulling one again updates
it and never doubles it. The API's deals (``POST /api/v1/deals`` and its CSV import,
``gateway/intel/api.py``) go through the same function: one upsert for every deal that is not
opened by a lead's conversion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
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


# -- deals another system keeps (a CRM pull) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalDeal:
    """A deal kept in another system (a CRM), written here under its ``external_id``; or a
    deal posted to the API, with the poster's id (``None``: it has none, each post is new).

    ``closed_at`` None on a won or lost deal: the time it was first seen closed here (a later
    pull that still has no date keeps that time, so recency does not move on every pass);
    ``created_at`` None: the time it was first seen. ``owner``: the agent it is assigned to
    (the caller gives the person's owner when the CRM names none)."""

    external_id: str | None
    person_id: int | None
    account_id: int | None
    title: str
    stage: str
    amount: float | None
    currency: str
    product: str = ""
    lost_reason: str = ""
    owner: str | None = None
    created_at: float | None = None
    closed_at: float | None = None


_EXTERNAL = (
    "id, person_id, account_id, title, stage, amount, currency, product, lost_reason, owner,"
    " created_at, closed_at"
)
Owners = tuple[int | None, int | None]  # (person_id, account_id) whose purchase a deal is


async def stored_external(
    conn: aiosqlite.Connection, external_ids: Iterable[str]
) -> dict[str, tuple[Any, ...]]:
    """The stored deals with these external ids, in one query: id -> row for
    :func:`write_external`."""
    rows = await conn.execute_fetchall(
        f"SELECT d.external_id, {', '.join('d.' + c.strip() for c in _EXTERNAL.split(','))}"
        " FROM json_each(?) j JOIN deals d ON d.external_id = j.value",
        (json.dumps(list(external_ids)),),
    )
    return {str(r[0]): tuple(r)[1:] for r in rows}


async def write_external(
    conn: aiosqlite.Connection,
    deal: ExternalDeal,
    *,
    by: str,
    now: float,
    old: tuple[Any, ...] | None,
    touch: bool = False,
) -> tuple[int, set[Owners]]:
    """Insert the deal, or update ``old`` (its stored row from :func:`stored_external`, None
    when there is none), inside the caller's transaction. Returns its id and whose purchases
    changed, before and after (a deal moved to someone else changes both: pass them to
    :func:`people_of`); nothing is written, and nobody returned, when the stored deal already
    says the same, unless ``touch`` (a post to the API is news even then: ``updated_at``
    moves)."""
    closed = deal.closed_at
    if deal.stage not in ("won", "lost"):
        closed = None
    elif closed is None:
        was_closed = old is not None and old[4] in ("won", "lost") and old[11] is not None
        closed = float(old[11]) if was_closed and old is not None else now
    created = deal.created_at
    if created is None:
        created = float(old[10]) if old is not None else min(now, closed or now)
    values = (
        deal.person_id,
        deal.account_id,
        deal.title.strip()[:200],
        deal.stage,
        deal.amount,
        deal.currency,
        deal.product.strip()[:200],
        deal.lost_reason.strip()[:200],
        deal.owner,
        created,
        closed,
    )
    after: Owners = (deal.person_id, deal.account_id)
    if old is None:
        cur = await conn.execute(
            "INSERT INTO deals (person_id, account_id, title, stage, amount, currency, product,"
            " lost_reason, owner, created_at, closed_at, created_by, updated_at, external_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (*values, by, now, deal.external_id),
        )
        return int(cur.lastrowid or 0), {after}
    deal_id = int(old[0])
    if tuple(old[1:]) == values and not touch:
        return deal_id, set()
    await conn.execute(
        "UPDATE deals SET person_id = ?, account_id = ?, title = ?, stage = ?, amount = ?,"
        " currency = ?, product = ?, lost_reason = ?, owner = ?, created_at = ?,"
        " closed_at = ?, updated_at = ? WHERE id = ?",
        (*values, now, deal_id),
    )
    return deal_id, {(old[1], old[2]), after}


async def people_of(conn: aiosqlite.Connection, owners: Iterable[Owners]) -> set[int]:
    """Whose purchases deals of these owners are: each person, and every person of each
    account (one query)."""
    people = {p for p, _ in owners if p is not None}
    accounts = sorted({a for _, a in owners if a is not None})
    if accounts:
        rows = await conn.execute_fetchall(
            "SELECT p.id FROM json_each(?) j"
            " JOIN people p ON p.account_id = CAST(j.value AS BIGINT)",
            (json.dumps(accounts),),
        )
        people |= {int(r[0]) for r in rows}
    return people


async def delete_deals(conn: aiosqlite.Connection, deal_ids: Iterable[int]) -> set[Owners]:
    """Delete these deals inside the caller's transaction; whose purchases they were."""
    ids = json.dumps(sorted(set(deal_ids)))
    rows = await conn.execute_fetchall(
        "SELECT person_id, account_id FROM deals"
        " WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        (ids,),
    )
    await conn.execute(
        "DELETE FROM deals WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))", (ids,)
    )
    return {(r[0], r[1]) for r in rows}
