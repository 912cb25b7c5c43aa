"""The runner's background services (the gate, and the root side `csm idle serve`):
each a child process started by `csm up`, logging to <state>/logs/<name>.log, with a
pid file that records the plan it serves, so an `up` that changes nothing keeps it
running, and `csm down` stops it by that file (runner/supervisor.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csm import plan as planlib
from csm.plan_types import Plan

from ..waiting import wait_until
from . import HostNotReady, RunnerError
from .supervisor import Supervised

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

    def supervised(self, state: Path) -> Supervised:
        # Ours names our module and our stack file; the pid file records the plan it serves.
        return Supervised(self.pid_file(state), (f"{self.module} serve", str(Path(state) / "stack.json")))

    def running(self, state: Path) -> tuple[int, str] | None:
        """(pid, plan digest) of the service this state directory started, if it runs."""
        found = self.supervised(state).running()
        return (found[0], found[1][0]) if found and len(found[1]) == 1 else None

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
        self.supervised(state).record(proc.pid, plan_digest(plan))
        answered = False

        def settled() -> bool:  # it serves, or it has ended
            nonlocal answered
            answered = ready()
            return answered or proc.poll() is not None

        with contextlib.suppress(TimeoutError):
            wait_until(settled, timeout, f"the {self.name} service", interval=0.1)
        if not answered:
            self.stop(state)
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RunnerError(
                f"the {self.name} service (`csm {self.name} serve`) did not start: "
                + " / ".join(tail)
                + f" (log: {log})"
            )
        if proc.poll() is not None:
            raise RunnerError(f"the {self.name} service (`csm {self.name} serve`) stopped at once (log: {log})")
        return "started"

    def stop(self, state: Path, timeout: float = 15) -> bool:
        supervised = self.supervised(state)
        found = supervised.running()
        supervised.pid_file.unlink(missing_ok=True)
        if found:
            supervised.stop(found[0], signal.SIGTERM, timeout, signal.SIGKILL)
        return found is not None
