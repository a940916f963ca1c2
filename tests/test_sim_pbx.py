"""The simulated PBX over real TCP on loopback, as an AMI client (and panoramisk) sees it.

Time is a ManualClock: ``await pbx.advance(s)`` emits everything due, so no test sleeps.
The only waits are read timeouts that guard against a hang; nothing asserts on speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.ami.frames import AmiFrame, FrameParser, encode_frame, iter_capture
from gateway.sim.clock import DEFAULT_EPOCH, ManualClock
from gateway.sim.pbx import (
    MSG_DENIED,
    MSG_MISSING_ACTION,
    MSG_UNKNOWN,
    Phone,
    SimulatedPbx,
)
from gateway.sim.scenarios import IdAllocator, render_call, scenario_names
from gateway.sim.state import LiveState
from gateway.sim.traffic import TrafficGenerator

SECRET = "s3cret-lab"
GUARD = 5.0  # seconds before a read is declared hung (a failure, never a speed check)


class Client:
    """A minimal AMI client: asyncio streams plus the project's frame parser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = FrameParser()
        self.pending: list[AmiFrame] = []
        self.seen: list[AmiFrame] = []

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, **headers: str) -> None:
        self.writer.write(encode_frame(headers))

    async def next(self) -> AmiFrame:
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), GUARD)
            if not data:
                raise EOFError
            self.pending.extend(self.parser.feed(data))
        frame = self.pending.pop(0)
        self.seen.append(frame)
        return frame

    async def until(self, match: Callable[[AmiFrame], bool]) -> AmiFrame:
        while True:
            frame = await self.next()
            if match(frame):
                return frame

    async def response(self, action_id: str) -> AmiFrame:
        return await self.until(lambda f: "Response" in f and f.get("ActionID") == action_id)

    async def event(self, name: str, **where: str) -> AmiFrame:
        return await self.until(
            lambda f: f.get("Event") == name and all(f.get(k) == v for k, v in where.items())
        )

    async def sync(self) -> None:
        """Round-trip a Ping: every frame the PBX wrote before it is then in ``seen``."""
        self._syncs = getattr(self, "_syncs", 0) + 1
        self.send(Action="Ping", ActionID=f"sync-{self._syncs}")
        await self.response(f"sync-{self._syncs}")

    def saw(self, name: str, **where: str) -> list[AmiFrame]:
        return [
            f
            for f in self.seen
            if f.get("Event") == name and all(f.get(k) == v for k, v in where.items())
        ]

    async def login(self, username: str = "gateway", secret: str = SECRET) -> AmiFrame:
        self.send(Action="Login", ActionID="login", Username=username, Secret=secret)
        return await self.response("login")

    async def eof(self) -> bool:
        try:
            while await asyncio.wait_for(self.reader.read(65536), GUARD):
                pass
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPbx]:
    server = SimulatedPbx(secret=SECRET, clock=ManualClock())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(pbx: SimulatedPbx) -> AsyncIterator[Client]:
    c = await Client.connect(pbx.port)
    assert (await c.login())["Response"] == "Success"
    yield c
    await c.close()


