"""Benchmarks of the portable stack, each against its own baseline in the same run.

    make bench            # or: python -m csm.bench [--rounds N] [--json FILE]

These machines are shared and noisy: read the ratios (container / bare process,
first start / a restart), which are measured side by side, more than the times.
The figures of the gate in front (login, proxied requests, WebSocket, flood) are
csm.bench_gate's. Everything started here is stopped here.

code-server listens on a Unix socket (--auth none) behind the gate; "direct" below
means that socket, which root (the bench) may open. The helpers here for reaching it
(an HTTP connection over AF_UNIX, a TCP forwarder for Chromium) are shared by the
other bench modules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from csm import progress
from csm.checks import http as checks_http
from csm.runner import podman as podman_runner
from csm.runner import status as stack_status
from csm.runner.host import Host
from csm.testing import browser as chromium
from csm.testing.stacks import IMAGE, ThrowawayStack, require_image
from csm.waiting import wait_until

IMAGE_BIN = "usr/local/bin"  # where the image puts node, code-server and opencode
USERS = ["bn1", "bn2", "bn3", "bn4", "bn5"]
WORKBENCH = ".monaco-workbench .part.editor"  # drawn once the workbench has rendered


def say(text: str) -> None:
    progress.say(f"==> {text}")


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def verdict(value: float, goal: float) -> dict:
    """A figure with its goal (an upper bound) and whether it was met, for --json."""
    return {"value": value, "goal": goal, "met": value <= goal}


def goal_text(v: dict, unit: str = "") -> str:
    return f"goal <= {v['goal']:g}{unit}: {'met' if v['met'] else 'MISSED'}"


# ---- code-server directly, on its Unix socket ---------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 (keep-alive) to a Unix socket; Host is "localhost"."""

    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def socket_get(path: str, url: str, timeout: float = 10) -> tuple[int, dict, bytes]:
    """One GET on a Unix socket: (status, headers, body)."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", url)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def wait_for_health(path: str, timeout: float = 120) -> None:
    """Poll code-server's /healthz on its socket every 20 ms until it answers 200 (a
    socket file left by the last run refuses connections until code-server binds)."""

    def answers() -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            return socket_get(path, checks_http.health_path(), timeout=2)[0] == 200
        return False

    wait_until(answers, timeout, f"code-server on {path}", interval=0.02)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Bytes from reader to writer until EOF, then a half-close (the other way may go on)."""
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class UnixForwarder:
    """127.0.0.1:<free port> to a Unix socket, byte for byte, on a thread of its own:
    Chromium cannot open a Unix socket. It adds no auth (code-server runs with --auth
    none), listens on loopback only and lives for one measurement.

        with UnixForwarder(plan["users"]["bn1"]["socket"]) as fwd:
            page.goto(fwd.url)
    """

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unix-forwarder", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UnixForwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the forwarder closes with connections open (a workbench's WebSockets)
        finally:
            up_writer.close()
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            while tasks := asyncio.all_tasks(self._loop):  # a connection accepted meanwhile adds one
                for task in tasks:
                    task.cancel()
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()


# ---- the workbench in Chromium ---------------------------------------------------------


def log_in_until_rendered(page, url: str, password: str | None) -> None:
    """Open the address; with a password, log in on the gate's page that answers it
    (by its labelled field); wait until the editor area is drawn. Without one (code-server
    directly) the address leads to the workbench at once."""
    from csm.testing.workbench import password_box

    # Timed to the rendered workbench, not to the page's load event: one slow
    # subresource once held `load` past playwright's 30 s.
    page.goto(url, wait_until="commit")
    if password is not None:
        box = password_box(page)
        box.fill(password, timeout=60_000)
        box.press("Enter")
    page.wait_for_selector(WORKBENCH, timeout=120_000)


def load_workbench(url: str, password: str, settle: float = 5) -> None:
    """Log in and let the workbench load fully (extension host included), then leave."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = chromium.launch(p)
        try:
            log_in_until_rendered(browser.new_page(), url, password)
            time.sleep(settle)
        finally:
            browser.close()


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
    name, sock = stack.container(user), stack.plan["users"][user]["socket"]
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
        bare = BareCodeServer(mount, stack.plan["users"][USERS[0]]["container"]["cmd"])
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


def write_json(path: Path | str | None, results: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m csm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each timed start (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.rounds)
    print(report(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
