"""Who was stopped for being idle, and when: one small JSON file per user in the
plan's idle.stateDir. The waker starts only users marked here (a container an admin
stopped stays stopped), `csm up` leaves them stopped, `csm status` shows them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from csm.plan_types import Plan


def _path(plan: Plan, name: str) -> Path:
    return Path(plan.idle.stateDir) / f"{name}.json"


def read(plan: Plan, name: str) -> dict | None:
    """{"stoppedAt", "lastActivity", optionally "failedAt"} or None."""
    try:
        return json.loads(_path(plan, name).read_text())
    except (OSError, ValueError):
        return None


def write(plan: Plan, name: str, **fields) -> None:
    path = _path(plan, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = (read(plan, name) or {}) | fields
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, path)


def clear(plan: Plan, name: str) -> None:
    _path(plan, name).unlink(missing_ok=True)
