"""Replies to campaign e-mails, read from the reply mailbox over IMAP (``mail.replies``).

Every ``interval_s`` the watcher logs in (IMAPS, or STARTTLS, then LOGIN), opens the mailbox
and reads the headers of the messages it has not handled yet. Each campaign e-mail carries a
Message-ID kept in ``campaign_step_runs.message_id``; a message whose In-Reply-To or
References names one of them is about that run, and is one of:

* a **reply**, written by a person: the run is marked replied (as the API's
  ``.../members/{id}/replied`` does), so at its next visit the scheduler lets the lead leave
  ``replied`` (or follows a "replied?" branch);
* an **automatic answer** (``Auto-Submitted`` other than ``no``, ``X-Autoreply``,
  ``Precedence: auto_reply|bulk|junk``, an "Out of office" / "Respuesta automática" subject,
  an empty Return-Path, a message from MAILER-DAEMON): recorded, logged, nothing else;
* a **delivery status notification** (``multipart/report; report-type=delivery-status``,
  RFC 3464), matched by the Message-ID of the returned original: a final failure (``Action:
  failed``, ``Status: 5.x.x``) marks the address bounced and the run ``bounced``, exactly as
  a 5xx at SMTP time does; a delay (4.x.x) is only logged. Other reports (read receipts,
  abuse feedback) are recorded and ignored;
* a **plain-text bounce** (no DSN: older Exim, qmail, Postfix or Sendmail set up without
  one, Gmail's legacy notices), read from its body: only a machine's message (From
  MAILER-DAEMON or postmaster, ``Auto-Submitted``, an empty Return-Path) whose text opens the
  way a mail server's does, matched by the returned copy's Message-ID (or its own
  References), and naming, before the copy, an address of the lead we wrote to. A permanent
  failure is a bounce as above; a warning ("will keep trying", a 4xx) is only logged. A
  person's reply that quotes a bounce or an address is never one: it is not a machine's
  message.

Never twice: the UIDVALIDITY and the highest UID handled are stored with what each message
did, in one transaction; while UIDVALIDITY stays the same only higher UIDs are read. Each
handled message also gets the IMAP keyword ``$Centralita``, which the search excludes: the
second guard, for a server that renumbers its UIDs (a new UIDVALIDITY).

Why a keyword and not ``\\Seen`` on everything, nor a move to another folder: the reply
mailbox is usually also read by people (it is the campaign's Reply-To), and a lead's reply is
exactly the mail a salesperson must not miss. Marking it read, or moving it away, would hide
it in their mail client. So replies and mail that is not ours only get the keyword (invisible
in most clients); automatic answers and bounces of our own e-mails, which nobody needs to
read once the gateway has acted on them, are also marked ``\\Seen``.

A server that is down, or refuses the login, is a log line (never with the password) and an
entry in ``/health``; the watcher tries again after ``interval_s``, doubling the wait after
each failure up to :data:`MAX_BACKOFF`. imaplib (stdlib) talks IMAP, in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import imaplib
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any, Literal, TypeVar

from gateway.campaigns.settings import ReplySettings
from gateway.campaigns.store import CampaignStore
from gateway.errors import GatewayError
from gateway.store.db import Database

log = logging.getLogger("gateway.campaigns.replies")
T = TypeVar("T")

KEYWORD = "$Centralita"  # set on every message handled
BATCH = 200  # messages fetched, recorded and flagged together
REPORT_BYTES = 65536  # of a report: its explanation, status and the original's headers
MAX_BACKOFF = 1800.0  # a mailbox down for long is tried every half hour
HEADER_FIELDS = (
    "FROM",
    "SUBJECT",
    "MESSAGE-ID",
    "IN-REPLY-TO",
    "REFERENCES",
    "AUTO-SUBMITTED",
    "X-AUTOREPLY",
    "X-AUTORESPOND",
    "X-AUTORESPONDER",
    "PRECEDENCE",
    "RETURN-PATH",
    "CONTENT-TYPE",
)

Kind = Literal["reply", "auto_reply", "bounce", "delayed", "receipt"]

# subjects that automatic answers start with (Outlook, Exchange, common vacation responders)
_AUTO_SUBJECTS = (
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto:",
    "out of office",
    "out of the office",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "fuera de oficina",
    "réponse automatique",
    "risposta automatica",
    "resposta automática",
    "automatische antwort",
    "abwesenheitsnotiz",
)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})
_MSG_ID = re.compile(r"<[^<>\s]+>")
_UID = re.compile(rb"\bUID (\d+)")
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")


class MailboxUnavailable(GatewayError):
    """The reply mailbox could not be read this time (server down, login refused, TLS);
    the message never holds the password."""


# -- reading one message (pure) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message is, before it is looked up: its kind, the Message-IDs it is about
    (most specific first), who sent it (a bounce: the address that failed) and why."""

    kind: Kind
    refers_to: tuple[str, ...]
    sender: str = ""
    detail: str = ""
    # a bounce: the addresses it may be about (the failed recipient, then the original's To)
    addresses: tuple[str, ...] = ()
    # read from a plain-text body (not a DSN): one of ``addresses`` must be the lead's
    plain: bool = False


