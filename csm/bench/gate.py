"""The gate in front of every workspace, in figures, each beside its baseline in the
same run (part of `make bench`):

    python -m csm.bench.gate [--rounds N] [--requests N] [--flood-rate R] [--flood-seconds S] [--json FILE]

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
import sys
import time
from pathlib import Path

from csm.bench.code_server import UnixForwarder
from csm.bench.common import (
    goal_text,
    log_in_until_rendered,
    median,
    percentile,
    say,
    verdict,
    write_json,
)
from csm.bench.flood import flood
from csm.bench.gate_requests import (
    GOALS,
    asset_latency,
    session,
    websocket_latency,
    workbench_assets,
)
from csm.testing import browser as chromium
from csm.testing.stacks import ThrowawayStack, require_image

USERS = ["bng1", "bng2", "bng3", "bng4", "bng5"]
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
        prog="python -m csm.bench.gate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
