"""What this particular host needs from podman, kept out of the plan.

The plan describes what every deployment runs; a host may need extra flags to run
it at all (an old podman on hybrid cgroups, a sandbox without CAP_SYS_RESOURCE).
Those flags are detected here and added by the runner only.
"""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CAP_SYS_RESOURCE = 24
RLIMIT_CAP = 32768


def _unified_cgroup_controllers() -> str:
    try:
        return Path("/sys/fs/cgroup/cgroup.controllers").read_text().strip()
    except OSError:
        return ""


def _has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


@dataclass(frozen=True)
class Host:
    """Host-specific podman flags, added to every `podman run` the runner issues."""

    podman: str = "podman"
    run_args: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def detect(cls) -> Host:
        args: list[str] = []
        # crun fails on hybrid cgroups (v1 with an empty v2 mount); runc copes.
        if not _unified_cgroup_controllers() and shutil.which("runc"):
            args += ["--runtime", "runc"]
        # Without CAP_SYS_RESOURCE podman cannot raise rlimits to its defaults:
        # ask for what this process may grant instead, capped where sandboxes
        # refuse more (seen: 65536 refused, 32768 granted).
        if not _has_capability(CAP_SYS_RESOURCE):
            for flag, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
                hard = resource.getrlimit(limit)[1]
                value = RLIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, RLIMIT_CAP)
                args += ["--ulimit", f"{flag}={value}:{value}"]
        extra = os.environ.get("CSM_PODMAN_RUN_ARGS", "").split()
        return cls(run_args=tuple(args + extra))
