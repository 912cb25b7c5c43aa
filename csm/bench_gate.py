"""The gate in front of every workspace, in figures, each beside its baseline in the
same run (part of `make bench`):

    python -m csm.bench_gate [--rounds N] [--requests N] [--flood-rate R] [--flood-seconds S] [--json FILE]

- login -> rendered workbench in Chromium through nginx and the gate, against the
  workbench straight from code-server's socket (through a TCP forwarder);
- a static workbench asset through nginx + auth_request against the socket: p50, p99;
- WebSocket round trip through the front against the socket;
- the gate's RSS with 5 users and 100 live sessions;
- a flood of unauthenticated requests from 10 addresses: the owner's login time and
  another logged-in user's WebSocket round trip, against the same before the flood.

"Direct" is code-server's Unix socket (--auth none), which root may open. Every figure
is printed with its goal. Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import html
import http.client
import multiprocessing
import re
import socket
import sys
import threading
import time
from pathlib import Path

import websocket

from csm.bench import (
    UnixForwarder,
    UnixHTTPConnection,
    goal_text,
    log_in_until_rendered,
    median,
    percentile,
    say,
    socket_get,
    verdict,
    write_json,
)
from csm.checks import http as checks_http
from csm.testing import browser as chromium
from csm.testing.stacks import ThrowawayStack, require_image

USERS = ["bng1", "bng2", "bng3", "bng4", "bng5"]
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


# ---- login to a rendered workbench ------------------------------------------------------


def workbench_times(stack: ThrowawayStack, user: str, rounds: int) -> dict:
    """Seconds from opening the address to a rendered workbench: through nginx with the
    gate's login (a fresh browser context each time), and code-server's socket directly
    (no login: --auth none). Rounds alternate."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"via_gate": [], "direct": []}
    with UnixForwarder(stack.plan.users[user].socket) as fwd, sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            for i in range(rounds):
                for key, (url, password) in {
                    "via_gate": (stack.url(user), stack.password(user)),
                    "direct": (fwd.url, None),
                }.items():
                    context = browser.new_context(viewport=chromium.VIEWPORT)
                    start = time.monotonic()
                    log_in_until_rendered(context.new_page(), url, password)
                    times[key].append(time.monotonic() - start)
                    context.close()
                    say(f"workbench in Chromium, round {i + 1}/{rounds}: {key} {times[key][-1]:.2f} s")
        finally:
            browser.close()
    via, direct = median(times["via_gate"]), median(times["direct"])
    return {
        "via_gate_s": via,
        "direct_s": direct,
        "ratio": verdict(via / direct, GOALS["workbench_ratio"]),
        "rounds": times,
    }


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
        "Cookie": f"{checks_http.GATE['cookie']['http']}={cookie}",
    }
    front, direct = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=10), UnixHTTPConnection(sock)
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
        f"ws://{host}{checks_http.health_path()}",
        timeout=10,
        origin=f"http://{host}",
        cookie=f"{checks_http.GATE['cookie']['http']}={cookie}",
        socket=socket.create_connection(("127.0.0.1", stack.http_port)),
    )


def socket_websocket(stack: ThrowawayStack, user: str) -> websocket.WebSocket:
    """The same WebSocket on code-server's own socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(stack.plan.users[user].socket)
    return websocket.create_connection(
        f"ws://localhost{checks_http.health_path()}", timeout=10, origin="http://localhost", socket=sock
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


# ---- the gate's memory -------------------------------------------------------------------------


def gate_memory_mib(state_dir: Path) -> dict:
    """The gate's VmRSS and VmHWM (its peak), from /proc; its pid is in <state>/gate.pid."""
    pid = (state_dir / "gate.pid").read_text().split()[0]
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def gate_with_sessions(stack: ThrowawayStack, users: list[str], sessions: int) -> dict:
    """The gate's RSS before and after `sessions` logins, spread over the users and ten
    loopback addresses (nginx allows 30 login POSTs a minute per address)."""
    before = gate_memory_mib(stack.state_dir)
    times = []
    for i in range(sessions):
        start = time.monotonic()
        session(stack, users[i % len(users)], f"127.0.0.{10 + i % 10}")
        times.append(time.monotonic() - start)
    after = gate_memory_mib(stack.state_dir)
    return {
        "users": len(users),
        "sessions": sessions,
        "rss_before_mib": before["VmRSS"],
        "rss_mib": verdict(after["VmRSS"], GOALS["gate_rss_mib"]),
        "peak_rss_mib": after["VmHWM"],
        "login_s": {"p50": percentile(times, 50), "p95": percentile(times, 95)},
    }


