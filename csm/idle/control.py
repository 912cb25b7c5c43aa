"""Start and stop one user's container: the only part of idle stop and wake that
differs between the two paths."""

from __future__ import annotations

import subprocess

from csm.plan_types import User


class ControlError(Exception):
    pass


def _run(argv: list[str], cwd: str | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise ControlError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")


class Podman:
    """The portable runner: the container exists (stopped) between runs."""

    def __init__(self, podman: str = "podman", state_dir: str | None = None):
        self.podman, self.state_dir = podman, state_dir

    def start(self, user: User) -> None:
        # From the state directory, where conmon writes its `oom` files (see runner/podman.py).
        _run([self.podman, "start", user.container.name], cwd=self.state_dir)

    def stop(self, user: User) -> None:
        _run([self.podman, "stop", "--time=10", user.container.name])

    def starting(self, user: User) -> bool:
        return False  # `podman start` has returned: not running means it stopped


class Systemd:
    """NixOS: the container is its unit (the plan's container.unit). A stop through
    systemctl is a stop systemd wanted, so Restart=always does not undo it."""

    def unit(self, user: User) -> str:
        return user.container.unit

    def start(self, user: User) -> None:
        # --no-block: the unit becomes active only when healthy; the waker watches that itself.
        _run(["systemctl", "start", "--no-block", self.unit(user)])

    def stop(self, user: User) -> None:
        _run(["systemctl", "stop", self.unit(user)])

    def starting(self, user: User) -> bool:
        """The unit is still loading the image or creating the container."""
        proc = subprocess.run(["systemctl", "is-active", self.unit(user)], capture_output=True, text=True)
        return proc.stdout.strip() in ("activating", "reloading")
