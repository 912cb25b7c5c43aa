"""Passwords: argon2id hash files the gate (csm/gate) checks logins against."""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from pathlib import Path

from argon2 import PasswordHasher, Type

from csm.plan_types import Plan

from . import BadInput
from .files import write_private

# Unambiguous letters and digits (no 0/o, 1/l/i), in dash-separated groups, so the
# demo's generated password can be read aloud and typed.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def generate() -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(4))


# The cost code-server itself hashes with: code-server 4.139.1 calls
# `argon2.hash(password)` of the npm package argon2 0.44.0, whose defaults are
# argon2id, 64 MiB, 3 passes, 4 lanes, a 32-byte hash and a 16-byte salt.
CODE_SERVER_COST = {"memory_cost": 65536, "time_cost": 3, "parallelism": 4}
HASHER = PasswordHasher(
    time_cost=CODE_SERVER_COST["time_cost"],
    memory_cost=CODE_SERVER_COST["memory_cost"],
    parallelism=CODE_SERVER_COST["parallelism"],
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify(hashed: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(hashed, password)
    except Exception:
        return False


def check(password: str) -> str:
    if not password:
        raise BadInput("the password is empty")
    if "\n" in password or "\r" in password or "\0" in password:
        raise BadInput("the password contains a line break; a password must be one line")
    return password


def read(stdin=None, prompt: bool | None = None) -> str:
    """From a prompt (twice) on a terminal, else from stdin. Exactly one trailing
    newline is stripped, so `echo secret | csm passwd` hashes "secret"."""
    stdin = stdin or sys.stdin
    if prompt if prompt is not None else stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != first:
            raise BadInput("the two passwords differ; nothing was changed")
        return check(first)
    text = stdin.read()
    if text.endswith("\n"):
        text = text[:-1]
    return check(text)


def write_hash_file(path: str | os.PathLike, hashed: str) -> None:
    """The hash on one line, mode 0600 root, in a 0700 directory (when csm makes it):
    a hash lets anyone who has it guess offline."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
        os.chmod(path.parent, 0o700)  # whatever the umask; an existing directory is left as it is
    write_private(path, hashed + "\n", mode=0o600)


def hashed_password_file(plan: Plan, user: str) -> str:
    """The user's hashedPasswordFile, or a message saying why there is none."""
    if user not in plan.users:
        raise BadInput(f"no user {user!r} in the settings (users: {', '.join(sorted(plan.users))})")
    p = plan.users[user].password
    if p.hashed:
        return p.file
    raise BadInput(
        f"users.{user} uses passwordFile (a plain password); csm passwd writes only "
        f"hashedPasswordFile: set users.{user}.hashedPasswordFile instead, or edit the password file yourself"
    )
