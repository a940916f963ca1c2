"""A user's own panel settings (language, notifications, ring sound, theme), saved on the
account over real HTTP and SQLite and returned with the panel's state."""

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


async def _state(s: Any, world: Any) -> Any:
    async with s.get(world.url("/panel/api/state")) as r:
        assert r.status == 200
        return await r.json()


async def test_preferences_are_saved_on_the_account_and_come_back_with_the_state(
    world: Any,
) -> None:
    ana = await world.sign_in("ana")
    state = await _state(ana, world)
    assert state["preferences"] == {
        "language": None,
        "notifications": True,
        "ring_sound": True,
        "theme": "auto",
    }
    assert {"es", "en"} <= set(state["languages"])

    async with ana.post(
        world.url("/panel/api/preferences"), json={"language": "es", "theme": "dark"}
    ) as r:
        assert r.status == 200
        assert await r.json() == {
            "language": "es",
            "notifications": True,
            "ring_sound": True,
            "theme": "dark",
        }
    # a field left out stays as it was; another sign-in (another desk) sees the same settings
    async with ana.post(world.url("/panel/api/preferences"), json={"ring_sound": False}) as r:
        assert (await r.json())["language"] == "es"
    again = await world.sign_in("ana")
    assert (await _state(again, world))["preferences"] == {
        "language": "es", "notifications": True, "ring_sound": False, "theme": "dark",
    }  # fmt: skip
    # null goes back to the browser's language; other users keep their own
    async with ana.post(world.url("/panel/api/preferences"), json={"language": None}) as r:
        assert (await r.json())["language"] is None
    bruno = await world.sign_in("bruno")
    assert (await _state(bruno, world))["preferences"]["theme"] == "auto"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"language": "xx"}, "bad_language"),
        ({"language": "../es"}, "bad_language"),
        ({"language": 3}, "invalid_parameter"),
        ({"theme": "neon"}, "invalid_parameter"),
        ({"notifications": "yes"}, "invalid_parameter"),
        ({"colour": "red"}, "invalid_parameter"),
        ([1, 2], "invalid_parameter"),
    ],
)
async def test_bad_preferences_are_refused_with_a_stable_id(
    world: Any, body: Any, error: str
) -> None:
    ana = await world.sign_in("ana")
    async with ana.post(world.url("/panel/api/preferences"), json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["id"] == error
    assert (await _state(ana, world))["preferences"]["theme"] == "auto"


async def test_preferences_need_a_session(world: Any) -> None:
    s = await world.browser()
    async with s.post(world.url("/panel/api/preferences"), json={"theme": "dark"}) as r:
        assert r.status in (401, 403)
