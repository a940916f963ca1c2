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
import collections
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Literal, cast

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
    return f"<{secrets.token_hex(16)}@{domain or 'localhost'}>"


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
    boundary = f"=_{secrets.token_hex(16)}"
    mixed = f"=_{secrets.token_hex(16)}" if mail.attachments else ""
    to, utf8 = envelope_address(mail.to)
    head = [
        ("From", _from_header(settings.from_name, settings.from_address)),
        ("To", to),
        ("Subject", mail.subject),
        ("Date", _date_header(at)),
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
    if "\n" in value or "\r" in value:
        value = " ".join(value.splitlines())
    if value.isascii():
        if len(name) + len(value) < 990:
            return f"{name}: {value}"
        return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: " + _encoded_words(value)


# bytes of UTF-8 per RFC 2047 word: 40 characters of base64, so that a word and the longest
# header name we write stay inside the 76 characters a line with encoded words may have
_WORD_BYTES = 30


def _encoded_words(value: str) -> str:
    """``value`` as RFC 2047 base64 words, one per folded line, each holding whole characters
    (a word may not end inside a UTF-8 sequence). ``email.header.Header`` does the same at
    ten times the cost, which a campaign pays once per mail."""
    data = value.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


# a campaign's batch sends every mail with the same From and (near enough) the same Date
@lru_cache(maxsize=8)
def _from_header(name: str, address: str) -> str:
    return formataddr((name, address), charset="utf-8")


@lru_cache(maxsize=8)
def _date_header(at: float) -> str:
    return format_datetime(datetime.fromtimestamp(at, UTC))


def _quoted_printable(text: str) -> str:
    body = "\n".join(text.splitlines()).encode("utf-8")
    encoded = binascii.b2a_qp(body, istext=True).decode("ascii")
    if encoded.startswith(".") or "\n." in encoded:
        # a line that starts with "." would be read as the end of DATA by a naive relay
        lines = encoded.split("\n")
        encoded = "\n".join(("=2E" + ln[1:]) if ln.startswith(".") else ln for ln in lines)
    return encoded.replace("\n", "\r\n")


def _domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


# -- sending ---------------------------------------------------------------------------------

_ADDRESS_STATUS = re.compile(r"\b5\.[12]\.\d{1,3}\b")  # RFC 3463: addressing / mailbox status
_LINE_START_DOT = re.compile(rb"^\.", re.MULTILINE)
MAX_REPLY_BYTES = 64 * 1024  # a "server" that never ends a reply line is not one


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class _Disconnected(Exception):
    """The server closed the session (or it was closed under us)."""


class _Session(asyncio.Protocol):
    """One SMTP session, opened by aiosmtplib (connect, greeting, EHLO, STARTTLS, AUTH: the
    parts where security is at stake) and taken over for its mail transactions.

    aiosmtplib waits for each reply before the next command and arms a timer per command:
    ~0.2 ms of CPU a message, as much as the SMTP server itself spends, which made the gateway
    the limit of a campaign's sending (bench/campaigns.py). Here a transaction is one timer,
    and with a server that offers PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one packet.
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        # a stream transport whatever the loop (uvloop's is no asyncio.WriteTransport subclass)
        transport = cast(asyncio.WriteTransport, client.transport)
        self.transport = transport
        self.extensions = dict(client.esmtp_extensions)
        self.pipelining = "pipelining" in self.extensions
        self.used_at = time.monotonic()
        self._waiters: collections.deque[asyncio.Future[_Reply]] = collections.deque()
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.get_running_loop().create_future()
        transport.set_protocol(self)  # from here on the replies come to this object

    @property
    def is_open(self) -> bool:
        return not self.closed.done() and not self.transport.is_closing()

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1]).rstrip(b"\r\n")
            del self._buffer[: end + 1]
            if not (line[:3].isdigit() and line[3:4] in (b" ", b"-", b"")):
                self._abort(f"not an SMTP reply: {line[:80]!r}")
                return
            self._lines.append(line[4:].decode("utf-8", "replace").strip())
            if line[3:4] == b"-":  # more lines of the same reply follow
                continue
            reply = _Reply(int(line[:3]), "\n".join(self._lines))
            self._lines = []
            if not self._waiters:
                self._abort(f"a reply nobody asked for: {reply}")
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(reply)
        if len(self._buffer) > MAX_REPLY_BYTES:
            self._abort("a reply line longer than 64 KiB")

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        self._fail_waiters(_Disconnected(_describe(exc) if exc else "server disconnected"))
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()  # a big attachment: let the socket drain

    def resume_writing(self) -> None:
        self._writable.set()

    def _abort(self, why: str) -> None:
        self._fail_waiters(_Disconnected(why))
        self.transport.abort()

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: nobody may be left to await it

    # -- commands

    def _send(self, data: bytes, replies: int) -> list[asyncio.Future[_Reply]]:
        if not self.is_open:
            raise _Disconnected("server disconnected")
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(replies)]
        self._waiters.extend(waiters)
        self.transport.write(data)
        return waiters

    async def command(self, line: str, encoding: str = "ascii") -> _Reply:
        [waiter] = self._send(f"{line}\r\n".encode(encoding), 1)
        return await waiter

    async def transact(self, sender: str, to: str, data: bytes, *, utf8: bool) -> SendResult:
        """MAIL, RCPT, DATA and the message; raises :class:`_Disconnected` when the session
        ends before MAIL was answered (a stale kept connection: the caller tries a new one)."""
        encoding = "utf-8" if utf8 else "ascii"
        mail_from = f"MAIL FROM:<{sender}>{' SMTPUTF8' if utf8 else ''}"
        rcpt_to = f"RCPT TO:<{to}>"
        rcpt = go = None
        if self.pipelining:
            waiters = self._send(f"{mail_from}\r\n{rcpt_to}\r\nDATA\r\n".encode(encoding), 3)
            mail = await waiters[0]
        else:
            mail = await self.command(mail_from, encoding)
        try:
            if self.pipelining:
                rcpt, go = await waiters[1], await waiters[2]
            elif mail.ok:
                rcpt = await self.command(rcpt_to, encoding)
                go = await self.command("DATA") if rcpt.ok else None
            return await self._conclude(mail, rcpt, go, data)
        except _Disconnected as e:
            return SendResult("failed", str(e))

    async def _conclude(
        self, mail: _Reply, rcpt: _Reply | None, go: _Reply | None, data: bytes
    ) -> SendResult:
        if go is not None and go.code == 354 and not (mail.ok and rcpt is not None and rcpt.ok):
            # RFC 2920: a server that took DATA after refusing the rest gets an empty message
            await self._send(b".\r\n", 1)[0]
            go = None
        if not mail.ok:
            return await self._refused("failed", mail)
        assert rcpt is not None  # RCPT went out (or was pipelined) since MAIL was taken
        if not rcpt.ok:
            return await self._refused("bounced" if rcpt.code >= 500 else "failed", rcpt)
        assert go is not None
        if go.code != 354:
            return await self._refused("failed", go)
        await self._writable.wait()
        if data.startswith(b".") or b"\n." in data:
            data = _LINE_START_DOT.sub(b"..", data)  # RFC 5321 4.5.2: dot-stuffing
        done = await self._send(data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"), 1)[0]
        if done.ok:
            return SendResult("sent", str(done), done.code)
        address = done.code >= 500 and bool(_ADDRESS_STATUS.search(done.text))
        return SendResult("bounced" if address else "failed", str(done), done.code)

    async def _refused(self, status: SendStatus, reply: _Reply) -> SendResult:
        # a refused transaction leaves the session usable once RSET is answered
        if not (await self.command("RSET")).ok:
            self.transport.close()
        return SendResult(status, str(reply), reply.code)

    async def quit(self) -> None:
        try:
            if self.is_open:
                await self.command("QUIT")
        finally:
            self.transport.close()


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
        self._idle: list[_Session] = []
        self._sessions: set[_Session] = set()  # every one not yet closed, idle or not
        self._closed = False
        self.connections_opened = 0  # for tests and the bench: proves connections are reused

    async def send(self, mail: OutgoingMail, *, at: float | None = None) -> SendResult:
        """Send one message; the result says sent, bounced or failed (never raises except
        on cancellation)."""
        try:
            data = build_message(mail, self.settings, at=time.time() if at is None else at)
            written, utf8 = envelope_address(mail.to)
            _check_address(written)
        except Exception as e:
            return SendResult("failed", f"message not built: {e}")
        if self._closed:
            return SendResult("failed", "mailer closed")
        async with self._slots:
            return await self._send(written, data, utf8)

    async def _send(self, to: str, data: bytes, utf8: bool) -> SendResult:
        for attempt in (1, 2):
            try:
                session, reused = await self._acquire()
            except Exception as e:
                log.info("mail: cannot reach %s: %s", self.settings.host, _describe(e))
                return SendResult("failed", _describe(e), _code(e))
            if utf8 and "smtputf8" not in session.extensions:
                self._release(session)
                # not the address's fault: a server that takes RFC 6531 would deliver it
                return SendResult(
                    "failed",
                    "the mail server does not take addresses with accents"
                    " in the mailbox name (no SMTPUTF8)",
                )
            try:
                async with asyncio.timeout(self.settings.timeout):
                    result = await session.transact(self.settings.from_address, to, data, utf8=utf8)
            except _Disconnected as e:
                session.transport.close()
                if reused and attempt == 1:
                    continue  # a kept session the server had dropped: nothing was sent
                return SendResult("failed", str(e))
            except TimeoutError:
                session.transport.abort()
                log.info(
                    "mail: %s did not answer in %s s", self.settings.host, self.settings.timeout
                )
                return SendResult("failed", "timeout")
            except BaseException:
                session.transport.abort()  # mid-conversation: the session is in an unknown state
                raise
            if result.status != "sent":
                log.info("mail: %s by %s: %s", result.status, self.settings.host, result.detail)
            self._release(session)
            return result
        return SendResult("failed", "server disconnected")  # pragma: no cover - loop returns

    async def _acquire(self) -> tuple[_Session, bool]:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if session.is_open and now - session.used_at < MAX_IDLE_SECONDS:
                return session, True
            session.transport.close()
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            # 'none' means plain: no opportunistic upgrade that might fail on a private cert
            start_tls=False,
            tls_context=self._tls_context,
        )
        try:
            # STARTTLS and AUTH here, not inside connect(): a connect() that fails closes its
            # TLS session politely and lets go of it, so nobody waits for that socket to end
            await client.connect()
            if s.security == "starttls":  # refuses a server that does not offer it
                await client.starttls()
            if s.username:  # after STARTTLS when configured, as connect() did
                await client.login(s.username, s.password)
            if self._closed:  # closed while this one was connecting: it is not needed
                raise RuntimeError("mailer closed")
            if client.is_ehlo_or_helo_needed:  # no STARTTLS or AUTH asked for one yet
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()  # an old server without ESMTP
            session = _Session(client)
        except BaseException:
            # abort, not close: close() on a TLS session (a refused AUTH after STARTTLS, a
            # server that answers nonsense over TLS) starts a polite TLS shutdown that nobody
            # waits for, and its socket outlived the mailer (CI caught it as a leak)
            if client.transport is not None:
                cast(asyncio.WriteTransport, client.transport).abort()
            client.close()
            raise
        self.connections_opened += 1
        self._sessions.add(session)
        session.closed.add_done_callback(lambda _: self._sessions.discard(session))
        return session, False

    def _release(self, session: _Session) -> None:
        if self._closed or not session.is_open:
            session.transport.close()
            return
        session.used_at = time.monotonic()
        self._idle.append(session)

    async def close(self) -> None:
        """Say QUIT on every idle connection (those in use close when their send ends), and
        wait for every session to be gone (TLS sends close_notify and waits for the
        server's), 2 s at most: no socket outlives the mailer."""
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            try:
                await asyncio.wait_for(session.quit(), timeout=2.0)
            except Exception:
                session.transport.abort()
        # a send under way when close() began ends (and closes its session) meanwhile: the set
        # is read again until it is empty, so no session opened late is left to the GC
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while self._sessions and (left := deadline - loop.time()) > 0:
            await asyncio.wait([s.closed for s in self._sessions], timeout=left)


# RFC 5321 4.1.2, the shape an envelope address may have: a dot-string or a quoted local part;
# a domain of letter/digit/hyphen labels (underscores too: some live ones have them) or an
# address literal. A regular expression, not email.headerregistry: that parse cost 25 µs a mail
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_MAILBOX = re.compile(
    rf'(?:{_ATOM}(?:\.{_ATOM})*|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")'
    rf"@(?:{_LABEL}(?:\.{_LABEL})*|\[[\x21-\x5a\x5e-\x7e]+\])"
)


def _check_address(address: str) -> None:
    """Refuse a malformed address before the server does; RFC 6531 lets a non-ASCII letter
    stand wherever an ASCII one may, so the shape is checked with "x" in its place."""
    shape = address if address.isascii() else "".join(c if c.isascii() else "x" for c in address)
    if not _MAILBOX.fullmatch(shape):
        raise ValueError(f"not an e-mail address: {address!r}")


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
