"""The worklist and the customer metrics (issue #14): filters by RFM segment, churn risk and
next best action, the revival sorts (``-churn_risk``, ``-value``) and the metrics on each item,
through HTTP on the very app ``centralita run`` serves (real SQLite file, real TCP).

Six leads whose metrics are worked out by hand below (gateway/intel/metrics.py's rules), each
entered through the API as a CRM would: the lead, its score inputs, its deals. The metrics are
computed by the intel service when the deals are written, with the real clock; every date is
whole days plus an hour before now, so the day counts are exact.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.api.schemas import NextBest
from gateway.campaigns.model import RfmSegment
from gateway.intel.api import INTEL
from gateway.intel.wording import CATALOGS
from tests.test_panel_support import API_TOKEN, PanelWorld, open_world

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DAY = 86400.0

# name -> (score, status, phone or None, won deals as (days ago, EUR), lost deals' days ago)
LEADS: dict[str, tuple[float, str, str | None, list[tuple[int, float]], list[int]]] = {
    # 5 purchases every 30 days, the last 5 days ago, 1,000 in all: R5 F4 M3, champions;
    # churn (5 + 30) / 30 = 1.17 rhythms late at 30 days: below 1.5, 0 %; nothing to do
    "Ana": (6, "contacted", "+34600000001", [(5, 200), (35, 200), (65, 200), (95, 200), (125, 200)], []),
    # 3 purchases every 60 days, the last 200 days ago, 1,500: R2 F3 M3, at risk;
    # (200 + 30) / 60 = 3.83 rhythms: certain loss, 100 %, high: call back (phone only)
    "Bruno": (5, "nurturing", "+34600000002", [(200, 500), (260, 500), (320, 500)], []),
    # 2 purchases 80 days apart, the last 150 days ago, 400: R3 F2 M2, needs attention;
    # (150 + 30) / 80 = 2.25 rhythms: (2.25 - 1.5) / 1.5 = 50 %, medium: call back
    "Carmen": (7, "contacted", "+34600000003", [(230, 100), (150, 300)], []),
    # never bought: a prospect, no churn risk, no value; a new lead never contacted: call
    "Diego": (9, "new", "+34600000004", [], []),
    # a deal lost 45 days ago and nothing bought: a prospect worth another try
    "Elena": (4, "nurturing", "+34600000005", [], [45]),
    # bought once (50, 20 days ago): R5 F1 M1, a new customer; one purchase and no other
    # customer's rhythm: no churn risk to give; no number, no e-mail, company or country
    # (quality 100 - 30 - 20 - 10 - 10 = 30 < 50): update the data first
    "Fede": (8, "new", None, [(20, 50)], []),
}  # fmt: skip

EXPECTED = {  # rfm (value, label), churn_30 (value, label), clv_historic value, next_best label
    "Ana": ((543, "champions"), (0.0, "low"), 1000.0, "no_action"),
    "Bruno": ((233, "at_risk"), (1.0, "high"), 1500.0, "call_back"),
    "Carmen": ((322, "needs_attention"), (0.5, "medium"), 400.0, "call_back"),
    "Diego": ((None, "prospect"), (None, None), None, "call_back"),
    "Elena": ((None, "prospect"), (None, None), None, "revive_lost_deal"),
    "Fede": ((511, "new_customer"), (None, None), 50.0, "update_data"),
}


class Leads:
    """The world, a session with the CRM token, and the leads' ids by name."""

    def __init__(self, world: PanelWorld, http: aiohttp.ClientSession, ids: dict[str, int]) -> None:
        self.world = world
        self.http = http
        self.ids = ids
        self.names = {v: k for k, v in ids.items()}

    async def get(self, query: str = "", status: int = 200) -> dict[str, Any]:
        async with self.http.get(self.world.url(f"/api/v1/worklist{query}"), headers=AUTH) as r:
            doc: dict[str, Any] = await r.json()
            assert r.status == status, doc
            return doc

    async def order(self, query: str = "") -> list[str]:
        doc = await self.get(query)
        return [self.names[i["person"]["id"]] for i in doc["items"]]


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body, headers=AUTH) as r:
        doc: dict[str, Any] = await r.json()
        assert r.status in (200, 201), doc
        return doc


