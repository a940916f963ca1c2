"""Shared campaign test fixtures: a real SMTP server (aiosmtpd) on loopback that keeps what it
receives and can refuse the next recipient.

Use it from any test module with ``from tests.campaign_fixtures import smtp_sink  # noqa: F401``;
``make_smtp_sink(...)`` builds one with TLS or AUTH for the mailer's own tests.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Delivery:
    """One message as the server accepted it: the SMTP envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class _Handler:
    lock: threading.Lock = field(default_factory=threading.Lock)
    deliveries: list[Delivery] = field(default_factory=list)
    refusals: list[int] = field(default_factory=list)  # codes for the next RCPTs, in order
    refuse_always: dict[str, int] = field(default_factory=dict)  # address -> code, every RCPT
    refused: list[tuple[int, str]] = field(default_factory=list)  # (code, address) refused
    logins: list[str] = field(default_factory=list)
    connections: int = 0
    drop_after_data: int = 0  # close the session after this many more accepted messages
    pipelining: bool = False  # offer PIPELINING (RFC 2920) in the EHLO answer, as Postfix does
    chunks: list[bytes] = field(default_factory=list)  # what arrived, read by read

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the hook takes over what aiosmtpd does without one
        if self.pipelining:  # aiosmtpd reads pipelined commands in order; it just never says so
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.lock:
            code = self.refusals.pop(0) if self.refusals else 0
            code = code or self.refuse_always.get(address, 0)
            if code:
                self.refused.append((code, address))
        if code >= 500:
            return f"{code} 5.1.1 <{address}>: mailbox unavailable"
        if code:
            return f"{code} 4.3.0 <{address}>: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):  # pragma: no cover - only with decode_data=True
            raw = raw.encode()
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.deliveries.append(
                Delivery(str(envelope.mail_from), list(envelope.rcpt_tos), msg, raw)
            )
            drop = self.drop_after_data == 1
            self.drop_after_data = max(0, self.drop_after_data - 1)
        if drop and server.transport is not None:
            # after the 250 below is written (same task, no await in between): like a server
            # that times an idle session out while the client keeps it
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's Controller, but happy with port 0: it reads back the port the OS chose."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        self._sink_handler = handler
        super().__init__(handler, hostname="127.0.0.1", port=0, **kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self) -> SMTP:
        with self._sink_handler.lock:
            self._sink_handler.connections += 1
        smtpd = super().factory()
        self.sessions.append(smtpd)
        received = smtpd.data_received
        handler = self._sink_handler

        def data_received(data: bytes) -> None:
            with handler.lock:  # read by the test's thread through SmtpSink.chunks
                handler.chunks.append(data)
            received(data)

        smtpd.data_received = data_received  # type: ignore[method-assign]
        return smtpd

    sessions: list[SMTP]

    def start(self) -> None:
        self.sessions = []
        super().start()

    def stop(self, no_assert: bool = False) -> None:
        # sessions a client left open (or a failed TLS handshake left half-done) are closed
        # on the server's own loop before it stops: else their sockets outlive the test
        if self._thread is not None and self.loop.is_running():

            async def close_sessions() -> None:
                for smtpd in self.sessions:
                    if smtpd.transport is not None:
                        smtpd.transport.abort()
                for _ in range(3):  # let connection_lost callbacks run and free the sockets
                    await asyncio.sleep(0)

            asyncio.run_coroutine_threadsafe(close_sessions(), self.loop).result(timeout=5)
        super().stop(no_assert)


