"""What the idle decision reads, the same on both paths: the container's state from
podman, its open connections and CPU time from the kernel, and code-server's own
heartbeat from /healthz."""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path

import requests

from ..checks import http
from .decision import Sample

CODE_SERVER_PORT = 8080   # inside the container (plan.nix: containerPort)
ESTABLISHED = "01"


def inspect(podman: str, container: str) -> dict | None:
    proc = subprocess.run([podman, "container", "inspect", container], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout or "[]")
    return found[0] if found else None


def running(info: dict | None) -> bool:
    return bool(info) and info["State"].get("Running", False) and not info["State"].get("Paused", False)


def parse_time(text: str | None) -> float | None:
    """podman's "2026-12-01T14:35:01.123456789Z" or "...+00:00" -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", text or "")
    if not m or m.group(1).startswith("0001"):
        return None
    zone = m.group(2) or "Z"
    return dt.datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone)).timestamp()


def connections(pid: int, port: int = CODE_SERVER_PORT) -> int:
    """Established TCP connections to code-server, counted in the container's own
    network namespace (so it does not matter how the port is published)."""
    count = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def cpu_seconds(pid: int) -> float | None:
    """CPU time used by the container's cgroup (cgroup v1 cpuacct or v2 cpu.stat)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        try:
            if "cpuacct" in controllers.split(","):
                for mount in ("cpuacct", "cpu,cpuacct"):
                    usage = Path("/sys/fs/cgroup", mount, rel, "cpuacct.usage")
                    if usage.exists():
                        return int(usage.read_text()) / 1e9
            elif controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
                for stat in Path("/sys/fs/cgroup", rel, "cpu.stat").read_text().splitlines():
                    key, _, value = stat.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
        except (OSError, ValueError):
            continue
    return None


def heartbeat(port: int) -> float | None:
    """code-server's last heartbeat (epoch seconds): it beats on every request but
    /healthz, and every minute while a connection is open."""
    try:
        beat = requests.get(f"http://127.0.0.1:{port}{http.health_path()}", timeout=3).json().get("lastHeartbeat")
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return beat / 1000 if beat else None


def healthy(port: int, timeout: float = 1) -> bool:
    """code-server answers its health check (what the starting page waits for). A real
    answer takes milliseconds; a starting container's port can hold a request forever."""
    try:
        return requests.get(f"http://127.0.0.1:{port}{http.health_path()}", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def sample(info: dict, port: int) -> Sample:
    pid = info["State"].get("Pid") or 0
    return Sample(at=time.time(), connections=connections(pid), heartbeat=heartbeat(port),
                  cpu_seconds=cpu_seconds(pid))