@pytest.fixture
async def leads(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Leads]:
    gen = open_world(aiohttp_server, tmp_path)
    world = await gen.__anext__()
    try:
        intel = world.server.app[INTEL]
        # the start-up work is over before any deal exists: the cohort has no rhythm, so a
        # one-purchase customer's churn risk stays unknown (what Fede's row expects)
        await intel.cohort_measured.wait()
        await intel.caught_up.wait()
        http = await world.browser()
        now = time.time()
        ids: dict[str, int] = {}
        for name, (score, status, phone, won, lost) in LEADS.items():
            body: dict[str, Any] = {
                "first_name": name,
                "last_name": "Prueba",
                "status": status,
                "owner": "ana",
            }
            if phone:
                body |= {"phones": [phone], "country": "ES"}
            pid = (await _post(http, world.url("/api/v1/leads"), body))["id"]
            ids[name] = pid
            async with http.put(
                world.url(f"/api/v1/leads/{pid}/score-inputs"),
                json={"proximity": score, "interest": score},
                headers=AUTH,
            ) as r:
                assert r.status == 200 and (await r.json())["global"] == score
            deals = [("won", d, amount) for d, amount in won] + [("lost", d, 800.0) for d in lost]
            for stage, days, amount in deals:
                await _post(
                    http,
                    world.url("/api/v1/deals"),
                    {
                        "person_id": pid,
                        "stage": stage,
                        "amount": amount,
                        "currency": "EUR",
                        "title": f"{name} {days}",
                        "closed_at": now - days * DAY - 3600,
                    },
                )
            if not deals:  # no deal wrote them: as the nightly run would
                assert await intel.recompute_many([pid]) == 1
        yield Leads(world, http, ids)
    finally:
        await gen.aclose()


async def test_each_item_carries_the_metrics_worked_out_by_hand(leads: Leads) -> None:
    doc = await leads.get()
    got = {}
    for item in doc["items"]:
        m = item["metrics"]
        got[leads.names[item["person"]["id"]]] = (
            (m["rfm_segment"]["value"], m["rfm_segment"]["label"]),
            (m["churn_30"]["value"], m["churn_30"]["label"]),
            m["clv_historic"]["value"],
            m["next_best"]["label"],
        )
    assert got == EXPECTED
    by = {leads.names[i["person"]["id"]]: i["metrics"] for i in doc["items"]}
    # what cannot be known says why, in the metrics API's words, never a number
    assert by["Diego"]["churn_30"]["reason"] == "no_purchases"
    assert by["Diego"]["churn_30"]["text"] == "No purchases yet."
    assert by["Diego"]["clv_historic"]["reason"] == "no_purchases"
    assert by["Fede"]["churn_30"]["reason"] == "no_rhythm"
    assert by["Fede"]["clv_historic"]["label"] == "EUR"
    assert by["Bruno"]["churn_30"]["params"]["gap_days"] == 60
    assert by["Bruno"]["next_best"]["reason"] == "next.churn"
    assert by["Elena"]["next_best"]["text"] == "Deal lost 45 days ago: worth another try."
    assert by["Fede"]["next_best"]["reason"] == "next.update_data"
    # the same as GET /api/v1/people/{id}/metrics says of that lead
    async with leads.http.get(
        leads.world.url(f"/api/v1/people/{leads.ids['Carmen']}/metrics"), headers=AUTH
    ) as r:
        full = {m["name"]: m for m in (await r.json())["metrics"]}
    for name, metric in by["Carmen"].items():
        assert metric == full[name]
    spanish = await leads.get("?lang=es")
    es = {leads.names[i["person"]["id"]]: i["metrics"] for i in spanish["items"]}
    assert es["Diego"]["churn_30"]["text"] == "Todavía no ha comprado."
    assert (
        es["Elena"]["next_best"]["text"] == "Oportunidad perdida hace 45 días: merece otro intento."
    )


async def test_filters_keep_the_leads_whose_metrics_match(leads: Leads) -> None:
    assert await leads.order() == ["Diego", "Fede", "Carmen", "Ana", "Bruno", "Elena"]
    assert await leads.order("?rfm_segments=at_risk,needs_attention") == ["Carmen", "Bruno"]
    assert await leads.order("?rfm_segments=prospect") == ["Diego", "Elena"]
    assert await leads.order("?churn_risk_min=0.5") == ["Carmen", "Bruno"]
    assert await leads.order("?churn_risk_min=0.51") == ["Bruno"]
    # 0 keeps whoever has a churn risk at all: an unknown one is not a risk of 0
    assert await leads.order("?churn_risk_min=0") == ["Carmen", "Ana", "Bruno"]
    assert await leads.order("?next_best=call_back") == ["Diego", "Carmen", "Bruno"]
    assert await leads.order("?next_best=revive_lost_deal,update_data") == ["Fede", "Elena"]
    assert await leads.order("?next_best=send_offer") == []
    both = "?rfm_segments=at_risk,champions&next_best=call_back&owner=ana"
    assert await leads.order(both) == ["Bruno"]


async def test_a_filter_means_what_the_same_campaign_segment_means(leads: Leads) -> None:
    """Campaigns count the same people for the same conditions (one definition of both)."""
    for segment, query in [
        ({"rfm_segments": ["at_risk", "champions"]}, "?rfm_segments=at_risk,champions"),
        ({"churn_risk_min": 0.5}, "?churn_risk_min=0.5"),
        ({"rfm_segments": ["prospect"], "churn_risk_min": 0.1}, "?rfm_segments=prospect&churn_risk_min=0.1"),
    ]:  # fmt: skip
        counted = await _post(leads.http, leads.world.url("/api/v1/segments/count"), segment)
        assert counted["total"] == len(await leads.order(query)), segment