# --- session ------------------------------------------------------------------------------
async def test_banner_is_one_line_and_login_follows_it(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    banner = await asyncio.wait_for(c.reader.readexactly(30), GUARD)
    assert banner == b"Asterisk Call Manager/11.0.0\r\n"
    c.send(Action="Login", ActionID="gw-1", Username="gateway", Secret=SECRET)
    raw = await asyncio.wait_for(c.reader.readuntil(b"\r\n\r\n"), GUARD)
    assert raw == (
        b"Response: Success\r\nActionID: gw-1\r\nMessage: Authentication accepted\r\n\r\n"
    )
    booted = await c.next()
    assert (booted["Event"], booted["Status"]) == ("FullyBooted", "Fully Booted")
    auth = await c.next()
    assert (auth["Event"], auth["AccountID"], auth["Timestamp"]) == (
        "SuccessfulAuth",
        "gateway",
        f"{DEFAULT_EPOCH:.6f}",
    )
    await c.close()


async def test_md5_challenge_login(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    c.send(Action="Challenge", ActionID="ch", AuthType="MD5")
    challenge = (await c.response("ch"))["Challenge"]
    key = hashlib.md5((challenge + SECRET).encode()).hexdigest()
    c.send(Action="Login", ActionID="in", AuthType="MD5", Username="gateway", Key=key, Events="off")
    assert (await c.response("in"))["Message"] == "Authentication accepted"
    c.send(Action="Ping", ActionID="p")
    # Events: off, so no FullyBooted comes before the Ping answer
    assert (await c.next())["Ping"] == "Pong"
    await c.close()


@pytest.mark.parametrize("how", ["plain", "md5", "user"])
async def test_bad_credentials_are_refused_and_the_connection_closed(
    pbx: SimulatedPbx, how: str
) -> None:
    c = await Client.connect(pbx.port)
    if how == "md5":
        c.send(Action="Challenge", ActionID="ch", AuthType="MD5")
        await c.response("ch")
        c.send(Action="Login", ActionID="x", AuthType="MD5", Username="gateway", Key="0" * 32)
    else:
        user = "intruder" if how == "user" else "gateway"
        secret = SECRET if how == "user" else "wrong"
        c.send(Action="Login", ActionID="x", Username=user, Secret=secret)
    refused = await c.response("x")
    assert (refused["Response"], refused["Message"]) == ("Error", "Authentication failed")
    assert await c.eof()
    assert pbx.connected_clients == 0
    await c.close()


async def test_actions_before_login_are_refused_but_login_still_works(pbx: SimulatedPbx) -> None:
    c = await Client.connect(pbx.port)
    c.send(Action="CoreShowChannels", ActionID="early")
    denied = await c.response("early")
    assert (denied["Response"], denied["Message"]) == ("Error", MSG_DENIED)
    assert (await c.login())["Response"] == "Success"
    await c.close()


async def test_unknown_and_missing_actions_get_asterisk_errors(client: Client) -> None:
    client.send(Action="FlyToTheMoon", ActionID="u1")
    unknown = await client.response("u1")
    assert (unknown["Response"], unknown["Message"]) == ("Error", MSG_UNKNOWN)
    assert unknown["Message"].startswith("Invalid/unknown command")
    client.send(ActionID="m1", Channel="x")
    missing = await client.response("m1")
    assert missing["Message"] == MSG_MISSING_ACTION


async def test_ping_answers_pong_with_the_clock_timestamp(
    pbx: SimulatedPbx, client: Client
) -> None:
    await pbx.advance(12.5)
    client.send(Action="Ping", ActionID="ping-7")
    pong = await client.response("ping-7")
    assert (pong["Response"], pong["Ping"]) == ("Success", "Pong")
    assert float(pong["Timestamp"]) == pytest.approx(DEFAULT_EPOCH + 12.5)


async def test_actions_cut_anywhere_and_bare_newlines_are_understood(client: Client) -> None:
    data = encode_frame({"Action": "Ping", "ActionID": "bytewise"})
    for i in range(len(data)):
        client.writer.write(data[i : i + 1])
        await client.writer.drain()
    assert (await client.response("bytewise"))["Ping"] == "Pong"
    client.writer.write(b"Action: Ping\nActionID: lf-only\n\n")
    assert (await client.response("lf-only"))["Ping"] == "Pong"


async def test_logoff_says_goodbye_and_closes(client: Client) -> None:
    client.send(Action="Logoff", ActionID="bye")
    bye = await client.response("bye")
    assert (bye["Response"], bye["Message"]) == ("Goodbye", "Thanks for all the fish.")
    assert await client.eof()


async def test_events_off_stops_call_events(pbx: SimulatedPbx, client: Client) -> None:
    client.send(Action="Events", ActionID="ev", EventMask="off")
    assert (await client.response("ev"))["Events"] == "Off"
    pbx.start_call("inbound_busy")
    await pbx.advance(1)
    client.send(Action="Ping", ActionID="after")
    await client.response("after")
    assert not any(f.get("Event") == "Newchannel" for f in client.seen)


# --- originate ----------------------------------------------------------------------------
def _originate(client: Client, action_id: str, timeout_ms: int = 20000, **extra: str) -> None:
    client.send(
        Action="Originate",
        ActionID=action_id,
        Channel="Local/101@agents",
        Context="outbound",
        Exten="+34911234567",
        Priority="1",
        CallerID='"Click-to-call" <+34911234567>',
        Timeout=str(timeout_ms),
        Variable="GATEWAY_CALL_ID=gw-c2c-77",
        **extra,
    )


async def test_async_originate_runs_the_click_to_call(pbx: SimulatedPbx, client: Client) -> None:
    _originate(client, "c2c-1", Async="true")
    queued = await client.response("c2c-1")
    assert (queued["Response"], queued["Message"]) == ("Success", "Originate successfully queued")
    await pbx.advance(30)
    result = await client.event("OriginateResponse")
    assert (result["ActionID"], result["Response"], result["Reason"]) == ("c2c-1", "Success", "4")
    assert result["Channel"].startswith("Local/101@agents-") and result["Channel"].endswith(";1")
    noop = await client.until(lambda f: "GATEWAY_CALL_ID=gw-c2c-77" in f.get("AppData", ""))
    assert noop["Context"] == "outbound"
    await client.event("BridgeEnter")
    await client.event("Hangup", Channel=result["Channel"])
    assert pbx.channels == {} and pbx.calls == {}


@pytest.mark.parametrize(
    ("behaviour", "reason", "wait"), [("busy", "5", 1.0), ("noanswer", "3", 6.5)]
)
async def test_originate_to_an_agent_who_cannot_answer_fails(
    pbx: SimulatedPbx, client: Client, behaviour: str, reason: str, wait: float
) -> None:
    pbx.phones["101"] = Phone(answer=behaviour)
    _originate(client, "c2c-2", timeout_ms=6000, Async="true")
    await client.response("c2c-2")
    await pbx.advance(wait)
    failed = await client.event("OriginateResponse")
    assert (failed["Response"], failed["Reason"]) == ("Failure", reason)
    assert (failed["Channel"], failed["Uniqueid"]) == ("Local/101@agents", "<unknown>")
    assert failed["ActionID"] == "c2c-2"


async def test_noanswer_originate_waits_for_its_timeout(pbx: SimulatedPbx, client: Client) -> None:
    pbx.phones["101"] = Phone(answer="noanswer")
    _originate(client, "c2c-3", timeout_ms=6000, Async="true")
    await client.response("c2c-3")
    await pbx.advance(5.0)
    client.send(Action="Ping", ActionID="mid")
    await client.response("mid")
    assert not any(f.get("Event") == "OriginateResponse" for f in client.seen)
    await pbx.advance(1.5)
    assert (await client.event("OriginateResponse"))["Reason"] == "3"


async def test_sync_originate_answers_when_the_agent_answers(
    pbx: SimulatedPbx, client: Client
) -> None:
    pbx.phones["101"] = Phone(ring=4.0)
    _originate(client, "sync-1")
    client.send(Action="Ping", ActionID="p0")  # actions run in order: the call has started
    await client.response("p0")
    await pbx.advance(3.0)
    client.send(Action="Ping", ActionID="p1")
    await client.response("p1")
    assert not any(f.get("ActionID") == "sync-1" for f in client.seen)
    await pbx.advance(1.5)
    done = await client.response("sync-1")
    assert (done["Response"], done["Message"]) == ("Success", "Originate successfully queued")
    await pbx.advance(30)
    client.send(Action="Ping", ActionID="p2")
    await client.response("p2")
    assert not any(f.get("Event") == "OriginateResponse" for f in client.seen)


async def test_originate_without_channel_is_an_error(client: Client) -> None:
    client.send(Action="Originate", ActionID="o", Exten="100", Context="x")
    err = await client.response("o")
    assert (err["Response"], err["Message"]) == ("Error", "Channel not specified")


# --- live state ---------------------------------------------------------------------------
async def test_core_show_channels_lists_a_live_call(pbx: SimulatedPbx, client: Client) -> None:
    linkedid = pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=30)
    await pbx.advance(5)
    client.send(Action="CoreShowChannels", ActionID="cs")
    ack = await client.response("cs")
    assert (ack["EventList"], ack["Message"]) == ("start", "Channels will follow")
    listed = []
    while (frame := await client.next())["Event"] == "CoreShowChannel":
        assert frame["ActionID"] == "cs"
        listed.append(frame)
    assert (frame["Event"], frame["EventList"], frame["ListItems"]) == (
        "CoreShowChannelsComplete",
        "Complete",
        "4",
    )
    assert {f["Linkedid"] for f in listed} == {linkedid}
    trunk = next(f for f in listed if f["Channel"].endswith("from-pstn-00000000;2"))
    assert (trunk["ChannelStateDesc"], trunk["CallerIDNum"], trunk["Application"]) == (
        "Up",
        "+34911234567",
        "Dial",
    )
    # created a few ms after the call started, so 4.99 s old: Asterisk truncates
    assert trunk["BridgeId"] and trunk["Duration"] == "00:00:04"
    await pbx.advance(60)
    client.send(Action="CoreShowChannels", ActionID="cs2")
    done = await client.event("CoreShowChannelsComplete", ActionID="cs2")
    assert done["ListItems"] == "0"


# header order of a real Asterisk 22.10.1's resync answers (the .after.ami stream of the
# gateway_restart_mid_call capture): ActionID first in lists and their end, LAST in queue items
REAL_ORDER = {
    "CoreShowChannel": [
        "Event", "ActionID", "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum",
        "CallerIDName", "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode",
        "Context", "Exten", "Priority", "Uniqueid", "Linkedid", "Application",
        "ApplicationData", "Duration", "BridgeId",
    ],
    "CoreShowChannelsComplete": ["Event", "ActionID", "EventList", "ListItems"],
    "QueueParams": [
        "Event", "Queue", "Max", "Strategy", "Calls", "Holdtime", "TalkTime", "Completed",
        "Abandoned", "ServiceLevel", "ServicelevelPerf", "ServicelevelPerf2", "Weight",
        "ActionID",
    ],
    "QueueMember": [
        "Event", "Queue", "Name", "Location", "StateInterface", "Membership", "Penalty",
        "CallsTaken", "LastCall", "LastPause", "LoginTime", "InCall", "Status", "Paused",
        "PausedReason", "Wrapuptime", "ActionID",
    ],
    "QueueStatusComplete": ["Event", "ActionID", "EventList", "ListItems"],
}  # fmt: skip


async def test_resync_answers_have_the_real_header_order(pbx: SimulatedPbx, client: Client) -> None:
    pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=30)
    await pbx.advance(5)
    client.send(Action="QueueStatus", ActionID="qs")
    await client.event("QueueStatusComplete", ActionID="qs")
    client.send(Action="CoreShowChannels", ActionID="cs")
    await client.event("CoreShowChannelsComplete", ActionID="cs")
    answered = [f for f in client.seen if f.get("Event") in REAL_ORDER]
    assert {f["Event"] for f in answered} == set(REAL_ORDER)
    for frame in answered:
        assert list(frame) == REAL_ORDER[frame["Event"]], frame["Event"]
    ack = next(f for f in client.seen if f.get("ActionID") == "cs" and "Response" in f)
    assert list(ack) == ["Response", "ActionID", "EventList", "Message"]


