"""Driving the VS Code workbench with Playwright (tests and the docs' screenshots)."""
from __future__ import annotations

import time

from playwright.sync_api import Page, expect

LOAD = 90_000  # ms: the workbench's first load on a busy 2-core host, extension host included


def run_command(page: Page, command: str, title: str) -> None:
    """Runs a VS Code command from the command palette (F1), found by its title and
    picked by its id. Right after load the palette may not list every command yet."""
    box = page.locator(".quick-input-widget input")
    entry = page.locator(f'.quick-input-list-entry[data-quick-input-id="{command}"]')
    deadline = time.monotonic() + LOAD / 1000
    while True:
        page.keyboard.press("F1")
        expect(box).to_be_visible()
        box.fill(f">{title}")
        try:
            expect(entry).to_be_visible(timeout=2_000)
            break
        except AssertionError:
            page.keyboard.press("Escape")
            if time.monotonic() > deadline:
                raise
    entry.click()
