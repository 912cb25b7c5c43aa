"""What `csm status` reports: nginx, and per user the container's state, health,
memory in use (podman's count), OOM kills (the kernel's count for the container's
memory cgroup), code-server's last activity and the use of their disk."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from csm.plan_types import Plan

from ..idle import restarts, signals
from . import disks, gate, idle, nginx, podman
from .host import Host
from .status_model import StackStatus, UserStatus

PROC = Path("/proc")
CGROUPS = Path("/sys/fs/cgroup")


def read(stack) -> StackStatus:
    """The status of a csm.runner.stack.Stack, as it is now."""
    running_gate = gate.SERVICE.running(stack.state_dir)
    result = StackStatus(
        nginx.running_pid(stack.state_dir), stack.http_port, stack.tls_port, running_gate[0] if running_gate else None
    )
    names = [u.container.name for u in stack.plan.users.values()]
    memory = memory_usage(stack.host, names)
    for name, user in stack.plan.users.items():
        cname = user.container.name
        info = podman.inspect(stack.host, cname)
        state = info["State"]["Status"] if info else "absent"
        running = podman.is_running(info)
        healthy = running and podman.podman(stack.host, "healthcheck", "run", cname, check=False).returncode == 0
        exit_code = info["State"].get("ExitCode") if info and not running else None
        result.users.append(
            UserStatus(
                name=name,
                container=cname,
                state=state,
                health="healthy" if healthy else ("unhealthy" if running else "-"),
                memory_bytes=memory.get(cname) if running else None,
                memory_limit_bytes=user.limits.memoryBytes,
                oom_kills=oom_kills(info) if info else None,
                last_activity=signals.heartbeat(user.socket, user.container.healthPath) if running else None,
                exit_code=exit_code,
                restarts=_restarts(stack.plan, name, info),
            )
        )
        use = disks.usage(user)
        if use:
            u = result.users[-1]
            u.disk_used_bytes, u.disk_size_bytes, u.disk_quota_bytes, u.disk_percent = (
                use.used_bytes,
                use.size_bytes,
                use.quota_bytes,
                use.percent,
            )
        idle.annotate(stack.plan, result.users[-1], info)
    return result


def _restarts(plan: Plan, name: str, info: dict | None) -> int | None:
    """podman's own restarts, plus those the idle service finished for it (see restarts.py)."""
    if not info:
        return None
    return info.get("RestartCount", 0) + restarts.count(plan, name, info["Id"])


def memory_usage(host: Host, names: list[str]) -> dict[str, int]:
    """Bytes in use per running container, from `podman stats --no-stream`."""
    running = [n for n in names if podman.is_running(podman.inspect(host, n))]
    if not running:
        return {}
    proc = podman.podman(
        host, "stats", "--no-stream", "--no-reset", "--format={{.Name}}\t{{.MemUsageBytes}}", *running, check=False
    )
    usage = {}
    for line in proc.stdout.splitlines():
        name, _, value = line.partition("\t")
        with contextlib.suppress(ValueError, AttributeError):
            usage[name] = parse_bytes(value)
    return usage


def parse_bytes(text: str) -> int:
    """podman's "123.4MiB / 3GiB" (binary units, or decimal ones like "725kB") -> bytes in use."""
    m = re.fullmatch(r"([0-9.]+)\s*([kKMGT]?i?)B", text.split("/")[0].strip())
    if m is None:
        raise ValueError(f"not a size podman prints: {text!r}")
    number, unit = m.groups()
    scale = 1024 if unit.endswith("i") else 1000
    return int(float(number) * scale ** " KMGT".index(unit[:1].upper() or " "))


def oom_kills(info: dict, proc: Path = PROC, cgroups: Path = CGROUPS) -> int | None:
    """How often the kernel's OOM killer struck in the container's memory cgroup
    (v1: memory.oom_control, v2: memory.events, both `oom_kill`), from `podman
    inspect`'s info. None when the container does not run (its cgroup went with it)
    or the count cannot be read. An exit code says nothing: 137 is any SIGKILL."""
    state = info.get("State", {})
    pid = state.get("Pid") or 0
    if not state.get("Running") or not pid:
        return None
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):  # cgroup v1
            counters = cgroups / "memory" / path.lstrip("/") / "memory.oom_control"
        elif controllers == "" and (cgroups / "cgroup.controllers").exists():  # cgroup v2
            counters = cgroups / path.lstrip("/") / "memory.events"
        else:
            continue
        with contextlib.suppress(OSError, ValueError):
            for counter in counters.read_text().splitlines():
                key, _, value = counter.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return None