async def test_status_reports_each_live_channel(pbx: SimulatedPbx, client: Client) -> None:
    pbx.start_call("inbound_answered", talk_seconds=30)
    await pbx.advance(3)
    client.send(Action="Status", ActionID="st")
    assert (await client.response("st"))["Message"] == "Channel status will follow"
    done = await client.event("StatusComplete", ActionID="st")
    statuses = [f for f in client.seen if f.get("Event") == "Status"]
    assert done["ListItems"] == str(len(statuses)) == "4"
    assert {f["Type"] for f in statuses} == {"Local"}


async def test_queue_status_and_pause(pbx: SimulatedPbx, client: Client) -> None:
    client.send(Action="QueuePause", ActionID="qp", Interface="Local/101@agents/n", Paused="true")
    paused = await client.response("qp")
    assert paused["Message"] == "Interface paused successfully"
    (event,) = client.saw("QueueMemberPause")  # app_queue sends the event before the ack
    assert (event["Queue"], event["MemberName"], event["Paused"]) == ("sales", "Agent 101", "1")
    pbx.start_call("queue_answered", ring_seconds=10, talk_seconds=20)
    await pbx.advance(2)
    client.send(Action="QueueStatus", ActionID="qs")
    await client.response("qs")
    complete = await client.event("QueueStatusComplete", ActionID="qs")
    listed = client.seen[-int(complete["ListItems"]) - 1 : -1]
    kinds = [f["Event"] for f in listed]
    assert kinds == ["QueueParams", "QueueMember", "QueueMember", "QueueEntry"]
    members = {f["Name"]: f["Paused"] for f in listed if f["Event"] == "QueueMember"}
    assert members == {"Agent 101": "1", "Agent 102": "0"}
    assert listed[-1]["CallerIDNum"] == "+34911234567"
    called = [f["Interface"] for f in client.seen if f.get("Event") == "AgentCalled"]
    assert called and set(called) == {"Local/102@agents/n"}  # the paused agent is not rung
    client.send(Action="QueuePause", ActionID="qx", Interface="Local/999@agents/n", Paused="0")
    assert (await client.response("qx"))["Message"] == "Interface not found"


