"""What a running container's processes hold, read from the host's /proc and the
container's memory cgroup (benchmarks; v1 and v2 cgroups).

    profile = memory.container_profile("csm-bench-mem-base")
    profile["cgroup_mib"], profile["roles"]["extension host"]["pss_mib"]

Roles are told apart by command line: VS Code starts its helpers as
`node .../bootstrap-fork --type=<role>`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

PROC = Path("/proc")
CGROUPS = Path("/sys/fs/cgroup")
MIB = 2**20

ROLES = [  # first match wins
    (r"--type=extensionHost", "extension host"),
    (r"--type=ptyHost", "pty host"),
    (r"--type=fileWatcher", "file watcher"),
    (r"tsserver", "TypeScript server"),
    (r"--node-ipc|--stdio", "language servers"),
    (r"^\S*opencode", "opencode"),
    (r"^\S*\b(ba|da|z)?sh\b", "shell"),
    (r"^\S*tini\b", "tini"),
    (r"out/node/entry|code-server", "code-server server"),
]


def role(cmdline: str) -> str:
    for pattern, name in ROLES:
        if re.search(pattern, cmdline):
            return name
    return "other: " + cmdline.split(" ")[0].rsplit("/", 1)[-1][:30]


def container_pid(name: str) -> int:
    out = subprocess.run(["podman", "container", "inspect", name], check=True, capture_output=True, text=True).stdout
    return json.loads(out)[0]["State"]["Pid"]


def memory_cgroup(pid: int) -> Path:
    """The directory of the memory cgroup `pid` is in (v1 `memory` or the v2 unified one)."""
    for line in (PROC / str(pid) / "cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUPS / "memory" / path.lstrip("/")
        if controllers == "" and (CGROUPS / "cgroup.controllers").exists():
            return CGROUPS / path.lstrip("/")
    raise RuntimeError(f"no memory cgroup for pid {pid}")


def cgroup_figures(cgroup: Path) -> dict[str, float]:
    """Usage and its anonymous part in MiB. podman stats shows usage minus the
    inactive file cache; "anon" is what cannot be dropped (v1 total_rss, v2 anon)."""
    stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
    if (cgroup / "memory.usage_in_bytes").exists():
        usage = int((cgroup / "memory.usage_in_bytes").read_text())
        anon, inactive = int(stat["total_rss"]), int(stat["total_inactive_file"])
    else:
        usage = int((cgroup / "memory.current").read_text())
        anon, inactive = int(stat["anon"]), int(stat["inactive_file"])
    return {"cgroup_mib": (usage - inactive) / MIB, "cgroup_anon_mib": anon / MIB}


def kib_field(text: str, field: str) -> int:
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def process(pid: int) -> dict | None:
    """RSS and PSS of one process in MiB (None if it has gone meanwhile)."""
    try:
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        status = (PROC / str(pid) / "status").read_text()
        rollup = (PROC / str(pid) / "smaps_rollup").read_text()
        environ = (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    node_options = next((e.decode(errors="replace")[13:] for e in environ if e.startswith(b"NODE_OPTIONS=")), None)
    return {
        "pid": pid,
        "cmdline": cmdline[:200],
        "role": role(cmdline),
        "node_options": node_options,
        "rss_mib": kib_field(status, "VmRSS") / 1024,
        "pss_mib": kib_field(rollup, "Pss") / 1024,
    }


def container_profile(name: str) -> dict:
    """The container's cgroup figures, each process, and the sums per role."""
    cgroup = memory_cgroup(container_pid(name))
    pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    procs = [p for p in map(process, pids) if p]
    roles: dict[str, dict] = {}
    for p in procs:
        r = roles.setdefault(p["role"], {"count": 0, "rss_mib": 0.0, "pss_mib": 0.0})
        r["count"] += 1
        r["rss_mib"] += p["rss_mib"]
        r["pss_mib"] += p["pss_mib"]
    return {**cgroup_figures(cgroup), "pss_mib": sum(p["pss_mib"] for p in procs), "roles": roles, "processes": procs}


def table(profiles: dict[str, dict]) -> str:
    """Per role PSS side by side, one column per profile, then the totals."""
    names = list(profiles)
    roles = sorted({r for p in profiles.values() for r in p["roles"]})
    width = max([len(r) for r in roles] + [22])
    lines = [f"{'MiB':<{width}} " + " ".join(f"{n[:12]:>12}" for n in names)]
    for r in roles:
        cells = [profiles[n]["roles"].get(r, {}).get("pss_mib", 0.0) for n in names]
        lines.append(f"{r:<{width}} " + " ".join(f"{c:12.1f}" for c in cells))
    for key, label in (
        ("pss_mib", "sum of PSS"),
        ("cgroup_anon_mib", "cgroup anon"),
        ("cgroup_mib", "cgroup (podman stats)"),
    ):
        lines.append(f"{label:<{width}} " + " ".join(f"{profiles[n][key]:12.1f}" for n in names))
    return "\n".join(lines)
