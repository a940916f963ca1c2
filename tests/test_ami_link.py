"""The AMI link against the simulated PBX over real TCP: login, resync, drops, silence, garbage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.ami.events import AmiEvent, LinkStateChanged, LinkStatus, PbxRestarted, ResyncSnapshot
from gateway.ami.link import AmiLink
from gateway.bus import Bus
from gateway.config import PbxSettings, ReconnectSettings
from gateway.errors import AmiError, AmiNotConnected
from gateway.sim.clock import ManualClock
from gateway.sim.pbx import SimulatedPbx

SECRET = "s3cret-that-must-not-leak"


class Seen:
    """Everything the link published, by type."""

    def __init__(self, bus: Bus) -> None:
        self.events: list[AmiEvent] = []
        self.states: list[LinkStateChanged] = []
        self.resyncs: list[ResyncSnapshot] = []
        self.restarts: list[PbxRestarted] = []
        bus.subscribe(AmiEvent, self.events.append)
        bus.subscribe(LinkStateChanged, self.states.append)
        bus.subscribe(ResyncSnapshot, self.resyncs.append)
        bus.subscribe(PbxRestarted, self.restarts.append)

    def names(self) -> list[str]:
        return [e.frame["Event"] for e in self.events]


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait for a condition the link reaches on its own; fail with the condition's name."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition never became true: {predicate.__doc__ or predicate}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    sim = SimulatedPbx(username="gateway", secret=SECRET, clock=ManualClock())
    await sim.start()
    yield sim
    await sim.stop()


def settings(port: int, **kw: Any) -> PbxSettings:
    base: dict[str, Any] = dict(
        name="main", host="127.0.0.1", port=port, username="gateway", secret=SECRET,
        ping_interval=1.0, action_timeout=1.0, connect_timeout=1.0,
        reconnect=ReconnectSettings(initial=0.05, maximum=0.2),
    )  # fmt: skip
    base.update(kw)
    return PbxSettings(**base)


@pytest.fixture
async def linked(pbx: SimulatedPbx) -> AsyncIterator[tuple[AmiLink, Seen]]:
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(settings(pbx.port), bus)
    link.start()
    await until(lambda: link.status is LinkStatus.READY and seen.resyncs)
    yield link, seen
    await link.stop()


@pytest.mark.parametrize("auth", ["md5", "plain"])
async def test_login_subscribes_and_resyncs(pbx: SimulatedPbx, auth: str) -> None:
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(settings(pbx.port, auth=auth), bus)
    link.start()
    try:
        await until(lambda: seen.resyncs)
        assert [s.status for s in seen.states] == [
            LinkStatus.CONNECTING, LinkStatus.CONNECTED, LinkStatus.READY,
        ]  # fmt: skip
        sent = [a.get("Action") for a in pbx.received_actions]
        assert "Login" in sent and "CoreShowChannels" in sent and "QueueStatus" in sent
        login = next(a for a in pbx.received_actions if a.get("Action") == "Login")
        if auth == "md5":
            assert "Secret" not in login and login["AuthType"] == "MD5"
        else:
            assert login["Secret"] == SECRET
        health = link.health()
        assert health.logged_in and health.connected
        assert health.banner == "Asterisk Call Manager/11.0.0"
        assert seen.resyncs[0].reconnect is False
        assert "FullyBooted" in seen.names()
    finally:
        await link.stop()


async def test_bad_secret_is_reported_retried_with_backoff_and_never_logged(
    pbx: SimulatedPbx, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bus = Bus()
    link = AmiLink(settings(pbx.port, secret="wrong-secret-xyz", auth="plain"), bus)
    link.start()
    try:
        await until(lambda: link.reconnects >= 2)
        assert link.status is not LinkStatus.READY
        assert link.last_error == "login refused: Authentication failed"
        assert not link.health().logged_in
    finally:
        await link.stop()
    assert "wrong-secret-xyz" not in caplog.text
    assert SECRET not in caplog.text
    assert "Authentication failed" in caplog.text


async def test_events_of_a_call_reach_the_bus(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen]
) -> None:
    link, seen = linked
    pbx.start_call("inbound_answered")
    await pbx.advance(30)
    await until(lambda: seen.names().count("Hangup") >= 4)
    names = seen.names()
    assert names.index("Newchannel") < names.index("DialBegin") < names.index("Hangup")
    assert all(e.pbx == "main" for e in seen.events)
    assert link.health().last_event_age is not None


async def test_drop_mid_call_reconnects_rereads_state_and_loses_no_later_event(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen]
) -> None:
    link, seen = linked
    linkedid = pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=20)
    await pbx.advance(4)  # answered, talking
    await until(lambda: "BridgeEnter" in seen.names())
    pbx.drop_connections()
    await until(lambda: len(seen.resyncs) >= 2)
    snap = seen.resyncs[-1]
    assert snap.reconnect is True
    assert link.reconnects >= 1
    # the call in progress is in the snapshot, channel by channel
    assert snap.channels and {c["Linkedid"] for c in snap.channels} == {linkedid}
    before = len(seen.events)
    await pbx.advance(30)  # the call ends after the reconnect
    await until(lambda: seen.names()[before:].count("Hangup") >= 4)
    ended = [e.frame for e in seen.events[before:] if e.frame["Event"] == "Hangup"]
    assert {f["Linkedid"] for f in ended} == {linkedid}


async def test_silent_connection_is_declared_dead_within_two_ping_intervals(
    pbx: SimulatedPbx,
) -> None:
    bus = Bus()
    seen = Seen(bus)
    link = AmiLink(settings(pbx.port, ping_interval=0.5), bus)
    link.start()
    await until(lambda: link.status is LinkStatus.READY and seen.resyncs)
    loop = asyncio.get_running_loop()
    pbx.go_silent()
    t0 = loop.time()
    await until(lambda: link.status is not LinkStatus.READY, timeout=3)
    # two intervals, plus slack for a loaded machine's scheduling (not a speed claim)
    assert loop.time() - t0 <= 2 * link.settings.ping_interval + 0.3
    assert "Ping" in (link.last_error or "")
    pbx.wake_up()
    await until(lambda: link.status is LinkStatus.READY and len(seen.resyncs) >= 2)
    await link.stop()


async def test_asterisk_restart_is_noticed_and_the_link_comes_back(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen]
) -> None:
    link, seen = linked
    await pbx.advance(100)  # uptime grows
    pbx.send_shutdown()
    await until(lambda: seen.restarts)
    assert seen.restarts[0].reason == "shutdown"
    await until(lambda: link.status is LinkStatus.READY and len(seen.resyncs) >= 2)


async def test_malformed_input_is_skipped_and_later_events_still_arrive(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen], caplog: pytest.LogCaptureFixture
) -> None:
    link, seen = linked
    pbx.inject(b"\x00\x01\xff garbage \xfe\r\n\r\n")
    pbx.inject(b"Event: Newchannel\r\nno colon here\r\nUniqueid: 7.7\r\n\r\n")
    pbx.inject(b"Event: VarSet\r\nValue: " + b"A" * (1024 * 1024) + b"\r\n\r\n")
    pbx.inject(b"Event: Newchannel\r\nCallerIDName: Jos\xe9\r\nUniqueid: 8.8\r\n\r\n")
    pbx.start_call("inbound_answered")
    await pbx.advance(30)
    await until(lambda: seen.names().count("Hangup") >= 4)
    assert link.status is LinkStatus.READY
    assert link.health().parse_errors >= 3
    uniqueids = [e.frame.get("Uniqueid") for e in seen.events]
    assert "7.7" in uniqueids and "8.8" in uniqueids
    assert "skipped bad AMI input" in caplog.text


async def test_actions_answer_refuse_injection_and_fail_fast_when_down(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen]
) -> None:
    link, _ = linked
    pong = await link.send_action({"Action": "Ping"})
    assert pong["Response"] == "Success"
    with pytest.raises(AmiError, match="Invalid/unknown command"):
        await link.send_action({"Action": "NoSuchAction"})
    with pytest.raises(AmiError, match="newline"):
        await link.send_action(
            {"Action": "Setvar", "Variable": "X", "Value": "1\r\nAction: Hangup"}
        )
    assert not any(a.get("Action") == "Hangup" for a in pbx.received_actions)
    await link.stop()
    with pytest.raises(AmiNotConnected):
        await link.send_action({"Action": "Ping"})


async def test_pending_action_fails_instead_of_hanging_when_the_link_drops(
    pbx: SimulatedPbx, linked: tuple[AmiLink, Seen]
) -> None:
    link, _ = linked
    pbx.go_silent()
    pending = asyncio.ensure_future(link.send_action({"Action": "Ping"}, timeout=5))
    await asyncio.sleep(0.05)
    pbx.drop_connections()
    with pytest.raises(AmiNotConnected):
        await asyncio.wait_for(pending, 2)
    pbx.wake_up()


async def test_several_pbxs_on_one_bus_keep_their_names() -> None:
    bus = Bus()
    seen = Seen(bus)
    sims = [SimulatedPbx(secret=SECRET, clock=ManualClock()) for _ in range(2)]
    links = []
    try:
        for i, sim in enumerate(sims):
            await sim.start()
            link = AmiLink(settings(sim.port, name=f"pbx{i}"), bus)
            link.start()
            links.append(link)
        # ready means logged in and resynced: status READY alone comes before the snapshot
        for link in links:
            assert await link.wait_ready(5)
        sims[1].start_call("inbound_busy")
        await sims[1].advance(30)
        await until(lambda: any(e.frame["Event"] == "Hangup" for e in seen.events))
        assert {e.pbx for e in seen.events if e.frame["Event"] == "Hangup"} == {"pbx1"}
        assert {r.pbx for r in seen.resyncs} == {"pbx0", "pbx1"}
    finally:
        for link in links:
            await link.stop()
        for sim in sims:
            await sim.stop()


async def test_the_snapshot_takes_its_place_in_the_event_order() -> None:
    """Events written right behind the CoreShowChannels answer reach the bus after the
    snapshot: a snapshot applied late would bring back a call whose Hangup was seen."""
    from gateway.ami.frames import FrameParser, encode_frame

    writers: list[asyncio.StreamWriter] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        parser = FrameParser()
        while data := await reader.read(4096):
            for action in parser.feed(data):
                aid = action.get("ActionID", "")
                name = action.get("Action")
                if name == "CoreShowChannels":
                    chan = {"Channel": "PJSIP/101-00000001", "Uniqueid": "9.1", "Linkedid": "9.1"}
                    writer.write(
                        encode_frame({"Response": "Success", "ActionID": aid,
                                      "EventList": "start", "Message": "Channels will follow"})
                        + encode_frame({"Event": "CoreShowChannel", "ActionID": aid, **chan})
                        + encode_frame({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                                        "EventList": "Complete", "ListItems": "1"})
                        + encode_frame({"Event": "Hangup", **chan, "Cause": "16"})
                    )  # fmt: skip
                elif name in ("Login", "Ping", "QueueStatus"):
                    resp = "Error" if name == "QueueStatus" else "Success"
                    writer.write(encode_frame({"Response": resp, "ActionID": aid}))

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    bus = Bus()
    order: list[str] = []
    bus.subscribe(ResyncSnapshot, lambda s: order.append(f"snapshot:{len(s.channels)}"))
    bus.subscribe(AmiEvent, lambda e: order.append(e.frame["Event"]))
    link = AmiLink(settings(server.sockets[0].getsockname()[1], auth="plain"), bus)
    link.start()
    try:
        await until(lambda: "Hangup" in order)
        assert order.index("snapshot:1") < order.index("Hangup")
    finally:
        await link.stop()
        server.close()
        for w in writers:
            w.close()
            await w.wait_closed()
        await server.wait_closed()