def parse_headers(raw: bytes) -> Message:
    """A message's header block (or the start of a message) as a Message; lenient."""
    return BytesHeaderParser(policy=compat32).parsebytes(raw)


def is_report(headers: Message) -> bool:
    """``multipart/report``: a delivery, read or feedback report whose body must be read."""
    return headers.get_content_type() == "multipart/report"


def may_bounce(headers: Message) -> bool:
    """A machine's message that is not a report: its body may be a plain-text bounce."""
    if is_report(headers):
        return False
    auto = _text(headers, "Auto-Submitted").strip().lower()
    local = parseaddr(_text(headers, "From"))[1].partition("@")[0].lower()
    empty_return = _text(headers, "Return-Path").strip() == "<>"
    return (bool(auto) and not auto.startswith("no")) or local in _DAEMONS or empty_return


def read_message(msg: Message) -> Reading:
    """Classify a message from its headers (and, for a report or a machine's message that may
    be a plain-text bounce, its first :data:`REPORT_BYTES`)."""
    own = _ids(msg, "In-Reply-To") + _ids(msg, "References", newest_first=True)
    sender = parseaddr(_text(msg, "From"))[1]
    if is_report(msg):
        return _read_report(msg, own, sender)
    why = automatic(msg)
    if why:
        if may_bounce(msg):
            plain = _read_plain_bounce(msg, own)
            if plain is not None:
                return plain
        return Reading("auto_reply", own, sender, why)
    return Reading("reply", own, sender)


