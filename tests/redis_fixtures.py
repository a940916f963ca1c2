"""A real Redis for tests: Debian's redis-server on a free loopback port, in a temporary folder,
with nothing saved to disk, stopped after the test.

``from tests.redis_fixtures import redis_server  # noqa: F401`` gives a test a running server
(:class:`RedisServer`: ``url``, ``stop()`` and ``start()`` again on the same port, to play an
outage). Without the binary (``apt-get install redis-server``; ``.ci/run`` installs it) the
tests are skipped on a developer's machine, and FAIL where they must run
(``CENTRALITA_REQUIRE_REDIS=1``, which ``.ci/run`` sets, or ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real_servers import end_process, need, read_log

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REQUIRED = os.environ.get("CENTRALITA_REQUIRE_REDIS") == "1" or os.environ.get("CI") == "true"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on loopback; ``stop()`` and ``start()`` keep the port."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="centralita-redis-"))
        self.port = _free_port()
        self.log = self.root / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", self.host,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.root),
                "--logfile", str(self.log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited at start-up: {self.log_text()}")
            if self.ping():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.port}: {self.log_text()}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        end_process(proc)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return read_log(self.log)


def _missing() -> str:
    """Why redis-server cannot run here ('' when it can)."""
    if not Path(REDIS_SERVER).exists():
        return "redis-server is not installed (apt-get install redis-server)"
    return ""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A running redis-server on a free loopback port, stopped and removed afterwards."""
    need(_missing(), required=REQUIRED, what="Redis (CENTRALITA_REQUIRE_REDIS=1)")
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
