"""The ``cluster:`` config section: absent changes nothing, mistakes name the key, and the Redis
password never reaches an error, a log line, /health or ``check-config``'s output."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, create_app
from gateway.config import parse_config
from gateway.errors import ConfigError

MINIMAL = "pbx:\n  - name: main\n    username: gw\n    secret: s\n"
PASSWORD = "n0t-in-any-log"


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return str(info.value)


def test_without_the_section_the_gateway_runs_alone_and_needs_no_redis(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL + f"store: {{path: {tmp_path / 'c.db'}}}\n")
    assert cfg.cluster is None
    assert Gateway(cfg).cluster is None


def test_an_empty_section_takes_every_default() -> None:
    cfg = parse_config(MINIMAL + "cluster: {}\n")
    assert cfg.cluster is not None
    assert cfg.cluster.redis_url == "redis://127.0.0.1:6379/0"
    assert (cfg.cluster.lease_seconds, cfg.cluster.renew_seconds) == (4.0, 1.25)
    assert cfg.cluster.name.endswith(f"-{os.getpid()}")  # <hostname>-<pid>


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{redis_url: 'http://cache:6379'}", "cluster.redis_url: expected redis://host:port/db"),
        ("{redis_url: 'redis://cache:99999/0'}", "cluster.redis_url: expected redis://"),
        (
            "{lease_seconds: 3, renew_seconds: 1.5}",
            "cluster.renew_seconds: expected at most a third of lease_seconds (3), found 1.5",
        ),
        ("{lease_seconds: 0.5}", "cluster.lease_seconds: expected `float` >= 1"),
        ("{instance: 'gw a'}", "cluster.instance: expected 1-64 letters"),
        ("{lease: 5}", "cluster.lease: unknown key 'lease'; expected one of: redis_url, instance"),
    ],
)
def test_each_mistake_names_the_key(section: str, expected: str) -> None:
    assert expected in _error(MINIMAL + f"cluster: {section}\n")


def test_the_password_is_masked_in_errors_and_in_the_settings_repr() -> None:
    text = _error(MINIMAL + f"cluster: {{redis_url: 'ftp://:{PASSWORD}@cache/0'}}\n")
    assert PASSWORD not in text and "ftp://:***@cache/0" in text
    cfg = parse_config(MINIMAL + f"cluster: {{redis_url: 'redis://:{PASSWORD}@cache:6379/0'}}\n")
    assert PASSWORD not in repr(cfg.cluster) and PASSWORD not in repr(cfg)


def test_check_config_shows_the_cluster_without_its_password(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        MINIMAL + "cluster:\n  redis_url: redis://:${REDIS_PASSWORD}@cache:6379/0\n"
        "  instance: gw-a\n"
    )
    env = {"REDIS_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "cluster: gw-a on redis://:***@cache:6379/0" in out.stdout
    assert PASSWORD not in out.stdout + out.stderr


async def test_redis_unreachable_never_stops_the_daemon_and_its_password_stays_out_of_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No Redis at all: the instance starts, serves /health (503: it cannot know the PBX has
    an owner) with the error, and keeps trying; the password is in no log line."""
    caplog.set_level(logging.INFO)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here
    cfg = parse_config(
        MINIMAL + f"store: {{path: {tmp_path / 'c.db'}}}\n"
        f"cluster: {{redis_url: 'redis://:{PASSWORD}@127.0.0.1:{port}/0', instance: gw-a,"
        " lease_seconds: 1, renew_seconds: 0.2}\n"
    )
    gw = Gateway(cfg)
    client = TestClient(TestServer(await create_app(cfg, gw)))
    await client.start_server()
    try:
        deadline = time.monotonic() + 5
        while True:
            resp = await client.get("/health")
            doc = await resp.json()
            if doc["cluster"]["redis_error"]:
                break
            assert time.monotonic() < deadline, "the Redis error never showed in /health"
            await asyncio.sleep(0.05)
        assert resp.status == 503
        assert doc["instance"] == "gw-a" and doc["cluster"]["redis_ok"] is False
        assert doc["cluster"]["redis"] == f"redis://:***@127.0.0.1:{port}/0"
        (line,) = doc["pbx"]
        assert line["owner"] is None and line["this_instance_owns"] is False
        assert "Redis at redis://:***@" in caplog.text
        await asyncio.sleep(0.5)  # a few more failed rounds: logged once
        # logged once per outage by each part that uses Redis (the lease loop, the pop-ups,
        # the shared board, its calls in progress...): no part says it twice
        lines = [r.getMessage() for r in caplog.records if "Redis at" in r.getMessage()]
        parts = [line.partition("Redis at")[0] for line in lines]
        assert len(parts) == len(set(parts)) >= 4, lines
        assert caplog.text.count("pbx=main Redis at redis://:***@") == 1
        assert caplog.text.count("push fanout instance=gw-a: Redis at redis://:***@") == 1
        assert caplog.text.count("board share instance=gw-a: Redis at redis://:***@") == 1
        assert caplog.text.count("calls share instance=gw-a: Redis at redis://:***@") == 1
        doc = await (await client.get("/health")).json()
        assert doc["cluster"]["board"]["redis_ok"] is False
    finally:
        await client.close()
    assert PASSWORD not in caplog.text
    assert PASSWORD not in str(doc)
