"""``centralita demo``: the whole product on one machine, no PBX needed.

A simulated Asterisk speaks real AMI over TCP on loopback; the gateway connects to it like to
any PBX (MD5 login, resync, pings); a SQLite file in the state folder holds seeded CRM data;
calls flow on their own and the console shows each one as the gateway sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import secrets
import sys
import time
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from gateway.calls.events import CallAnswered, CallEnded, CallRinging
from gateway.calls.settings import TrackingSettings
from gateway.config import (
    ApiSettings,
    ApiToken,
    DemoSettings,
    GatewayConfig,
    HttpSettings,
    PbxSettings,
    StoreSettings,
)

log = logging.getLogger("gateway.demo")

# the CLI's ``serve(cfg, *, gateway, until)``
Serve = Callable[..., Awaitable[None]]

LAB_TRACKING = TrackingSettings(
    agent_contexts=["agents"], inbound_contexts=["from-pstn"], click_to_call_context="outbound"
)


def printable(text: object) -> str:
    """Strip control characters: a caller ID name must not drive the operator's terminal."""
    return "".join(
        ch if unicodedata.category(ch)[0] != "C" else "\N{REPLACEMENT CHARACTER}"
        for ch in str(text)
    )


class ConsoleView:
    """Prints every call as the gateway sees it: ringing (with the caller card), answered, ended.

    Lines go through one queue and one printer task, so a ringing line that waits for its
    caller lookup is never overtaken by the same call's answered or ended line.
    """

    def __init__(self, gateway: Any, out: TextIO = sys.stdout) -> None:
        self.gw = gateway
        self.out = out
        self._lines: asyncio.Queue[Any] = asyncio.Queue()
        self._announced: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        gateway.bus.subscribe(CallRinging, self.on_ringing)
        gateway.bus.subscribe(CallAnswered, self.on_answered)
        gateway.bus.subscribe(CallEnded, self.on_ended)

    def start(self) -> None:
        self._task = asyncio.create_task(self._printer(), name="demo-console")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _printer(self) -> None:
        while True:
            item = await self._lines.get()
            text = await self._announce(item) if isinstance(item, CallRinging) else item
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp}  {printable(text)}", file=self.out, flush=True)

    def on_ringing(self, e: CallRinging) -> None:
        if not e.ringing:
            return  # ringing stopped: the answered or ended line says why
        if e.linkedid in self._announced:
            self._lines.put_nowait(f"  ringing  {e.linkedid}  now at {', '.join(e.ringing)}")
            return
        self._announced.add(e.linkedid)
        self._lines.put_nowait(e)

    async def _announce(self, e: CallRinging) -> str:
        who = ""
        number = e.caller or ""
        if self.gw.lookup is not None and number:
            try:
                card = await self.gw.lookup.lookup(number)
                if card.known:
                    company = f", {card.company}" if card.company else ""
                    status = f" [{card.lead_status}]" if card.lead_status else ""
                    who = f" — {card.display_name}{company}{status}"
                elif card.country:
                    who = f" — unknown ({card.country})"
            except Exception as exc:  # the console must never take the demo down
                who = f" — lookup failed: {exc}"
        kind = "click-to-call" if e.click_to_call else e.direction
        via = f" via queue {e.queue}" if e.queue else ""
        name = f" {e.caller_name!r}" if e.caller_name else ""
        rang = ", ".join(e.ringing)
        return f"☎ {kind:<8} {number}{name}{who} → {rang}{via}  [{e.linkedid}]"

    def on_answered(self, e: CallAnswered) -> None:
        self._lines.put_nowait(f"  answered {e.linkedid}  by {e.by}")

    def on_ended(self, e: CallEnded) -> None:
        r = e.record
        self._announced.discard(r.linkedid)
        extra = f" transfers={len(r.transfers)}" if r.transfers else ""
        rec = "  ● rec" if r.recordings else ""
        self._lines.put_nowait(
            f"  ended    {r.linkedid}  {r.outcome.value:<9} ring {r.ring_seconds:.1f}s "
            f"talk {r.talk_seconds:.1f}s{extra}{rec}"
        )


def store_summary(db: Any) -> str:
    """What the store holds, for the banner."""
    q = db.reader.execute
    contacts = q("SELECT count(*) FROM people WHERE kind = 'contact'").fetchone()[0]
    leads = q("SELECT count(*) FROM people WHERE kind = 'lead'").fetchone()[0]
    accounts = q("SELECT count(*) FROM accounts").fetchone()[0]
    calls = q("SELECT count(*) FROM calls").fetchone()[0]
    return f"{contacts} contacts, {leads} leads, {accounts} accounts, {calls} calls logged"


