"""Replies to campaign e-mails read from a real IMAP server (Dovecot on loopback): a reply
makes its lead leave, automatic answers do not, a delivery failure report marks the address
bounced, nothing is handled twice across restarts, and a mailbox that refuses the login is a
/health entry and a log line, never the password.

The gateway is real (SQLite file, SMTP sink, scheduler on a fake clock the test moves); the
test delivers messages into the mailbox with IMAP APPEND and calls ``poll()`` itself. The
watcher's own loop also polls once at start-up: assertions are on what happened in the store
and the mailbox, not on which poll did it."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, create_app
from gateway.campaigns.model import Wait
from gateway.campaigns.replies import KEYWORD, MailboxUnavailable, ReplyWatcher, imap_utf7
from gateway.campaigns.settings import CampaignSettings, MailSettings, ReplySettings
from gateway.campaigns.store import CampaignStore
from gateway.config import GatewayConfig, StoreSettings, parse_config
from gateway.errors import ConfigError
from gateway.store.db import Database
from tests.campaign_fixtures import SmtpSink, smtp_sink  # noqa: F401
from tests.imap_fixtures import PASSWORD, TLS_DIR, USER, Dovecot, client_tls, dovecot  # noqa: F401
from tests.test_campaign_scheduler import DAY, FRI_0900, MON_0900, Clock, World, email

SEEN = "\\Seen"


class ReplyWorld(World):
    """The scheduler's test world, with the reply mailbox configured (IMAPS, the test CA)."""

    def __init__(self, tmp_path: Path, sink: SmtpSink, clock: Clock, imap: Dovecot) -> None:
        super().__init__(tmp_path, sink, clock)
        self.imap = imap
        self.cfg = GatewayConfig(
            store=StoreSettings(path=str(tmp_path / "store.db")),
            campaigns=CampaignSettings(tick_seconds=3600),
            mail=MailSettings(
                host=sink.host,
                port=sink.port,
                from_address="ventas@example.com",
                reply_to="respuestas@example.com",
                replies=ReplySettings(
                    host=imap.host,
                    port=imap.tls_port,
                    security="tls",
                    username=USER,
                    password=PASSWORD,
                    ca_file=str(TLS_DIR / "cert.pem"),
                    interval_s=3600,
                ),
            ),
        )

    @property
    def watcher(self) -> ReplyWatcher:
        assert self.gw is not None and self.gw.replies is not None
        return self.gw.replies

    def sent_to(self, address: str) -> EmailMessage:
        found = [m for m in self.sink.messages if str(m["To"]) == address]
        assert len(found) == 1, f"{len(found)} messages to {address}"
        return found[0]

    async def replied(self) -> dict[int, float | None]:
        """{person id: replied_at} of each e-mail run."""
        rows = await self.rows(
            "SELECT m.person_id, r.replied_at FROM campaign_step_runs r"
            " JOIN campaign_members m ON m.id = r.member_id WHERE r.kind = 'email'"
        )
        return {r[0]: r[1] for r in rows}

    async def recorded(self) -> list[tuple[Any, ...]]:
        return [
            tuple(r)
            for r in await self.rows(
                "SELECT person_id, kind, sender FROM campaign_replies ORDER BY uid"
            )
        ]


@pytest.fixture
async def world(
    tmp_path: Path,
    smtp_sink: SmtpSink,  # noqa: F811
    dovecot: Dovecot,  # noqa: F811
) -> AsyncIterator[ReplyWorld]:
    w = ReplyWorld(tmp_path, smtp_sink, Clock(FRI_0900 - 2 * 3600), dovecot)
    await w.open()
    yield w
    await w.close()


