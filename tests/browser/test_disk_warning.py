"""From 90 % of their disk, a person sees it in the workbench: "Disk 9x% full" in the
status bar (image/session-extension); a click says what to do and opens a terminal.
Below 90 % nothing shows. On a stack of its own (user wren, a 1G disk)."""

from __future__ import annotations

import re
import subprocess

import pytest
from playwright.sync_api import Page, expect

from csm.testing.workbench import LOAD, files_explorer, password_box

pytestmark = pytest.mark.live
USER = "wren"


@pytest.fixture(scope="module")
def stack(live_stack_factory):
    s = live_stack_factory([USER], extra_settings={"idleStopAfter": None, "diskQuota": "1G"})
    yield s
    s.close()


def open_workbench(page: Page, stack) -> None:
    page.goto(stack.url(USER))
    password_box(page).fill(stack.password(USER))
    password_box(page).press("Enter")
    expect(files_explorer(page)).to_be_visible(timeout=LOAD)
    expect(page.locator(".statusbar-item", has_text="Log out")).to_be_visible(timeout=LOAD)  # the extension runs


def disk_item(page: Page):
    return page.locator(".statusbar-item", has_text=re.compile(r"Disk \d+% full"))


def test_a_nearly_full_disk_shows_in_the_status_bar_with_what_to_do(page: Page, stack, screenshot):
    open_workbench(page, stack)
    expect(disk_item(page)).to_have_count(0)

    stack.fill_disk(USER, 0.93)
    page.reload()
    expect(disk_item(page)).to_be_visible(timeout=LOAD)
    expect(disk_item(page)).to_have_text(re.compile(r"Disk 9[2-4]% full"))
    disk_item(page).click()
    advice = page.locator(".notifications-toasts", has_text="Your files use")
    expect(advice).to_contain_text("du -sh")
    screenshot("disk-full")
    advice.get_by_role("button", name="Open a terminal").click()
    expect(page.locator(".terminal-wrapper.active")).to_be_visible(timeout=LOAD)

    subprocess.run(["podman", "exec", stack.container(USER), "sh", "-c", "rm ~/filler"], check=True)
    page.reload()
    expect(page.locator(".statusbar-item", has_text="Log out")).to_be_visible(timeout=LOAD)
    expect(disk_item(page)).to_have_count(0)
