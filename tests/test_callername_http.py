"""The caller-name-over-HTTP variant of the dialplan kit: what Asterisk's CURL() gets from the
gateway's own HTTP server, and the dialplan snippet that bounds the wait on Asterisk's side."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.models import PersonType
from tests.test_panel_support import API_TOKEN, open_world

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplan"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def world(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Any]:
    gen = open_world(aiohttp_server, tmp_path)
    w = await gen.__anext__()
    yield w
    await gen.aclose()


async def get_name(world: Any, number: str, headers: dict[str, str] | None = None) -> Any:
    """(status, content type, body) of the request Asterisk's CURL() makes."""
    client = await world.browser()
    url = world.url("/api/v1/callername")
    async with client.get(url, params={"number": number}, headers=headers) as r:
        return r.status, r.content_type, await r.text()


async def test_a_known_caller_gets_a_name_safe_for_callerid(world: Any) -> None:
    await world.panel.people.create(
        PersonType.CONTACT,
        {"name": 'Ana "La Jefa"\tGarcía\\\r\nAction: Hangup ' + "x" * 100,
         "phones": ["+34 600 000 001"]},
    )  # fmt: skip
    status, content_type, text = await get_name(world, "600000001", AUTH)
    assert status == 200 and content_type == "text/plain"
    assert text.startswith("Ana La Jefa García Action: Hangup")
    assert len(text) <= 60
    assert not re.search(r'[\x00-\x1f\x7f"\\]', text)


@pytest.mark.parametrize("number", ["", "999999999", "600;1", "${SHELL(id)}"])
async def test_an_unknown_or_unusable_number_gets_an_empty_name(world: Any, number: str) -> None:
    assert (await get_name(world, number, AUTH))[::2] == (200, "")


async def test_a_refused_query_still_gives_asterisk_an_empty_name(world: Any) -> None:
    # CURL() stores whatever body comes back as the name: an error must not become one
    client = await world.browser()
    for query in ("number=" + "x" * 500, "number=600000001&extra=1"):
        async with client.get(world.url("/api/v1/callername?" + query), headers=AUTH) as r:
            assert (r.status, await r.text()) == (400, ""), query


async def test_without_a_token_nothing_is_told(world: Any) -> None:
    await world.panel.people.create(
        PersonType.CONTACT, {"name": "Ana", "phones": ["+34 600 000 001"]}
    )
    status, _, text = await get_name(world, "600000001")
    assert status == 401 and "Ana" not in text


def test_the_http_dialplan_variant_lets_asterisk_bound_the_wait() -> None:
    conf = (DIALPLAN / "centralita-http.conf").read_text()
    lines = [ln.split(";", 1)[0].strip() for ln in conf.splitlines()]
    steps = [ln for ln in lines if ln.startswith(("exten", "same"))]
    curl = next(i for i, s in enumerate(steps) if "${CURL(" in s)
    before = " ".join(steps[:curl])
    # both limits are set before the request, in whole seconds (fractions are not portable)
    for option in ("conntimeout", "httptimeout"):
        m = re.search(rf"CURLOPT\({option}\)=(\d+)\)", before)
        assert m and 1 <= int(m.group(1)) <= 2, option
    assert "CURLOPT(httpheader)=Authorization: Bearer" in before
    assert "/api/v1/callername?number=${URIENCODE(${CALLERID(num)})}" in steps[curl]
