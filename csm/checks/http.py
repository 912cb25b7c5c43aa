"""Deployment checks from outside: HTTP and WebSocket through the proxy, as a browser.

    ada = Target("http://ada.code.localhost:8080", password)
    print(healthz_answers(ada))

A `Target` is one user's address. `connect_ip` connects there instead of resolving the
name (Python's resolver does not know *.localhost, so those go to 127.0.0.1 as browsers
do); the Host header, the TLS name and the Origin stay the real ones.
`source_address` sends from a given local address (a separate loopback address keeps
a rate-limit check from limiting everyone else's logins).

Login budget: code-server allows 2 wrong passwords a minute per process. Only
`wrong_password_gives_no_session` spends one; the right password and an empty one
cost nothing, and a `Target` logs in once and reuses its session cookie.
"""
from __future__ import annotations

import collections
import functools
import json
import re
import secrets
import socket
import ssl
import struct
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

import requests
import urllib3
import websocket

from csm.checks import CheckFailed
from csm.checks.image import facts

SESSION_COOKIE = "code-server-session"


def health_path() -> str:
    """code-server's unauthenticated health endpoint, from image/contract.json."""
    return facts()["healthPath"]
UNKNOWN_HOST = "csm-check.invalid"  # RFC 2606: .invalid is never anyone's
FOREIGN_ORIGIN = "https://attacker.invalid"
DEFAULT_PORTS = {"http": 80, "https": 443}

# VS Code's PersistentProtocol: every message is a 13-byte header (type, id, ack,
# data length; big-endian) and its data. Control messages (type 2) carry the
# handshake: the client's {"type":"auth"} and the server's {"type":"sign"}.
VSCODE_HEADER = struct.Struct(">BIII")
VSCODE_CONTROL = 2


@dataclass
class Target:
    """One user's address on a deployment, and how to reach it."""

    url: str  # "https://ada.code.example.org" (scheme, host, optional port; no path)
    password: str | None = field(default=None, repr=False)
    connect_ip: str | None = None  # connect here instead of resolving the name
    source_address: str | None = None  # local address to send from
    ca_file: str | None = None  # trust this CA for https (a test or private CA)
    timeout: float = 30.0
    _cookie: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{self.url!r} is not an address like https://ada.code.example.org")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise ValueError(f"{self.url!r}: give only scheme, host and port, like https://ada.code.example.org")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{self.url!r} has a port that is not a number from 1 to 65535") from None
        self.scheme, self.hostname = parts.scheme, parts.hostname.lower()
        self.port = port or DEFAULT_PORTS[self.scheme]
        # What browsers send as Host and Origin: the port only when it is not the default.
        self.netloc = self.hostname if self.port == DEFAULT_PORTS[self.scheme] else f"{self.hostname}:{self.port}"
        self.origin = self.url = f"{self.scheme}://{self.netloc}"
        if self.connect_ip is None and (self.hostname == "localhost" or self.hostname.endswith(".localhost")):
            self.connect_ip = "127.0.0.1"  # RFC 6761; browsers do the same

    @property
    def name(self) -> str:
        """The first label: the user's name."""
        return self.hostname.split(".", 1)[0]

    @property
    def domain(self) -> str:
        if "." not in self.hostname:
            raise ValueError(f"{self.url} has no parent domain; give a user's address like https://ada.code.example.org")
        return self.hostname.split(".", 1)[1]

    def _with_host(self, hostname: str, connect_ip: str | None) -> "Target":
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return Target(f"{self.scheme}://{hostname}{port}", connect_ip=connect_ip,
                      source_address=self.source_address, ca_file=self.ca_file, timeout=self.timeout)

    def sibling(self, name: str) -> "Target":
        """Another subdomain of the same domain, reached the same way (no password)."""
        return self._with_host(f"{name}.{self.domain}", self.connect_ip)

    def unknown_host(self) -> "Target":
        """The same server, asked for a host name it does not serve."""
        return self._with_host(UNKNOWN_HOST, self.address())

    def from_source(self, source_address: str) -> "Target":
        return replace(self, source_address=source_address)

    def address(self) -> str:
        if self.connect_ip:
            return self.connect_ip
        try:
            return socket.getaddrinfo(self.hostname, self.port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as e:
            raise CheckFailed(f"{self.hostname} does not resolve: {e}") from e

    def session(self) -> str:
        """The session cookie's value; logs in with the password the first time."""
        if self._cookie is None:
            self._cookie = _log_in(self)
        return self._cookie


# ---------------------------------------------------------------- transport


class _Adapter(requests.adapters.HTTPAdapter):
    """Sends from a chosen local address and checks TLS against the real name."""

    def __init__(self, pool_kwargs: dict):
        self._pool_kwargs = pool_kwargs
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs, **self._pool_kwargs)


