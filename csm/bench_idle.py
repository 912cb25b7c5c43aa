"""Idle stop and wake on visit in figures, each beside its baseline in the same run.

    python -m csm.bench_idle [--rounds N] [--json FILE]      (part of `make bench`)

- memory of five users who each opened the login page once, all running, then with
  four of them stopped for being idle (as the idle checker stops them);
- wake: a visit to a stopped user until code-server answers the address again (what
  the starting page waits for), against the same request to a running container.

Everything started here is stopped here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import requests

from csm.bench import say
from csm.checks import idle as checks
from csm.checks.image import subprocess_runner
from csm.idle.control import Podman
from csm.idle.service import stop_idle
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
            checks.get(subprocess_runner, url, connect_ip="127.0.0.1", source=f"127.0.2.{i + 1}")
            checks.woken(subprocess_runner, url, connect_ip="127.0.0.1", source=f"127.0.2.{i + 1}")
            wakes.append(time.monotonic() - start)
            say(f"wake {i + 1}: {wakes[-1]:.2f} s")
        return {"memory_mib": {"five_running": all_running, "four_stopped": four_stopped},
                "wake_s": {"stopped_to_answering": statistics.median(wakes), "running_answer": statistics.median(running),
                           "rounds": wakes}}
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m csm.bench_idle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="wakes to time (at most the per-user start limit, 4)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    r = run(min(args.rounds, 4))
    m, w = r["memory_mib"], r["wake_s"]
    print(f"memory, five users running             {m['five_running']:8.0f} MiB\n"
          f"memory, five users, four stopped idle  {m['four_stopped']:8.0f} MiB\n"
          f"wake: visit -> code-server answers     {w['stopped_to_answering']:8.2f} s (median)\n"
          f"      the same address, running        {w['running_answer']:8.3f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
