"""Each user's disk (csm/runner/disks.py): a user who writes past their quota gets
"No space left on device" and stops only themselves; the host's disk, a neighbour,
nginx and the gate are untouched; deleting gives the room back. A quota rises
without losing a byte, cannot fall below what is stored, and a quota set later moves
the files already there onto the disk. On a stack of its own (users quin and rhea)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from csm import plan as planlib
from csm.checks import http, workbench
from csm.runner import BadInput, disks, podman
from csm.testing.stacks import merge

pytestmark = pytest.mark.live
SOURCE = "127.0.0.62"  # logins from an address of their own
GIB = 2**30


@pytest.fixture(scope="module")
def pair(live_stack_factory):
    # rhea starts without a quota: the last test gives her one.
    return live_stack_factory(
        ["quin", "rhea"],
        extra_settings={"idleStopAfter": None, "diskQuota": "1G", "users": {"rhea": {"diskQuota": None}}},
    )


def inside(s, user: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "exec", s.container(user), "sh", "-c", script], capture_output=True, text=True, timeout=300
    )


def status(s) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "csm.cli", "status", "--json", "--state-dir", str(s.state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    return {u["name"]: u for u in json.loads(proc.stdout)["users"]}


def host_free(s) -> int:
    st = os.statvfs(s.plan.workspaceBase)
    return st.f_bavail * st.f_frsize


def logs_in(s, user: str) -> None:
    workbench.right_password_gives_session(http.Target(s.url(user), s.password(user), source_address=SOURCE))


def apply(s, settings: dict) -> None:
    s.settings = merge(s.settings, settings)
    s.plan = s.stack.plan = planlib.from_settings(s.settings)
    s.stack.up()


def test_a_full_disk_stops_only_its_owner(pair):
    image = pair.plan.users["quin"].disk.image
    free_before = host_free(pair)
    full = inside(pair, "quin", "head -c 2G /dev/zero > ~/project/big")  # twice the quota
    assert full.returncode != 0 and "No space left on device" in full.stderr, full
    assert os.stat(image).st_blocks * 512 <= GIB  # the disk's file holds at most the quota
    assert free_before - host_free(pair) <= 1.05 * GIB  # (other programs write too)
    assert status(pair)["quin"]["disk_percent"] == 100
    loop = os.path.basename(disks.mounted_device(pair.user_dir("quin")))
    assert open(f"/sys/block/{loop}/loop/dio").read().strip() == "1"  # direct I/O: no page cached twice

    # The neighbour logs in and writes; nginx and the gate serve; quin's code-server still answers.
    logs_in(pair, "rhea")
    assert inside(pair, "rhea", "head -c 50M /dev/zero > ~/project/fine && echo ok").stdout.strip() == "ok"
    st = pair.stack.status()
    assert st.nginx_pid and st.gate_pid
    logs_in(pair, "quin")

    # Deleting gives the room back.
    assert (
        inside(pair, "quin", "rm ~/project/big && head -c 100M /dev/zero > ~/project/again && echo ok").stdout.strip()
        == "ok"
    )
    assert status(pair)["quin"]["disk_percent"] < 15


def test_a_quota_rises_without_losing_a_byte_and_never_falls_below_use(pair):
    inside(pair, "quin", "rm -f ~/project/again; head -c 700M /dev/urandom > ~/project/keep")
    digest = inside(pair, "quin", "sha256sum < ~/project/keep").stdout
    apply(pair, {"users": {"quin": {"diskQuota": "2G"}}})
    assert status(pair)["quin"]["disk_quota_bytes"] == 2 * GIB
    assert 0.95 * 2 * GIB < status(pair)["quin"]["disk_size_bytes"] <= 2 * GIB
    assert inside(pair, "quin", "sha256sum < ~/project/keep").stdout == digest
    assert inside(pair, "quin", "head -c 1200M /dev/zero > ~/project/more && echo ok").stdout.strip() == "ok"

    # 1.9G stored: 1G is refused, naming the user, the use and the quota; nothing changes.
    cid = podman.inspect(pair.stack.host, pair.container("quin"))["Id"]
    with pytest.raises(BadInput) as refused:
        apply(pair, {"users": {"quin": {"diskQuota": "1G"}}})
    message = str(refused.value)
    assert "users.quin.diskQuota = 1.0G" in message and "1.9G quin stores" in message, message
    info = podman.inspect(pair.stack.host, pair.container("quin"))
    assert info["Id"] == cid and info["State"]["Running"]
    assert os.stat(pair.plan.users["quin"].disk.image).st_size == 2 * GIB

    # With room made it falls, as far as ext4 can shrink around where the files lie:
    # further is refused after a look at the stopped disk, which is then as it was.
    inside(pair, "quin", "rm ~/project/more")
    with pytest.raises(BadInput, match="users.quin.diskQuota = 1.0G: the disk can shrink to no less than"):
        apply(pair, {"users": {"quin": {"diskQuota": "1G"}}})
    assert podman.inspect(pair.stack.host, pair.container("quin"))["State"]["Running"]
    assert os.stat(pair.plan.users["quin"].disk.image).st_size == 2 * GIB
    apply(pair, {"users": {"quin": {"diskQuota": "1.5G"}}})
    assert status(pair)["quin"]["disk_quota_bytes"] == 1.5 * GIB
    assert inside(pair, "quin", "sha256sum < ~/project/keep").stdout == digest
    logs_in(pair, "quin")


def test_a_quota_set_later_moves_the_files_onto_the_disk(pair):
    rhea = pair.plan.users["rhea"]
    assert disks.usage(rhea) is None and status(pair)["rhea"]["disk_used_bytes"] is None
    inside(pair, "rhea", "mkdir -p ~/project/src && printf hello > ~/project/src/a && chmod 640 ~/project/src/a")
    listing = (
        "cd ~/project && find . -printf '%u %m %s %p\\n' | sort && cat ~/.local/share/code-server/User/settings.json"
    )
    before = inside(pair, "rhea", listing).stdout
    apply(pair, {"users": {"rhea": {"diskQuota": "1G"}}})
    assert disks.usage(pair.plan.users["rhea"]).quota_bytes == GIB
    after = inside(pair, "rhea", listing).stdout
    assert after == before
    assert inside(pair, "rhea", "cat ~/project/src/a").stdout == "hello"
    logs_in(pair, "rhea")


def test_down_unmount_unmounts_every_disk_and_reset_and_up_bring_them_back(pair):
    digest = hashlib.sha256(open(os.path.join(pair.workspace("quin"), "keep"), "rb").read()).hexdigest()
    pair.stack.down()
    assert os.path.exists(os.path.join(pair.workspace("quin"), "keep"))  # a plain down keeps them in view
    pair.stack.up()
    pair.stack.down(unmount=True)
    assert not any(disks.is_mounted(u.disk) for u in pair.plan.users.values())
    assert not os.path.exists(os.path.join(pair.workspace("quin"), "keep"))
    pair.stack.up()
    assert hashlib.sha256(open(os.path.join(pair.workspace("quin"), "keep"), "rb").read()).hexdigest() == digest

    # As after a reboot: the containers and networks are there, the disks not mounted.
    # A reset before any `up` mounts quin's disk before the new container starts.
    for user in pair.plan.users.values():
        podman.podman(pair.stack.host, "stop", user.container.name)
    disks.unmount_all(pair.plan.workspaceBase)
    pair.stack.reset("quin")
    assert inside(pair, "quin", "sha256sum < ~/project/keep").stdout.split()[0] == digest
    pair.stack.up()


def test_a_restore_that_does_not_fit_beside_the_files_changes_nothing(pair, tmp_path):
    inside(pair, "quin", "rm -f ~/project/keep")  # a small archive
    inside(pair, "rhea", "head -c 600M /dev/zero > ~/project/big && printf mine > ~/project/note")
    archive = pair.stack.backup(tmp_path / "backups")
    inside(pair, "rhea", "printf changed > ~/project/note")
    # 600M archived beside 600M stored do not fit in rhea's 1G: refused, her files as they were.
    with pytest.raises(BadInput, match="rhea's disk has no room for the archive beside what it holds now"):
        pair.stack.restore(archive, ["rhea"])
    assert inside(pair, "rhea", "cat ~/project/note").stdout == "changed"
    assert sorted(os.listdir(pair.user_dir("rhea"))) == ["config", "workspace"]
    inside(pair, "rhea", "rm ~/project/big")
    assert pair.stack.restore(archive, ["rhea"]) == ["rhea"]
    assert inside(pair, "rhea", "cat ~/project/note").stdout == "mine"
