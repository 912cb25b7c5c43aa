"""Benchmarks of the portable stack, each against its own baseline in the same run.

    make bench            # or: python -m csm.bench [--rounds N] [--json FILE]

These machines are shared and noisy: read the ratios (through nginx / direct,
container / bare process), which are measured side by side, more than the times.
Everything started here is stopped here.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import websocket

from csm import progress
from csm.checks import http
from csm.runner import podman as podman_runner
from csm.runner import status as stack_status
from csm.runner.host import Host
from csm.testing import browser as chromium
from csm.testing.stacks import IMAGE, ThrowawayStack, free_port, require_image

IMAGE_BIN = "usr/local/bin"  # where the image puts node, code-server and opencode
USERS = ["bench1", "bench2", "bench3", "bench4", "bench5"]


def say(text: str) -> None:
    progress.say(f"==> {text}")


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def wait_for_login_page(base: str, host: str | None = None, timeout: float = 120) -> None:
    """Poll /healthz every 20 ms until code-server answers, then get the login page
    once: /login itself is rate-limited by nginx, so it must not be polled."""
    start = time.monotonic()
    headers = {"Host": host} if host else {}
    while time.monotonic() - start < timeout:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}{http.health_path()}", headers=headers, timeout=2).status_code == 200:
                login = requests.get(f"{base}/login", headers=headers, timeout=10)
                if login.status_code != 200 or 'type="password"' not in login.text:
                    raise RuntimeError(f"{base}/login answered {login.status_code}")
                return
        time.sleep(0.02)
    raise TimeoutError(f"{base} did not answer within {timeout} s")


# nginx allows 10 logins a minute per address with a burst of 10, and every browser
# login here comes from 127.0.0.1: wait out the refill before each one (untimed).
LOGIN_PACE_S = 12


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ---- 1. cold start ------------------------------------------------------------------

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

    def argv(self, port: int, home: str) -> list[str]:
        """The plan's command with the host's own address and directories."""
        places = {"--bind-addr": f"127.0.0.1:{port}", "--user-data-dir": f"{home}/data",
                  "--extensions-dir": f"{self.root}/{self.cmd[self.cmd.index('--extensions-dir') + 1].lstrip('/')}"}
        args = self.cmd[1:-1]  # without "code-server" and the folder
        args = [places.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
        return [str(self.root / IMAGE_BIN / "node"), str(in_image(self.root, f"{IMAGE_BIN}/{self.cmd[0]}")), *args, home]

    def start_and_wait(self) -> float:
        port = free_port("127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="csm-bench-bare-") as home:
            env = {"PATH": "/usr/bin:/bin", "HOME": home, "PASSWORD": secrets.token_urlsafe(12)}
            argv = self.argv(port, home)
            start = time.monotonic()
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_login_page(f"http://127.0.0.1:{port}")
                return time.monotonic() - start
            finally:
                proc.terminate()
                proc.wait(10)


def cold_start(stack: ThrowawayStack, user: str, bare: BareCodeServer, rounds: int) -> dict:
    name = stack.plan["users"][user]["container"]["name"]
    host = f"{user}.{stack.plan['domain']}:{stack.http_port}"
    container, direct = [], []
    for i in range(rounds):
        say(f"cold start, round {i + 1}/{rounds}")
        podman("stop", "--time=10", name)
        start = time.monotonic()
        podman("start", name)
        wait_for_login_page(f"http://127.0.0.1:{stack.http_port}", host=host)
        container.append(time.monotonic() - start)
        direct.append(bare.start_and_wait())
    return {"container_via_nginx_s": median(container), "bare_process_s": median(direct),
            "ratio": median(container) / median(direct), "rounds": rounds}


# ---- 2. login to a rendered workbench -------------------------------------------------

def log_in_until_rendered(page, url: str, password: str) -> None:
    """The login page, the password, Enter, and wait until the editor area is drawn."""
    page.goto(f"{url}/login")
    page.fill("input[type=password]", password)
    page.press("input[type=password]", "Enter")
    page.wait_for_selector(".monaco-workbench .part.editor", timeout=120_000)


def workbench_times(targets: dict[str, tuple[str, str]], rounds: int) -> dict[str, float]:
    """Median seconds from opening the login page to a rendered workbench, per target
    (name -> (url, password)); targets alternate round by round."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {k: [] for k in targets}
    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            for i in range(rounds):
                for key, (url, password) in targets.items():
                    say(f"workbench in Chromium, round {i + 1}/{rounds}: {key}")
                    time.sleep(LOGIN_PACE_S)
                    context = browser.new_context(viewport=chromium.VIEWPORT)
                    page = context.new_page()
                    start = time.monotonic()
                    log_in_until_rendered(page, url, password)
                    times[key].append(time.monotonic() - start)
                    context.close()
        finally:
            browser.close()
    return {k: median(v) for k, v in times.items()}


def load_workbench(url: str, password: str, settle: float = 5) -> None:
    """Log in and let the workbench load fully (extension host included), then leave."""
    from playwright.sync_api import sync_playwright

    time.sleep(LOGIN_PACE_S)
    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            log_in_until_rendered(browser.new_page(), url, password)
            time.sleep(settle)
        finally:
            browser.close()


# ---- 3. WebSocket round trip ---------------------------------------------------------------

