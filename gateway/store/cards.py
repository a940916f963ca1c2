"""The store's side of the caller lookup: E.164 number -> CallerCard, on the hot path.

SQLite: runs on the event loop through the synchronous read connection (see ``db.py`` for
why): two indexed queries, about 50 µs in all, cheaper than one hop through aiosqlite's thread.

PostgreSQL: one round trip on the lookup's own connection (``Database.lookup_conn``, whose
statements keep their plans): one statement returns the number's row with its timeline beside
it, a row per timeline item (a round trip costs more than the whole card's work on the server,
and the second trip doubled the p99). The card is built from the same rows on both engines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import msgspec

from gateway.access import note_condition
from gateway.intel.metrics import CARD_ROW
from gateway.lookup.card import (
    CallerCard,
    CallFacts,
    FollowUp,
    Insight,
    Interaction,
    PersonKind,
)
from gateway.store.db import Database, NumberListener

_decode = msgspec.json.Decoder().decode  # twice as fast as json.loads on the card's metrics
INTERACTIONS_ON_CARD = 5
FOLLOW_UPS_ON_CARD = 10


class StoreCardSource:
    """Finds the person (or failing that the account) a number belongs to."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def watch(self, listener: NumberListener) -> None:
        """Tell ``listener(e164)`` whenever the card of that number may have changed."""
        self.db.watch_numbers(listener)

    def find(self, e164: str) -> CallerCard | Awaitable[CallerCard | None] | None:
        """The card of ``e164``, or None. On SQLite the answer comes at once, through the
        synchronous reader on the loop; on PostgreSQL as an awaitable (one round trip)."""
        if self.db.engine != "sqlite":
            return self._find_async(e164)
        r = self.db.reader
        # one query for number + person + account; people before switchboards, then the oldest
        # (the dedupe rule's winner)
        hit = r.execute(_FIND, (e164,)).fetchall()
        if not hit:
            return None
        person_id = hit[0][0]
        rows = [] if person_id is None else r.execute(_TIMELINE, (person_id,) * 3).fetchall()
        return _card(e164, hit[0], rows)

    async def _find_async(self, e164: str) -> CallerCard | None:
        rows = list(await self.db.lookup_conn.execute_fetchall(_FIND_WITH_TIMELINE, (e164,)))
        if not rows:
            return None
        # each row: the number's 17 columns, then one timeline item (NULLs when there is none)
        timeline = (r[_HIT_COLUMNS:] for r in rows if r[_HIT_COLUMNS] is not None)
        return _card(e164, rows[0][:_HIT_COLUMNS], timeline)


def _card(e164: str, hit: Sequence[Any], timeline: Iterable[Sequence[Any]]) -> CallerCard | None:
    """The card from the number's row (_FIND) and its person's timeline (_TIMELINE)."""
    (
        person_id,
        phone_account,
        number_dnc,
        kind,
        first,
        last,
        company,
        acc_id,
        owner,
        status,
        score,
        dnc,
        acc_name,
        country,
        lost,
        switchboard,
        switchboard_owner,
    ) = hit
    if person_id is None:
        if switchboard is None:
            return None
        return CallerCard(
            number=e164,
            kind=PersonKind.ACCOUNT,
            display_name=switchboard,
            company=switchboard,
            account_id=str(phone_account),
            owner=switchboard_owner,
            extra={"do_not_call": "1"} if number_dnc else {},
        )
    interactions: list[Interaction] = []
    follow_ups: list[FollowUp] = []
    insight: list[Insight] = []
    for what, ident, at, summary, card in timeline:
        if what == "a":
            interactions.append(Interaction(ident, at, summary, CallFacts.from_json(card)))
        elif what == "f":
            follow_ups.append(FollowUp(str(ident), at, summary))
        else:
            insight.extend(Insight(*m) for m in _decode(card))
    extra: dict[str, str] = {}
    if dnc or number_dnc:
        extra["do_not_call"] = "1"
    if lost:
        extra["lost_reason"] = lost
    return CallerCard(
        number=e164,
        kind=PersonKind.LEAD if kind == "lead" else PersonKind.CONTACT,
        display_name=f"{first} {last}".strip() or company or acc_name or "",
        company=acc_name or company,
        person_id=str(person_id),
        account_id=None if acc_id is None else str(acc_id),
        owner=owner,
        lead_status=status,
        lead_score=score,
        country=country or None,
        interactions=tuple(interactions),
        follow_ups=tuple(follow_ups),
        extra=extra,
        insight=tuple(insight),
    )


