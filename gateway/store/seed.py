"""Demo data: believable accounts, contacts and leads for `centralita demo` and for tests.

Numbers are written the way people type them in each country ("+34 911 23 45 67",
"0044 20 7946 0018", "(415) 555-0134"), so the demo exercises normalization too. The lab traces
call from +34911234567, which is always a known contact (Lucía Martín, Ibérica Logística).
Deterministic for a given ``rng`` and ``now``.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from typing import Any

from gateway.store.calllog import CallLog
from gateway.store.db import Database
from gateway.store.models import PersonType
from gateway.store.repositories import (
    AccountRepository,
    ActivityRepository,
    FollowUpRepository,
    PersonRepository,
)

DEMO_EXTENSIONS = {"ana": "101", "bruno": "102", "carla": "103"}  # as gateway/panel/users.py
DEMO_AGENTS = tuple(DEMO_EXTENSIONS)
LAB_CALLER = "+34911234567"

_FIRST = {
    "ES": ["Lucía", "Javier", "Marta", "Carlos", "Elena", "Pablo", "Sofía", "Diego", "Nuria"],
    "GB": ["Oliver", "Amelia", "Harry", "Isla", "George", "Emily", "Jack", "Poppy"],
    "US": ["James", "Olivia", "Noah", "Emma", "Liam", "Ava", "Mason", "Mia"],
    "MX": ["Alejandro", "Valentina", "Santiago", "Camila", "Mateo", "Regina", "Emiliano"],
    "DE": ["Lukas", "Hannah", "Felix", "Lea", "Jonas", "Mia", "Leon", "Anna"],
    "FR": ["Louis", "Chloé", "Hugo", "Léa", "Gabriel", "Manon", "Arthur", "Camille"],
}
_LAST = {
    "ES": ["García", "Martín", "López", "Sánchez", "Romero", "Navarro", "Torres", "Gil"],
    "GB": ["Smith", "Jones", "Taylor", "Brown", "Williams", "Evans", "Wilson", "Walker"],
    "US": ["Johnson", "Miller", "Davis", "Garcia", "Rodriguez", "Martinez", "Anderson"],
    "MX": ["Hernández", "González", "Pérez", "Ramírez", "Flores", "Cruz", "Morales"],
    "DE": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner"],
    "FR": ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit"],
}
_COMPANY_WORDS = [
    "Logística",
    "Solar",
    "Dental",
    "Consulting",
    "Foods",
    "Textil",
    "Motors",
    "Software",
    "Seguros",
    "Hotels",
    "Legal",
    "Print",
    "Clima",
    "Farma",
]
_COMPANY_PREFIX = [
    "Ibérica",
    "Northwind",
    "Acme",
    "Atlántica",
    "Sierra",
    "Blue Harbor",
    "Rhein",
    "Lumière",
    "Azteca",
    "Cantábrico",
    "Kestrel",
    "Mistral",
]
# the ids the campaigns' lost-deal segments name (gateway.campaigns.model.LOST_REASONS)
_LOST_REASONS = ["not_ready", "no_budget", "competitor", "no_rapport", "contact_left"]
# written by the demo's agents, a Spanish-speaking team: notes and tasks in their language
_NOTES = [
    "Pidió un presupuesto",
    "Quiere una demo la semana que viene",
    "Prefiere llamadas después de las 16:00",
    "Le envié el folleto por correo",
    "Decide el director financiero",
    "Interesado en el plan anual",
]
_TASKS = [
    "Llamar por el presupuesto",
    "Confirmar la fecha de la demo",
    "Enviar el contrato",
    "Revisar el presupuesto",
]


@dataclass(frozen=True, slots=True)
class SeedSummary:
    accounts: int
    contacts: int
    leads: int
    merged: int  # people the dedupe rule folded into an earlier one
    activities: int
    follow_ups: int
    known_number: str = LAB_CALLER


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def demo_number(rng: random.Random, country: str) -> tuple[str, str]:
    """A (number as typed, phone type) in ``country``'s habits; numbers parse in that region."""
    d = _digits
    if country == "ES":
        if rng.random() < 0.5:
            return f"6{d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", "mobile"
        return f"+34 91{rng.randrange(2, 10)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", "work"
    if country == "GB":
        if rng.random() < 0.5:
            return f"07700 900{d(rng, 3)}", "mobile"
        return f"0044 20 7946 0{d(rng, 3)}", "work"
    if country == "US":
        area = rng.choice(["415", "212", "312", "617"])
        return f"({area}) {rng.randrange(2, 10)}{d(rng, 2)}-{d(rng, 4)}", rng.choice(
            ["work", "mobile"]
        )
    if country == "MX":
        return f"+52 55 {d(rng, 4)} {d(rng, 4)}", rng.choice(["work", "mobile"])
    if country == "DE":
        if rng.random() < 0.5:
            return f"0151 {d(rng, 8)}", "mobile"
        return f"030 {d(rng, 7)}", "work"
    # FR
    if rng.random() < 0.5:
        return f"06 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", "mobile"
    return f"+33 1 {d(rng, 2)} {d(rng, 2)} {d(rng, 2)} {d(rng, 2)}", "work"


