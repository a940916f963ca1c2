"""Qualifying a lead on the call: the question script, its answers, and converting the lead.

The script is ``panel.qualification`` (a list of :class:`Question`). Answers are stored per lead
(``qualification_answers``, migration 0010); a ``scale`` answer, or a ``choice`` whose option
carries a ``score``, also sets the scoring parameter the question names (``scoring``), so the
lead's score and the worklist follow the call. Once every question is answered a lead that was
``new``/``contacted``/``nurturing`` becomes ``qualified``.

Converting (:meth:`Qualification.convert`) keeps the person's id, so its calls, notes,
activities, follow-ups and score history stay attached: the lead becomes a contact; ``b2b`` also
files it under an account (its own, or a new one named after its company) and opens a deal;
``b2c`` opens a deal only when one is given. Every change is written to ``audit_log``.

Errors are :class:`gateway.errors.ApiError` with stable ids the panel translates:
``not_found``, ``not_a_lead``, ``bad_answer``, ``unknown_question``, ``bad_kind``,
``bad_deal``, ``no_company``, ``not_qualified``.

Lead events (after the commit, through :meth:`Database.publish`): becoming ``qualified``
publishes ``LeadStatusChanged``; a conversion publishes ``LeadStatusChanged`` (the status
goes to null: the lead is a contact now) and then ``LeadConverted`` with the account and deal.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from gateway.store.events import LeadConverted, LeadStatusChanged

if TYPE_CHECKING:
    from gateway.access import Principal
    from gateway.store.db import Database
    from gateway.store.scoring_service import ScoringService

Id = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
OPEN_STATUSES = ("new", "contacted", "nurturing")
MAX_TEXT = 2000


class Label(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A text in the panel's two languages."""

    es: str
    en: str


