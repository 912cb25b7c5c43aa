"""The path the README promises a newcomer, driven exactly: `make demo` prints an
address and a password; with them a person logs in through nginx, gets the
workbench, VS Code's WebSocket speaks its protocol, and opencode runs in the
container. Then `make demo` again (same password, nothing restarted) and `make down`.

A person who follows the README has their demo running when they run `make test`,
so the suite's own `make demo` runs beside one and must leave it alone: it has its
own container names (namePrefix), port, state directory and workspaces. The
person's demo is the real one when it runs on this host (only looked at, never
touched); otherwise the test brings one up as `make demo` would, in a throwaway
directory, and checks it the same way afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from csm.testing.stacks import TEST_PREFIX

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]
CSM = ROOT / ".venv" / "bin" / "csm"
PERSONS_CONTAINER = "code-server-demo"  # what examples/demo.nix names it: the default namePrefix


def make(target: str, *variables: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", target, *variables],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "CSM_STATE_DIR": str(state)},
    )


def demo_settings(base: Path, **overrides: str) -> Path:
    """examples/demo.nix as it is, but with its files below `base`."""
    settings = base / "demo.nix"
    extra = "".join(f"{k} = {v};\n" for k, v in overrides.items())
    settings.write_text(f"""
      let demo = import {ROOT}/examples/demo.nix; in
      demo // {{
        workspaceBase = "{base}/vscode";
        runtimeDir = "{base}/run";
        gate = {{ stateDir = "{base}/gate"; }};
        users.demo = demo.users.demo // {{ hashedPasswordFile = "{base}/secrets/demo.hash"; }};
        {extra}
      }}
    """)
    return settings


def own_demo_settings(base: Path) -> Path:
    """The suite's demo: its own container names (and, like every demo here, its own
    directories and sessions)."""
    return demo_settings(base, namePrefix=f'"{TEST_PREFIX}"')


def address_and_password(stdout: str) -> tuple[str, str]:
    found = re.search(r"(http://demo\.code\.localhost:\d+)\s+password: (\S+)", stdout)
    assert found, f"make demo printed no address and password:\n{stdout}"
    return found.group(1), found.group(2)


def container_identity(name: str) -> str:
    """Id and start time: a recreated or restarted container changes them."""
    return subprocess.run(
        ["podman", "container", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", name],
        capture_output=True,
        text=True,
    ).stdout.strip()


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class PersonsDemo:
    """The demo a person runs. `own` is False when it is the real one on this host."""

    def __init__(self, kit, web_client):
        self.web_client = web_client
        self.own = subprocess.run(["podman", "container", "exists", PERSONS_CONTAINER]).returncode != 0
        self.url = self.password = self.workspace = None
        if self.own:
            self.base = kit.fresh_base_dir("csm-persons-demo-")
            self.state, self.port = self.base / "state", kit.free_port()
            self.variables = (f"DEMO_SETTINGS={demo_settings(self.base)}", f"DEMO_PORT={self.port}")
            proc = make("demo", *self.variables, state=self.state)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            self.url, self.password = address_and_password(proc.stdout)
            self.workspace = self.base / "vscode" / "demo" / "workspace"
            (self.workspace / "notes.txt").write_text("a person's work\n")
        self.identity = container_identity(PERSONS_CONTAINER)
        self.files = tree_digest(self.workspace) if self.workspace else None

    def assert_untouched(self) -> None:
        assert container_identity(PERSONS_CONTAINER) == self.identity, "the person's demo was recreated or stopped"
        if self.own:
            assert tree_digest(self.workspace) == self.files, "the person's workspace changed"
            cookie = self.web_client.login(self.url, self.password)
            assert "workbench" in self.web_client.workbench(self.url, cookie)

    def close(self) -> None:
        if self.own:
            subprocess.run([str(CSM), "down", "--unmount", "--state-dir", str(self.state)], capture_output=True)
            shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def persons_demo(stack_kit, web_client):
    stack_kit.require_image()
    demo = PersonsDemo(stack_kit, web_client)
    try:
        yield demo
    finally:
        demo.close()


def test_make_demo_gives_a_working_address_and_password(stack_kit, web_client, persons_demo):
    base = stack_kit.fresh_base_dir("csm-demo-test-")
    state, port = base / "state", stack_kit.free_port()
    container = f"{TEST_PREFIX}-demo"
    settings = own_demo_settings(base)
    variables = (f"DEMO_SETTINGS={settings}", f"DEMO_PORT={port}")
    try:
        proc = make("demo", *variables, state=state)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        url, password = address_and_password(proc.stdout)
        assert url == f"http://demo.code.localhost:{port}"

        cookie = web_client.login(url, password)
        assert "workbench" in web_client.workbench(url, cookie)
        assert web_client.vscode_handshake(url, cookie)["type"] == "sign"
        version = subprocess.run(["podman", "exec", container, "opencode", "--version"], capture_output=True, text=True)
        assert version.returncode == 0, version.stderr
        assert re.fullmatch(r"\d+\.\d+\.\d+\s*", version.stdout), version.stdout

        again = make("demo", *variables, state=state)
        assert again.returncode == 0, again.stderr
        assert f"{url}   password: {password}" in again.stdout
        assert "nothing to change" in again.stderr

        down = make("down", state=state)
        assert down.returncode == 0, down.stderr
        assert subprocess.run(["podman", "container", "exists", container]).returncode == 1
        assert (base / "vscode" / "demo" / "workspace").is_dir()
    finally:
        subprocess.run([str(CSM), "down", "--unmount", "--state-dir", str(state)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    persons_demo.assert_untouched()
