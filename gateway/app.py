"""Composition root: builds every component from the config and wires them through the bus.

Only this module knows about every component. ``Gateway`` owns the long-lived parts (AMI
links, call trackers, store, lookup, call log); ``build_app`` puts the HTTP face on it and
ties the gateway's start and stop to the web server's lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from aiohttp import web

from connectors import build_connectors
from connectors.base import DealSource, DirectorySource
from connectors.http_base import HttpCrmConnector
from dialplan.fastagi import FastAgiServer
from gateway.ami.events import AmiEvent, ResyncSnapshot
from gateway.ami.link import LINK_EVENTS, AmiLink
from gateway.bus import Bus
from gateway.calls.events import CallCorrected, CallEnded
from gateway.calls.model import CallRecord
from gateway.calls.tracker import CallTracker
from gateway.calls.tracker import event_filter as event_filter_for
from gateway.config import GatewayConfig
from gateway.directory import DirectoryStore, DirectorySync
from gateway.lookup.chain import LookupChain
from gateway.panel.users import UserRepository
from gateway.panel.wallboard import EVENTS as WALLBOARD_EVENTS
from gateway.store.calllog import CallLog
from gateway.store.cards import StoreCardSource
from gateway.store.db import Database
from gateway.webhooks import Webhooks
from gateway.writeback.outbox import Outbox

if TYPE_CHECKING:  # the demo's SMTP sink is imported by the demo only
    from gateway.campaigns.replies import ReplyWatcher
    from gateway.campaigns.scheduler import CampaignScheduler
    from gateway.cluster.invalidation import LookupInvalidation
    from gateway.cluster.owner import Cluster, OwnerHealth
    from gateway.cluster.witness import Witness
    from gateway.demo_mailbox import DemoMailbox
    from gateway.reports.mailing import ReportMailing

log = logging.getLogger("gateway.app")

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")


class Gateway:
    """Every long-lived component of one daemon, started and stopped together."""

    def __init__(self, cfg: GatewayConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.bus = Bus()
        self.started_at = clock()
        # most of a real stream is noise the tracker never reads: drop it before parsing
        # ...except what the wallboard reads besides the tracker (queue member states)
        event_filter = event_filter_for(cfg.tracking, also=LINK_EVENTS | WALLBOARD_EVENTS)
        self.links = {
            p.name: AmiLink(p, self.bus, event_filter=event_filter, clock=clock) for p in cfg.pbx
        }
        self.trackers = {p.name: CallTracker(cfg.tracking, pbx=p.name) for p in cfg.pbx}
        self.connectors = build_connectors(cfg.connectors, public_url=self.public_url)
        self.db: Database | None = None
        self.lookup: LookupChain | None = None
        # instances sharing a store: a card edited through another leaves this cache too
        self.lookup_sharing: LookupInvalidation | None = None
        self.call_log: CallLog | None = None
        self.outbox: Outbox | None = None
        self.webhooks: Webhooks | None = None  # lead and call events to other systems
        self.campaigns: CampaignScheduler | None = None  # follow-up campaigns (e-mail, calls)
        self.replies: ReplyWatcher | None = None  # their replies, read over IMAP (mail.replies)
        self.report_mailing: ReportMailing | None = None  # daily/weekly reports by e-mail
        self._rollups: asyncio.Task[None] | None = None  # report rollups for new thresholds
        self.directory: DirectoryStore | None = None
        self.directory_sync: DirectorySync | None = None
        self.agi: FastAgiServer | None = None
        # `centralita demo` only: its local SMTP sink, shown in the panel's demo mailbox
        self.demo_mailbox: DemoMailbox | None = None
        self.calls_ended = 0
        self.calls_by_outcome: dict[str, int] = {}
        # (is a correction, record): corrections follow their CallEnded through one writer
        self._ended: asyncio.Queue[tuple[bool, dict[str, Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.bus.subscribe(AmiEvent, self._on_ami_event)
        self.bus.subscribe(ResyncSnapshot, self._on_resync)
        self.bus.subscribe(CallEnded, self._on_call_ended)
        self.bus.subscribe(CallCorrected, self._on_call_corrected)
        # with a cluster section, each link runs only while this instance holds its PBX's lease
        self.cluster: Cluster | None = None
        # ...and while it stands by, a witness follows the PBX for the calls a takeover's gap
        # would lose (gateway/cluster/witness.py; the call log of a shared store dedupes them)
        self.witnesses: dict[str, Witness] = {}
        if cfg.cluster is not None:
            from gateway.cluster.owner import Cluster
            from gateway.cluster.witness import Witness

            self.cluster = Cluster(cfg.cluster, self.links, self._forget_calls, clock=clock)
            if cfg.cluster.witness and cfg.store.shared:
                self.witnesses = {
                    p.name: Witness(p, cfg.tracking, event_filter=event_filter, clock=clock)
                    for p in cfg.pbx
                }

    @property
    def public_url(self) -> str:
        h = self.cfg.http
        return h.public_url or f"http://{h.host}:{h.port}"

    async def open(self) -> None:
        """Open the store and the lookup chain (before the HTTP routes are built on them)."""
        if self.db is not None:
            return
        # several instances share a PostgreSQL store only as a cluster (one owner per PBX)
        self.db = await Database.open_configured(
            self.cfg.store,
            clock=self.clock,
            gateway="alone" if self.cfg.cluster is None else "cluster",
        )
        self.call_log = CallLog(self.db, self.cfg.lookup.default_region)
        for c in self.connectors:
            await c.start()
        region = self.cfg.lookup.default_region
        self.directory = DirectoryStore(self.db, region, [c.name for c in self.connectors])
        pulled = []
        deals = []  # CRM deals, pulled with the directory (gateway/directory/deals.py)
        for c, settings in zip(self.connectors, self.cfg.connectors, strict=True):
            if isinstance(c, HttpCrmConnector):
                c.default_region = region
            if isinstance(c, DirectorySource) and settings.directory.enabled:
                pulled.append((c, settings.directory))
                if isinstance(c, HttpCrmConnector):
                    c.directory_find = self.directory.finder(c.name)
            if isinstance(c, DealSource) and settings.deals.enabled:
                deals.append((c, settings.deals, settings.directory))
        self.directory_sync = DirectorySync(
            self.directory, pulled, self.clock, deals=deals, tz=ZoneInfo(self.cfg.panel.timezone)
        )
        self.lookup = LookupChain(
            StoreCardSource(self.db), self.connectors, self.cfg.lookup, directory=self.directory
        )
        if self.cfg.cluster is not None:
            from gateway.cluster.invalidation import for_gateway as share_invalidations

            self.lookup_sharing = share_invalidations(self.cfg.cluster, self.db, self.lookup)
        self.outbox = Outbox(
            self.db.conn,
            self.connectors,
            self.clock,
            hold=self.cfg.writeback.hold_seconds,
            transaction=self.db.transaction,  # shared connection: take the store's write lock
            exclusive=self.db.exclusive,  # one gateway at a time delivers each CRM's queue
        )
        # the store's lead events (status changed, converted) reach the bus after each commit
        self.db.event_sink = self.bus.publish
        self.webhooks = Webhooks(self.db, self.bus, self.cfg.webhooks, self.clock)
        if self.cfg.campaigns.enabled:
            self.campaigns = self._campaign_scheduler(self.db)
            if self.cfg.mail.replies is not None:
                from gateway.campaigns.replies import ReplyWatcher

                self.replies = ReplyWatcher(self.db, self.cfg.mail.replies, self.clock)

    async def start(self) -> None:
        await self.open()
        assert self.outbox is not None
        await self.outbox.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        if self.campaigns is not None:
            await self.campaigns.start()
        if self.replies is not None:
            self.replies.start()
        from gateway.reports.mailing import for_gateway  # the daily/weekly report e-mail

        self.report_mailing = for_gateway(self.db, self.cfg, self.clock, self.public_url)
        if self.report_mailing is not None:
            self.report_mailing.start()
        from gateway.reports.calls import keep_rollups

        self._rollups = asyncio.create_task(keep_rollups(self.db, self.cfg.panel), name="rollups")
        assert self.directory_sync is not None
        self.directory_sync.start()
        self._writer = asyncio.create_task(self._write_calls(), name="call-log-writer")
        if self.cfg.agi.enabled:
            assert self.lookup is not None
            self.agi = FastAgiServer(
                self.lookup.lookup,
                self._owner_extension,
                time_limit=self.cfg.agi.time_limit_ms / 1000,
            )
            await self.agi.start(self.cfg.agi.host, self.cfg.agi.port)
        if self.lookup_sharing is not None:  # before any pop-up: the cache starts cleared
            await self.lookup_sharing.start()
        if self.cluster is not None:
            for witness in self.witnesses.values():
                witness.start()
            self.cluster.start()
        else:
            for link in self.links.values():
                link.start()
        log.info(
            "gateway started pbx=%s store=%s connectors=%s",
            ",".join(self.links) or "-",
            self.cfg.store.where,
            ",".join(c.name for c in self.connectors) or "-",
        )

    async def stop(self) -> None:
        """Stop taking events, then write every call already finished: nothing is lost."""
        if self.cluster is not None:
            await self.cluster.close()  # hands the leases back: another instance goes on
            for witness in self.witnesses.values():
                await witness.stop()
        else:
            for link in self.links.values():
                await link.stop()
        if self.agi is not None:
            await self.agi.stop()
        if self._writer is not None:
            await self._ended.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        if self.replies is not None:
            await self.replies.close()
        if self.campaigns is not None:
            await self.campaigns.close()  # lets a tick under way finish its sends
        if self.report_mailing is not None:
            await self.report_mailing.close()
        if self._rollups is not None:  # a rebuild resumes at the next start
            self._rollups.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rollups
        if self.directory_sync is not None:
            await self.directory_sync.close()
        if self.outbox is not None:
            await self.outbox.close()
        if self.webhooks is not None:
            await self.webhooks.close()  # stores what is still queued: nothing is lost
        for c in self.connectors:
            with contextlib.suppress(Exception):
                await c.close()
        if self.lookup_sharing is not None:  # after the last writes: it sends their numbers
            await self.lookup_sharing.close()
        if self.db is not None:
            await self.db.close()
        log.info("gateway stopped calls_logged=%d", self.calls_ended)

    def _campaign_scheduler(self, db: Database) -> CampaignScheduler:
        from gateway.campaigns.mailer import Mailer
        from gateway.campaigns.scheduler import CampaignScheduler
        from gateway.store.scoring_service import ScoringService

        region = self.cfg.lookup.default_region
        return CampaignScheduler(
            db,
            self.bus,
            Mailer(self.cfg.mail),
            self.cfg.campaigns,
            self.clock,
            self.public_url,
            self.cfg.panel.timezone,
            ScoringService(db, self.cfg.scoring, default_region=region, clock=self.clock),
            default_region=region,
        )

    # -- wiring ------------------------------------------------------------------------------

    def _on_ami_event(self, event: AmiEvent) -> None:
        tracker = self.trackers.get(event.pbx)
        if tracker is None:
            return
        for domain_event in tracker.feed(event.frame, event.received_at):
            self.bus.publish(domain_event)

    def _forget_calls(self, pbx: str) -> None:
        """This instance stopped holding ``pbx``'s link: the calls open here go on with the
        next owner, who finds them on the PBX and logs them when they end. Logging them here
        too (as a resync would, should this instance take the PBX back) would count them
        twice, so they are dropped, unlogged, with a fresh tracker."""
        tracker = self.trackers.get(pbx)
        if tracker is not None and tracker.open_calls:
            log.info("pbx=%s %d open call(s) left to the next owner", pbx, tracker.open_calls)
        self.trackers[pbx] = CallTracker(self.cfg.tracking, pbx=pbx)
        witness = self.witnesses.get(pbx)
        if witness is not None:
            witness.start()  # standing by again: follow the PBX for the next takeover

    def _on_resync(self, snap: ResyncSnapshot) -> None:
        tracker = self.trackers.get(snap.pbx)
        if tracker is None:
            return
        for domain_event in tracker.resync(snap.channels, snap.at):
            self.bus.publish(domain_event)
        witness = self.witnesses.get(snap.pbx)
        if witness is not None and witness.watching:
            # this instance's link reads the PBX now (it joined the live calls just above):
            # the calls that ended before, in the takeover's gap, come from the witness. The
            # log keeps each call once: one the old owner logged, or this link saw end too,
            # is not written twice
            for call in witness.hand_over():
                self._ended.put_nowait((False, self._log_record(call)))

    def _log_record(self, call: CallRecord) -> dict[str, Any]:
        record = call.to_json()
        record["id"] = call.log_id
        record["pbx"] = call.pbx
        url = self.outbox_recording_url(record)
        if url:
            record["recording_url"] = url
        return record

    def _on_call_corrected(self, event: CallCorrected) -> None:
        self._ended.put_nowait((True, self._log_record(event.record)))

    def _on_call_ended(self, event: CallEnded) -> None:
        record = self._log_record(event.record)
        self.calls_ended += 1
        outcome = str(record.get("outcome"))
        self.calls_by_outcome[outcome] = self.calls_by_outcome.get(outcome, 0) + 1
        self._ended.put_nowait((False, record))

    async def _owner_extension(self, username: str) -> str | None:
        """The default extension of a lead's owner, for routing a caller to them."""
        assert self.db is not None
        user = await UserRepository(self.db).get(username)
        if user is None or user.disabled or not user.extensions:
            return None
        return user.extensions[0]

    async def write_back_wrapup(self, record: dict[str, Any]) -> None:
        """An agent's notes and disposition after the call: they replace the queued copy
        while the call still waits out its hold; once delivered, they follow as a wrap-up."""
        assert self.outbox is not None
        if self.outbox_recording_url(record) and "recording_url" not in record:
            record["recording_url"] = self.outbox_recording_url(record)
        if not await self.outbox.refresh(record):
            await self.outbox.enqueue({**record, "id": f"{record['id']}#wrapup"})

    def outbox_recording_url(self, record: dict[str, Any]) -> str | None:
        if not record.get("recordings"):
            return None
        return f"{self.public_url}/panel/recordings/{record['id']}/0"

    async def _write_calls(self) -> None:
        while True:
            corrected, record = await self._ended.get()
            try:
                assert self.call_log is not None and self.outbox is not None
                if corrected:
                    # same row; the CRM gets the corrected copy if it has not been sent yet
                    if await self.call_log.correct(record):
                        await self.outbox.refresh(record)
                elif await self.call_log.save(record):  # False: seen already (resync)
                    await self.outbox.enqueue(record)
            except Exception:
                # the record stays in the log line: an operator can replay it
                log.exception("call log write failed id=%s record=%r", record.get("id"), record)
            finally:
                self._ended.task_done()

    # -- health ------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        links = [link.health() for link in self.links.values()]
        ok = all(h.logged_in for h in links)
        leases = self.cluster.health() if self.cluster is not None else {}
        if leases:
            # in a cluster each PBX needs an owner, not this instance's link: a standby is
            # healthy while another instance holds the lease; a PBX nobody holds (or this
            # instance cannot tell: Redis unreachable) is not, nor one held here but down
            ok = all(
                h.logged_in if leases[h.name].this_instance_owns else leases[h.name].owner
                for h in links
            )
        doc: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "uptime": round(self.clock() - self.started_at, 1),
            "pbx": [
                {
                    "name": h.name,
                    "host": h.host,
                    "port": h.port,
                    "status": h.status,
                    "connected": h.connected,
                    "logged_in": h.logged_in,
                    "since": h.since,
                    "last_event_age": h.last_event_age,
                    "reconnects": h.reconnects,
                    "last_error": h.last_error,
                    "banner": h.banner,
                    **_lease_health(leases.get(h.name)),
                    **_witness_health(self.witnesses.get(h.name)),
                }
                for h in links
            ],
            "open_calls": {name: t.open_calls for name, t in self.trackers.items()},
            "connectors": [_connector_health(c) for c in self.connectors],
        }
        if self.replies is not None:  # the reply mailbox: informs, never makes /health 503
            doc["mail_replies"] = self.replies.health()
        if self.cluster is not None:
            doc["instance"] = self.cluster.instance
            doc["cluster"] = self.cluster.summary()
            if self.lookup_sharing is not None:  # informs, like push and board
                doc["cluster"]["lookup_cache"] = self.lookup_sharing.health()
        return ok, doc

    async def outbox_health(self) -> list[dict[str, Any]]:
        """Each write-back queue: one per CRM, and one per webhook target ("webhook:<name>")."""
        stats = [] if self.outbox is None else await self.outbox.stats()
        if self.webhooks is not None:
            stats += await self.webhooks.stats()
        return [
            {
                "connector": s.connector,
                "pending": s.pending,
                "delivered": s.delivered,
                "parked": s.parked,
                "oldest_pending_at": s.oldest_pending_at,
                "last_error": s.last_error,
                "held_until": s.held_until,
            }
            for s in stats
        ]

    async def directory_health(self) -> list[dict[str, Any]]:
        if self.directory_sync is None:
            return []
        return await self.directory_sync.health()


