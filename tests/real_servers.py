"""Tests that need a real server from Debian (Dovecot, Redis) skip on a developer's machine
that lacks it, and fail where it must be there (CI): a missing server never passes quietly."""

from __future__ import annotations

import pytest


def need(why: str, *, required: bool, what: str) -> None:
    """Skip the test (fail it when ``required``) when ``why`` says the server cannot run."""
    if not why:
        return
    if required:
        pytest.fail(f"the {what} tests must run here, but: {why}")
    pytest.skip(why)
