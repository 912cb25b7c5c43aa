"""Reaching a deployment from outside: HTTP and WebSocket through the proxy, as a browser.

    ada = Target("http://ada.code.localhost:8080", password)
    print(ada.session())

The checks built on this are in csm.checks.workbench (one user's workbench: login,
session, VS Code's WebSocket) and csm.checks.proxy (what nginx does in front of them).

A `Target` is one user's address. `connect_ip` connects there instead of resolving the
name (Python's resolver does not know *.localhost, so those go to 127.0.0.1 as browsers
do); the Host header, the TLS name and the Origin stay the real ones.
`source_address` sends from a given local address (a separate loopback address keeps
a rate-limit check from limiting everyone else's logins).

Logins go to the gate in front of every workspace (gate_path and cookie_name below: its public paths and
cookie). Login budget: the gate allows 2 wrong passwords a minute (plus 12 an hour)
per client address; only `workbench.wrong_password_gives_no_session` spends one, the
right password costs nothing, and a `Target` logs in once and reuses its session.
"""

from __future__ import annotations

import re
import socket
import ssl
import warnings
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, Morsel, SimpleCookie
from urllib.parse import urlsplit

import requests
import urllib3
import websocket

from csm.checks import CheckFailed
from csm.checks.facts import cookie_names, gate_path


def cookie_name(t: Target) -> str:
    return cookie_names()[t.scheme]


UNKNOWN_HOST = "csm-check.invalid"  # RFC 2606: .invalid is never anyone's
DEFAULT_PORTS = {"http": 80, "https": 443}


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

    def secret(self) -> str:
        """The password, for a check that logs in with it."""
        if self.password is None:
            raise CheckFailed(f"this check logs in to {self.url}: give the user's password")
        return self.password

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
            raise ValueError(
                f"{self.url} has no parent domain; give a user's address like https://ada.code.example.org"
            )
        return self.hostname.split(".", 1)[1]

    def _with_host(self, hostname: str, connect_ip: str | None) -> Target:
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return Target(
            f"{self.scheme}://{hostname}{port}",
            connect_ip=connect_ip,
            source_address=self.source_address,
            ca_file=self.ca_file,
            timeout=self.timeout,
        )

    def sibling(self, name: str) -> Target:
        """Another subdomain of the same domain, reached the same way (no password)."""
        return self._with_host(f"{name}.{self.domain}", self.connect_ip)

    def unknown_host(self) -> Target:
        """The same server, asked for a host name it does not serve."""
        return self._with_host(UNKNOWN_HOST, self.address())

    def from_source(self, source_address: str) -> Target:
        return replace(self, source_address=source_address)

    def address(self) -> str:
        if self.connect_ip:
            return self.connect_ip
        try:
            return str(socket.getaddrinfo(self.hostname, self.port, type=socket.SOCK_STREAM)[0][4][0])
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
        super().init_poolmanager(*args, **{**kwargs, **self._pool_kwargs})


def _http(
    t: Target,
    method: str,
    path: str,
    *,
    cookie: str | None = None,
    headers: dict | None = None,
    verify: bool = True,
    **kwargs,
) -> requests.Response:
    """One request, no redirects followed, no proxies from the environment."""
    sent = {"Host": t.netloc, **(headers or {})}
    if cookie is not None:
        sent["Cookie"] = f"{cookie_name(t)}={cookie}"
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
            return s.request(
                method,
                url,
                headers=sent,
                allow_redirects=False,
                timeout=t.timeout,
                verify=(t.ca_file or True) if verify else False,
                **kwargs,
            )
        except requests.RequestException as e:
            raise CheckFailed(f"{method} {t.origin}{path} failed: {e}") from e


def _ws(t: Target, path: str, *, cookie: str | None = None, origin: str | None = None) -> websocket.WebSocket:
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
            f"{scheme}://{t.netloc}{path}",
            socket=sock,
            timeout=t.timeout,
            origin=origin or t.origin,
            cookie=f"{cookie_name(t)}={cookie}" if cookie is not None else None,
        )
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


# ---------------------------------------------------------------- sessions


def _error_text(html: str) -> str:
    m = re.search(r'class="error"[^>]*>(.*?)</', html, re.S)
    return m.group(1).strip() if m else ""


def _login(
    t: Target, password: str, path: str | None = None, origin: str | None = "own"
) -> tuple[requests.Response, Morsel[str] | None]:
    """POSTs the login form as the user's own page would (its Origin); returns the
    answer and its session cookie, if any. `origin`: another site's, or None for none."""
    headers = {"Origin": t.origin if origin == "own" else origin} if origin else {}
    r = _http(t, "POST", path or gate_path("login"), data={"password": password, "next": "/"}, headers=headers)
    name = cookie_name(t)
    for header in r.raw.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        if name in jar and jar[name].value:
            return r, jar[name]
    return r, None


def _login_answer(r: requests.Response) -> str:
    """What the gate said (X-CSM-Login: ok, wrong, limited, busy, refused), or nginx's 429."""
    kind = r.headers.get("X-CSM-Login")
    if r.status_code == 429 and kind is None:
        return "429 from the proxy's login rate limit"
    error = _error_text(r.text)
    return f"HTTP {r.status_code}" + (f" {kind}" if kind else "") + (f" saying {error!r}" if error else "")


def _session_cookie(t: Target, what: str):
    """Logs in with t's password; the session cookie, or CheckFailed saying why not."""
    if not t.password:
        raise CheckFailed(f"no password given for {t.origin}")
    r, cookie = _login(t, t.password)
    if r.status_code != 303 or cookie is None:
        raise CheckFailed(f"{what} gave no session: {_login_answer(r)}")
    return cookie


def _log_in(t: Target) -> str:
    return _session_cookie(t, f"login to {t.origin} with the right password").value


def _has_session(t: Target, cookie: str | None) -> bool:
    """Whether `cookie` opens t's workbench: GET / gets the gate's login page (401), or
    (through code-server's folder redirect) the workbench."""
    r = _http(t, "GET", "/", cookie=cookie)
    for _ in range(3):
        if r.status_code not in (301, 302, 303, 307, 308):
            break
        location = urlsplit(r.headers.get("Location", ""))
        path = "/" + location.path.lstrip("./") + (f"?{location.query}" if location.query else "")
        r = _http(t, "GET", path, cookie=cookie)
    if r.status_code == 401 and re.search(r'<input[^>]*name="password"', r.text):
        return False
    if r.status_code == 200 and "workbench" in r.text:
        return True
    raise CheckFailed(
        f"GET {t.origin}/ gave neither the login page nor the workbench: HTTP {r.status_code} {r.text[:200]!r}"
    )
