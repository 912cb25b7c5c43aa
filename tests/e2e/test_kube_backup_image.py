"""The backup CronJob `csm kube render` writes, run for real against the project image:
its container's command, arguments, environment, user, limits and mounts under podman
(no network, read-only root, the user's claim read-only), on a directory standing in for
a user's claim. Three runs keep the newest `keep`; the archive is one `csm backup` would
write (csm's own reader accepts it); the restore pod of docs/kubernetes.md brings the
files back on the claim, and refuses a truncated archive without touching them; `csm
restore` on a host restores the same archive, owners moved into the user's host range.
Everything it starts is named csm-kbak-* and removed by that name."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from csm import kube
from csm import plan as planlib
from csm.runner import backup as hostbackup
from csm.runner.host import Host
from csm.testing.stacks import fresh_base_dir, require_image, stack_settings, tree_snapshot

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
CSM = str(Path(sys.executable).parent / "csm")
USER = "kbak"  # no other live stack of a session uses it
PREFIX = "csm-kbak"
KEEP = 2
STAMP = re.compile(r"\d{8}T\d{6}Z\.tar\.gz")
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|)", quantity).groups()
    return int(number) * UNITS[unit]


def cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def docs_restore_pod() -> dict:
    """The restore Pod docs/kubernetes.md applies (`kubectl apply -f - <<'EOF'`)."""
    docs = (ROOT / "docs/kubernetes.md").read_text()
    blocks = re.findall(r"kubectl -n code-server-multi apply -f - <<'EOF'\n(.*?)\nEOF\n", docs, re.S)
    (pod,) = [p for p in map(yaml.safe_load, blocks) if p["metadata"]["name"].endswith("-restore")]
    return pod


class Runner:
    """Runs a pod spec's one container as Kubernetes would, with podman: claims by name
    from host directories, and removes every container it named."""

    def __init__(self, claims: dict[str, Path]):
        self.claims, self.names, self.host = claims, [], Host.detect()
        self.token = secrets.token_hex(3)

    def run(self, pod: dict, last_args: list[str] | None = None) -> subprocess.CompletedProcess:
        (c,) = pod["containers"]
        sc, csc = pod["securityContext"], c["securityContext"]
        name = f"{PREFIX}-{self.token}-{len(self.names)}"
        self.names.append(name)
        volumes = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]}
        args = ["podman", "run", "--rm", "--name", name, *self.host.run_args, "--network", "none"]
        args += ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}"]
        if "fsGroup" in sc:
            args += ["--group-add", str(sc["fsGroup"])]
        if csc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        assert csc["capabilities"] == {"drop": ["ALL"]} and csc["allowPrivilegeEscalation"] is False
        args += ["--cap-drop", "all", "--security-opt", "no-new-privileges"]
        limits = c["resources"]["limits"]
        args += ["--memory", str(memory_bytes(limits["memory"])), "--cpus", cpus(limits["cpu"])]
        for m in c["volumeMounts"]:
            claim = volumes[m["name"]]
            ro = m.get("readOnly") or claim.get("readOnly")
            args += ["-v", f"{self.claims[claim['claimName']]}:{m['mountPath']}{':ro' if ro else ''}"]
        for e in c.get("env", []):
            args += ["--env", f"{e['name']}={e['value']}"]
        command = c["command"] + c.get("args", [])
        if last_args is not None:
            command = command[: -len(last_args)] + last_args
        args += ["--entrypoint", command[0], c["image"], *command[1:]]
        return subprocess.run(args, capture_output=True, text=True, timeout=300)

    def close(self) -> None:
        for name in self.names:
            subprocess.run(["podman", "rm", "-f", "--ignore", name], capture_output=True)


def user_files(claim: Path, uid: int) -> None:
    """What a user's pod leaves on the claim: the plan's two top directories, files of
    every kind (a fifo, which backups leave out), a read-only directory (Go's module
    cache); and the filesystem's lost+found, root's own."""
    (claim / "lost+found").mkdir(mode=0o700)
    w, c = claim / "workspace", claim / "config"
    (w / "proj").mkdir(parents=True)
    (w / "proj/notes.md").write_text("first notes\n")
    (w / "proj/run.sh").write_text("#!/bin/sh\necho hi\n")
    (w / "proj/run.sh").chmod(0o755)
    (w / "proj/link").symlink_to("notes.md")
    (w / "secret.txt").write_text("mine\n")
    (w / "secret.txt").chmod(0o600)
    (w / "blob").write_bytes(os.urandom(200_000))
    os.mkfifo(w / "pipe")
    (c / "project").mkdir(parents=True)  # where the workspace is mounted in the home
    settings = c / ".local/share/code-server/User/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"editor.fontSize": 14}')
    (c / "go/pkg/mod/x@v1").mkdir(parents=True)
    (c / "go/pkg/mod/x@v1/go.mod").write_text("module x\n")
    for p in [w, c, *w.rglob("*"), *c.rglob("*")]:
        os.lchown(p, uid, uid)
    (c / "go/pkg/mod/x@v1/go.mod").chmod(0o444)
    (c / "go/pkg/mod/x@v1").chmod(0o555)


def kept(tree: dict) -> dict:
    """A claim's snapshot without what backups leave out (fifos, lost+found, the root)."""
    return {k: v for k, v in tree.items() if k.startswith(("workspace", "config")) and not k.endswith("/pipe")}


