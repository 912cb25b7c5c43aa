"""What the idle decision reads, the same on both paths: the container's state from
podman, its open connections and CPU time from the kernel, and code-server's own
heartbeat from its health path, asked on its Unix socket."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import TypeGuard

from csm.plan_types import User

from .decision import Sample

CONNECTED = "03"  # /proc/net/unix: SS_CONNECTED


def inspect(podman: str, container: str) -> dict | None:
    proc = subprocess.run([podman, "container", "inspect", container], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    found = json.loads(proc.stdout or "[]")
    return found[0] if found else None


def running(info: dict | None) -> TypeGuard[dict]:
    return info is not None and bool(info["State"].get("Running")) and not info["State"].get("Paused")


def parse_time(text: str | None) -> float | None:
    """podman's "2026-12-01T14:35:01.123456789Z" or "...+00:00" -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?", text or "")
    if not m or m.group(1).startswith("0001"):
        return None
    zone = m.group(2) or "Z"
    return dt.datetime.fromisoformat(m.group(1) + ("+00:00" if zone == "Z" else zone)).timestamp()


def connections(pid: int, socket_path: str) -> int:
    """Open connections to code-server's Unix socket (its path inside the container),
    counted in the container's own network namespace: /proc/<pid>/net/unix lists each
    accepted connection with the listener's path, in state 03 (connected)."""
    try:
        lines = Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(
        1 for line in lines if len(fields := line.split()) >= 8 and fields[5] == CONNECTED and fields[7] == socket_path
    )


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


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 to a Unix socket (code-server's); Host is "localhost"."""

    def __init__(self, socket_path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def unix_get(socket_path: str, path: str, timeout: float = 3) -> tuple[int, bytes]:
    """GET path from an HTTP server on a Unix socket: (status, body); OSError if none answers."""
    conn = UnixConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read(65536)
    except http.client.HTTPException as e:
        raise OSError(f"{socket_path}: {e}") from e
    finally:
        conn.close()


def heartbeat(socket_path: str, health_path: str) -> float | None:
    """code-server's last heartbeat (epoch seconds): it beats on every request but
    /healthz, and every minute while a connection is open."""
    try:
        beat = json.loads(unix_get(socket_path, health_path)[1]).get("lastHeartbeat")
    except (OSError, ValueError, AttributeError):
        return None
    return beat / 1000 if beat else None


def healthy(socket_path: str, health_path: str, timeout: float = 1) -> bool:
    """code-server answers its health check (what the starting page waits for)."""
    try:
        return unix_get(socket_path, health_path, timeout)[0] == 200
    except OSError:
        return False


def sample(info: dict, user: User) -> Sample:
    pid = info["State"].get("Pid") or 0
    c = user.container
    return Sample(
        at=time.time(),
        connections=connections(pid, c.socket),
        heartbeat=heartbeat(user.socket, c.healthPath),
        cpu_seconds=cpu_seconds(pid),
    )
