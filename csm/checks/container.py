"""One user's container as the host-side checks reach it (csm.checks.host, .limits,
.network): its name, a command line inside it, a Python probe, its health check and
state, the folder it works in. `run` is the checks' runner (csm/checks/commands.py)."""

from __future__ import annotations

import json
import shlex

from csm.checks import CheckFailed
from csm.checks.commands import Runner
from csm.plan_types import User
from csm.waiting import wait_until

PODMAN = "podman"


def container_name(user: User) -> str:
    return user.container.name


def exec_in(user: User, *argv: str) -> str:
    """A command line running argv inside the user's container."""
    return shlex.join([PODMAN, "exec", container_name(user), *argv])


def python_in(run: Runner, user: User, script: str, *args: object) -> dict:
    """Runs a Python script inside the container; it prints one JSON object."""
    out = run(exec_in(user, "python3", "-c", script, *map(str, args)))
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise CheckFailed(f"the probe inside {container_name(user)} printed {out[-400:]!r}") from e


def healthy(run: Runner, user: User) -> bool:
    """The plan's health check, run inside the container."""
    probe = exec_in(user, *user.container.healthCheck)
    return run(f"{probe} >/dev/null 2>&1 && echo healthy || echo not").strip() == "healthy"


def wait_healthy(run: Runner, user: User, timeout: float = 180) -> None:
    try:
        wait_until(lambda: healthy(run, user), timeout, f"{container_name(user)} healthy", interval=1)
    except TimeoutError:
        raise CheckFailed(f"{container_name(user)} did not pass its health check within {timeout:.0f} s") from None


def running(run: Runner, user: User) -> bool:
    state = run(
        f"{PODMAN} inspect --format '{{{{.State.Running}}}}' {shlex.quote(container_name(user))} 2>/dev/null || true"
    )
    return state.strip() == "true"


def workspace(user: User) -> tuple[str, str]:
    """(host path, container path) of the folder code-server opens: its last argument."""
    inside = user.container.cmd[-1]
    for volume in user.container.volumes:
        host, target = volume.split(":")[:2]
        if target == inside:
            return host, inside
    raise CheckFailed(f"no volume of {container_name(user)} is mounted at {inside}, the folder code-server opens")
