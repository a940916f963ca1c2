"""Tests that need a real server from Debian (Dovecot, Redis, PostgreSQL) skip on a developer's
machine that lacks it, and fail where it must be there (CI): a missing server never passes
quietly. Also what the fixtures that start those servers share."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest


def need(why: str, *, required: bool, what: str) -> None:
    """Skip the test (fail it when ``required``) when ``why`` says the server cannot run."""
    if not why:
        return
    if required:
        pytest.fail(f"the {what} tests must run here, but: {why}")
    pytest.skip(why)


def end_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 10
) -> None:
    """Ask a server to stop with ``sig``; kill it if it has not within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def read_log(path: Path) -> str:
    """A server's log, for a failure message ('' while there is none)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
