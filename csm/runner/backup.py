"""Backups: one tar.gz of every user's directory (workspace and home), with numeric
owners and modes, and a manifest naming the stack it came from.

Each user's container is paused while their directory is archived, so the archive
is a consistent snapshot. Restore checks the whole archive before it touches
anything, then swaps what each user's directory holds for the archived one (inside
the directory: it may be the mount point of the user's disk).
"""

from __future__ import annotations

import copy
import datetime as dt
import errno
import gzip
import io
import json
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from csm.plan_types import Plan

from . import BadInput, RunnerError, disks, files, podman
from .backends import Backend

FORMAT = "code-server-multi-backup"
VERSION = 1
MANIFEST = "code-server-multi-backup.json"
ALLOWED_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE}


def archive_prefix(plan: Plan) -> str:
    return f"code-server-multi-{plan.domain}-"


def _manifest(plan: Plan, users: list[str]) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "domain": plan.domain,
        "users": {u: {"idBase": plan.users[u].ids.base, "idSize": plan.users[u].ids.size} for u in users},
    }


def _numeric(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.isfifo():
        return None  # no data in it, and restore refuses special files
    info.uname = info.gname = ""  # owners by number: host names mean nothing in a container's uid range
    return info


def create(stack, target: str | os.PathLike) -> Path:
    """Archive every user's directory into target (made 0700) and apply retention
    (plan.backup.keep newest archives of this stack). Returns the archive's path."""
    plan = stack.plan
    target = Path(target)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    users = sorted(plan.users)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = target / f"{archive_prefix(plan)}{stamp}.tar.gz"
    n = 1
    while path.exists():
        n += 1
        path = target / f"{archive_prefix(plan)}{stamp}-{n}.tar.gz"
    partial = path.with_name(path.name + ".partial")
    manifest = json.dumps(_manifest(plan, users), indent=1).encode()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(manifest), 0o600, int(dt.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(manifest))
            for user in users:
                user_dir = Path(plan.workspaceBase) / user
                if not user_dir.is_dir():
                    raise RunnerError(f"{user_dir} does not exist; run `csm up` once before a backup")
                with _paused(stack, plan.users[user].container.name):
                    stack.progress(f"archiving {user_dir}")
                    tar.add(user_dir, arcname=user, filter=_numeric)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    archives = sorted(target.glob(f"{archive_prefix(plan)}*.tar.gz"), key=lambda p: (p.stat().st_mtime, p.name))
    for old in archives[: -plan.backup.keep]:
        stack.progress(f"removing {old.name} (keeping the newest {plan.backup.keep})")
        old.unlink()
    return path


class _paused:
    """Pause a running container for the duration (a no-op if it does not run)."""

    def __init__(self, stack, name: str):
        self.stack, self.name, self.paused = stack, name, False

    def __enter__(self):
        if podman.is_running(podman.inspect(self.stack.host, self.name)):
            podman.podman(self.stack.host, "pause", self.name)
            self.paused = True
            self.stack.progress(f"paused {self.name} while archiving")

    def __exit__(self, *exc):
        if self.paused:
            podman.podman(self.stack.host, "unpause", self.name)


def read(archive: str | os.PathLike) -> tuple[dict, list[tarfile.TarInfo]]:
    """The manifest and members of a backup, checked completely: every byte readable
    (gzip CRC), a manifest of our format, and every member a plain file, directory,
    link or fifo inside its user's directory, never through a symlink."""
    archive = Path(archive)
    if not archive.is_file():
        raise BadInput(f"{archive} does not exist")
    try:
        with gzip.open(archive, "rb") as f:
            while f.read(1 << 20):
                pass
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            first = members[0] if members else None
            extracted = tar.extractfile(first) if first and first.name == MANIFEST and first.isfile() else None
            manifest_data = extracted.read() if extracted else None
    except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
        raise BadInput(
            f"{archive} is not a readable tar.gz (corrupt or truncated: {e}); nothing was restored"
        ) from None
    if manifest_data is None:
        raise BadInput(f"{archive} is not a code-server-multi backup (it has no {MANIFEST}); nothing was restored")
    try:
        manifest = json.loads(manifest_data)
    except ValueError:
        manifest = None
    if not (
        isinstance(manifest, dict) and manifest.get("format") == FORMAT and isinstance(manifest.get("users"), dict)
    ):
        raise BadInput(f"{archive} is not a code-server-multi backup (its manifest is not ours); nothing was restored")
    if manifest.get("version") != VERSION:
        raise BadInput(
            f"{archive} is a backup of format version {manifest.get('version')}; this csm reads version {VERSION}"
        )
    _check_members(archive, manifest, members[1:])
    return manifest, members[1:]


def _check_members(archive: Path, manifest: dict, members: list[tarfile.TarInfo]) -> None:
    users = set(manifest["users"])
    seen, seen_dirs, regular = set(), set(), set()
    symlinks = {str(PurePosixPath(m.name)) for m in members if m.issym()}

    def bad(member: tarfile.TarInfo, why: str):
        raise BadInput(f"{archive} holds {member.name!r}, which {why}; refusing to restore it")

    with tempfile.TemporaryDirectory() as scratch:  # an empty stand-in for the user directories
        for m in members:
            path = PurePosixPath(m.name)
            if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] not in users:
                bad(m, f"is not inside a user directory of the manifest ({', '.join(sorted(users))})")
            user = path.parts[0]
            # A second member of one name would replace the first: a file written
            # through a link, or a link where a checked directory was.
            if str(path) in seen:
                bad(m, "appears twice in the archive")
            seen.add(str(path))
            if m.type not in ALLOWED_TYPES:
                bad(m, "is a device or another special file")
            if any(str(parent) in symlinks for parent in path.parents):
                bad(m, "lies below a symbolic link")
            if m.islnk():
                target = PurePosixPath(m.linkname)
                if (
                    target.is_absolute()
                    or ".." in target.parts
                    or str(target) not in regular
                    or target.parts[0] != path.parts[0]
                ):
                    bad(m, f"is a hard link to {m.linkname!r}, outside the files before it in its user directory")
            refused = _refused(m, user, Path(scratch) / user)
            if refused:
                bad(m, refused)
            # The user's directory is root's: what root finds in it (the plan's
            # directories, which podman mounts) it follows, so only directories belong there.
            if len(path.parts) == 2 and not m.isdir():
                bad(m, f"lies in {user}'s own directory, which holds only directories (workspace, config)")
            # A set-uid root program in a workspace would hand root to whoever runs it.
            # (Other owners outside the range stay: an admin may copy files in as root.)
            low = manifest["users"][user]["idBase"]
            high = low + manifest["users"][user]["idSize"]
            if (
                len(path.parts) > 1
                and m.mode & (stat.S_ISUID | stat.S_ISGID)
                and not (low <= m.uid < high and low <= m.gid < high)
            ):
                bad(
                    m,
                    f"is set-uid or set-gid and owned by {m.uid}:{m.gid}, outside {user}'s id range ({low}-{high - 1})",
                )
            if m.isdir():
                seen_dirs.add(str(path))
            elif m.isfile():
                regular.add(str(path))
    missing = users - seen_dirs
    if missing:
        raise BadInput(
            f"{archive} names {', '.join(sorted(missing))} in its manifest but holds no directory "
            "for them; it is incomplete"
        )


