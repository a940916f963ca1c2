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
import itertools
import logging
import re
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar, cast

import aiosmtplib

from gateway.campaigns.settings import MailSettings

__all__ = ["Attachment", "Mailer", "OutgoingMail", "SendResult", "build_message"]

log = logging.getLogger("gateway.campaigns.mailer")

SendStatus = Literal["sent", "bounced", "failed"]
_T = TypeVar("_T")

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


# MIME boundaries: "=_" never occurs in quoted-printable or base64 text (RFC 2045 6.7 writes
# every "=" of the text as "=3D"; "_" is no base64 letter), so no part can hold a boundary
# line; a random prefix a process and a counter make them unique without a system call a mail
_BOUNDARY = f"=_{secrets.token_hex(8)}"
_BOUNDARIES = itertools.count()


def build_message(mail: OutgoingMail, settings: MailSettings, *, at: float) -> bytes:
    """The message as sent: multipart/alternative, plain text first, then HTML, both UTF-8
    in quoted-printable (7-bit: no relay needs 8BITMIME), non-ASCII headers in RFC 2047; with
    attachments, that inside a multipart/mixed followed by each file in base64. An address
    that needs SMTPUTF8 is written as it is in the To header (UTF-8, RFC 6532): an encoded
    word is not allowed inside an address.

    Written out directly rather than through ``email.message.EmailMessage``: the structure is
    always the same, and the stdlib's header registry cost ~2-9 ms a message, which made the
    gateway, not the SMTP server, the limit of a campaign's sending (bench/campaigns.py)."""
    n = next(_BOUNDARIES)
    boundary = f"{_BOUNDARY}.{n}a"
    mixed = f"{_BOUNDARY}.{n}m" if mail.attachments else ""
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
_NO_SMTPUTF8 = (
    "the mail server does not take addresses with accents in the mailbox name (no SMTPUTF8)"
)

# the reply a transaction waits for
_MAIL, _RCPT, _DATA, _CONTENT, _EMPTY, _RSET = range(6)


@dataclass(slots=True)  # not frozen: a frozen dataclass is three times as slow to make
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


@dataclass(slots=True)
class _Outgoing:
    """One message as it goes on the wire: the envelope's commands and the content, ready."""

    index: int  # its place in the caller's list
    utf8: bool  # needs SMTPUTF8
    mail_from: bytes
    rcpt_to: bytes
    content: bytes  # dot-stuffed, ending with the lone dot
    attempts: int = 0  # sessions it went out on


@dataclass(slots=True)
class _Tx:
    """One message's transaction on one session: the replies so far."""

    out: _Outgoing
    reused: bool  # the session had carried a message before: a stale one may be retried
    answered: bool = False  # the server answered MAIL: it is not tried again elsewhere
    mail: _Reply | None = None
    rcpt: _Reply | None = None
    result: SendResult | None = None  # known before the RSET that ends a refusal