class Option(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    id: Id
    label: Label
    score: Annotated[float, msgspec.Meta(ge=0, le=10)] | None = None  # fed to ``scoring``


class Question(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """One question of the script: ``choice`` (one of ``options``), ``number``, ``text`` or
    ``scale`` (0-10)."""

    id: Id
    label: Label
    type: Literal["choice", "number", "text", "scale"]
    options: list[Option] = msgspec.field(default_factory=list)
    scoring: str | None = None  # the scoring parameter this answer sets (0-10)

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def _opt(id_: str, es: str, en: str, score: float | None = None) -> Option:
    return Option(id=id_, label=Label(es, en), score=score)


def default_questions() -> list[Question]:
    """The script a fresh install asks: size, fit, needs, interest, extras, competitors."""
    return [
        Question(
            id="company_size",
            label=Label("Tamaño de la empresa", "Company size"),
            type="choice",
            options=[
                _opt("1_9", "1-9 empleados", "1-9 employees"),
                _opt("10_49", "10-49 empleados", "10-49 employees"),
                _opt("50_249", "50-249 empleados", "50-249 employees"),
                _opt("250_plus", "250 o más", "250 or more"),
            ],
        ),
        Question(
            id="fit",
            label=Label(
                "Cercanía al cliente ideal (0-10)", "How close to the ideal customer (0-10)"
            ),
            type="scale",
            scoring="proximity",
        ),
        Question(id="needs", label=Label("Necesidades", "Needs"), type="text"),
        Question(
            id="interest",
            label=Label("Interés mostrado (0-10)", "Interest shown (0-10)"),
            type="scale",
            scoring="interest",
        ),
        Question(
            id="complementary",
            label=Label("Productos complementarios", "Complementary products"),
            type="text",
        ),
        Question(
            id="competitor_offer",
            label=Label("Ofertas de la competencia", "Competitors' offers"),
            type="choice",
            options=[
                _opt("none", "Ninguna", "None"),
                _opt("considering", "Está valorando otras", "Considering others"),
                _opt("has_offer", "Tiene una oferta en mano", "Has an offer in hand"),
                _opt("contracted", "Contrato vigente con otro", "Under contract elsewhere"),
            ],
        ),
    ]


def check_questions(questions: list[Question]) -> None:
    """Raise ValueError naming the key when the script is inconsistent."""
    seen: set[str] = set()
    for i, q in enumerate(questions):
        where = f"qualification[{i}]"
        if q.id in seen:
            raise ValueError(f"{where}.id: expected unique ids, found {q.id!r} twice")
        seen.add(q.id)
        if q.type == "choice":
            ids = [o.id for o in q.options]
            if not ids or len(set(ids)) != len(ids):
                raise ValueError(f"{where}.options: expected one or more options with unique ids")
            if q.scoring and any(o.score is None for o in q.options):
                raise ValueError(
                    f"{where}.options: every option needs a score (0-10) to feed {q.scoring!r}"
                )
        elif q.options:
            raise ValueError(f"{where}.options: only a choice question has options")
        if q.scoring and q.type in ("number", "text"):
            raise ValueError(f"{where}.scoring: only a scale or choice answer can feed a score")


def check_answer(q: Question, value: Any) -> str | float | None:
    """The stored form of an answer (None clears it); ApiError ``bad_answer`` otherwise."""
    from gateway.errors import ApiError

    def bad(expected: str) -> ApiError:
        return ApiError(
            400,
            "bad_answer",
            f"{q.id}: expected {expected}",
            {"question": q.id, "expected": expected},
        )

    if value is None:
        return None
    if q.type == "choice":
        if not isinstance(value, str) or value not in {o.id for o in q.options}:
            raise bad("one of " + ", ".join(o.id for o in q.options))
        return value
    if q.type == "text":
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise bad(f"text of at most {MAX_TEXT} characters")
        return value.strip() or None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad("a number" if q.type == "number" else "a whole number from 0 to 10")
    if q.type == "scale" and (value != int(value) or not 0 <= value <= 10):
        raise bad("a whole number from 0 to 10")
    return float(value)


def score_of(q: Question, value: str | float | None) -> float | None:
    """What an answer sets the question's scoring parameter to (None: clears it)."""
    if value is None:
        return None
    if q.type == "scale":
        return float(value)
    if q.type == "choice":
        return next((o.score for o in q.options if o.id == value), None)
    return None


class Qualification:
    """Answers of a lead and its conversion, on the store."""

    def __init__(
        self,
        db: Database,
        questions: list[Question],
        scoring: ScoringService | None = None,
        default_region: str = "ES",
    ) -> None:
        from gateway.store.repositories import PersonRepository

        self.db = db
        self.questions = {q.id: q for q in questions}
        self.order = [q.id for q in questions]
        self.scoring = scoring
        self.people = PersonRepository(db, default_region)

    async def _person(self, person_id: Any) -> Any:
        from gateway.errors import ApiError

        try:
            pid = int(person_id)
        except (TypeError, ValueError):
            raise ApiError(404, "not_found", "No such person.") from None
        person = await self.people.get(pid)
        if person is None:
            raise ApiError(404, "not_found", "No such person.")
        return person

    async def answers(self, person_id: int) -> dict[str, dict[str, Any]]:
        rows = await self.db.conn.execute_fetchall(
            "SELECT question, value, set_by, set_at FROM qualification_answers WHERE person_id = ?",
            (person_id,),
        )
        return {r[0]: {"value": json.loads(r[1]), "set_by": r[2], "set_at": r[3]} for r in rows}

    async def view(self, person_id: Any) -> dict[str, Any]:
        """The script with this person's answers (GET .../qualification)."""
        person = await self._person(person_id)
        answers = await self.answers(person.id)
        current = {k: v for k, v in answers.items() if k in self.questions}
        return {
            "person_id": person.id,
            "kind": person.kind,
            "status": person.status,
            "score": person.score,
            "questions": [self.questions[i].to_json() for i in self.order],
            "answers": current,
            "complete": all(i in current for i in self.order),
        }

    async def save(self, person_id: Any, body: Any, who: Principal | None) -> dict[str, Any]:
        """Store answers ``{"answers": {"fit": 8, "needs": "..."}}`` (null clears one)."""
        from gateway.errors import ApiError
        from gateway.store.repositories import numbers_of_people

        person = await self._person(person_id)
        if person.kind != "lead":
            raise ApiError(409, "not_a_lead", "Only a lead is qualified; this is a contact.")
        raw = body.get("answers") if isinstance(body, dict) else None
        if not isinstance(raw, dict) or not raw:
            raise ApiError(400, "bad_request", 'Expected {"answers": {"<question>": value}}.')
        unknown = sorted(k for k in raw if k not in self.questions)
        if unknown:
            raise ApiError(
                400,
                "unknown_question",
                f"No such question: {', '.join(unknown)[:200]}",
                {"questions": unknown[:20]},
            )
        values = {k: check_answer(self.questions[k], v) for k, v in raw.items()}
        by = who.name if who is not None else None
        now = self.db.clock()
        async with self.db.transaction() as conn:
            for k, v in values.items():
                if v is None:
                    await conn.execute(
                        "DELETE FROM qualification_answers WHERE person_id = ? AND question = ?",
                        (person.id, k),
                    )
                else:
                    await conn.execute(
                        "INSERT INTO qualification_answers (person_id, question, value, set_by,"
                        " set_at) VALUES (?,?,?,?,?) ON CONFLICT (person_id, question) DO UPDATE"
                        " SET value = excluded.value, set_by = excluded.set_by,"
                        " set_at = excluded.set_at",
                        (person.id, k, json.dumps(v, ensure_ascii=False), by, now),
                    )
            answered = {
                r[0]
                for r in await conn.execute_fetchall(
                    "SELECT question FROM qualification_answers WHERE person_id = ?",
                    (person.id,),
                )
            }
            if all(i in answered for i in self.order) and person.status in OPEN_STATUSES:
                await conn.execute(
                    "UPDATE people SET status = 'qualified', updated_at = ? WHERE id = ?",
                    (now, person.id),
                )
                await _audit(
                    conn, who, "lead", person.id, "status", person.status, "qualified", now
                )
                self.db.numbers_changed(await numbers_of_people(conn, [person.id]))
                self.db.publish(
                    LeadStatusChanged(person.id, person.status, "qualified", now, _actor(who))
                )
        inputs = {
            q.scoring: score_of(q, values[k])
            for k, q in ((k, self.questions[k]) for k in values)
            if q.scoring
        }
        if inputs and self.scoring is not None:
            known = set(self.scoring.settings.manual_names)
            inputs = {n: v for n, v in inputs.items() if n in known}
            if inputs:
                await self.scoring.set_inputs(person.id, inputs, by)
        return await self.view(person.id)

    async def convert(self, person_id: Any, body: Any, who: Principal | None) -> dict[str, Any]:
        """Turn a qualified lead into a contact (+ account and deal for ``b2b``)."""
        from gateway.errors import ApiError
        from gateway.store.deals import DealIn, create_deal
        from gateway.store.repositories import numbers_of_people

        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "Expected a JSON object.")
        kind = body.get("kind")
        if kind not in ("b2b", "b2c"):
            raise ApiError(400, "bad_kind", "kind must be 'b2b' or 'b2c'.")
        deal_raw = body.get("deal")
        try:
            deal_in = msgspec.convert(deal_raw, DealIn) if deal_raw is not None else None
        except msgspec.ValidationError as e:
            raise ApiError(400, "bad_deal", f"deal: {e}", {"field": "deal"}) from None
        person = await self._person(person_id)
        if person.kind != "lead":
            raise ApiError(409, "not_a_lead", "This person is already a contact.")
        answered = await self.answers(person.id)
        missing = [i for i in self.order if i not in answered]
        if person.status != "qualified" and missing:
            raise ApiError(
                409,
                "not_qualified",
                "Qualify the lead first: answer every question or set its status to qualified.",
                {"missing": missing},
            )
        account_name = str(body.get("account_name") or person.company or "").strip()[:200]
        if kind == "b2b" and person.account_id is None and not account_name:
            raise ApiError(400, "no_company", "A B2B conversion needs the company's name.")
        now = self.db.clock()
        changes: list[dict[str, Any]] = []
        account_id = person.account_id
        account_created = False
        deal: dict[str, Any] | None = None
        async with self.db.transaction() as conn:
            if kind == "b2b" and account_id is None:
                cur = await conn.execute(
                    "INSERT INTO accounts (name, country, owner, created_at, updated_at)"
                    " VALUES (?,?,?,?,?)",
                    (account_name, person.country or "", person.owner, now, now),
                )
                account_id = cur.lastrowid
                account_created = True
                changes.append({"field": "account_id", "old": None, "new": account_id})
            await conn.execute(
                "UPDATE people SET kind = 'contact', status = NULL, account_id = ?,"
                " updated_at = ? WHERE id = ?",
                (account_id, now, person.id),
            )
            changes.insert(0, {"field": "kind", "old": "lead", "new": "contact"})
            if kind == "b2b" or deal_in is not None:
                deal_in = deal_in or DealIn(title=account_name or person.display_name)
                if not deal_in.title.strip():
                    deal_in = DealIn(
                        title=account_name or person.display_name or f"#{person.id}",
                        amount=deal_in.amount,
                        currency=deal_in.currency,
                        stage=deal_in.stage,
                    )
                deal = await create_deal(
                    conn, deal_in, person.id, account_id, who.name if who else None, now
                )
                changes.append({"field": "deal", "old": None, "new": deal["id"]})
            for c in changes:
                await _audit(conn, who, "lead", person.id, c["field"], c["old"], c["new"], now)
            kept = {}
            for table, col in (
                ("activities", "person_id"),
                ("calls", "person_id"),
                ("follow_ups", "person_id"),
                ("qualification_answers", "person_id"),
            ):
                rows = await conn.execute_fetchall(
                    f"SELECT count(*) FROM {table} WHERE {col} = ?", (person.id,)
                )
                kept[table] = next(iter(rows))[0]
            self.db.numbers_changed(await numbers_of_people(conn, [person.id]))
            # delivered after the commit, in this order
            self.db.publish(LeadStatusChanged(person.id, person.status, None, now, _actor(who)))
            self.db.publish(
                LeadConverted(
                    person.id,
                    now,
                    _actor(who),
                    account_id=account_id,
                    deal_id=deal["id"] if deal is not None else None,
                )
            )
        after = await self.people.get(person.id)
        assert after is not None
        return {
            "kind": kind,
            "person": after.to_dict(),
            "account": {"id": account_id, "name": account_name, "created": account_created}
            if account_id is not None
            else None,
            "deal": deal,
            "kept": kept,
            "changes": changes,
            "at": now,
            "by": who.actor if who else "system",
        }


def _actor(who: Principal | None) -> str:
    return who.actor if who is not None else "system"


async def _audit(
    conn: Any, who: Principal | None, kind: str, pid: int, field: str, old: Any, new: Any, at: float
) -> None:
    from gateway.access import Change
    from gateway.store.repositories import AuditRepository

    await AuditRepository.write(conn, who, kind, pid, [Change(field, old, new)], at)


# -- routes (panel session only; the access table lets every role in) --------------------------


def _service(request: Any) -> Qualification:
    from gateway.panel.routes import PANEL
    from gateway.store.scoring_service import SCORING

    p = request.app[PANEL]
    scoring = request.app.get(SCORING)
    return Qualification(p.db, p.settings.qualification, scoring, p.cfg.lookup.default_region)


def _principal(s: Any) -> Principal:
    from gateway.access import ROLE_SCOPES, Principal

    return Principal(s.username, "user", ROLE_SCOPES[s.role.value], s.role.value)


async def get_qualification(request: Any, s: Any) -> Any:
    return await _service(request).view(request.match_info["id"])


def add_routes(app: Any, api: Any, body: Any) -> None:
    """``GET/PUT /panel/api/people/{id}/qualification``, ``POST .../convert``."""

    async def put_qualification(request: Any, s: Any) -> Any:
        return await _service(request).save(
            request.match_info["id"], await body(request), _principal(s)
        )

    async def convert(request: Any, s: Any) -> Any:
        return await _service(request).convert(
            request.match_info["id"], await body(request), _principal(s)
        )

    r = app.router
    r.add_get("/panel/api/people/{id}/qualification", api(get_qualification))
    r.add_put("/panel/api/people/{id}/qualification", api(put_qualification))
    r.add_post("/panel/api/people/{id}/convert", api(convert))
