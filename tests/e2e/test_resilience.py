"""A workspace comes back by itself: a code-server killed with kill -9 is healthy
again within 30 s (podman's restart policy from the plan, finished by the idle
service where podman 4.3 leaves it half-done, see csm/idle/restarts.py), and `csm status` counts
the restart without calling it an OOM kill; a backup restored on a fresh state
directory, before any `up`, gives the same files, and the user logs in.
On a stack of its own (user kim)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from csm.checks import commands, http, workbench
from csm.runner import podman
from csm.runner.host import Host
from csm.runner.stack import Stack
from csm.testing.stacks import tree_snapshot

pytestmark = pytest.mark.live
RUN = commands.subprocess_runner
HOST = Host.detect()
SOURCE = "127.0.0.61"  # logins from an address of their own


@pytest.fixture(scope="module")
def kim(live_stack_factory):
    # No idleStopAfter: what restarts a dead code-server must not depend on idle stop.
    stack = live_stack_factory(["kim"], extra_settings={"idleStopAfter": None})
    yield stack
    stack.close()


def code_server_pid(cname: str) -> int:
    """The host pid of code-server: the child of the container's init (tini)."""
    init = podman.inspect(HOST, cname)["State"]["Pid"]
    (child,) = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    return int(child)


def test_a_killed_code_server_is_healthy_again_within_30_s(kim):
    cname = kim.plan.users["kim"].container.name
    victim = code_server_pid(cname)
    assert (
        b"code-server" in Path(f"/proc/{victim}/cmdline").read_bytes().replace(b"\0", b" ")
        or b"entry" in Path(f"/proc/{victim}/cmdline").read_bytes()
    )
    os.kill(victim, 9)
    killed = time.monotonic()
    while podman.is_running(podman.inspect(kim.stack.host, cname)) and time.monotonic() - killed < 10:
        if not Path(f"/proc/{victim}").exists():
            break
        time.sleep(0.1)
    deadline = killed + 30
    while time.monotonic() < deadline:
        if podman.podman(kim.stack.host, "healthcheck", "run", cname, check=False).returncode == 0:
            break
        time.sleep(0.5)
    else:
        info = podman.inspect(kim.stack.host, cname)
        pytest.fail(f"not healthy 30 s after kill -9: {info['State'] if info else 'no container'}")
    print(f"healthy again {time.monotonic() - killed:.1f} s after kill -9")
    status = {u.name: u for u in kim.stack.status().users}["kim"]
    assert (status.state, status.health) == ("running", "healthy")
    assert status.restarts >= 1, status
    assert not status.oom_kills, f"a kill -9 was reported as an OOM kill: {status}"


def test_backup_delete_everything_restore_before_up_then_up(kim, tmp_path):
    def inside(script: str) -> str:
        return RUN(f"podman exec {kim.plan.users['kim'].container.name} sh -c '{script}'")

    kim.stack.up()  # running, whatever the test before left

    inside(
        "mkdir -p ~/project/keep && printf one > ~/project/keep/a && chmod 640 ~/project/keep/a"
        " && chmod 750 ~/project/keep && ln -sf a ~/project/keep/link && head -c 100000 /dev/urandom > ~/blob"
        " && mkfifo ~/project/pipe"
    )
    user_dir = kim.user_dir("kim")
    # Stopped, so code-server's own logs do not change between the snapshot and the archive.
    podman.podman(kim.stack.host, "stop", kim.plan.users["kim"].container.name)
    before = tree_snapshot(user_dir)
    del before["workspace/pipe"]  # a fifo holds no data: the backup leaves it out (restore refuses one)
    archive = kim.stack.backup(tmp_path / "backups")
    network = kim.plan.users["kim"].network.name

    # A fresh host: the stack is gone, with its state, workspaces and runtime files;
    # only the archive and the password hash (brought along, as docs/admin.md says) remain.
    kim.stack.down(unmount=True)
    assert podman.inspect_network(kim.stack.host, network) is None, "down left the user's network behind"
    shutil.rmtree(kim.plan.workspaceBase)
    shutil.rmtree(kim.state_dir)
    shutil.rmtree(kim.plan.runtimeDir, ignore_errors=True)
    fresh = Stack(kim.plan, kim.base / "fresh-state", kim.http_port)
    kim.stack = fresh  # so that close() stops this one

    assert fresh.restore(archive) == ["kim"]
    assert tree_snapshot(user_dir) == before
    fresh.up()
    workspace = {k: v for k, v in tree_snapshot(user_dir).items() if k.startswith("workspace/")}
    assert workspace == {k: v for k, v in before.items() if k.startswith("workspace/")}
    assert inside("cat ~/project/keep/a") == "one"
    target = http.Target(kim.url("kim"), kim.password("kim"), source_address=SOURCE)
    print(workbench.right_password_gives_session(target))