class SmtpSink:
    """A running SMTP server on 127.0.0.1 and what it received.

    ``messages``: every accepted message (EmailMessage, policy.default), oldest first;
    ``fail_next(550)`` / ``fail_next(451)``: refuse the next RCPT with that code;
    ``connections``: SMTP sessions opened so far (the trigger connection at start-up excluded);
    ``chunks``: the bytes the server read, read by read (pipelined commands arrive together)."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        credentials: tuple[str, str] | None = None,
        implicit_tls: bool = False,
        smtputf8: bool = False,
        pipelining: bool = False,
    ) -> None:
        self._handler = _Handler(pipelining=pipelining)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if implicit_tls:  # TLS from the first byte (port 465 style)
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        if credentials is not None:
            kwargs["authenticator"] = self._authenticator(credentials)
            kwargs["auth_required"] = True
            # plain-text AUTH is allowed only when the test has no TLS to offer
            kwargs["auth_require_tls"] = tls_context is not None and not implicit_tls
        self._controller = _Controller(self._handler, **kwargs)
        self.host = "127.0.0.1"
        self.port = 0
        self._base_connections = 0

    def _authenticator(self, credentials: tuple[str, str]) -> Any:
        handler = self._handler

        def check(
            server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
        ) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and (
                    auth_data.login.decode(),
                    auth_data.password.decode(),
                )
                == credentials
            )
            if ok:
                with handler.lock:
                    handler.logins.append(auth_data.login.decode())
            return AuthResult(success=ok, handled=False)  # handled=False: send the 535

        return check

    def start(self) -> None:
        self._controller.start()
        self.port = self._controller.port
        with self._handler.lock:
            self._base_connections = self._handler.connections

    def stop(self) -> None:
        self._controller.stop()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._handler.lock:
            return list(self._handler.deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        return [d.message for d in self.deliveries]

    @property
    def refused(self) -> list[tuple[int, str]]:
        with self._handler.lock:
            return list(self._handler.refused)

    @property
    def logins(self) -> list[str]:
        with self._handler.lock:
            return list(self._handler.logins)

    @property
    def chunks(self) -> list[bytes]:
        with self._handler.lock:
            return list(self._handler.chunks)

    @property
    def connections(self) -> int:
        with self._handler.lock:
            return self._handler.connections - self._base_connections

    def fail_next(self, code: int = 550, times: int = 1) -> None:
        """Refuse the next ``times`` RCPT commands with ``code`` (5xx: permanent, 4xx: later)."""
        if not (400 <= code < 600):
            raise ValueError(f"not an SMTP failure code: {code}")
        with self._handler.lock:
            self._handler.refusals.extend([code] * times)

    def refuse(self, address: str, code: int = 550) -> None:
        """Refuse every RCPT of ``address`` with ``code``, whenever it comes."""
        if not (400 <= code < 600):
            raise ValueError(f"not an SMTP failure code: {code}")
        with self._handler.lock:
            self._handler.refuse_always[address] = code

    def drop_after_next_message(self) -> None:
        """Close the SMTP session right after accepting the next message (the client thinks
        its kept connection is still open)."""
        with self._handler.lock:
            self._handler.drop_after_data = 1

    def clear(self) -> None:
        with self._handler.lock:
            self._handler.deliveries.clear()


def make_smtp_sink(
    *,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    credentials: tuple[str, str] | None = None,
    implicit_tls: bool = False,
    smtputf8: bool = False,
    pipelining: bool = False,
) -> SmtpSink:
    """A started sink; the caller stops it (the ``smtp_sink`` fixture does that for you).
    ``tls_context``: offer STARTTLS (or, with ``implicit_tls``, TLS from the first byte);
    ``credentials``: require AUTH with this (login, password); ``smtputf8``: take addresses
    with accents in the mailbox name (RFC 6531), as Postfix and Exim can; ``pipelining``: offer
    PIPELINING (RFC 2920), as Postfix and Exim do."""
    sink = SmtpSink(
        tls_context=tls_context,
        require_starttls=require_starttls,
        credentials=credentials,
        implicit_tls=implicit_tls,
        smtputf8=smtputf8,
        pipelining=pipelining,
    )
    sink.start()
    return sink


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A plain SMTP server (no TLS, no AUTH) on 127.0.0.1 and a free port."""
    sink = make_smtp_sink()
    try:
        yield sink
    finally:
        sink.stop()
