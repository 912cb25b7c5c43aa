"""A plan container as `podman run` arguments, and the few podman calls the runner makes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from typing import TypeGuard

from csm.plan_types import User

from . import HostNotReady, RunnerError
from .host import Host

STACK_LABEL = "io.code-server-multi.stack"  # the runner's: which state directory owns it
SPEC_LABEL = "io.code-server-multi.spec"  # the runner's: digest of the argv, to spot changes


def run_argv(user: User, host: Host, stack: str, env_file: str) -> list[str]:
    """`podman run` for one plan user. Non-secret environment arrives through
    env_file (written from container.environment), after the plan's env files, so
    that it wins like `-e` would. The spec label is added by with_spec_label."""
    c = user.container
    argv = [
        host.podman,
        "run",
        "-d",
        f"--name={c.name}",
        "--pull=never",
        *host.run_args,
        *c.extraOptions,
        f"--label={STACK_LABEL}={stack}",
    ]
    argv += [f"--publish={p}" for p in c.ports]
    argv += [f"--volume={v}" for v in c.volumes]
    argv += [f"--env-file={f}" for f in c.environmentFiles] + [f"--env-file={env_file}"]
    argv += [f"--restart={c.restart}", f"--user={c.user}", c.image, *c.cmd]
    return argv


def network_spec(user: User) -> str:
    return hashlib.sha256(json.dumps(user.network.createOptions).encode()).hexdigest()[:32]


def network_create_argv(user: User, host: Host, stack: str) -> list[str]:
    """`podman network create` for the user's own network; the spec label lets a
    later `up` see whether the plan's options changed."""
    net = user.network
    return [
        host.podman,
        "network",
        "create",
        *net.createOptions,
        f"--label={STACK_LABEL}={stack}",
        f"--label={SPEC_LABEL}={network_spec(user)}",
        net.name,
    ]


def inspect_network(host: Host, name: str) -> dict | None:
    return inspect(host, name, kind="network")


def network_labels(info: dict | None) -> dict:
    return (info or {}).get("labels") or {}


def ensure_network(host: Host, user: User, stack: str) -> str:
    """Create the user's network, or recreate it if the plan's options changed
    (which removes the container on it: `up` then creates it anew).
    Returns unchanged, created or recreated."""
    name = user.network.name
    info = inspect_network(host, name)
    if info and network_labels(info).get(SPEC_LABEL) == network_spec(user):
        return "unchanged"
    if info:
        remove_network(host, name)
    podman(host, *network_create_argv(user, host, stack)[1:])
    return "recreated" if info else "created"


def networks(host: Host, label: str) -> list[str]:
    """Names of the networks carrying a label ("key=value")."""
    proc = podman(host, "network", "ls", "--format={{.Name}}", f"--filter=label={label}")
    return [n for n in proc.stdout.split() if n]


def remove_network(host: Host, name: str) -> None:
    """Remove a network and any container still on it."""
    podman(host, "network", "rm", "--force", name, check=False)


def spec_digest(argv: list[str], env_content: str, image_id: str) -> str:
    """What the container was made from: its argv, its non-secret environment and
    the image the name stood for (a rebuilt image keeps its name, not its id)."""
    return hashlib.sha256(json.dumps([argv, env_content, image_id]).encode()).hexdigest()[:32]


def with_spec_label(argv: list[str], digest: str) -> list[str]:
    at = argv.index("--pull=never") + 1
    return argv[:at] + [f"--label={SPEC_LABEL}={digest}"] + argv[at:]


def require(host: Host) -> None:
    if not shutil.which(host.podman):
        raise HostNotReady(
            "podman is not installed; run scripts/install-deps (Debian: apt-get install podman runc uidmap)"
        )


def podman(
    host: Host, *args: str, check: bool = True, cwd: str | os.PathLike | None = None
) -> subprocess.CompletedProcess:
    """Run podman. Give `cwd` (the stack's state directory) when it starts a container:
    its conmon keeps that working directory and writes a file `oom` there whenever the
    kernel kills a process of the container."""
    proc = subprocess.run([host.podman, *args], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise RunnerError(f"podman {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def image_id(host: Host, image: str) -> str:
    return podman(host, "image", "inspect", "--format={{.Id}}", image).stdout.strip()


def image_exists(host: Host, image: str) -> bool:
    return podman(host, "image", "exists", image, check=False).returncode == 0


def inspect(host: Host, name: str, kind: str = "container") -> dict | None:
    """podman's record of a container (or a network, ...), None if there is none."""
    proc = podman(host, kind, "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout or "[]")
    return found[0] if found else None


def containers(host: Host, label: str) -> list[dict]:
    """Containers (running or not) carrying a label ("key=value" or "key")."""
    proc = podman(host, "ps", "-a", "--format=json", f"--filter=label={label}")
    return json.loads(proc.stdout or "[]")


def labels(info: dict) -> dict:
    return info.get("Config", {}).get("Labels") or {}


def published_ports(info: dict) -> set[int]:
    ports = info.get("HostConfig", {}).get("PortBindings") or {}
    return {int(b["HostPort"]) for bindings in ports.values() for b in bindings or [] if b.get("HostPort")}


def last_exit_code(host: Host, info: dict) -> int | None:
    """The exit code of the container's last run that ended. After its restart policy
    fired, inspect shows the new run's (0); podman's events keep the one that died."""
    proc = podman(
        host,
        "events",
        "--stream=false",
        f"--since={info['Created']}",
        "--filter=event=died",
        f"--filter=container={info['Id']}",
        "--format={{.ContainerExitCode}}",
        check=False,
    )
    codes = proc.stdout.split()
    return int(codes[-1]) if codes and codes[-1].lstrip("-").isdigit() else info["State"].get("ExitCode")


def is_running(info: dict | None) -> TypeGuard[dict]:
    return info is not None and bool(info["State"].get("Running")) and not info["State"].get("Paused")


def remove(host: Host, name: str, attempts: int = 5) -> None:
    """Stop and remove a container, and make sure it is gone. `podman rm --force`
    fails now and then while podman itself still works on the container (an exec,
    a stop under way): try again, and say so if it never goes."""
    for attempt in range(attempts):
        proc = podman(host, "rm", "--force", "--ignore", "--time=10", name, check=False)
        if proc.returncode == 0 and inspect(host, name) is None:
            return
        time.sleep(1 + attempt)
    raise RunnerError(
        f"podman could not remove container {name}: "
        f"{proc.stderr.strip() or proc.stdout.strip() or 'it is still there'}; "
        f"try `podman rm --force {name}`"
    )
