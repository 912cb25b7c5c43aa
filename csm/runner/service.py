"""The runner's background services (the gate, and the root side `csm idle serve`):
each a child process started by `csm up`, logging to <state>/logs/<name>.log, with a
pid file that records the plan it serves, so an `up` that changes nothing keeps it
running, and `csm down` stops it by that file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csm import plan as planlib
from csm.plan_types import Plan

from . import HostNotReady, RunnerError

SOURCE = str(Path(__file__).resolve().parents[2])  # this checkout's csm, for `python -m`


def interpreter(user: str | None) -> str:
    """Root's services run on this interpreter; another account's on the host's own
    python3 of the same version (a virtualenv's usually lives where only root reaches)."""
    if user is None:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = shutil.which(version, path="/usr/bin:/bin") or shutil.which("python3", path="/usr/bin:/bin")
    if found is None:
        raise HostNotReady(
            f"no {version} in /usr/bin for the {user} account to run the gate on; "
            "run scripts/install-deps (Debian: apt-get install python3)"
        )
    return found


def python_path(user: str | None) -> str:
    """This checkout, and for another account also the packages this interpreter has."""
    if user is None:
        return SOURCE
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return os.pathsep.join([SOURCE, *sorted(paths)])


def plan_digest(plan: Plan) -> str:
    return hashlib.sha256(json.dumps(planlib.to_json(plan), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Service:
    name: str  # "gate", "idle": the pid and log files' names
    module: str  # what `python -m` runs: "csm.gate", "csm.idle"

    def pid_file(self, state: Path) -> Path:
        return Path(state) / f"{self.name}.pid"

    def log(self, state: Path) -> Path:
        return Path(state) / "logs" / f"{self.name}.log"

    def running(self, state: Path) -> tuple[int, str] | None:
        """(pid, plan digest) of the service this state directory started, if it runs."""
        try:
            pid_text, digest = self.pid_file(state).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        # A reused pid is some other program's: ours names our module and our stack file.
        return (pid, digest) if self._is_ours(pid, state) else None

    def _is_ours(self, pid: int, state: Path) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            return False
        return f"{self.module} serve".encode() in cmdline and str(Path(state) / "stack.json").encode() in cmdline

    def start(
        self,
        state: Path,
        plan: Plan,
        args: list[str],
        ready: Callable[[], bool],
        user: str | None = None,
        timeout: float = 15,
    ) -> str:
        """Start (or restart, for a new plan) the service; "unchanged" if it runs this
        plan. `ready` says when it serves; `user` runs it as that account."""
        current = self.running(state)
        if current and current[1] == plan_digest(plan):
            return "unchanged"
        self.stop(state)
        log = self.log(state)
        log.parent.mkdir(mode=0o750, exist_ok=True)  # root's: nginx.prepare says why
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [interpreter(user), "-m", self.module, "serve", "--plan", str(Path(state) / "stack.json"), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd=state,
                # Another account gets nothing of root's environment.
                env=({"PATH": "/usr/bin:/bin"} if user else dict(os.environ)) | {"PYTHONPATH": python_path(user)},
                user=user,
                group=user,
                extra_groups=[] if user else None,
                umask=0o077 if user else -1,
            )
        self.pid_file(state).write_text(f"{proc.pid} {plan_digest(plan)}\n")
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop(state)
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RunnerError(
                    f"the {self.name} service (`csm {self.name} serve`) did not start: "
                    + " / ".join(tail)
                    + f" (log: {log})"
                )
            time.sleep(0.1)
        if proc.poll() is not None:
            raise RunnerError(f"the {self.name} service (`csm {self.name} serve`) stopped at once (log: {log})")
        return "started"

    def stop(self, state: Path, timeout: float = 15) -> bool:
        found = self.running(state)
        self.pid_file(state).unlink(missing_ok=True)
        if not found:
            return False
        pid = found[0]
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:  # our own child when up() started it in this process: reap it
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if self._is_ours(pid, state):
            os.kill(pid, signal.SIGKILL)
        return True
