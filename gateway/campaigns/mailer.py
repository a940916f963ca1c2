"""Campaign e-mail out through a real SMTP server, over a few kept-open connections.

Messages are composed in :mod:`gateway.campaigns.unsubscribe` (``compose``: template, signed
links, List-Unsubscribe headers); :class:`Mailer` sends them (STARTTLS / TLS / AUTH from the
``mail:`` section) and says what happened; it never raises for a broken server:

* ``sent``: the server took the message;
* ``bounced``: the server refused the recipient for good (5xx at RCPT, or a 5.1.x/5.2.x
  address status at DATA): the caller marks the address;
* ``failed``: anything else (4xx, refused connection, timeout, TLS, authentication, a 5xx
  about the sender or the content): not the address's fault, so it is not marked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from typing import Any, Literal

import aiosmtplib

from gateway.campaigns.settings import MailSettings

__all__ = ["Attachment", "Mailer", "OutgoingMail", "SendResult", "build_message"]

log = logging.getLogger("gateway.campaigns.mailer")

SendStatus = Literal["sent", "bounced", "failed"]

# a kept-open connection unused this long is closed and opened afresh: servers drop idle
# sessions (RFC 5321 asks them to wait 5 minutes; many wait less)
MAX_IDLE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message (base64): its name, MIME type and bytes."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One message, ready to send: ``headers`` holds everything besides From/To/Subject/
    Date/Message-ID (List-Unsubscribe, Reply-To, ...)."""

    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    status: SendStatus
    detail: str = ""  # the server's answer or the error, for campaign_step_runs.detail
    code: int | None = None  # the SMTP reply code, when there was one


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain or 'localhost'}>"


def envelope_address(address: str) -> tuple[str, bool]:
    """The address as the envelope and the To header carry it, and whether that needs an
    SMTPUTF8 server: a domain with accents (``ana@ñandú.es``) is written in IDNA
    (``xn--and-6ma2c.es``), which every server takes; a mailbox name with them
    (``josé@correo.es``) cannot be, and needs SMTPUTF8 (RFC 6531)."""
    local, at, domain = address.rpartition("@")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    written = f"{local}{at}{domain}"
    return written, not written.isascii()


def build_message(mail: OutgoingMail, settings: MailSettings, *, at: float) -> bytes:
    """The message as sent: multipart/alternative, plain text first, then HTML, both UTF-8
    in quoted-printable (7-bit: no relay needs 8BITMIME), non-ASCII headers in RFC 2047; with
    attachments, that inside a multipart/mixed followed by each file in base64. An address
    that needs SMTPUTF8 is written as it is in the To header (UTF-8, RFC 6532): an encoded
    word is not allowed inside an address.

    Written out directly rather than through ``email.message.EmailMessage``: the structure is
    always the same, and the stdlib's header registry cost ~2-9 ms a message, which made the
    gateway, not the SMTP server, the limit of a campaign's sending (bench/campaigns.py)."""
    boundary = f"=_{uuid.uuid4().hex}"
    mixed = f"=_{uuid.uuid4().hex}" if mail.attachments else ""
    to, utf8 = envelope_address(mail.to)
    head = [
        ("From", formataddr((settings.from_name, settings.from_address), charset="utf-8")),
        ("To", to),
        ("Subject", mail.subject),
        ("Date", format_datetime(datetime.fromtimestamp(at, UTC))),
        ("Message-ID", mail.message_id or new_message_id(_domain(settings.from_address))),
        *mail.headers.items(),
        ("MIME-Version", "1.0"),
    ]
    lines = [
        f"To: {' '.join(value.splitlines())}" if utf8 and name == "To" else _header(name, value)
        for name, value in head
    ]
    if mixed:
        lines += [f'Content-Type: multipart/mixed; boundary="{mixed}"', "", f"--{mixed}"]
    lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
    for subtype, body in (("plain", mail.text), ("html", mail.html)):
        lines += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
            "",
            _quoted_printable(body),
        ]
    lines += [f"--{boundary}--", ""]
    for a in mail.attachments:
        name = _attachment_name(a.filename)
        encoded = base64.encodebytes(a.data).decode("ascii").rstrip("\n")
        lines += [
            f"--{mixed}",
            f'Content-Type: {a.content_type}; name="{name}"',
            "Content-Transfer-Encoding: base64",
            f'Content-Disposition: attachment; filename="{name}"',
            "",
            *encoded.split("\n"),
        ]
    if mixed:
        lines += [f"--{mixed}--", ""]
    return "\r\n".join(lines).encode("utf-8" if utf8 else "ascii")