def automatic(msg: Message) -> str:
    """Why this message was written by a machine rather than a person ('' if it was not)."""
    auto = _text(msg, "Auto-Submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto[:60]}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = msg.get(name)
        if value is not None and _text(msg, name).strip().lower() not in ("no", "false", "0"):
            return f"{name}: {_text(msg, name).strip()[:60]}"
    precedence = _text(msg, "Precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    subject = " ".join(_text(msg, "Subject").split()).lower()
    for start in _AUTO_SUBJECTS:
        if subject.startswith(start):
            return f"Subject: {subject[:80]}"
    if msg.get("Return-Path") is not None and _text(msg, "Return-Path").strip() == "<>":
        return "Return-Path: <> (a machine's message)"
    local = parseaddr(_text(msg, "From"))[1].partition("@")[0].lower()
    if local in _DAEMONS:
        return f"From: {local}"
    return ""


def _read_report(msg: Message, own: tuple[str, ...], sender: str) -> Reading:
    report_type = str(msg.get_param("report-type", "") or "").lower()
    original: list[Message] = []
    blocks: list[Message] = []
    for part in _parts(msg):
        ct = part.get_content_type()
        if ct in ("message/delivery-status", "message/global-delivery-status"):
            blocks += _status_blocks(part)
        elif ct in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original.append(payload[0])
            elif isinstance(payload, str):
                original.append(HeaderParser(policy=compat32).parsestr(payload))
        elif ct in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                original.append(parse_headers(data))
    ids = tuple(i for o in original for i in _ids(o, "Message-ID")) + own
    if report_type not in ("delivery-status", "global-delivery-status"):
        return Reading("receipt", ids, sender, f"report-type={report_type or '?'}")
    sent_to = [a for o in original for _n, a in getaddresses([_text(o, "To")]) if a]
    failed: list[tuple[str, str]] = []  # (address, status and diagnostic)
    delayed = ""
    for b in blocks:
        action = _text(b, "Action").strip().lower()
        m = _STATUS.search(_text(b, "Status"))
        status = m.group(0) if m else ""
        recipient = _address(_text(b, "Original-Recipient")) or _address(
            _text(b, "Final-Recipient")
        )
        diagnostic = " ".join(_text(b, "Diagnostic-Code").split())
        if action == "failed" and status.startswith("5."):
            failed.append((recipient, f"{status} {diagnostic}".strip()))
        elif action in ("delayed", "failed") or status.startswith("4."):
            delayed = delayed or f"{action or '?'} {status}".strip()
    if failed:
        addresses = tuple(dict.fromkeys(a for a in (failed[0][0], *sent_to) if a))
        first = addresses[0] if addresses else ""
        return Reading("bounce", ids, first, failed[0][1][:500], addresses)
    if delayed:
        return Reading("delayed", ids, sender, delayed)
    return Reading("receipt", ids, sender, "delivery-status without a failure")


# how mail servers open a bounce written as plain text (before any copy of the message)
_BOUNCE_OPENINGS = re.compile(
    r"this is the (?:mail system|postfix program) at host"  # Postfix
    r"|this is the qmail-send program"  # qmail
    r"|created automatically by mail delivery software"  # Exim
    r"|delivery to the following recipients? (?:failed|has been delayed)"  # Gmail (legacy)
    r"|the following addresses had permanent fatal errors"  # Sendmail
    r"|the original message was received at"  # Sendmail
    r"|delivery has failed to these recipients"  # Exchange
    r"|message could not be delivered"
    r"|could not be delivered to"
    r"|following address\(es\) failed"
    r"|undeliverable",
    re.IGNORECASE,
)
# a final failure, said in words
_PERMANENT = re.compile(
    r"permanent(?:ly)? (?:error|failure|fatal)|failed permanently|i've given up|given up"
    r"|following address\(es\) failed|i'm sorry to have to inform you"
    r"|delivery has failed to these recipients|not going to try again",
    re.IGNORECASE,
)
# only a warning: the server keeps trying
_TEMPORARY = re.compile(
    r"warning only|warning message only|will keep trying|keep trying until"
    r"|will be retried|delivery attempts will continue|has not yet been delivered"
    r"|has been delayed|not yet been delivered|temporary (?:error|failure)|still trying",
    re.IGNORECASE,
)
# where the returned copy of the message starts (what follows is not the diagnosis)
_COPY_START = re.compile(
    r"^[ \t]*-{2,}.*(?:copy of the message|below this line|original message|returned message"
    r"|message headers follow|undelivered message|original message follows).*$",
    re.IGNORECASE | re.MULTILINE,
)
_COPY_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SMTP_CODE = re.compile(r"(?<![.:\d])\b([45])\d\d\b(?:[ -]+([45]\.\d{1,3}\.\d{1,3}))?")


def _read_plain_bounce(msg: Message, own: tuple[str, ...]) -> Reading | None:
    """A bounce written as plain text by a mail server without DSN; None when the body is
    not one (an out-of-office, a machine's message of another kind)."""
    texts: list[str] = []
    ids: list[str] = []
    for part in _parts(msg):
        ct = part.get_content_type()
        if ct == "text/plain":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    texts.append(data.decode(charset, "replace"))
                except LookupError:
                    texts.append(data.decode("utf-8", "replace"))
        elif ct in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                ids += _ids(payload[0], "Message-ID")
        elif ct in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                ids += _ids(parse_headers(data), "Message-ID")
    text = "\n".join(texts)
    cut = _COPY_START.search(text)
    diagnosis = text[: cut.start()] if cut else text
    ids += _COPY_ID.findall(text[cut.start() :] if cut else text)
    words = " ".join(diagnosis.split())  # phrases wrap anywhere
    if not _BOUNCE_OPENINGS.search(words):
        return None
    addresses = tuple(dict.fromkeys(a.strip(".").lower() for a in _ADDRESS.findall(diagnosis)))
    if not addresses:
        return None
    code = _SMTP_CODE.search(diagnosis)
    if _PERMANENT.search(words):
        hard = True
    elif _TEMPORARY.search(words):
        hard = False
    else:  # no words either way: the server's reply code says (none: it gave up)
        hard = code is None or code.group(1) == "5"
    line = ""
    if code is not None:
        start = diagnosis.rfind("\n", 0, code.start()) + 1
        end = diagnosis.find("\n", code.end())
        line = " ".join(diagnosis[start : end if end >= 0 else None].split())
    status = (code.group(2) or code.group(0)) if code is not None else ""
    refers = tuple(dict.fromkeys(ids)) + own
    if not hard:
        return Reading("delayed", refers, addresses[0], f"plain-text warning {status}".strip())
    detail = f"{status} {line}".strip() if line else "permanent failure (plain text)"
    return Reading("bounce", refers, addresses[0], detail[:500], addresses, plain=True)


def _parts(msg: Message) -> Iterable[Message]:
    """The message and its parts, descending into multiparts only (not into the report's
    status blocks or the returned original, which the email package exposes as parts)."""
    todo = [msg]
    while todo:
        part = todo.pop(0)
        yield part
        payload = part.get_payload()
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            todo[0:0] = [p for p in payload if isinstance(p, Message)]


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    text = payload if isinstance(payload, str) else ""
    return [
        HeaderParser(policy=compat32).parsestr(chunk.strip() + "\n")
        for chunk in re.split(r"\r?\n\s*\r?\n", text)
        if chunk.strip()
    ]


def _address(value: str) -> str:
    """``rfc822; ana@example.es`` -> ``ana@example.es``."""
    kind, sep, address = value.partition(";")
    return (address if sep else kind).strip().strip("<>").strip()


def _ids(msg: Message, name: str, *, newest_first: bool = False) -> tuple[str, ...]:
    found = _MSG_ID.findall(_text(msg, name))
    return tuple(reversed(found)) if newest_first else tuple(found)


def _text(msg: Message, name: str) -> str:
    """A header as text, RFC 2047 words decoded; '' when absent or unreadable."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (ValueError, LookupError, UnicodeError):
        return str(value)


# -- the IMAP session (blocking: runs in a worker thread) -----------------------------------


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): ``Campañas`` ->
    ``Campa&APE-as``."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetched(data: Sequence[Any]) -> dict[int, bytes]:
    """{uid: literal} from an imaplib FETCH answer (the UID may come before or after it)."""
    out: dict[int, bytes] = {}
    pending: bytes | None = None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            meta, literal = item
            m = _UID.search(meta)
            if m:
                out[int(m.group(1))] = literal
                pending = None
            else:
                pending = literal
        elif isinstance(item, bytes) and pending is not None:
            m = _UID.search(item)
            if m:
                out[int(m.group(1))] = pending
            pending = None
    return out


def _uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(u) for u in uids)


class _Session:
    """One IMAP conversation: connect, log in, select, search, fetch, flag, log out.

    Its calls run in worker threads; :meth:`abort` and :meth:`close` may come from another
    thread while one is blocked (the gateway stopping): a connection made after that is
    closed at once, so no socket outlives the session."""

    def __init__(self, settings: ReplySettings, context: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.context = context
        self.conn: imaplib.IMAP4 | None = None
        self.keywords = False  # the mailbox keeps keywords of ours (PERMANENTFLAGS has \*)
        self._guard = threading.Lock()
        self._closed = False

    def _adopt(self, conn: imaplib.IMAP4) -> imaplib.IMAP4:
        with self._guard:
            if not self._closed:
                self.conn = conn
                return conn
        with contextlib.suppress(Exception):
            conn.shutdown()
        raise MailboxUnavailable("stopped while connecting")

    def _fail(self, doing: str, e: BaseException) -> MailboxUnavailable:
        s = self.settings
        text = str(e) or type(e).__name__
        if isinstance(e, imaplib.IMAP4.error) and e.args and isinstance(e.args[0], bytes):
            text = e.args[0].decode("utf-8", "replace")
        if s.password and s.password in text:  # a server echoing the command back
            text = text.replace(s.password, "***")
        return MailboxUnavailable(f"{doing} {s.host}:{s.server_port}: {text}"[:500])

    def open(self) -> int:
        """Connect, log in and select the mailbox; returns its UIDVALIDITY."""
        s = self.settings
        try:
            if s.security == "tls":
                conn = self._adopt(
                    imaplib.IMAP4_SSL(
                        s.host, s.server_port, ssl_context=self.context, timeout=s.timeout
                    )
                )
            else:
                conn = self._adopt(imaplib.IMAP4(s.host, s.server_port, timeout=s.timeout))
                if s.security == "starttls":
                    conn.starttls(ssl_context=self.context)
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("cannot connect to", e) from None
        try:
            if s.username.isascii() and s.password.isascii():
                conn.login(_quoted(s.username), s.password)
            else:  # LOGIN is ASCII only; SASL PLAIN carries UTF-8
                secret = f"\0{s.username}\0{s.password}".encode()
                conn.authenticate("PLAIN", lambda _challenge: secret)
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("login refused by", e) from None
        try:
            typ, data = conn.select(_quoted(imap_utf7(s.mailbox)))
            if typ != "OK":
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
                raise imaplib.IMAP4.error(f"mailbox {s.mailbox!r}: {text}")
            _typ, validity = conn.response("UIDVALIDITY")
            _typ, flags = conn.response("PERMANENTFLAGS")
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("cannot open the mailbox on", e) from None
        self.keywords = any(isinstance(f, bytes) and b"\\*" in f for f in flags or ())
        try:
            return int(validity[0])
        except (TypeError, ValueError, IndexError):
            raise MailboxUnavailable(
                f"{s.host}:{s.server_port} gave no UIDVALIDITY for {s.mailbox!r}"
            ) from None

    def _uid(self, *args: str) -> list[Any]:
        assert self.conn is not None
        typ, data = self.conn.uid(*args)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID {args[0]} answered {typ}: {data!r}"[:300])
        return list(data)

    def search(self, after: int | None) -> list[int]:
        """UIDs not handled yet, oldest first: above ``after`` (None: any) and without our
        keyword."""
        criteria = ["NOT", "KEYWORD", KEYWORD]
        if after is not None:
            # "n:*" always includes the highest UID, even below n: filtered again below
            criteria = ["UID", f"{after + 1}:*", *criteria]
        try:
            data = self._uid("SEARCH", *criteria)
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("search failed on", e) from None
        found = [int(u) for d in data if isinstance(d, bytes) for u in d.split()]
        return sorted(u for u in found if after is None or u > after)

    def fetch(self, uids: Sequence[int], what: str) -> dict[int, bytes]:
        try:
            return _fetched(self._uid("FETCH", _uid_set(uids), f"(UID {what})"))
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("fetch failed on", e) from None

    def headers(self, uids: Sequence[int]) -> dict[int, bytes]:
        return self.fetch(uids, f"BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})]")

    def starts(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The first :data:`REPORT_BYTES` of each message (reports only)."""
        return self.fetch(uids, f"BODY.PEEK[]<0.{REPORT_BYTES}>")

    def flag(self, uids: Sequence[int], seen: set[int]) -> None:
        """Mark handled messages: our keyword on each, ``\\Seen`` on those in ``seen``."""
        groups: dict[str, list[int]] = {}
        for uid in uids:
            flags = [KEYWORD] if self.keywords else []
            if uid in seen:
                flags.append("\\Seen")
            if flags:
                groups.setdefault(" ".join(flags), []).append(uid)
        try:
            for names, group in groups.items():
                self._uid("STORE", _uid_set(group), "+FLAGS.SILENT", f"({names})")
        except (OSError, imaplib.IMAP4.error) as e:
            raise self._fail("cannot flag messages on", e) from None

    def close(self) -> None:
        with self._guard:
            self._closed = True
            conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if conn.state == "SELECTED":
                conn.close()  # no expunge: CLOSE only leaves the mailbox
            conn.logout()
        except Exception:  # a dead or aborted connection: only the socket is left to free
            with contextlib.suppress(Exception):
                conn.shutdown()

    def abort(self) -> None:
        """From another thread: unblock a read in progress, refuse a connection still being
        made (the gateway is stopping). Does not block."""
        with self._guard:
            self._closed = True
            conn = self.conn
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


# -- the watcher ----------------------------------------------------------------------------


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking IMAP call in a daemon thread of its own. Unlike the loop's executor,
    whose threads ``asyncio.run`` joins at exit, nothing waits for it: a server that hangs
    (accepts, then says nothing) cannot hold up a stopping gateway; the call ends by itself
    at ``timeout`` and its socket is closed then."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the poll was cancelled: nobody waits for this any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as e:  # handed to the awaiting task, which decides
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is gone: the gateway stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="imap", daemon=True).start()
    return await future


@dataclass(slots=True)
class PollReport:
    """What one poll found: messages read, and how many of each kind were ours."""

    read: int = 0
    replies: int = 0
    auto_replies: int = 0
    bounces: int = 0
    delayed: int = 0
    receipts: int = 0
    not_ours: int = 0

    def add(self, kind: str) -> None:
        name = {
            "reply": "replies",
            "auto_reply": "auto_replies",
            "bounce": "bounces",
            "delayed": "delayed",
            "receipt": "receipts",
        }[kind]
        setattr(self, name, getattr(self, name) + 1)


@dataclass(slots=True)
class _Health:
    status: str = "starting"  # starting | ok | error
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0  # in a row
    totals: PollReport = field(default_factory=PollReport)


@dataclass(frozen=True, slots=True)
class _Run:
    id: int
    person_id: int
    status: str


class ReplyWatcher:
    """Polls the reply mailbox and acts on what answered the campaigns' e-mails (see the
    module docstring). One per gateway; ``poll()`` is also what tests call."""

    def __init__(
        self,
        db: Database,
        settings: ReplySettings,
        clock: Callable[[], float],
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.store = CampaignStore(db)
        self._tls = tls_context
        self._health = _Health()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        if s.security == "none" and s.host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "campaigns: reply mailbox %s: security none sends the password unencrypted"
                " over the network; use tls or starttls",
                s.account,
            )
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="campaign-replies")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        session = self._session
        if session is not None:  # a poll waiting on the server: make it fail now
            session.abort()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while True:
            # a failure is logged and in /health; retry_in() then waits longer
            with contextlib.suppress(MailboxUnavailable):
                await self.poll()
            await asyncio.sleep(self.retry_in())

    def retry_in(self) -> float:
        """Seconds to the next poll: ``interval_s``, doubled for each failure in a row."""
        failures = self._health.failures
        if not failures:
            return self.settings.interval_s
        doubled: float = self.settings.interval_s * 2.0 ** min(failures - 1, 16)
        return min(MAX_BACKOFF, doubled)

    def health(self) -> dict[str, Any]:
        """The /health entry: the mailbox (no password), how the last poll went, totals."""
        h = self._health
        return {
            "account": self.settings.account,
            "status": h.status,
            "last_success": h.last_success,
            "last_error": h.last_error,
            "last_error_at": h.last_error_at,
            "failures": h.failures,
            "retry_in": self.retry_in(),
            # since the gateway started: messages read, and those that answered our e-mails
            "read": h.totals.read,
            "replies": h.totals.replies,
            "auto_replies": h.totals.auto_replies,
            "bounces": h.totals.bounces,
        }

    # -- one poll ----------------------------------------------------------------------------

    async def poll(self) -> PollReport:
        """Read what arrived since the last poll and act on it; MailboxUnavailable (logged,
        in /health) when the mailbox cannot be read. With several gateways on one store, one
        reads the mailbox at a time; the others find nothing to do (an empty report)."""
        async with self._lock, self.db.exclusive("campaigns:replies") as mine:
            if not mine:
                return PollReport()
            try:
                report = await self._poll()
            except MailboxUnavailable as e:
                self._failed(str(e))
                raise
            except Exception as e:  # the store, or a message we cannot handle: same retry
                log.exception(
                    "campaigns: reading the reply mailbox %s failed", self.settings.account
                )
                self._failed(f"{type(e).__name__}: {e}"[:500])
                raise MailboxUnavailable(str(e)) from e
            h = self._health
            if h.status == "error":
                log.info("campaigns: reply mailbox %s readable again", self.settings.account)
            h.status, h.failures, h.last_success = "ok", 0, self.clock()
            for name in ("read", "replies", "auto_replies", "bounces", "delayed", "receipts"):
                setattr(h.totals, name, getattr(h.totals, name) + getattr(report, name))
            return report

    def _failed(self, error: str) -> None:
        h = self._health
        h.status, h.last_error, h.last_error_at = "error", error, self.clock()
        h.failures += 1
        log.warning(
            "campaigns: reply mailbox %s: %s; trying again in %.0f s",
            self.settings.account,
            error,
            self.retry_in(),
        )

    def _context(self) -> ssl.SSLContext | None:
        if self.settings.security == "none":
            return None
        if self._tls is None:
            ca_file = self.settings.ca_file
            try:
                self._tls = ssl.create_default_context(cafile=ca_file or None)
            except (OSError, ssl.SSLError) as e:
                raise MailboxUnavailable(
                    f"ca_file {ca_file!r} cannot be used: {getattr(e, 'strerror', None) or e}"
                ) from None
        return self._tls

    async def _poll(self) -> PollReport:
        session = _Session(self.settings, self._context())  # first: a bad ca_file fails here
        self._session = session
        try:
            validity = await _in_thread(session.open)
            cursor = await self._cursor()
            after: int | None = None
            if cursor is not None and cursor[0] == validity:
                after = cursor[1]
            elif cursor is not None:
                log.warning(
                    "campaigns: reply mailbox %s has a new UIDVALIDITY (%d, was %d): reading"
                    " again every message without the %s keyword",
                    self.settings.account,
                    validity,
                    cursor[0],
                    KEYWORD,
                )
            uids = await _in_thread(session.search, after)
            report = PollReport()
            for start in range(0, len(uids), BATCH):
                chunk = uids[start : start + BATCH]
                readings = await self._read(session, chunk)
                seen = await self._record(validity, chunk, readings, report)
                await _in_thread(session.flag, chunk, seen)
            if not uids and (cursor is None or cursor[0] != validity):
                await self._save_cursor(validity, 0)
            if report.read:
                log.info(
                    "campaigns: reply mailbox %s: read=%d replies=%d auto_replies=%d"
                    " bounces=%d delayed=%d not_ours=%d",
                    self.settings.account,
                    report.read,
                    report.replies,
                    report.auto_replies,
                    report.bounces,
                    report.delayed,
                    report.not_ours,
                )
            return report
        finally:
            self._session = None
            await _in_thread(session.close)

    async def _read(self, session: _Session, uids: Sequence[int]) -> dict[int, Reading]:
        raw = await _in_thread(session.headers, uids)
        heads = {uid: parse_headers(raw.get(uid, b"")) for uid in uids}
        reports = [uid for uid, h in heads.items() if is_report(h) or may_bounce(h)]
        bodies = await _in_thread(session.starts, reports) if reports else {}
        out: dict[int, Reading] = {}
        for uid, h in heads.items():
            msg = h
            if uid in bodies:
                msg = BytesParser(policy=compat32).parsebytes(bodies[uid])
            out[uid] = read_message(msg)
        return out

    # -- the store ---------------------------------------------------------------------------

    async def _cursor(self) -> tuple[int, int] | None:
        rows = list(
            await self.db.conn.execute_fetchall(
                "SELECT uidvalidity, last_uid FROM mail_reply_cursors WHERE account = ?",
                (self.settings.account,),
            )
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def _save_cursor(self, validity: int, last_uid: int) -> None:
        async with self.db.one_statement() as conn:
            await conn.execute(
                "INSERT INTO mail_reply_cursors (account, uidvalidity, last_uid, updated_at)"
                " VALUES (?,?,?,?) ON CONFLICT (account) DO UPDATE SET"
                " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
                " updated_at = excluded.updated_at",
                (self.settings.account, validity, last_uid, self.clock()),
            )

    async def _runs(self, ids: set[str]) -> dict[str, _Run]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = await self.db.conn.execute_fetchall(
            "SELECT r.message_id, r.id, m.person_id, r.status FROM campaign_step_runs r"
            " JOIN campaign_members m ON m.id = r.member_id"
            f" WHERE r.kind = 'email' AND r.message_id IN ({marks})",
            list(ids),
        )
        return {r[0]: _Run(r[1], r[2], r[3]) for r in rows}

    async def _record(
        self,
        validity: int,
        uids: Sequence[int],
        readings: dict[int, Reading],
        report: PollReport,
    ) -> set[int]:
        """Act on a batch, and move the cursor past it, in one transaction; returns the UIDs
        to mark ``\\Seen`` (machine messages about our e-mails)."""
        runs = await self._runs({i for r in readings.values() for i in r.refers_to})
        now = self.clock()
        seen: set[int] = set()
        account = self.settings.account
        async with self.db.transaction() as conn:
            for uid in uids:
                report.read += 1
                reading = readings[uid]
                run = next((runs[i] for i in reading.refers_to if i in runs), None)
                if run is None:
                    report.not_ours += 1
                    continue
                if reading.plain:
                    reading = await self._ours(conn, run, reading)
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO campaign_replies (account, uidvalidity, uid, run_id,"
                    " person_id, kind, sender, detail, at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        account,
                        validity,
                        uid,
                        run.id,
                        run.person_id,
                        reading.kind,
                        reading.sender[:320],
                        reading.detail[:500],
                        now,
                    ),
                )
                if cur.rowcount == 0:
                    continue  # handled already
                report.add(reading.kind)
                if reading.kind != "reply":
                    seen.add(uid)
                await self._act(conn, run, reading, now)
            await conn.execute(
                "INSERT INTO mail_reply_cursors (account, uidvalidity, last_uid, updated_at)"
                " VALUES (?,?,?,?) ON CONFLICT (account) DO UPDATE SET"
                " uidvalidity = excluded.uidvalidity,"
                " last_uid = max(CASE WHEN mail_reply_cursors.uidvalidity = excluded.uidvalidity"
                " THEN mail_reply_cursors.last_uid ELSE 0 END, excluded.last_uid),"
                " updated_at = excluded.updated_at",
                (account, validity, max(uids), now),
            )
        return seen

    async def _ours(self, conn: Any, run: _Run, reading: Reading) -> Reading:
        """A plain-text bounce about the address we wrote to (the lead's, named in its
        diagnosis), or, naming none of them, a machine's message that is not our bounce."""
        marks = ",".join("?" * len(reading.addresses))
        rows = list(
            await conn.execute_fetchall(
                "SELECT lower(email) FROM emails"
                f" WHERE person_id = ? AND lower(email) IN ({marks})",
                (run.person_id, *reading.addresses),
            )
        )
        if not rows:
            why = "plain-text bounce naming no address the e-mail went to"
            return Reading("auto_reply", reading.refers_to, reading.sender, why)
        theirs = {r[0] for r in rows}
        addresses = tuple(a for a in reading.addresses if a in theirs)
        return replace(reading, sender=addresses[0], addresses=addresses)

    async def _act(self, conn: Any, run: _Run, reading: Reading, now: float) -> None:
        if reading.kind == "reply":
            await self.store.mark_replied(run.id, now)
            log.info("campaigns: run %d was answered by %r: marked replied", run.id, reading.sender)
        elif reading.kind == "bounce":
            # as a 5xx at SMTP time (scheduler._finish_mail): no later step uses the address
            addresses = [a.lower() for a in reading.addresses] or [""]
            marks = ",".join("?" * len(addresses))
            cur = await conn.execute(
                "UPDATE emails SET bounced_at = ?, bounce_detail = ?"
                f" WHERE person_id = ? AND lower(email) IN ({marks})",
                (now, reading.detail[:500], run.person_id, *addresses),
            )
            await conn.execute(
                "UPDATE campaign_step_runs SET status = 'bounced', detail = ?"
                " WHERE id = ? AND status IN ('sent', 'unknown')",
                (f"{'bounce' if reading.plain else 'DSN'} {reading.detail}"[:500], run.id),
            )
            if cur.rowcount:
                log.info(
                    "campaigns: run %d bounced (%s): %r marked bounced",
                    run.id,
                    reading.detail[:120],
                    reading.sender,
                )
            else:
                log.warning(
                    "campaigns: run %d bounced (%s) for %r, not an address of person %d",
                    run.id,
                    reading.detail[:120],
                    reading.sender,
                    run.person_id,
                )
        else:
            log.info(
                "campaigns: %s to run %d ignored (%s)",
                reading.kind.replace("_", " "),
                run.id,
                reading.detail[:120],
            )
