"""Bad input that needs the real podman and nginx to show: a port already taken, the
image missing, a container name taken, a container that never becomes healthy.
Each gets a clear message and leaves nothing half-started: no container, no nginx,
no workspace. (Bad input caught without containers is in tests/unit/test_runner_cli.py;
a user removed from the settings in test_runner_stack.py.)"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import RunnerError, nginx, podman
from csm.runner.host import Host
from csm.runner.stack import Stack

pytestmark = pytest.mark.live
HOST = Host.detect()


class Attempt:
    """Settings for one user (eli) below a fresh directory, and ways to try `up`."""

    def __init__(self, kit, **extra):
        kit.require_image()
        self.base = kit.fresh_base_dir()
        self.state = self.base / "state"
        self.http_port = kit.free_port()
        self.settings = kit.stack_settings(self.base, ["eli"], extra)
        kit.write_password(self.settings, "eli")
        self.file = self.base / "settings.nix"
        self.file.write_text(f'builtins.fromJSON (builtins.readFile "{self.base}/settings.json")\n')
        (self.base / "settings.json").write_text(json.dumps(self.settings))
        self.plan = planlib.from_settings(self.settings)

    def csm_up(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "csm.cli",
                "up",
                str(self.file),
                "--state-dir",
                str(self.state),
                "--http-port",
                str(self.http_port),
            ],
            capture_output=True,
            text=True,
        )

    def assert_nothing_started(self):
        assert podman.inspect(HOST, "csm-test-eli") is None or podman.labels(podman.inspect(HOST, "csm-test-eli")).get(
            podman.STACK_LABEL
        ) != str(self.state)
        assert nginx.running_pid(self.state) is None
        assert not Path(self.settings["workspaceBase"]).exists(), "a workspace was created"
        assert not Path(self.settings["runtimeDir"]).exists(), "env files were written"
        assert not (self.state / "stack.json").exists()

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def attempt(stack_kit):
    made = []

    def make(**extra) -> Attempt:
        a = Attempt(stack_kit, **extra)
        made.append(a)
        return a

    yield make
    for a in made:
        a.cleanup()


def listening(address: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((address, port))
    s.listen()
    return s


def test_nginxs_port_taken_by_another_program(attempt):
    a = attempt()
    with listening("0.0.0.0", a.http_port):
        proc = a.csm_up()
    assert proc.returncode == 3, proc.stderr
    assert f"port {a.http_port}, where nginx is to listen, is already in use" in proc.stderr
    assert "--http-port" in proc.stderr, proc.stderr
    a.assert_nothing_started()


def test_a_port_setting_of_old_is_refused_before_anything_starts(attempt):
    a = attempt()
    a.settings["users"]["eli"]["port"] = 8090
    (a.base / "settings.json").write_text(json.dumps(a.settings))
    proc = a.csm_up()
    assert proc.returncode == 2, proc.stderr
    assert "users.eli.port is no longer a setting" in proc.stderr and "remove it" in proc.stderr
    a.assert_nothing_started()


def test_image_missing(attempt):
    a = attempt(image="localhost/code-server-multi:no-such-tag")
    proc = a.csm_up()
    assert proc.returncode == 3, proc.stderr
    assert "the image localhost/code-server-multi:no-such-tag is missing" in proc.stderr
    assert "make image" in proc.stderr
    a.assert_nothing_started()


def test_a_container_name_taken_by_something_else(attempt):
    a = attempt()
    subprocess.run(
        ["podman", "create", "--name=csm-test-eli", "--pull=never", *HOST.run_args, a.plan.image, "true"],
        check=True,
        capture_output=True,
    )
    try:
        proc = a.csm_up()
        assert proc.returncode == 3, proc.stderr
        assert "a container named csm-test-eli already exists and belongs to something other than csm" in proc.stderr
        a.assert_nothing_started()
        assert podman.inspect(HOST, "csm-test-eli") is not None  # not ours: left alone
    finally:
        subprocess.run(["podman", "rm", "-f", "csm-test-eli"], capture_output=True)


def broken(a: Attempt, cmd: list[str]) -> dict:
    """The plan with a container command that cannot serve: only the runner's
    reaction is under test here."""
    plan = copy.deepcopy(a.plan)
    plan.users["eli"].container.cmd = cmd
    return plan


def test_a_container_that_exits_is_undone(attempt):
    a = attempt()
    stack = Stack(
        broken(a, ["sh", "-c", "echo cannot start >&2; exit 3"]), a.state, a.http_port, progress=lambda m: None
    )
    with pytest.raises(RunnerError, match=r"eli's container csm-test-eli stopped \(exit code 3\).*csm logs eli"):
        stack.up()
    assert podman.inspect(HOST, "csm-test-eli") is None
    assert nginx.running_pid(a.state) is None
    assert not (a.state / "stack.json").exists()
    # The disk this `up` made and mounted is unmounted again, and kept with eli's files.
    disk = Path(a.settings["workspaceBase"]) / ".disks" / "eli.ext4"
    inside = subprocess.run(["debugfs", "-R", "stat /workspace", str(disk)], capture_output=True, text=True)
    assert "Type: directory" in inside.stdout, inside.stdout + inside.stderr
    assert not os.path.ismount(Path(a.settings["workspaceBase"]) / "eli")


def test_a_container_that_never_gets_healthy_is_undone(attempt):
    a = attempt()
    stack = Stack(broken(a, ["sleep", "600"]), a.state, a.http_port, progress=lambda m: None, health_timeout=5)
    with pytest.raises(RunnerError, match=r"eli did not pass the health check within 5 s; look at `csm logs eli`"):
        stack.up()
    assert podman.inspect(HOST, "csm-test-eli") is None
    assert nginx.running_pid(a.state) is None
