"""The gate's cost per request: a static workbench asset and a WebSocket round trip,
through nginx and the gate against code-server's own socket (csm/bench/gate.py runs them)."""

from __future__ import annotations

import html
import http.client
import re
import socket
import time

import websocket

from csm.bench.code_server import socket_get
from csm.bench.common import (
    percentile,
    verdict,
)
from csm.checks import facts as checks_facts
from csm.checks import http as checks_http
from csm.idle.signals import UnixConnection
from csm.testing.stacks import ThrowawayStack

GOALS = {
    "workbench_ratio": 1.10,
    "asset_added_p50_ms": 1.0,
    "websocket_ratio": 1.3,
    "gate_rss_mib": 60,
    "flood_login_p95_s": 1.0,
    "flood_websocket_ratio": 1.5,
}
ASSET = re.compile(r'(?:src|href)="\.?/?(stable-[0-9a-f]+/static/[^"]+)"')
WEBVIEW = re.compile(r'"webviewEndpoint":"\.?/?(stable-[0-9a-f]+/static/[^"]+)"')


def ms(xs: list[float], p: float) -> float:
    return percentile(xs, p) * 1000


def session(stack: ThrowawayStack, user: str, source: str) -> str:
    """A new session's cookie value: the gate's login from a loopback address of its own."""
    return checks_http.Target(stack.url(user), stack.password(user), source_address=source).session()


# ---- a static asset, per request ------------------------------------------------------------


def workbench_assets(sock: str) -> dict[str, tuple[str, int]]:
    """Two static files under /stable-<commit>/static/ that the workbench page leads to,
    (path, bytes): the smallest it loads by src/href (about 1 MB: every one of them is a
    bundle), and the webview endpoint's service worker (9 KB), named in the page's settings,
    for the cost per request rather than per byte."""
    _, headers, _ = socket_get(sock, "/")
    page = html.unescape(socket_get(sock, "/" + headers.get("Location", "").lstrip("./"))[2].decode())
    sizes = {}
    for path in set(ASSET.findall(page)) | {f"{p}/service-worker.js" for p in WEBVIEW.findall(page)}:
        status, _, body = socket_get(sock, "/" + path)
        if status == 200 and body:
            sizes["/" + path] = len(body)
    loaded = {p: n for p, n in sizes.items() if not p.endswith("/service-worker.js")}
    if not loaded or len(sizes) == len(loaded):
        raise RuntimeError(f"the workbench page on {sock} leads to no static asset: {sizes}")
    small = min(sizes, key=sizes.get)
    page_asset = min(loaded, key=loaded.get)
    return {"small": (small, sizes[small]), "page": (page_asset, sizes[page_asset])}


def timed_gets(conn: http.client.HTTPConnection, path: str, headers: dict, count: int) -> list[float]:
    """`count` GETs of `path` on one keep-alive connection, each timed to its last byte."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        out.append(time.perf_counter() - start)
        if r.status != 200:
            raise RuntimeError(f"GET {path} answered {r.status}")
    return out


def asset_latency(stack: ThrowawayStack, user: str, cookie: str, asset: tuple[str, int], count: int) -> dict:
    """The same static asset through nginx (+ auth_request to the gate) and on the socket,
    in interleaved batches on keep-alive connections."""
    sock = stack.plan.users[user].socket
    path, size = asset
    front_headers = {
        "Host": f"{stack.plan.users[user].hostname}:{stack.http_port}",
        "Cookie": f"{checks_facts.cookie_names()['http']}={cookie}",
    }
    front, direct = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=10), UnixConnection(sock)
    via, straight = [], []
    try:
        for _ in range(10):
            via += timed_gets(front, path, front_headers, count // 10)
            straight += timed_gets(direct, path, {}, count // 10)
    finally:
        front.close()
        direct.close()
    added = ms(via, 50) - ms(straight, 50)
    return {
        "asset": path,
        "bytes": size,
        "requests": len(via),
        "via_gate_ms": {"p50": ms(via, 50), "p99": ms(via, 99)},
        "direct_ms": {"p50": ms(straight, 50), "p99": ms(straight, 99)},
        "added_ms": {"p50": verdict(added, GOALS["asset_added_p50_ms"]), "p99": ms(via, 99) - ms(straight, 99)},
    }


# ---- WebSocket round trip ----------------------------------------------------------------------


def front_websocket(stack: ThrowawayStack, user: str, cookie: str) -> websocket.WebSocket:
    """code-server's /healthz WebSocket (it answers every message) through nginx, with a session."""
    host = f"{stack.plan.users[user].hostname}:{stack.http_port}"
    return websocket.create_connection(
        f"ws://{host}{checks_facts.health_path()}",
        timeout=10,
        origin=f"http://{host}",
        cookie=f"{checks_facts.cookie_names()['http']}={cookie}",
        socket=socket.create_connection(("127.0.0.1", stack.http_port)),
    )


def socket_websocket(stack: ThrowawayStack, user: str) -> websocket.WebSocket:
    """The same WebSocket on code-server's own socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(stack.plan.users[user].socket)
    return websocket.create_connection(
        f"ws://localhost{checks_facts.health_path()}", timeout=10, origin="http://localhost", socket=sock
    )


def round_trips(ws: websocket.WebSocket, count: int, pause: float = 0.0) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        ws.send('{"event":"health"}')
        ws.recv()
        out.append(time.perf_counter() - start)
        if pause:
            time.sleep(pause)
    return out


def websocket_latency(stack: ThrowawayStack, user: str, cookie: str, count: int) -> dict:
    via, direct = [], []
    front, straight = front_websocket(stack, user, cookie), socket_websocket(stack, user)
    try:
        for _ in range(5):  # interleaved batches, so both see the same noise
            via += round_trips(front, count // 5)
            direct += round_trips(straight, count // 5)
    finally:
        front.close()
        straight.close()
    return {
        "via_gate_ms": {"p50": ms(via, 50), "p99": ms(via, 99)},
        "direct_ms": {"p50": ms(direct, 50), "p99": ms(direct, 99)},
        "ratio_p50": verdict(ms(via, 50) / ms(direct, 50), GOALS["websocket_ratio"]),
        "round_trips": len(via),
    }
