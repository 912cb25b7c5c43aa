"""Idle stop and wake on visit in figures, each beside its baseline in the same run.

    python -m csm.bench_idle [--rounds N] [--json FILE]      (part of `make bench`)

- memory of five users who each opened the login page once, all running, then with
  four of them stopped for being idle (as the idle checker stops them);
- wake: a visit to a stopped user until code-server answers the address again (what
  the starting page waits for), against the same request to a running container;
- wake in Chromium: a logged-in person opens the address of their stopped workspace
  and the starting page turns into a rendered workbench by itself, against opening the
  same address with the container running (rounds alternate).

Everything started here is stopped here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import requests

from csm.bench import LOGIN_PACE_S, log_in_until_rendered, say
from csm.checks import idle as checks
from csm.checks.image import subprocess_runner
from csm.idle.control import Podman
from csm.idle.service import stop_idle
from csm.testing import browser as chromium
from csm.testing.stacks import ThrowawayStack, require_image

USERS = ["bidl1", "bidl2", "bidl3", "bidl4", "bidl5"]


def memory_mib(stack: ThrowawayStack) -> float:
    return sum(u.memory_bytes or 0 for u in stack.stack.status().users) / 2**20


def answer_seconds(stack: ThrowawayStack, user: str) -> float:
    """One request through nginx to a running container's address."""
    start = time.monotonic()
    r = requests.get(f"http://127.0.0.1:{stack.http_port}/", headers={"Host": stack.plan["users"][user]["hostname"]},
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "x-csm-wake" not in r.headers, r.status_code
    return time.monotonic() - start


WORKBENCH = ".monaco-workbench .part.editor"


def workbench_after_wake(stack: ThrowawayStack, control: Podman, user: str, rounds: int) -> dict:
    """Seconds from opening the address to a rendered workbench for a logged-in person:
    the container running, and stopped for being idle (the starting page reloads by
    itself). The browser comes from 127.0.0.1, the curl wakes above from 127.0.2.x."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"running": [], "woken": []}
    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            context = browser.new_context(viewport=chromium.VIEWPORT)
            # stopped above: woken once (untimed) from an address of its own, to log in
            checks.woken(subprocess_runner, stack.url(user), connect_ip="127.0.0.1", source="127.0.3.1")
            time.sleep(LOGIN_PACE_S)
            login = context.new_page()
            log_in_until_rendered(login, stack.url(user), stack.password(user))
            login.close()  # an open tab would wake the container as soon as it stops
            for i in range(rounds):
                for case in times:
                    if case == "woken":
                        stop_idle(stack.plan, control, user, time.time())
                    page = context.new_page()
                    start = time.monotonic()
                    # Timed to the rendered workbench, not to the page's load event: one
                    # slow subresource once held `load` past playwright's 30 s.
                    page.goto(stack.url(user), wait_until="commit")
                    page.wait_for_selector(WORKBENCH, timeout=120_000)
                    times[case].append(time.monotonic() - start)
                    page.close()
                    say(f"workbench in Chromium, round {i + 1}: {case} {times[case][-1]:.2f} s")
        finally:
            browser.close()
    running, woken = statistics.median(times["running"]), statistics.median(times["woken"])
    return {"running_s": running, "woken_s": woken, "ratio": woken / running, "rounds": times}


def run(rounds: int) -> dict:
    require_image()
    say(f"a stack of {len(USERS)} users")
    stack = ThrowawayStack(USERS, {"idleStopAfter": "1h"}, prefix="csm-bench-idle-")
    control = Podman(state_dir=str(stack.state_dir))
    try:
        for user in USERS:
            answer_seconds(stack, user)
        time.sleep(10)
        all_running = memory_mib(stack)
        for user in USERS[1:]:
            stop_idle(stack.plan, control, user, time.time())
        four_stopped = memory_mib(stack)
        say(f"memory: {all_running:.0f} MiB all running, {four_stopped:.0f} MiB with four stopped")
        user, url = USERS[0], stack.url(USERS[0])
        wakes, running = [], []
        for i in range(rounds):
            running.append(statistics.median(answer_seconds(stack, user) for _ in range(5)))
            stop_idle(stack.plan, control, user, time.time())
            start = time.monotonic()
            # What the starting page does: the visit, then its question, held until code-server answers.
            checks.get(subprocess_runner, url, connect_ip="127.0.0.1", source=f"127.0.2.{i + 1}")
            checks.told_ready(subprocess_runner, url, stack.plan, connect_ip="127.0.0.1", source=f"127.0.2.{i + 1}")
            wakes.append(time.monotonic() - start)
            say(f"wake {i + 1}: {wakes[-1]:.2f} s")
        say(f"wake in Chromium ({USERS[1]}, logged in)")
        in_browser = workbench_after_wake(stack, control, USERS[1], min(rounds, 3))  # 4 starts an hour per user
        return {"memory_mib": {"five_running": all_running, "four_stopped": four_stopped},
                "wake_s": {"stopped_to_answering": statistics.median(wakes), "running_answer": statistics.median(running),
                           "rounds": wakes},
                "workbench_wake_s": in_browser}
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m csm.bench_idle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="wakes to time (at most the per-user start limit, 4)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    r = run(min(args.rounds, 4))
    m, w, b = r["memory_mib"], r["wake_s"], r["workbench_wake_s"]
    print(f"memory, five users running             {m['five_running']:8.0f} MiB\n"
          f"memory, five users, four stopped idle  {m['four_stopped']:8.0f} MiB\n"
          f"wake: visit -> code-server answers     {w['stopped_to_answering']:8.2f} s (median)\n"
          f"      the same address, running        {w['running_answer']:8.3f} s\n"
          f"wake in Chromium, logged in: address -> rendered workbench {b['woken_s']:6.2f} s | "
          f"container running {b['running_s']:6.2f} s | ratio {b['ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
