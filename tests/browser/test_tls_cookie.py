"""Over TLS the session cookie is Secure and HttpOnly, and the workbench works with
it in Chromium: log in on the login page, see the workspace folder, and find that
no script on the page can read the cookie. On a TLS stack of its own (user tia);
Chromium is told to accept the stack's local CA's certificate."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from csm.testing.workbench import LOAD

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def tia(live_stack_factory):
    stack = live_stack_factory(["tia"], tls=True)
    yield stack
    stack.close()


def test_the_workbench_works_with_a_secure_httponly_cookie(tia, browser):
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(tia.url("tia"))
        expect(page).to_have_title(re.compile(r"^Log in to "))
        password = page.locator('input[name="password"]')
        password.fill(tia.password("tia"))
        password.press("Enter")
        expect(page.locator(".explorer-folders-view")).to_be_visible(timeout=LOAD)
        # __Host-: Secure, Path=/, no Domain; so never sent to another user's host.
        (cookie,) = [c for c in context.cookies() if c["name"] == "__Host-csm-session"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["path"] == "/", cookie
        assert cookie["domain"] == urlsplit(tia.url("tia")).hostname, cookie
        assert "csm-session" not in page.evaluate("document.cookie")
    finally:
        context.close()
