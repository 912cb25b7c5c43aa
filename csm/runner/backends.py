"""Who runs a user's container: the one interface idle, backup, status, reset and
restore drive it through, chosen once (csm/cli.py `backend_for`).

- `Podman`: the portable runner. podman itself starts and stops the container, which
  exists (stopped) between runs; the runner's own nginx and gate stand in front.
- `Systemd`: the NixOS host. Each container is its unit (the plan's container.unit,
  made by virtualisation.oci-containers), nginx is nginx.service and the gate is the
  plan's gate.unit. A stop through systemctl is one systemd wanted, so its
  Restart=always does not undo it in the middle of a restore or an idle stop.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from csm.plan_types import Plan, User

from . import RunnerError, nixos, podman
from .host import Host
from .status_model import StackStatus


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Backend(Protocol):
    def state(self, user: User) -> str: ...
    def running(self, user: User) -> bool: ...
    def starting(self, user: User) -> bool: ...
    def start(self, user: User, wait: bool = True) -> None: ...
    def stop(self, user: User, why: str) -> bool: ...
    def restart(self, user: User) -> None: ...
    def logs(self, user: User, follow: bool = False, tail: int | None = None) -> int: ...
    def exec(self, user: User, *argv: str) -> subprocess.CompletedProcess: ...
    def annotate(self, st: StackStatus) -> dict[str, str]: ...
    def front_lines(self, st: StackStatus) -> list[str]: ...
    def passwords_changed(self, name: str) -> str: ...


class Runner(Protocol):
    """What the portable backend asks of the runner's stack (csm.runner.stack.Stack)."""

    def wait_healthy(self, names: list[str]) -> None: ...
    def reset(self, name: str) -> None: ...
    def password_file(self, name: str) -> Path: ...
    def refresh_credentials(self) -> bool: ...


def container_logs(host: Host, user: User, follow: bool, tail: int | None) -> int:
    """podman's log of the user's container (the same on both hosts)."""
    cname = user.container.name
    if podman.inspect(host, cname) is None:
        raise RunnerError(
            f"{user.name} has no container ({cname}); the stack is down or {user.name} was reset "
            "just now: see `csm status`"
        )
    tail_args = [f"--tail={tail}"] if tail is not None else []
    return subprocess.call([host.podman, "logs", *(["--follow"] if follow else []), *tail_args, cname])


class Podman:
    """The portable runner's containers, in the stack of state_dir. `runner`: the
    stack, for what only it does (a fresh container, the gate's password copies); the
    idle service, which only starts and stops, has none."""

    def __init__(
        self,
        plan: Plan,
        state_dir: str | Path,
        host: Host | None = None,
        progress: Callable[[str], None] = _stderr,
        runner: Runner | None = None,
    ):
        self.plan, self.state_dir, self.host = plan, Path(state_dir), host or Host()
        self.progress, self._runner = progress, runner

    def _stack(self) -> Runner:
        if self._runner is None:
            raise RunnerError("this needs the runner's stack (`csm` with --state-dir)")
        return self._runner

    def state(self, user: User) -> str:
        info = podman.inspect(self.host, user.container.name)
        return info["State"]["Status"] if info else "absent"

    def running(self, user: User) -> bool:
        return podman.is_running(podman.inspect(self.host, user.container.name))

    def starting(self, user: User) -> bool:
        return False  # `podman start` has returned: not running means it stopped

    def start(self, user: User, wait: bool = True) -> None:
        # From the state directory, where conmon writes its `oom` files (see podman.py).
        podman.podman(self.host, "start", user.container.name, cwd=str(self.state_dir))
        if wait:
            self._stack().wait_healthy([user.name])

    def stop(self, user: User, why: str) -> bool:
        """Stop the container if it runs (paused counts); True if it did."""
        if not self.running(user):
            return False
        self.progress(f"stopping {user.container.name} {why}")
        podman.podman(self.host, "stop", "--time=10", user.container.name)
        return True

    def restart(self, user: User) -> None:
        self._stack().reset(user.name)

    def logs(self, user: User, follow: bool = False, tail: int | None = None) -> int:
        return container_logs(self.host, user, follow, tail)

    def exec(self, user: User, *argv: str) -> subprocess.CompletedProcess:
        return podman.podman(self.host, "exec", user.container.name, *argv, check=False)

    def annotate(self, st: StackStatus) -> dict[str, str]:
        return {}  # the runner's status already holds its nginx, gate and containers

    def front_lines(self, st: StackStatus) -> list[str]:
        ports = f"{st.http_port}" + (f", TLS on {st.tls_port}" if st.tls_port else "")
        nginx = f"running (pid {st.nginx_pid})" if st.nginx_pid else "not running"
        gate = f"running (pid {st.gate_pid})" if st.gate_pid else "not running; `csm up` starts it"
        return [f"nginx: {nginx}, port {ports}", f"gate: {gate}"]

    def passwords_changed(self, name: str) -> str:
        self._stack().password_file(name).unlink(missing_ok=True)  # a generated one is no longer valid
        if self._stack().refresh_credentials():
            return "the gate has the new password: it works now"
        return "no stack runs here; the new password applies at the next `csm up`"


