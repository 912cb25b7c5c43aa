"""Throwaway portable stacks for tests and benchmarks: fresh directories, free
ports, generated passwords, and a handle that stops what it started.

    stack = ThrowawayStack(["ada", "bo"])
    ...  stack.url("ada"), stack.password("ada") ...
    stack.close()
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

from csm import plan as planlib
from csm.checks.facts import default_image
from csm.runner import disks, passwd
from csm.runner.stack import Stack

IMAGE = default_image()  # image/contract.json
DOMAIN = "code.localhost"
# Test stacks never take the default prefix (code-server), so their containers can
# never be the ones of a stack a person runs on the same host, such as `make demo`.
TEST_PREFIX = "csm-test"


class ImageMissing(RuntimeError):
    pass


def free_port(address: str = "0.0.0.0") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def merge(base: dict, extra: dict) -> dict:
    """extra into base: dicts merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def require_image(image: str = IMAGE) -> None:
    if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
        raise ImageMissing(f"the image {image} is missing; build it with `make image`")


# Every directory fresh_base_dir made in this process (the tests check nothing is left
# mounted below them).
MADE: list[Path] = []


def fresh_base_dir(prefix: str = "csm-test-") -> Path:
    """A fresh directory in /var/tmp that the containers' mapped root can traverse
    (/tmp/pytest-of-root is 0700)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o711)
    MADE.append(base)
    return base


def stack_settings(base: Path, users: list[str], extra: dict | None = None, name_prefix: str = TEST_PREFIX) -> dict:
    """Settings for a stack below `base`: its workspaces, sockets and sessions there."""
    return merge(
        {
            "domain": DOMAIN,
            "namePrefix": name_prefix,
            "workspaceBase": str(base / "workspaces"),
            "runtimeDir": str(base / "run"),
            "gate": {"stateDir": str(base / "gate")},
            "users": {u: {"hashedPasswordFile": str(base / "secrets" / f"{u}.hash")} for u in users},
        },
        extra or {},
    )


def write_password(settings: dict, user: str) -> str:
    """A new random password for `user`, hashed into its hashedPasswordFile."""
    password = secrets.token_urlsafe(12)
    passwd.write_hash_file(settings["users"][user]["hashedPasswordFile"], passwd.hash_password(password))
    return password


class ThrowawayStack:
    """A live stack in a fresh directory under /var/tmp, on free ports, with generated
    passwords; close() stops it and deletes its directory. `prefix` names both its
    directory and its containers ("csm-test-" -> csm-test-<user>)."""

    def __init__(
        self,
        users: list[str],
        extra_settings: dict | None = None,
        tls: bool = False,
        prefix: str = "csm-test-",
        **stack_options,
    ):
        self.users = list(users)
        self.base = fresh_base_dir(prefix)
        self.state_dir = self.base / "state"
        self.http_port = free_port()
        self.tls_port = free_port() if tls else None
        self.settings = stack_settings(self.base, self.users, extra_settings, name_prefix=prefix.strip("-"))
        self._passwords = {u: write_password(self.settings, u) for u in self.users}
        self.plan = planlib.from_settings(self.settings)
        self.stack = Stack(self.plan, self.state_dir, self.http_port, self.tls_port, **stack_options)
        self.ca_file = self.state_dir / "tls" / "ca.crt" if tls else None
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise

    def add_user(self, user: str) -> dict[str, str]:
        """Add a user to the settings and bring the stack up to date."""
        self.settings = merge(
            self.settings, {"users": {user: {"hashedPasswordFile": str(self.base / "secrets" / f"{user}.hash")}}}
        )
        self._passwords[user] = write_password(self.settings, user)
        self.users.append(user)
        self.plan = planlib.from_settings(self.settings)
        self.stack.plan = self.plan
        return self.stack.up()

    def url(self, user: str) -> str:
        return self.stack.url(user)

    def container(self, user: str) -> str:
        return self.plan.users[user].container.name

    def password(self, user: str) -> str:
        return self._passwords[user]

    def user_dir(self, user: str) -> Path:
        return Path(self.plan.workspaceBase) / user

    def workspace(self, user: str) -> Path:
        return self.user_dir(user) / "workspace"

    def home(self, user: str) -> Path:
        return self.user_dir(user) / "config"

    def fill_disk(self, user: str, fraction: float, name: str = "filler") -> None:
        """Write ~/<name> inside the user's container until their disk is `fraction` full."""
        use = disks.usage(self.plan.users[user])
        missing = int(fraction * use.size_bytes) - use.used_bytes
        subprocess.run(
            ["podman", "exec", self.container(user), "sh", "-c", f"head -c {missing} /dev/zero > ~/{name}"],
            check=True,
            capture_output=True,
        )

    def close(self) -> None:
        if self.base.exists():
            try:
                self.stack.down(unmount=True)
            finally:
                shutil.rmtree(self.base, ignore_errors=True)


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root: owner, group, mode, type, and content or link target."""
    out = {}
    for p in sorted([root, *root.rglob("*")]):
        st = p.lstat()
        content = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
        out[str(p.relative_to(root))] = (
            st.st_uid,
            st.st_gid,
            stat.S_IMODE(st.st_mode),
            stat.S_IFMT(st.st_mode),
            content,
        )
    return out