def answer(
    original: EmailMessage,
    *,
    sender: str,
    subject: str | None = None,
    references_only: bool = False,
    headers: dict[str, str] | None = None,
    body: str = "Me interesa, llamadme.",
) -> bytes:
    """A message answering ``original`` as a mail client would write it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "respuestas@example.com"
    msg["Subject"] = subject if subject is not None else f"Re: {original['Subject']}"
    msg["Message-ID"] = f"<{abs(hash((sender, body, subject)))}@cliente.example>"
    their = str(original["Message-ID"])
    if references_only:  # some clients send only References, ours among older ones
        msg["References"] = f"<older-thread@cliente.example> {their}"
    else:
        msg["In-Reply-To"] = their
        msg["References"] = their
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return bytes(msg)


def dsn(
    original: EmailMessage,
    *,
    action: str,
    status: str,
    recipient: str,
    returned: str = "headers",
) -> bytes:
    """A delivery status notification (RFC 3464) about ``original``, as Postfix writes it
    (``returned='headers'``: text/rfc822-headers) or Exim (``'message'``: message/rfc822,
    Final-Recipient only)."""
    head = (
        f"From: {original['From']}\nTo: {original['To']}\nSubject: {original['Subject']}\n"
        f"Message-ID: {original['Message-ID']}\n"
    )
    if returned == "headers":
        third = f"Content-Type: text/rfc822-headers\n\n{head}"
        rcpt = f"Final-Recipient: rfc822; {recipient}\nOriginal-Recipient: rfc822;{recipient}\n"
    else:
        third = f"Content-Type: message/rfc822\n\n{head}\nHola...\n"
        rcpt = f"Final-Recipient: rfc822;{recipient}\n"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.es>\n"
        "To: respuestas@example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="RPT"\n'
        "\n--RPT\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "\n--RPT\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.es\n\n"
        f"{rcpt}Action: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} <{recipient}>: user unknown\n"
        f"\n--RPT\n{third}\n--RPT--\n"
    ).encode()


async def test_a_reply_makes_the_lead_leave_and_the_next_step_is_never_sent(
    world: ReplyWorld,
) -> None:
    replies = await world.lead("Lucía", emails=["lucia@example.es"])
    threads = await world.lead("Tomás", emails=["tomas@example.es"])
    stays = await world.lead("Sara", emails=["sara@example.es"])
    cid = await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    assert sorted(world.to()) == ["lucia@example.es", "sara@example.es", "tomas@example.es"]
    assert world.sent_to("lucia@example.es")["Reply-To"] == "respuestas@example.com"

    world.clock.now = FRI_0900 + 3600
    reply = world.imap.deliver(
        answer(world.sent_to("lucia@example.es"), sender="Lucía <lucia@example.es>")
    )
    # Thunderbird-style: only References, our Message-ID among others; from another address
    thread = world.imap.deliver(
        answer(
            world.sent_to("tomas@example.es"),
            sender="Tomás <tomas.personal@correo.example>",
            references_only=True,
        )
    )
    stranger = world.imap.deliver(
        b"From: proveedor@example.net\nSubject: Factura\nMessage-ID: <f1@example.net>\n\nHola\n"
    )
    await world.watcher.poll()

    replied = await world.replied()
    assert replied[replies] == FRI_0900 + 3600 and replied[threads] == FRI_0900 + 3600
    assert replied[stays] is None
    assert await world.recorded() == [
        (replies, "reply", "lucia@example.es"),
        (threads, "reply", "tomas.personal@correo.example"),
    ]
    # replies stay unread for the people who read this mailbox; every message is marked ours
    flags = world.imap.flags()
    assert flags[reply] == {KEYWORD} and flags[thread] == {KEYWORD}
    assert flags[stranger] == {KEYWORD}

    await world.tick(MON_0900)
    assert [str(m["To"]) for m in world.sink.messages[3:]] == ["sara@example.es"]
    assert await world.member_states() == {
        replies: ("left", "replied"),
        threads: ("left", "replied"),
        stays: ("left", "completed"),
    }
    results = await CampaignStore(world.db).results(cid)
    assert results.emails_replied == 2 and results.left["replied"] == 2
    await world.tick(MON_0900 + 7 * DAY)
    assert len(world.sink.messages) == 4


AUTOMATIC = [
    ("auto-submitted", {"Auto-Submitted": "auto-replied (vacation)"}, None),
    ("x-autoreply", {"X-Autoreply": "yes"}, None),
    ("precedence", {"Precedence": "auto_reply"}, None),
    ("outlook-es", {}, "Respuesta automática: Uno"),
    ("exchange-en", {}, "Out of Office: Uno"),
]


async def test_out_of_office_and_other_automatic_answers_are_not_replies(
    world: ReplyWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.campaigns.replies")
    leads = {
        name: await world.lead(name, emails=[f"{name}@example.es"]) for name, _h, _s in AUTOMATIC
    }
    human = await world.lead("persona", emails=["persona@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    uids = {}
    for name, headers, subject in AUTOMATIC:
        original = world.sent_to(f"{name}@example.es")
        uids[name] = world.imap.deliver(
            answer(
                original,
                sender=f"{name}@example.es",
                subject=subject,
                headers=headers,
                body="Estoy fuera hasta el lunes.",
            )
        )
    # a person's answer that says, explicitly, it was not automatic
    uids["persona"] = world.imap.deliver(
        answer(
            world.sent_to("persona@example.es"),
            sender="persona@example.es",
            headers={"Auto-Submitted": "no"},
        )
    )
    await world.watcher.poll()

    replied = await world.replied()
    assert [name for name, pid in leads.items() if replied[pid] is not None] == []
    assert replied[human] is not None
    kinds = [kind for _pid, kind, _s in await world.recorded()]
    assert kinds == ["auto_reply"] * len(AUTOMATIC) + ["reply"]
    ignored = [r.getMessage() for r in caplog.records if "auto reply to run" in r.getMessage()]
    assert len(ignored) == len(AUTOMATIC)
    flags = world.imap.flags()
    # nobody needs to read an out-of-office once it is handled; the reply stays unread
    assert all(flags[uids[name]] == {KEYWORD, SEEN} for name, _h, _s in AUTOMATIC)
    assert flags[uids["persona"]] == {KEYWORD}

    await world.tick(MON_0900)
    assert sorted(str(m["To"]) for m in world.sink.messages[len(AUTOMATIC) + 1 :]) == sorted(
        f"{name}@example.es" for name, _h, _s in AUTOMATIC
    )
    states = await world.member_states()
    assert states[human] == ("left", "replied")
    assert all(states[pid] == ("left", "completed") for pid in leads.values())


async def test_a_delivery_failure_report_marks_the_address_bounced(world: ReplyWorld) -> None:
    postfix = await world.lead("Rebota", emails=["rebota@example.es"])
    exim = await world.lead("Tambien", emails=["tambien@example.es"])
    later = await world.lead("Tarda", emails=["tarda@example.es"])
    cid = await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    assert len(world.sink.messages) == 3  # the relay took all three: the failures come later

    world.clock.now = FRI_0900 + 600
    bounced = world.imap.deliver(
        dsn(
            world.sent_to("rebota@example.es"),
            action="failed",
            status="5.1.1",
            recipient="rebota@example.es",
        )
    )
    world.imap.deliver(
        dsn(
            world.sent_to("tambien@example.es"),
            action="failed",
            status="5.2.2",
            recipient="tambien@example.es",
            returned="message",
        )
    )
    world.imap.deliver(  # only delayed: the server keeps trying
        dsn(
            world.sent_to("tarda@example.es"),
            action="delayed",
            status="4.4.1",
            recipient="tarda@example.es",
        )
    )
    await world.watcher.poll()

    marks = {
        r[0]: (r[1], r[2])
        for r in await world.rows("SELECT person_id, bounced_at, bounce_detail FROM emails")
    }
    assert marks[postfix][0] == FRI_0900 + 600 and marks[postfix][1].startswith("5.1.1")
    assert marks[exim][0] == FRI_0900 + 600 and marks[exim][1].startswith("5.2.2")
    assert marks[later][0] is None
    assert await world.recorded() == [
        (postfix, "bounce", "rebota@example.es"),
        (exim, "bounce", "tambien@example.es"),
        (later, "delayed", "MAILER-DAEMON@mx.example.es"),
    ]
    assert SEEN in world.imap.flags()[bounced]
    results = await CampaignStore(world.db).results(cid)
    assert results.emails_bounced == 2 and results.emails_sent == 1

    await world.tick(MON_0900)
    assert [str(m["To"]) for m in world.sink.messages[3:]] == ["tarda@example.es"]
    states = await world.member_states()
    assert states[postfix] == ("left", "unreachable") and states[exim] == ("left", "unreachable")
    assert states[later] == ("left", "completed")


def _copy(original: EmailMessage) -> str:
    """The returned original's headers, as a mail server copies them under its text."""
    return (
        "Return-Path: <campanas@example.com>\n"
        "Received: from gw.example.com (gw.example.com [192.0.2.10])\n"
        "\tby mx.example.es with ESMTP id 4Fq2Lk3Jz1; Fri, 4 Dec 2026 09:00:02 +0100\n"
        f"From: {original['From']}\nTo: {original['To']}\nSubject: {original['Subject']}\n"
        f"Message-ID: {original['Message-ID']}\nDate: Fri, 4 Dec 2026 09:00:01 +0100\n\n"
        "Hola, ...\n"
    )


