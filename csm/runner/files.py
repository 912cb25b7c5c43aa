"""Host directories with the plan's owners and modes, and the env files podman reads.

Secrets travel file -> env file -> podman; never through an argv, a label or a log.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from csm.plan_types import Directory, SeedFile, User

from . import BadInput, HostNotReady, disks


def _open_directory(path: str | os.PathLike, create: bool = False) -> int:
    """An fd of the directory at path, reached one component at a time. A symbolic
    link is followed only inside a root-owned directory: below a directory that a
    container's user owns (their home), a link they planted is refused rather than
    followed, so root never creates, chowns or writes through it."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in Path(os.path.abspath(path)).parts[1:]:
            trusted = os.fstat(fd).st_uid == 0
            flags = os.O_RDONLY | os.O_DIRECTORY | (0 if trusted else os.O_NOFOLLOW)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                why = (
                    "is not a directory"
                    if trusted
                    else "is not a directory (a symbolic link or a file) inside a directory its user owns; "
                    "refusing to follow it"
                )
                raise BadInput(f"{path}: {part} {why}. Move it away and try again") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def ensure_directory(d: Directory) -> None:
    """Create a plan Directory ({path, uid, gid, mode}) or fix its owner and mode
    (like systemd-tmpfiles' `d`); its contents are never touched."""
    fd = _open_directory(d.path, create=True)
    try:
        os.fchown(fd, account_id(d.uid, "user"), account_id(d.gid, "group"))
        os.fchmod(fd, int(d.mode, 8))
    finally:
        os.close(fd)


def account_id(value: int | str, kind: str) -> int:
    """A plan owner: a number, or the name of an account the host has (the gate's)."""
    if isinstance(value, int):
        return value
    try:
        return pwd.getpwnam(value).pw_uid if kind == "user" else grp.getgrnam(value).gr_gid
    except KeyError:
        raise HostNotReady(
            f"the {kind} {value!r} does not exist on this host; `csm up` creates it (on NixOS the module declares it)"
        ) from None


def seed_file(f: SeedFile) -> bool:
    """Create a plan SeedFile ({path, content, uid, gid, mode}) with exactly its
    content's bytes, unless it exists (like systemd-tmpfiles' `f`, without its
    specifier and escape expansion): a person's own version is never replaced.
    True if written. Used by the runner and by the NixOS unit (`csm prepare`)."""
    path = Path(f.path)
    parent = _open_directory(path.parent)
    try:
        fd = os.open(path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, int(f.mode, 8), dir_fd=parent)
    except FileExistsError:
        return False
    finally:
        os.close(parent)
    try:
        os.fchown(fd, f.uid, f.gid)
        os.fchmod(fd, int(f.mode, 8))  # whatever the umask
        os.write(fd, f.content.encode())
    finally:
        os.close(fd)
    return True


def write_private(path: str | os.PathLike, content: str, mode: int = 0o400) -> None:
    """Write a file only root can read, atomically (a reader sees old or new, never half)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


GENERIC_FIX = "write the secret alone on one line, e.g. `printf %s SECRET > FILE` (a password hash: `csm passwd USER`)"


def read_secret(file: str, what: str, fix: str = GENERIC_FIX) -> str:
    """The secret in `file`: its contents without trailing newlines, refusing anything
    an env file cannot carry (the one rule for the runner and the NixOS unit). `fix`
    says how to write the file right."""
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{what}: {file} does not exist; create it ({fix})") from None
    except OSError as e:
        raise HostNotReady(f"{what}: cannot read {file}: {e.strerror}") from None
    try:
        value = raw.decode().rstrip("\n")
    except UnicodeDecodeError:
        raise BadInput(f"{what}: {file} is not UTF-8 text; {fix}") from None
    problem = (
        "is empty"
        if not value
        else "holds a NUL byte"
        if "\0" in value
        else "holds a carriage return (Windows line endings?)"
        if "\r" in value
        else "holds more than one line"
        if "\n" in value
        else None
    )
    if problem:
        raise BadInput(f"{what}: {file} {problem}; it must hold only the secret: {fix}")
    return value


def password_text(user: User) -> str:
    """The user's password file as the gate reads it (an argon2 hash or a plain
    password), checked by the one rule for secret files."""
    what = f"users.{user.name}.{'hashedPasswordFile' if user.password.hashed else 'passwordFile'}"
    fix = f"`csm passwd {user.name}` writes it" if user.password.hashed else GENERIC_FIX
    return read_secret(user.password.file, what, fix)


def prepare_user(
    user: User, progress: Callable[[str], None], stop: Callable[[], None] = lambda: None, strict: bool = False
) -> bool:
    """What a user's container needs on the host before it starts: their disk, the
    plan's directories and the seed files where missing. The NixOS unit runs it as
    `csm prepare` (preStart), where the container is not running and a quota too small
    for what the user stores leaves the disk as it is (the user can still work); the
    runner's `up` and `reset` run it with strict=True, where such a quota is refused,
    and `stop` to stop a running container first. True if this mounted the disk."""
    mounted = disks.ensure(user, stop=stop, progress=progress, strict=strict)
    for d in user.directories:
        ensure_directory(d)
    for f in user.seedFiles:
        seed_file(f)
    return mounted


def compose_env(environment: dict[str, str]) -> str:
    """The non-secret environment as an env file, so `ps` never shows config."""
    lines = []
    for key, value in sorted(environment.items()):
        if "\n" in value or "\r" in value:
            raise BadInput(f"environment variable {key} holds a line break, which an env file cannot carry")
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def extra_env_files(user: User) -> list[str]:
    """The user's own environmentFiles (API keys)."""
    return list(user.container.environmentFiles)


def check_readable(file: str, what: str) -> None:
    if not Path(file).is_file():
        raise BadInput(f"{what}: {file} does not exist")
    if not os.access(file, os.R_OK):
        raise HostNotReady(f"{what}: {file} is not readable")


def secrets_digest(user: User) -> str:
    """A digest of everything secret the container gets, kept root-only beside the env
    file, so a changed key file recreates the container."""
    h = hashlib.sha256()
    for f in extra_env_files(user):
        h.update(b"\0" + Path(f).read_bytes())
    return h.hexdigest()


def read_text(path: str | os.PathLike) -> str | None:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None
