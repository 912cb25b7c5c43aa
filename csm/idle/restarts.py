"""Finish the restarts podman begins and leaves half-done (the portable runner only;
on NixOS systemd restarts the unit).

A container whose code-server dies is restarted by podman, following the plan's
restart policy. podman 4.3 with CNI networking (Debian 12's) stops half-way for a
container with a uid map: the CNI plugin refuses the address the dead run still
holds, and the container is left "created" with its RestartCount raised. A plain
`podman start` works then. The service looks for that state every few seconds,
starts the container, and counts the restart itself, since a manual start resets
podman's RestartCount. With a podman that restarts fully, it never acts.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

from csm.plan_types import Plan

from ..runner import RunnerError
from . import signals

log = logging.getLogger("csm.idle")
CHECK_SECONDS = 3
BACKOFF_WINDOW = 600  # seconds: restarts this recent make the next one wait longer
BACKOFF_MAX = 300
COUNTS_FILE = "restarts.json"


def half_restarted(info: dict) -> bool:
    """podman's restart policy fired (RestartCount > 0) and left the container created."""
    return info["State"].get("Status") == "created" and info.get("RestartCount", 0) > 0


class Restarter:
    """Starts the users' containers podman left half-restarted. One that keeps dying is
    not started every few seconds forever: each restart within BACKOFF_WINDOW makes
    the next wait twice as long (6 s, 12 s, ... up to 5 minutes)."""

    def __init__(self, plan: Plan, control, podman: str = "podman"):
        self.plan, self.control, self.podman = plan, control, podman
        self._recent: dict[str, list[float]] = {}  # name -> monotonic times of restarts tried

    def finish(self, skip=lambda name: False) -> list[str]:
        """One round; `skip(name)` for users whose start is someone else's (the waker's);
        the names of the users restarted."""
        names = {u.container.name: name for name, u in self.plan.users.items()}
        # One cheap listing each round; only containers it names are inspected.
        proc = subprocess.run(
            [self.podman, "ps", "--all", "--filter", "status=created", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
        )
        done = []
        for cname in sorted(set(proc.stdout.split()) & names.keys()):
            name = names[cname]
            info = signals.inspect(self.podman, cname)
            if not info or not half_restarted(info) or skip(name) or self._backing_off(name):
                continue
            self._recent[name].append(time.monotonic())
            try:
                self.control.start(self.plan.users[name], wait=False)
            except RunnerError as e:
                log.error("could not finish the restart of %s: %s", name, e)
                continue
            _record(self.plan, name, info["Id"])
            log.info("restarted %s: its code-server had died and podman left the restart half-done", name)
            done.append(name)
        return done

    def _backing_off(self, name: str) -> bool:
        now = time.monotonic()
        recent = self._recent[name] = [t for t in self._recent.get(name, []) if now - t < BACKOFF_WINDOW]
        return bool(recent) and now - recent[-1] < min(BACKOFF_MAX, CHECK_SECONDS * 2 ** len(recent))


def _path(plan: Plan) -> Path:
    return Path(plan.idle.stateDir) / COUNTS_FILE


def _read(plan: Plan) -> dict:
    try:
        return json.loads(_path(plan).read_text())
    except (OSError, ValueError, KeyError):
        return {}


def _record(plan: Plan, name: str, container_id: str) -> None:
    counts = _read(plan)
    mine = counts.get(name, {})
    counts[name] = {"id": container_id, "count": (mine.get("count", 0) if mine.get("id") == container_id else 0) + 1}
    path = _path(plan)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts) + "\n")
    os.replace(tmp, path)


def count(plan: Plan, name: str, container_id: str) -> int:
    """Restarts this service finished for this container (a new container starts at 0)."""
    mine = _read(plan).get(name, {})
    return mine.get("count", 0) if mine.get("id") == container_id else 0
