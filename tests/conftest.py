"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx
from gateway.store.db import Database


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


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh store file, migrated, on the real clock (modules that need a fixed clock define
    their own ``db``)."""
    d = await Database.open(tmp_path / "store.db")
    yield d
    await d.close()
