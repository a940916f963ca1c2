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
* for both, the CPU time per mail of each side (the gateway's whole process, and the SMTP
  server's): on a machine whose cores are all busy, throughput follows the sum, and the side
  with more CPU per mail is the one that limits when each has a core of its own.
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
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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


def cpu_per_mail(before: float | None, after: float | None, n: int) -> str:
    return "?" if before is None or after is None else f"{1000 * (after - before) / n:.2f} ms"


def busy(cpu_seconds: float | None, elapsed: float) -> str:
    """Share of one core a side kept busy: the side near 100 % is the limit."""
    return "?" if cpu_seconds is None else f"{100 * cpu_seconds / elapsed:.0f} % of a core"


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
        if i <= sample:
            tags.append((i, "sample"))
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


async def sink_ceiling(port: int, n: int, mail: MailSettings, message: OutgoingMail) -> float:
    """Messages per second the server takes when nothing but the mailer feeds it: one of the
    tick's messages sent over and over on the same connections (``Mailer.send_many``, as a
    tick sends), no store, no templates."""
    mailer = Mailer(mail)
    started = time.perf_counter()
    results = await mailer.send_many(range(n), lambda _: message, at=MONDAY)
    elapsed = time.perf_counter() - started
    await mailer.close()
    assert all(r is not None and r.status == "sent" for r in results)
    return n / elapsed


async def run(args: argparse.Namespace) -> None:
    parent, child = multiprocessing.Pipe()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(
        target=_serve, args=(child, stop, args.pipelining), daemon=True
    )
    server.start()
    port = parent.recv()
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
        scheduler = CampaignScheduler(
            db, Bus(), mailer, settings, clock, "https://crm.example.com", "Europe/Madrid"
        )
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

        # sending: hold the big campaign, run a small one over the sample
        await store.set_status(revival.id, "paused", SUNDAY)
        sample = await store.create(
            CampaignIn(name="Sample", segment=Segment(tags=["sample"]), steps=[email_step()]),
            "bench",
            SUNDAY,
        )
        await store.set_status(sample.id, "running", SUNDAY)
        await scheduler.tick(SUNDAY)  # enroll the sample (due Monday)
        clock.now = MONDAY + 8 * 3600  # every zone open: Madrid 17:00, New York 11:00
        sink_cpu, own_cpu = process_cpu(server.pid), time.process_time()
        started = time.perf_counter()
        report = await scheduler.tick()
        elapsed = time.perf_counter() - started
        own_after, sink_after = time.process_time(), process_cpu(server.pid)
        sink_used = None if sink_after is None or sink_cpu is None else sink_after - sink_cpu
        print(
            f"scheduler tick: {report.sent:,} e-mails sent ({report.failed} failed) in "
            f"{elapsed:.2f} s = {report.sent / elapsed:,.0f} e-mails/s handed to SMTP "
            f"on {args.connections} connection(s); CPU per mail: gateway "
            f"{cpu_per_mail(own_cpu, own_after, report.sent)}, SMTP server "
            f"{cpu_per_mail(sink_cpu, sink_after, report.sent)}; busy: gateway "
            f"{busy(own_after - own_cpu, elapsed)}, SMTP server {busy(sink_used, elapsed)}"
        )
        sink_cpu, own_cpu = process_cpu(server.pid), time.process_time()
        assert mailer.sample is not None
        ceiling = await sink_ceiling(port, args.send, mail, mailer.sample)
        print(
            f"SMTP server's ceiling (fed by the mailer alone, same connections): "
            f"{ceiling:,.0f} messages/s; CPU per mail: client "
            f"{cpu_per_mail(own_cpu, time.process_time(), args.send)}, SMTP server "
            f"{cpu_per_mail(sink_cpu, process_cpu(server.pid), args.send)} -> the scheduler "
            f"reaches {100 * report.sent / elapsed / ceiling:.0f} % of the server's ceiling"
        )
        await scheduler.close()
        await db.close()
    stop.set()
    received = parent.recv()
    server.join(5)
    print(f"server received {received:,} messages in all")


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
