"""Coming back to a workspace that was stopped for being idle, in Debian's Chromium:
the address shows the login page and starts nothing; after the login it shows
"Starting <name>'s workspace…" and turns into the workbench by itself; a VS Code tab
left open while the container was stopped works again after at most one reload.
Screenshots go to artifacts/browser/<test>/ (see conftest.py)."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from csm.checks import idle as checks
from csm.checks.commands import subprocess_runner as run
from csm.idle.service import stop_idle
from csm.runner import backends
from csm.testing.workbench import LOAD, password_box

pytestmark = pytest.mark.live
NAME = "idlw"


@pytest.fixture(scope="module")
def stack(live_stack_factory):
    s = live_stack_factory([NAME], extra_settings={"idleStopAfter": 600})
    yield s
    s.close()


def started_at(stack) -> str:
    name = stack.plan.users[NAME].container.name
    return run(f"podman container inspect --format '{{{{.State.StartedAt}}}}' {name}").strip()


def stop_as_idle(stack, tab_open: bool = False):
    """What the idle checker does once idleStopAfter has passed, without waiting for it.
    With a VS Code tab open, the tab's reconnect may wake the container again at once,
    so then the proof of the stop is a new start time rather than a stopped container."""
    before = started_at(stack)
    assert stop_idle(stack.plan, backends.Podman(stack.plan, stack.state_dir), NAME, time.time())
    state = checks._running(run, stack.plan.users[NAME])
    if tab_open and state == "true":
        assert started_at(stack) != before, "the container was never stopped"
    else:
        assert state == "false"


def session_cookie(page) -> str:
    """The browser's session cookie, as curl sends it."""
    (cookie,) = [c for c in page.context.cookies() if c["name"].endswith("csm-session")]
    return f"{cookie['name']}={cookie['value']}"


def test_a_strangers_visit_starts_nothing_and_the_owners_login_wakes_the_workbench(stack, page, screenshot):
    stop_as_idle(stack)
    response = page.goto(stack.url(NAME))
    assert response.status == 401, "a visit without a session must get the login page"
    expect(page).to_have_title(re.compile(r"^Log in to "))
    screenshot("01-login-while-stopped")
    time.sleep(3)
    assert checks._running(run, stack.plan.users[NAME]) == "false", "a visit without a session started it"
    password = password_box(page)
    password.fill(stack.password(NAME))
    password.press("Enter")
    expect(page.locator("h1")).to_have_text(f"Starting {NAME}\u2019s workspace\u2026")
    screenshot("02-starting-after-login")
    # No reload by the test: the page turns into the workbench by itself.
    expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
    screenshot("03-workbench")


def test_an_open_workbench_works_again_after_at_most_one_reload(stack, page, screenshot):
    (stack.workspace(NAME) / "notes.txt").write_text("still here\n")
    page.goto(stack.url(NAME))
    password = password_box(page)
    expect(password).to_be_visible(timeout=60_000)
    password.fill(stack.password(NAME))
    password.press("Enter")
    expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
    stop_as_idle(stack, tab_open=True)
    # The tab tries to reconnect with its session; that request wakes the container.
    url = stack.url(NAME)
    try:
        checks.woken(run, url, timeout=120, connect_ip="127.0.0.1", cookie=session_cookie(page))
    except AssertionError:
        print((stack.state_dir / "logs" / "idle.log").read_text())
        raise
    screenshot("01-after-wake-before-reload")
    page.reload()
    expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
    expect(page.locator(".explorer-folders-view").get_by_text("notes.txt")).to_be_visible(timeout=LOAD)
    screenshot("02-after-one-reload")
