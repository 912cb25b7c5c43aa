"""Debian's Chromium for Playwright (tests, benchmarks, the docs' pictures): never a
downloaded browser.

    from csm.testing import browser
    with sync_playwright() as p:
        chromium = browser.launch(p)
"""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
# Headless, as root in a container-less sandbox, with nothing phoning home
# (FACTS: these are the flags that work on the build hosts).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
LAUNCH = {"executable_path": CHROMIUM, "args": ARGS}


def launch(playwright):
    """Debian's Chromium, started by a sync Playwright."""
    return playwright.chromium.launch(**LAUNCH)