def _http(t: Target, method: str, path: str, *, cookie: str | None = None,
          headers: dict | None = None, verify: bool = True, **kwargs) -> requests.Response:
    """One request, no redirects followed, no proxies from the environment."""
    sent = {"Host": t.netloc, **(headers or {})}
    if cookie is not None:
        sent["Cookie"] = f"{SESSION_COOKIE}={cookie}"
    pool: dict = {}
    if t.source_address:
        pool["source_address"] = (t.source_address, 0)
    host = t.hostname
    if t.connect_ip:
        host = f"[{t.connect_ip}]" if ":" in t.connect_ip else t.connect_ip
        if t.scheme == "https":
            pool.update(server_hostname=t.hostname, assert_hostname=t.hostname if verify else False)
    url = f"{t.scheme}://{host}:{t.port}{path}"
    with requests.Session() as s, warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        s.trust_env = False
        s.mount(f"{t.scheme}://", _Adapter(pool))
        try:
            return s.request(method, url, headers=sent, allow_redirects=False, timeout=t.timeout,
                             verify=(t.ca_file or True) if verify else False, **kwargs)
        except requests.RequestException as e:
            raise CheckFailed(f"{method} {t.origin}{path} failed: {e}") from e


def _ws(t: Target, path: str, *, cookie: str | None = None,
        origin: str | None = None) -> websocket.WebSocket:
    """A WebSocket to t: its own Origin unless told otherwise, the session cookie if given.

    The socket is opened here (connect_ip, source_address, TLS name), so the handshake
    carries the real Host from the URL and nothing else."""
    source = (t.source_address, 0) if t.source_address else None
    try:
        sock = socket.create_connection((t.address(), t.port), timeout=t.timeout, source_address=source)
    except OSError as e:
        raise CheckFailed(f"cannot connect to {t.address()}:{t.port} for {t.origin}: {e}") from e
    try:
        if t.scheme == "https":
            sock = ssl.create_default_context(cafile=t.ca_file).wrap_socket(sock, server_hostname=t.hostname)
        scheme = "wss" if t.scheme == "https" else "ws"
        return websocket.create_connection(
            f"{scheme}://{t.netloc}{path}", socket=sock, timeout=t.timeout,
            origin=origin or t.origin,
            cookie=f"{SESSION_COOKIE}={cookie}" if cookie is not None else None)
    except BaseException:
        sock.close()
        raise


def _ws_refusal(t: Target, path: str, **kwargs) -> int | None:
    """The HTTP status a WebSocket handshake was refused with; None if it upgraded."""
    try:
        ws = _ws(t, path, **kwargs)
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    ws.close()
    return None


def _vscode_path() -> str:
    # The workbench's own query; any path works.
    return f"/?reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false"