# ---- a flood ----------------------------------------------------------------------------------------


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 answer read to its end: (status, whether the server closes)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(None, 2)[1])
    length = re.search(r"\r\ncontent-length: *(\d+)", head)
    if length:
        await reader.readexactly(int(length.group(1)))
    elif "transfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status, "\r\nconnection: close" in head


async def _flood_connection(port: int, host: str, source: str, interval: float, deadline: float, tally) -> None:
    """GET / without a session on one keep-alive connection, one every `interval` s at most."""
    loop = asyncio.get_running_loop()
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: csm-bench-flood\r\n\r\n".encode()
    due, writer = loop.time(), None
    while loop.time() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(request)
            status, closes = await _read_answer(reader)
            tally[status] += 1
            if closes:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            tally["error"] += 1
            writer = None
            await asyncio.sleep(0.05)
        due = max(due + interval, loop.time() - interval)  # falling behind does not burst later
        await asyncio.sleep(max(0.0, due - loop.time()))
    if writer:
        writer.close()


def _flood_process(
    pipe, port: int, host: str, sources: list[str], rate: float, seconds: float, per_source: int
) -> None:
    async def flood() -> dict:
        tally: collections.Counter = collections.Counter()
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline, connections = start + seconds, len(sources) * per_source
        await asyncio.gather(
            *(
                _flood_connection(port, host, s, connections / rate, deadline, tally)
                for s in sources
                for _ in range(per_source)
            )
        )
        return {"answers": dict(tally), "seconds": loop.time() - start}

    pipe.send(asyncio.run(flood()))


def owner_logins(stack: ThrowawayStack, owner: str, until: float, out: list[float]) -> None:
    """The owner logs in every 3 s from an address of their own; a refused login counts as
    infinitely slow."""
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            session(stack, owner, "127.0.0.200")
            out.append(time.monotonic() - start)
        except Exception as e:  # noqa: BLE001 - a refused login is a figure, not a crash
            out.append(float("inf"))
            say(f"the owner's login failed: {e}")
        time.sleep(max(0.0, start + 3 - time.monotonic()))


def logins_and_round_trips(stack: ThrowawayStack, owner: str, ws, seconds: float) -> tuple[list, list]:
    """The owner's login times and another user's round trips (one every 10 ms), for `seconds`."""
    until, times, rtts = time.monotonic() + seconds, [], []
    thread = threading.Thread(target=owner_logins, args=(stack, owner, until, times))
    thread.start()
    while time.monotonic() < until:
        rtts += round_trips(ws, 10, pause=0.01)
    thread.join()
    return times, rtts


def flood(stack: ThrowawayStack, owner: str, other: str, rate: float, seconds: float) -> dict:
    """`rate` GETs a second without a session to the owner's address from 10 loopback
    addresses, sent by another process (its work must not hold up the measuring
    thread's clock readings); meanwhile the owner's logins and another user's WebSocket,
    against the same for 15 s before the flood."""
    ws = front_websocket(stack, other, session(stack, other, "127.0.0.201"))
    fork = multiprocessing.get_context("fork")
    try:
        say("flood: the owner's logins and another user's WebSocket for 15 s before it")
        logins_before, rtt_before = logins_and_round_trips(stack, owner, ws, 15)
        say(f"flood: {rate:.0f} requests/s without a session from 10 addresses for {seconds:.0f} s")
        here, there = fork.Pipe()
        host = f"{stack.plan.users[owner].hostname}:{stack.http_port}"
        proc = fork.Process(
            target=_flood_process,
            args=(there, stack.http_port, host, [f"127.0.0.{101 + i}" for i in range(10)], rate, seconds, 4),
        )
        proc.start()
        logins_during, rtt_during = logins_and_round_trips(stack, owner, ws, seconds)
        tally = here.recv()
        proc.join(30)
    finally:
        ws.close()
    answered = sum(n for k, n in tally["answers"].items() if k != "error")
    return {
        "target_rate": rate,
        "reached_rate": answered / tally["seconds"],
        "seconds": tally["seconds"],
        "answers": tally["answers"],
        "owner_login_s": {
            "before_p95": percentile(logins_before, 95),
            "logins": len(logins_during),
            "p50": percentile(logins_during, 50),
            "times": logins_during,
            "p95": verdict(percentile(logins_during, 95), GOALS["flood_login_p95_s"]),
        },
        "websocket_ms": {
            "before_p50": ms(rtt_before, 50),
            "during_p50": ms(rtt_during, 50),
            "before_p99": ms(rtt_before, 99),
            "during_p99": ms(rtt_during, 99),
            "ratio_p50": verdict(ms(rtt_during, 50) / ms(rtt_before, 50), GOALS["flood_websocket_ratio"]),
        },
    }