def _prepare(mail: OutgoingMail, settings: MailSettings, at: float | None, index: int) -> _Outgoing:
    """The message's bytes and envelope; raises for a message that cannot be sent."""
    written, utf8 = envelope_address(mail.to)
    _check_address(written)
    data = build_message(mail, settings, at=time.time() if at is None else at)
    if data.startswith(b".") or b"\n." in data:
        data = _LINE_START_DOT.sub(b"..", data)  # RFC 5321 4.5.2: dot-stuffing
    encoding = "utf-8" if utf8 else "ascii"
    return _Outgoing(
        index,
        utf8,
        f"MAIL FROM:<{settings.from_address}>{' SMTPUTF8' if utf8 else ''}\r\n".encode(encoding),
        f"RCPT TO:<{written}>\r\n".encode(encoding),
        data + (b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"),
    )


class _Feed(Generic[_T]):
    """The messages of one ``send_many``: built one at a time as a session asks for the next
    (a message built while the one before is on the wire), and what became of each."""

    def __init__(
        self,
        mailer: Mailer,
        items: Sequence[_T],
        make: Callable[[_T], OutgoingMail | None],
        at: float | None,
    ) -> None:
        self.mailer = mailer
        self.items = items
        self.make = make
        self.at = at
        self.results: list[SendResult | None] = [None] * len(items)
        self.again: collections.deque[_Outgoing] = collections.deque()  # to try on a new session
        self._next = 0

    def take(self) -> _Outgoing | None:
        """The next message to send (those to try again first), or None when all went."""
        while self.again:
            out = self.again.popleft()
            if not self.mailer._closed:
                return out
            self.results[out.index] = SendResult("failed", "mailer closed")
        while self._next < len(self.items):
            index = self._next
            self._next += 1
            if self.mailer._closed:
                self.results[index] = SendResult("failed", "mailer closed")
                continue
            try:
                mail = self.make(self.items[index])
                if mail is None:  # the caller has its own reason not to send it
                    continue
                return _prepare(mail, self.mailer.settings, self.at, index)
            except Exception as e:
                self.results[index] = SendResult("failed", f"message not built: {e}")
        return None

    def record(self, out: _Outgoing, result: SendResult) -> None:
        self.results[out.index] = result
        if result.status != "sent":
            log.info("mail: %s by %s: %s", result.status, self.mailer.settings.host, result.detail)


class _Session(asyncio.Protocol):
    """One SMTP session, opened by aiosmtplib (connect, greeting, EHLO, STARTTLS, AUTH: the
    parts where security is at stake) and taken over for its mail transactions.

    aiosmtplib waits for each reply in a task and arms a timer per command, and a task per
    message woke up for each: most of the gateway's CPU per message, as much as the SMTP
    server itself spent (bench/campaigns.py). Here the messages of a :meth:`chain` are
    driven from :meth:`data_received`: each reply writes the next command at once, the next
    message is built while one is on the wire, and the caller's task wakes up when the list
    is done. With a server that offers PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one
    packet, and after the first message, with the content of the one before (RFC 2920 3.1:
    "the actual transfer of message content is explicitly allowed to be the first command in
    a group"). One timer per session, not per message, watches for a server that stops
    answering.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        # a stream transport whatever the loop (uvloop's is no asyncio.WriteTransport subclass)
        transport = cast(asyncio.WriteTransport, client.transport)
        self.transport = transport
        self.extensions = dict(client.esmtp_extensions)
        self.pipelining = "pipelining" in self.extensions
        self.smtputf8 = "smtputf8" in self.extensions
        self.used_at = time.monotonic()
        self.carried = False  # a message went out on it (a stale session may be retried)
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        # what each reply still expected is for: a command's future, or a transaction's stage
        self._waiters: collections.deque[asyncio.Future[_Reply] | tuple[_Tx, int]] = (
            collections.deque()
        )
        self._buffer = bytearray()
        self._lines: list[str] = []
        self.closed = self._loop.create_future()
        # the chain under way: where its messages come from, the transaction on the wire, the
        # one whose envelope went with its content (pipelining), the next one built
        self._feed: _Feed[Any] | None = None
        self._done: asyncio.Future[None] | None = None
        self._tx: _Tx | None = None
        self._chained: _Tx | None = None
        self._ahead: _Outgoing | None = None
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        transport.set_protocol(self)  # from here on the replies come to this object

    @property
    def is_open(self) -> bool:
        return not self.closed.done() and not self.transport.is_closing()

    # -- asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._buffer:  # the end of a line that came in pieces
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # an unfinished line waits for the rest
            self._buffer += data[end:]
            if len(self._buffer) > MAX_REPLY_BYTES:
                self._abort("a reply line longer than 64 KiB")
                return
        for raw in data[:end].split(b"\n")[:-1]:
            line = raw.rstrip(b"\r")
            more = line[3:4]
            if not (line[:3].isdigit() and more in (b" ", b"-", b"")):
                self._abort(f"not an SMTP reply: {line[:80]!r}")
                return
            self._lines.append(line[4:].decode("utf-8", "replace").strip())
            if more == b"-":  # more lines of the same reply follow
                continue
            reply = _Reply(int(line[:3]), "\n".join(self._lines))
            self._lines = []
            if not self._waiters:
                self._abort(f"a reply nobody asked for: {reply}")
                return
            waiter = self._waiters.popleft()
            if isinstance(waiter, tuple):
                self._deadline = self._loop.time() + self.timeout  # still answering
                self._step(*waiter, reply)
            elif not waiter.done():
                waiter.set_result(reply)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_Disconnected(_describe(exc) if exc else "server disconnected"))
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if not self.closed.done():
            self.closed.set_result(None)

    # a message is written whole even when the socket is slow (pause_writing): the transport
    # keeps what the socket did not take, and nothing more is written before the server
    # answers for all of it

    def _abort(self, why: str) -> None:
        self._fail(_Disconnected(why))
        self.transport.abort()

    # -- commands outside a chain (QUIT)

    async def command(self, line: str) -> _Reply:
        if not self.is_open:
            raise _Disconnected("server disconnected")
        waiter: asyncio.Future[_Reply] = self._loop.create_future()
        self._waiters.append(waiter)
        self.transport.write(f"{line}\r\n".encode("ascii"))
        return await waiter

    async def quit(self) -> None:
        try:
            if self.is_open:
                await self.command("QUIT")
        finally:
            self.transport.close()

    # -- a chain of transactions

    def chain(self, first: _Outgoing, feed: _Feed[Any]) -> asyncio.Future[None]:
        """Send ``first``, then every message ``feed`` has, one transaction after another;
        the future is done when the feed is empty, or the session ended (what it carried
        is recorded in the feed, or given back to it to try on another session)."""
        assert self._feed is None, "one chain at a time on a session"
        self._feed = feed
        self._done = done = self._loop.create_future()
        self._start(first)
        return done

    def _start(self, out: _Outgoing | None) -> None:
        feed = self._feed
        assert feed is not None
        while out is not None and out.utf8 and not self.smtputf8:
            # not the address's fault: a server that takes RFC 6531 would deliver it
            feed.record(out, SendResult("failed", _NO_SMTPUTF8))
            out = feed.take()
        if out is None:
            self._end()
            return
        self._tx = tx = _Tx(out, self.carried)
        out.attempts += 1
        if not self.is_open:  # the server left while idle: as if it had before MAIL
            self._fail(_Disconnected("server disconnected"))
            return
        self._deadline = self._loop.time() + self.timeout
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._deadline, self._watch)
        if self.pipelining:
            self._waiters.extend(((tx, _MAIL), (tx, _RCPT), (tx, _DATA)))
            self.transport.write(out.mail_from + out.rcpt_to + b"DATA\r\n")
        else:
            self._waiters.append((tx, _MAIL))
            self.transport.write(out.mail_from)
        if self._ahead is None:  # built while this one is on the wire
            self._ahead = feed.take()

    def _write(self, tx: _Tx, data: bytes, stage: int) -> None:
        self._waiters.append((tx, stage))
        self.transport.write(data)

    def _step(self, tx: _Tx, stage: int, reply: _Reply) -> None:
        """The next move of a transaction, on each of its replies."""
        if stage == _MAIL:
            tx.answered = True
            tx.mail = reply
            if self.pipelining:
                return
            if reply.ok:
                self._write(tx, tx.out.rcpt_to, _RCPT)
            else:
                self._refuse(tx, "failed", reply)
        elif stage == _RCPT:
            tx.rcpt = reply
            if self.pipelining:
                return
            if reply.ok:
                self._write(tx, b"DATA\r\n", _DATA)
            else:
                self._refuse(tx, "bounced" if reply.code >= 500 else "failed", reply)
        elif stage == _DATA:
            mail, rcpt = tx.mail, tx.rcpt
            assert mail is not None and rcpt is not None
            if not (mail.ok and rcpt.ok):  # pipelined: DATA went out with the refused ones
                if reply.code == 354:
                    # RFC 2920: a server that took DATA after refusing the rest gets an
                    # empty message
                    self._write(tx, b".\r\n", _EMPTY)
                else:
                    self._refused_envelope(tx)
            elif reply.code != 354:
                self._refuse(tx, "failed", reply)
            else:
                self._content(tx)
        elif stage == _EMPTY:
            self._refused_envelope(tx)
        elif stage == _CONTENT:
            if reply.ok:
                self._finish(tx, SendResult("sent", str(reply), reply.code))
            else:
                address = reply.code >= 500 and bool(_ADDRESS_STATUS.search(reply.text))
                self._finish(
                    tx, SendResult("bounced" if address else "failed", str(reply), reply.code)
                )
        else:  # _RSET
            assert tx.result is not None
            if not reply.ok:  # a session that cannot be reset is not used again
                self._finish(tx, tx.result)
                self.transport.close()
            else:
                self._finish(tx, tx.result)

    def _content(self, tx: _Tx) -> None:
        nxt = self._ahead
        if nxt is None or not self.pipelining or (nxt.utf8 and not self.smtputf8):
            self._write(tx, tx.out.content, _CONTENT)
            return
        # the next message's envelope goes with this one's content: one packet, one wait
        self._ahead = None
        self._chained = ntx = _Tx(nxt, True)
        nxt.attempts += 1
        self._waiters.extend(((tx, _CONTENT), (ntx, _MAIL), (ntx, _RCPT), (ntx, _DATA)))
        self.transport.write(tx.out.content + nxt.mail_from + nxt.rcpt_to + b"DATA\r\n")
        assert self._feed is not None
        self._ahead = self._feed.take()

    def _refused_envelope(self, tx: _Tx) -> None:
        mail, rcpt = tx.mail, tx.rcpt
        assert mail is not None and rcpt is not None
        if not mail.ok:
            self._refuse(tx, "failed", mail)
        else:
            self._refuse(tx, "bounced" if rcpt.code >= 500 else "failed", rcpt)

    def _refuse(self, tx: _Tx, status: SendStatus, reply: _Reply) -> None:
        # a refused transaction leaves the session usable once RSET is answered
        tx.result = SendResult(status, str(reply), reply.code)
        self._write(tx, b"RSET\r\n", _RSET)

    def _finish(self, tx: _Tx, result: SendResult) -> None:
        """A transaction is over: record it, go on with the next."""
        feed = self._feed
        assert feed is not None and tx is self._tx
        feed.record(tx.out, result)
        self.carried = True
        if self._chained is not None:  # already on the wire: its replies come next
            self._tx, self._chained = self._chained, None
            return
        self._tx = None
        nxt, self._ahead = self._ahead, None
        self._start(nxt if nxt is not None else feed.take())

    def _end(self) -> None:
        """The chain is over (its feed is empty, or the session ended)."""
        done, self._done = self._done, None
        self._feed = None
        self._tx = self._chained = None
        if done is not None and not done.done():
            done.set_result(None)

    def _fail(self, error: Exception) -> None:
        """The session ended (or timed out) under the chain: what it had on the wire is
        recorded, or given back to the feed when nothing of it reached the server."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not isinstance(waiter, tuple) and not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: nobody may be left to await it
        feed = self._feed
        if feed is None:
            return
        timeout = isinstance(error, TimeoutError)
        for tx in (self._tx, self._chained):
            if tx is None:
                continue
            if tx.result is not None:  # the server had answered for the message already
                feed.record(tx.out, tx.result)
            elif timeout and tx is self._tx:
                log.info("mail: %s did not answer in %s s", feed.mailer.settings.host, self.timeout)
                feed.record(tx.out, SendResult("failed", "timeout"))
            elif not tx.answered and tx.reused and tx.out.attempts == 1:
                # a kept session the server had dropped: nothing of it was sent, try again
                feed.again.append(tx.out)
            else:
                feed.record(tx.out, SendResult("failed", str(error)))
        if self._ahead is not None:  # built, never sent
            feed.again.appendleft(self._ahead)
            self._ahead = None
        self._end()

    def _watch(self) -> None:
        """A server that stops answering mid-transaction: the chain fails with a timeout."""
        self._watchdog = None
        if self._tx is None:
            return  # idle: armed again by the next transaction
        if self._loop.time() < self._deadline:
            self._watchdog = self._loop.call_at(self._deadline, self._watch)
            return
        self._fail(TimeoutError())
        self.transport.abort()


def _same(mail: OutgoingMail) -> OutgoingMail:
    return mail


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
        [result] = await self.send_many([mail], _same, at=at)
        assert result is not None  # every message handed over gets a result
        return result

    async def send_many(
        self,
        items: Sequence[_T],
        make: Callable[[_T], OutgoingMail | None],
        *,
        at: float | None = None,
    ) -> list[SendResult | None]:
        """Send the message ``make`` gives for each item, over up to ``connections`` sessions
        at once, each carrying one message after another; the results in the items' order
        (None where ``make`` gave None). ``make`` is called as each session asks for its next
        message, while the one before is on the wire; if it raises, that item failed. Never
        raises except on cancellation."""
        feed = _Feed(self, items, make, at)
        runners = min(len(items), self.settings.connections)
        if runners == 1:  # one message (or one connection): no task of its own
            await self._run(feed)
        elif runners:
            await asyncio.gather(*(self._run(feed) for _ in range(runners)))
        return feed.results

    async def _run(self, feed: _Feed[Any]) -> None:
        """One session's share of a ``send_many``: a chain until the feed is empty; a new
        session when one ends under it."""
        async with self._slots:
            while (first := feed.take()) is not None:
                try:
                    session = await self._acquire()
                except Exception as e:
                    log.info("mail: cannot reach %s: %s", self.settings.host, _describe(e))
                    feed.record(first, SendResult("failed", _describe(e), _code(e)))
                    continue
                try:
                    await session.chain(first, feed)
                except BaseException:
                    session.transport.abort()  # mid-conversation: in an unknown state
                    raise
                self._release(session)

    async def _acquire(self) -> _Session:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()
            if session.is_open and now - session.used_at < MAX_IDLE_SECONDS:
                return session
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
            session = _Session(client, s.timeout)
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
        return session

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