def ws_round_trips(port: int, host: str, count: int) -> list[float]:
    """Round trips on code-server's /healthz WebSocket (it answers every message)."""
    ws = websocket.create_connection(f"ws://{host}{http.health_path()}", timeout=10, origin=f"http://{host}",
                                     socket=socket.create_connection(("127.0.0.1", port)))
    try:
        out = []
        for _ in range(count):
            start = time.perf_counter()
            ws.send('{"event":"health"}')
            ws.recv()
            out.append(time.perf_counter() - start)
        return out
    finally:
        ws.close()


def websocket_latency(stack: ThrowawayStack, user: str, count: int) -> dict:
    u = stack.plan["users"][user]
    nginx_host = f"{user}.{stack.plan['domain']}:{stack.http_port}"
    via, direct = [], []
    for _ in range(5):  # interleaved batches, so both see the same noise
        via += ws_round_trips(stack.http_port, nginx_host, count // 5)
        direct += ws_round_trips(u["port"], f"127.0.0.1:{u['port']}", count // 5)
    ms = lambda xs, p: percentile(xs, p) * 1000  # noqa: E731
    return {"via_nginx_ms": {"p50": ms(via, 50), "p99": ms(via, 99)},
            "direct_ms": {"p50": ms(direct, 50), "p99": ms(direct, 99)},
            "ratio_p50": ms(via, 50) / ms(direct, 50), "round_trips": len(via)}


# ---- the run ---------------------------------------------------------------------------------

def image_size(image: str) -> int:
    return int(json.loads(podman("image", "inspect", image))[0]["Size"])


def run(rounds: int, round_trips: int) -> dict:
    require_image()
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
                    "podman_run_args": list(Host.detect().run_args)},
        "image_bytes": image_size(IMAGE),
    }
    say("bringing up a stack with 4 users")
    stack = ThrowawayStack(USERS[:4], prefix="csm-bench-", progress=lambda s: say(s))
    mount = None
    try:
        mount = Path(podman("image", "mount", IMAGE).strip())
        first = USERS[0]
        bare = BareCodeServer(mount, stack.plan["users"][first]["container"]["cmd"])
        results["cold_start"] = cold_start(stack, first, bare, rounds)

        u = stack.plan["users"][first]
        results["workbench_s"] = workbench_times({
            "via_nginx": (stack.url(first), stack.password(first)),
            "direct": (f"http://127.0.0.1:{u['port']}", stack.password(first)),
        }, rounds)
        results["workbench_s"]["ratio"] = results["workbench_s"]["via_nginx"] / results["workbench_s"]["direct"]

        results["websocket"] = websocket_latency(stack, first, round_trips)

        say(f"adding a fifth user ({USERS[4]}): its first start prepares the uid-mapped image")
        start = time.monotonic()
        stack.add_user(USERS[4])
        first_start = time.monotonic() - start
        name5 = stack.plan["users"][USERS[4]]["container"]["name"]
        podman_runner.remove(stack.stack.host, name5)  # the runner's removal: waits until it is gone
        start = time.monotonic()
        stack.stack.up()
        again = time.monotonic() - start
        results["new_user"] = {"first_start_s": first_start, "second_start_s": again, "ratio": first_start / again}

        # 4. memory, as `csm status` reads it
        say("memory: loading each user's workbench once")
        for user in USERS:
            load_workbench(stack.url(user), stack.password(user))
        time.sleep(10)
        names = [stack.plan["users"][u]["container"]["name"] for u in USERS]
        mem = stack_status.memory_usage(Host.detect(), names)
        results["memory"] = {"one_idle_user_mib": mem[names[0]] / 1024**2,
                             "five_users_mib": sum(mem.values()) / 1024**2,
                             "per_user_mib": {k: v / 1024**2 for k, v in mem.items()}}
    finally:
        if mount:
            podman("image", "unmount", IMAGE)
        stack.close()
    return results


def report(r: dict) -> str:
    c, w, ws, n, m = r["cold_start"], r["workbench_s"], r["websocket"], r["new_user"], r["memory"]
    lines = [
        f"machine: {r['machine']['cpus']} CPUs, {r['machine']['memory_gib']} GiB, kernel {r['machine']['kernel']}",
        f"image size                        {r['image_bytes'] / 1e6:8.0f} MB",
        f"cold start to login page          container via nginx {c['container_via_nginx_s']:6.2f} s | "
        f"bare process {c['bare_process_s']:6.2f} s | ratio {c['ratio']:.2f}",
        f"login to rendered workbench       via nginx {w['via_nginx']:6.2f} s | direct {w['direct']:6.2f} s | "
        f"ratio {w['ratio']:.2f}",
        f"WebSocket round trip              via nginx p50 {ws['via_nginx_ms']['p50']:.3f} ms p99 "
        f"{ws['via_nginx_ms']['p99']:.3f} ms | direct p50 {ws['direct_ms']['p50']:.3f} ms p99 "
        f"{ws['direct_ms']['p99']:.3f} ms | p50 ratio {ws['ratio_p50']:.2f}",
        f"memory, one idle user             {m['one_idle_user_mib']:8.0f} MiB",
        f"memory, five idle users           {m['five_users_mib']:8.0f} MiB",
        f"new user, first start             {n['first_start_s']:6.1f} s | again {n['second_start_s']:6.1f} s | "
        f"ratio {n['ratio']:.1f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each timed start (default 3)")
    parser.add_argument("--round-trips", type=int, default=1000, help="WebSocket round trips per side (default 1000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.rounds, args.round_trips)
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
