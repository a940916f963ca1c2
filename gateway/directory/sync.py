"""Keeps the caller directory in step with each CRM: a full pull at first start, then what
changed, on a schedule; a periodic full pass notices deletions the CRM cannot report.

Per (connector, module) the rule is:
- no full pass finished yet, one under way (a crash mid-pass), or ``full_every_s`` since the
  last: a *full pass* from the beginning. Every record it sees is marked with the pass number;
  at its end, records not seen are deleted here, and incremental pulls resume where it ended.
- otherwise an *incremental pull* from the saved cursor until the CRM has nothing newer.
Each page is stored with its cursor in one transaction (``DirectoryStore.apply_page``), so a
crash or a CRM outage resumes after the last page kept, never from the start.

A connector with ``deals: {enabled: true}`` also has its deals pulled by the same rules
(``gateway/directory/deals.py``), in the same task and on the same schedule, right after its
phone book: the deals' customers are then already in the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from connectors.base import DealSource, DirectorySource
from connectors.settings import DealSettings, DirectorySettings
from gateway.directory.deals import STATE_PREFIX, DealPuller, DealReport, DealStore
from gateway.directory.store import DirectoryStore, SyncState
from gateway.errors import ConnectorError

log = logging.getLogger("gateway.directory")


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync of one module did (also the log line's figures)."""

    connector: str
    module: str
    full: bool
    pages: int
    stored: int
    deleted: int
    swept: int
    numbers: int
    unparsable: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.stored / self.seconds if self.seconds > 0 else 0.0


