#!/usr/bin/env python3
"""Take the pictures of docs/onboarding.md from a real stack:

    make docs-screenshots          # or: .venv/bin/python scripts/docs-screenshots.py

Brings up a throwaway stack with one user, ada (csm.testing.stacks: fresh
directories under /var/tmp, free ports), drives Debian's Chromium through a
newcomer's first session, saves docs/img/onboarding/<step>.png and stops
everything it started, whatever happens. The pictures replace the old ones only
when every step worked, so a failed run leaves the guide's pictures as they were.

opencode talks to a stand-in for an AI provider (csm.testing.fake_openai) running
on this host: no real AI is called and the answer in the picture is always the same.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect, sync_playwright

from csm.idle.service import stop_idle
from csm.runner import RunnerError, backends
from csm.testing import browser as chromium
from csm.testing import workbench
from csm.testing.fake_openai import FakeOpenAI, host_address, opencode_settings
from csm.testing.stacks import ImageMissing, ThrowawayStack, free_port, require_image
from csm.testing.workbench import LOAD

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "onboarding"
USER = "ada"
QUESTION = "How do I make a program that says hello?"
REPLY = (
    'Make a file called hello.py that holds one line: print("Hello!")\n\n'
    "Then run it by typing python3 hello.py in a terminal."
)
TOO_BIG = 300 * 1024  # bytes: a picture above this is worth shrinking

# What each picture shows; docs/onboarding.md uses them in this order.
PICTURES = {
    "01-login": "the login page at ada's address",
    "02-workbench": "the first view after logging in: the project folder and the Welcome tab",
    "03-explorer-file": "a file in the Explorer, open in the editor; the Explorer's New File / New Folder buttons",
    "04-opencode": "a terminal (Ctrl+`) running opencode, with a question and an answer",
    "05-download": "right-click on a folder in the Explorer, Download... highlighted",
    "06-wrong-address": "the landing page of an address that belongs to nobody",
    "07-too-many-requests": "what nginx answers after too many logins in a minute",
    "08-connection-lost": "the workbench after its container stopped: the reconnect dialog",
    "09-cannot-reconnect": "the same page once a new container runs (a reset): reload the window",
    "10-starting": "a visit after the space was stopped for being idle: the page that starts it",
    "11-disk-full": "the status bar's warning of a disk 93 % full, clicked: what to do",
}


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def in_container(stack: ThrowawayStack, script: str) -> None:
    subprocess.run(
        ["podman", "exec", stack.container(USER), "sh", "-c", script], check=True, capture_output=True, text=True
    )


def run_command(page: Page, command: str, title: str) -> None:
    """Runs a VS Code command from the palette and waits for the palette to close."""
    workbench.run_command(page, command, title)
    expect(page.locator(".quick-input-widget")).to_be_hidden()


def settle(page: Page, locator=None, quiet: float = 2.0, timeout: float = 60.0) -> None:
    """Waits until what `locator` (or the page) shows stops changing for `quiet` seconds."""
    target = locator or page
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = target.screenshot()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the picture kept changing for {timeout:.0f} s")


class Shooter:
    def __init__(self, stack: ThrowawayStack, fake: FakeOpenAI, browser, directory: Path):
        self.stack, self.fake, self.browser, self.directory = stack, fake, browser, directory
        self.url = stack.url(USER)

    def picture(self, page: Page, step: str) -> None:
        assert step in PICTURES, step
        page.screenshot(path=str(self.directory / f"{step}.png"))
        say(f"{step}.png: {PICTURES[step]}")

    def new_page(self) -> Page:
        return self.browser.new_context(viewport=chromium.VIEWPORT).new_page()

    def log_in(self, page: Page) -> None:
        response = page.goto(self.url)
        if response is None or response.status != 401:  # the gate's login page in place of the workspace
            raise RuntimeError(f"{self.url} answered {response and response.status}, not the login page")
        expect(page).to_have_title(re.compile(r"^Log in to "))
        password = page.locator('input[name="password"]')
        expect(password).to_be_visible()
        settle(page, quiet=1)
        self.picture(page, "01-login")
        password.fill(self.stack.password(USER))
        password.press("Enter")
        expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
        self.hide_cursors(page)

    def workbench(self, page: Page) -> None:
        # The Welcome tab arrives a moment after the Explorer.
        try:
            expect(page.locator(".tabs-container .tab", has_text="Welcome")).to_be_visible(timeout=30_000)
        except AssertionError:
            say("no Welcome tab appeared; taking the picture without it")
        settle(page)
        self.picture(page, "02-workbench")

    def explorer_file(self, page: Page) -> None:
        # Made inside the container, as ada's own user, like work she did earlier.
        in_container(
            self.stack,
            "cd ~/project && printf 'print(\"Hello!\")\\n' > hello.py && mkdir -p website"
            " && printf '<h1>My first page</h1>\\n' > website/index.html",
        )
        item = page.locator(".explorer-folders-view .monaco-list-row", has_text="hello.py")
        expect(item).to_be_visible(timeout=30_000)
        expect(page.locator(".explorer-folders-view .monaco-list-row", has_text="website")).to_be_visible()
        item.click()
        expect(page.locator(".editor-instance .view-lines")).to_contain_text("Hello", timeout=30_000)
        page.locator(".explorer-folders-view").hover()  # shows New File, New Folder, ...
        expect(page.locator('.explorer-viewlet .action-label[aria-label^="New File"]').first).to_be_visible()
        settle(page)
        self.picture(page, "03-explorer-file")

    def opencode(self, page: Page) -> None:
        page.locator(".editor-instance").click()
        page.keyboard.press("Control+Backquote")
        terminal = page.locator(".terminal-wrapper.active .xterm")
        expect(terminal).to_be_visible(timeout=30_000)
        run_command(page, "workbench.action.toggleMaximizedPanel", "View: Toggle Maximized Panel")
        settle(page, terminal)
        terminal.click()
        page.keyboard.type("opencode")
        page.keyboard.press("Enter")
        time.sleep(3)
        settle(page, terminal, quiet=3, timeout=120)  # opencode's screen has drawn
        # opencode may draw its prompt before it reads keys; what it missed is typed again.
        for _ in range(3):
            terminal.click()
            page.keyboard.type(QUESTION)
            page.keyboard.press("Enter")
            if self.fake.completion_arrived.wait(40):
                break
        else:
            failed = Path(tempfile.gettempdir()) / "csm-docs-opencode-failed.png"
            page.screenshot(path=str(failed))
            raise RuntimeError(f"opencode sent no question to the stand-in AI (what the page showed: {failed})")
        settle(page, terminal, quiet=3, timeout=120)
        self.picture(page, "04-opencode")
        run_command(page, "workbench.action.toggleMaximizedPanel", "View: Toggle Maximized Panel")
        run_command(page, "workbench.action.closePanel", "View: Hide Panel")

    def download(self, page: Page) -> None:
        folder = page.locator(".explorer-folders-view .monaco-list-row", has_text="website")
        folder.click(button="right")
        entry = page.locator(".context-view .action-label", has_text="Download...")
        expect(entry).to_be_visible()
        entry.hover()
        settle(page, quiet=1)
        self.picture(page, "05-download")
        page.keyboard.press("Escape")

    def disk_full(self, page: Page) -> None:
        self.stack.fill_disk(USER, 0.93)
        self.reload(page)
        item = page.locator(".statusbar-item", has_text=re.compile(r"Disk \d+% full"))
        expect(item).to_be_visible(timeout=LOAD)
        item.click()
        expect(page.locator(".notifications-toasts", has_text="Your files use")).to_be_visible()
        settle(page, quiet=1)
        self.picture(page, "11-disk-full")
        in_container(self.stack, "rm ~/filler")
        self.reload(page)  # the warning goes at the next check; a new window checks at once

    def reload(self, page: Page) -> None:
        page.reload()
        expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
        self.hide_cursors(page)

    @staticmethod
    def hide_cursors(page: Page) -> None:
        # Blinking editor cursors would make every picture a coin toss: hide them.
        page.add_style_tag(content=".monaco-editor .cursors-layer > .cursor { visibility: hidden !important; }")

    def wrong_address(self) -> None:
        page = self.new_page()
        address = urlsplit(self.url)
        response = page.goto(f"{address.scheme}://nobody.{self.stack.plan.domain}:{address.port}/")
        if response is None or response.status != 404:
            raise RuntimeError(f"the landing page answered {response and response.status}, not 404")
        settle(page, quiet=1)
        self.picture(page, "06-wrong-address")
        page.context.close()

    def too_many_requests(self) -> None:
        """Sends wrong passwords until nginx says no (loading the page is never limited;
        POSTs to the gate's login path are, per address, beyond a burst). The last step:
        this address cannot log in for a while."""
        page = self.new_page()
        password = page.locator('input[name="password"]')
        for _ in range(60):
            page.goto(f"{self.url}/_csm/login")
            password.fill("not the password")
            with page.expect_navigation() as navigation:
                password.press("Enter")
            if navigation.value is not None and navigation.value.status == 429:
                break
        else:
            raise RuntimeError("60 wrong passwords in a row, and nginx never answered 429")
        settle(page, quiet=1)
        self.picture(page, "07-too-many-requests")
        page.context.close()

    def connection_lost(self, page: Page) -> None:
        subprocess.run(["podman", "stop", "--time=2", self.stack.container(USER)], check=True, capture_output=True)
        expect(page.get_by_text(re.compile(r"reconnect", re.I)).first).to_be_visible(timeout=120_000)
        time.sleep(1)
        self.picture(page, "08-connection-lost")

    def cannot_reconnect(self, page: Page) -> None:
        """What the page says once the admin's `csm reset` gave ada a new container."""
        self.stack.stack.reset(USER)  # waits until the new container is healthy
        expect(page.get_by_text("Cannot reconnect").first).to_be_visible(timeout=120_000)
        settle(page, quiet=1)
        self.picture(page, "09-cannot-reconnect")

    def starting(self) -> None:
        """Logging in once ada's space was stopped for being idle (what the idle checker
        does after idleStopAfter, done here at once): the page that starts it, which
        turns into the workbench by itself."""
        stop_idle(self.stack.plan, backends.Podman(self.stack.plan, self.stack.state_dir), USER, time.time())
        page = self.new_page()
        response = page.goto(self.url)
        if response is None or response.status != 401:
            raise RuntimeError(f"a visit to a stopped space answered {response and response.status}, not the login")
        password = page.locator('input[name="password"]')
        password.fill(self.stack.password(USER))
        password.press("Enter")
        expect(page.locator("h1")).to_contain_text("Starting")
        self.picture(page, "10-starting")
        expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
        page.context.close()


def shoot(directory: Path, keys: Path) -> None:
    gateway = host_address()
    port = free_port(gateway)
    key_file = keys / "stand-in-ai.env"
    key_file.write_text("STAND_IN_AI_KEY=not-a-real-key\n")
    key_file.chmod(0o400)
    settings = {
        "opencode": opencode_settings(
            "stand-in", "Stand-in AI", f"http://{gateway}:{port}/v1", "STAND_IN_AI_KEY", "Stand-in model"
        ),
        "users": {USER: {"environmentFiles": [str(key_file)]}},
        "diskQuota": "1G",  # small, so that the disk warning's picture fills it quickly
    }
    say(f"bringing up a throwaway stack with user {USER}")
    stack = ThrowawayStack([USER], settings, prefix="csm-docs-")
    fake = None
    try:
        # The bridge's address exists once a container runs, so the stand-in starts now.
        fake = FakeOpenAI(gateway, port, reply=REPLY).start()
        with sync_playwright() as p:
            browser = chromium.launch(p)
            try:
                shooter = Shooter(stack, fake, browser, directory)
                page = shooter.new_page()
                shooter.log_in(page)
                shooter.workbench(page)
                shooter.explorer_file(page)
                shooter.opencode(page)
                shooter.download(page)
                shooter.disk_full(page)
                shooter.wrong_address()
                shooter.connection_lost(page)
                shooter.cannot_reconnect(page)
                page.context.close()  # an open tab would wake the space as soon as it stops
                shooter.starting()
                shooter.too_many_requests()  # last: this address cannot log in for a while
            finally:
                browser.close()
    finally:
        say("stopping the throwaway stack")
        if fake:
            fake.stop()
        stack.close()


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, interrupted)  # `kill` unwinds like Ctrl-C: the stack is stopped
    try:
        require_image()
    except ImageMissing as e:
        print(f"docs-screenshots: {e}", file=sys.stderr)
        return 3
    with (
        tempfile.TemporaryDirectory(prefix="csm-docs-shots-") as taken,
        tempfile.TemporaryDirectory(prefix="csm-docs-keys-", dir="/var/tmp") as keys,
    ):
        directory = Path(taken)
        try:
            shoot(directory, Path(keys))
        except RunnerError as e:  # e.g. a test run's stack has a user named ada right now
            print(f"docs-screenshots: the stack did not come up: {e}", file=sys.stderr)
            return e.exit_code
        missing = sorted(set(PICTURES) - {p.stem for p in directory.glob("*.png")})
        if missing:
            print(f"docs-screenshots: no picture for {', '.join(missing)}", file=sys.stderr)
            return 1
        OUT.mkdir(parents=True, exist_ok=True)
        for old in OUT.glob("*.png"):
            old.unlink()
        for step in PICTURES:
            shutil.copyfile(directory / f"{step}.png", OUT / f"{step}.png")
    for step in PICTURES:
        size = (OUT / f"{step}.png").stat().st_size
        note = "  (large: consider a smaller viewport)" if size > TOO_BIG else ""
        print(f"{(OUT / f'{step}.png').relative_to(ROOT)}  {size // 1024} KB{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
