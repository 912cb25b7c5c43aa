"""The path the README promises a newcomer, driven exactly: `make demo` prints an
address and a password; with them a person logs in through nginx, gets the
workbench, VS Code's WebSocket speaks its protocol, and opencode runs in the
container. Then `make demo` again (same password, nothing restarted) and `make down`.

examples/demo.nix is used as it is, except for where its files live: the test's
settings import it and move the workspace, env files and password hash below a
fresh directory, and nginx to a free port, so a person's own demo data is never
touched. The container is the demo's own (code-server-demo): if a demo is running
on this host, `make down` it first; the test says so.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]


def make(target: str, *variables: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", target, *variables], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "CSM_STATE_DIR": str(state)})


def test_make_demo_gives_a_working_address_and_password(stack_kit, web_client):
    stack_kit.require_image()
    base = stack_kit.fresh_base_dir("csm-demo-test-")
    state, port = base / "state", stack_kit.free_port()
    settings = base / "demo.nix"
    settings.write_text(f"""
      let demo = import {ROOT}/examples/demo.nix; in
      demo // {{
        workspaceBase = "{base}/vscode";
        runtimeDir = "{base}/run";
        users.demo = demo.users.demo // {{ hashedPasswordFile = "{base}/secrets/demo.hash"; }};
      }}
    """)
    variables = (f"DEMO_SETTINGS={settings}", f"DEMO_PORT={port}")
    try:
        proc = make("demo", *variables, state=state)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        found = re.search(r"(http://demo\.code\.localhost:\d+)\s+password: (\S+)", proc.stdout)
        assert found, f"make demo printed no address and password:\n{proc.stdout}"
        url, password = found.groups()
        assert url == f"http://demo.code.localhost:{port}"

        cookie = web_client.login(url, password)
        assert "workbench" in web_client.workbench(url, cookie)
        assert web_client.vscode_handshake(url, cookie)["type"] == "sign"
        version = subprocess.run(["podman", "exec", "code-server-demo", "opencode", "--version"],
                                 capture_output=True, text=True)
        assert version.returncode == 0, version.stderr
        assert re.fullmatch(r"\d+\.\d+\.\d+\s*", version.stdout), version.stdout

        again = make("demo", *variables, state=state)
        assert again.returncode == 0, again.stderr
        assert f"{url}   password: {password}" in again.stdout
        assert "nothing to change" in again.stderr

        down = make("down", state=state)
        assert down.returncode == 0, down.stderr
        assert subprocess.run(["podman", "container", "exists", "code-server-demo"]).returncode == 1
        assert (base / "vscode" / "demo" / "workspace").is_dir()
    finally:
        subprocess.run([str(ROOT / ".venv" / "bin" / "csm"), "down", "--state-dir", str(state)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
