"""Campaign scheduler benchmark: 100,000 lost leads in a revival campaign, a real SMTP server.

    python bench/campaigns.py                       # 100,000 leads, 5,000 e-mails sent
    python bench/campaigns.py --leads 20000 --send 2000 --connections 4
    python bench/campaigns.py --pipelining          # the server offers PIPELINING (Postfix)

Builds a temporary store with ``--leads`` lost ("no budget") leads in Spain, Mexico and the
US (plus 10 % that do not match), starts an aiosmtpd server in its own process on loopback
(its own process: in this one it would compete with the gateway for the interpreter), then
prints:

* the time to enroll every matching lead and plan the day (``CampaignScheduler.plan_day``:
  each lead's zone from country and number, due at its next opening hour; goal < 10 s);
* e-mails handed to SMTP per second by a scheduler tick (``--send`` members due: claim,
  render, send, record, move on), with ``--connections`` SMTP connections;
* the SMTP server's own ceiling: one message sent over and over by the gateway's mailer alone
  on the same number of connections (no store, no templates). When the two are close, the
  server is the limit, not the scheduler;
* the gateway alone: the same tick over another sample, the server replaced by a bare SMTP
  responder (its own process too) that answers every command at once and throws each message
  away at a small fraction of a real server's cost. What the gateway hands over then is its
  own limit; when it is above the server's ceiling, the server, not the gateway, is the limit;
* for each, the CPU time per mail of each side (the gateway's whole process, and the SMTP
  server's) and how busy each kept a core. On this 2-core machine the tick against the real
  server stays below the server's ceiling: each command waits for a reply, and the two
  processes take turns more than they overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.bus import Bus
from gateway.campaigns.mailer import Mailer, OutgoingMail, SendResult
from gateway.campaigns.model import CampaignIn, EmailTemplate, Segment, SendEmail, Wait
from gateway.campaigns.scheduler import CampaignScheduler
from gateway.campaigns.settings import CampaignSettings, MailSettings
from gateway.campaigns.store import CampaignStore
from gateway.store.db import Database

MADRID = ZoneInfo("Europe/Madrid")
# Sunday 9 March 2025 at noon: every lead is due at its Monday opening
SUNDAY = datetime(2025, 3, 9, 12, 0, tzinfo=MADRID).timestamp()
MONDAY = datetime(2025, 3, 10, 9, 0, tzinfo=MADRID).timestamp()
FIRST = ["Lucía", "Javier", "Marta", "Carlos", "Elena", "Oliver", "Amelia", "James", "Emma"]
COUNTRIES = [("ES", "+346{:08d}"), ("MX", "+5255{:08d}"), ("US", "+1212{:07d}")]

HTML = """<html><body><p>Hola {{ lead.first_name }},</p>
<p>Hace un tiempo nos dijiste que no era el momento por presupuesto. Tenemos un plan nuevo
para {{ lead.company or 'tu empresa' }} que quizá encaje ahora.</p>
<p>Un saludo,<br>{{ owner.name or sender.name }}</p></body></html>"""


# -- the SMTP server, in its own process ---------------------------------------------------


def process_cpu(pid: int) -> float | None:
    """CPU seconds a process has used (Linux /proc), to say which side is busier per mail."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class Measured:
    """A timed run: the mails it handed over, and the CPU each side spent on them."""

    mails: int
    elapsed: float
    own_cpu: float
    server_cpu: float | None  # None where /proc cannot tell

    @property
    def rate(self) -> float:
        return self.mails / self.elapsed

    def cpu(self, own: str) -> str:
        """CPU per mail of each side, and how busy each kept a core: on a machine whose cores
        are all busy, throughput follows the sum; the side near 100 % of a core limits."""

        def per_mail(used: float | None) -> str:
            return "?" if used is None else f"{1000 * used / self.mails:.2f} ms"

        def busy(used: float | None) -> str:
            return "?" if used is None else f"{100 * used / self.elapsed:.0f} % of a core"

        return (
            f"CPU per mail: {own} {per_mail(self.own_cpu)}, SMTP server "
            f"{per_mail(self.server_cpu)}; busy: {own} {busy(self.own_cpu)}, SMTP server "
            f"{busy(self.server_cpu)}"
        )


