"""Fixtures shared by every test directory.

live_stack (session): the portable stack, live, with two users `ada` and `bo` on
domain `code.localhost`, behind nginx on a free port. Its attributes:

    .plan .stack (csm.runner.stack.Stack) .http_port .users (names) .state_dir
    .url(user)       -> "http://<user>.code.localhost:<port>"
    .password(user)  -> the plaintext password (generated for this session)
    .workspace(user) -> host path of the user's workspace (~/project inside)
    .home(user)      -> host path of the user's home (config) directory
    .settings        -> the settings dict the plan was made from

It fails (never skips) when the image is missing: run `make image`.

live_stack_factory (session): more stacks, e.g. with extra settings. Use user
names no other live stack of the session uses (container names are global), and
stop the stack when your tests are done with it:

    @pytest.fixture(scope="module")
    def fake_ai_stack(live_stack_factory):
        stack = live_stack_factory(users=["cy"], extra_settings={
            "opencode": {"provider": {...}, "model": "fake/fake-model"},
            "users": {"cy": {"environmentFiles": ["/path/to/keys.env"]}},
        }, tls=False)
        yield stack
        stack.close()

extra_settings is merged into the base settings (dicts merge key by key, anything
else replaces). tls=True also serves HTTPS on .tls_port with a local CA
(.ca_file; .url() then gives the https address). Stacks still running at the end
of the session are stopped there; their directories (under /var/tmp, because the
containers' mapped users cannot traverse /tmp/pytest-of-root) are deleted.
"""
from __future__ import annotations

import random
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import passwd
from csm.runner.stack import Stack, port_free

IMAGE = "localhost/code-server-multi:latest"
DOMAIN = "code.localhost"


def free_port(address: str = "0.0.0.0") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def require_image(image: str = IMAGE) -> None:
    if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
        pytest.fail(f"the image {image} is missing; build it with `make image` (live tests never skip)")


def stack_settings(base: Path, users: list[str], extra: dict | None = None, avoid: set[int] = frozenset()) -> dict:
    """Settings for a test stack below `base`, with a basePort whose user ports are free."""
    settings = merge({
        "domain": DOMAIN,
        "workspaceBase": str(base / "workspaces"),
        "runtimeDir": str(base / "run"),
        "users": {u: {"hashedPasswordFile": str(base / "secrets" / f"{u}.hash")} for u in users},
    }, extra or {})
    for _ in range(30):
        settings["basePort"] = random.randrange(30000, 64000)
        plan = planlib.from_settings(settings)
        ports = [u["port"] for u in plan["users"].values()]
        if not set(ports) & set(avoid) and all(port_free("127.0.0.1", p) for p in ports):
            return settings
    raise RuntimeError("found no basePort whose user ports are free")


def fresh_base_dir(prefix: str = "csm-test-") -> Path:
    """A fresh directory in /var/tmp that the containers' mapped root can traverse."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    base.chmod(0o711)
    return base


class LiveStack:
    def __init__(self, users: list[str], extra_settings: dict | None = None, tls: bool = False):
        self.users = list(users)
        self.base = fresh_base_dir()
        self.state_dir = self.base / "state"
        self.http_port = free_port()
        self.tls_port = free_port() if tls else None
        self.settings = stack_settings(self.base, self.users, extra_settings,
                                       avoid={self.http_port, self.tls_port})
        self._passwords = {u: secrets.token_urlsafe(12) for u in self.users}
        for u, password in self._passwords.items():
            passwd.write_hash_file(self.settings["users"][u]["hashedPasswordFile"], passwd.hash_password(password))
        self.plan = planlib.from_settings(self.settings)
        self.stack = Stack(self.plan, self.state_dir, self.http_port, self.tls_port)
        self.ca_file = self.state_dir / "tls" / "ca.crt" if tls else None
        try:
            self.stack.up()
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def url(self, user: str) -> str:
        return self.stack.url(user)

    def password(self, user: str) -> str:
        return self._passwords[user]

    def user_dir(self, user: str) -> Path:
        return Path(self.plan["workspaceBase"]) / user

    def workspace(self, user: str) -> Path:
        return self.user_dir(user) / "workspace"

    def home(self, user: str) -> Path:
        return self.user_dir(user) / "config"

    def close(self) -> None:
        if self.base.exists():
            try:
                self.stack.down()
            finally:
                shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def live_stack_factory():
    started: list[LiveStack] = []
    names: set[str] = set()

    def start(users: list[str], extra_settings: dict | None = None, tls: bool = False) -> LiveStack:
        require_image()
        clash = names & set(users)
        if clash:
            raise ValueError(f"users {sorted(clash)} already belong to a live stack of this session; pick other names")
        stack = LiveStack(users, extra_settings, tls)
        names.update(users)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.close()


@pytest.fixture(scope="session")
def live_stack(live_stack_factory) -> LiveStack:
    return live_stack_factory(["ada", "bo"])
