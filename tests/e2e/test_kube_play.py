"""The Kubernetes pod `csm kube render` writes for a user, run for real here under
`podman kube play` (csm/testing/kube_play.py): its limits and identity as podman
inspect shows them, the Secret's variables in its environment, its files on the
volume under the plan's host uid, and `csm smoke` passing (login and workbench)
through the gate and nginx in front; then everything gone."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from csm.testing.kube_play import SUBID_FILES, KubePlay, smoke_passes
from csm.testing.stacks import fresh_base_dir, require_image, stack_settings, write_password

pytestmark = pytest.mark.live

USER = "kp"  # no other live stack of a session uses it
MARKER = "kube-" + secrets.token_hex(8)


def test_a_play_that_fails_leaves_nothing():
    """A pod whose image does not exist: kube play fails, and its claim, network, pod
    and the subordinate id ranges are gone or restored before the error is raised."""
    base = fresh_base_dir("csm-kube-")
    try:
        settings = stack_settings(
            base, ["kq"], {"image": "localhost/csm-kube-missing:none", "diskQuota": "2G"}, name_prefix="csm-kube"
        )
        write_password(settings, "kq")
        before = {p: p.read_text() for p in SUBID_FILES}
        with pytest.raises(AssertionError, match="podman kube play"):
            KubePlay(settings, base)
        assert {p: p.read_text() for p in SUBID_FILES} == before
        for what in (
            ["pod", "exists", "csm-kube-kq"],
            ["volume", "exists", "csm-kube-kq"],
            ["network", "exists", "csm-kube-kube"],
        ):
            assert subprocess.run(["podman", *what], capture_output=True).returncode == 1, f"left: {what}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def play():
    require_image()
    base = fresh_base_dir("csm-kube-")
    keys = base / "secrets" / "kp.env"
    limits = {"memoryLimit": "1536m", "memorySoftLimit": "1g", "cpuLimit": "1.25", "diskQuota": "2G"}
    settings = stack_settings(
        base, [USER], {"users": {USER: {**limits, "environmentFiles": [str(keys)]}}}, name_prefix="csm-kube"
    )
    password = write_password(settings, USER)
    keys.write_text(f"CSM_KUBE_KEY={MARKER}\n")
    keys.chmod(0o600)
    try:
        played = KubePlay(settings, base)
        played.password = password
        yield played
        played.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_limits_and_identity_are_the_plans(play):
    info, user = play.inspect(), play.user
    host = info["HostConfig"]
    assert host["Memory"] == user.limits.memoryBytes
    assert host["MemoryReservation"] == user.limits.memorySoftBytes
    assert host["NanoCpus"] == int(float(user.limits.cpus) * 1e9)
    assert host["CapAdd"] in (None, []) and "CAP_CHOWN" in host["CapDrop"] and "CAP_SETUID" in host["CapDrop"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert info["Config"]["User"] == user.container.user
    assert host["IDMappings"]["UidMap"][0].startswith(f"0:{user.ids.base}:")
    claim = play.played("PersistentVolumeClaim")["metadata"]["name"]
    on_disk = [v.split(":") for v in user.container.volumes if v.startswith(user.disk.mountPoint + "/")]
    assert sorted((m["Destination"], m["Name"]) for m in info["Mounts"]) == sorted((c, claim) for _, c, *_ in on_disk)


def test_the_secret_reaches_the_environment_and_nowhere_else(play):
    env = play._podman("exec", play.container, "printenv", "CSM_KUBE_KEY").stdout.strip()
    assert env == MARKER
    assert MARKER not in play.yaml.read_text()
    assert all(MARKER not in " ".join(c["Config"].get("Cmd") or []) for c in [play.inspect()])


def test_files_on_the_volume_belong_to_the_plans_host_uid(play):
    project = next(v.split(":")[1] for v in play.user.container.volumes if "/workspace:" in v)
    play._podman("exec", play.container, "sh", "-c", f"echo hi > {project}/hello.txt")
    claim = play.played("PersistentVolumeClaim")["metadata"]["name"]
    source = Path(play._podman("volume", "inspect", claim, "--format", "{{.Mountpoint}}").stdout.strip())
    # podman 4.3 mounts a claim whole, ignoring subPath (a cluster mounts
    # <volume>/workspace there): the file is found wherever the project lies.
    (written,) = source.rglob("hello.txt")
    assert written.read_text() == "hi\n"
    assert written.stat().st_uid == play.user.ids.hostUid
    seed = source / "config" / ".local/share/code-server/User/settings.json"
    assert seed.read_text() == play.user.seedFiles[0].content


def test_smoke_login_and_workbench_through_the_gate(play):
    smoke_passes(play.url(), USER, play.password)


def test_kube_down_leaves_nothing(play):
    play.close()
    assert play.leftovers() == []
