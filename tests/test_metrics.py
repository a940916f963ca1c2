"""``/metrics`` as Prometheus reads it: the exposition parses, the latency histograms fill as
the gateway works, and the gauges follow the PBX link and the agents' panels."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.sim.pbx import SimulatedPbx
from tests.test_panel_support import API_TOKEN, open_world, until


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path, pbx: SimulatedPbx) -> AsyncIterator[Any]:
    gen = open_world(aiohttp_server, tmp_path, pbx_port=pbx.port)
    w = await gen.__anext__()
    link = w.gw.links["sim"]
    await until(lambda: link.health().logged_in, "the AMI link to log in to the simulated PBX")
    yield w
    await gen.aclose()


async def scrape(world: Any) -> dict[str, Any]:
    """Every sample by (name, sorted labels), as a Prometheus server would store them."""
    client = await world.browser()
    async with client.get(world.url("/metrics")) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_histograms_gauges_and_counters_an_operator_graphs(world: Any) -> None:
    ana = await world.sign_in("ana")
    ws = await ana.ws_connect(world.url("/panel/ws"))
    await until(lambda: world.panel.hub.online(), "ana's panel to connect")
    before = await scrape(world)
    lookups = ("centralita_lookup_latency_seconds_count", (("source", "callername_http"),))
    async with ana.get(
        world.url("/api/v1/callername"),
        params={"number": "600000001"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    ) as r:
        assert r.status == 200
    after = await scrape(world)
    assert after[("centralita_ami_link_up", (("pbx", "sim"),))] == 1
    assert after[("centralita_agents_connected", ())] == 1
    assert after[("centralita_calls_open", (("pbx", "sim"),))] == 0
    assert ("centralita_ami_reconnects_total", (("pbx", "sim"),)) in after
    # AMI actions are timed by action: the login and the resync happened already
    login = ("centralita_ami_action_latency_seconds_count", (("action", "Login"), ("pbx", "sim")))
    assert after[login] >= 1
    assert after[lookups] == before.get(lookups, 0) + 1
    assert ("centralita_popup_latency_seconds_count", ()) in after  # exposed before any ring
    await ws.close()


async def test_calls_by_outcome_and_the_store_gauges_keep_their_names(
    world: Any, pbx: SimulatedPbx
) -> None:
    pbx.start_call("inbound", agent="101")
    await pbx.advance(60)
    await until(lambda: world.gw.calls_ended >= 1, "the call to end")
    samples = await scrape(world)
    ended = {k[1]: v for k, v in samples.items() if k[0] == "centralita_calls_ended_total"}
    assert sum(ended.values()) == 1
    assert ("centralita_bus_handler_errors_total", ()) in samples