def postfix_pre_dsn(original: EmailMessage, failed: str) -> bytes:
    """Postfix before DSN (2.2): multipart/mixed, the notice in words, the message attached."""
    return (
        "Return-Path: <>\n"
        "From: MAILER-DAEMON@mx.example.es (Mail Delivery System)\n"
        "To: respuestas@example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="4Fq2Lk3Jz1.1733299202/mx.example.es"\n'
        "\n--4Fq2Lk3Jz1.1733299202/mx.example.es\n"
        "Content-Description: Notification\nContent-Type: text/plain\n\n"
        "This is the Postfix program at host mx.example.es.\n\n"
        "I'm sorry to have to inform you that your message could not be\n"
        "delivered to one or more recipients. It's attached below.\n\n"
        "For further assistance, please send mail to <postmaster>\n\n"
        "\t\t\tThe Postfix program\n\n"
        f'<{failed}>: unknown user: "{failed.partition("@")[0]}"\n'
        "\n--4Fq2Lk3Jz1.1733299202/mx.example.es\n"
        "Content-Description: Undelivered Message\nContent-Type: message/rfc822\n\n"
        f"{_copy(original)}"
        "\n--4Fq2Lk3Jz1.1733299202/mx.example.es--\n"
    ).encode()


def qmail(original: EmailMessage, failed: str) -> bytes:
    """qmail-send's failure notice: words, then the whole message below a line."""
    return (
        "Return-Path: <>\n"
        "From: MAILER-DAEMON@correo.example.net\n"
        "To: respuestas@example.com\n"
        "Subject: failure notice\n\n"
        "Hi. This is the qmail-send program at correo.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{failed}>:\n"
        "198.51.100.7 does not like recipient.\n"
        f"Remote host said: 550 5.1.1 <{failed}>... User unknown\n"
        "Giving up on 198.51.100.7.\n\n"
        "--- Below this line is a copy of the message.\n\n"
        f"{_copy(original)}"
    ).encode()