def _witness_health(witness: Witness | None) -> dict[str, Any]:
    """A standby's witness of the PBX (gateway/cluster/witness.py), when there is one."""
    if witness is None:
        return {}
    h = witness.health()
    return {
        "witness": {
            "watching": h.watching,
            "logged_in": h.logged_in,
            "ended_kept": h.ended_kept,
            "handed_over": h.handed_over,
        }
    }


def _lease_health(lease: OwnerHealth | None) -> dict[str, Any]:
    """A PBX's lease for its /health line: who owns it (only with a ``cluster`` section)."""
    if lease is None:
        return {}
    return {
        "owner": lease.owner,
        "this_instance_owns": lease.this_instance_owns,
        "lease_until": lease.lease_until,
        "lease_token": lease.token,
        "takeovers": lease.takeovers,
    }


def _connector_health(connector: Any) -> dict[str, Any]:
    h = connector.health()
    return {
        "name": h.name,
        "last_success": h.last_success,
        "last_error": h.last_error,
        "last_error_at": h.last_error_at,
    }


async def settle(gw: Gateway) -> None:
    """Once the server is up: load what loads lazily (number metadata), then take every
    long-lived object out of the garbage collector's sight (``gc.freeze``), so a collection
    scans only what calls create and its pauses stay short while phones ring (the pop-up
    p99 at 1,000 agents went from 33 ms to 13 ms with it; see bench/popup_latency.py).

    Then the collector's pace: what survives two young collections (not ten) moves on to the
    oldest generation, so each middle collection walks a fifth as much (the pop-up's worst
    pause: CPU p50 3.7 -> 0.9 ms over a 120 s run of the bench, agents after settle); full
    collections keep their pace (every 100 young ones, 50 x 2 instead of 10 x 10, and only
    when survivors grew by a quarter: 1 instead of 3 in that run). Every cycle is still
    collected: that run's RSS was the same as with the default thresholds (146 MiB)."""
    if gw.lookup is not None:
        await gw.lookup.lookup("+34600000000")
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 2, 50)


