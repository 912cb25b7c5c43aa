"""The runner's side of idle stop and wake (csm/idle/): `csm up` starts the idle
service (`csm idle serve`, the checker and the waker, and what finishes podman's
half-done restarts) beside nginx, `csm down` stops it by its pid file, and
`csm status` says who is stopped for being idle.

The service is the runner's own child, logging to <state>/logs/idle.log; its pid
file records the plan it serves, so an `up` that changes nothing keeps it (and the
idle clocks it keeps) running.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..idle import markers, service, signals
from . import HostNotReady, RunnerError

PID_FILE = "idle.pid"


def _digest(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def running_pid(state: Path) -> tuple[int, str] | None:
    """(pid, plan digest) of the idle service this state directory started, if it runs."""
    try:
        pid_text, digest = (Path(state) / PID_FILE).read_text().split()
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    # A reused pid is some other program's: ours names our stack file.
    return (pid, digest) if b"csm.idle serve" in cmdline and str(Path(state) / "stack.json").encode() in cmdline else None


def _answers(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


def check_port(stack) -> None:
    """The waker's port is free, or held by this stack's own service (preflight)."""
    idle = stack.plan.get("idle", {})
    if not idle.get("enable") or running_pid(stack.state_dir):
        return
    if _answers(idle["waker"]["address"], idle["waker"]["port"]):
        raise HostNotReady(f"port {idle['waker']['port']}, where the waker is to listen (basePort - 1), is "
                           "already in use by another program; stop that program or change basePort")


def start_service(stack, undo: list) -> str:
    """Start (or restart, for a new plan) the idle service; unchanged if it runs this plan."""
    state, plan = stack.state_dir, stack.plan
    current = running_pid(state)
    if current and current[1] == _digest(plan):
        return "unchanged"
    stop_service(state)
    (state / "logs").mkdir(mode=0o755, exist_ok=True)
    log = state / "logs" / "idle.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "csm.idle", "serve", "--plan", str(state / "stack.json"),
             "--state-dir", str(state), "--podman", stack.host.podman],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd=state,
            env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    (state / PID_FILE).write_text(f"{proc.pid} {_digest(plan)}\n")
    undo.append(lambda: stop_service(state))
    waker = plan["idle"]["waker"]
    settled, deadline = time.monotonic() + 0.5, time.monotonic() + 15

    def ready() -> bool:   # the waker answers; without idle users, still alive a moment later
        return _answers(waker["address"], waker["port"]) if plan["idle"]["enable"] else time.monotonic() > settled

    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RunnerError("the idle service (`csm idle serve`) did not start: " + " / ".join(tail) +
                              f" (log: {log})")
        time.sleep(0.1)
    if proc.poll() is not None:
        raise RunnerError(f"the idle service (`csm idle serve`) stopped at once (log: {log})")
    stack.progress("idle service running: " + ("stops users idle for their idleStopAfter, wakes them on a "
                                               "visit, " if plan["idle"]["enable"] else "") +
                   f"restarts a container whose code-server died (log: {log})")
    return "started"


def stop_service(state: Path, timeout: float = 15) -> bool:
    found = running_pid(state)
    (Path(state) / PID_FILE).unlink(missing_ok=True)
    if not found:
        return False
    pid = found[0]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:   # our own child when up() started it in this process: reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            pass
        time.sleep(0.05)
    if Path(f"/proc/{pid}").exists() and running_pid_is(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def running_pid_is(pid: int) -> bool:
    try:
        return b"csm.idle" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stopped_idle(plan: dict, name: str) -> bool:
    """Stopped for being idle: `up` leaves the container stopped, a visit starts it."""
    return markers.read(plan, name) is not None


def forget(plan: dict, names) -> None:
    """The containers are gone (down) or new (created): nobody is stopped-idle."""
    for name in names:
        markers.clear(plan, name)


def annotate(plan: dict, status, info: dict | None) -> None:
    """Fill a UserStatus's idle view: running / stopped-idle / stopped-by-admin,
    since when, and the last activity the idle decision saw."""
    marker = markers.read(plan, status.name)
    if signals.running(info):
        status.activity = "running"
        status.since = signals.parse_time(info["State"].get("StartedAt"))
        seen = service.last_activity(plan).get(status.name) if "idle" in plan else None
        status.last_activity = max(filter(None, [status.last_activity, seen]), default=None)
    elif marker:
        status.activity = "stopped-idle" + (" (start failed)" if marker.get("failedAt") else "")
        status.since = marker.get("stoppedAt")
        status.last_activity = marker.get("lastActivity")
    elif info is not None:  # a container that was never made is just absent
        status.activity = "stopped-by-admin"
        status.since = signals.parse_time(info["State"].get("FinishedAt"))