async def test_hangup_of_a_live_channel_ends_the_call(pbx: SimulatedPbx, client: Client) -> None:
    pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=300)
    await pbx.advance(10)
    agent = next(n for n in pbx.channels if "@agents-" in n and n.endswith(";1"))
    client.send(Action="Hangup", ActionID="h1", Channel=agent)
    assert (await client.response("h1"))["Message"] == "Channel Hungup"
    await pbx.advance(1)
    await client.sync()
    (cdr,) = [f for f in client.saw("Cdr") if f["LastApplication"] == "Dial"]
    assert (cdr["Disposition"], cdr["BillableSeconds"]) == ("ANSWERED", "8")
    assert len(client.saw("Hangup")) == 4 and client.saw("Hangup", Channel=agent)
    assert pbx.channels == {} and pbx.calls == {}
    client.send(Action="Hangup", ActionID="h2", Channel=agent)
    assert (await client.response("h2"))["Message"] == "No such channel"


async def test_hangup_while_ringing_is_a_caller_abandon(pbx: SimulatedPbx, client: Client) -> None:
    pbx.start_call("inbound_answered", ring_seconds=8)
    await pbx.advance(3)
    client.send(Action="Hangup", ActionID="h", Channel="/from-pstn-.*;1/")
    assert (await client.response("h"))["EventList"] == "start"
    assert (await client.event("ChannelsHungupListComplete"))["ListItems"] == "1"
    await pbx.advance(1)
    end = await client.event("DialEnd", DialStatus="CANCEL")
    assert end["DestChannel"].startswith("Local/101@agents-")
    await client.until(lambda f: f.get("Event") == "Cdr" and f["Disposition"] == "NO ANSWER")
    await pbx.advance(5)
    assert pbx.channels == {}