def _attachment_name(filename: str) -> str:
    # a plain ASCII token: no quote, backslash or line break can end the header early
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return safe or "attachment"


def _header(name: str, value: str) -> str:
    # a value never carries a line break into the header block (no header injection)
    value = " ".join(value.splitlines())
    if value.isascii() and len(name) + len(value) < 990:
        return f"{name}: {value}"
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _quoted_printable(text: str) -> str:
    body = "\n".join(text.splitlines()).encode("utf-8")
    encoded = binascii.b2a_qp(body, istext=True).decode("ascii")
    # a line that starts with "." would be read as the end of DATA by a naive relay
    return "\r\n".join(("=2E" + ln[1:]) if ln.startswith(".") else ln for ln in encoded.split("\n"))


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


# -- sending ---------------------------------------------------------------------------------

_ADDRESS_STATUS = re.compile(r"\b5\.[12]\.\d{1,3}\b")  # RFC 3463: addressing / mailbox status


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, remembering the connections it closed until they are gone: a TLS
    session's close needs a round trip with the server, which ``Mailer.close`` waits for."""

    def __init__(self, closing: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._closing = closing

    def close(self) -> None:
        protocol = self.protocol
        if protocol is not None and protocol.transport is not None:
            self._closing.append(protocol)
        super().close()


class _Connection:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.used_at = time.monotonic()


class Mailer:
    """Sends :class:`OutgoingMail` through the ``mail:`` server, up to ``connections`` at a
    time, keeping each connection open for the next message."""

    def __init__(
        self, settings: MailSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.settings = settings
        # tests (and a relay with a private CA) hand in their own; else the system's CAs
        self._tls_context = tls_context
        self._slots = asyncio.Semaphore(settings.connections)
        self._idle: list[_Connection] = []
        self._closing: list[Any] = []  # protocols of connections closed, until they are lost
        self._closed = False
        self.connections_opened = 0  # for tests and the bench: proves connections are reused

    async def send(self, mail: OutgoingMail, *, at: float | None = None) -> SendResult:
        """Send one message; the result says sent, bounced or failed (never raises except
        on cancellation)."""
        try:
            data = build_message(mail, self.settings, at=time.time() if at is None else at)
            # refuse a malformed address before the server does; RFC 6531 lets a non-ASCII
            # letter stand wherever an ASCII one may, so the shape is checked with "x" for it
            written, utf8 = envelope_address(mail.to)
            Address(addr_spec="".join(c if c.isascii() else "x" for c in written))
        except Exception as e:
            return SendResult("failed", f"message not built: {e}")
        if self._closed:
            return SendResult("failed", "mailer closed")
        async with self._slots:
            return await self._send(written, data, utf8)

    async def _send(self, to: str, data: bytes, utf8: bool) -> SendResult:
        for attempt in (1, 2):
            try:
                conn, reused = await self._acquire()
            except Exception as e:
                log.info("mail: cannot reach %s: %s", self.settings.host, _describe(e))
                return SendResult("failed", _describe(e), _code(e))
            try:
                result = await self._transact(
                    conn, to, data, utf8=utf8, retry=reused and attempt == 1
                )
            except asyncio.CancelledError:
                self._discard(conn)  # mid-conversation: the session is in an unknown state
                raise
            if result is not None:
                return result
        return SendResult("failed", "server disconnected")  # pragma: no cover - loop returns

    async def _transact(
        self, conn: _Connection, to: str, data: bytes, *, utf8: bool, retry: bool
    ) -> SendResult | None:
        """One MAIL/RCPT/DATA exchange; None: a reused session had gone stale before anything
        was sent, try once more on a new one. ``utf8``: the address needs SMTPUTF8."""
        client = conn.client
        encoding = "utf-8" if utf8 else "ascii"
        try:
            if utf8:
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                if not client.supports_extension("smtputf8"):
                    self._release(conn)
                    # not the address's fault: a server that takes RFC 6531 would deliver it
                    return SendResult(
                        "failed",
                        "the mail server does not take addresses with accents"
                        " in the mailbox name (no SMTPUTF8)",
                    )
            await client.mail(
                self.settings.from_address,
                options=["SMTPUTF8"] if utf8 else None,
                encoding=encoding,
            )
        except aiosmtplib.SMTPServerDisconnected as e:
            self._discard(conn)
            return None if retry else SendResult("failed", _describe(e))
        except Exception as e:
            return self._give_up(conn, e, "MAIL FROM")
        try:
            await client.rcpt(to, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as e:
            await self._reset(conn)
            status: SendStatus = "bounced" if e.code >= 500 else "failed"
            return SendResult(status, f"{e.code} {e.message}", e.code)
        except Exception as e:
            return self._give_up(conn, e, "RCPT TO")
        try:
            response = await client.data(data)
        except aiosmtplib.SMTPDataError as e:
            await self._reset(conn)
            address = e.code >= 500 and bool(_ADDRESS_STATUS.search(e.message))
            return SendResult("bounced" if address else "failed", f"{e.code} {e.message}", e.code)
        except Exception as e:
            return self._give_up(conn, e, "DATA")
        self._release(conn)
        return SendResult("sent", f"{response.code} {response.message}", response.code)

    def _give_up(self, conn: _Connection, e: Exception, stage: str) -> SendResult:
        self._discard(conn)
        log.info("mail: %s failed at %s: %s", self.settings.host, stage, _describe(e))
        return SendResult("failed", _describe(e), _code(e))

    async def _reset(self, conn: _Connection) -> None:
        try:
            await conn.client.rset()
        except Exception:
            self._discard(conn)
        else:
            self._release(conn)

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.client.is_connected and now - conn.used_at < MAX_IDLE_SECONDS:
                return conn, True
            self._discard(conn)
        self._closing[:] = [p for p in self._closing if p.transport is not None]
        s = self.settings
        client = _Client(
            self._closing,
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            # 'none' means plain: no opportunistic upgrade that might fail on a private cert;
            # 'starttls' refuses a server that does not offer it (credentials stay encrypted)
            start_tls=s.security == "starttls",
            tls_context=self._tls_context,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()
            raise
        self.connections_opened += 1
        return _Connection(client), False

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            self._discard(conn)
            return
        conn.used_at = time.monotonic()
        self._idle.append(conn)

    def _discard(self, conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            conn.client.close()

    async def close(self) -> None:
        """Say QUIT on every idle connection (those in use close when their send ends)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await asyncio.wait_for(conn.client.quit(), timeout=2.0)
            except Exception:
                self._discard(conn)
        # then let the closes finish (TLS sends close_notify and waits for the server's), so
        # no socket outlives the mailer. aiosmtplib has no public "closed" event to await:
        # look at its protocols, for 2 s at most (a server that never answers is not waited on)
        for _ in range(200):
            if all(p.transport is None for p in self._closing):
                break
            await asyncio.sleep(0.01)
        self._closing.clear()


def _code(e: BaseException) -> int | None:
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


def _describe(e: BaseException) -> str:
    if isinstance(e, aiosmtplib.SMTPResponseException):
        return f"{e.code} {e.message}"
    if isinstance(e, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"timeout: {e}" if str(e) else "timeout"
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if type(e).__name__ not in text else text
