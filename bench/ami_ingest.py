"""AMI ingest benchmark: events per second from a loopback TCP socket to the bus and the tracker.

A capture-shaped stream of many overlapping calls (rendered by the simulated PBX from the real
Asterisk captures, noise included) is sent by a simulated PBX in a *separate process*, so the
figures are the gateway's alone, on one core. Printed side by side:

  raw read     the same bytes read from the socket and thrown away (the ceiling)
  link → bus   AmiLink (panoramisk wire, our parser + event filter) to a bus subscriber
  → tracker    the same, with every event fed to the CallTracker, counting finished calls
  link, all    the link publishing every event unfiltered (what a "see everything" user gets)

Usage: python bench/ami_ingest.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.ami.frames import FrameParser
from gateway.ami.link import LINK_EVENTS, AmiLink
from gateway.bus import Bus
from gateway.calls.events import CallEnded
from gateway.calls.settings import TrackingSettings
from gateway.calls.tracker import CallTracker, event_filter
from gateway.config import PbxSettings
from gateway.sim.render import session_header
from gateway.sim.traffic import render_traffic

START = 1795346324.0
LAB = TrackingSettings(
    agent_contexts=["agents"], inbound_contexts=["from-pstn"], click_to_call_context="outbound"
)


def build_stream(n_calls: int) -> bytes:
    data = render_traffic(n_calls, START, random.Random(42), calls_per_second=50.0)
    return data[len(session_header(START)) :]


# -- the peer, in its own process --------------------------------------------------------------


def _peer(body: bytes, port_out: mp.connection.Connection, go: mp.connection.Connection) -> None:
    from gateway.sim.clock import ManualClock
    from gateway.sim.pbx import SimulatedPbx

    async def main() -> None:
        pbx = SimulatedPbx(secret="bench", clock=ManualClock(START))
        await pbx.start()
        raw = await asyncio.start_server(lambda r, w: _raw_writer(body, w), "127.0.0.1", 0)
        port_out.send((pbx.port, raw.sockets[0].getsockname()[1]))
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def on_go() -> None:
            msg = go.recv()
            if msg == "stop":
                done.set()
            else:
                pbx.inject(body)

        loop.add_reader(go.fileno(), on_go)
        await done.wait()
        await pbx.stop()
        raw.close()

    asyncio.run(main())


async def _raw_writer(body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(body)
    await writer.drain()
    writer.close()


# -- the measurements --------------------------------------------------------------------------


async def raw_read(port: int, size: int) -> float:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    got = 0

    class Counter(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            nonlocal got
            got += len(data)
            if got >= size and not done.done():
                done.set_result(time.perf_counter())

    t0 = time.perf_counter()
    await loop.create_connection(Counter, "127.0.0.1", port)
    t1 = await done
    return t1 - t0


async def through_link(
    port: int, go: mp.connection.Connection, expected: int, *, track: bool, filtered: bool
) -> tuple[float, int, int]:
    bus = Bus()
    settings = PbxSettings(
        name="bench", port=port, username="gateway", secret="bench", queues=False,
        ping_interval=60,
    )  # fmt: skip
    link = AmiLink(
        settings, bus, event_filter=event_filter(LAB, also=LINK_EVENTS) if filtered else None
    )
    seen = 0
    ended = 0
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    tracker = CallTracker(LAB, pbx="bench")

    def count(event: AmiEvent) -> None:
        nonlocal seen
        seen += 1
        if seen >= expected and not finished.done():
            finished.set_result(time.perf_counter())

    def feed(event: AmiEvent) -> None:
        nonlocal ended
        for e in tracker.feed(event.frame, event.received_at):
            if type(e) is CallEnded:
                ended += 1
        count(event)

    bus.subscribe(AmiEvent, feed if track else count)
    ready = asyncio.Event()
    bus.subscribe(ResyncSnapshot, lambda _: ready.set())
    link.start()
    await ready.wait()
    seen = 0
    t0 = time.perf_counter()
    go.send("go")
    t1 = await finished
    await link.stop()
    return t1 - t0, seen, ended


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000, help="calls in the stream")
    args = ap.parse_args()

    body = build_stream(args.calls)
    probe = FrameParser()
    n_events = len(probe.feed(body))
    kept = FrameParser(drop=event_filter(LAB, also=LINK_EVENTS))
    n_kept = len(kept.feed(body))
    print(f"stream: {args.calls} calls, {n_events:,} events, {len(body) / 1e6:.1f} MB "
          f"({len(body) / n_events:.0f} B/event); the filter keeps {n_kept:,} "
          f"({100 * n_kept / n_events:.0f}%)")  # fmt: skip

    port_out, port_in = mp.Pipe()
    go_out, go_in = mp.Pipe()
    peer = mp.get_context("fork").Process(target=_peer, args=(body, port_in, go_out), daemon=True)
    peer.start()
    ami_port, raw_port = port_out.recv()

    async def run() -> None:
        dt = await raw_read(raw_port, len(body))
        print(f"raw read      {n_events / dt:>10,.0f} events/s  {len(body) / dt / 1e6:7.0f} MB/s"
              "  (socket ceiling, nothing parsed)")  # fmt: skip
        for label, track, filtered in (
            ("link → bus   ", False, True),
            ("→ tracker    ", True, True),
            ("link, all    ", False, False),
        ):
            expected = n_kept if filtered else n_events
            dt, seen, ended = await through_link(
                ami_port, go_in, expected, track=track, filtered=filtered
            )
            extra = f"  {ended} calls ended, {ended / dt:,.0f} calls/s" if track else ""
            print(f"{label} {n_events / dt:>10,.0f} events/s  ({seen:,} published in "
                  f"{dt:.2f}s){extra}")  # fmt: skip
        go_in.send("stop")

    asyncio.run(run())
    peer.join(5)


if __name__ == "__main__":
    main()