async def test_revival_sorts_put_the_highest_risk_or_value_first_and_unknown_last(
    leads: Leads,
) -> None:
    # unknown risk (no purchase, one purchase) last, among them the best score first
    assert await leads.order("?sort=-churn_risk") == [
        "Bruno", "Carmen", "Ana", "Diego", "Fede", "Elena",
    ]  # fmt: skip
    assert await leads.order("?sort=-value") == [
        "Bruno", "Ana", "Carmen", "Fede", "Diego", "Elena",
    ]  # fmt: skip
    assert await leads.order("?sort=-value&rfm_segments=prospect,new_customer") == [
        "Fede", "Diego", "Elena",
    ]  # fmt: skip
    # pages of a sort continue in that sort; a cursor of another sort is refused
    first = await leads.get("?sort=-churn_risk&limit=2")
    assert [leads.names[i["person"]["id"]] for i in first["items"]] == ["Bruno", "Carmen"]
    cursor = first["next_cursor"]
    assert await leads.order(f"?sort=-churn_risk&limit=2&cursor={cursor}") == ["Ana", "Diego"]
    wrong = await leads.get(f"?limit=2&cursor={cursor}", status=400)
    assert wrong["error"]["details"]["field"] == "cursor"


async def test_a_lead_whose_metrics_were_never_computed(leads: Leads) -> None:
    db = leads.world.gw.db
    assert db is not None
    async with db.transaction() as conn:  # an import: no event computes its metrics
        cur = await conn.execute(
            "INSERT INTO people (kind, first_name, status, score, created_at, updated_at)"
            " VALUES ('lead', 'Gala', 'new', 9.5, 0, 0)"
        )
        gala = int(cur.lastrowid or 0)
    leads.names[gala] = "Gala"
    doc = await leads.get()
    assert leads.names[doc["items"][0]["person"]["id"]] == "Gala"
    assert doc["items"][0]["metrics"] is None  # not computed: no made-up prospect
    assert "Gala" not in await leads.order("?rfm_segments=prospect")
    # an unknown risk: after the known ones, first among the unknown by its score
    assert await leads.order("?sort=-churn_risk") == [
        "Bruno", "Carmen", "Ana", "Gala", "Diego", "Fede", "Elena",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("rfm_segments=vip", "rfm_segments[0]"),
        ("rfm_segments=at_risk,whales", "rfm_segments[1]"),
        ("churn_risk_min=1.5", "churn_risk_min"),
        ("churn_risk_min=-0.1", "churn_risk_min"),
        ("churn_risk_min=high", "churn_risk_min"),
        ("next_best=dance", "next_best[0]"),
        ("sort=-churn", "sort"),
        ("sort=churn_risk", "sort"),
        ("lang=fr", "lang"),
        ("rfm_segments=at_risk&rfm_segments=loyal", "rfm_segments"),
    ],
)
async def test_a_bad_value_is_a_400_naming_the_parameter(
    leads: Leads, query: str, field: str
) -> None:
    doc = await leads.get(f"?{query}", status=400)
    assert doc["error"]["id"] == "invalid_parameter"
    assert doc["error"]["details"]["field"] == field


async def test_the_openapi_document_lists_the_filters_and_sorts(leads: Leads) -> None:
    async with leads.http.get(leads.world.url("/api/v1/openapi.json")) as r:
        doc = await r.json()
    params = {p["name"]: p for p in doc["paths"]["/api/v1/worklist"]["get"]["parameters"]}
    segments = params["rfm_segments"]
    assert (segments["style"], segments["explode"]) == ("form", False)
    assert "at_risk" in segments["schema"]["items"]["enum"]
    assert set(params["next_best"]["schema"]["items"]["enum"]) >= {"call_back", "revive_lost_deal"}
    assert params["churn_risk_min"]["schema"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert set(params["sort"]["schema"]["enum"]) == {"-score", "-churn_risk", "-value"}


def test_the_accepted_values_are_the_ones_the_metrics_and_the_panel_use() -> None:
    """Every RFM segment and next best action the API accepts has its words in both catalogs
    and is offered by the panel's filters, and the API accepts every one the panel offers."""
    panel = (CATALOGS.parent / "worklist.js").read_text(encoding="utf-8")
    for lang in ("en", "es"):
        words = json.loads((CATALOGS / f"{lang}.json").read_text(encoding="utf-8"))
        for group, values in (("segment", RfmSegment), ("action", NextBest)):
            accepted = set(typing.get_args(values))
            assert {k.split(".")[-1] for k in words if k.startswith(f"intel.{group}.")} == accepted
            assert all(f"'{v}'" in panel for v in accepted), group
