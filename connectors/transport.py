"""One aiohttp session per connector, with the error mapping every connector shares.

Whatever goes wrong on the wire becomes a ``ConnectorError`` (or ``ConnectorTimeout``) whose
text names the CRM host and the failure, never a URL query string (it can hold a session id)
nor a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

import aiohttp
import msgspec

from gateway.errors import ConnectorError, ConnectorTimeout

T = TypeVar("T")

USER_AGENT = "Centralita/0.1 (+crm-connector)"


class RequestOptions(TypedDict, total=False):
    """What ``request_json`` passes through to ``request`` unchanged."""

    params: Mapping[str, str] | None
    data: Mapping[str, str] | bytes | None
    headers: Mapping[str, str] | None


class HttpTransport:
    """Sends requests to one CRM and decodes JSON answers."""

    def __init__(self, base_url: str, *, verify_tls: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.host = urlsplit(base_url).netloc
        self._verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._verify_tls, limit=8),
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=120),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Status and body; raises ConnectorError/ConnectorTimeout for transport failures."""
        if self._session is None or self._session.closed:
            raise ConnectorError(f"{self.host}: connector is not started (or already closed)")
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                return resp.status, await resp.read()
        except TimeoutError as e:
            raise ConnectorTimeout(f"{self.host}: no answer within {timeout:g} s") from e
        except aiohttp.ClientError as e:
            raise ConnectorError(f"{self.host}: {type(e).__name__}") from e

    async def request_json(
        self, method: str, url: str, *, timeout: float, **options: Unpack[RequestOptions]
    ) -> Any:
        """The decoded JSON answer of a 2xx response; anything else is a ConnectorError."""
        status, body = await self.request(method, url, timeout=timeout, **options)
        if 300 <= status < 400:
            raise ConnectorError(
                f"{self.host}: HTTP {status} redirect; set the connector url to the final "
                "address (redirects are not followed: they would resend credentials)"
            )
        if status >= 400:
            raise ConnectorError(f"{self.host}: HTTP {status}")
        return decode_json(body, self.host)


def decode_json(body: bytes, host: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        raise ConnectorError(f"{host}: answered something that is not JSON") from e


class LoginRefused(ConnectorError):
    """The CRM refused the configured credentials (fix the config or the CRM user)."""


class LoginGate:
    """Holds back logins for a while after the CRM refused our credentials.

    Every ringing call would otherwise try (and fail) to log in again, and many CRMs lock an
    account after a few failures. Until ``cooldown`` seconds pass, ``check()`` re-raises the
    refusal at once."""

    def __init__(self, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._cooldown = cooldown
        self._clock = clock
        self._refused: tuple[float, str] | None = None

    def check(self) -> None:
        if self._refused is not None:
            at, message = self._refused
            if self._clock() - at < self._cooldown:
                raise ConnectorError(f"{message} (not retried for {self._cooldown:g} s)")
            self._refused = None

    def refused(self, message: str) -> None:
        self._refused = (self._clock(), message)

    def accepted(self) -> None:
        self._refused = None


@contextlib.asynccontextmanager
async def deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound a whole operation (login and retries included) to the connector's timeout."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as e:
        raise ConnectorTimeout(f"{what}: no answer within {seconds:g} s") from e


async def all_of(*aws: Awaitable[T]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure.

    (``asyncio.gather`` would leave the others running against a connector being closed.)"""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_wrap(a)) for a in aws]
    except BaseExceptionGroup as eg:
        first = eg.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _wrap(aw: Awaitable[T]) -> T:
    return await aw