def _refused(m: tarfile.TarInfo, user: str, root: Path) -> str | None:
    """Why m may not be extracted into root, the user's directory: what tarfile's `data`
    filter refuses, with m's path and (hard) link target taken relative to that
    directory. An absolute symlink passes: it names a path inside the user's container
    (a venv's python), and nothing is ever written through a symlink."""
    probe = copy.copy(m)
    probe.name = posixpath.relpath(m.name, user)
    if m.islnk():
        probe.linkname = posixpath.relpath(m.linkname, user)
    if m.issym() and posixpath.isabs(m.linkname):
        probe.type, probe.linkname = tarfile.REGTYPE, ""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:  # Python < 3.11.4: the one part the checks above leave to it
        inside = posixpath.normpath(posixpath.join("/u", posixpath.dirname(probe.name), probe.linkname))
        return "points outside its user directory" if probe.issym() and not (inside + "/").startswith("/u/") else None
    try:
        data_filter(probe, root)
    except tarfile.LinkOutsideDestinationError:
        return f"points outside its user directory (to {m.linkname!r})"
    except tarfile.FilterError as e:
        return f"is refused by tarfile's data filter ({e})"
    return None


def restore(stack, archive: str | os.PathLike, only: list[str] | None, backend: Backend) -> list[str]:
    """Replace users' directories with the archived ones, owners and modes kept
    (shifted if the user's uid range changed). A running container is stopped for it
    and started again by the backend (podman's, or the NixOS units, so Restart=always
    cannot interfere). Returns the restored users."""
    plan = stack.plan
    manifest, _ = read(archive)
    if manifest["domain"] != plan.domain:
        raise BadInput(
            f"{archive} is a backup of the stack for {manifest['domain']} (users "
            f"{', '.join(sorted(manifest['users']))}), not of this one ({plan.domain}); nothing was restored"
        )
    users = only or sorted(manifest["users"])
    for u in users:
        if u not in manifest["users"]:
            raise BadInput(f"{archive} holds no backup of {u} (it holds {', '.join(sorted(manifest['users']))})")
    not_here = [u for u in users if u not in plan.users]
    if not_here:
        raise BadInput(
            f"{', '.join(not_here)} from {archive} are not in the settings; add them, "
            "or restore only some users with --user"
        )
    base = Path(plan.workspaceBase)
    for d in plan.directories:  # a fresh host before any `up`: the staging folder's parent
        files.ensure_directory(d)
    for u in users:
        user = plan.users[u]
        old_base, size = manifest["users"][u]["idBase"], manifest["users"][u]["idSize"]
        shift = user.ids.base - old_base
        was_running = backend.stop(user, "to restore its files")
        try:
            disks.ensure(user, progress=stack.progress)
            for d in user.directories:
                files.ensure_directory(d)
            _swap_in(stack, archive, u, base, shift, old_base, size)
            for d in user.directories:
                files.ensure_directory(d)
        finally:
            if was_running:
                backend.start(user)
    return users


