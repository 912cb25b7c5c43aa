"""What the proxy itself does in front of the workbenches, checked from outside: the
landing page for names it serves no one on, request bodies passed whole, the login
rate limit per address, and upgraded WebSockets kept open while idle.

    ada = http.Target("http://ada.code.localhost:8080", password)
    print(unknown_subdomain_gets_landing_page(ada))
"""

from __future__ import annotations

import collections
import json
import secrets
import time

import websocket

from csm.checks import CheckFailed
from csm.checks.facts import gate_path, health_path
from csm.checks.http import Target, _http, _ws


def _landing_page(probe: Target, landing_html: str | None, verify: bool = True) -> str:
    """/ and /healthz on probe both get the landing page with 404: no container answers
    (code-server would answer /healthz with JSON)."""
    for path in ("/", health_path()):
        r = _http(probe, "GET", path, verify=verify)
        if r.status_code != 404:
            raise CheckFailed(f"{probe.netloc}{path} answered HTTP {r.status_code}, not 404: {r.text[:200]!r}")
        if landing_html is not None:
            if r.text.strip() != landing_html.strip():
                raise CheckFailed(
                    f"{probe.netloc}{path} answered 404 with something other than the landing page: {r.text[:200]!r}"
                )
        elif "<html" not in r.text.lower() or "code-server" in r.text.lower() or "<center>nginx" in r.text:
            raise CheckFailed(f"{probe.netloc}{path} answered 404 without the landing page: {r.text[:200]!r}")
    return f"{probe.netloc}: / and {health_path()} get the landing page with 404, no workspace"


def unknown_subdomain_gets_landing_page(t: Target, landing_html: str | None = None) -> str:
    """`landing_html`: the plan's landing page, to compare exactly (else its shape)."""
    return _landing_page(t.sibling(f"csm-nobody-{secrets.token_hex(4)}"), landing_html)


def unknown_host_gets_landing_page(t: Target, landing_html: str | None = None) -> str:
    # The name is deliberately on no certificate: TLS names are not what this checks.
    return _landing_page(t.unknown_host(), landing_html, verify=False)


def large_upload_passes_proxy(t: Target, app_port: int, size: int = 100 * 2**20) -> str:
    """A request body of `size` bytes passes the proxy whole: POSTed to an app in the
    user's container through code-server's port proxy (/proxy/<port>/), which answers
    with the number of bytes it received (csm.checks.host.start_upload_sink)."""
    r = _http(
        t,
        "POST",
        f"/proxy/{app_port}/",
        cookie=t.session(),
        data=b"\0" * size,
        headers={"Content-Type": "application/octet-stream"},
    )
    try:
        received = r.json().get("received")
    except ValueError:
        received = None
    if r.status_code != 200 or received != size:
        raise CheckFailed(
            f"a {size >> 20} MiB upload got HTTP {r.status_code} {r.text[:200]!r}, not the app's count of {size} bytes"
        )
    return f"a {size >> 20} MiB upload reached the app in the container whole, through nginx and code-server"


def login_attempts_rate_limited(t: Target, attempts: int = 60) -> str:
    """The proxy answers 429 to a burst of logins from one address (t.source_address:
    use one no one else logs in from). Sends empty passwords: the gate checks and counts
    only passwords given."""
    statuses = []
    for _ in range(attempts):
        r = _http(t, "POST", gate_path("login"), data={"password": ""}, headers={"Origin": t.origin})
        statuses.append(r.status_code)
        if statuses[-1] == 429:
            break
    source = t.source_address or "this machine"
    if statuses[0] == 429:
        raise CheckFailed(
            f"the first login attempt from {source} was already refused with 429: "
            f"the address was limited before this check began"
        )
    if statuses[-1] != 429:
        raise CheckFailed(
            f"{attempts} quick login attempts from {source}, none refused with 429: "
            f"{dict(collections.Counter(statuses))}"
        )
    if "Wait one minute" not in r.text:
        raise CheckFailed(f"the 429 page does not tell the person what to do: {r.text[:200]!r}")
    return (
        f"login attempt {len(statuses)} from {source} was refused with 429 and a page saying to wait "
        f"(the first {len(statuses) - 1} were not)"
    )


def idle_websocket_stays_open(t: Target, idle_seconds: float = 75) -> str:
    """An upgraded WebSocket that stays quiet longer than nginx's default 60 s read
    timeout still answers. Uses code-server's /healthz WebSocket, which answers each
    message and sends nothing unasked (the workbench's sends keep-alives)."""
    try:
        ws = _ws(t, health_path(), cookie=t.session())
    except websocket.WebSocketException as e:
        raise CheckFailed(f"the /healthz WebSocket did not upgrade: {e}") from e

    def ask(moment: str) -> None:
        try:
            ws.send("health?")
            answer = json.loads(ws.recv())
        except (websocket.WebSocketException, OSError, ValueError) as e:
            raise CheckFailed(f"the WebSocket did not answer {moment}: {e!r}") from e
        if answer.get("event") != "health":
            raise CheckFailed(f"the /healthz WebSocket answered {answer} {moment}")

    try:
        ask("at once")
        # Wait by reading: a close during the quiet time shows up at once, with when.
        ws.settimeout(idle_seconds)
        started = time.monotonic()
        try:
            unasked = ws.recv()
        except websocket.WebSocketTimeoutException:
            pass  # quiet all along, as it should be
        except (websocket.WebSocketException, OSError) as e:
            raise CheckFailed(
                f"the WebSocket was closed after {time.monotonic() - started:.0f} s of quiet: {e!r}"
            ) from e
        else:
            raise CheckFailed(f"the /healthz WebSocket sent {unasked!r} unasked")
        ws.settimeout(t.timeout)
        ask(f"after {idle_seconds:.0f} s idle")
    finally:
        ws.close()
    return f"an upgraded WebSocket still answers after {idle_seconds:.0f} s idle"
