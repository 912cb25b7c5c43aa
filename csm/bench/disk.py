"""What a user's own disk (diskQuota: an ext4 file in a loop device) costs a write,
side by side in one run with a user without one (files straight on the host's disk).

    python -m csm.bench.disk [--rounds N] [--json FILE]      (part of `make bench`)

One stack, two users: one with a 4G disk, one with diskQuota = null. Inside each
container, taking turns round by round: a 512 MiB sequential write flushed to disk
(dd conv=fdatasync), and a copy of code-server's own tree (thousands of small files)
flushed with sync. Reported: the median of each, and the ratio disk / no disk (goal:
at least 0.9, higher is better).

Everything started here is stopped here.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from csm.bench.common import say, write_json
from csm.testing.stacks import ThrowawayStack, require_image

USERS = {"bdquota": "4G", "bdplain": None}
SMALL_FILES = "/usr/local/lib/code-server"  # in the image: code-server's own tree
GOAL = 0.9


def inside(stack: ThrowawayStack, user: str, script: str) -> str:
    return subprocess.run(
        ["podman", "exec", stack.container(user), "sh", "-c", script], check=True, capture_output=True, text=True
    ).stderr


def sequential_mb_s(stack: ThrowawayStack, user: str) -> float:
    out = inside(stack, user, "dd if=/dev/zero of=$HOME/project/seq bs=1M count=512 conv=fdatasync; rm ~/project/seq")
    seconds = float(re.search(r"copied, ([0-9.]+) s", out).group(1))
    return 512 * 2**20 / seconds / 1e6


def small_files_s(stack: ThrowawayStack, user: str) -> float:
    start = time.monotonic()
    inside(stack, user, f"cp -r {SMALL_FILES} ~/project/copy && sync -f ~/project/copy")
    elapsed = time.monotonic() - start
    inside(stack, user, "rm -r ~/project/copy")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    require_image()
    say("bringing up a stack with one user on a disk of their own and one without")
    stack = ThrowawayStack(
        list(USERS),
        {"idleStopAfter": None, "users": {u: {"diskQuota": q} for u, q in USERS.items()}},
        prefix="csm-bench-",
    )
    figures: dict[str, dict[str, list[float]]] = {u: {"sequential_mb_s": [], "small_files_s": []} for u in USERS}
    try:
        files = inside(stack, "bdplain", f"find {SMALL_FILES} -type f | wc -l 1>&2").strip()
        for r in range(args.rounds):
            for user in USERS if r % 2 == 0 else reversed(USERS):  # neither always goes first
                figures[user]["sequential_mb_s"].append(sequential_mb_s(stack, user))
                figures[user]["small_files_s"].append(small_files_s(stack, user))
    finally:
        stack.close()
    med = {u: {k: statistics.median(v) for k, v in f.items()} for u, f in figures.items()}
    ratios = {
        "sequential_write": med["bdquota"]["sequential_mb_s"] / med["bdplain"]["sequential_mb_s"],
        "small_files": med["bdplain"]["small_files_s"] / med["bdquota"]["small_files_s"],
    }
    print(f"write throughput inside a container, median of {args.rounds} rounds, taking turns:")
    print(
        f"  512 MiB sequential, fdatasync: own disk {med['bdquota']['sequential_mb_s']:.0f} MB/s, "
        f"no disk {med['bdplain']['sequential_mb_s']:.0f} MB/s: ratio {ratios['sequential_write']:.2f}"
    )
    print(
        f"  copy of {files} small files, sync: own disk {med['bdquota']['small_files_s']:.2f} s, "
        f"no disk {med['bdplain']['small_files_s']:.2f} s: ratio (speed) {ratios['small_files']:.2f}"
    )
    met = all(r >= GOAL for r in ratios.values())
    print(f"goal: ratios of at least {GOAL}: {'met' if met else 'missed'}")
    write_json(
        args.json,
        {"rounds": args.rounds, "figures": figures, "medians": med, "ratios": ratios, "goal": GOAL, "met": met},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
