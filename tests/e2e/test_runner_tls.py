"""`csm up --tls`: HTTPS with a local CA, the HTTP port redirecting, HSTS on every
TLS answer, and VS Code's WebSocket over wss."""

from __future__ import annotations

import pytest

from csm.checks import CheckFailed

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def tls_stack(live_stack_factory):
    stack = live_stack_factory(["tess"], tls=True)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def client(tls_stack, stack_kit):
    return stack_kit.WebClient(ca_file=tls_stack.ca_file)


def test_url_is_https_on_the_tls_port(tls_stack):
    assert tls_stack.url("tess") == f"https://tess.code.localhost:{tls_stack.tls_port}"


def test_http_redirects_to_https(tls_stack, client):
    r = client.request("GET", f"http://tess.code.localhost:{tls_stack.http_port}", "/some/path?q=1")
    assert r.status_code == 301
    assert r.headers["Location"] == f"https://tess.code.localhost:{tls_stack.tls_port}/some/path?q=1"


def test_login_workbench_and_hsts_over_https(tls_stack, client):
    url = tls_stack.url("tess")
    r = client.request(
        "POST", url, "/_csm/login", data={"password": tls_stack.password("tess")}, headers={"Origin": url}
    )
    assert r.status_code == 303
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookie = r.cookies["__Host-csm-session"]
    assert "workbench" in client.workbench(url, cookie)
    page = client.request("GET", url, "/", cookie=cookie)  # code-server's redirect to the folder
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_vscode_websocket_over_wss(tls_stack, client):
    url = tls_stack.url("tess")
    cookie = client.login(url, tls_stack.password("tess"))
    assert client.vscode_handshake(url, cookie)["type"] == "sign"


def test_unknown_names_get_the_landing_page_with_hsts(tls_stack, client):
    r = client.request("GET", f"https://nobody.code.localhost:{tls_stack.tls_port}", "/")
    assert r.status_code == 404
    assert "Nothing here" in r.text
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_the_certificate_is_refused_without_the_local_ca(tls_stack, stack_kit):
    with pytest.raises(CheckFailed, match="CERTIFICATE_VERIFY_FAILED"):
        stack_kit.WebClient().request("GET", tls_stack.url("tess"), "/healthz")


def test_the_running_tls_config_passes_gixy(tls_stack, stack_kit):
    conf = tls_stack.state_dir / "nginx.conf"
    assert "ssl" in conf.read_text()
    assert stack_kit.gixy_issues(conf) == []
