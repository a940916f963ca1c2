"""Operations footguns: what an operator runs into must stop with one clear line, never hang,
never leave the store open to everyone, and never let two gateways write one store."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.__main__ import main
from gateway.config import HttpSettings
from gateway.store.db import Database, StoreInUse
from tests.test_panel_support import PASSWORD, make_config, open_world

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- the store --------------------------------------------------------------------------------


async def test_a_second_gateway_on_the_same_store_is_refused_naming_the_first_pid(
    tmp_path: Path,
) -> None:
    first = await Database.open(tmp_path / "s.db", single_instance=True)
    try:
        with pytest.raises(StoreInUse, match=f"pid {os.getpid()}"):
            await Database.open(tmp_path / "s.db", single_instance=True)
        reader = await Database.open(tmp_path / "s.db")  # CLI commands still work beside it
        await reader.close()
    finally:
        await first.close()
    again = await Database.open(tmp_path / "s.db", single_instance=True)  # released on close
    await again.close()


def test_a_second_demo_on_the_same_state_exits_at_once_naming_the_first(tmp_path: Path) -> None:
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--port",
            str(_free_port()),
            "--state",
            "st",
            "--contacts",
            "10",
            "--duration",
            "60",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert first.stdout is not None
        for line in first.stdout:  # the banner is printed once the store is open
            if "Centralita demo" in line:
                break
        second = _cli("demo", "--port", str(_free_port()), "--state", "st", cwd=tmp_path)
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert second.returncode == 1
    assert f"in use by another gateway (pid {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr


async def test_the_store_is_private_to_its_owner(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "new" / "c.db")
    await db.close()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    for name in ("c.db", "c.db-wal", "c.db-shm"):
        path = tmp_path / "new" / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    old = tmp_path / "old.db"
    old.touch(mode=0o644)
    old.chmod(0o644)
    db = await Database.open(old)
    await db.close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


# -- the command line -------------------------------------------------------------------------


def test_a_busy_http_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _cli("demo", "--port", str(port), "--state", "st", "--contacts", "5", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("config error")]
    assert line.startswith(f"config error: http.port: cannot listen on 127.0.0.1:{port}")


def test_demo_with_rate_0_exits_2_with_one_line(tmp_path: Path) -> None:
    done = _cli("demo", "--rate", "0", "--state", "st", cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: --rate: expected calls per minute > 0 (at most 6000), found 0.0"
    ]


def test_the_lookup_bench_with_few_lookups_finishes(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "lookup.py"),
            "--contacts",
            "500",
            "--lookups",
            "5000",
            "--import-rows",
            "50",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "chain, cache cold" in done.stdout


BAD = """\
pbx: []
http: {port: abc}
log: {level: LOUD}
panel: {login_attempts: 0, session_hours: -1}
api:
  tokens:
    - {name: a, token: "", scopes: [crm:read]}
    - {name: b, token: "12345", scopes: [everything]}
