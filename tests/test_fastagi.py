"""The FastAGI caller-name service, spoken to as Asterisk would over real TCP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dialplan.fastagi import MAX_ENV_BYTES, FastAgiServer, agi_quote
from gateway.lookup.card import CallerCard, PersonKind

ROOT = Path(__file__).resolve().parent.parent


def env(script: str = "callerid", callerid: str = "+34911234567") -> bytes:
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        "agi_request: agi://127.0.0.1/" + script,
        "agi_channel: PJSIP/trunk-0000002a",
        "agi_language: en",
        "agi_type: PJSIP",
        "agi_uniqueid: 1795346324.42",
        f"agi_callerid: {callerid}",
        "agi_calleridname: unknown",
        "agi_context: from-trunk",
        "agi_extension: 5551000",
        "agi_priority: 2",
    ]
    return ("\n".join(lines) + "\n\n").encode()


class Asterisk:
    """The Asterisk end of one AGI session: answers every command with 200 result=1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.commands: list[str] = []

    async def run(self, environment: bytes) -> list[str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(environment)
        await writer.drain()
        while line := await reader.readline():
            self.commands.append(line.decode().rstrip("\n"))
            writer.write(b"200 result=1\n")
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        return self.commands


CARDS = {
    "+34911234567": CallerCard(
        number="+34911234567", kind=PersonKind.LEAD, display_name='Lucía "Lu" Martín',
        company="Ibérica Logística", owner="ana",
    ),
    "+34600000666": CallerCard(
        number="+34600000666", kind=PersonKind.CONTACT,
        display_name="Evil\nSET VARIABLE X 1", company="",
    ),
}  # fmt: skip


async def lookup(raw: str) -> CallerCard:
    if raw == "+34600000999":
        await asyncio.sleep(5)  # a CRM that hangs
    return CARDS.get(raw, CallerCard(number=raw))


async def owner_extension(username: str) -> str | None:
    return {"ana": "101"}.get(username)


@pytest.fixture
async def agi() -> AsyncIterator[FastAgiServer]:
    server = FastAgiServer(lookup, owner_extension, time_limit=0.2, env_timeout=0.5)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()


async def test_known_caller_gets_name_company_and_owner_extension(agi: FastAgiServer) -> None:
    commands = await Asterisk(agi.port).run(env())
    assert commands == [
        'SET VARIABLE CALLERID(name) "Lucía Lu Martín (Ibérica Logística)"',
        "SET VARIABLE CENTRALITA_KNOWN 1",
        'SET VARIABLE CENTRALITA_OWNER_EXT "101"',
    ]


async def test_unknown_caller_leaves_the_name_alone(agi: FastAgiServer) -> None:
    commands = await Asterisk(agi.port).run(env(callerid="+14155550134"))
    assert commands == ["SET VARIABLE CENTRALITA_KNOWN 0", 'SET VARIABLE CENTRALITA_OWNER_EXT ""']


async def test_a_name_cannot_inject_a_second_agi_command(agi: FastAgiServer) -> None:
    commands = await Asterisk(agi.port).run(env(callerid="+34600000666"))
    assert commands[0] == 'SET VARIABLE CALLERID(name) "Evil SET VARIABLE X 1"'
    assert len(commands) == 3


async def test_a_hanging_crm_never_holds_the_call(agi: FastAgiServer) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    commands = await Asterisk(agi.port).run(env(callerid="+34600000999"))
    assert commands[0] == "SET VARIABLE CENTRALITA_KNOWN 0"
    assert loop.time() - t0 < 2  # bounded by time_limit (0.2 s), far from the CRM's 5 s


async def test_broken_peers_are_dropped_and_the_service_keeps_working(
    agi: FastAgiServer,
) -> None:
    # closed before the blank line (panoramisk's own handler spins forever on this)
    _, w = await asyncio.open_connection("127.0.0.1", agi.port)
    w.write(b"agi_network: yes\n")
    w.close()
    # an endless environment
    _, w2 = await asyncio.open_connection("127.0.0.1", agi.port)
    w2.write(b"agi_x: " + b"y" * (MAX_ENV_BYTES + 10) + b"\n")
    await w2.drain()
    # a silent peer (times out), and an unknown route
    _, w3 = await asyncio.open_connection("127.0.0.1", agi.port)
    assert await Asterisk(agi.port).run(env(script="nope")) == []
    for _ in range(200):
        if agi.errors >= 3:
            break
        await asyncio.sleep(0.01)
    assert agi.errors >= 3
    assert len(await Asterisk(agi.port).run(env())) == 3
    for writer in (w2, w3):
        writer.close()


def test_agi_quote() -> None:
    assert agi_quote('a"b\\c\nd\te') == '"abc d e"'
    assert len(agi_quote("x" * 500)) == 62


def test_the_shipped_dialplan_calls_the_service() -> None:
    conf = (ROOT / "dialplan" / "centralita.conf").read_text()
    assert "AGI(agi://" in conf and "/callerid)" in conf
    assert "CENTRALITA_OWNER_EXT" in conf


async def test_enabled_in_config_it_answers_from_the_store(tmp_path: Path) -> None:
    import msgspec

    from gateway.app import Gateway
    from gateway.config import AgiSettings
    from gateway.panel.users import add_user
    from gateway.store.models import PersonType
    from gateway.store.repositories import PersonRepository
    from tests.test_panel_support import make_config

    cfg = msgspec.structs.replace(make_config(tmp_path), agi=AgiSettings(enabled=True, port=0))
    gw = Gateway(cfg)
    await gw.start()
    try:
        assert gw.db is not None and gw.agi is not None
        await add_user(gw.db, "bruno", "a long password", "agent", ["102"], "Bruno Silva")
        await PersonRepository(gw.db, "ES").create(
            PersonType.LEAD,
            {"name": "Lucía Martín", "company": "Ibérica", "phones": ["911 23 45 67"],
             "owner": "bruno"},
        )  # fmt: skip
        commands = await Asterisk(gw.agi.port).run(env(callerid="+34911234567"))
    finally:
        await gw.stop()
    assert commands == [
        'SET VARIABLE CALLERID(name) "Lucía Martín (Ibérica)"',
        "SET VARIABLE CENTRALITA_KNOWN 1",
        'SET VARIABLE CENTRALITA_OWNER_EXT "102"',
    ]
