"""Each user's disk: their directory (workspace and home) is the mount point of an
ext4 file system in a sparse file of their quota's size (plan: users.<name>.disk), so
whoever fills it stops only themselves. The one implementation of both paths: the
NixOS unit's `csm prepare` and the runner's `up` and `reset` reach it through
files.prepare_user; `restore` and `down --unmount` call it too.

Why this and not project quotas: ext4 needs `tune2fs -O project,quota` on an
unmounted file system and XFS a `pquota` mount option of the file system that holds
/var/lib; a file of its own needs neither, on any host with loop devices.

Resizing happens with the file system unmounted (online growth needs
CAP_SYS_RESOURCE, which not every host grants root), so the user's container is
stopped for it; `stop` is how the caller does that.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from csm.plan_types import Disk, Plan, User

from . import BadInput, RunnerError
from .mounts import attached, backing_file, mounted_device, mounts, release_base, run_tool, share_parent

# -m 0: nothing reserved for root, the quota is the user's. Lazy init and no discard:
# the sparse file stays as small as what is written in it.
MKFS = ["mkfs.ext4", "-q", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]
# discard: what the user deletes is given back to the host's disk.
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime,discard,noinit_itable"
# ext4's own bookkeeping (inode tables, journal): about 7 % of a 1G disk, 2.5 % of 20G.
OVERHEAD = 0.07
BLOCK = 4096


@dataclass
class Usage:
    used_bytes: int
    size_bytes: int  # what the user can fill (the quota less ext4's bookkeeping)
    quota_bytes: int

    @property
    def percent(self) -> int:
        return round(100 * self.used_bytes / self.size_bytes) if self.size_bytes else 0


def is_mounted(disk: Disk) -> bool:
    device = mounted_device(disk.mountPoint)
    if device is None:
        return False
    if backing_file(device) != disk.image:
        raise RunnerError(
            f"{disk.mountPoint} has {device} mounted on it, not the user's disk "
            f"{disk.image}; unmount it (`umount {disk.mountPoint}`) and try again"
        )
    return True


def usage(user: User) -> Usage | None:
    """The user's disk use, or None when they have no disk mounted."""
    disk = user.disk
    if not is_mounted(disk):
        return None
    st = os.statvfs(disk.mountPoint)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    # ext4 keeps a little (up to 16 MiB) for its own use: size is what the user can fill.
    return Usage(used, used + st.f_bavail * st.f_frsize, disk.quotaBytes or os.stat(disk.image).st_size)


def _target_size(disk: Disk) -> int:
    return (disk.quotaBytes or 0) // BLOCK * BLOCK  # callers ask only with a quota


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, dirs, names in os.walk(path):
        for n in dirs + names:
            total += os.lstat(os.path.join(root, n)).st_blocks * 512
    return total


def _size(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.1f}{unit}" if unit in "GT" else f"{n:.0f}{unit}"
        n /= 1024
    return ""


def refusal(user: User) -> str | None:
    """Why the user's quota cannot be applied as the plan says (checked before anything
    changes), or None: what they store does not fit in it."""
    disk, name = user.disk, user.name
    if not disk.quotaBytes:
        return None
    room = int(_target_size(disk) * (1 - OVERHEAD))
    if Path(disk.image).exists():
        use = usage(user)
        if use is None or _target_size(disk) >= os.stat(disk.image).st_size or use.used_bytes < room:
            return None
        used = use.used_bytes
    else:
        mount_point = Path(disk.mountPoint)
        used = _tree_bytes(mount_point) if mount_point.is_dir() else 0
        if used < room:
            return None
    return (
        f"users.{name}.diskQuota = {_size(disk.quotaBytes)} is less than the {_size(used)} {name} "
        f"stores; nothing was changed. Keep the quota above that (e.g. {_size(used / (1 - OVERHEAD) * 1.25)}), "
        f"or ask {name} to delete files first"
    )


def overcommit(plan: Plan) -> str | None:
    """A warning when the users' disks may together grow past the free space of the
    host's disk that holds them (their files are sparse: room is taken as they write)."""
    base = plan.workspaceBase
    promised = allocated = 0
    for user in plan.users.values():
        disk, image = user.disk, Path(user.disk.image)
        size = _target_size(disk) if disk.quotaBytes else image.stat().st_size if image.exists() else 0
        promised += size
        allocated += image.stat().st_blocks * 512 if image.exists() and size else 0
    st = os.statvfs(base if os.path.isdir(base) else os.path.dirname(base))
    free = st.f_bavail * st.f_frsize
    if promised - allocated <= free:
        return None
    return (
        f"the users' disks may grow to {_size(promised)} together, and the disk that holds {base} has "
        f"{_size(free)} free beyond the {_size(allocated)} they hold now: if they all fill up, the host's disk "
        "is full first. Lower diskQuota, or make room on the host"
    )


def ensure(
    user: User, stop: Callable[[], None] = lambda: None, progress: Callable[[str], None] = print, strict: bool = True
) -> bool:
    """Make the user's disk what the plan says: created (moving in what their directory
    already holds), mounted at their directory, resized to the quota. A quota too small
    for what they store raises BadInput, or with strict=False (a unit that must start
    anyway) leaves the disk as it is and says so. `stop` stops the user's container
    before its file system is replaced or resized under it. True if this mounted it."""
    disk = user.disk
    image = Path(disk.image)
    if not disk.quotaBytes and not image.exists():
        return False  # no quota, and never had one
    if not image.exists():
        if not _fits(user, strict, progress, "it keeps no quota"):
            return False
        stop()
        _create(user, progress)
    mounted = not is_mounted(disk)
    if mounted:
        _mount(disk, progress)
    size = os.stat(image).st_size
    if (
        not disk.quotaBytes
        or _target_size(disk) == size
        or not _fits(user, strict, progress, f"its disk stays at {_size(size)}")
    ):
        return mounted
    stop()
    progress(f"resizing {user.name}'s disk from {_size(size)} to {_size(_target_size(disk))}")
    unmount(disk)
    try:
        why = _resize(image, _target_size(disk))
    finally:
        _mount(disk, progress)
    if why:
        why = f"users.{user.name}.diskQuota = {_size(disk.quotaBytes)}: {why}; nothing was changed"
        if strict:
            raise BadInput(why)
        progress(f"{why} (its disk stays at {_size(size)})")
    return mounted


