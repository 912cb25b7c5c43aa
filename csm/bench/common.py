"""What the benches share: printing, figures against their goals, the JSON file,
and logging in to a rendered workbench in Chromium."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

from csm import progress
from csm.testing import browser as chromium

WORKBENCH = ".monaco-workbench .part.editor"  # drawn once the workbench has rendered


def say(text: str) -> None:
    progress.say(f"==> {text}")


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def verdict(value: float, goal: float) -> dict:
    """A figure with its goal (an upper bound) and whether it was met, for --json."""
    return {"value": value, "goal": goal, "met": value <= goal}


def goal_text(v: dict, unit: str = "") -> str:
    return f"goal <= {v['goal']:g}{unit}: {'met' if v['met'] else 'MISSED'}"


# ---- the workbench in Chromium ---------------------------------------------------------


def log_in_until_rendered(page, url: str, password: str | None) -> None:
    """Open the address; with a password, log in on the gate's page that answers it
    (by its labelled field); wait until the editor area is drawn. Without one (code-server
    directly) the address leads to the workbench at once."""
    from csm.testing.workbench import password_box

    # Timed to the rendered workbench, not to the page's load event: one slow
    # subresource once held `load` past playwright's 30 s.
    page.goto(url, wait_until="commit")
    if password is not None:
        box = password_box(page)
        box.fill(password, timeout=60_000)
        box.press("Enter")
    page.wait_for_selector(WORKBENCH, timeout=120_000)


def load_workbench(url: str, password: str, settle: float = 5) -> None:
    """Log in and let the workbench load fully (extension host included), then leave."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            log_in_until_rendered(browser.new_page(), url, password)
            time.sleep(settle)
        finally:
            browser.close()


def write_json(path: Path | str | None, results: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2) + "\n")