class DirectorySync:
    """Pulls every directory-capable connector into the store, one task per connector; with
    ``deals``, each (connector, deal settings, schedule) has its deals pulled in that task too.
    ``tz`` reads the days CRMs close deals on (the panel's zone)."""

    def __init__(
        self,
        store: DirectoryStore,
        sources: Sequence[tuple[DirectorySource, DirectorySettings]],
        clock: Callable[[], float] = time.time,
        *,
        deals: Sequence[tuple[DealSource, DealSettings, DirectorySettings]] = (),
        tz: ZoneInfo | None = None,
    ) -> None:
        self.store = store
        self.sources = list(sources)
        self.deal_sources = list(deals)
        self.clock = clock
        self.deals = DealPuller(DealStore(store, tz or ZoneInfo("UTC")), clock)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}

    async def sync_module(
        self, source: DirectorySource, module: str, policy: DirectorySettings, *, full: bool = False
    ) -> SyncReport:
        """Bring one module up to date; raises ConnectorError when the CRM fails mid-way
        (what was stored so far stays, and the next run resumes after it)."""
        name = source.name
        started = time.monotonic()
        state = await self.store.state(name, module)
        now = self.clock()
        due = state.last_full_at is None or now - state.last_full_at >= policy.full_every_s
        is_full = full or due or state.pass_cursor is not None
        if is_full and state.pass_cursor is None:
            pass_no = await self.store.begin_pass(name, module, now)
            cursor = ""
            log.info("directory %s %s: full pass %d started", name, module, pass_no)
        elif is_full:
            pass_no, cursor = state.pass_no, state.pass_cursor or ""
            log.info("directory %s %s: full pass %d resumed after a stop", name, module, pass_no)
        else:
            pass_no, cursor = state.pass_no, state.cursor
        pages = stored = deleted = numbers = unparsable = 0
        try:
            while True:
                page = await source.pull(module, cursor, policy.page_size)
                result = await self.store.apply_page(
                    name,
                    module,
                    page.records,
                    seen_pass=pass_no,
                    cursor=page.cursor,
                    full_pass=is_full,
                    now=self.clock(),
                )
                pages += 1
                stored += result.stored
                deleted += result.deleted
                numbers += result.numbers
                unparsable += len(result.unparsable)
                for raw in result.unparsable[:3]:
                    log.warning(
                        "directory %s %s: %r is not a phone number; not indexed", name, module, raw
                    )
                if pages % 50 == 0:
                    log.info(
                        "directory %s %s: %s pass at %d records, %d numbers",
                        name,
                        module,
                        "full" if is_full else "incremental",
                        stored,
                        numbers,
                    )
                if page.cursor == cursor and page.more:
                    raise ConnectorError(
                        f"{name}: directory pull of {module} did not advance; stopped"
                    )
                cursor = page.cursor
                if not page.more:
                    break
        except (ConnectorError, TimeoutError) as e:
            await self.store.failed(name, module, str(e) or type(e).__name__, self.clock())
            raise
        swept = 0
        if is_full:
            swept = await self.store.finish_pass(name, module, pass_no, cursor, self.clock())
        else:
            await self.store.caught_up(name, module, self.clock())
        report = SyncReport(
            name,
            module,
            is_full,
            pages,
            stored,
            deleted,
            swept,
            numbers,
            unparsable,
            time.monotonic() - started,
        )
        if stored or deleted or swept or is_full:
            log.info(
                "directory %s %s: %s sync done: %d records (%d numbers, %d not numbers),"
                " %d deleted, %d swept in %.1f s (%.0f records/s)",
                name,
                module,
                "full" if is_full else "incremental",
                stored,
                numbers,
                unparsable,
                deleted,
                swept,
                report.seconds,
                report.rate,
            )
        return report

    async def sync_source(
        self, source: DirectorySource, policy: DirectorySettings, *, full: bool = False
    ) -> list[SyncReport]:
        """Every module of one connector; a failed module does not stop the others."""
        reports: list[SyncReport] = []
        failures: list[str] = []
        for module in source.directory_modules():
            try:
                reports.append(await self.sync_module(source, module, policy, full=full))
            except (ConnectorError, TimeoutError) as e:
                failures.append(f"{module}: {e}")
                log.warning("directory %s %s: sync failed: %s", source.name, module, e)
        if failures and not reports:
            raise ConnectorError("; ".join(failures))
        return reports

    # -- the daemon's schedule ------------------------------------------------------------

    async def sync_deals(
        self,
        source: DealSource,
        settings: DealSettings,
        policy: DirectorySettings,
        *,
        full: bool = False,
    ) -> list[DealReport]:
        """Every deal module of one connector (see ``gateway/directory/deals.py``)."""
        return await self.deals.sync_source(source, settings, policy, full=full)

    def start(self) -> None:
        names = dict.fromkeys(
            [s.name for s, _ in self.sources] + [d.name for d, *_ in self.deal_sources]
        )
        for name in names:
            self._wake[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(name), name=f"directory:{name}"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def kick(self, name: str | None = None) -> None:
        """Sync now instead of at the next interval."""
        for key, ev in self._wake.items():
            if name is None or key == name:
                ev.set()

    async def _run(self, name: str) -> None:
        directory = [(s, p) for s, p in self.sources if s.name == name]
        deals = [(d, s, p) for d, s, p in self.deal_sources if d.name == name]
        interval = min(p.interval_s for p in [*(p for _, p in directory), *(p for *_, p in deals)])
        failures = 0
        wake = self._wake[name]
        while True:
            wake.clear()
            failed = False
            # with several gateways on one store, one pulls each CRM at a time: two passes of
            # one module would sweep each other's records; the others wait for the next round
            async with self.store.db.exclusive(f"directory:{name}") as mine:
                # the phone book first: the deals' customers are then already known
                for source, policy in directory if mine else ():
                    failed |= not await self._guarded(name, self.sync_source(source, policy))
                for deal_source, settings, policy in deals if mine else ():
                    failed |= not await self._guarded(
                        name, self.sync_deals(deal_source, settings, policy)
                    )
            failures = failures + 1 if failed else 0
            nap = min(interval, 5.0 * 2 ** min(failures, 8)) if failed else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), nap)

    async def _guarded(self, name: str, sync: Awaitable[object]) -> bool:
        """Run one sync; False when it failed (a CRM outage or a bug: logged, never fatal)."""
        try:
            await sync
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not isinstance(e, ConnectorError):
                log.exception("directory %s: sync crashed", name)
            return False
        return True

    async def health(self) -> list[dict[str, object]]:
        """Per connector and module: last sync, record count and lag, for ``/health``."""
        now = self.clock()
        return [_health(s, now) for s in await self.store.states()]


def _health(s: SyncState, now: float) -> dict[str, object]:
    extra: dict[str, object] = {}
    if s.module.startswith(STATE_PREFIX):  # deals: "records" are deals; these wait for a customer
        extra["waiting"] = s.waiting
    return {
        "connector": s.connector,
        "module": s.module,
        "records": s.records,
        "numbers": s.numbers,
        "last_sync_at": s.last_sync_at,
        "last_full_at": s.last_full_at,
        # how stale the copy may be: seconds since the CRM last had nothing newer for us
        "lag_seconds": None if s.last_sync_at is None else round(now - s.last_sync_at, 1),
        "full_pass_running": s.pass_cursor is not None,
        "last_error": s.last_error,
        "last_error_at": s.last_error_at,
        **extra,
    }