def _email(first: str, last: str, company: str, rng: random.Random) -> str:
    def ascii_part(s: str) -> str:
        plain = unicodedata.normalize("NFKD", s).replace("ß", "ss")
        return "".join(ch for ch in plain.lower() if ch.isascii() and ch.isalnum())

    domain = ascii_part(company) or rng.choice(["gmail", "outlook", "yahoo"])
    return f"{ascii_part(first)}.{ascii_part(last)}@{domain}.example"


async def seed_demo(
    db: Database,
    n: int = 300,
    rng: random.Random | None = None,
    *,
    now: float | None = None,
    default_region: str = "ES",
) -> SeedSummary:
    """Create about ``n`` people (a third leads) in ~n/6 accounts, with activities and tasks."""
    rng = rng or random.Random(7)
    now = db.clock() if now is None else now
    people = PersonRepository(db, default_region)
    accounts_repo = AccountRepository(db, default_region)
    activities = ActivityRepository(db)
    tasks = FollowUpRepository(db)
    calls = CallLog(db, default_region)
    countries = list(_FIRST)
    counts = {"accounts": 0, "contact": 0, "lead": 0, "merged": 0, "activities": 0, "tasks": 0}
    async with db.transaction():
        iberica = await accounts_repo.create(
            {
                "name": "Ibérica Logística",
                "domain": "iberica-logistica.example",
                "country": "ES",
                "owner": "ana",
                "phones": ["+34 910 00 00 00"],
            }
        )
        account_ids = [(iberica.id, "ES", iberica.name)]
        counts["accounts"] += 1
        for _ in range(max(0, n // 6 - 1)):
            country = rng.choice(countries)
            name = f"{rng.choice(_COMPANY_PREFIX)} {rng.choice(_COMPANY_WORDS)}"
            acc = await accounts_repo.create(
                {"name": name, "country": country, "owner": rng.choice(DEMO_AGENTS)}
            )
            account_ids.append((acc.id, country, name))
            counts["accounts"] += 1
        lab = await people.create(
            PersonType.CONTACT,
            {
                "first_name": "Lucía",
                "last_name": "Martín",
                "account_id": iberica.id,
                "title": "Operations manager",
                "owner": "ana",
                "country": "ES",
                "phones": [
                    {"number": "+34 911 23 45 67", "type": "work"},
                    {"number": "+34 612 34 56 78", "type": "mobile"},
                ],
                "emails": ["lucia.martin@iberica-logistica.example"],
            },
        )
        counts["contact"] += 1
        await _past_call(calls, "lab", "inbound", LAB_CALLER, "ana", True, 95.0, now - 3 * 86400)
        await activities.add(
            lab.person.id,
            "note",
            "Wants a quote for 40 pallets a week",
            at=now - 3 * 86400 + 120,
            author="ana",
        )
        await tasks.add(lab.person.id, now + 86400, "Send the pallet quote", "ana")
        counts["activities"] += 2
        counts["tasks"] += 1
        acc_id: int | None  # a lead may have no account yet
        for i in range(max(0, n - 1)):
            kind = PersonType.LEAD if i % 3 == 0 else PersonType.CONTACT
            acc_id, country, company = rng.choice(account_ids)
            if kind is PersonType.LEAD and rng.random() < 0.5:
                country = rng.choice(countries)
                company, acc_id = (
                    f"{rng.choice(_COMPANY_PREFIX)} {rng.choice(_COMPANY_WORDS)}",
                    None,
                )
            first, last = rng.choice(_FIRST[country]), rng.choice(_LAST[country])
            phones = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                raw, typ = demo_number(rng, country)
                phones.append({"number": raw, "type": typ})
            data: dict[str, Any] = {
                "first_name": first,
                "last_name": last,
                "country": country,
                "owner": rng.choice(DEMO_AGENTS),
                "phones": phones,
                "emails": [_email(first, last, company, rng)],
            }
            if acc_id is not None:
                data["account_id"] = acc_id
            else:
                data["company"] = company
            if kind is PersonType.LEAD:
                status = rng.choice(
                    ["new", "new", "contacted", "qualified", "nurturing", "won", "lost"]
                )
                data["status"] = status
                data["score"] = round(rng.uniform(0, 10), 1)
                if status == "lost":
                    data["lost_reason"] = rng.choice(_LOST_REASONS)
                source = rng.choice(["web_form", "inbound_call", "import", "api"])
                data["source"] = source
            else:
                source = "api"
            if rng.random() < 0.03:
                data["do_not_call"] = True
            result = await people.create(kind, data, source=source)
            if not result.created:
                counts["merged"] += 1
                continue
            counts[kind.value] += 1
            pid = result.person.id
            for _ in range(rng.choice((0, 0, 1, 2, 3))):
                at = now - rng.uniform(0, 60) * 86400
                if rng.random() < 0.5:
                    # a past call in the log, as the tracker would have saved it: history,
                    # reports and the card's timeline read it as any other call
                    direction, answered = rng.choice(
                        [("inbound", True), ("outbound", False), ("outbound", True)]
                    )
                    await _past_call(
                        calls,
                        f"{pid}-{counts['activities']}",
                        direction,
                        result.person.phones[0].e164,  # as a PBX gives it, not as typed
                        data["owner"],
                        answered,
                        round(rng.uniform(20, 600)) if answered else 0.0,
                        at,
                    )
                else:
                    await activities.add(
                        pid, "note", rng.choice(_NOTES), at=at, author=data["owner"]
                    )
                counts["activities"] += 1
            if rng.random() < 0.2:
                due = now + rng.uniform(-2, 14) * 86400  # some are already overdue
                await tasks.add(pid, due, rng.choice(_TASKS), data["owner"])
                counts["tasks"] += 1
    return SeedSummary(
        counts["accounts"],
        counts["contact"],
        counts["lead"],
        counts["merged"],
        counts["activities"],
        counts["tasks"],
    )


async def _past_call(
    log: CallLog,
    key: str,
    direction: str,
    number: str,
    agent: str,
    answered: bool,
    talk: float,
    at: float,
) -> None:
    """A finished call between ``number`` and ``agent``'s extension, into the call log (which
    adds it to the number's person's timeline) and the agent's history (the panel records who
    sat at the extension when a live call ends)."""
    ext = DEMO_EXTENSIONS[agent]
    ring = 6.0
    call_id = f"seed:{key}"
    await log.save(
        {
            "id": call_id,
            "pbx": "demo-pbx",
            "linkedid": f"seed-{key}",
            "direction": direction,
            "caller": number if direction == "inbound" else ext,
            "dialed": number if direction == "outbound" else "",
            "outcome": "answered" if answered else "noanswer",
            "started_at": at,
            "answered_at": at + ring if answered else None,
            "ended_at": at + ring + talk,
            "ring_seconds": ring,
            "talk_seconds": talk if answered else None,
            "total_seconds": ring + talk,
            "answered_by": ext if answered else None,
            "agents_rang": [ext],
            "agents_answered": [ext] if answered else [],
        }
    )
    async with log.db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO call_users (call_id, username) VALUES (?, ?)", (call_id, agent)
        )


# -- campaigns -----------------------------------------------------------------------------------

_BOX = "<div>{body}</div>"


def _mail(subject: str, body: str) -> dict[str, str]:
    return {"subject": subject, "html": _BOX.format(body=body)}


NURTURING = {
    "name": "Bienvenida a los leads de la web",
    "description": "Tres correos en una semana a quien deja sus datos en la web; "
    "si abre los correos, su agente le llama.",
    "language": "es",
    "segment": {"kinds": ["lead"], "statuses": ["new"], "sources": ["web_form"]},
    "daily_email_cap": 500,
    "steps": [
        {
            "kind": "email",
            "templates": {
                "es": _mail(
                    "{{ lead.first_name }}, gracias por tu interés",
                    "<h1>Hola {{ lead.first_name }}:</h1><p>Gracias por escribirnos desde la "
                    "web. Soy {{ owner.name or sender.name }} y te acompañaré estos días.</p>"
                    "<p>¿Te viene bien que hablemos esta semana?</p>",
                ),
                "en": _mail(
                    "{{ lead.first_name }}, thanks for your interest",
                    "<h1>Hi {{ lead.first_name }},</h1><p>Thanks for getting in touch through "
                    "our website. I'm {{ owner.name or sender.name }} and I'll be your contact."
                    "</p><p>Could we talk this week?</p>",
                ),
            },
        },
        {"kind": "wait", "days": 2},
        {
            "kind": "email",
            "templates": {
                "es": _mail(
                    "Cómo lo hacen otras empresas como {{ lead.company or 'la tuya' }}",
                    "<p>{{ lead.first_name }}, te dejamos tres casos de clientes de tu sector "
                    "y lo que consiguieron en su primer trimestre.</p>",
                ),
                "en": _mail(
                    "How companies like {{ lead.company or 'yours' }} do it",
                    "<p>{{ lead.first_name }}, here are three customers from your sector and "
                    "what they achieved in their first quarter.</p>",
                ),
            },
        },
        {"kind": "wait", "days": 3},
        {"kind": "branch", "condition": {"kind": "opened"}, "then": 5, "otherwise": 7},
        {"kind": "call", "title": "Llamar: abrió los correos de bienvenida", "assign": "owner"},
        {"kind": "stop"},
        {
            "kind": "email",
            "templates": {
                "es": _mail(
                    "¿Seguimos en contacto, {{ lead.first_name }}?",
                    "<p>No queremos llenar tu buzón: si te interesa, responde a este correo "
                    "y te llamamos cuando mejor te venga.</p>",
                ),
                "en": _mail(
                    "Shall we stay in touch, {{ lead.first_name }}?",
                    "<p>We don't want to fill your inbox: if you are interested, reply to this "
                    "e-mail and we'll call you when it suits you.</p>",
                ),
            },
        },
        {"kind": "set", "status": "nurturing"},
    ],
}

REVIVAL = {
    "name": "Recuperar oportunidades perdidas: presupuesto y competencia",
    "description": "Leads perdidos por presupuesto o por la competencia: un correo personal; "
    "si lo abren, les llama otro agente; si no, un segundo correo el martes.",
    "language": "es",
    "segment": {
        "kinds": ["lead"],
        "statuses": ["lost"],
        "lost_reasons": ["no_budget", "competitor"],
    },
    "daily_call_cap": 40,
    "steps": [
        {
            "kind": "email",
            "templates": {
                "es": _mail(
                    "{{ lead.first_name }}, tenemos un plan nuevo",
                    "<p>Hola {{ lead.first_name }}:</p><p>Hace un tiempo lo dejamos aquí. "
                    "Desde entonces hemos lanzado un plan por módulos que se adapta a "
                    "presupuestos más ajustados. ¿Le echamos un vistazo juntos?</p>",
                ),
                "en": _mail(
                    "{{ lead.first_name }}, we have a new plan",
                    "<p>Hi {{ lead.first_name }},</p><p>We left things here a while ago. Since "
                    "then we have launched a modular plan that fits tighter budgets. Shall we "
                    "take a look together?</p>",
                ),
            },
        },
        {"kind": "wait", "days": 3},
        {"kind": "branch", "condition": {"kind": "opened"}, "then": 3, "otherwise": 5},
        {
            "kind": "call",
            "title": "Recuperar: llamar a un lead perdido que abrió el correo",
            "assign": "different_agent",
            "pool": list(DEMO_AGENTS),
        },
        {"kind": "stop"},
        {"kind": "wait_until", "weekday": 1, "hour": 10},
        {
            "kind": "email",
            "templates": {
                "es": _mail(
                    "Una última idea para {{ lead.company or 'tu equipo' }}",
                    "<p>{{ lead.first_name }}, si el motivo fue el precio o otra herramienta, "
                    "te proponemos una prueba de 30 días sin coste. Responde y lo preparamos."
                    "</p>",
                ),
                "en": _mail(
                    "One last idea for {{ lead.company or 'your team' }}",
                    "<p>{{ lead.first_name }}, if it was the price or another tool, we offer a "
                    "30-day trial at no cost. Reply and we'll set it up.</p>",
                ),
            },
        },
    ],
}


async def seed_demo_campaigns(
    db: Database, *, now: float | None = None, actor: str = "sofia"
) -> list[int]:
    """The demo's two running campaigns (new web leads' welcome; lost deals revived for
    "no budget" and "competitor"); none when the store already has campaigns."""
    import msgspec

    from gateway.campaigns.model import CampaignIn, CampaignStatus, check_campaign
    from gateway.campaigns.store import CampaignStore

    now = db.clock() if now is None else now
    store = CampaignStore(db)
    if await store.list():
        return []
    ids = []
    for raw in (NURTURING, REVIVAL):
        definition = msgspec.convert(raw, CampaignIn)
        check_campaign(definition)
        campaign = await store.create(definition, f"user:{actor}", now)
        await store.set_status(campaign.id, CampaignStatus.RUNNING, now)
        ids.append(campaign.id)
    return ids
