"""The gate's HTTP side: what nginx asks (auth_request) and what it forwards under the
plan's gate.paths. It listens on a Unix socket that only nginx's group can reach, so
the plan's gate.userHeader (X-CSM-User, fixed per server block), X-Real-IP and X-Forwarded-Proto are nginx's.

    /_csm/auth    204 with a valid session for this host's user, else 401
    /_csm/login   GET: the login page (401 when shown in place of another page);
                  POST: check the password, set the session, 303 to where they were going
    /_csm/logout  GET: a page with a button; POST: end this session
    /_csm/wake    a logged-in request met a stopped container: start it, show "starting"
    /_csm/ready   the starting page's question, held until code-server answers
    /_csm/health  the gate itself answers

Every answer about a login carries X-CSM-Login (ok, wrong, limited, busy, refused) for
scripts; people get a page that says what happened and what to do.
"""

from __future__ import annotations

import html
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler

from .control import BoundedTCPServer, BoundedUnixServer
from .core import Gate, Refused

log = logging.getLogger("csm.gate")
MAX_BODY = 4096  # a login form is a password and a path
CONNECTIONS = 512  # answered at once (nginx keeps a few alive per worker)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with nginx's upstream pool
    server_version = "csm-gate"
    sys_version = ""
    timeout = 60
    gate: Gate
    # Traefik's forwardAuth hands the auth answer to the browser as it is (nginx shows
    # its own error_page): in a cluster a 401 carries the login page itself.
    forward_auth = False

    # ---- what nginx tells us ----------------------------------------------------
    @property
    def user(self) -> str:
        return self.headers.get(self.gate.plan.gate.userHeader, "")

    @property
    def https(self) -> bool:
        return self.headers.get("X-Forwarded-Proto") == "https"

    @property
    def client(self) -> str:
        return self.headers.get("X-Real-IP", "")

    def _original_uri(self) -> str | None:
        """The address the person asked for: nginx's auth_request names it X-Original-URI,
        Traefik's forwardAuth X-Forwarded-Uri."""
        return self.headers.get("X-Original-URI") or self.headers.get("X-Forwarded-Uri")

    def _cookies(self) -> list[str]:
        """Every value of the session cookie: another site of the parent domain can set
        one of that name over plain http; it must not hide the real one."""
        name = self.gate.cookie_name(self.https)
        return [
            value
            for part in self.headers.get_all("Cookie", [])
            for item in part.split(";")
            for key, _, value in [item.strip().partition("=")]
            if key == name and value
        ][:4]

    def _cookie(self) -> str | None:
        """The valid session among them, if any."""
        return next((c for c in self._cookies() if self.gate.session_valid(c, self.user)), None)

    def _logged_in(self) -> bool:
        return self._cookie() is not None

    # ---- answers ----------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict | None = None,
        content_type: str = "text/html; charset=utf-8",
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _page(self, status: int, name: str, headers: dict | None = None, **fields: str) -> None:
        self._send(status, self.gate.page(self.user, name, **fields).encode(), headers)

    def _login_page(self, status: int, next_path: str, error: str = "", headers: dict | None = None) -> None:
        self._page(
            status,
            "login",
            headers,
            NEXT=next_path,
            ERROR=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        )

    # ---- routing ----------------------------------------------------------------------
    def _route(self) -> None:
        path, _, query = self.path.partition("?")
        paths = self.gate.paths
        if path == paths.health:
            self._send(200, b"ok\n", content_type="text/plain")
            return
        if self.forward_auth and not self.user:
            # The cluster's catch-all route (a name no one is served on): the landing page,
            # as nginx's default server gives it on a host.
            self._send(404, self.gate.plan.nginx["defaultServer"]["landingHtml"].encode())
            return
        if self.user not in self.gate.users:
            self._send(404, b"no such user\n", content_type="text/plain")
            return
        if path == paths.auth:
            if self._logged_in():
                self._send(204)
            elif self.forward_auth:
                self._login_page(401, self.gate.safe_next(self._original_uri()))
            else:
                self._send(401)
        elif path == paths.login:
            self._login(query)
        elif path == paths.logout:
            self._logout()
        elif path == paths.wake:
            self._wake()
        elif path == paths.ready:
            self._ready()
        else:
            self._send(404, b"not found\n", content_type="text/plain")

    def do_GET(self) -> None:
        self.body = self._read_body()
        if self.body is not None:
            self._route()

    do_HEAD = do_POST = do_GET

    def _read_body(self) -> bytes | None:
        """Whatever the path, the whole body is read before answering: nginx keeps the
        connection for its next request, which must not start in this one's body."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(413, b"a login form is small\n", {"Connection": "close"}, content_type="text/plain")
            return None
        return self.rfile.read(length) if length else b""

    # ---- login and logout ---------------------------------------------------------------
    def _login(self, query: str) -> None:
        wall = query == "wall"  # shown by nginx in place of a page that needs a session
        next_path = self.gate.safe_next(
            self._original_uri() if wall else dict(urllib.parse.parse_qsl(query)).get("next")
        )
        if self.command != "POST" or wall:  # a form posted anywhere but the login path checks nothing
            if not wall and self._logged_in():
                self._send(303, headers={"Location": next_path})
            else:
                self._login_page(401 if wall else 200, next_path)
            return
        form = self._form()
        next_path = self.gate.safe_next(form.get("next"))
        if not form.get("password"):  # nothing to check, nothing to count
            self._login_page(401, next_path, "Type your password, then press Log in.", {"X-CSM-Login": "empty"})
            return
        try:
            cookie = self.gate.log_in(
                self.user,
                form.get("password", ""),
                self.client,
                self.https,
                self.headers.get("Origin"),
                self.headers.get("Sec-Fetch-Site"),
            )
        except Refused as r:
            headers = {"X-CSM-Login": r.kind}
            if r.retry_after:
                headers["Retry-After"] = str(r.retry_after)
            self._login_page(r.status, next_path, r.message, headers)
            return
        if cookie is None:
            self._login_page(
                401, next_path, "That password is not right. Check it and try again.", {"X-CSM-Login": "wrong"}
            )
            return
        self._send(
            303,
            headers={
                "Location": next_path,
                "X-CSM-Login": "ok",
                "Set-Cookie": self.gate.cookie_header(cookie, self.https),
            },
        )

    def _logout(self) -> None:
        if self.command != "POST":
            self._page(200, "logout")
            return
        if self.gate.foreign(self.user, self.https, self.headers.get("Origin"), self.headers.get("Sec-Fetch-Site")):
            self._send(403, b"a logout from another site is refused\n", content_type="text/plain")
            return
        cookie = self._cookie()
        if cookie:
            self.gate.log_out(cookie)
        self._send(
            303,
            headers={
                "Location": self.gate.paths.login,
                "Set-Cookie": self.gate.cookie_header("", self.https, expire=True),
            },
        )

    def _form(self) -> dict:
        return dict(urllib.parse.parse_qsl((self.body or b"").decode("utf-8", "replace"), keep_blank_values=True))

    # ---- wake -----------------------------------------------------------------------------
    def _wake(self) -> None:
        if not self._logged_in():  # strangers start nothing
            self._login_page(401, self.gate.safe_next(self._original_uri()))
            return
        self._state_page(self.gate.ask("start", self.user))

    def _ready(self) -> None:
        if not self._logged_in():
            self._send(401, headers={"X-CSM-Wake": "login"})
            return
        state = self.gate.wait_ready(self.user, self.client)
        if state["state"] == "ready":
            self._send(200, b"ready\n", {"X-CSM-Wake": "ready"}, content_type="text/plain")
        else:
            self._state_page(state)

    def _state_page(self, state: dict) -> None:
        page = {"ready": "starting", "idle": "starting"}.get(state["state"], state["state"])
        headers = {"X-CSM-Wake": state["state"] if state["state"] != "idle" else "starting"}
        if state.get("retryAfter"):
            headers["Retry-After"] = str(state["retryAfter"])
        self._page(503, page, headers)

    def log_message(self, fmt, *args) -> None:  # logins are logged by core; requests are nginx's to log
        pass


def _handler(gate: Gate, forward_auth: bool) -> type[Handler]:
    return type("GateHandler", (Handler,), {"gate": gate, "forward_auth": forward_auth})


class Server(BoundedUnixServer):
    """On a host: nginx's, on the plan's Unix socket."""

    def __init__(self, socket_path: str, gate: Gate):
        super().__init__(socket_path, _handler(gate, False), CONNECTIONS)


class TCPServer(BoundedTCPServer):
    """In a cluster: Traefik's, on the port kube.json names."""

    def __init__(self, port: int, gate: Gate, host: str = "0.0.0.0"):
        super().__init__((host, port), _handler(gate, True), CONNECTIONS)