async def test_redirect_blind_transfers_a_live_call(pbx: SimulatedPbx, client: Client) -> None:
    pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=60)
    await pbx.advance(6)
    agent = next(n for n in pbx.channels if "@agents-" in n and n.endswith(";1"))
    client.send(Action="Redirect", ActionID="r", Channel=agent, Context="transfer", Exten="102")
    assert (await client.response("r"))["Message"] == "Redirect successful"
    await pbx.advance(1)
    moved = await client.event("BlindTransfer")
    assert (moved["TransfererChannel"], moved["Extension"]) == (agent, "102")
    await pbx.advance(60)
    await client.until(
        lambda f: f.get("Event") == "BridgeEnter" and f["Channel"].startswith("Local/102@agents-")
    )
    await client.until(lambda f: f.get("Event") == "Hangup" and "102@agents" in f["Channel"])
    assert pbx.channels == {}


@pytest.mark.parametrize(
    ("phone", "outcome"),
    [
        (Phone(ring=3.0), "ANSWER"),
        (Phone(answer="busy"), "BUSY"),
        (Phone(answer="noanswer"), "NOANSWER"),
    ],
)
async def test_phones_decide_how_an_inbound_call_ends(
    pbx: SimulatedPbx, client: Client, phone: Phone, outcome: str
) -> None:
    pbx.phones["103"] = phone
    pbx.start_call("inbound", agent="103", dial_timeout=15, talk_seconds=4)
    await pbx.advance(60)
    await client.sync()
    (end,) = [f for f in client.saw("DialEnd") if f.get("Channel", "").endswith(";2")]
    assert end["DialStatus"] == outcome and end["DestChannel"].startswith("Local/103@agents-")
    rang = float(end["Timestamp"]) - float(client.saw("DialBegin")[-1]["Timestamp"])
    assert rang == pytest.approx({"ANSWER": 3.0, "BUSY": 0.0, "NOANSWER": 15.0}[outcome], abs=0.1)


