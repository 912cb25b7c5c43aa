"""Idle stop and wake after login in figures, each beside its baseline in the same run.

    python -m csm.bench.idle [--rounds N] [--json FILE]      (part of `make bench`)

- memory of five users who each logged in and had code-server answer once, all
  running, then with four of them stopped for being idle (as the idle checker stops them);
- wake: a logged-in visit to a stopped user until the gate says code-server answers
  (what the starting page waits for), against the same request to a running container;
- logged-in wake in Chromium: a person opens the address of their stopped workspace,
  logs in on the gate's page, and the starting page turns into a rendered workbench by
  itself, against the same login with the container running (rounds alternate).

Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import requests

from csm.bench.common import goal_text, log_in_until_rendered, say, verdict, write_json
from csm.checks import http as checks_http
from csm.checks import idle as checks
from csm.checks.commands import subprocess_runner
from csm.idle.service import stop_idle
from csm.runner import backends
from csm.testing import browser as chromium
from csm.testing.stacks import ThrowawayStack, require_image

USERS = ["bni1", "bni2", "bni3", "bni4", "bni5"]
WAKE_GOAL = 1.5  # logged-in wake / the same login with the container running


def memory_mib(stack: ThrowawayStack) -> float:
    return sum(u.memory_bytes or 0 for u in stack.stack.status().users) / 2**20


def session_cookie(stack: ThrowawayStack, user: str, source: str) -> str:
    """A session for `user` from the gate, as curl sends it ("name=value")."""
    target = checks_http.Target(stack.url(user), stack.password(user), source_address=source)
    return f"{checks_http.cookie_name(target)}={target.session()}"


def answer_seconds(stack: ThrowawayStack, user: str, cookie: str) -> float:
    """One logged-in request through nginx and the gate to a running container's address
    (code-server answers it with its redirect to the folder)."""
    start = time.monotonic()
    r = requests.get(
        f"http://127.0.0.1:{stack.http_port}/",
        allow_redirects=False,
        timeout=10,
        headers={"Host": f"{stack.plan.users[user].hostname}:{stack.http_port}", "Cookie": cookie},
    )
    assert r.status_code == 302 and "x-csm-wake" not in r.headers, r.status_code
    return time.monotonic() - start


def workbench_after_wake(stack: ThrowawayStack, control: backends.Podman, user: str, rounds: int) -> dict:
    """Seconds from opening the address to a rendered workbench, logging in on the way
    (a fresh browser context each time): the container running, and stopped for being
    idle (after the login the starting page reloads by itself)."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"running": [], "woken": []}
    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            for i in range(rounds):
                for case in times:
                    if case == "woken" and not stop_idle(stack.plan, control, user, time.time()):
                        raise RuntimeError(f"{user} could not be stopped for being idle")
                    context = browser.new_context(viewport=chromium.VIEWPORT)
                    start = time.monotonic()
                    log_in_until_rendered(context.new_page(), stack.url(user), stack.password(user))
                    times[case].append(time.monotonic() - start)
                    context.close()  # an open tab would wake the container as soon as it stops
                    say(f"workbench in Chromium, round {i + 1}: {case} {times[case][-1]:.2f} s")
        finally:
            browser.close()
    running, woken = statistics.median(times["running"]), statistics.median(times["woken"])
    return {"running_s": running, "woken_s": woken, "ratio": verdict(woken / running, WAKE_GOAL), "rounds": times}


def wakes(stack: ThrowawayStack, control: backends.Podman, user: str, rounds: int) -> dict:
    """A logged-in visit to the stopped user, then the starting page's question (held by
    the gate until code-server answers), against the same visit to it running."""
    url, cookie = stack.url(user), session_cookie(stack, user, "127.0.2.1")
    woken, running = [], []
    for i in range(rounds):
        running.append(statistics.median(answer_seconds(stack, user, cookie) for _ in range(5)))
        stop_idle(stack.plan, control, user, time.time())
        start = time.monotonic()
        checks.visit_shows_starting_page(subprocess_runner, url, user, connect_ip="127.0.0.1", cookie=cookie)
        checks.told_ready(subprocess_runner, url, stack.plan, connect_ip="127.0.0.1", cookie=cookie)
        woken.append(time.monotonic() - start)
        say(f"wake {i + 1}: {woken[-1]:.2f} s")
    return {
        "stopped_to_answering": statistics.median(woken),
        "running_answer": statistics.median(running),
        "rounds": woken,
    }


def run(rounds: int) -> dict:
    require_image()
    say(f"a stack of {len(USERS)} users")
    stack = ThrowawayStack(USERS, {"idleStopAfter": "1h"}, prefix="csm-bench-idle-")
    control = backends.Podman(stack.plan, stack.state_dir)
    try:
        for i, user in enumerate(USERS):
            answer_seconds(stack, user, session_cookie(stack, user, f"127.0.3.{i + 1}"))
        time.sleep(10)
        all_running = memory_mib(stack)
        for user in USERS[1:]:
            stop_idle(stack.plan, control, user, time.time())
        four_stopped = memory_mib(stack)
        say(f"memory: {all_running:.0f} MiB all running, {four_stopped:.0f} MiB with four stopped")
        wake = wakes(stack, control, USERS[0], rounds)
        say(f"logged-in wake in Chromium ({USERS[1]})")
        return {
            "memory_mib": {"five_running": all_running, "four_stopped": four_stopped},
            "wake_s": wake,
            "workbench_wake_s": workbench_after_wake(stack, control, USERS[1], rounds),
        }
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m csm.bench.idle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3, help="wakes to time, each way (default 3)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    r = run(args.rounds)
    m, w, b = r["memory_mib"], r["wake_s"], r["workbench_wake_s"]
    print(
        f"memory, five users running             {m['five_running']:8.0f} MiB\n"
        f"memory, five users, four stopped idle  {m['four_stopped']:8.0f} MiB\n"
        f"wake: logged-in visit -> code-server answers {w['stopped_to_answering']:6.2f} s (median)\n"
        f"      the same request, running        {w['running_answer']:8.3f} s\n"
        f"logged-in wake in Chromium: login -> rendered workbench {b['woken_s']:6.2f} s | "
        f"container running {b['running_s']:6.2f} s | ratio {b['ratio']['value']:.2f} ({goal_text(b['ratio'])})"
    )
    write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
