"""The runner's side of idle stop and wake (csm/idle/): `csm up` starts the idle
service (`csm idle serve`: the checker, the waker the gate asks through the control
socket, and what finishes podman's half-done restarts) beside nginx, `csm down`
stops it, and `csm status` says who is stopped for being idle.

The service is the runner's own child (runner/service.py), so an `up` that changes
nothing keeps it (and the idle clocks it keeps) running.
"""

from __future__ import annotations

import time
from pathlib import Path

from csm.plan_types import Plan

from ..idle import markers, service, signals
from .service import Service, plan_digest

SERVICE = Service("idle", "csm.idle")


def running_pid(state: Path) -> tuple[int, str] | None:
    return SERVICE.running(state)


def start_service(stack, undo: list) -> str:
    """Start (or restart, for a new plan) the root side; unchanged if it runs this plan."""
    state, plan = stack.state_dir, stack.plan
    settled = time.monotonic() + 0.5
    control = Path(plan.gate.control.socket)

    def ready() -> bool:  # it answers the gate; without idle users, still alive a moment later
        return control.is_socket() if plan.idle.enable else time.monotonic() > settled

    current = SERVICE.running(state)
    if plan.idle.enable and not (current and current[1] == plan_digest(plan)):
        control.unlink(missing_ok=True)  # a socket left by an earlier run is not an answer
    action = SERVICE.start(state, plan, ["--state-dir", str(state), "--podman", stack.host.podman], ready)
    if action == "started":
        undo.append(lambda: stop_service(state))
        stack.progress(
            "idle service running: "
            + ("stops users idle for their idleStopAfter, wakes them after their login, " if plan.idle.enable else "")
            + f"restarts a container whose code-server died (log: {SERVICE.log(state)})"
        )
    return action


def stop_service(state: Path) -> bool:
    return SERVICE.stop(state)


def stopped_idle(plan: Plan, name: str) -> bool:
    """Stopped for being idle: `up` leaves the container stopped, a visit starts it."""
    return markers.read(plan, name) is not None


def forget(plan: Plan, names) -> None:
    """The containers are gone (down) or new (created): nobody is stopped-idle."""
    for name in names:
        markers.clear(plan, name)


def annotate(plan: Plan, status, info: dict | None) -> None:
    """Fill a UserStatus's idle view: running / stopped-idle / stopped-by-admin,
    since when, and the last activity the idle decision saw."""
    marker = markers.read(plan, status.name)
    if signals.running(info):
        status.activity = "running"
        status.since = signals.parse_time(info["State"].get("StartedAt"))
        seen = service.last_activity(plan).get(status.name)
        status.last_activity = max(filter(None, [status.last_activity, seen]), default=None)
    elif marker:
        status.activity = "stopped-idle" + (" (start failed)" if marker.get("failedAt") else "")
        status.since = marker.get("stoppedAt")
        status.last_activity = marker.get("lastActivity")
    elif info is not None:  # a container that was never made is just absent
        status.activity = "stopped-by-admin"
        status.since = signals.parse_time(info["State"].get("FinishedAt"))
