"""What `csm status` reports, as data (csm/runner/status.py reads it; a backend
adds its own view, csm/runner/backends.py)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UserStatus:
    name: str
    container: str
    state: str  # running, exited, paused, created, absent
    health: str  # healthy, unhealthy, or "-" when not running
    memory_bytes: int | None
    memory_limit_bytes: int
    oom_kills: int | None  # None: not running, or the count is unreadable
    last_activity: float | None  # epoch seconds of code-server's last heartbeat
    exit_code: int | None = None
    restarts: int | None = None  # times it was restarted after code-server died
    activity: str = "-"  # running, stopped-idle, stopped-by-admin (runner/idle.py)
    since: float | None = None  # epoch seconds it has been so
    disk_used_bytes: int | None = None  # on the user's disk; None: no disk (no quota)
    disk_size_bytes: int | None = None  # what the disk offers (the quota less ext4's bookkeeping)
    disk_quota_bytes: int | None = None
    disk_percent: int | None = None


@dataclass
class StackStatus:
    nginx_pid: int | None
    http_port: int
    tls_port: int | None
    gate_pid: int | None = None  # the login gate (nobody logs in without it)
    users: list[UserStatus] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return (
            self.nginx_pid is not None
            and self.gate_pid is not None
            and all(u.health == "healthy" or u.activity.startswith("stopped-idle") for u in self.users)
        )