async def create_app(cfg: GatewayConfig, gateway: Gateway | None = None) -> web.Application:
    """The aiohttp application: ops routes, the API, the panel, and the gateway's lifecycle.

    The store is opened here, before the routes are built on it; the AMI links start with
    the web server and stop with it (``cleanup_ctx``), so a stopped server has logged every
    call it saw end.
    """
    from gateway.api import callername, setup_api
    from gateway.api import users as users_api
    from gateway.api.audit import setup_audit
    from gateway.api.openapi import setup_openapi
    from gateway.api.originate import setup_originate
    from gateway.api.outbox import setup_outbox_api
    from gateway.api.scoring import setup_scoring
    from gateway.campaigns.api import setup_campaigns_api
    from gateway.ops import setup_ops
    from gateway.panel.service import PanelService
    from gateway.panel.setup import setup_panel

    gw = gateway or Gateway(cfg)
    await gw.open()
    assert gw.db is not None and gw.lookup is not None
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[GATEWAY] = gw

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gw.start()
        yield
        await gw.stop()

    app.cleanup_ctx.append(lifecycle)
    setup_ops(app, gw)
    setup_api(app, db=gw.db, lookup=gw.lookup, config=cfg)
    panel = PanelService.from_gateway(gw, writeback=gw.write_back_wrapup)
    setup_panel(app, gw, service=panel)
    setup_originate(app, panel.clicktocall)  # the panel's call button, for CRMs
    setup_scoring(app, gw)  # lead scores, rescored as calls end; /api/v1/worklist
    from gateway.intel.api import setup_intel

    setup_intel(app, gw)  # customer metrics (events + nightly), /api/v1/deals, people/{id}/metrics
    assert gw.outbox is not None
    setup_outbox_api(app, gw.outbox)  # /api/v1/outbox: queues, parked records, re-drive
    app.router.add_routes(callername.routes())  # caller name for Asterisk's CURL()
    setup_audit(app, gw.db)  # /api/v1/audit: who changed do-not-call, opt-out, owners
    app.router.add_routes(users_api.routes())  # /api/v1/users: administration
    setup_campaigns_api(app, gw)  # /api/v1/campaigns, segments/count, leads/{id}/unsubscribe
    from gateway.reports.routes import setup_report_files

    setup_report_files(app, gw)  # /api/v1/reports/{name}.svg|csv|xlsx: charts and exports
    from gateway.reports.api import setup_reports_api

    setup_reports_api(app, gw)  # /api/v1/reports/{name}: the reports as JSON
    setup_openapi(app)  # GET /api/v1/openapi.json, public
    from gateway.campaigns.unsubscribe import setup_unsubscribe

    setup_unsubscribe(app, gw)  # public: /unsubscribe/{token} page + one-click POST, /o/ pixel
    if gw.demo_mailbox is not None:  # the demo's mail sink: /panel/api/demo/mails
        from gateway import demo_mailbox

        demo_mailbox.add_routes(app, gw.demo_mailbox)
    return app