def exim(original: EmailMessage, failed: str, *, delayed: bool = False) -> bytes:
    """Exim without DSN: a failure (or a delay warning), and the message's copy below."""
    if delayed:
        words = (
            "A message that you sent has not yet been delivered to one or more of its\n"
            "recipients after more than 24 hours on the queue on mx.example.org.\n\n"
            "The message identifier is:     1tIZ7k-0003Xc-2v\n"
            f"The subject of the message is: {original['Subject']}\n\n"
            "The address to which the message has not yet been delivered is:\n\n"
            f"  {failed}\n"
            "    host mx2.example.org [203.0.113.9]\n"
            "    Delay reason: SMTP error from remote mail server after RCPT TO:\n"
            f"    <{failed}>: 451 4.3.0 Mailbox temporarily unavailable\n\n"
            "No action is required on your part. Delivery attempts will continue for\n"
            "some time, and this warning may be repeated at intervals if the message\n"
            "remains undelivered. Eventually the mail delivery software will give up,\n"
            "and when that happens, the message will be returned to you.\n"
        )
        subject = "Warning: message 1tIZ7k-0003Xc-2v delayed 24 hours"
    else:
        words = (
            "A message that you sent could not be delivered to one or more of its\n"
            "recipients. This is a permanent error. The following address(es) failed:\n\n"
            f"  {failed}\n"
            "    host mx2.example.org [203.0.113.9]\n"
            "    SMTP error from remote mail server after RCPT TO:\n"
            f"    <{failed}>: 550 5.2.1 Mailbox disabled for this recipient\n\n"
        )
        subject = "Mail delivery failed: returning message to sender"
    return (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n"
        "To: respuestas@example.com\n"
        f"Subject: {subject}\n"
        "Auto-Submitted: auto-replied\n\n"
        "This message was created automatically by mail delivery software.\n\n"
        f"{words}\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
        f"{_copy(original)}"
    ).encode()


