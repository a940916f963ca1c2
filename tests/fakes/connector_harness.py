"""What every connector test needs around its stand-in CRM: a finished call record, the callers
every stand-in is seeded with, a started connector, and the outage checks all CRMs must pass."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import BaseTestServer

from connectors.base import CrmConnector
from gateway.errors import ConnectorError, ConnectorTimeout
from gateway.lookup.card import PersonKind
from tests.fakes.faults import Faults

C = TypeVar("C", bound=CrmConnector)

PUBLIC_URL = "https://gw.example"  # the gateway's address, for absolute recording links
HOSTILE = "' OR 1=1 --"

# (e164, raw, display name, kind) of the four people each stand-in is seeded with
KNOWN_CALLERS = [
    ("+34612345678", "612345678", "Ana García", PersonKind.CONTACT),
    ("+12125550100", "2125550100", "Bob Smith", PersonKind.CONTACT),
    ("+34612345679", "612345679", "Luis Pérez", PersonKind.LEAD),
    ("+34910000000", "910000000", "Acme SL", PersonKind.ACCOUNT),
]


def record(rid: str = "call-1", **over: object) -> dict[str, object]:
    """A finished call as the call log hands it to connectors: Ana's answered inbound call."""
    r: dict[str, object] = {
        "id": rid,
        "pbx": "lab",
        "linkedid": "1700000000.1",
        "direction": "inbound",
        "caller": "+34612345678",
        "caller_name": "Ana",
        "did": "+34910000000",
        "dialed": "",
        "queue": "sales",
        "agents_rang": ["201"],
        "answered_by": "201",
        "outcome": "answered",
        "started_at": 1_700_000_000.0,
        "answered_at": 1_700_000_005.0,
        "ended_at": 1_700_000_065.0,
        "ring_seconds": 5,
        "talk_seconds": 60,
        "total_seconds": 65,
        "hangup_cause": "16",
        "recordings": ["q-1700000000.1.wav"],
        "notes": "wants a quote",
        "disposition": "interested",
        "recording_url": "/api/v1/recordings/call-1",
    }
    r.update(over)
    return r


def missed(rid: str, outcome: str = "noanswer", **over: object) -> dict[str, object]:
    """A finished call nobody answered."""
    return record(rid, answered_by="", answered_at=None, outcome=outcome, talk_seconds=0, **over)


def settings_for(server: BaseTestServer, **fields: object) -> dict[str, object]:
    """Connector settings pointing at the stand-in ``server``, with short test timeouts."""
    url = str(server.make_url("")).rstrip("/")
    return {"url": url, "timeout_ms": 400, "write_timeout_ms": 1000, **fields}


@contextlib.asynccontextmanager
async def started(conn: C) -> AsyncIterator[C]:
    """``conn`` started for the block and closed after it, whatever the block raised."""
    await conn.start()
    try:
        yield conn
    finally:
        await conn.close()


def connector_fixture(make: Callable[[Any, Any], Awaitable[C]]) -> Any:
    """A ``conn`` fixture: what ``make(aiohttp_server, crm)`` builds, started for the test."""

    @pytest.fixture
    async def conn(aiohttp_server: Any, crm: Any) -> AsyncIterator[C]:
        async with started(await make(aiohttp_server, crm)) as c:
            yield c

    return conn


async def check_logs_in_again(
    conn: CrmConnector, end_sessions: Callable[[], None], logins: Callable[[], int]
) -> None:
    """After the CRM ends our session, the next lookup logs in once more and still answers."""
    assert await conn.lookup("+34612345678", "") is not None
    end_sessions()
    card = await conn.lookup("+34612345678", "")
    assert card is not None and card.display_name == "Ana García"
    assert logins() == 2


async def check_refused_login(
    conn: CrmConnector, faults: Faults, *, login: str, secret: str, refusal: str = "login refused"
) -> None:
    """Refused credentials: a clear error without the secret, and no login storm after it."""
    with pytest.raises(ConnectorError, match=refusal):
        await conn.lookup("+34612345678", "")
    assert secret not in (conn.health().last_error or "")
    # the next calls do not hammer the CRM with failing logins (accounts get locked)
    with pytest.raises(ConnectorError, match="not retried"):
        await conn.lookup("+34612345678", "")
    with pytest.raises(ConnectorError, match="not retried"):
        await conn.log_call(record())
    assert faults.requests.count(login) == 1


async def check_down_then_hanging(conn: CrmConnector, faults: Faults) -> None:
    """Down, lookups and call writes fail; hanging, they time out; health says so."""
    try:
        faults.down = True
        with pytest.raises(ConnectorError):
            await conn.lookup("+34612345678", "")
        with pytest.raises(ConnectorError):
            await conn.log_call(record())
        faults.down = False
        faults.hang = True
        with pytest.raises(ConnectorTimeout):
            await conn.lookup("+34612345678", "")
        with pytest.raises(ConnectorTimeout):
            await conn.log_call(record())
    finally:
        faults.down = faults.hang = False
    assert "no answer within" in (conn.health().last_error or "")
