"""A team member's first session, in Debian's Chromium against the live stack: log in
on the real login page, see the workbench, run opencode in a terminal, write a file in
the editor and find it again after the container has been replaced.

Screenshots of every step go to artifacts/browser/<test>/<step>.png (see conftest.py).
Every login uses the right password, which costs none of code-server's login budget.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time

import pytest
from playwright.sync_api import Page, expect

from csm.testing.workbench import LOAD, files_explorer, palette, password_box, run_command

pytestmark = pytest.mark.live


def user(stack) -> str:
    return stack.users[0]


def log_in(page: Page, stack, screenshot=None) -> None:
    """Opens the user's address, which leads to the login page, and logs in there."""
    response = page.goto(stack.url(user(stack)))
    if response is None or response.status >= 500:
        pytest.fail(f"{stack.url(user(stack))} answered {response and response.status}; {container_report(stack)}")
    expect(page).to_have_title(re.compile(r"^Log in to "))
    password = password_box(page)
    expect(password).to_be_visible()
    if screenshot:
        screenshot("01-login-page")
    password.fill(stack.password(user(stack)))
    password.press("Enter")
    expect(files_explorer(page)).to_be_visible(timeout=LOAD)


def shown_text(page: Page):
    """The text the editor draws. Only these rendered lines hold it: the editor's
    accessible textbox is an empty input surface."""
    return page.locator(".editor-instance .view-lines")


def terminal_text(page: Page) -> str:
    """The active terminal's text. The terminal draws on a canvas, so it is copied
    out the way a person would: select all, copy, read the clipboard."""
    run_command(page, "workbench.action.terminal.selectAll", "Terminal: Select All")
    run_command(page, "workbench.action.terminal.copySelection", "Terminal: Copy Selection")
    return page.evaluate("navigator.clipboard.readText()")