async def measure(work: Awaitable[int], server_pid: int) -> Measured:
    """Times ``work`` (which returns how many mails it handed over) and the CPU used meanwhile
    by this process and the server's."""
    server_before, own_before = process_cpu(server_pid), time.process_time()
    started = time.perf_counter()
    mails = await work
    elapsed = time.perf_counter() - started
    own_after, server_after = time.process_time(), process_cpu(server_pid)
    server_cpu = (
        None if server_before is None or server_after is None else server_after - server_before
    )
    return Measured(mails, elapsed, own_after - own_before, server_cpu)


def _serve(port_out: Any, stop: Any, pipelining: bool) -> None:
    from aiosmtpd.smtp import SMTP

    received = 0

    class Handler:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            if pipelining:  # as Postfix and Exim do; aiosmtpd reads pipelined commands in order
                return [*responses[:-1], "250-PIPELINING", responses[-1]]
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            nonlocal received
            received += 1
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, stop.wait)
        server.close()

    asyncio.run(serve())
    port_out.send(received)


def _serve_bare(port_out: Any, stop: Any, pipelining: bool) -> None:
    """A bare SMTP responder: every command answered at once, each message taken and thrown
    away, at a small fraction of a real server's cost per message. Fed by a tick, it shows
    how many e-mails a second the gateway itself can hand over: what the gateway would reach
    with a server that is never the limit."""
    received = 0

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""
            self.in_data = False
            transport.write(b"220 bare ESMTP\r\n")

        def data_received(self, data: bytes) -> None:
            nonlocal received
            buffer, replies = self.buffer + data, []
            while True:
                if self.in_data:  # the content, up to the lone dot
                    if buffer.startswith(b".\r\n"):
                        end = 3
                    else:
                        end = buffer.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        end += 5
                    buffer, self.in_data = buffer[end:], False
                    received += 1
                    replies.append(b"250 OK\r\n")
                    continue
                end = buffer.find(b"\r\n")
                if end < 0:
                    break
                verb, buffer = buffer[:4].upper(), buffer[end + 2 :]
                if verb == b"EHLO":
                    extension = b"250-PIPELINING\r\n" if pipelining else b""
                    replies.append(b"250-bare\r\n" + extension + b"250 8BITMIME\r\n")
                elif verb == b"DATA":
                    self.in_data = True
                    replies.append(b"354 go on\r\n")
                elif verb == b"QUIT":
                    replies.append(b"221 bye\r\n")
                    self.transport.write(b"".join(replies))
                    self.transport.close()
                    return
                else:  # HELO, MAIL, RCPT, RSET, NOOP
                    replies.append(b"250 OK\r\n")
            self.buffer = buffer
            if replies:
                self.transport.write(b"".join(replies))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Bare, "127.0.0.1", 0)
        port_out.send(server.sockets[0].getsockname()[1])
        await loop.run_in_executor(None, stop.wait)
        server.close()

    asyncio.run(serve())
    port_out.send(received)


def start_server(target: Any, pipelining: bool) -> tuple[Any, Any, Any, int]:
    """A server process on loopback: (process, its pipe, its stop event, its port)."""
    parent, child = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=target, args=(child, stop, pipelining), daemon=True)
    server.start()
    return server, parent, stop, parent.recv()


def stop_server(server: Any, pipe: Any, stop: Any) -> int:
    """Stops a server process; the messages it received."""
    stop.set()
    received = pipe.recv()
    server.join(5)
    return received


# -- the store -----------------------------------------------------------------------------


