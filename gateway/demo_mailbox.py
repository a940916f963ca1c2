"""The demo's mailbox: a real SMTP server on loopback that keeps the last mails in memory, and
the panel routes that show them (``centralita demo`` only).

The demo points ``mail:`` at this server, so the campaigns' e-mails really go over SMTP, and a
demo user reads them in the panel's "Mailbox (demo)" view instead of in a real inbox. Nothing is
relayed anywhere: the server accepts every recipient and keeps the newest ``keep`` messages.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import msgspec
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.errors import ApiError

log = logging.getLogger("gateway.demo")
# aiosmtpd logs every SMTP command at INFO: in the demo's console that drowned the calls
logging.getLogger("mail.log").setLevel(logging.WARNING)

KEEP = 200  # mails kept; older ones are dropped
MAX_PART = 256 * 1024  # characters kept of a part: the list stays small whatever is sent
MAX_MESSAGE = 2 * 1024 * 1024  # bytes the SMTP server accepts in one message
# headers a demo user may want to check (unsubscribe links, threading); the rest stays out
SHOWN_HEADERS = ("Message-ID", "Reply-To", "List-Unsubscribe", "List-Unsubscribe-Post")


class DemoMail(msgspec.Struct, kw_only=True, frozen=True):
    """One received mail, as the panel shows it."""

    id: int
    received_at: float
    mail_from: str  # the SMTP envelope's sender
    to: list[str]  # the envelope's recipients
    sender: str  # the From header
    subject: str
    html: str
    text: str
    headers: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at,
            "from": self.sender,
            "to": self.to,
            "subject": self.subject,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.summary(), "html": self.html, "text": self.text, "headers": self.headers}


def _part(msg: EmailMessage, subtype: str) -> str:
    body = msg.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_type() != f"text/{subtype}":
        return ""
    try:
        content = body.get_content()
    except (LookupError, ValueError):  # an unknown charset: shown as nothing, not a crash
        return ""
    return str(content)[:MAX_PART]


def parse_mail(
    raw: bytes, mail_from: str, rcpt_tos: list[str], *, mail_id: int, at: float
) -> DemoMail:
    """A received message, reduced to what the mailbox view shows."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    headers = {k: str(msg[k]) for k in SHOWN_HEADERS if msg[k] is not None}
    return DemoMail(
        id=mail_id,
        received_at=at,
        mail_from=mail_from,
        to=list(rcpt_tos),
        sender=str(msg["From"] or mail_from),
        subject=str(msg["Subject"] or ""),
        html=_part(msg, "html"),
        text=_part(msg, "plain"),
        headers=headers,
    )


class DemoMailbox:
    """An SMTP server on loopback, in the gateway's own event loop, keeping the newest mails."""

    def __init__(self, *, keep: int = KEEP, clock: Callable[[], float] = time.time) -> None:
        self._mails: deque[DemoMail] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self.clock = clock
        self.host = "127.0.0.1"
        self.port = 0
        self.received = 0
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Event()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host`` (loopback: the demo's mail must not be an open relay)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="centralita-demo", data_size_limit=MAX_MESSAGE),
            host,
            port,
        )
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def handle_DATA(  # aiosmtpd calls the hook by this name
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):  # only with decode_data=True, which this server does not set
            raw = raw.encode()
        try:
            mail = parse_mail(
                raw,
                str(envelope.mail_from),
                [str(r) for r in envelope.rcpt_tos],
                mail_id=next(self._ids),
                at=self.clock(),
            )
        except Exception as exc:  # a message the parser chokes on is refused, not a crash
            log.warning("demo mailbox: message not kept: %s", exc)
            return "554 Message not readable"
        self._mails.append(mail)
        self.received += 1
        self._arrived.set()
        return "250 Message accepted for delivery"

    def mails(self, limit: int = KEEP) -> list[DemoMail]:
        """Newest first."""
        return list(itertools.islice(reversed(self._mails), limit))

    def get(self, mail_id: int) -> DemoMail | None:
        return next((m for m in self._mails if m.id == mail_id), None)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` mails arrived in all (tests; the demo never waits)."""
        async with asyncio.timeout(timeout):
            while self.received < count:
                self._arrived.clear()
                await self._arrived.wait()


DEMO_MAILBOX: web.AppKey[DemoMailbox] = web.AppKey("demo_mailbox", DemoMailbox)


async def _list(request: web.Request, _: Any) -> Any:
    box = request.app[DEMO_MAILBOX]
    try:
        limit = max(1, min(KEEP, int(request.query.get("limit", KEEP))))
    except ValueError:
        raise ApiError(400, "bad_request", "limit must be a number.") from None
    return {"items": [m.summary() for m in box.mails(limit)], "kept": KEEP}


async def _one(request: web.Request, _: Any) -> Any:
    box = request.app[DEMO_MAILBOX]
    try:
        mail = box.get(int(request.match_info["id"]))
    except ValueError:
        mail = None
    if mail is None:
        raise ApiError(404, "not_found", "No such mail (only the newest are kept).")
    return mail.to_json()


def add_routes(app: web.Application, box: DemoMailbox) -> None:
    """The panel's demo mailbox routes (a signed-in supervisor or admin; see gateway/access.py)."""
    from gateway.panel.routes import api

    app[DEMO_MAILBOX] = box
    app.router.add_get("/panel/api/demo/mails", api(_list))
    app.router.add_get("/panel/api/demo/mails/{id}", api(_one))
