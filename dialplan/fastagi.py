"""FastAGI service: the caller's name from the CRM before the phone rings, and the owner agent.

Asterisk calls ``AGI(agi://<gateway>:4573/callerid)`` from the inbound context; the service
looks the caller up through the gateway's lookup chain (store first, then CRMs, within the
lookup budget) and sets, on the channel:

- ``CALLERID(name)`` to the person's name (and company) when known;
- ``CENTRALITA_OWNER_EXT`` to the owner agent's extension, so the dialplan can ring them first;
- ``CENTRALITA_KNOWN`` to ``1`` or ``0``.

panoramisk's FastAGI ``Request`` sends the commands and parses their results. The handshake is
ours: panoramisk's ``Application.handler`` loops forever on a connection closed before the
blank line and reads without a bound, and a dialplan must never wait on a stuck lookup (the
9-second ring delays of CID lookups elsewhere). Every request has a hard time limit; whatever
happens, the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from panoramisk.fast_agi import Request

from gateway.lookup.card import CallerCard
from gateway.metrics import LOOKUP_SECONDS

log = logging.getLogger("gateway.agi")

MAX_ENV_BYTES = 16 * 1024  # an AGI environment is ~1 KB; more is not Asterisk talking
NAME_MAX = 60

Lookup = Callable[[str], Awaitable[CallerCard]]
OwnerExtension = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class AgiAnswer:
    """What the service sets on the channel."""

    name: str | None
    owner_ext: str | None
    known: bool


def agi_quote(value: str) -> str:
    """A value safe inside an AGI ``SET VARIABLE`` argument: printable, no quotes or
    backslashes, no newline that would end the command and start another."""
    clean = "".join(
        " " if ch.isspace() else ch
        for ch in value
        if (ch.isprintable() or ch.isspace()) and ch not in '"\\'
    )
    return '"' + re.sub(r"\s+", " ", clean).strip()[:NAME_MAX] + '"'


def answer_for(card: CallerCard, owner_ext: str | None) -> AgiAnswer:
    if not card.known:
        return AgiAnswer(None, None, False)
    name = card.display_name
    if card.company and card.company not in name:
        name = f"{name} ({card.company})" if name else card.company
    return AgiAnswer(name or None, owner_ext, True)


class FastAgiServer:
    """A TCP server speaking FastAGI; one route, ``callerid``."""

    def __init__(
        self,
        lookup: Lookup,
        owner_extension: OwnerExtension,
        *,
        time_limit: float = 1.0,
        env_timeout: float = 5.0,
    ) -> None:
        self.lookup = lookup
        self.owner_extension = owner_extension
        self.time_limit = time_limit  # for the lookup: the call must not wait longer
        self.env_timeout = env_timeout
        self.requests = 0
        self.errors = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_ENV_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("FastAGI listening on %s:%d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.requests += 1
        try:
            env = await asyncio.wait_for(read_environment(reader), self.env_timeout)
            script = env.get("agi_network_script", "").split("?")[0].strip("/")
            if script != "callerid":
                log.warning("FastAGI: no route for %r", script)
                return
            await self._callerid(Request(None, env, reader, writer), env)
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError) as e:
            self.errors += 1
            log.warning("FastAGI request dropped: %s", e or type(e).__name__)
        except Exception:
            self.errors += 1
            log.exception("FastAGI request failed")
        finally:
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _callerid(self, request: Request, env: dict[str, str]) -> None:
        number = env.get("agi_callerid", "")
        answer = AgiAnswer(None, None, False)
        if number and number != "unknown":
            started = time.perf_counter()
            try:
                card = await asyncio.wait_for(self.lookup(number), self.time_limit)
                owner = await self.owner_extension(card.owner) if card.owner else None
                answer = answer_for(card, owner)
            except TimeoutError:
                log.warning(
                    "FastAGI lookup of %r over %.1fs: call goes on", number, self.time_limit
                )
            finally:
                LOOKUP_SECONDS.labels("fastagi").observe(time.perf_counter() - started)
        if answer.name:
            await request.send_command(f"SET VARIABLE CALLERID(name) {agi_quote(answer.name)}")
        await request.send_command(f"SET VARIABLE CENTRALITA_KNOWN {int(answer.known)}")
        await request.send_command(
            f"SET VARIABLE CENTRALITA_OWNER_EXT {agi_quote(answer.owner_ext or '')}"
        )


async def read_environment(reader: asyncio.StreamReader) -> dict[str, str]:
    """``agi_*: value`` lines up to the blank line; raises on EOF or an oversized environment."""
    env: dict[str, str] = {}
    size = 0
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed before the AGI environment ended")
        size += len(line)
        if size > MAX_ENV_BYTES:
            raise ValueError("AGI environment too large")
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if not text:
            return env
        key, sep, value = text.partition(": ")
        if sep:
            env[key] = value