def _vscode_handshake(ws: websocket.WebSocket) -> dict:
    """Sends VS Code's auth message; returns the server's first control message."""
    auth = json.dumps({"type": "auth", "auth": "0" * 20, "data": secrets.token_hex(16)}).encode()
    ws.send_binary(VSCODE_HEADER.pack(VSCODE_CONTROL, 0, 0, len(auth)) + auth)
    buffer = b""
    seen = []
    while True:
        try:
            opcode, data = ws.recv_data()
        except (websocket.WebSocketException, OSError) as e:
            raise CheckFailed(f"no control message back after the auth frame ({e}); "
                              f"saw {seen or 'nothing'}") from e
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise CheckFailed(f"the server closed the WebSocket after the auth frame; saw {seen or 'nothing'}")
        buffer += data
        while len(buffer) >= VSCODE_HEADER.size:
            kind, _id, _ack, length = VSCODE_HEADER.unpack_from(buffer)
            end = VSCODE_HEADER.size + length
            if len(buffer) < end:
                break
            body, buffer = buffer[VSCODE_HEADER.size:end], buffer[end:]
            seen.append(f"type {kind}, {length} bytes")
            if kind == VSCODE_CONTROL:
                try:
                    return json.loads(body)
                except ValueError as e:
                    raise CheckFailed(f"control message is not JSON: {body[:200]!r}") from e


# ---------------------------------------------------------------- sessions


def _error_text(html: str) -> str:
    m = re.search(r'class="error"[^>]*>(.*?)</', html, re.S)
    return m.group(1).strip() if m else ""


def _login(t: Target, password: str) -> tuple[requests.Response, "SimpleCookie | None"]:
    """POSTs the login form; returns the answer and its session cookie, if any."""
    r = _http(t, "POST", "/login", data={"password": password})
    for header in r.raw.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if SESSION_COOKIE in jar and jar[SESSION_COOKIE].value:
            return r, jar[SESSION_COOKIE]
    return r, None


def _login_answer(r: requests.Response) -> str:
    if r.status_code == 429:
        return "429 from the proxy's login rate limit"
    error = _error_text(r.text)
    return f"HTTP {r.status_code}" + (f" saying {error!r}" if error else "")


def _session_cookie(t: Target, what: str):
    """Logs in with t's password; the session cookie, or CheckFailed saying why not."""
    if not t.password:
        raise CheckFailed(f"no password given for {t.origin}")
    r, cookie = _login(t, t.password)
    if r.status_code not in (302, 303) or cookie is None:
        raise CheckFailed(f"{what} gave no session: {_login_answer(r)}")
    return cookie


def _log_in(t: Target) -> str:
    return _session_cookie(t, f"login to {t.origin} with the right password").value


def _has_session(t: Target, cookie: str | None) -> bool:
    """Whether `cookie` opens t's workbench: GET / redirects to the login page, or
    (through the folder redirect) serves the workbench."""
    r = _http(t, "GET", "/", cookie=cookie)
    for _ in range(3):
        if r.status_code not in (301, 302, 303, 307, 308):
            break
        location = urlsplit(r.headers.get("Location", ""))
        if location.path.rstrip("/").endswith("login"):
            return False
        path = "/" + location.path.lstrip("./") + (f"?{location.query}" if location.query else "")
        r = _http(t, "GET", path, cookie=cookie)
    if r.status_code == 200 and "workbench" in r.text:
        return True
    raise CheckFailed(f"GET {t.origin}/ gave neither the login page nor the workbench: "
                      f"HTTP {r.status_code} {r.text[:200]!r}")


# ---------------------------------------------------------------- the checks


def healthz_answers(t: Target) -> str:
    r = _http(t, "GET", health_path())
    try:
        status = r.json().get("status")
    except ValueError:
        status = None
    if r.status_code != 200 or status not in ("alive", "expired"):
        raise CheckFailed(f"{health_path()} answered HTTP {r.status_code} {r.text[:200]!r}")
    return f"{health_path()} answered {status!r}"


def last_heartbeat(t: Target) -> float | None:
    """Epoch seconds of code-server's last heartbeat (its last sign that someone works
    there), from /healthz; None when it does not answer or has had none."""
    try:
        beat = _http(t, "GET", health_path()).json().get("lastHeartbeat")
    except (CheckFailed, ValueError, AttributeError):
        return None
    return beat / 1000 if beat else None


def login_page_served(t: Target) -> str:
    r = _http(t, "GET", "/login")
    if r.status_code != 200 or not re.search(r'<input[^>]*name="password"', r.text):
        raise CheckFailed(f"/login answered HTTP {r.status_code} without a password field: {r.text[:200]!r}")
    return "/login serves a form with a password field"