def gmail_legacy(original: EmailMessage, failed: str) -> bytes:
    return (
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
        "To: respuestas@example.com\n"
        "Subject: Delivery Status Notification (Failure)\n"
        "Content-Type: text/plain; charset=ISO-8859-1\n\n"
        "Delivery to the following recipient failed permanently:\n\n"
        f"     {failed}\n\n"
        "Technical details of permanent failure:\n"
        "The email account that you tried to reach does not exist. 550 5.1.1 NoSuchUser\n\n"
        "----- Original message -----\n\n"
        f"{_copy(original)}"
    ).encode()


def postfix_warning(original: EmailMessage, failed: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.es (Mail Delivery System)\n"
        "To: respuestas@example.com\n"
        "Subject: Delayed Mail (still being retried)\n"
        "Auto-Submitted: auto-replied\n\n"
        "This is the mail system at host mx.example.es.\n\n"
        "####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
        "####################################################################\n\n"
        "Your message could not be delivered for more than 4 hour(s).\n"
        "It will be retried until it is 5 day(s) old.\n\n"
        f"<{failed}>: connect to mx.lento.example[198.51.100.20]:25: Connection timed out\n\n"
        "------ This is a copy of the message's headers. ------\n\n"
        f"{_copy(original)}"
    ).encode()


