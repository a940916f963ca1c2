"""The browser tests' fixtures (a gateway on the simulated PBX; Debian's Chromium), shared by
every module here; they are defined with the first browser test, which skips (or, in CI,
fails) when there is no browser."""

import contextlib

import pytest

# no Chromium here: each browser module skips itself on import
with contextlib.suppress(pytest.skip.Exception):
    from tests.browser.test_panel_browser import browser, world  # noqa: F401  (pytest fixtures)
