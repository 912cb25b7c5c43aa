"""The NixOS host: what the module runs, seen and driven through systemd.

On NixOS the module's units own the containers (`virtualisation.oci-containers`
names each one `podman-<container>.service`, restarted by systemd) and nginx
(`nginx.service`); `csm ... --plan /etc/code-server-multi/plan.json` goes through
them instead of the portable runner's own nginx and `podman start`.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Callable

from . import HostNotReady, RunnerError

NGINX_UNIT = "nginx.service"


def unit(user: dict) -> str:
    """The systemd unit virtualisation.oci-containers makes for a user's container."""
    return f"podman-{user['container']['name']}.service"


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("systemctl")
    if exe is None:
        raise HostNotReady("systemctl is not installed: --plan is for the NixOS host the module runs on")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RunnerError(f"systemctl {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}; "
                          f"see `journalctl -u {args[-1]}`")
    return proc


def active_state(name: str) -> str:
    """active, activating, inactive, failed, ... (systemctl is-active)."""
    return systemctl("is-active", name, check=False).stdout.strip() or "unknown"


def main_pid(name: str) -> int | None:
    out = systemctl("show", "--property=MainPID", "--value", name, check=False).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def restarts(name: str) -> int | None:
    """How often systemd restarted the unit (each time with a new container, so
    podman's own RestartCount is always 0 on NixOS)."""
    out = systemctl("show", "--property=NRestarts", "--value", name, check=False).stdout.strip()
    return int(out) if out.isdigit() else None


class Units:
    """Stops and starts users' containers through their units, so systemd's
    Restart=always never brings one back in the middle of a restore."""

    def __init__(self, progress: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)):
        self.progress = progress

    def stop(self, user: dict) -> bool:
        """Stop the user's unit; True if it was running (and is to be started again)."""
        if active_state(unit(user)) not in ("active", "activating", "reloading"):
            return False
        self.progress(f"stopping {unit(user)} to restore {user['name']}")
        systemctl("stop", unit(user))
        return True

    def start(self, user: dict) -> None:
        # The unit is ready only once the container passes its health check
        # (podman.sdnotify = "healthy"), so this returns when the user can log in.
        self.progress(f"starting {unit(user)} (it is ready when code-server passes its health check)")
        systemctl("start", unit(user))

    def restart_if_running(self, user: dict) -> bool:
        was = active_state(unit(user)) in ("active", "activating", "reloading")
        if was:
            systemctl("try-restart", unit(user))
        return was

    def restart(self, user: dict) -> None:
        """A fresh container: the unit removes the old one and runs a new one, and is
        ready when it passes its health check."""
        self.progress(f"restarting {unit(user)}")
        systemctl("restart", unit(user))