_FIND = """
SELECT ph.person_id, ph.account_id, ph.do_not_call, p.kind, p.first_name, p.last_name,
       p.company, p.account_id, p.owner, p.status, p.score, p.do_not_call, a.name, p.country,
       p.lost_reason, sw.name, sw.owner
FROM phones ph
LEFT JOIN people p ON p.id = ph.person_id
LEFT JOIN accounts a ON a.id = p.account_id
LEFT JOIN accounts sw ON sw.id = ph.account_id
WHERE ph.e164 = ?
ORDER BY ph.person_id IS NULL, ph.person_id, ph.account_id
LIMIT 1
"""

# a call activity's facts as CallFacts.from_json reads them, NULL without a call in the log
_CALL_FACTS = (
    "(SELECT {array}(c.direction, c.outcome, c.answered_by, c.talk_seconds){cast}"
    " FROM calls c WHERE c.id = activities.call_id)"
)
CALL_FACTS = _CALL_FACTS.format(array="json_array", cast="")
CALL_FACTS_PG = _CALL_FACTS.format(array="json_build_array", cast="::text")


def call_facts(db: Database) -> str:
    """The SQL expression of an ``activities`` row's CallFacts, in ``db``'s dialect."""
    return CALL_FACTS if db.engine == "sqlite" else CALL_FACTS_PG


# the card is cached and pushed to every agent the call rings for and to supervisors: it
# shows only the timeline every agent may read (gateway/access.py: no one's call notes)
_SHARED_NOTES, _ = note_condition(None, shared=True)

# the last interactions (newest first), the open follow-ups (soonest first) and the customer
# metrics the pop-up shows (precomputed by gateway/intel/service.py as one JSON row), in one trip
_TIMELINE = f"""
SELECT * FROM (SELECT 'a', kind, at, summary, {CALL_FACTS} FROM activities
               WHERE person_id = ? AND {_SHARED_NOTES}
               ORDER BY at DESC, id DESC LIMIT {INTERACTIONS_ON_CARD}) AS a
UNION ALL
SELECT * FROM (SELECT 'f', CAST(id AS TEXT), due_at, title, NULL FROM follow_ups
               WHERE person_id = ? AND done = 0 ORDER BY due_at, id
               LIMIT {FOLLOW_UPS_ON_CARD}) AS f
UNION ALL
SELECT 'm', NULL, NULL, NULL, params FROM person_metrics
WHERE person_id = ? AND metric = '{CARD_ROW}'
"""
_HIT_COLUMNS = 17  # what _FIND selects

# PostgreSQL's one round trip: _FIND, and _TIMELINE of its person beside it (LATERAL, which
# SQLite lacks), a row per item. Ordered explicitly ('a' < 'f' < 'm', then each part's own
# order), as a UNION ALL's order is not promised; the same ties broken as on SQLite (ids)
_FIND_WITH_TIMELINE = f"""
WITH hit AS ({_FIND})
SELECT hit.*, t.what, t.ident, t.at, t.summary, t.card
FROM hit LEFT JOIN LATERAL (
    (SELECT 'a' AS what, kind AS ident, at, summary, {CALL_FACTS_PG} AS card, -at AS k1,
            -id AS k2
     FROM activities WHERE person_id = hit.person_id AND {_SHARED_NOTES}
     ORDER BY at DESC, id DESC LIMIT {INTERACTIONS_ON_CARD})
    UNION ALL
    (SELECT 'f', CAST(id AS TEXT) AS ident, due_at AS at, title, NULL, due_at AS k1, id AS k2
     FROM follow_ups WHERE person_id = hit.person_id AND done = 0
     ORDER BY due_at, id LIMIT {FOLLOW_UPS_ON_CARD})
    UNION ALL
    SELECT 'm', NULL, NULL, NULL, params, 0, 0
    FROM person_metrics WHERE person_id = hit.person_id AND metric = '{CARD_ROW}'
) AS t ON true
ORDER BY t.what, t.k1, t.k2
"""