def build_store(path: Path, leads: int, sample: int) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN")
    now = SUNDAY - 30 * 86400
    people = []
    phones = []
    emails = []
    tags = []
    total = leads + leads // 10
    for i in range(1, total + 1):
        matching = i <= leads
        country, pattern = COUNTRIES[i % 3]
        people.append(
            (
                i,
                FIRST[i % len(FIRST)],
                f"Apellido{i}",
                "lost" if matching else "contacted",
                "no_budget" if matching else "",
                country,
                f"agente{i % 40}",  # a call center's agents share the leads
                now,
                now,
                now if matching else None,
            )
        )
        e164 = pattern.format(i)
        phones.append((i, e164, e164))
        emails.append((i, f"lead{i}@example.com", f"lead{i}@example.com"))
        if i <= 2 * sample:  # one sample for the tick on the server, one for the bare one
            tags.append((i, "sample" if i <= sample else "bare"))
    con.executemany(
        "INSERT INTO people (id, kind, first_name, last_name, status, lost_reason, source,"
        " country, owner, created_at, updated_at, lost_at)"
        " VALUES (?, 'lead', ?, ?, ?, ?, 'import', ?, ?, ?, ?, ?)",
        people,
    )
    con.executemany(
        "INSERT INTO phones (person_id, raw, e164, type) VALUES (?, ?, ?, 'mobile')", phones
    )
    con.executemany("INSERT INTO emails (person_id, email, email_lower) VALUES (?, ?, ?)", emails)
    con.executemany("INSERT INTO person_tags (person_id, tag) VALUES (?, ?)", tags)
    con.execute("COMMIT")
    con.close()


