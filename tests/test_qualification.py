"""Qualifying a lead on the call and converting it: answers, score inputs, account and deal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.test_panel_support import open_world


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> Any:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    yield w
    await gen.aclose()


ALL = {
    "company_size": "10_49",
    "fit": 8,
    "needs": "Centralita en la nube <b>ya</b>",
    "interest": 6,
    "complementary": "CRM",
    "competitor_offer": "has_offer",
}


async def new_lead(s: Any, world: Any, company: str = "Acme Renovables") -> int:
    async with s.post(
        world.url("/panel/api/people"),
        json={"kind": "lead", "first_name": "Lucía", "company": company, "phone": "+34911234567"},
    ) as r:
        assert r.status == 200, await r.text()
        return int((await r.json())["person"]["id"])


async def test_answers_are_saved_feed_the_score_and_qualify_the_lead(world: Any) -> None:
    s = await world.sign_in("ana")
    pid = await new_lead(s, world)
    q = world.url(f"/panel/api/people/{pid}/qualification")
    async with s.get(q) as r:
        doc = await r.json()
    assert [x["id"] for x in doc["questions"]][:2] == ["company_size", "fit"]
    assert doc["questions"][0]["label"] == {"es": "Tamaño de la empresa", "en": "Company size"}
    assert doc["answers"] == {} and doc["complete"] is False
    async with s.put(q, json={"answers": {"fit": 8, "interest": 5}}) as r:
        assert r.status == 200, await r.text()
        doc = await r.json()
    assert doc["answers"]["fit"]["value"] == 8 and doc["answers"]["fit"]["set_by"] == "ana"
    assert doc["status"] == "new" and doc["score"] == pytest.approx((2 * 8 + 5) / 3, abs=0.01)
    rows = await world.gw.db.conn.execute_fetchall(
        "SELECT parameter, value FROM score_inputs WHERE person_id = ? ORDER BY parameter", (pid,)
    )
    assert [tuple(r) for r in rows] == [("interest", 5.0), ("proximity", 8.0)]
    async with s.put(q, json={"answers": ALL}) as r:
        doc = await r.json()
    assert doc["complete"] is True and doc["status"] == "qualified"
    assert doc["answers"]["needs"]["value"] == ALL["needs"]  # text stays text


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ({"fit": 11}, "bad_answer"),
        ({"fit": 7.5}, "bad_answer"),
        ({"fit": "8"}, "bad_answer"),
        ({"company_size": "huge"}, "bad_answer"),
        ({"needs": "x" * 2001}, "bad_answer"),
        ({"shoe_size": 42}, "unknown_question"),
        ([], "bad_request"),
    ],
)
async def test_bad_answers_get_a_clear_error(world: Any, answers: Any, error: str) -> None:
    s = await world.sign_in("ana")
    pid = await new_lead(s, world)
    body = {"answers": answers} if isinstance(answers, dict) else answers
    async with s.put(world.url(f"/panel/api/people/{pid}/qualification"), json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["id"] == error


async def test_b2b_conversion_keeps_the_history_and_opens_account_and_deal(world: Any) -> None:
    s = await world.sign_in("ana")
    pid = await new_lead(s, world)
    await world.panel.activities.add(pid, "note", "Llamó por la oferta", author="ana")
    convert = world.url(f"/panel/api/people/{pid}/convert")
    async with s.post(convert, json={"kind": "b2b"}) as r:
        assert r.status == 409
        assert (await r.json())["error"]["id"] == "not_qualified"
    async with s.put(
        world.url(f"/panel/api/people/{pid}/qualification"), json={"answers": ALL}
    ) as r:
        assert r.status == 200
    deal = {"title": "Centralita 20 puestos", "amount": 4800}
    async with s.post(convert, json={"kind": "b2b", "deal": deal}) as r:
        assert r.status == 200, await r.text()
        out = await r.json()
    assert out["person"]["id"] == pid and out["person"]["kind"] == "contact"
    assert out["account"]["name"] == "Acme Renovables" and out["account"]["created"] is True
    assert out["person"]["account_id"] == out["account"]["id"]
    assert out["deal"]["title"] == "Centralita 20 puestos" and out["deal"]["amount"] == 4800
    assert out["deal"]["stage"] == "qualification" and out["deal"]["currency"] == "EUR"
    assert out["kept"]["activities"] >= 1 and out["kept"]["qualification_answers"] == 6
    assert [c["field"] for c in out["changes"]] == ["kind", "account_id", "deal"]
    assert out["by"] == "user:ana"
    audit = await world.gw.db.conn.execute_fetchall(
        "SELECT field, actor FROM audit_log WHERE record_id = ? ORDER BY id", (pid,)
    )
    assert ("kind", "user:ana") in [tuple(a) for a in audit]
    async with s.post(convert, json={"kind": "b2b"}) as r:
        assert r.status == 409
        assert (await r.json())["error"]["id"] == "not_a_lead"


async def test_b2c_conversion_makes_a_contact_and_a_deal_only_when_asked(world: Any) -> None:
    s = await world.sign_in("ana")
    pid = await new_lead(s, world, company="")
    async with s.put(
        world.url(f"/panel/api/people/{pid}/qualification"), json={"answers": ALL}
    ) as r:
        assert r.status == 200
    convert = world.url(f"/panel/api/people/{pid}/convert")
    async with s.post(convert, json={"kind": "b2x"}) as r:
        assert (await r.json())["error"]["id"] == "bad_kind"
    async with s.post(convert, json={"kind": "b2c", "deal": {"amount": -5}}) as r:
        assert r.status == 400 and (await r.json())["error"]["id"] == "bad_deal"
    async with s.post(convert, json={"kind": "b2c"}) as r:
        out = await r.json()
    assert (out["person"]["kind"], out["account"], out["deal"]) == ("contact", None, None)


async def test_b2b_without_a_company_name_is_refused(world: Any) -> None:
    s = await world.sign_in("ana")
    pid = await new_lead(s, world, company="")
    await world.gw.db.conn.execute("UPDATE people SET status = 'qualified' WHERE id = ?", (pid,))
    await world.gw.db.conn.commit()
    async with s.post(world.url(f"/panel/api/people/{pid}/convert"), json={"kind": "b2b"}) as r:
        assert r.status == 400 and (await r.json())["error"]["id"] == "no_company"
    async with s.get(world.url("/panel/api/people/999999/qualification")) as r:
        assert r.status == 404 and (await r.json())["error"]["id"] == "not_found"
