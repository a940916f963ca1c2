"""What every HTTP CRM connector shares, so each vendor module only speaks its CRM's API.

``HttpCrmConnector`` owns the transport, the health record and the deadline around each lookup
and call write (a failure inside it is recorded on ``health()`` and raised). A vendor module
gives ``_find(e164, raw, timeout)`` and ``_write(call, timeout)``. ``SessionCrmConnector`` adds
the login every session-based CRM needs: one login at a time, retried once when the CRM says the
session died, held back for a while after the CRM refused our credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar, Generic, Protocol, TypeVar

from connectors.base import ConnectorHealth, SessionExpired
from connectors.callrecord import FinishedCall
from connectors.health import HealthTracker
from connectors.transport import HttpTransport, LoginGate, LoginRefused, all_of, deadline
from gateway.errors import ConnectorError, InvalidNumber
from gateway.lookup.card import CallerCard
from gateway.lookup.numbers import normalize


class _Settings(Protocol):
    """The settings every connector type has (``connectors.settings``), as the base reads them."""

    @property
    def name(self) -> str: ...
    @property
    def timeout_ms(self) -> int: ...
    @property
    def write_timeout_ms(self) -> int: ...
    @property
    def verify_tls(self) -> bool: ...
    @property
    def users(self) -> dict[str, str]: ...


class _UrlSettings(_Settings, Protocol):
    @property
    def url(self) -> str: ...


S = TypeVar("S", bound=_Settings)
U = TypeVar("U", bound=_UrlSettings)
K = TypeVar("K")  # what a login gives: a session id, a user id...
R = TypeVar("R")
T = TypeVar("T")


async def first_found(
    places: list[str], search: Callable[[str], Awaitable[list[T]]]
) -> tuple[str, T] | None:
    """Search every place at once; the first place in order that found anything, with its
    first row (so a contact wins over a lead however fast each answered)."""
    found = await all_of(*(search(p) for p in places))
    for place, rows in zip(places, found, strict=True):
        if rows:
            return place, rows[0]
    return None


class HttpCrmConnector(Generic[S]):
    """A ``CrmConnector`` over one ``HttpTransport``; subclasses say how to find and write."""

    def __init__(
        self,
        settings: S,
        *,
        public_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self._public_url = public_url
        self._clock = clock
        self._health = HealthTracker(settings.name, clock)
        self._http = HttpTransport(self._base_url(), verify_tls=settings.verify_tls)
        # the caller directory's view of this CRM (set by the app): write-backs find the
        # record a call belongs to there first, however the number was typed in the CRM
        self.directory_find: Callable[[str], Awaitable[CallerCard | None]] | None = None
        self.default_region = "ES"  # the app sets the config's ``lookup.default_region``
        self._setup()

    def _base_url(self) -> str:
        """The CRM address the transport talks to (read from ``self.settings``)."""
        raise NotImplementedError

    def _setup(self) -> None:
        """Per-connector state, set at the end of ``__init__`` (so no subclass repeats its
        signature); an override calls ``super()._setup()`` first."""

    async def start(self) -> None:
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    def health(self) -> ConnectorHealth:
        return self._health.snapshot()

    @contextlib.asynccontextmanager
    async def _tracked(self, timeout: float) -> AsyncIterator[None]:
        """Bound the block to ``timeout`` seconds and record its outcome on ``health()``."""
        try:
            async with deadline(timeout, self.name):
                yield
        except ConnectorError as e:
            self._health.error(str(e))
            raise
        self._health.success()

    async def lookup(self, e164: str, raw: str) -> CallerCard | None:
        timeout = self.settings.timeout_ms / 1000
        async with self._tracked(timeout):
            card = await self._find(e164, raw, timeout)
        return card

    async def log_call(self, record: dict[str, object]) -> None:
        call = FinishedCall.from_record(record, self._public_url)
        if not call.is_customer_call:
            return
        timeout = self.settings.write_timeout_ms / 1000
        async with self._tracked(timeout):
            await self._write(call, timeout)

    async def _parent(self, number: str, timeout: float) -> CallerCard | None:
        """The CRM record a call with ``number`` belongs to: the directory's copy when it has
        one (no round trip), else a live query."""
        try:
            e164 = normalize(number, self.default_region).e164
        except InvalidNumber:
            return None  # an anonymous or broken caller ID: the call is logged unlinked
        if self.directory_find is not None:
            card = await self.directory_find(e164)
            if card is not None:
                return card
        return await self._find(e164, number, timeout)

    async def _find(self, e164: str, raw: str, timeout: float) -> CallerCard | None:
        """The caller's card, or None; every request inside ``timeout`` seconds."""
        raise NotImplementedError

    async def _write(self, call: FinishedCall, timeout: float) -> None:
        """Store the call in the CRM once (a retry must find the first write)."""
        raise NotImplementedError


class SessionCrmConnector(HttpCrmConnector[U], Generic[U, K]):
    """A CRM reached at ``<url><API_PATH>`` that wants a login before anything else."""

    API_PATH: ClassVar[str] = ""

    def _setup(self) -> None:
        self._endpoint = self._http.base_url + self.API_PATH
        self._session: K | None = None
        self._login_lock = asyncio.Lock()
        self._gate = LoginGate()
        self._owner_of = {uid: agent for agent, uid in self.settings.users.items()}

    def _base_url(self) -> str:
        return self.settings.url

    async def _open_session(self, timeout: float) -> K:
        """Log in; raise ``LoginRefused`` when the CRM refuses the configured credentials."""
        raise NotImplementedError

    async def _login(self, stale: K | None, timeout: float) -> K:
        async with self._login_lock:
            if self._session is not None and self._session != stale:
                return self._session  # someone else logged in while we waited
            self._gate.check()
            try:
                session = await self._open_session(timeout)
            except LoginRefused as e:
                self._gate.refused(str(e))
                raise
            self._gate.accepted()
            self._session = session
            return session

    async def _with_session(self, send: Callable[[K], Awaitable[R]], timeout: float) -> R:
        """``send(session)``, logging in (again, once) as needed."""
        session = self._session or await self._login(None, timeout)
        try:
            return await send(session)
        except SessionExpired:
            session = await self._login(session, timeout)
            return await send(session)