# ---- the run --------------------------------------------------------------------------------------


def run(rounds: int, requests: int, flood_rate: float, flood_seconds: float) -> dict:
    require_image()
    say(f"a stack of {len(USERS)} users")
    stack = ThrowawayStack(USERS, prefix="csm-bench-gate-", progress=lambda s: say(s))
    try:
        owner, other = USERS[0], USERS[1]
        say("the gate's memory: 100 logins over 5 users")
        results = {"gate_memory": gate_with_sessions(stack, USERS, 100)}
        cookie = session(stack, owner, "127.0.0.2")
        say("the workbench, through the gate and directly")
        results["workbench"] = workbench_times(stack, owner, rounds)
        assets = workbench_assets(stack.plan.users[owner].socket)
        say(f"static assets, {requests} and {requests // 4} requests each way")
        results["asset"] = asset_latency(stack, owner, cookie, assets["small"], requests)
        results["page_asset"] = asset_latency(stack, owner, cookie, assets["page"], requests // 4)
        say(f"WebSocket, {requests} round trips each way")
        results["websocket"] = websocket_latency(stack, owner, cookie, requests)
        results["flood"] = flood(stack, owner, other, flood_rate, flood_seconds)
        results["gate_memory"]["after_flood_rss_mib"] = gate_memory_mib(stack.state_dir)["VmRSS"]
        return results
    finally:
        stack.close()


def asset_lines(a: dict) -> list[str]:
    return [
        f"static asset {a['asset']} ({a['bytes'] / 1024:.0f} KiB)",
        f"  per request   via gate p50 {a['via_gate_ms']['p50']:.3f} ms p99 {a['via_gate_ms']['p99']:.3f} ms | "
        f"direct p50 {a['direct_ms']['p50']:.3f} ms p99 {a['direct_ms']['p99']:.3f} ms",
        f"  added         p50 {a['added_ms']['p50']['value']:.3f} ms ({goal_text(a['added_ms']['p50'], ' ms')}) "
        f"| p99 {a['added_ms']['p99']:.3f} ms",
    ]


def report(r: dict) -> str:
    w, ws, m, f = r["workbench"], r["websocket"], r["gate_memory"], r["flood"]
    login, rtt = f["owner_login_s"], f["websocket_ms"]
    return "\n".join(
        [
            f"login -> rendered workbench   via gate {w['via_gate_s']:.2f} s | direct {w['direct_s']:.2f} s | "
            f"ratio {w['ratio']['value']:.2f} ({goal_text(w['ratio'])})",
            *asset_lines(r["asset"]),
            *asset_lines(r["page_asset"]),
            f"WebSocket round trip          via gate p50 {ws['via_gate_ms']['p50']:.3f} ms | direct p50 "
            f"{ws['direct_ms']['p50']:.3f} ms | ratio {ws['ratio_p50']['value']:.2f} ({goal_text(ws['ratio_p50'])})",
            f"gate RSS, {m['users']} users, {m['sessions']} sessions: {m['rss_mib']['value']:.1f} MiB "
            f"({goal_text(m['rss_mib'], ' MiB')}) | before the logins {m['rss_before_mib']:.1f} | "
            f"peak {m['peak_rss_mib']:.1f} | after the flood {m['after_flood_rss_mib']:.1f} MiB",
            f"flood: {f['reached_rate']:.0f} of {f['target_rate']:.0f} requests/s for {f['seconds']:.0f} s, "
            f"answers {f['answers']}",
            f"  owner's login p95 {login['p95']['value']:.2f} s ({goal_text(login['p95'], ' s')}) | "
            f"before the flood {login['before_p95']:.2f} s",
            f"  other user's WebSocket p50 {rtt['during_p50']:.3f} ms | before {rtt['before_p50']:.3f} ms | "
            f"ratio {rtt['ratio_p50']['value']:.2f} ({goal_text(rtt['ratio_p50'])})",
        ]
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m csm.bench_gate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3, help="workbench loads each way (default 3)")
    p.add_argument("--requests", type=int, default=2000, help="asset requests and WebSocket round trips each way")
    p.add_argument("--flood-rate", type=float, default=1000, help="requests a second without a session (default 1000)")
    p.add_argument("--flood-seconds", type=float, default=60, help="how long the flood lasts (default 60)")
    p.add_argument("--json", metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    results = run(args.rounds, args.requests, args.flood_rate, args.flood_seconds)
    print(report(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