def in_container(stack, script: str) -> str:
    return subprocess.run(
        ["podman", "exec", container(stack), "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout


def container(stack) -> str:
    return stack.plan.users[user(stack)].container.name


def container_report(stack) -> str:
    """The container's state and the end of its log, for a failure message."""
    name = container(stack)
    state = subprocess.run(
        [
            "podman",
            "container",
            "inspect",
            "--format",
            "{{.State.Status}} (exit {{.State.ExitCode}}, started {{.State.StartedAt}})",
            name,
        ],
        capture_output=True,
        text=True,
    )
    log = subprocess.run(["podman", "logs", "--tail", "15", name], capture_output=True, text=True)
    return f"{name} is {(state.stdout or state.stderr).strip()}; its log ends: {(log.stdout + log.stderr)[-1500:]}"


def container_id(stack) -> str:
    return subprocess.run(
        ["podman", "container", "inspect", "--format", "{{.Id}}", container(stack)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_log_in_and_see_the_workbench(live_stack, page, screenshot):
    log_in(page, live_stack, screenshot)
    expect(page).to_have_url(re.compile(r"folder=/home/coder/project"))
    expect(page.get_by_role("heading", name=re.compile("Explorer Section: project"))).to_be_visible()
    expect(page).to_have_title(re.compile(r"\bproject\b"))
    # The home is seeded with settings hiding VS Code's own AI chat (opencode is the
    # AI here); without them its "Build with Agent" panel opens beside the editor.
    page.wait_for_timeout(5_000)  # the chat panel, when enabled, opens a moment after the explorer
    expect(page.get_by_text("Build with Agent")).to_have_count(0)
    screenshot("02-workbench")


def test_terminal_runs_opencode(live_stack, page, screenshot):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    version = in_container(live_stack, 'HOME="$(mktemp -d)" opencode --version').strip()
    assert re.fullmatch(r"v?\d+\.\d+\.\d+\S*", version), version
    log_in(page, live_stack)
    run_command(page, "workbench.action.terminal.new", "Terminal: Create New Terminal")
    terminal = page.get_by_role("textbox", name=re.compile(r"^Terminal \d+"))
    expect(terminal).to_be_visible(timeout=30_000)
    screenshot("01-terminal-open")
    terminal.focus()
    page.keyboard.type("opencode --version")
    page.keyboard.press("Enter")
    answer = re.compile(rf"opencode --version\s*\n\s*{re.escape(version)}\s*\n")
    deadline = time.monotonic() + 60
    while not answer.search(text := terminal_text(page)):
        assert time.monotonic() < deadline, f"the terminal shows {text[-500:]!r}, not opencode's version {version}"
        time.sleep(1)
    terminal.focus()
    page.keyboard.press("Escape")  # drops the selection the copy made, for a clean picture
    expect(palette(page)).to_be_hidden()
    screenshot("02-opencode-version")


def test_file_written_in_the_editor_outlives_the_container(live_stack, new_context, page, screenshot):
    name = f"hello-{secrets.token_hex(3)}.txt"
    text = f"Written in the browser, {secrets.token_hex(6)}"
    on_host = live_stack.workspace(user(live_stack)) / name
    try:
        write_and_find_again(live_stack, new_context, page, screenshot, name, text)
    finally:
        on_host.unlink(missing_ok=True)


def write_and_find_again(live_stack, new_context, page, screenshot, name, text):
    on_host = live_stack.workspace(user(live_stack)) / name
    log_in(page, live_stack)

    run_command(page, "explorer.newFile", "File: New File...")
    file_name = page.get_by_role("textbox", name=re.compile(r"^Type file name"))
    expect(file_name).to_be_visible()
    file_name.fill(name)
    screenshot("01-new-file-name")
    file_name.press("Enter")
    tab = page.get_by_role("tab", name=name, exact=True, selected=True)
    expect(tab).to_be_visible()
    expect(page.get_by_role("textbox", name=name, exact=True)).to_be_focused()  # the editor
    page.keyboard.type(text)
    expect(shown_text(page)).to_have_text(text)
    page.keyboard.press("Control+S")
    # Unsaved changes show only as this class (the tab's name stays the same).
    expect(tab).not_to_have_class(re.compile(r"\bdirty\b"))
    deadline = time.monotonic() + 30
    while not (on_host.exists() and on_host.read_text() == text):
        assert time.monotonic() < deadline, (
            f"{on_host} holds {on_host.read_text() if on_host.exists() else None!r}, not {text!r}"
        )
        time.sleep(0.5)
    screenshot("02-file-saved")

    before = container_id(live_stack)
    live_stack.stack.reset(user(live_stack))  # a new container from the image; waits until healthy
    assert container_id(live_stack) != before, "reset did not replace the container"
    assert in_container(live_stack, f"cat ~/project/{name}") == text

    # A new browser session, so nothing comes from the old page's memory.
    fresh = new_context()
    try:
        again = fresh.new_page()
        log_in(again, live_stack)
        item = files_explorer(again).get_by_role("treeitem", name=name, exact=True)
        expect(item).to_be_visible(timeout=30_000)
        item.click()
        expect(shown_text(again)).to_contain_text(text, timeout=30_000)
        screenshot("03-file-after-new-container", again)
    finally:
        fresh.close()


def test_log_out_from_the_workbench(live_stack, page, screenshot):
    """The "Log out" item in the status bar leads to the gate's logout page at this
    address; its button ends the session, and the workbench then asks to log in.
    Headless Chromium blocks the tab the item opens (the click reaches the page again
    only after a round trip through the extension host; a person's browser allows it
    within seconds of a click), so the test notes where the item goes and opens it."""
    page.add_init_script(
        "window.csmOpened = []; const open = window.open;"
        "window.open = function (url, ...rest) { window.csmOpened.push(String(url));"
        " return open.call(this, url, ...rest); };"
    )
    log_in(page, live_stack)
    item = page.locator(".statusbar").get_by_text("Log out")
    expect(item).to_be_visible(timeout=LOAD)
    screenshot("01-log-out-item")
    item.click()
    page.wait_for_function("window.csmOpened.length > 0", timeout=30_000)
    opened = page.evaluate("window.csmOpened[0]")
    assert opened == live_stack.url(user(live_stack)) + "/_csm/logout", opened
    confirm = page.context.new_page()
    confirm.goto(opened)
    screenshot("02-log-out-page", confirm)
    confirm.get_by_role("button", name="Log out").click()
    expect(confirm).to_have_title(re.compile(r"^Log in to "))
    confirm.close()
    assert not [c for c in page.context.cookies() if c["name"].endswith("csm-session")]
    response = page.goto(live_stack.url(user(live_stack)))
    assert response.status == 401
    expect(password_box(page)).to_be_visible()
