"""Fixtures shared by every test directory.

live_stack (session): the portable stack, live, with two users `ada` and `bo` on
domain `code.localhost`, behind nginx on a free port. Its attributes:

    .plan .stack (csm.runner.stack.Stack) .http_port .users (names) .state_dir
    .url(user)       -> "http://<user>.code.localhost:<port>"
    .password(user)  -> the plaintext password (generated for this session)
    .workspace(user) -> host path of the user's workspace (~/project inside)
    .home(user)      -> host path of the user's home (config) directory
    .settings        -> the settings dict the plan was made from

It fails (never skips) when the image is missing: run `make image`.

web_client (session): a small browser-less client for the runner's own tests: log
in through nginx, fetch the workbench, open VS Code's WebSocket. It connects to
127.0.0.1 (Python does not resolve *.localhost) and sends the real Host/Origin.

stack_kit (session): the helpers the fixtures use (free_port, fresh_base_dir,
stack_settings, write_password, require_image, gixy_issues), for tests that run their own stack.

live_stack_factory (session): more stacks, e.g. with extra settings. Use user
names no other live stack of the session uses (container names are global), and
stop the stack when your tests are done with it:

    @pytest.fixture(scope="module")
    def fake_ai_stack(live_stack_factory):
        stack = live_stack_factory(users=["cy"], extra_settings={
            "opencode": {"provider": {...}, "model": "fake/fake-model"},
            "users": {"cy": {"environmentFiles": ["/path/to/keys.env"]}},
        }, tls=False)
        yield stack
        stack.close()

extra_settings is merged into the base settings (dicts merge key by key, anything
else replaces). tls=True also serves HTTPS on .tls_port with a local CA
(.ca_file; .url() then gives the https address). Stacks still running at the end
of the session are stopped there; their directories (under /var/tmp, because the
containers' mapped users cannot traverse /tmp/pytest-of-root) are deleted.
"""
from __future__ import annotations

import json
import random
import secrets
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import types
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import websocket

from csm import plan as planlib
from csm.runner import passwd
from csm.runner.stack import Stack, port_free

IMAGE = "localhost/code-server-multi:latest"
DOMAIN = "code.localhost"


def free_port(address: str = "0.0.0.0") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def require_image(image: str = IMAGE) -> None:
    if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
        pytest.fail(f"the image {image} is missing; build it with `make image` (live tests never skip)")


def stack_settings(base: Path, users: list[str], extra: dict | None = None, avoid: set[int] = frozenset()) -> dict:
    """Settings for a test stack below `base`, with a basePort whose user ports are free."""
    settings = merge({
        "domain": DOMAIN,
        "workspaceBase": str(base / "workspaces"),
        "runtimeDir": str(base / "run"),
        "users": {u: {"hashedPasswordFile": str(base / "secrets" / f"{u}.hash")} for u in users},
    }, extra or {})
    for _ in range(30):
        settings["basePort"] = random.randrange(30000, 64000)
        plan = planlib.from_settings(settings)
        ports = [u["port"] for u in plan["users"].values()]
        if not set(ports) & set(avoid) and all(port_free("127.0.0.1", p) for p in ports):
            return settings
    raise RuntimeError("found no basePort whose user ports are free")


def write_password(settings: dict, user: str) -> str:
    """A new random password for `user`, hashed into its hashedPasswordFile."""
    password = secrets.token_urlsafe(12)
    passwd.write_hash_file(settings["users"][user]["hashedPasswordFile"], passwd.hash_password(password))
    return password


def gixy_issues(conf: Path) -> list:
    """What gixy (as NixOS runs it on every nginx config) finds in a config."""
    gixy = Path(sys.executable).with_name("gixy")
    proc = subprocess.run([str(gixy), "-f", "json", str(conf)], capture_output=True, text=True)
    issues = json.loads(proc.stdout or "null")
    assert isinstance(issues, list), f"gixy failed: {proc.stderr}"
    return issues


def fresh_base_dir(prefix: str = "csm-test-") -> Path:
    """A fresh directory in /var/tmp that the containers' mapped root can traverse."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o711)
    return base


class LiveStack:
    def __init__(self, users: list[str], extra_settings: dict | None = None, tls: bool = False):
        self.users = list(users)
        self.base = fresh_base_dir()
        self.state_dir = self.base / "state"
        self.http_port = free_port()
        self.tls_port = free_port() if tls else None
        self.settings = stack_settings(self.base, self.users, extra_settings,
                                       avoid={self.http_port, self.tls_port})
        self._passwords = {u: write_password(self.settings, u) for u in self.users}
        self.plan = planlib.from_settings(self.settings)
        self.stack = Stack(self.plan, self.state_dir, self.http_port, self.tls_port)
        self.ca_file = self.state_dir / "tls" / "ca.crt" if tls else None
        try:
            self.stack.up()
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def url(self, user: str) -> str:
        return self.stack.url(user)

    def password(self, user: str) -> str:
        return self._passwords[user]

    def user_dir(self, user: str) -> Path:
        return Path(self.plan["workspaceBase"]) / user

    def workspace(self, user: str) -> Path:
        return self.user_dir(user) / "workspace"

    def home(self, user: str) -> Path:
        return self.user_dir(user) / "config"

    def close(self) -> None:
        if self.base.exists():
            try:
                self.stack.down()
            finally:
                shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def live_stack_factory():
    started: list[LiveStack] = []
    names: set[str] = set()

    def start(users: list[str], extra_settings: dict | None = None, tls: bool = False) -> LiveStack:
        require_image()
        clash = names & set(users)
        if clash:
            raise ValueError(f"users {sorted(clash)} already belong to a live stack of this session; pick other names")
        stack = LiveStack(users, extra_settings, tls)
        names.update(users)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.close()


@pytest.fixture(scope="session")
def live_stack(live_stack_factory) -> LiveStack:
    return live_stack_factory(["ada", "bo"])


# ---- a browser-less client --------------------------------------------------------

SESSION_COOKIE = "code-server-session"
VSCODE_HEADER = struct.Struct(">BIII")  # VS Code's PersistentProtocol: type, id, ack, length
VSCODE_CONTROL = 2


class _Loopback(requests.adapters.HTTPAdapter):
    """Connects to 127.0.0.x whatever the URL's name; TLS still checks that name."""

    def __init__(self, hostname: str, tls: bool, source: str | None):
        self.extra = {"server_hostname": hostname, "assert_hostname": hostname} if tls else {}
        if source:
            self.extra["source_address"] = (source, 0)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs, **self.extra)


