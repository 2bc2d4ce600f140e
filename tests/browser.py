"""Headless Chromium for the browser tests: Debian's ``chromium`` (``/usr/bin/chromium``,
installed by ``.ci/run``) driven by Playwright. Playwright's own browser download is never
used (no internet here). With CI set, a missing Chromium fails the test; elsewhere it skips."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

CHROMIUM = os.environ.get("EDGEFORGE_CHROMIUM", "/usr/bin/chromium")
# Chromium without these flags keeps trying to reach Google's hosts, which this closed network refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A Playwright page in a fresh headless Chromium (its own empty profile)."""
    if not shutil.which(CHROMIUM):
        msg = f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="edgeforge-chromium-") as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": width, "height": height}
        )
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()
