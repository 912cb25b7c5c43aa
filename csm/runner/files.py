"""Host directories with the plan's owners and modes, and the env files podman reads.

Secrets travel file -> env file -> podman; never through an argv, a label or a log.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from . import BadInput, HostNotReady


def ensure_directory(d: dict) -> None:
    """Create a plan Directory ({path, uid, gid, mode}) or fix its owner and mode
    (like systemd-tmpfiles' `d`); its contents are never touched."""
    path = Path(d["path"])
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, d["uid"], d["gid"])
    os.chmod(path, int(d["mode"], 8))


def seed_file(f: dict) -> bool:
    """Create a plan SeedFile ({path, content, uid, gid, mode}) unless it exists (like
    systemd-tmpfiles' `f`): a person's own version is never replaced. True if written."""
    try:
        fd = os.open(f["path"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(f["mode"], 8))
    except FileExistsError:
        return False
    try:
        os.fchown(fd, f["uid"], f["gid"])
        os.write(fd, f["content"].encode())
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


def read_secret(file: str, what: str) -> str:
    """The secret in `file`: its contents without trailing newlines (as the NixOS
    module's `$(cat file)` reads it), refusing anything an env file cannot carry."""
    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{what}: {file} does not exist; create it (for a password: `csm passwd USER`)") from None
    except OSError as e:
        raise HostNotReady(f"{what}: cannot read {file}: {e.strerror}") from None
    try:
        value = raw.decode().rstrip("\n")
    except UnicodeDecodeError:
        raise BadInput(f"{what}: {file} is not UTF-8 text") from None
    if not value:
        raise BadInput(f"{what}: {file} is empty; it must hold the secret")
    if "\n" in value or "\r" in value or "\0" in value:
        raise BadInput(f"{what}: {file} holds more than one line; it must hold only the secret "
                       "(a password cannot contain a line break)")
    return value


def compose_secret_env(user: dict) -> str:
    """The user's secret env file: VARIABLE=<contents of file> for plan.secrets.fromFiles."""
    return "".join(f"{s['variable']}={read_secret(s['file'], 'users.' + user['name'] + ' ' + s['variable'])}\n"
                   for s in user["secrets"]["fromFiles"])


def compose_env(environment: dict[str, str]) -> str:
    """The non-secret environment as an env file, so `ps` never shows config."""
    lines = []
    for key, value in sorted(environment.items()):
        if "\n" in value or "\r" in value:
            raise BadInput(f"environment variable {key} holds a line break, which an env file cannot carry")
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def extra_env_files(user: dict) -> list[str]:
    """The user's own environmentFiles (API keys), after the composed secret file."""
    return [f for f in user["container"]["environmentFiles"] if f != user["secrets"]["envFile"]]


def check_readable(file: str, what: str) -> None:
    if not Path(file).is_file():
        raise BadInput(f"{what}: {file} does not exist")
    if not os.access(file, os.R_OK):
        raise HostNotReady(f"{what}: {file} is not readable")


def secrets_digest(secret_env: str, user: dict) -> str:
    """A digest of everything secret the container gets, kept root-only beside the env
    file, so a changed password or key file recreates the container."""
    h = hashlib.sha256(secret_env.encode())
    for f in extra_env_files(user):
        h.update(b"\0" + Path(f).read_bytes())
    return h.hexdigest()


def read_text(path: str | os.PathLike) -> str | None:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None