def _fits(user: User, strict: bool, progress: Callable[[str], None], otherwise: str) -> bool:
    why = refusal(user)
    if why and strict:
        raise BadInput(why)
    if why:
        progress(f"{why} ({otherwise})")
    return not why


def _create(user: User, progress: Callable[[str], None]) -> None:
    """A new disk, filled with what the user's directory holds, put in place in one rename."""
    disk = user.disk
    image, mount_point = Path(disk.image), Path(disk.mountPoint)
    image.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(image.parent, 0o700)
    new, filling = image.with_name(image.name + ".new"), image.with_name(image.name + ".filling")
    new.unlink(missing_ok=True)
    with open(new, "wb") as f:
        f.truncate(_target_size(disk))
    run_tool(*MKFS, str(new))
    filling.mkdir(mode=0o700, exist_ok=True)
    share_parent(mount_point.parent)
    run_tool("mount", "-o", MOUNT_OPTIONS, str(new), str(filling))
    try:
        if mount_point.is_dir() and any(mount_point.iterdir()):
            progress(f"moving {mount_point} onto {user.name}'s new disk of {_size(_target_size(disk))}")
            run_tool("cp", "-a", f"{mount_point}/.", f"{filling}/")
    finally:
        run_tool("umount", str(filling))
        filling.rmdir()
    os.replace(new, image)
    if mount_point.is_dir() and any(mount_point.iterdir()):
        moved = image.with_name(f"{user.name}.moved-{os.getpid()}")
        os.rename(mount_point, moved)
        shutil.rmtree(moved)
    progress(f"{user.name}'s files now live on a disk of their own ({image})")


def _mount(disk: Disk, progress: Callable[[str], None]) -> None:
    """Mount the disk at the user's directory, below a shared workspaceBase."""
    mount_point, image = Path(disk.mountPoint), Path(disk.image)
    share_parent(mount_point.parent)
    mount_point.mkdir(mode=0o711, parents=True, exist_ok=True)
    if any(mount_point.iterdir()):
        # Written while the disk was not mounted: kept, never hidden under the mount.
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = image.with_name(f"{mount_point.name}.found-{stamp}")
        progress(f"{mount_point} held files outside its disk; they were moved to {aside}")
        os.rename(mount_point, aside)
        mount_point.mkdir(mode=0o711)
    run_tool("mount", "-o", MOUNT_OPTIONS, str(image), str(mount_point))
    # Direct I/O: the file's pages are not cached twice (once for the loop device), which
    # makes a flushed write ~2.5x faster; a host file system without O_DIRECT keeps the default.
    subprocess.run(["losetup", "--direct-io=on", mounted_device(mount_point) or ""], capture_output=True)
    # mkfs and e2fsck make it; in the user's directory it would be one more thing to
    # back up and explain (e2fsck makes it again when it needs one).
    lost = mount_point / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()


def unmount(disk: Disk) -> bool:
    """Unmount the user's disk if it is mounted (their container must be stopped).
    True if it was."""
    if not is_mounted(disk):
        return False
    proc = subprocess.run(["umount", disk.mountPoint], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunnerError(
            f"cannot unmount {disk.mountPoint}: {proc.stderr.strip()}; "
            f"a process still uses it (`fuser -vm {disk.mountPoint}` names it)"
        )
    if attached(Path(disk.image)):
        raise RunnerError(
            f"{disk.image} is still in use after its unmount (another mount namespace "
            "holds it: a container started before csm shared its mounts); stop the stack's "
            "containers and try again"
        )
    return True


def unmount_all(base: str | os.PathLike) -> list[str]:
    """Unmount every user's disk below workspaceBase, those of users no longer in the
    settings too (their containers must be stopped), then release workspaceBase.
    Returns the disk files unmounted."""
    base = os.path.abspath(base)
    done = []
    for m in mounts():
        image = backing_file(m.device)
        if os.path.dirname(m.point) == base and image and os.path.dirname(image) == os.path.join(base, ".disks"):
            unmount(Disk(quotaBytes=None, image=image, mountPoint=m.point))
            done.append(image)
    release_base(base)
    return done


def _resize(image: Path, size: int) -> str | None:
    """Resize the (unmounted) disk, or say why it cannot shrink that far."""
    run_tool("e2fsck", "-f", "-p", str(image), ok=(0, 1))  # resize2fs wants a checked file system
    if size > os.stat(image).st_size:
        os.truncate(image, size)
        run_tool("resize2fs", str(image))
        return None
    # Where the files lie decides how far ext4 can shrink, not only how much they are.
    estimate = run_tool("resize2fs", "-P", str(image)).stdout.rsplit(":", 1)[-1]
    minimum = int(estimate) * BLOCK
    if size < minimum:
        return (
            f"the disk can shrink to no less than {_size(minimum)} (what is stored, and ext4's own "
            f"room for it); keep the quota at {_size(minimum)} or more"
        )
    run_tool("resize2fs", str(image), f"{size // 1024}K")
    os.truncate(image, size)
    return None