async def test_plain_text_bounces_without_dsn_mark_the_address_and_warnings_do_not(
    world: ReplyWorld,
) -> None:
    names = ["postfix", "qmail", "exim", "gmail", "espera", "aviso", "persona", "reenvia"]
    leads = {n: await world.lead(n.title(), emails=[f"{n}@example.es"]) for n in names}
    cid = await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    assert len(world.sink.messages) == len(names)

    def sent(name: str) -> EmailMessage:
        return world.sent_to(f"{name}@example.es")

    world.clock.now = FRI_0900 + 900
    uids = {
        "postfix": world.imap.deliver(postfix_pre_dsn(sent("postfix"), "postfix@example.es")),
        "qmail": world.imap.deliver(qmail(sent("qmail"), "QMail@Example.es")),
        "exim": world.imap.deliver(exim(sent("exim"), "exim@example.es")),
        "gmail": world.imap.deliver(gmail_legacy(sent("gmail"), "gmail@example.es")),
        # only warnings: the servers keep trying
        "espera": world.imap.deliver(exim(sent("espera"), "espera@example.es", delayed=True)),
        "aviso": world.imap.deliver(postfix_warning(sent("aviso"), "aviso@example.es")),
        # a person forwards a bounce they got, quoting it and their own address: a reply
        "persona": world.imap.deliver(
            answer(
                sent("persona"),
                sender="persona@example.es",
                body="Mirad lo que me llega al escribiros:\n\n> "
                + qmail(sent("persona"), "persona@example.es").decode().replace("\n", "\n> "),
            )
        ),
        # the lead's server forwards to an old address that fails: not the address we used
        "reenvia": world.imap.deliver(qmail(sent("reenvia"), "reenvia.antiguo@otro.example")),
    }
    await world.watcher.poll()

    marks = {
        r[0]: (r[1], r[2])
        for r in await world.rows("SELECT person_id, bounced_at, bounce_detail FROM emails")
    }
    for name in ("postfix", "qmail", "exim", "gmail"):
        assert marks[leads[name]][0] == FRI_0900 + 900, name
    assert marks[leads["qmail"]][1].startswith("5.1.1 Remote host said: 550 5.1.1")
    assert marks[leads["exim"]][1].startswith("5.2.1")
    for name in ("espera", "aviso", "persona", "reenvia"):
        assert marks[leads[name]] == (None, ""), name
    assert [(pid, kind) for pid, kind, _s in await world.recorded()] == [
        (leads["postfix"], "bounce"),
        (leads["qmail"], "bounce"),
        (leads["exim"], "bounce"),
        (leads["gmail"], "bounce"),
        (leads["espera"], "delayed"),
        (leads["aviso"], "delayed"),
        (leads["persona"], "reply"),
        (leads["reenvia"], "auto_reply"),
    ]
    senders = {pid: s for pid, _k, s in await world.recorded()}
    assert senders[leads["qmail"]] == "qmail@example.es"
    flags = world.imap.flags()
    assert SEEN in flags[uids["qmail"]] and flags[uids["persona"]] == {KEYWORD}
    results = await CampaignStore(world.db).results(cid)
    assert results.emails_bounced == 4 and results.emails_replied == 1

    await world.tick(MON_0900)
    assert sorted(str(m["To"]) for m in world.sink.messages[len(names) :]) == [
        "aviso@example.es",
        "espera@example.es",
        "reenvia@example.es",
    ]
    states = await world.member_states()
    for name in ("postfix", "qmail", "exim", "gmail"):
        assert states[leads[name]] == ("left", "unreachable"), name
    assert states[leads["persona"]] == ("left", "replied")


async def test_a_restart_handles_nothing_twice(world: ReplyWorld) -> None:
    first = await world.lead("Uno", emails=["uno@example.es"])
    second = await world.lead("Dos", emails=["dos@example.es"])
    await world.campaign([email("Uno"), Wait(days=1), email("Dos")])
    await world.tick(FRI_0900)
    world.clock.now = FRI_0900 + 60
    uid = world.imap.deliver(answer(world.sent_to("uno@example.es"), sender="uno@example.es"))
    await world.watcher.poll()
    assert (await world.replied())[first] == FRI_0900 + 60

    # the flag never reached the server (a connection lost after the store's commit): the
    # stored UID cursor alone keeps the message from being handled again, across a restart
    with world.imap.client() as c:
        c.select("INBOX")
        c.uid("STORE", str(uid), "-FLAGS.SILENT", f"({KEYWORD})")
    world.clock.now = FRI_0900 + 3600
    await world.reopen()
    await world.watcher.poll()
    assert world.watcher.health()["read"] == 0  # not even fetched again
    assert len(await world.recorded()) == 1
    assert (await world.replied())[first] == FRI_0900 + 60

    # a server that renumbers its UIDs (new UIDVALIDITY): only messages without our keyword
    # are read again, so one that arrives now is handled and the flagged ones are not
    with world.imap.client() as c:
        c.select("INBOX")
        c.uid("STORE", str(uid), "+FLAGS.SILENT", f"({KEYWORD})")
    async with world.db.transaction() as conn:  # what was read was read under the old one
        await conn.execute("UPDATE mail_reply_cursors SET uidvalidity = 1, last_uid = 999")
        await conn.execute("UPDATE campaign_replies SET uidvalidity = 1")
    world.imap.deliver(answer(world.sent_to("dos@example.es"), sender="dos@example.es"))
    await world.reopen()
    await world.watcher.poll()
    assert [r[:2] for r in await world.recorded()] == [(first, "reply"), (second, "reply")]
    assert (await world.replied())[first] == FRI_0900 + 60
    cursor = await world.rows("SELECT uidvalidity, last_uid FROM mail_reply_cursors")
    assert cursor[0][0] != 1 and cursor[0][1] == uid + 1


