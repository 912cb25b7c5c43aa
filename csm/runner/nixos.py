"""The NixOS host: what the module runs, seen and driven through systemd.

On NixOS the module's units own the containers (`virtualisation.oci-containers`
names each one by the plan's container.unit, restarted by systemd), nginx
(`nginx.service`) and the login gate (the plan's gate.unit, running as its own
account with each user's password file as a systemd credential); `csm ... --plan
/etc/code-server-multi/plan.json` goes through them instead of the portable runner's
own nginx, gate and `podman start`.
"""

from __future__ import annotations

import shutil
import subprocess

from csm.plan_types import Plan

from . import HostNotReady, RunnerError

NGINX_UNIT = "nginx.service"


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = shutil.which("systemctl")
    if exe is None:
        raise HostNotReady("systemctl is not installed: --plan is for the NixOS host the module runs on")
    proc = subprocess.run([exe, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RunnerError(
            f"systemctl {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}; see `journalctl -u {args[-1]}`"
        )
    return proc


def active_state(name: str) -> str:
    """active, activating, inactive, failed, ... (systemctl is-active)."""
    return systemctl("is-active", name, check=False).stdout.strip() or "unknown"


def main_pid(name: str) -> int | None:
    out = systemctl("show", "--property=MainPID", "--value", name, check=False).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


RUNNING = ("active", "activating", "reloading")


def gate_unit(plan: Plan) -> str:
    """The login gate's unit (gate.nix)."""
    return plan.gate.unit


def gate_line(plan: Plan) -> str:
    """One line of `csm status` for the gate, like nginx's."""
    name = gate_unit(plan)
    state, pid = active_state(name), main_pid(name)
    if state == "active":
        return f"gate ({name}): running (pid {pid})" if pid else f"gate ({name}): running"
    hint = "" if state == "inactive" else f"; see `journalctl -u {name}`"
    return f"gate ({name}): not running ({state}){hint}"


def restart_gate(plan: Plan) -> str:
    """After a password file changed: the gate reads them only at its start (systemd
    copies each into its credentials then; nothing refreshes them while it runs).
    Returns what happened: "restarted" (it was running, or retrying its start, e.g. for
    a password file that did not exist yet), "started" (it had failed), or "stopped"
    (an admin stopped it: left so; the new password applies when it starts)."""
    name = gate_unit(plan)
    state = active_state(name)
    if state in RUNNING:
        systemctl("try-restart", name)
        return "restarted"
    if state == "failed":
        systemctl("restart", name)
        return "started"
    return "stopped"


def restarts(name: str) -> int | None:
    """How often systemd restarted the unit (each time with a new container, so
    podman's own RestartCount is always 0 on NixOS)."""
    out = systemctl("show", "--property=NRestarts", "--value", name, check=False).stdout.strip()
    return int(out) if out.isdigit() else None
