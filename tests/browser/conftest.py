"""Playwright against the live stack, driving Debian's Chromium (never a downloaded one).

Traces: every failing test leaves a Playwright trace of each browser context it
opened (through the `page`, `context` or `new_context` fixtures) in
`artifacts/playwright/<test>/trace*.zip`; open one with `playwright show-trace`.
Give `--tracing on` (or `off`) to change that.

Screenshots: the `screenshot` fixture saves `artifacts/browser/<test>/<step>.png`.
Steps have stable names and the viewport a fixed size, so the onboarding guide's
pictures can be regenerated from a test run (or taken by any test with
`take_screenshot(page, directory, step)`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from csm.testing import browser as chromium

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"


def pytest_configure(config):
    """Keep a trace of every failing browser test (pytest-playwright's own recorder),
    unless the command line asked for something else."""
    if config.getoption("--tracing") == "off" and "--tracing" not in " ".join(config.invocation_params.args):
        config.option.tracing = "retain-on-failure"
    if config.getoption("--output") == "test-results":  # pytest-playwright's default
        config.option.output = str(ROOT / "artifacts" / "playwright")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, **chromium.LAUNCH}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": chromium.VIEWPORT}


def take_screenshot(page, directory: Path, step: str) -> Path:
    """Saves what `page` shows as <directory>/<step>.png and returns the path."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", step):
        raise ValueError(f"screenshot step {step!r}: use lowercase letters, digits and dashes")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{step}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture
def screenshot(page, request):
    """`screenshot("01-login-page")` -> artifacts/browser/<test>/01-login-page.png, of
    the test's page or of another one given as second argument. The test's directory
    starts empty, so it holds exactly this run's steps."""
    directory = ARTIFACTS / request.node.originalname
    if directory.exists():
        for old in directory.glob("*.png"):
            old.unlink()
    return lambda step, of=None: take_screenshot(of or page, directory, step)
