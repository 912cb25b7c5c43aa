"""Benchmarks of the portable stack, each against its own baseline in the same run.

    make bench            # or: python -m csm.bench.stack [--rounds N] [--json FILE]

These machines are shared and noisy: read the ratios (container / bare process,
first start / a restart), which are measured side by side, more than the times.
The figures of the gate in front (login, proxied requests, WebSocket, flood) are
csm.bench.gate's. Everything started here is stopped here.

code-server listens on a Unix socket (--auth none) behind the gate; "direct" below
means that socket, which root (the bench) may open. The helpers for reaching it
are in csm/bench/code_server.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from csm.bench.code_server import wait_for_health
from csm.bench.common import (
    load_workbench,
    median,
    podman,
    say,
    write_json,
)
from csm.runner import podman as podman_runner
from csm.runner import status as stack_status
from csm.runner.host import Host
from csm.testing.stacks import IMAGE, ThrowawayStack, require_image

IMAGE_BIN = "usr/local/bin"  # where the image puts node, code-server and opencode
USERS = ["bn1", "bn2", "bn3", "bn4", "bn5"]


# ---- cold start ------------------------------------------------------------------------


def in_image(root: Path, path: str) -> Path:
    """Where `path` of the image mounted at `root` leads, its symbolic links followed
    inside the image (code-server is a link to its entry script, wherever the recipe
    put that)."""
    at = root / path
    for _ in range(40):
        if not at.is_symlink():
            return at
        target = Path(os.readlink(at))
        at = root / target.relative_to("/") if target.is_absolute() else Path(os.path.normpath(at.parent / target))
    raise RuntimeError(f"{path} in {root}: too many symbolic links")


class BareCodeServer:
    """code-server from the image's own files, run as a plain process on the host."""

    def __init__(self, root: Path, cmd: list[str]):
        self.root, self.cmd = root, cmd  # cmd: the plan's code-server command

    def argv(self, home: str) -> list[str]:
        """The plan's command with the host's own socket and directories."""
        places = {
            "--socket": f"{home}/code-server.sock",
            "--user-data-dir": f"{home}/data",
            "--extensions-dir": f"{self.root}/{self.cmd[self.cmd.index('--extensions-dir') + 1].lstrip('/')}",
        }
        args = self.cmd[1:-1]  # without "code-server" and the folder
        args = [places.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
        return [
            str(self.root / IMAGE_BIN / "node"),
            str(in_image(self.root, f"{IMAGE_BIN}/{self.cmd[0]}")),
            *args,
            home,
        ]

    def start_and_wait(self) -> float:
        with tempfile.TemporaryDirectory(prefix="csm-bench-bare-") as home:
            argv = self.argv(home)
            start = time.monotonic()
            proc = subprocess.Popen(
                argv, env={"PATH": "/usr/bin:/bin", "HOME": home}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_for_health(f"{home}/code-server.sock")
                return time.monotonic() - start
            finally:
                proc.terminate()
                proc.wait(10)


def cold_start(stack: ThrowawayStack, user: str, bare: BareCodeServer, rounds: int) -> dict:
    """`podman start` until code-server answers on its socket, against the same
    code-server started as a bare process on a socket of its own."""
    name, sock = stack.container(user), stack.plan.users[user].socket
    container, direct = [], []
    for i in range(rounds):
        say(f"cold start, round {i + 1}/{rounds}")
        podman("stop", "--time=10", name)
        start = time.monotonic()
        podman("start", name)
        wait_for_health(sock)
        container.append(time.monotonic() - start)
        direct.append(bare.start_and_wait())
    return {
        "container_s": median(container),
        "bare_process_s": median(direct),
        "ratio": median(container) / median(direct),
        "rounds": rounds,
    }


# ---- the run ---------------------------------------------------------------------------------


def image_size(image: str) -> int:
    return int(json.loads(podman("image", "inspect", image))[0]["Size"])


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "load_1min": os.getloadavg()[0],
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
    }


def new_user(stack: ThrowawayStack, user: str) -> dict:
    """A new user's first `csm up` until healthy, against recreating the same container."""
    say(f"adding a fifth user ({user}): its first start prepares the uid-mapped image")
    start = time.monotonic()
    stack.add_user(user)
    first_start = time.monotonic() - start
    podman_runner.remove(stack.stack.host, stack.container(user))  # the runner's removal: waits until it is gone
    start = time.monotonic()
    stack.stack.up()
    again = time.monotonic() - start
    return {"first_start_s": first_start, "second_start_s": again, "ratio": first_start / again}


def idle_memory(stack: ThrowawayStack, users: list[str]) -> dict:
    """Memory as `csm status` reads it, after each user's workbench loaded once."""
    say("memory: loading each user's workbench once")
    for user in users:
        load_workbench(stack.url(user), stack.password(user))
    time.sleep(10)
    names = [stack.container(u) for u in users]
    mem = stack_status.memory_usage(Host.detect(), names)
    return {
        "one_idle_user_mib": mem[names[0]] / 1024**2,
        "five_users_mib": sum(mem.values()) / 1024**2,
        "per_user_mib": {k: v / 1024**2 for k, v in mem.items()},
    }


def run(rounds: int) -> dict:
    require_image()
    results: dict = {
        "machine": {**machine(), "podman_run_args": list(Host.detect().run_args)},
        "image_bytes": image_size(IMAGE),
    }
    say("bringing up a stack with 4 users")
    stack = ThrowawayStack(USERS[:4], prefix="csm-bench-", progress=lambda s: say(s))
    mount = None
    try:
        mount = Path(podman("image", "mount", IMAGE).strip())
        bare = BareCodeServer(mount, stack.plan.users[USERS[0]].container.cmd)
        results["cold_start"] = cold_start(stack, USERS[0], bare, rounds)
        results["new_user"] = new_user(stack, USERS[4])
        results["memory"] = idle_memory(stack, USERS)
    finally:
        if mount:
            podman("image", "unmount", IMAGE)
        stack.close()
    return results


def report(r: dict) -> str:
    c, n, m = r["cold_start"], r["new_user"], r["memory"]
    return "\n".join(
        [
            f"machine: {r['machine']['cpus']} CPUs, {r['machine']['memory_gib']} GiB, kernel {r['machine']['kernel']}",
            f"image size                        {r['image_bytes'] / 1e6:8.0f} MB",
            f"cold start until code-server answers  container {c['container_s']:6.2f} s | "
            f"bare process {c['bare_process_s']:6.2f} s | ratio {c['ratio']:.2f}",
            f"memory, one idle user             {m['one_idle_user_mib']:8.0f} MiB",
            f"memory, five idle users           {m['five_users_mib']:8.0f} MiB",
            f"new user, first start             {n['first_start_s']:6.1f} s | again {n['second_start_s']:6.1f} s | "
            f"ratio {n['ratio']:.1f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csm.bench.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each timed start (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.rounds)
    print(report(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