def email_step() -> SendEmail:
    return SendEmail(
        templates={
            "es": EmailTemplate(subject="{{ lead.first_name }}, ¿hablamos?", html=HTML),
            "en": EmailTemplate(subject="{{ lead.first_name }}, shall we talk?", html=HTML),
        }
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the runs ------------------------------------------------------------------------------


class SampleKeeper(Mailer):
    """The gateway's mailer, keeping the first message a tick made: the ceiling is measured
    with that message, so the server's work per mail is the same in both runs (a smaller
    message would flatter the server's ceiling)."""

    sample: OutgoingMail | None = None

    async def send_many(  # type: ignore[override]
        self, items: Any, make: Any, *, at: float | None = None
    ) -> list[SendResult | None]:
        def keep(item: Any) -> OutgoingMail | None:
            message = make(item)
            if self.sample is None:
                self.sample = message
            return message

        return await super().send_many(items, keep, at=at)


async def feed_only(mailer: Mailer, n: int, message: OutgoingMail) -> int:
    """The server's ceiling: what it takes when nothing but the mailer feeds it, one of the
    tick's messages sent over and over on the same connections (``Mailer.send_many``, as a
    tick sends), no store, no templates."""
    results = await mailer.send_many(range(n), lambda _: message, at=MONDAY)
    assert all(r is not None and r.status == "sent" for r in results)
    return n


async def sent_by(scheduler: CampaignScheduler) -> int:
    """A tick over the due sample: the e-mails it handed to SMTP (none may fail)."""
    report = await scheduler.tick()
    assert report.failed == 0, report
    return report.sent


async def run(args: argparse.Namespace) -> None:
    server, pipe, stop, port = start_server(_serve, args.pipelining)
    bare, bare_pipe, bare_stop, bare_port = start_server(_serve_bare, args.pipelining)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        db = await Database.open(path)  # creates the schema
        await db.close()
        t0 = time.perf_counter()
        build_store(path, args.leads, args.send)
        print(
            f"store: {args.leads:,} matching leads (+{args.leads // 10:,} others) "
            f"built in {time.perf_counter() - t0:.1f} s"
        )

        clock = Clock(SUNDAY)
        db = await Database.open(path, clock=clock)
        mail = MailSettings(
            host="127.0.0.1",
            port=port,
            connections=args.connections,
            from_address="ventas@example.com",
        )
        settings = CampaignSettings(batch_size=args.batch)
        mailer = SampleKeeper(mail)

        def scheduler_with(mailer: Mailer) -> CampaignScheduler:
            return CampaignScheduler(
                db, Bus(), mailer, settings, clock, "https://crm.example.com", "Europe/Madrid"
            )

        scheduler = scheduler_with(mailer)
        store = CampaignStore(db)
        revival = await store.create(
            CampaignIn(
                name="Revival: no budget",
                segment=Segment(statuses=["lost"], lost_reasons=["no_budget"]),
                steps=[email_step(), Wait(days=3), email_step()],
            ),
            "bench",
            SUNDAY,
        )
        await store.set_status(revival.id, "running", SUNDAY)
        plan = await scheduler.plan_day(SUNDAY)
        print(
            f"enroll + plan a day: {plan.seconds:.2f} s for {plan.enrolled:,} leads "
            f"({plan.due:,} due in 24 h: {plan.emails:,} e-mails)  [goal < 10 s]"
        )

        async def sample_due(tag: str) -> None:
            """A small campaign over one tagged sample, its members due now."""
            clock.now = SUNDAY
            campaign = await store.create(
                CampaignIn(name=tag, segment=Segment(tags=[tag]), steps=[email_step()]),
                "bench",
                SUNDAY,
            )
            await store.set_status(campaign.id, "running", SUNDAY)
            await scheduler.tick(SUNDAY)  # enroll the sample (due Monday)
            clock.now = MONDAY + 8 * 3600  # every zone open: Madrid 17:00, New York 11:00

        # sending: hold the big campaign, run a small one over the sample
        await store.set_status(revival.id, "paused", SUNDAY)
        await sample_due("sample")
        tick = await measure(sent_by(scheduler), server.pid)
        print(
            f"scheduler tick: {tick.mails:,} e-mails sent in {tick.elapsed:.2f} s = "
            f"{tick.rate:,.0f} e-mails/s handed to SMTP on {args.connections} connection(s); "
            f"{tick.cpu('gateway')}"
        )
        assert mailer.sample is not None
        feeder = Mailer(mail)
        ceiling = await measure(feed_only(feeder, args.send, mailer.sample), server.pid)
        await feeder.close()
        print(
            f"SMTP server's ceiling (fed by the mailer alone, same connections): "
            f"{ceiling.rate:,.0f} messages/s; {ceiling.cpu('client')} -> the scheduler "
            f"reaches {100 * tick.rate / ceiling.rate:.0f} % of the server's ceiling"
        )

        # the same tick, the server replaced by one that is never the limit
        await scheduler.close()
        scheduler = scheduler_with(Mailer(msgspec.structs.replace(mail, port=bare_port)))
        await sample_due("bare")
        alone = await measure(sent_by(scheduler), bare.pid)
        verdict = (
            "the SMTP server is the limit, not the gateway"
            if alone.rate > ceiling.rate
            else "the gateway is the limit"
        )
        print(
            f"the gateway alone (the same tick, a bare SMTP responder that takes each message "
            f"at almost no cost): {alone.rate:,.0f} e-mails/s; {alone.cpu('gateway')} -> the "
            f"gateway can hand over {alone.rate / ceiling.rate:.2f} x the server's ceiling: "
            f"{verdict}"
        )
        await scheduler.close()
        await db.close()
    received = stop_server(server, pipe, stop)
    print(
        f"servers received {received:,} (SMTP server) and "
        f"{stop_server(bare, bare_pipe, bare_stop):,} (bare responder) messages in all"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--leads", type=int, default=100_000)
    p.add_argument("--send", type=int, default=5_000, help="e-mails sent in the send test")
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument(
        "--pipelining",
        action="store_true",
        help="the server offers PIPELINING (RFC 2920), as Postfix and Exim do",
    )
    p.add_argument("--verbose", action="store_true", help="the scheduler's timing per batch")
    args = p.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.WARNING)
        logging.getLogger("gateway.campaigns").setLevel(logging.DEBUG)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