class WebClient:
    def __init__(self, ca_file: str | Path | None = None, source: str | None = None):
        self.ca_file, self.source = ca_file, source

    def request(self, method: str, url: str, path: str = "/", cookie: str | None = None, **kwargs):
        u = urlsplit(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        headers = {"Host": u.netloc, **kwargs.pop("headers", {})}
        if cookie:
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
        with requests.Session() as s:
            s.trust_env = False
            s.mount(f"{u.scheme}://", _Loopback(u.hostname, u.scheme == "https", self.source))
            return s.request(method, f"{u.scheme}://127.0.0.1:{port}{path}", headers=headers, timeout=30,
                             allow_redirects=False, verify=str(self.ca_file) if self.ca_file else True, **kwargs)

    def login(self, url: str, password: str) -> str:
        """The session cookie after logging in with the right password."""
        r = self.request("POST", url, "/login", data={"password": password})
        assert r.status_code == 302, f"login at {url} answered {r.status_code}: {r.text[:300]}"
        assert SESSION_COOKIE in r.cookies, f"login at {url} set no session cookie"
        return r.cookies[SESSION_COOKIE]

    def workbench(self, url: str, cookie: str) -> str:
        """The workbench page, following code-server's redirect to the folder it opens."""
        path = "/"
        for _ in range(3):
            r = self.request("GET", url, path, cookie=cookie)
            if r.status_code not in (301, 302, 303, 307, 308):
                break
            location = urlsplit(r.headers["Location"])
            assert location.netloc in ("", urlsplit(url).netloc), f"redirected away to {r.headers['Location']}"
            path = "/" + (location.path or "").lstrip("./") + (f"?{location.query}" if location.query else "")
        assert r.status_code == 200, f"GET {url}{path} answered {r.status_code}"
        return r.text

    def websocket(self, url: str, cookie: str, path: str | None = None) -> websocket.WebSocket:
        u = urlsplit(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                        source_address=(self.source, 0) if self.source else None)
        if u.scheme == "https":
            sock = ssl.create_default_context(cafile=self.ca_file).wrap_socket(sock, server_hostname=u.hostname)
        path = path or f"/?reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false"
        return websocket.create_connection(f"{'wss' if u.scheme == 'https' else 'ws'}://{u.netloc}{path}",
                                           socket=sock, timeout=30, origin=f"{u.scheme}://{u.netloc}",
                                           cookie=f"{SESSION_COOKIE}={cookie}")

    def vscode_handshake(self, url: str, cookie: str) -> dict:
        """Open the workbench's WebSocket, send VS Code's auth control message and
        return the server's first control message ({"type": "sign", ...})."""
        ws = self.websocket(url, cookie)
        try:
            auth = json.dumps({"type": "auth", "auth": "0" * 20, "data": secrets.token_hex(16)}).encode()
            ws.send_binary(VSCODE_HEADER.pack(VSCODE_CONTROL, 0, 0, len(auth)) + auth)
            buffer = b""
            while True:
                opcode, data = ws.recv_data()
                assert opcode != websocket.ABNF.OPCODE_CLOSE, "the server closed the WebSocket after the auth frame"
                buffer += data
                while len(buffer) >= VSCODE_HEADER.size:
                    kind, _, _, length = VSCODE_HEADER.unpack_from(buffer)
                    if len(buffer) < VSCODE_HEADER.size + length:
                        break
                    body = buffer[VSCODE_HEADER.size:VSCODE_HEADER.size + length]
                    buffer = buffer[VSCODE_HEADER.size + length:]
                    if kind == VSCODE_CONTROL:
                        return json.loads(body)
        finally:
            ws.close()


@pytest.fixture(scope="session")
def web_client() -> WebClient:
    return WebClient()


@pytest.fixture(scope="session")
def stack_kit():
    return types.SimpleNamespace(free_port=free_port, fresh_base_dir=fresh_base_dir, stack_settings=stack_settings,
                                 write_password=write_password, require_image=require_image, WebClient=WebClient,
                                 gixy_issues=gixy_issues,
                                 merge=merge)