async def test_queue_call_is_taken_by_the_fastest_free_phone(
    pbx: SimulatedPbx, client: Client
) -> None:
    pbx.phones["101"] = Phone(ring=6.0)
    pbx.phones["102"] = Phone(answer="noanswer")
    pbx.start_call("queue", talk_seconds=5)
    await pbx.advance(60)
    await client.sync()
    (connect,) = client.saw("AgentConnect")
    assert (connect["MemberName"], connect["HoldTime"]) == ("Agent 101", "6")
    pbx.phones["101"] = Phone(answer="busy")
    pbx.start_call("queue", ring_seconds=9)
    await pbx.advance(60)
    await client.sync()
    (abandon,) = client.saw("QueueCallerAbandon")
    assert abandon["HoldTime"] == "9"


async def test_setvar_and_getvar(pbx: SimulatedPbx, client: Client) -> None:
    client.send(Action="Setvar", ActionID="s", Variable="CAMPAIGN", Value="spring")
    assert (await client.response("s"))["Message"] == "Variable Set"
    client.send(Action="Getvar", ActionID="g", Variable="CAMPAIGN")
    got = await client.response("g")
    assert (got["Variable"], got["Value"]) == ("CAMPAIGN", "spring")
    pbx.start_call("inbound_answered", talk_seconds=30)
    await pbx.advance(3)
    agent = next(n for n in pbx.channels if "@agents-" in n and n.endswith(";1"))
    client.send(Action="Getvar", ActionID="g2", Channel=agent, Variable="MIXMONITOR_FILENAME")
    path = (await client.response("g2"))["Value"]
    assert path.startswith("/var/spool/asterisk/monitor/") and path.endswith(".wav")
    client.send(Action="Getvar", ActionID="g3", Channel="Local/nope", Variable="X")
    assert (await client.response("g3"))["Message"] == "No such channel"


async def test_received_actions_are_recorded(pbx: SimulatedPbx, client: Client) -> None:
    client.send(Action="Ping", ActionID="rec")
    await client.response("rec")
    assert [a["Action"] for a in pbx.received_actions] == ["Login", "Ping"]
    assert pbx.received_actions[0]["Secret"] == SECRET


# --- test controls ------------------------------------------------------------------------
async def test_dropped_connection_and_reconnect_see_a_call_continue(pbx: SimulatedPbx) -> None:
    first = await Client.connect(pbx.port)
    await first.login()
    pbx.start_call("inbound_answered", ring_seconds=2, talk_seconds=10)
    await pbx.advance(1)
    await first.event("Newchannel")
    pbx.drop_connections()
    assert await first.eof()
    await first.close()
    second = await Client.connect(pbx.port)
    await second.login()
    await pbx.advance(20)
    await second.until(lambda f: f.get("Event") == "Hangup")
    assert not any(f.get("Event") == "Newchannel" for f in second.seen)
    await second.close()


async def test_silent_pbx_answers_nothing_until_woken(pbx: SimulatedPbx, client: Client) -> None:
    await client.sync()
    pbx.go_silent()
    client.send(Action="Ping", ActionID="lost")
    for _ in range(10_000):  # let the server read it (loop turns, not a timed wait)
        if pbx.received_actions[-1].get("ActionID") == "lost":
            break
        await asyncio.sleep(0)
    pbx.start_call("inbound_busy")
    await pbx.advance(2)
    assert pbx.connected_clients == 1
    pbx.wake_up()
    client.send(Action="Ping", ActionID="heard")
    first = await client.next()
    assert first.get("ActionID") == "heard"  # nothing from the silent period got through
    assert [a.get("ActionID") for a in pbx.received_actions][-2:] == ["lost", "heard"]


