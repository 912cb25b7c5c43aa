"""What is mounted where, as the kernel says it (/proc/self/mountinfo, this mount
namespace), which file is behind a loop device, and the shared workspaceBase the
users' disks are mounted below: what disks.py needs of the host's mounts."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import RunnerError


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline and \\ octal-escaped)."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


@dataclass
class Mount:
    point: str
    root: str  # the directory of its file system that is mounted there (a bind: not "/")
    device: str
    shared: bool  # mounts and unmounts below it reach every copy of it


def mounts() -> list[Mount]:
    """This mount namespace's mounts, in mount order."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        f = fields.split()
        out.append(
            Mount(_unescape(f[4]), _unescape(f[3]), rest.split()[1], any(o.startswith("shared:") for o in f[6:]))
        )
    return out


def mount_at(path: str | os.PathLike) -> Mount | None:
    """The mount in effect at exactly path (the last one mounted there), or None."""
    path = os.path.abspath(path)
    return next((m for m in reversed(mounts()) if m.point == path), None)


def covering(path: str) -> Mount:
    """The mount that holds path."""
    return max(
        (m for m in mounts() if path == m.point or path.startswith(m.point.rstrip("/") + "/")),
        key=lambda m: len(m.point),
    )


def mounted_device(path: str | os.PathLike) -> str | None:
    """The device mounted at path (this mount namespace), or None."""
    m = mount_at(path)
    return m.device if m else None


def backing_file(device: str) -> str | None:
    """The file behind a loop device, or None for any other device."""
    try:
        return Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def run_tool(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True)
    except FileNotFoundError:
        raise RunnerError(
            f"{argv[0]} is not installed; it is needed for the users' disks "
            "(Debian: apt-get install e2fsprogs mount; scripts/install-deps installs them)"
        ) from None
    if proc.returncode not in ok:
        raise RunnerError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def attached(image: Path) -> bool:
    return bool(run_tool("losetup", "--associated", str(image)).stdout.strip())


def share_parent(base: Path) -> None:
    """Make the workspaceBase a shared mount unless the mount holding it is one
    (systemd hosts share /). A process that starts in a mount namespace of its own
    (podman's conmon does, on hosts without systemd) copies every mount there is; an
    unmount reaches those copies only through a shared parent, and a copy left
    behind keeps the disk busy, unsafe to resize."""
    if covering(str(base)).shared:
        return
    if mount_at(base) is None:
        run_tool("mount", "--rbind", str(base), str(base))  # r: disks mounted before stay in view
    run_tool("mount", "--make-shared", str(base))


def release_base(base: str | os.PathLike) -> bool:
    """Undo share_parent's bind of workspaceBase onto itself once no disk is mounted
    below it (`csm down`), so the directory can go. Another mount there is the admin's
    and stays. True if unmounted."""
    base = os.path.abspath(base)
    here = mount_at(base)
    if here is None or any(m.point.startswith(base + "/") for m in mounts()):
        return False
    below = covering(os.path.dirname(base))
    if here.device != below.device or here.root != os.path.normpath(
        os.path.join(below.root, os.path.relpath(base, below.point))
    ):
        return False
    return run_tool("umount", base, ok=(0, 32)).returncode == 0