def demo_numbers(db: Any, rng: random.Random, known: int = 40) -> list[str]:
    """Caller numbers for the traffic: seeded contacts' numbers as a carrier presents them
    (E.164, or national digits for home-country numbers), plus strangers."""
    rows = db.reader.execute("SELECT e164 FROM phones WHERE person_id IS NOT NULL").fetchall()
    numbers = [r[0][3:] if r[0].startswith("+34") and rng.random() < 0.5 else r[0] for r in rows]
    rng.shuffle(numbers)
    from gateway.sim.traffic import DEFAULT_NUMBERS

    return numbers[:known] + list(DEFAULT_NUMBERS)


async def run_demo(args: argparse.Namespace, serve: Serve) -> None:
    """``serve`` is the command line's server loop, passed in: the CLI imports this module,
    so this module does not import the CLI."""
    from gateway.app import Gateway
    from gateway.panel.users import seed_demo_users
    from gateway.sim.pbx import SimulatedPbx
    from gateway.sim.traffic import TrafficGenerator
    from gateway.store.seed import seed_demo

    state = Path(args.state)  # created by the CLI before the loop starts
    rng = random.Random(args.seed)
    secret = secrets.token_urlsafe(12)
    api_token = secrets.token_urlsafe(18)

    pbx = SimulatedPbx(username="gateway", secret=secret, flavour=args.flavour)
    await pbx.start("127.0.0.1", 0)
    tracking = LAB_TRACKING if args.flavour == "lab" else TrackingSettings()
    cfg = GatewayConfig(
        pbx=[
            PbxSettings(
                name="demo-pbx",
                host="127.0.0.1",
                port=pbx.port,
                username="gateway",
                secret=secret,
                auth="md5",
                ping_interval=5.0,
            )
        ],
        http=HttpSettings(host="127.0.0.1", port=args.port),
        store=StoreSettings(path=str(state / "centralita.db")),
        tracking=tracking,
        api=ApiSettings(tokens=[ApiToken(name="demo", token=api_token)]),
        demo=DemoSettings(calls_per_minute=args.rate, contacts=args.contacts, seed=args.seed),
    )
    gateway = Gateway(cfg)
    traffic: TrafficGenerator | None = None
    console: ConsoleView | None = None
    try:
        await gateway.open()  # a second demo on the same state folder stops here
        assert gateway.db is not None
        if not gateway.db.reader.execute("SELECT 1 FROM people LIMIT 1").fetchall():
            await seed_demo(gateway.db, n=args.contacts, rng=rng)  # a restart keeps what is there
        summary = store_summary(gateway.db)
        users = await seed_demo_users(gateway.db)
        console = ConsoleView(gateway)
        console.start()
        numbers = demo_numbers(gateway.db, rng)
        traffic = TrafficGenerator(pbx, calls_per_minute=args.rate, rng=rng, numbers=numbers)
        _banner(cfg, api_token, summary, users)
        stop = asyncio.Event()
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        traffic.start()
        await serve(cfg, gateway=gateway, until=stop)
    finally:
        # every path out, an error included, stops what was started: nothing keeps running
        if traffic is not None:
            traffic.stop()
        if console is not None:
            await console.stop()
        await pbx.stop()
        if gateway.db is not None and gateway.db.lock is not None and gateway.db.lock.held:
            await gateway.db.close()  # opened, but the server never started (or took it over)
    print("demo stopped; state kept in", state, flush=True)


def _banner(cfg: GatewayConfig, api_token: str, summary: str, users: list[Any]) -> None:
    url = f"http://{cfg.http.host}:{cfg.http.port}"
    pbx = cfg.pbx[0]
    lines = [
        "",
        "Centralita demo",
        f"  panel       {url}/panel/   (sign in as one of the users below)",
        f"  health      {url}/health      metrics {url}/metrics",
        f"  API token   {api_token}   (curl -H 'Authorization: Bearer …' {url}/api/v1/calls)",
        f"  simulated PBX  AMI on {pbx.host}:{pbx.port} (Asterisk Call Manager/11.0.0)",
        f"  store       {cfg.store.path}  ({summary})",
        f"  traffic     {cfg.demo.calls_per_minute:g} calls/minute",
        "  users       " + "   ".join(f"{u} (ext {x})" for u, _, x in users),
        f"  password    {users[0][1] if users else '-'}   (the same for every demo user)",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