async def test_shutdown_closes_and_the_next_login_sees_a_fresh_boot(
    pbx: SimulatedPbx, client: Client
) -> None:
    await pbx.advance(100)
    pbx.start_call("inbound_answered", talk_seconds=60)
    await pbx.advance(3)
    pbx.send_shutdown()
    shutdown = await client.event("Shutdown")
    assert (shutdown["Shutdown"], shutdown["Restart"]) == ("Cleanly", "True")
    assert await client.eof()
    again = await Client.connect(pbx.port)
    await again.login()
    booted = await again.event("FullyBooted")
    assert booted["Uptime"] == "0"
    again.send(Action="CoreShowChannels", ActionID="cs")
    assert (await again.event("CoreShowChannelsComplete"))["ListItems"] == "0"
    await again.close()


async def test_injected_garbage_reaches_the_client_and_the_pbx_goes_on(
    pbx: SimulatedPbx, client: Client
) -> None:
    junk = b"\xff\xfe garbage\r\nno colon here\r\n\r\nResponse: Success\r\nActionID: half"
    pbx.inject(junk + b"\r\n\r\n" + b"X" * (1024 * 1024) + b"\r\n\r\n")
    client.send(Action="Ping", ActionID="still")
    pong = await client.response("still")
    assert pong["Ping"] == "Pong"
    assert client.parser.errors  # the client's parser saw and skipped the bad input


async def test_panoramisk_manager_logs_in_and_receives_events(pbx: SimulatedPbx) -> None:
    from panoramisk import Manager

    loop = asyncio.get_running_loop()
    manager = Manager(
        loop=loop,
        host="127.0.0.1",
        port=pbx.port,
        username="gateway",
        secret=SECRET,
        ping_delay=3600,
        reconnect_timeout=3600,
    )
    seen: list[str] = []
    manager.register_event("Newchannel", lambda _m, msg: seen.append(msg.Channel))
    await manager.connect()
    assert await manager.authenticated_future
    pong = await manager.send_action({"Action": "Ping"})
    assert pong.Ping == "Pong"
    pbx.start_call("inbound_busy")
    await pbx.advance(1)
    for _ in range(50):
        if len(seen) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(seen) == 4 and seen[0].startswith("Local/5551000@from-pstn-")
    manager.close()


async def test_real_clock_stamps_events_with_the_wall_clock() -> None:
    pbx = SimulatedPbx(secret=SECRET)  # the demo's clock
    await pbx.start()
    c = await Client.connect(pbx.port)
    await c.login()
    before = time.time()
    pbx.start_call("inbound_busy")
    hangup = await c.event("Hangup")  # a busy call is over within milliseconds
    assert before <= float(hangup["Timestamp"]) <= time.time()
    await c.close()
    await pbx.stop()


def test_live_state_follows_a_call_from_newchannel_to_hangup() -> None:
    state = LiveState()
    frames = render_call("queue_abandoned", ring_seconds=7)
    seen_live = 0
    for f in frames:
        if f.kind == "event":
            state.track(f.headers, f.at)
            seen_live = max(seen_live, len(state.channels))
            if f.headers.get("Event") == "QueueCallerJoin":
                assert state.queue_entries["sales"] == [f.headers["Channel"]]
    assert seen_live == 6 and state.channels == {}
    assert state.queue_entries["sales"] == [] and state.queues["sales"].abandoned == 1


# --- traffic ------------------------------------------------------------------------------
async def test_traffic_generator_runs_on_the_pbx_clock(pbx: SimulatedPbx, client: Client) -> None:
    traffic = TrafficGenerator(pbx, calls_per_minute=30, rng=random.Random(5))
    traffic.start()
    await pbx.advance(120)
    traffic.stop()
    started = len(traffic.started)
    assert 30 <= started <= 100  # Poisson around 60 calls in two minutes
    await pbx.advance(1000)
    assert pbx.calls == {} and pbx.channels == {}
    scenarios = {s for s, _ in traffic.started}
    assert len(scenarios) >= 4
    await client.sync()
    created = {f["Linkedid"] for f in client.seen if f.get("Event") == "Newchannel"}
    assert created == {linkedid for _, linkedid in traffic.started}