def wrong_password_gives_no_session(t: Target) -> str:
    """Spends one of code-server's two wrong passwords a minute."""
    r, cookie = _login(t, "wrong-" + secrets.token_urlsafe(12))
    if cookie is not None or r.status_code in (301, 302, 303):
        raise CheckFailed(f"a wrong password was let in: HTTP {r.status_code}, cookie {cookie is not None}")
    answer = _login_answer(r)
    if "Incorrect password" not in answer:
        raise CheckFailed(f"a wrong password was not refused as incorrect: {answer}")
    return f"a wrong password gets {answer} and no cookie"


def right_password_gives_session(t: Target) -> str:
    """Logs in (right passwords cost no budget) and keeps the cookie on t."""
    cookie = _session_cookie(t, "the right password")
    if cookie["domain"]:
        raise CheckFailed(f"the session cookie is sent to every host under {cookie['domain']!r}: "
                          f"other users' subdomains would receive it")
    t._cookie = cookie.value
    if not _has_session(t, cookie.value):
        raise CheckFailed("the session cookie from the login does not open the workbench")
    if _has_session(t, None):
        raise CheckFailed("the workbench opens without any cookie")
    return "the right password gets a host-only session cookie that opens the workbench; no cookie, no workbench"


def websocket_speaks_vscode_protocol(t: Target) -> str:
    try:
        ws = _ws(t, _vscode_path(), cookie=t.session())
    except websocket.WebSocketException as e:
        raise CheckFailed(f"the workbench WebSocket did not upgrade: {e}") from e
    try:
        message = _vscode_handshake(ws)
    finally:
        ws.close()
    if message.get("type") != "sign" or "data" not in message:
        raise CheckFailed(f"the server answered the auth frame with {message}, not a sign message")
    return f"WebSocket upgraded on {t.netloc}; VS Code answered the auth frame with a 'sign' control message"


def foreign_origin_websocket_refused(t: Target) -> str:
    status = _ws_refusal(t, _vscode_path(), cookie=t.session(), origin=FOREIGN_ORIGIN)
    if status != 403:
        raise CheckFailed(f"a WebSocket with Origin {FOREIGN_ORIGIN} and a valid session "
                          f"got {'upgraded' if status is None else f'HTTP {status}'}, not 403")
    return f"a WebSocket from Origin {FOREIGN_ORIGIN} is refused with 403 despite a valid session"


def websocket_without_session_refused(t: Target) -> str:
    status = _ws_refusal(t, _vscode_path())
    if status != 401:
        raise CheckFailed(f"a WebSocket without a session got {'upgraded' if status is None else f'HTTP {status}'}, not 401")
    return "a WebSocket without a session is refused with 401"


def session_does_not_open_other_user(t: Target, other_user: str) -> str:
    """t's session cookie, handed to another user's subdomain on purpose, opens nothing."""
    other = t.sibling(other_user)
    cookie = t.session()
    if not _has_session(t, cookie):
        raise CheckFailed(f"{t.name}'s session does not even open {t.netloc}")
    if _has_session(other, cookie):
        raise CheckFailed(f"{t.name}'s session cookie opens {other.netloc}'s workbench")
    status = _ws_refusal(other, _vscode_path(), cookie=cookie)
    if status != 401:
        raise CheckFailed(f"{t.name}'s session cookie on a WebSocket to {other.netloc} got "
                          f"{'upgraded' if status is None else f'HTTP {status}'}, not 401")
    return f"{t.name}'s session cookie gets the login page and a 401 WebSocket at {other.netloc}"


