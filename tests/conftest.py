"""Fixtures shared across test modules."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from gateway.store.db import Database
from tests.postgres_fixtures import PostgresServer, open_store, postgres_server  # noqa: F401


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    """A simulated PBX shaped like a usual PJSIP Asterisk, on a manual clock: the test
    decides when phones ring and answer (modules needing another flavour define their own)."""
    sim = SimulatedPbx(clock=ManualClock(), flavour="pjsip")
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedPbx]:
    """A simulated PBX of the default flavour, AMI secret ``gw``, on a manual clock."""
    pbx = SimulatedPbx(secret="gw", clock=ManualClock())
    await pbx.start()
    yield pbx
    await pbx.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``STORE_ENGINES = ("sqlite", "postgresql")`` runs each of its tests that
    uses the store once per engine (tests/postgres_fixtures.py)."""
    engines = getattr(metafunc.module, "STORE_ENGINES", None)
    if engines and "store_engine" in metafunc.fixturenames:
        metafunc.parametrize("store_engine", engines, indirect=True)


@pytest.fixture
def store_engine(request: pytest.FixtureRequest) -> str:
    """The engine of this test's store: the module's STORE_ENGINES, else
    ``$CENTRALITA_TEST_STORE`` (``postgresql`` to try any module on PostgreSQL), else sqlite."""
    return str(getattr(request, "param", os.environ.get("CENTRALITA_TEST_STORE", "sqlite")))


@pytest.fixture
async def store_location(
    store_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """Where this test's store lives: a file in tmp_path, or a fresh PostgreSQL database
    (dropped afterwards). ``tests.postgres_fixtures.open_store`` opens either."""
    if store_engine == "sqlite":
        yield str(tmp_path / "store.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = await server.fresh_database()
    yield url
    await server.drop(url)


@pytest.fixture
async def db(store_location: str) -> AsyncIterator[Database]:
    """A fresh store, migrated, on the real clock (modules that need a fixed clock define
    their own ``db`` with ``open_store(store_location, clock=...)``)."""
    d = await open_store(store_location)
    yield d
    await d.close()


@pytest.fixture(autouse=True)
async def _gateways_on_postgresql(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """With ``CENTRALITA_TEST_STORE=postgresql``, every store a test opens from a config
    (a gateway's, a command's) is a fresh PostgreSQL database instead of the file its
    ``store.path`` names (the same database for the same path): to see what else runs there."""
    if os.environ.get("CENTRALITA_TEST_STORE") != "postgresql":
        yield
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    urls: dict[str, str] = {}
    real = Database.open_configured.__func__  # type: ignore[attr-defined]

    async def open_configured(cls: type[Database], store: Any, **options: Any) -> Database:
        if not store.url:
            if store.path not in urls:
                urls[store.path] = await server.fresh_database()
            store = msgspec.structs.replace(store, url=urls[store.path])
        return cast(Database, await real(cls, store, **options))

    monkeypatch.setattr(Database, "open_configured", classmethod(open_configured))
    yield
    for url in urls.values():
        await server.drop(url)