async def test_a_refused_login_is_a_health_error_and_a_log_line_without_the_password(
    tmp_path: Path,
    dovecot: Dovecot,  # noqa: F811
    aiohttp_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.campaigns.replies")
    wrong = "Not-The-Password-42"
    cfg = GatewayConfig(
        store=StoreSettings(path=str(tmp_path / "store.db")),
        mail=MailSettings(
            replies=ReplySettings(
                host=dovecot.host,
                port=dovecot.port,
                security="starttls",
                username=USER,
                password=wrong,
                ca_file=str(TLS_DIR / "cert.pem"),
                interval_s=60,  # its own next try comes long after this test
            )
        ),
    )
    gw = Gateway(cfg)
    client = await aiohttp_client(await create_app(cfg, gw))
    assert gw.replies is not None
    deadline = time.monotonic() + 10
    while gw.replies.health()["status"] != "error":  # its own loop polls at start-up
        assert time.monotonic() < deadline, "the watcher never tried the mailbox"
        await asyncio.sleep(0.02)

    resp = await client.get("/health")
    text = await resp.text()
    assert resp.status == 200  # the reply mailbox informs; it does not fail the gateway
    entry = (await resp.json())["mail_replies"]
    assert entry["account"] == f"{USER} at {dovecot.host}:{dovecot.port}/INBOX"
    assert entry["status"] == "error" and "AUTHENTICATIONFAILED" in entry["last_error"]
    assert entry["retry_in"] == 60
    assert wrong not in text
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.campaigns.replies"]
    assert any("login refused" in line for line in lines)
    assert not any(wrong in line for line in lines)

    with pytest.raises(MailboxUnavailable):  # a second failure in a row: it waits longer
        await gw.replies.poll()
    assert gw.replies.health()["retry_in"] == 120

    # the administrator fixes the account on the server: the next poll works again
    (dovecot.root / "passwd").write_text(
        (dovecot.root / "passwd")
        .read_text()
        .replace(f":{{PLAIN}}{PASSWORD}:", f":{{PLAIN}}{wrong}:")
    )
    await gw.replies.poll()
    entry = (await (await client.get("/health")).json())["mail_replies"]
    assert entry["status"] == "ok" and entry["failures"] == 0 and entry["retry_in"] == 60

    dovecot.stop()  # the server goes away: an error again, never a crash
    with pytest.raises(MailboxUnavailable, match="cannot connect"):
        await gw.replies.poll()
    assert (await client.get("/health")).status == 200


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
async def test_each_security_mode_reaches_the_mailbox_as_configured(
    tmp_path: Path,
    dovecot: Dovecot,  # noqa: F811
    security: str,
) -> None:
    mailbox = "Campañas & respuestas"  # any folder name: IMAP's modified UTF-7 on the wire
    with dovecot.client() as c:
        assert c.create(f'"{imap_utf7(mailbox)}"')[0] == "OK"
    db = await Database.open(tmp_path / "store.db")
    try:
        settings = ReplySettings(
            host=dovecot.host,
            port=dovecot.tls_port if security == "tls" else dovecot.port,
            security=security,  # type: ignore[arg-type]
            username=USER,
            password=PASSWORD,
            mailbox=mailbox,
        )
        watcher = ReplyWatcher(db, settings, time.time, tls_context=client_tls())
        report = await watcher.poll()
        assert report.read == 0 and watcher.health()["status"] == "ok"
        cursor = await db.conn.execute_fetchall("SELECT account FROM mail_reply_cursors")
        assert [r[0] for r in cursor] == [settings.account]
    finally:
        await db.close()
    logins = [line for line in dovecot.log_text().splitlines() if "Login: user=<" in line]
    assert len(logins) == 2  # the test's own (plain), then the watcher's
    assert (", TLS" in logins[1]) == (security != "none"), logins[1]


def test_mailbox_names_travel_in_modified_utf7() -> None:
    assert imap_utf7("INBOX") == "INBOX"
    assert imap_utf7("Entwürfe") == "Entw&APw-rfe"  # RFC 3501's own kind of example
    assert imap_utf7("Campañas & respuestas") == "Campa&APE-as &- respuestas"


HANGING_SERVER = """
import asyncio, socket, sys, time
from gateway.campaigns.replies import ReplyWatcher
from gateway.campaigns.settings import ReplySettings
from gateway.store.db import Database

# takes the connection, never greets; open until the process ends
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)

async def main() -> None:
    db = await Database.open(sys.argv[1])
    settings = ReplySettings(
        host="127.0.0.1", port=listener.getsockname()[1], security="none",
        username="u", password="p", timeout=30,
    )
    watcher = ReplyWatcher(db, settings, time.time)
    watcher.start()
    await asyncio.sleep(0.5)
    assert watcher.health()["status"] == "starting", watcher.health()
    await watcher.close()
    await db.close()
    print("closed", flush=True)

asyncio.run(main())
"""


def test_a_gateway_stops_at_once_while_the_mailbox_server_hangs(tmp_path: Path) -> None:
    # the poll is blocked in a thread waiting for a greeting that never comes (timeout 30 s):
    # stopping must not wait for it, neither in close() nor at the process's exit
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HANGING_SERVER, str(tmp_path / "store.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0 and done.stdout == "closed\n", done.stderr
    assert time.monotonic() - started < 10, "stopping waited for the IMAP timeout"


def test_the_reply_mailbox_is_configured_once_with_errors_that_name_the_key() -> None:
    assert parse_config("mail: {host: smtp.example.com}").mail.replies is None  # off unless set
    yaml = (
        "mail:\n  replies:\n    host: imap.example.com\n    username: ventas@example.com\n"
        "    password: ${IMAP_PASSWORD}\n"
    )
    replies = parse_config(yaml, env={"IMAP_PASSWORD": "pw-secret-77"}).mail.replies
    assert replies is not None
    assert (replies.server_port, replies.security, replies.mailbox, replies.interval_s) == (
        993,
        "tls",
        "INBOX",
        60.0,
    )
    assert "pw-secret-77" not in repr(replies)
    plain = parse_config(yaml + "    security: starttls\n", env={"IMAP_PASSWORD": "x"})
    assert plain.mail.replies is not None and plain.mail.replies.server_port == 143

    def error(extra: str, env: dict[str, str] | None = None) -> str:
        with pytest.raises(ConfigError) as e:
            parse_config(yaml + extra, env={"IMAP_PASSWORD": "x"} if env is None else env)
        return str(e.value)

    assert error("    port: abc\n").startswith("mail.replies.port: expected int")
    assert error("    security: ssl\n") == (
        "mail.replies.security: expected one of 'tls', 'starttls', 'none', found 'ssl'"
    )
    assert error("    interval_s: 1\n").startswith("mail.replies.interval_s: expected")
    assert error("    folder: INBOX\n").startswith("mail.replies.folder: unknown key 'folder'")
    assert error("", env={}).startswith("mail.replies.password: expected environment variable")
    assert error("", env={"IMAP_PASSWORD": ""}).startswith(
        "mail.replies.password: expected the mailbox's password, found it empty"
    )