class Systemd:
    """The NixOS module's units."""

    def __init__(self, plan: Plan, progress: Callable[[str], None] = _stderr):
        self.plan, self.progress = plan, progress

    def state(self, user: User) -> str:
        return nixos.active_state(user.container.unit)

    def running(self, user: User) -> bool:
        return self.state(user) in nixos.RUNNING

    def starting(self, user: User) -> bool:
        """The unit is still loading the image or creating the container."""
        return self.state(user) in ("activating", "reloading")

    def start(self, user: User, wait: bool = True) -> None:
        # The unit is active only once the container passes its health check
        # (podman.sdnotify = "healthy"): a blocking start returns when she can log in.
        if wait:
            self.progress(f"starting {user.container.unit} (it is ready when code-server passes its health check)")
        nixos.systemctl("start", *([] if wait else ["--no-block"]), user.container.unit)

    def stop(self, user: User, why: str) -> bool:
        if not self.running(user):
            return False
        self.progress(f"stopping {user.container.unit} {why}")
        nixos.systemctl("stop", user.container.unit)
        return True

    def restart(self, user: User) -> None:
        """A fresh container: the unit removes the old one and runs a new one."""
        self.progress(f"restarting {user.container.unit}")
        nixos.systemctl("restart", user.container.unit)

    def logs(self, user: User, follow: bool = False, tail: int | None = None) -> int:
        return container_logs(Host(), user, follow, tail)

    def exec(self, user: User, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", user.container.name, *argv], capture_output=True, text=True)

    def annotate(self, st: StackStatus) -> dict[str, str]:
        """systemd's view into the status: nginx's and the gate's pids, each unit's
        state and restarts. Returns the units' states by user."""
        st.nginx_pid, st.http_port = nixos.main_pid(nixos.NGINX_UNIT), 80
        gate_unit = self.plan.gate.unit
        st.gate_pid = nixos.main_pid(gate_unit) if nixos.active_state(gate_unit) == "active" else None
        st.tls_port = 443 if self.plan.tls.enable else None
        for u in st.users:
            u.restarts = nixos.restarts(self.plan.users[u.name].container.unit)
        return {u.name: self.state(self.plan.users[u.name]) for u in st.users}

    def front_lines(self, st: StackStatus) -> list[str]:
        ports = f"{st.http_port}" + (f", TLS on {st.tls_port}" if st.tls_port else "")
        nginx = f"running (pid {st.nginx_pid})" if st.nginx_pid else "not running"
        return [f"nginx ({nixos.NGINX_UNIT}): {nginx}, port {ports}", nixos.gate_line(self.plan)]

    def passwords_changed(self, name: str) -> str:
        unit = self.plan.gate.unit
        return {
            "restarted": f"{unit} was restarted (it reads the password files at its start): the new password works now",
            "started": f"{unit} had failed and was started: the new password works now",
            "stopped": f"{unit} is stopped: the new password applies when it starts",
        }[nixos.restart_gate(self.plan)]