def _landing_page(probe: Target, landing_html: str | None, verify: bool = True) -> str:
    """/ and /healthz on probe both get the landing page with 404: no container answers
    (code-server would answer /healthz with JSON)."""
    for path in ("/", health_path()):
        r = _http(probe, "GET", path, verify=verify)
        if r.status_code != 404:
            raise CheckFailed(f"{probe.netloc}{path} answered HTTP {r.status_code}, not 404: {r.text[:200]!r}")
        if landing_html is not None:
            if r.text.strip() != landing_html.strip():
                raise CheckFailed(f"{probe.netloc}{path} answered 404 with something other than the "
                                  f"landing page: {r.text[:200]!r}")
        elif ("<html" not in r.text.lower() or "code-server" in r.text.lower()
              or "<center>nginx" in r.text):
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
    r = _http(t, "POST", f"/proxy/{app_port}/", cookie=t.session(), data=b"\0" * size,
              headers={"Content-Type": "application/octet-stream"})
    try:
        received = r.json().get("received")
    except ValueError:
        received = None
    if r.status_code != 200 or received != size:
        raise CheckFailed(f"a {size >> 20} MiB upload got HTTP {r.status_code} "
                          f"{r.text[:200]!r}, not the app's count of {size} bytes")
    return f"a {size >> 20} MiB upload reached the app in the container whole, through nginx and code-server"


def login_attempts_rate_limited(t: Target, attempts: int = 60) -> str:
    """The proxy answers 429 to a burst of logins from one address (t.source_address:
    use one no one else logs in from). Sends empty passwords: code-server's own limiter
    counts only wrong ones."""
    statuses = []
    for _ in range(attempts):
        r = _http(t, "POST", "/login", data={"password": ""})
        statuses.append(r.status_code)
        if statuses[-1] == 429:
            break
    source = t.source_address or "this machine"
    if statuses[0] == 429:
        raise CheckFailed(f"the first login attempt from {source} was already refused with 429: "
                          f"the address was limited before this check began")
    if statuses[-1] != 429:
        raise CheckFailed(f"{attempts} quick login attempts from {source}, none refused with 429: "
                          f"{dict(collections.Counter(statuses))}")
    if "Wait one minute" not in r.text:
        raise CheckFailed(f"the 429 page does not tell the person what to do: {r.text[:200]!r}")
    return (f"login attempt {len(statuses)} from {source} was refused with 429 and a page saying to wait "
            f"(the first {len(statuses) - 1} were not)")


def idle_websocket_stays_open(t: Target, idle_seconds: float = 75) -> str:
    """An upgraded WebSocket that stays quiet longer than nginx's default 60 s read
    timeout still answers. Uses code-server's /healthz WebSocket, which answers each
    message and sends nothing unasked (the workbench's sends keep-alives)."""
    try:
        ws = _ws(t, health_path())
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
            raise CheckFailed(f"the WebSocket was closed after {time.monotonic() - started:.0f} s "
                              f"of quiet: {e!r}") from e
        else:
            raise CheckFailed(f"the /healthz WebSocket sent {unasked!r} unasked")
        ws.settimeout(t.timeout)
        ask(f"after {idle_seconds:.0f} s idle")
    finally:
        ws.close()
    return f"an upgraded WebSocket still answers after {idle_seconds:.0f} s idle"


def deployment_checks(other_user: str | None = None, landing_html: str | None = None,
                      full: bool = False) -> list[tuple[str, Callable[[Target], str]]]:
    """The checks `csm smoke` runs, in order, as (name, check(target)).

    other_user: another user's name, for the cross-user check (left out without it).
    landing_html: the plan's landing page, compared exactly when given.
    full: also the slow or disruptive ones: a WebSocket idle for 75 s, and a burst of
    logins that gets this machine's address rate-limited for a minute (last, so nothing
    after it is limited). The upload check needs an app in the container, so it is
    not among these."""
    checks: list[Callable[[Target], str]] = [
        healthz_answers,
        login_page_served,
        wrong_password_gives_no_session,
        right_password_gives_session,
        websocket_speaks_vscode_protocol,
        foreign_origin_websocket_refused,
        websocket_without_session_refused,
    ]
    if other_user:
        checks.append(functools.partial(session_does_not_open_other_user, other_user=other_user))
    checks += [functools.partial(unknown_subdomain_gets_landing_page, landing_html=landing_html),
               functools.partial(unknown_host_gets_landing_page, landing_html=landing_html)]
    if full:
        checks += [idle_websocket_stays_open, login_attempts_rate_limited]
    return [(getattr(c, "func", c).__name__, c) for c in checks]