async def test_traffic_step_is_deterministic_and_uses_the_given_numbers() -> None:
    calls = []
    for _ in range(2):
        pbx = SimulatedPbx(clock=ManualClock())
        gen = TrafficGenerator(pbx, 10, rng=random.Random(9), numbers=["+4915112345678"])
        for _ in range(5):
            gen.step()
        calls.append([(s, pbx.calls[lid].params["caller"]) for s, lid in gen.started])
    assert calls[0] == calls[1]
    assert {c for _, c in calls[0]} == {"+4915112345678"}


# --- the lab capture client's own actions, replayed against the simulator ------------------
TRACES = Path(__file__).parent / "data" / "ami-traces"
LAB_SCENARIOS = list(scenario_names("lab"))


def _from(frames: list[AmiFrame], offset: float) -> list[str]:
    """Event names from ``offset`` seconds after the call's first event."""
    stamped = [
        f
        for f in frames
        if "Timestamp" in f and f.get("Event", "SuccessfulAuth") != "SuccessfulAuth"
    ]
    t0 = float(stamped[0]["Timestamp"])
    return [f["Event"] for f in stamped if float(f["Timestamp"]) - t0 >= offset]


def _blocks(data: bytes) -> list[bytes]:
    return [b + b"\r\n\r\n" for b in data.split(b"\r\n\r\n") if b.strip()]


@pytest.mark.parametrize("name", LAB_SCENARIOS)
async def test_replaying_the_lab_clients_actions_gives_the_captured_stream(name: str) -> None:
    """The capture client's .sent.ami, sent to the simulator, yields the .ami event stream."""
    real = iter_capture((TRACES / f"{name}.ami").read_bytes())[1]
    first = next(f for f in real if f.get("Event") == "Newchannel")
    pbx = SimulatedPbx(secret="gw-lab-secret", clock=ManualClock())
    uid = int(first["Uniqueid"].split(".")[1])
    chan = int(re.search(r"-([0-9a-f]{8});", first["Channel"]).group(1), 16)
    pbx.ids = IdAllocator(uid, chan)  # Asterisk's counters where the capture found them
    await pbx.start()
    c = await Client.connect(pbx.port)
    actions = _blocks((TRACES / f"{name}.sent.ami").read_bytes())
    logoff = actions.pop()
    transfer = actions.pop() if name == "blind_transfer" else None
    for block in actions:
        c.writer.write(block)
    await c.sync()
    if transfer is not None:
        await pbx.advance(5.009)  # the capture's client transferred 3 s into the talk
        c.writer.write(transfer)
        await c.sync()
    await pbx.advance(120)
    c.writer.write(logoff)
    await c.until(lambda f: f.get("Response") == "Goodbye")
    await c.close()
    await pbx.stop()
    events = lambda fs: [f["Event"] for f in fs if "Event" in f]  # noqa: E731
    if transfer is None:
        assert events(c.seen) == events(real)
    else:
        # before the transfer the live call runs as inbound_answered, whose capture is a
        # different run of the same dialplan (thread interleaving, no __B102 variable);
        # from the transfer on it is the blind_transfer capture event for event
        assert _from(c.seen, 4.9) == _from(real, 4.9)
        assert set(events(c.seen)) == set(events(real))
    mine = [f for f in c.seen if f.get("Event") in ("Cdr", "Hangup", "DialEnd")]
    theirs = [f for f in real if f.get("Event") in ("Cdr", "Hangup", "DialEnd")]
    for key in ("Channel", "Disposition", "Cause", "DialStatus"):
        assert [f.get(key) for f in mine] == [f.get(key) for f in theirs], key
    billsec = [int(f.get("BillableSeconds", 0)) for f in mine]
    expected = [int(f.get("BillableSeconds", 0)) for f in theirs]
    if transfer is None:
        assert billsec == expected
    else:  # the transfer moment is ours, to the ms: a 12.004 s span may truncate to 11
        assert all(abs(a - b) <= 1 for a, b in zip(billsec, expected, strict=True))
