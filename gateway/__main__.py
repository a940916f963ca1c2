"""Command line: ``centralita run | demo | replay | check-config | import | export | outbox |
directory | migrate-store``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gateway.config import GatewayConfig, load_config

if TYPE_CHECKING:
    from gateway.app import Gateway
from gateway.errors import ConfigError, GatewayError
from gateway.log import setup_logging

log = logging.getLogger("gateway.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        for line in str(e).splitlines():  # several mistakes: one line each
            print(f"config error: {line}", file=sys.stderr)
        return 2
    except GatewayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="centralita",
        description="Telephony-first integration gateway for Asterisk (AMI) and CRMs.",
    )
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the gateway against the PBXs in a config file")
    run.add_argument("-c", "--config", required=True, help="YAML config file")
    run.add_argument("--record", metavar="FILE", help="append the raw AMI stream to FILE")
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="everything on this machine: simulated PBX, SQLite, panel")
    demo.add_argument("--port", type=int, default=8080, help="web port (default 8080)")
    demo.add_argument("--state", default="centralita-demo", help="state folder (SQLite file)")
    demo.add_argument("--rate", type=float, default=6.0, help="new calls per minute")
    demo.add_argument("--flavour", choices=("pjsip", "lab"), default="pjsip")
    demo.add_argument("--seed", type=int, default=7, help="random seed for data and traffic")
    demo.add_argument("--contacts", type=int, default=300, help="seeded contacts and leads")
    demo.add_argument("--duration", type=float, default=0, help="stop after N seconds (0: never)")
    demo.set_defaults(func=_cmd_demo)

    replay = sub.add_parser("replay", help="turn a raw AMI capture into call records (JSON lines)")
    replay.add_argument("file", help="capture as received from the socket ('-' for stdin)")
    replay.add_argument("-c", "--config", help="config whose tracking: section describes the PBX")
    replay.add_argument(
        "--flush", action="store_true", help="also print calls still open at the end of the capture"
    )
    replay.set_defaults(func=_cmd_replay)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check)

    imp = sub.add_parser("import", help="import contacts or leads from CSV")
    imp.add_argument("file")
    imp.add_argument("-c", "--config", help="config file (store path, default region)")
    imp.add_argument("--kind", choices=("contacts", "leads"), default="contacts")
    imp.add_argument(
        "--map", action="append", default=[], metavar="COLUMN=FIELD", help="column mapping"
    )
    imp.add_argument("--strict", action="store_true", help="import nothing if any row is bad")
    imp.set_defaults(func=_cmd_import)

    _user_parser(sub)

    exp = sub.add_parser("export", help="export contacts or leads to CSV")
    exp.add_argument("-c", "--config", help="config file (store path)")
    exp.add_argument("--kind", choices=("contacts", "leads"), default="contacts")
    exp.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    exp.set_defaults(func=_cmd_export)

    box = sub.add_parser("outbox", help="CRM write-back queues: parked records, re-drive")
    box_sub = box.add_subparsers(metavar="ACTION")
    lst = box_sub.add_parser("list", help="each queue's figures and the parked records")
    lst.add_argument("-c", "--config", required=True, help="config file (store, connectors)")
    lst.add_argument("--connector", help="only this connector's parked records")
    lst.set_defaults(func=_cmd_outbox_list)
    rty = box_sub.add_parser("retry", help="put parked records back in their queue")
    rty.add_argument("-c", "--config", required=True, help="config file (store, connectors)")
    rty.add_argument("--connector", help="only this connector's parked records")
    rty.add_argument("--id", type=int, action="append", default=[], help="outbox row id(s)")
    rty.set_defaults(func=_cmd_outbox_retry)

    mig = sub.add_parser(
        "migrate-store", help="copy a SQLite store into an empty PostgreSQL database"
    )
    mig.add_argument("--from", dest="source", required=True, help="the SQLite store file")
    mig.add_argument("--to", dest="url", required=True, help="postgresql://user@host/db")
    mig.set_defaults(func=_cmd_migrate_store)

    dire = sub.add_parser("directory", help="the caller directory pulled from each CRM")
    dire_sub = dire.add_subparsers(metavar="ACTION")
    dsync = dire_sub.add_parser("sync", help="pull now (a first sync before 'run', or a repair)")
    dsync.add_argument("-c", "--config", required=True, help="config file (store, connectors)")
    dsync.add_argument("--connector", help="only this connector")
    dsync.add_argument("--full", action="store_true", help="a full pass (also sweeps deletions)")
    dsync.set_defaults(func=_cmd_directory_sync)
    dstat = dire_sub.add_parser("status", help="records, last sync and errors per CRM module")
    dstat.add_argument("-c", "--config", required=True, help="config file (store, connectors)")
    dstat.set_defaults(func=_cmd_directory_status)
    return p


def _config_or_default(path: str | None) -> GatewayConfig:
    """For commands that touch only the store: the PBX's and CRMs' secrets are not needed."""
    return load_config(path, offline=True) if path else GatewayConfig()


def _cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, require_pbx=True)  # what passes here, `run` accepts
    pbx = ", ".join(f"{p.name} ({p.host}:{p.port})" for p in cfg.pbx) or "none"
    cluster = ""
    if cfg.cluster is not None:  # the URL is shown with its password masked
        from gateway.cluster.settings import mask_url

        cluster = f"; cluster: {cfg.cluster.name} on {mask_url(cfg.cluster.redis_url)}"
    print(
        f"{args.file}: OK — pbx: {pbx}; store: {cfg.store.where}; http: "
        f"{cfg.http.host}:{cfg.http.port}; connectors: {len(cfg.connectors)}{cluster}"
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from gateway.calls.replay import replay_capture

    cfg = _config_or_default(args.config)
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    result = replay_capture(data, cfg.tracking, flush_open=args.flush)
    for record in result.records:
        print(json.dumps(record.to_json(), ensure_ascii=False))
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.parse_errors:
        print(f"warning: {result.parse_errors} malformed AMI message(s) skipped", file=sys.stderr)
    if result.open_calls and not args.flush:
        print(
            f"note: {result.open_calls} call(s) still open at the end of the capture "
            "(--flush prints them)",
            file=sys.stderr,
        )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import msgspec

    cfg = load_config(args.config, require_pbx=True)
    setup_logging(cfg.log.level, cfg.log.format)
    if args.record:
        cfg = msgspec.structs.replace(
            cfg, pbx=[msgspec.structs.replace(p, record_to=args.record) for p in cfg.pbx]
        )
    asyncio.run(serve(cfg))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _check_demo_args(args)
    setup_logging("INFO", "text")
    Path(args.state).mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the store
    asyncio.run(run_demo(args, serve))
    return 0


def _check_demo_args(args: argparse.Namespace) -> None:
    """Every bad option at once, before anything starts."""
    from gateway.config import ConfigErrors

    problems = []
    if not 0 < args.port < 65536:
        problems.append(ConfigError("--port", f"expected a TCP port 1-65535, found {args.port}"))
    if not (args.rate > 0 and args.rate <= 6000):
        problems.append(
            ConfigError(
                "--rate", f"expected calls per minute > 0 (at most 6000), found {args.rate}"
            )
        )
    if not 0 <= args.contacts <= 1_000_000:
        problems.append(ConfigError("--contacts", f"expected 0-1000000, found {args.contacts}"))
    if not args.duration >= 0:
        problems.append(ConfigError("--duration", f"expected seconds >= 0, found {args.duration}"))
    if problems:
        raise ConfigErrors(problems)


def _cmd_import(args: argparse.Namespace) -> int:
    from gateway.store.csv_io import import_csv
    from gateway.store.db import Database

    cfg = _config_or_default(args.config)
    mapping = {}
    for item in args.map:
        column, sep, field = item.partition("=")
        if not sep:
            raise ConfigError("--map", f"expected COLUMN=FIELD, found {item!r}")
        mapping[column] = field

    async def go() -> int:
        db = await Database.open_configured(cfg.store)
        try:
            report = await import_csv(
                db,
                Path(args.file),
                kind=args.kind,
                mapping=mapping or None,
                strict=args.strict,
                default_region=cfg.lookup.default_region,
            )
        finally:
            await db.close()
        print(report.summary())
        for err in report.errors:
            print(f"line {err.line}: {err.reason}", file=sys.stderr)
        return 1 if report.errors and args.strict else 0

    return asyncio.run(go())


# -- centralita user ---------------------------------------------------------------------------


def _user_parser(sub: Any) -> None:
    """``centralita user list|add|disable|enable|delete|password``."""
    user_p = sub.add_parser("user", help="manage panel users")
    user = user_p.add_subparsers(metavar="ACTION")
    user_p.set_defaults(func=lambda _args: user_p.print_help() or 2)

    def action(name: str, help_text: str, func: Any, *, named: bool = True) -> Any:
        a = user.add_parser(name, help=help_text)
        if named:
            a.add_argument("username")
        a.add_argument("-c", "--config", help="config file (store path)")
        a.set_defaults(func=func)
        return a

    action(
        "list", "every user: role, extensions, state, open sessions", _cmd_user_list, named=False
    )
    add = action(
        "add", "create a panel user (password from CENTRALITA_PASSWORD or a prompt)", _cmd_user_add
    )
    add.add_argument("--role", choices=("agent", "supervisor", "admin"), default="agent")
    add.add_argument("--extension", action="append", default=[], help="default extension(s)")
    add.add_argument("--name", default="", help="display name")
    action("disable", "refuse the user's sign-ins and end their sessions", _cmd_user_disable)
    action("enable", "let a disabled user sign in again", _cmd_user_enable)
    action("delete", "remove a user and end their sessions", _cmd_user_delete)
    action(
        "password",
        "set a user's password (CENTRALITA_PASSWORD or a prompt); ends their sessions",
        _cmd_user_password,
    )


def _new_password() -> str:
    """$CENTRALITA_PASSWORD, or typed twice without echo."""
    import getpass
    import os

    from gateway.panel.users import UserError

    given = os.environ.get("CENTRALITA_PASSWORD")
    if given:
        return given
    password = getpass.getpass("password: ")
    if sys.stdin.isatty() and getpass.getpass("same password again: ") != password:
        raise UserError("password: the two entries differ; nothing changed", "password_mismatch")
    return password


def _users_do(args: argparse.Namespace, work: Any, *, new_password: bool = False) -> int:
    """Open the store, run ``work(repo, password)``, print what it returns; a refusal is one
    line on stderr with its stable code, exit 1. The password is asked for after the config
    is read, so a mistake there shows before any typing."""
    from gateway.panel.users import UserError, UserRepository
    from gateway.store.db import Database

    cfg = _config_or_default(args.config)

    async def go(password: str) -> str:
        db = await Database.open_configured(cfg.store)
        try:
            return str(await work(UserRepository(db), password))
        finally:
            await db.close()

    try:
        print(asyncio.run(go(_new_password() if new_password else "")))
    except UserError as e:
        print(f"error: {e} [{e.code}]", file=sys.stderr)
        return 1
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    async def work(repo: Any, _: str) -> str:
        users, counts = await repo.all(), await repo.session_counts()
        if not users:
            return "no users yet: 'centralita user add NAME --role admin'"
        rows = [("USER", "ROLE", "EXTENSIONS", "STATE", "SESSIONS", "NAME")]
        for u in users:
            state = "disabled" if u.disabled else "enabled"
            exts = ",".join(u.extensions) or "-"
            sessions = str(counts.get(u.username, 0))
            rows.append((u.username, u.role.value, exts, state, sessions, u.display_name))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
            for r in rows
        ).rstrip()

    return _users_do(args, work)


def _cmd_user_add(args: argparse.Namespace) -> int:
    async def work(repo: Any, password: str) -> str:
        u = await repo.add(args.username, password, args.role, args.extension, args.name)
        return f"user {u.username} ({u.role.value}) created; extensions: " + (
            ", ".join(u.extensions) or "-"
        )

    return _users_do(args, work, new_password=True)


def _cmd_user_disable(args: argparse.Namespace) -> int:
    async def work(repo: Any, _: str) -> str:
        u, ended = await repo.set_disabled(args.username, True)
        return f"user {u.username} disabled; {ended} session(s) ended"

    return _users_do(args, work)


def _cmd_user_enable(args: argparse.Namespace) -> int:
    async def work(repo: Any, _: str) -> str:
        u, _ended = await repo.set_disabled(args.username, False)
        return f"user {u.username} enabled"

    return _users_do(args, work)


def _cmd_user_delete(args: argparse.Namespace) -> int:
    async def work(repo: Any, _: str) -> str:
        ended = await repo.delete(args.username)
        return f"user {args.username.strip().lower()} deleted; {ended} session(s) ended"

    return _users_do(args, work)


def _cmd_user_password(args: argparse.Namespace) -> int:
    async def work(repo: Any, password: str) -> str:
        ended = await repo.set_password(args.username, password)
        return f"password of {args.username.strip().lower()} set; {ended} session(s) ended"

    return _users_do(args, work, new_password=True)


def _cmd_export(args: argparse.Namespace) -> int:
    from gateway.store.csv_io import export_csv
    from gateway.store.db import Database

    cfg = _config_or_default(args.config)

    async def go(out: TextIO) -> int:
        db = await Database.open_configured(cfg.store)
        try:
            await export_csv(db, args.kind, out)
        finally:
            await db.close()
        return 0

    if args.output == "-":
        return asyncio.run(go(sys.stdout))
    with open(args.output, "w", newline="", encoding="utf-8") as out:
        return asyncio.run(go(out))


def _cmd_migrate_store(args: argparse.Namespace) -> int:
    from gateway.store.copy import copy_store
    from gateway.store.db import redact_url

    source = Path(args.source)
    if not source.is_file():
        print(f"error: no SQLite store at {str(source)!r}", file=sys.stderr)
        return 2
    if not args.url.startswith(("postgresql://", "postgres://")):
        print("error: --to expects a postgresql:// URL", file=sys.stderr)
        return 2

    def progress(table: str, rows: int) -> None:
        print(f"{table}: {rows} rows")

    counts = asyncio.run(copy_store(source, args.url, progress))
    print(f"copied {sum(counts.values())} rows in {len(counts)} tables to {redact_url(args.url)}")
    return 0


def _cmd_outbox_list(args: argparse.Namespace) -> int:
    from gateway.store.db import Database
    from gateway.writeback.outbox import Outbox

    cfg = load_config(args.config)

    async def go() -> int:
        db = await Database.open_configured(cfg.store)
        try:
            box = Outbox(db.conn, _named(cfg), transaction=db.transaction)
            for st in await box.stats():
                print(
                    f"{st.connector}: {st.pending} pending, {st.delivered} delivered, "
                    f"{st.parked} parked"
                    + (f"; last error: {st.last_error}" if st.last_error else "")
                )
            parked = await box.parked(args.connector, limit=1000)
            for p in parked:
                print(
                    f"parked id={p.id} connector={p.connector} call={p.record_id} "
                    f"attempts={p.attempts} error={p.last_error}"
                )
            if not parked:
                print("no parked records")
        finally:
            await db.close()
        return 0

    return asyncio.run(go())


def _cmd_outbox_retry(args: argparse.Namespace) -> int:
    from gateway.store.db import Database
    from gateway.writeback.outbox import Outbox

    cfg = load_config(args.config)
    names = [c.name for c in cfg.connectors]
    if args.connector and args.connector not in names:
        raise ConfigError("--connector", f"expected one of {names}, found {args.connector!r}")

    async def go() -> int:
        db = await Database.open_configured(cfg.store)
        try:
            box = Outbox(db.conn, _named(cfg), transaction=db.transaction)
            n = await box.retry_parked(args.connector, args.id)
        finally:
            await db.close()
        print(f"{n} parked record(s) back in their queue; a running gateway sends them soon")
        return 0

    return asyncio.run(go())


def _named(cfg: GatewayConfig) -> list[Any]:
    """Stand-ins carrying only each connector's name: listing and re-driving the outbox
    touches the store, never the CRMs."""
    import types

    return [types.SimpleNamespace(name=c.name) for c in cfg.connectors]


def _cmd_directory_sync(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from connectors import build_connectors
    from connectors.base import DealSource, DirectorySource
    from gateway.directory import DirectoryStore, DirectorySync
    from gateway.intel.service import IntelService
    from gateway.store.db import Database
    from gateway.store.events import DealsChanged

    cfg = load_config(args.config)
    setup_logging(cfg.log.level, cfg.log.format)
    tz = ZoneInfo(cfg.panel.timezone)
    pairs = [
        (c, s)
        for c, s in zip(
            build_connectors(cfg.connectors, public_url=""), cfg.connectors, strict=True
        )
        if isinstance(c, DirectorySource) and (args.connector in (None, c.name))
    ]
    if args.connector and not pairs:
        raise ConfigError("--connector", f"no connector {args.connector!r} with a directory")

    async def go() -> int:
        db = await Database.open_configured(cfg.store)
        failed = 0
        # deals pulled here change people's purchases: their metrics are recomputed before
        # the command ends (the daemon does it on the same event)
        changed: set[int] = set()
        db.event_sink = lambda e: changed.update(
            e.person_ids if isinstance(e, DealsChanged) else ()
        )
        try:
            store = DirectoryStore(db, cfg.lookup.default_region, [c.name for c in cfg.connectors])
            sync = DirectorySync(store, [(c, s.directory) for c, s in pairs], tz=tz)
            for connector, settings in pairs:
                await connector.start()
                try:
                    for r in await sync.sync_source(connector, settings.directory, full=args.full):
                        print(
                            f"{r.connector} {r.module}: {'full' if r.full else 'incremental'}"
                            f" {r.stored} records, {r.numbers} numbers, {r.deleted + r.swept}"
                            f" removed in {r.seconds:.1f} s ({r.rate:.0f} records/s)"
                        )
                    if isinstance(connector, DealSource) and settings.deals.enabled:
                        for d in await sync.sync_deals(
                            connector, settings.deals, settings.directory, full=args.full
                        ):
                            print(
                                f"{d.connector} {d.module} (deals):"
                                f" {'full' if d.full else 'incremental'}"
                                f" {d.stored} deals, {d.waiting} waiting for their customer,"
                                f" {d.removed + d.swept} removed in {d.seconds:.1f} s"
                            )
                except GatewayError as e:
                    print(f"{connector.name}: {e}", file=sys.stderr)
                    failed += 1
                finally:
                    await connector.close()
            if changed:
                intel = IntelService(db, tz=tz, default_region=cfg.lookup.default_region)
                await intel.refresh_cohort()
                done = await intel.recompute_many(sorted(changed))
                print(f"customer metrics recomputed for {done} people whose deals changed")
        finally:
            await db.close()
        return 1 if failed else 0

    return asyncio.run(go())


def _cmd_directory_status(args: argparse.Namespace) -> int:
    from gateway.directory import DirectoryStore, DirectorySync
    from gateway.store.db import Database

    cfg = load_config(args.config)

    async def go() -> int:
        db = await Database.open_configured(cfg.store)
        try:
            rows = await DirectorySync(DirectoryStore(db, cfg.lookup.default_region), []).health()
        finally:
            await db.close()
        for h in rows:
            print(json.dumps(h, ensure_ascii=False))
        if not rows:
            print("no directory synced yet: 'centralita directory sync -c CONFIG'")
        return 0

    return asyncio.run(go())


async def serve(
    cfg: GatewayConfig, *, gateway: Gateway | None = None, until: asyncio.Event | None = None
) -> None:
    """Run the web server and the gateway until SIGINT/SIGTERM (or ``until`` is set)."""
    from aiohttp import web

    from gateway.app import GATEWAY, create_app, settle
    from gateway.ops import SlowHeaderGuard

    app = await create_app(cfg, gateway)
    guard = SlowHeaderGuard(cfg.http.header_timeout)
    guard.watch_app(app)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, keepalive_timeout=cfg.http.header_timeout
    )
    await runner.setup()
    assert runner.server is not None
    guard.watch_server(runner.server)
    site = web.TCPSite(runner, cfg.http.host, cfg.http.port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()  # stops the gateway: the store is closed, nothing keeps running
        raise ConfigError(
            "http.port",
            f"cannot listen on {cfg.http.host}:{cfg.http.port}: {e.strerror or e}"
            " (another program, or another gateway, already uses it?)",
        ) from None
    log.info("listening on http://%s:%d", cfg.http.host, cfg.http.port)
    await settle(app[GATEWAY])
    stop = until or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
