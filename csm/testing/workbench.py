"""Driving the VS Code workbench with Playwright (tests and the docs' screenshots)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from csm.waiting import wait_until

LOAD = 90_000  # ms: the workbench's first load on a busy 2-core host, extension host included


def palette(page: Page):
    """The command palette's input box (F1)."""
    return page.get_by_role("textbox", name="Type the name of a command to run.")


def files_explorer(page: Page):
    """The Explorer's file tree; it shows once the workbench is connected."""
    return page.get_by_role("tree", name="Files Explorer")


def password_box(page: Page):
    """The password field of the gate's login page, by its label."""
    return page.get_by_label("Password", exact=True)


def run_command(page: Page, command: str, title: str) -> None:
    """Runs a VS Code command from the command palette (F1), found by its title and
    picked by its id. Right after load the palette may not list every command yet."""
    box = palette(page)
    # The entry by its command id, which only this attribute carries: its accessible
    # name is the title plus keybinding and "similar commands" hints, which vary.
    entry = page.locator(f'.quick-input-list-entry[data-quick-input-id="{command}"]')

    def listed() -> bool:
        page.keyboard.press("F1")
        expect(box).to_be_visible()
        box.fill(f">{title}")
        try:
            expect(entry).to_be_visible(timeout=2_000)
            return True
        except AssertionError:
            page.keyboard.press("Escape")
            return False

    wait_until(listed, LOAD / 1000, f"{title!r} in the command palette", interval=0)
    entry.click()
