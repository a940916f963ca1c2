"""``centralita demo``: the whole product on one machine, no PBX needed.

A simulated Asterisk speaks real AMI over TCP on loopback; the gateway connects to it like to
any PBX (MD5 login, resync, pings); a SQLite file in the state folder holds seeded CRM data;
calls flow on their own and the console shows each one as the gateway sees it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import logging
import math
import random
import secrets
import sys
import time
import unicodedata
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from gateway.calls.events import CallAnswered, CallEnded, CallRinging
from gateway.calls.settings import TrackingSettings
from gateway.campaigns.settings import CampaignSettings, MailSettings, OpeningHours
from gateway.config import (
    ApiSettings,
    ApiToken,
    DemoSettings,
    GatewayConfig,
    HttpSettings,
    PbxSettings,
    RecordingSettings,
    StoreSettings,
)

log = logging.getLogger("gateway.demo")

# the CLI's ``serve(cfg, *, gateway, until)``
Serve = Callable[..., Awaitable[None]]

LAB_TRACKING = TrackingSettings(
    agent_contexts=["agents"], inbound_contexts=["from-pstn"], click_to_call_context="outbound"
)


# the demo's campaigns send at any hour of any day: a visitor at 22:00 on a Sunday still sees
# the mails arrive (a real gateway keeps the business hours of its config)
DEMO_CAMPAIGNS = CampaignSettings(
    business_hours=[
        OpeningHours(
            days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59"
        )
    ],
    tick_seconds=10.0,
)


def demo_mail_settings(port: int) -> MailSettings:
    """``mail:`` pointing at the demo's own SMTP sink on loopback."""
    return MailSettings(
        host="127.0.0.1",
        port=port,
        from_address="ventas@centralita-demo.example",
        from_name="Centralita (demo)",
        reply_to="ventas@centralita-demo.example",
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


RATE = 8000  # what Asterisk's MixMonitor writes: 8 kHz mono 16-bit PCM
KEEP_RECORDINGS = 500  # newest files kept in the demo's folder; older calls lose theirs


def _syllables(rng: random.Random) -> list[bytes]:
    """A few voiced "syllables": a pitch with two formants and a swell, 16-bit samples."""
    out = []
    for _ in range(8):
        pitch, f1, f2 = rng.uniform(95, 220), rng.uniform(300, 800), rng.uniform(900, 2400)
        n = int(RATE * rng.uniform(0.12, 0.3))
        samples = array.array("h")
        for i in range(n):
            t = i / RATE
            swell = math.sin(math.pi * i / n)
            v = (
                0.5 * math.sin(2 * math.pi * pitch * t)
                + 0.3 * math.sin(2 * math.pi * f1 * t)
                + 0.15 * math.sin(2 * math.pi * f2 * t)
                + 0.05 * (rng.random() * 2 - 1)
            )
            samples.append(int(9000 * swell * v))
        out.append(samples.tobytes())
    return out


def write_demo_recording(path: Path, seconds: float, seed: int = 0) -> None:
    """A WAV of ``seconds`` of speech-like sound (phrases of syllables and pauses), so the
    panel's player has something real to play, of the call's length."""
    rng = random.Random(seed)
    syllables = _syllables(rng)
    total = max(int(RATE * seconds), RATE // 2) * 2  # bytes
    chunks: list[bytes] = []
    size = 0
    while size < total:
        if rng.random() < 0.15:  # a pause between phrases
            chunk = bytes(2 * int(RATE * rng.uniform(0.2, 0.7)))
        else:
            chunk = rng.choice(syllables)
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)[:total]
    tmp = path.with_suffix(".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data)
    tmp.replace(path)  # the panel never serves a half-written file


class DemoRecorder:
    """Writes a WAV for each recording of a finished call into the demo's recordings folder
    (where the simulated MixMonitor says it wrote it), the length of the call's talk time."""

    def __init__(self, gateway: Any, directory: Path) -> None:
        self.directory = directory.resolve()
        self.written = 0
        self._tasks: set[asyncio.Future[None]] = set()
        gateway.bus.subscribe(CallEnded, self.on_ended)

    def on_ended(self, e: CallEnded) -> None:
        r = e.record
        for i, name in enumerate(r.recordings):
            path = Path(name)
            if not path.is_absolute():
                path = self.directory / path
            if path.parent.resolve() != self.directory or path.suffix != ".wav":
                continue  # only ever write inside our folder
            seconds = max(r.talk_seconds, 1.0)
            seed = hash((r.linkedid, i)) & 0xFFFF
            fut = asyncio.get_running_loop().run_in_executor(None, self._write, path, seconds, seed)
            self._tasks.add(fut)
            fut.add_done_callback(self._tasks.discard)

    def _write(self, path: Path, seconds: float, seed: int) -> None:
        try:
            write_demo_recording(path, seconds, seed)
            self.written += 1
            files = sorted(self.directory.glob("*.wav"), key=lambda p: p.stat().st_mtime)
            for old in files[:-KEEP_RECORDINGS]:
                old.unlink(missing_ok=True)
        except OSError as exc:  # a full disk must not stop the demo
            log.warning("demo recording %s not written: %s", path.name, exc)

    async def settled(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def store_summary(db: Any) -> str:
    """What the store holds, for the banner."""
    rows = await db.conn.execute_fetchall(
        "SELECT (SELECT count(*) FROM people WHERE kind = 'contact'),"
        " (SELECT count(*) FROM people WHERE kind = 'lead'),"
        " (SELECT count(*) FROM accounts), (SELECT count(*) FROM calls)"
    )
    contacts, leads, accounts, calls = tuple(next(iter(rows)))
    return f"{contacts} contacts, {leads} leads, {accounts} accounts, {calls} calls logged"


async def demo_numbers(db: Any, rng: random.Random, known: int = 40) -> list[str]:
    """Caller numbers for the traffic: seeded contacts' numbers as a carrier presents them
    (E.164, or national digits for home-country numbers), plus strangers."""
    rows = await db.conn.execute_fetchall(
        "SELECT e164 FROM phones WHERE person_id IS NOT NULL ORDER BY id"
    )
    numbers = [r[0][3:] if r[0].startswith("+34") and rng.random() < 0.5 else r[0] for r in rows]
    rng.shuffle(numbers)
    from gateway.sim.traffic import DEFAULT_NUMBERS

    return numbers[:known] + list(DEFAULT_NUMBERS)


async def run_demo(args: argparse.Namespace, serve: Serve) -> None:
    """``serve`` is the command line's server loop, passed in: the CLI imports this module,
    so this module does not import the CLI."""
    from gateway.app import Gateway
    from gateway.demo_mailbox import DemoMailbox
    from gateway.panel.users import seed_demo_users
    from gateway.sim.traffic import TrafficGenerator
    from gateway.sim.transfer import AttendedTransferPbx
    from gateway.store.seed import seed_demo, seed_demo_campaigns

    state = Path(args.state)  # created by the CLI before the loop starts
    rng = random.Random(args.seed)
    secret = secrets.token_urlsafe(12)
    api_token = secrets.token_urlsafe(18)

    # the full simulator: attended transfers can be completed or cancelled from the desk
    pbx = AttendedTransferPbx(username="gateway", secret=secret, flavour=args.flavour)
    recordings = state / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    pbx.recordings_dir = f"{recordings.resolve()}/"  # MixMonitor "writes" here
    await pbx.start("127.0.0.1", 0)
    mailbox = DemoMailbox()  # the campaigns' mail goes here, over real SMTP, and stays here
    await mailbox.start("127.0.0.1", 0)
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
        recordings=RecordingSettings(directory=str(recordings.resolve())),
        tracking=tracking,
        api=ApiSettings(tokens=[ApiToken(name="demo", token=api_token)]),
        demo=DemoSettings(calls_per_minute=args.rate, contacts=args.contacts, seed=args.seed),
        campaigns=DEMO_CAMPAIGNS,
        mail=demo_mail_settings(mailbox.port),
    )
    gateway = Gateway(cfg)
    gateway.demo_mailbox = mailbox  # the panel shows it: "Mailbox (demo)"
    traffic: TrafficGenerator | None = None
    console: ConsoleView | None = None
    try:
        await gateway.open()  # a second demo on the same state folder stops here
        assert gateway.db is not None
        if not await gateway.db.conn.execute_fetchall("SELECT 1 FROM people LIMIT 1"):
            await seed_demo(gateway.db, n=args.contacts, rng=rng)  # a restart keeps what is there
        await seed_demo_campaigns(gateway.db)  # none when the store has campaigns already
        summary = await store_summary(gateway.db)
        users = await seed_demo_users(gateway.db)
        console = ConsoleView(gateway)
        console.start()
        DemoRecorder(gateway, recordings)
        numbers = await demo_numbers(gateway.db, rng)
        traffic = TrafficGenerator(pbx, calls_per_minute=args.rate, rng=rng, numbers=numbers)
        _banner(cfg, api_token, summary, users, mailbox.port)
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
        await mailbox.close()
        if gateway.db is not None and gateway.db.lock is not None and gateway.db.lock.held:
            await gateway.db.close()  # opened, but the server never started (or took it over)
    print("demo stopped; state kept in", state, flush=True)


def _banner(
    cfg: GatewayConfig, api_token: str, summary: str, users: list[Any], smtp_port: int = 0
) -> None:
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
        f"  campaigns   two running; their e-mails go to a local SMTP sink (127.0.0.1:{smtp_port})"
        " -- sign in as sofia: Campaigns, Mailbox (demo)",
        "  users       " + "   ".join(f"{u} (ext {x})" for u, _, x in users),
        f"  password    {users[0][1] if users else '-'}   (the same for every demo user)",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)