"""


def test_check_config_reports_every_mistake(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(x.startswith("config error: ") for x in lines)
    assert "http.port: expected int, found 'abc'" in lines[0]
    assert "log.level: expected one of" in lines[1]
    path.write_text(BAD.replace("abc", "8080").replace("LOUD", "INFO"))
    assert main(["check-config", str(path)]) == 2
    text = capsys.readouterr().err
    for expected in (
        "pbx: expected at least one PBX",
        "panel.login_attempts: expected a whole number >= 1, found 0",
        "panel.session_hours: expected a number > 0, found -1",
        "api.tokens[0].token: expected at least 16 random characters",
        "api.tokens[1].token: expected at least 16 random characters",
        "api.tokens[1].scopes[0]: expected one of",
    ):
        assert f"config error: {expected}" in text, expected


def test_check_config_refuses_an_empty_ami_secret(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pbx:\n  - {name: main, username: gw, secret: '${AMI_SECRET}'}\n")
    monkeypatch.setenv("AMI_SECRET", "")
    assert main(["check-config", str(path)]) == 2
    assert "config error: pbx[0].secret: expected the AMI user's secret, found it empty" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("AMI_SECRET", "s3cret")
    assert main(["check-config", str(path)]) == 0


def test_every_scope_the_api_asks_for_is_a_scope_the_config_accepts() -> None:
    from gateway.api.openapi import build_document
    from gateway.config import API_SCOPES

    doc = build_document()
    asked = {
        scope
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for scope in op.get("x-scopes", [])
    }
    assert asked and asked <= API_SCOPES


# -- the HTTP face ----------------------------------------------------------------------------


async def _panel(aiohttp_server: Any, tmp_path: Path, **http: Any) -> Any:
    gen = open_world(aiohttp_server, tmp_path)
    world = await gen.__anext__()
    cfg = world.gw.cfg
    world.gw.cfg = msgspec.structs.replace(cfg, http=msgspec.structs.replace(cfg.http, **http))
    return gen, world


async def test_the_session_cookie_is_secure_behind_a_trusted_tls_proxy_only(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    gen, world = await _panel(aiohttp_server, tmp_path, trusted_proxies=["127.0.0.1"])
    try:
        s = await world.browser()
        body = {"username": "ana", "password": PASSWORD}
        async with s.post(
            world.url("/panel/api/login"), json=body, headers={"X-Forwarded-Proto": "https"}
        ) as r:
            assert r.status == 200
            assert "Secure" in r.headers["Set-Cookie"]
        async with s.post(world.url("/panel/api/login"), json=body) as r:
            assert "Secure" not in r.headers["Set-Cookie"]  # plain HTTP on a lab box
        world.gw.cfg = msgspec.structs.replace(world.gw.cfg, http=HttpSettings())
        async with s.post(
            world.url("/panel/api/login"), json=body, headers={"X-Forwarded-Proto": "https"}
        ) as r:
            assert "Secure" not in r.headers["Set-Cookie"]  # anyone can send that header
    finally:
        await gen.aclose()


async def test_metrics_and_status_need_an_allowed_address_or_the_ops_token(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    token = "ops-token-0123456789abcdef"
    gen, world = await _panel(aiohttp_server, tmp_path, ops_allow=[], ops_token=token)
    try:
        s = await world.browser()
        for path in ("/metrics", "/status"):
            async with s.get(world.url(path)) as r:
                assert r.status == 403
                assert (await r.json())["error"]["id"] == "ops_forbidden"
            auth = {"Authorization": f"Bearer {token}"}
            async with s.get(world.url(path), headers=auth) as r:
                assert r.status == 200
        async with s.get(world.url("/health")) as r:
            assert r.status in (200, 503)  # load balancers keep their probe
        world.gw.cfg = msgspec.structs.replace(world.gw.cfg, http=HttpSettings())
        async with s.get(world.url("/metrics")) as r:
            assert r.status == 200  # loopback is allowed by default
        proxied = {"X-Forwarded-For": "203.0.113.9"}
        world.gw.cfg = msgspec.structs.replace(
            world.gw.cfg, http=HttpSettings(trusted_proxies=["127.0.0.1"])
        )
        async with s.get(world.url("/metrics"), headers=proxied) as r:
            assert r.status == 403  # a remote client behind our own proxy is not local
    finally:
        await gen.aclose()


async def test_a_chunked_panel_body_over_64_kb_is_refused(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    gen, world = await _panel(aiohttp_server, tmp_path)
    try:
        s = await world.browser()

        async def chunks() -> Any:
            yield b'{"username": "ana", "password": "'
            for _ in range(80):
                yield b"x" * 1024
            yield b'"}'

        async with s.post(
            world.url("/panel/api/login"),
            data=chunks(),
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.status == 413
            assert (await r.json())["error"]["id"] == "too_large"
    finally:
        await gen.aclose()


async def test_a_connection_that_never_finishes_its_request_head_is_closed(
    tmp_path: Path,
) -> None:
    from gateway.__main__ import serve

    port = _free_port()
    cfg = msgspec.structs.replace(
        make_config(tmp_path), http=HttpSettings(port=port, header_timeout=0.5)
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(cfg, until=stop))
    try:
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        assert time.monotonic() - started < 3
        writer.close()
    finally:
        stop.set()
        await server