def _filter(user: str, root: Path) -> dict:
    if not hasattr(tarfile, "data_filter"):
        return {}

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        refused = _refused(member, user, root)
        if refused:
            raise BadInput(f"{member.name!r} {refused}; the restore of {user} stopped before replacing anything")
        return member

    return {"filter": check}


def _swap_in(stack, archive, u: str, base: Path, shift: int, old_base: int, size: int) -> None:
    """Extract u's directory into a folder inside the live one (so on the user's own
    disk), then swap what the two hold (workspace, config) by renaming."""
    target = base / u
    staging, previous = target / f".restore-{os.getpid()}", target / f".before-restore-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            mine = [m for m in tar.getmembers()[1:] if PurePosixPath(m.name).parts[0] == u]
            for m in mine:
                if shift and old_base <= m.uid < old_base + size:
                    m.uid += shift
                if shift and old_base <= m.gid < old_base + size:
                    m.gid += shift
            stack.progress(f"restoring {u} ({len(mine)} entries)")
            # Checked by read(); checked again against what is on disk as it is written
            # (a link extracted earlier is followed there), owners and modes kept.
            try:
                tar.extractall(staging, members=mine, numeric_owner=True, **_filter(u, staging / u))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                raise BadInput(
                    f"{u}'s disk has no room for the archive beside what it holds now; nothing "
                    f"was replaced. Raise users.{u}.diskQuota for the restore (`csm status` shows "
                    "the use), or ask them to delete files first"
                ) from None
        previous.mkdir(mode=0o700)
        for child in os.listdir(target):
            if child not in (staging.name, previous.name):
                os.rename(target / child, previous / child)
        for child in os.listdir(staging / u):
            os.rename(staging / u / child, target / child)
        shutil.rmtree(previous)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
