"""A real PostgreSQL for tests: Debian's server (``/usr/lib/postgresql/<version>/bin``), one
cluster per test session in a temporary folder, listening on a Unix socket only, with nothing
forced to disk; a fresh database per test, copied from a template migrated once.

A test module runs its store tests on both engines with ``STORE_ENGINES = ("sqlite",
"postgresql")``: the ``db`` fixture (tests/conftest.py) is then parametrized. Without the server
(``apt-get install postgresql``; ``.ci/run`` installs it) the PostgreSQL cases are skipped on a
developer's machine, and FAIL where they must run (``CENTRALITA_REQUIRE_POSTGRES=1``, which
``.ci/run`` sets, or ``CI=true``). As root the server runs as ``nobody`` (PostgreSQL refuses
root).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.store.db import Database
from tests.real_servers import end_process, need, read_log

REQUIRED = os.environ.get("CENTRALITA_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"
TEMPLATE = "centralita_template"


def _bin_dir() -> Path | None:
    def version(initdb: Path) -> int:
        number = initdb.parent.parent.name
        return int(number) if number.isdigit() else 0

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    return found[-1].parent if found else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; ``url(name)`` addresses a database."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="centralita-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self._names = itertools.count(1)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port=5432"

    def start(self) -> None:
        subprocess.run(
            [
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
            ],
            check=True, capture_output=True, **self._user,
        )  # fmt: skip
        log = self.log.open("wb")
        self._proc = subprocess.Popen(
            [
                str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.root),
                "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            **self._user,
        )  # fmt: skip
        log.close()  # the server holds its own copy
        deadline = time.monotonic() + 20
        while not (self.root / ".s.PGSQL.5432").exists() or not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start-up: {self.log_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log_text()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        done = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", str(self.root), "-p", "5432", "-q"], check=False
        )
        return done.returncode == 0

    async def admin(self, *statements: str) -> None:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    async def prepare_template(self) -> None:
        """A database migrated to the newest schema that every test's database copies."""
        await self.admin(f"CREATE DATABASE {TEMPLATE}")
        store = await Database.open_postgres(self.url(TEMPLATE))
        await store.close()

    async def fresh_database(self) -> str:
        name = f"t{os.getpid()}_{next(self._names)}"
        # FILE_COPY: a checkpoint and a file copy, cheap with fsync off (WAL_LOG logs every page)
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    async def empty_database(self) -> str:
        name = f"e{os.getpid()}_{next(self._names)}"
        await self.admin(f"CREATE DATABASE {name}")
        return self.url(name)

    async def drop(self, url: str) -> None:
        name = url.split("/")[3].split("?")[0]
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        end_process(proc, signal.SIGINT, 15)  # SIGINT: PostgreSQL's fast shutdown
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return read_log(self.log)


def _missing() -> str:
    if _bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    return ""


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started on first use."""
    need(_missing(), required=REQUIRED, what="PostgreSQL (CENTRALITA_REQUIRE_POSTGRES=1)")
    bin_dir = _bin_dir()
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    try:
        server.start()
        # first asked for from inside a test's event loop: migrate on a loop of its own
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, server.prepare_template()).result()
        yield server
    finally:
        server.stop()


async def open_store(location: str, **options: Any) -> Database:
    """Open the store at ``location``: a SQLite file, or a ``postgresql://`` URL."""
    if location.startswith("postgresql://"):
        return await Database.open_postgres(location, **options)
    return await Database.open(location, **options)
