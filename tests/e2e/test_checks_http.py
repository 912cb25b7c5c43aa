"""The deployment checks (csm.checks.workbench, csm.checks.proxy) against the live portable stack: two users
behind nginx on a non-default port, reached by name as a browser would.

Login budget: ada spends one wrong password here (bo spends one in the smoke test);
every other login uses the right password or an empty one, which cost nothing.
nginx limits logins per client address, so these tests send from a loopback address
of their own (SOURCE) and leave 127.0.0.1's allowance to the browser tests.
"""

import re

import pytest

from csm.checks import CheckFailed, host, http, proxy, workbench
from csm.checks.commands import subprocess_runner

pytestmark = pytest.mark.live
SOURCE = "127.0.0.10"


@pytest.fixture(scope="module")
def targets(live_stack):
    """One Target per user; each logs in once and keeps its session cookie."""
    return {u: http.Target(live_stack.url(u), live_stack.password(u), source_address=SOURCE) for u in live_stack.users}


@pytest.fixture(scope="module")
def ada(targets):
    return targets["ada"]


@pytest.fixture(scope="module")
def landing_html(live_stack):
    return live_stack.plan.nginx["defaultServer"]["landingHtml"]


def test_nginx_listens_on_a_non_default_port(ada):
    # What makes the WebSocket checks below prove the Origin check copes with a port.
    assert ada.port not in (80, 443) and ada.netloc.endswith(f":{ada.port}")


@pytest.mark.parametrize("user", ["ada", "bo"])
def test_healthz_answers(targets, user):
    assert "/healthz answered" in workbench.healthz_answers(targets[user])


def test_login_page_served(ada):
    workbench.login_page_served(ada)


def test_wrong_password_gives_no_session(ada):
    assert "HTTP 401 wrong" in workbench.wrong_password_gives_no_session(ada)


@pytest.mark.parametrize("user", ["ada", "bo"])
def test_right_password_gives_session(targets, user):
    workbench.right_password_gives_session(targets[user])


@pytest.mark.parametrize("user", ["ada", "bo"])
def test_websocket_speaks_vscode_protocol(targets, user):
    assert "'sign'" in workbench.websocket_speaks_vscode_protocol(targets[user])


def test_foreign_origin_websocket_refused(ada):
    workbench.foreign_origin_websocket_refused(ada)


def test_websocket_without_session_refused(ada):
    workbench.websocket_without_session_refused(ada)


@pytest.mark.parametrize("user, other", [("ada", "bo"), ("bo", "ada")])
def test_session_does_not_open_other_user(targets, user, other):
    workbench.session_does_not_open_other_user(targets[user], other)


def test_unknown_subdomain_gets_landing_page(ada, landing_html):
    proxy.unknown_subdomain_gets_landing_page(ada, landing_html)


def test_unknown_host_gets_landing_page(ada, landing_html):
    proxy.unknown_host_gets_landing_page(ada, landing_html)


def test_large_upload_passes_proxy(live_stack, ada):
    host.start_upload_sink(subprocess_runner, live_stack.plan.users["ada"], 18765)
    assert "100 MiB" in proxy.large_upload_passes_proxy(ada, 18765)


def test_an_upload_beyond_the_plans_body_limit_is_refused_by_nginx(live_stack, ada):
    # Refused on its Content-Length, before anything reaches the container.
    config = " ".join(live_stack.plan.users["ada"].nginx["config"])
    limit_mib = int(re.search(r"client_max_body_size (\d+)m;", config).group(1))
    with pytest.raises(CheckFailed, match="HTTP 413.*nginx"):
        proxy.large_upload_passes_proxy(ada, 18766, size=(limit_mib + 1) * 2**20)


def test_login_attempts_rate_limited_per_address(ada):
    # From an address nobody else uses, so the other tests' logins are not limited ...
    proxy.login_attempts_rate_limited(ada.from_source("127.0.0.77"))
    # ... as this shows: another address still gets the login page.
    workbench.login_page_served(ada)


def test_idle_websocket_stays_open(ada):
    proxy.idle_websocket_stays_open(ada, idle_seconds=75)


# ---- the checks fail when what they prove does not hold ---------------------------


def test_a_stale_cookie_does_not_speak_vscode(live_stack):
    stale = http.Target(live_stack.url("ada"), source_address=SOURCE)
    stale._cookie = "not-a-session"
    with pytest.raises(CheckFailed, match="did not upgrade.*401"):
        workbench.websocket_speaks_vscode_protocol(stale)


def test_a_session_opening_the_other_workspace_is_caught(ada):
    # "other user" = ada herself: her cookie does open that workbench.
    with pytest.raises(CheckFailed, match="opens ada.code.localhost"):
        workbench.session_does_not_open_other_user(ada, "ada")


def test_a_workspace_is_not_mistaken_for_the_landing_page(ada, landing_html):
    with pytest.raises(CheckFailed, match="ada.code.localhost:[0-9]+/ answered HTTP 401, not 404"):
        proxy._landing_page(ada, landing_html)


def test_an_unknown_subdomain_has_no_healthz(ada):
    nobody = ada.sibling("nobody")
    nobody.password = ada.password
    with pytest.raises(CheckFailed, match="gave no session: HTTP 404"):  # no gate, no login there
        workbench.healthz_answers(nobody)


def test_a_burst_below_the_limit_is_reported_as_unlimited(ada):
    with pytest.raises(CheckFailed, match="none refused with 429"):
        proxy.login_attempts_rate_limited(ada.from_source("127.0.0.78"), attempts=3)