@pytest.fixture()
def setup():
    require_image()
    base = fresh_base_dir(f"{PREFIX}-")
    settings = stack_settings(
        base, [USER], {"diskQuota": "1G", "backup": {"enable": True, "keep": KEEP}}, name_prefix=PREFIX
    )
    (base / "settings.json").write_text(json.dumps(settings))
    rendered = kube.render(base / "settings.json", namespace="csm-kbak-test")
    (job,) = [o for o in rendered["objects"] if o["kind"] == "CronJob"]
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    uid = pod["securityContext"]["runAsUser"]
    # The claims as a provisioner leaves them: root's, writable by the pods' fsGroup.
    claims = {volumes["home"]: base / "claim", volumes["backups"]: base / "backups"}
    for d in claims.values():
        d.mkdir()
        os.chown(d, 0, pod["securityContext"]["fsGroup"])
        d.chmod(0o2775)
    runner = Runner(claims)
    try:
        yield base, settings, pod, runner, claims[volumes["home"]], claims[volumes["backups"]], uid
    finally:
        runner.close()
        for name in runner.names:
            assert subprocess.run(["podman", "container", "exists", name]).returncode == 1, f"{name} is left"
        shutil.rmtree(base, ignore_errors=True)


def test_cronjob_archives_prunes_and_the_documented_restore_and_csm_restore_bring_it_back(setup):
    base, settings, pod, runner, claim, backups, uid = setup
    user_files(claim, uid)

    # Three runs, a second apart, the claim changing in between: the newest KEEP stay.
    for n in range(3):
        (claim / "workspace/proj/notes.md").write_text(f"notes of run {n}\n")
        proc = runner.run(pod)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"wrote /backups/{USER}/" in proc.stdout
        time.sleep(1.1)
    assert "removed" in proc.stdout and f"keeping the newest {KEEP}" in proc.stdout
    archives = sorted(p.name for p in (backups / USER).iterdir())
    assert len(archives) == KEEP and all(STAMP.fullmatch(a) for a in archives), archives
    newest = backups / USER / archives[-1]
    assert oct(newest.stat().st_mode & 0o777) == "0o600"
    at_backup = tree_snapshot(claim)

    # csm's own reader: our format, this domain, the user's directories, no fifo.
    manifest, members = hostbackup.read(newest)
    assert manifest["domain"] == settings["domain"] and list(manifest["users"]) == [USER]
    names = {m.name for m in members}
    assert f"{USER}/workspace/proj/notes.md" in names and f"{USER}/workspace/pipe" not in names
    assert not [n for n in names if "lost+found" in n]

    # Her files go wrong: one deleted, one changed, one new.
    (claim / "workspace/proj/notes.md").unlink()
    (claim / "config/.local/share/code-server/User/settings.json").write_text("{}")
    (claim / "workspace/stray.txt").write_text("after the backup\n")
    os.lchown(claim / "workspace/stray.txt", uid, uid)
    broken = tree_snapshot(claim)

    # The documented pod, for Ada in namespace code-server-multi: its claims are ours here.
    restore = docs_restore_pod()["spec"]
    ours = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    for v in restore["volumes"]:
        v["persistentVolumeClaim"]["claimName"] = ours[v["name"]]
    # A truncated archive is refused before anything changes.
    truncated = backups / USER / "19700101T000000Z.tar.gz"
    truncated.write_bytes(newest.read_bytes()[:-2000])
    proc = runner.run(restore, [f"{USER}/{truncated.name}"])
    assert proc.returncode != 0 and tree_snapshot(claim) == broken, proc.stdout + proc.stderr
    truncated.unlink()

    proc = runner.run(restore, [f"{USER}/{newest.name}"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"restored {USER} from {USER}/{newest.name}" in proc.stdout
    after = tree_snapshot(claim)
    assert kept(after) == kept(at_backup)
    assert "workspace/stray.txt" not in after and "lost+found" in after
    assert not [k for k in after if k.startswith((".restore", ".before-restore"))]
    assert (claim / "workspace/proj/notes.md").read_text() == "notes of run 2\n"

    # A restore stopped mid-swap (workspace moved aside, not replaced), then a run on a
    # broken archive: what was moved aside is put back before anything else.
    (claim / ".before-restore").mkdir()
    os.lchown(claim / ".before-restore", uid, uid)  # made by the restore pod
    (claim / "workspace").rename(claim / ".before-restore/workspace")
    truncated.write_bytes(newest.read_bytes()[:-2000])
    proc = runner.run(restore, [f"{USER}/{truncated.name}"])
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert kept(tree_snapshot(claim)) == kept(after), "the interrupted restore's folders are back"
    truncated.unlink()
    proc = runner.run(restore, [f"{USER}/{newest.name}"])
    assert proc.returncode == 0 and kept(tree_snapshot(claim)) == kept(at_backup), proc.stdout + proc.stderr
    assert not [k for k in tree_snapshot(claim) if k.startswith((".restore", ".before-restore"))]

    # The same archive on a host of the same settings: `csm restore` before any `up`.
    host_settings = {**settings, "diskQuota": None, "backup": {"enable": False}}
    host_settings["workspaceBase"] = str(base / "host-workspaces")
    (base / "host.json").write_text(json.dumps(host_settings))
    (base / "host.nix").write_text(f"builtins.fromJSON (builtins.readFile {base / 'host.json'})")
    proc = subprocess.run(
        [CSM, "restore", "--settings", str(base / "host.nix"), "--state-dir", str(base / "state"), str(newest)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    user = planlib.from_settings(host_settings).users[USER]
    on_host = kept(tree_snapshot(base / "host-workspaces" / USER))
    # Owners moved into the host's range; the plan's own directories get the plan's mode.
    modes = {os.path.relpath(d.path, user.disk.mountPoint): int(d.mode, 8) for d in user.directories}
    moved = {k: (user.ids.hostUid, user.ids.hostGid, modes.get(k, v[2]), *v[3:]) for k, v in kept(at_backup).items()}
    assert on_host == moved


def test_an_unreadable_folder_is_a_warning_and_a_full_claim_leaves_no_part(setup):
    base, settings, pod, runner, claim, backups, uid = setup
    user_files(claim, uid)
    # A folder she made unreadable (or one removed while listed): the rest is archived.
    locked = claim / "workspace/locked"
    (locked / "inner").mkdir(parents=True)
    for p in (locked, locked / "inner"):
        os.lchown(p, uid, uid)
    locked.chmod(0)
    proc = runner.run(pod)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"some of {USER}/workspace could not be listed" in proc.stderr
    (archive,) = (backups / USER).iterdir()
    _, members = hostbackup.read(archive)
    names = {m.name for m in members}
    assert f"{USER}/workspace/proj/notes.md" in names and f"{USER}/workspace/locked/inner" not in names
    locked.chmod(0o700)

    # A backups claim too full for the archive: the run fails and takes its part away.
    shutil.rmtree(backups / USER)
    group = pod["securityContext"]["fsGroup"]
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,mode=2775,gid={group}", "tmpfs", str(backups)], check=True)
    try:
        proc = runner.run(pod)
        assert proc.returncode != 0 and "tar failed" in proc.stderr, proc.stdout + proc.stderr
        assert list((backups / USER).iterdir()) == [], "a failed run left its part on the claim"
    finally:
        subprocess.run(["umount", str(backups)], check=True)
