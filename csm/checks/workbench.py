"""A user's workbench, checked from outside through the proxy as a browser: health,
the login page, the password login and its session cookie, and the workbench's
WebSocket speaking VS Code's protocol (and refusing what it must).

    ada = http.Target("http://ada.code.localhost:8080", password)
    print(websocket_speaks_vscode_protocol(ada))

Login budget: only `wrong_password_gives_no_session` spends one of the gate's
wrong passwords (csm.checks.http says how logins are counted).
"""

from __future__ import annotations

import json
import re
import secrets
import struct
import uuid

import websocket

from csm.checks import CheckFailed
from csm.checks.facts import gate_path, health_path
from csm.checks.http import (
    Target,
    _has_session,
    _http,
    _login,
    _login_answer,
    _session_cookie,
    _ws,
    _ws_refusal,
)

FOREIGN_ORIGIN = "https://attacker.invalid"

# VS Code's PersistentProtocol: every message is a 13-byte header (type, id, ack,
# data length; big-endian) and its data. Control messages (type 2) carry the
# handshake: the client's {"type":"auth"} and the server's {"type":"sign"}.
VSCODE_HEADER = struct.Struct(">BIII")
VSCODE_CONTROL = 2


def _vscode_path() -> str:
    # The workbench's own query; any path works.
    return f"/?reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false"


def _vscode_handshake(ws: websocket.WebSocket) -> dict:
    """Sends VS Code's auth message; returns the server's first control message."""
    auth = json.dumps({"type": "auth", "auth": "0" * 20, "data": secrets.token_hex(16)}).encode()
    ws.send_binary(VSCODE_HEADER.pack(VSCODE_CONTROL, 0, 0, len(auth)) + auth)
    buffer = b""
    seen: list[str] = []
    while True:
        try:
            opcode, data = ws.recv_data()
        except (websocket.WebSocketException, OSError) as e:
            raise CheckFailed(f"no control message back after the auth frame ({e}); saw {seen or 'nothing'}") from e
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise CheckFailed(f"the server closed the WebSocket after the auth frame; saw {seen or 'nothing'}")
        buffer += data
        while len(buffer) >= VSCODE_HEADER.size:
            kind, _id, _ack, length = VSCODE_HEADER.unpack_from(buffer)
            end = VSCODE_HEADER.size + length
            if len(buffer) < end:
                break
            body, buffer = buffer[VSCODE_HEADER.size : end], buffer[end:]
            seen.append(f"type {kind}, {length} bytes")
            if kind == VSCODE_CONTROL:
                try:
                    return json.loads(body)
                except ValueError as e:
                    raise CheckFailed(f"control message is not JSON: {body[:200]!r}") from e


def healthz_answers(t: Target) -> str:
    """code-server's health path answers, behind the gate: only with a session."""
    r = _http(t, "GET", health_path(), cookie=t.session())
    try:
        status = r.json().get("status")
    except ValueError:
        status = None
    if r.status_code != 200 or status not in ("alive", "expired"):
        raise CheckFailed(f"{health_path()} answered HTTP {r.status_code} {r.text[:200]!r}")
    return f"{health_path()} answered {status!r}"


def login_page_served(t: Target) -> str:
    """The gate's login page, with a labelled password field and the user's name; and
    in place of any page asked for without a session (HTTP 401), code-server's health
    path included."""
    r = _http(t, "GET", gate_path("login"))
    if r.status_code != 200 or not re.search(r'<input[^>]*name="password"', r.text):
        raise CheckFailed(
            f"{gate_path('login')} answered HTTP {r.status_code} without a password field: {r.text[:200]!r}"
        )
    if '<label for="password">' not in r.text or t.name not in r.text:
        raise CheckFailed(f"the login page has no label for its password field or does not name {t.name}")
    for path in ("/", health_path(), "/static/x.js"):
        wall = _http(t, "GET", path)
        if wall.status_code != 401 or 'name="password"' not in wall.text:
            raise CheckFailed(
                f"GET {path} without a session answered HTTP {wall.status_code}, not the login page "
                f"with 401: {wall.text[:200]!r}"
            )
    return (
        f"{gate_path('login')} serves a labelled password form naming {t.name}; "
        "without a session every path gets it (401)"
    )


def wrong_password_gives_no_session(t: Target) -> str:
    """Spends one of code-server's two wrong passwords a minute."""
    r, cookie = _login(t, "wrong-" + secrets.token_urlsafe(12))
    if cookie is not None or r.status_code in (301, 302, 303):
        raise CheckFailed(f"a wrong password was let in: HTTP {r.status_code}, cookie {cookie is not None}")
    answer = _login_answer(r)
    if r.status_code != 401 or r.headers.get("X-CSM-Login") != "wrong" or 'name="password"' not in r.text:
        raise CheckFailed(f"a wrong password was not answered 401 with the form again: {answer}")
    return f"a wrong password gets {answer} and no cookie"


def right_password_gives_session(t: Target) -> str:
    """Logs in (right passwords cost no budget) and keeps the cookie on t."""
    cookie = _session_cookie(t, "the right password")
    if cookie["domain"]:
        raise CheckFailed(
            f"the session cookie is sent to every host under {cookie['domain']!r}: "
            f"other users' subdomains would receive it"
        )
    if not cookie["httponly"] or cookie["path"] != "/" or (t.scheme == "https") != bool(cookie["secure"]):
        raise CheckFailed(
            f"the session cookie is not HttpOnly, Path=/ and Secure exactly over https: {cookie.output()}"
        )
    t._cookie = cookie.value
    if not _has_session(t, cookie.value):
        raise CheckFailed("the session cookie from the login does not open the workbench")
    if _has_session(t, None):
        raise CheckFailed("the workbench opens without any cookie")
    return (
        "the right password gets a host-only HttpOnly session cookie that opens the workbench; no cookie, no workbench"
    )


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
        raise CheckFailed(
            f"a WebSocket with Origin {FOREIGN_ORIGIN} and a valid session "
            f"got {'upgraded' if status is None else f'HTTP {status}'}, not 403"
        )
    return f"a WebSocket from Origin {FOREIGN_ORIGIN} is refused with 403 despite a valid session"


def websocket_without_session_refused(t: Target) -> str:
    status = _ws_refusal(t, _vscode_path())
    if status != 401:
        raise CheckFailed(
            f"a WebSocket without a session got {'upgraded' if status is None else f'HTTP {status}'}, not 401"
        )
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
        raise CheckFailed(
            f"{t.name}'s session cookie on a WebSocket to {other.netloc} got "
            f"{'upgraded' if status is None else f'HTTP {status}'}, not 401"
        )
    return f"{t.name}'s session cookie gets the login page and a 401 WebSocket at {other.netloc}"
