"""Backups and restores of users' directories, without containers: owners, modes,
contents, retention, and every archive restore must refuse before touching anything."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import BadInput, backup, files
from csm.runner.stack import Stack
from csm.testing.stacks import tree_snapshot

# Their plans name directories' owners by the accounts `csm up` creates.
pytestmark = pytest.mark.usefixtures("host_accounts")


def make_stack(tmp_path: Path, domain: str = "code.localhost", keep: int = 7, **user_settings) -> Stack:
    settings = {
        "domain": domain,
        "workspaceBase": str(tmp_path / "ws"),
        "runtimeDir": str(tmp_path / "run"),
        "backup": {"keep": keep},
        "diskQuota": None,  # the disks: tests/e2e/test_disk_quota.py
        "users": {u: {"hashedPasswordFile": f"/nonexistent/{u}", **user_settings.get(u, {})} for u in ("ada", "bo")},
    }
    stack = Stack(planlib.from_settings(settings), tmp_path / "state", progress=lambda m: None)
    for d in stack.plan.directories + [d for u in stack.plan.users.values() for d in u.directories]:
        files.ensure_directory(d)
    return stack


def populate(stack: Stack, user: str) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Files as the container would leave them; returns path -> (uid, gid, mode, content)."""
    uid = stack.plan.users[user].ids.hostUid
    root = Path(stack.plan.workspaceBase) / user
    made = {
        "workspace/notes.md": (uid, uid, 0o644, b"# notes\n"),
        "workspace/run.sh": (uid, uid, 0o755, b"#!/bin/sh\necho hi\n"),
        "workspace/private": (uid, uid, 0o750, None),
        "workspace/private/key": (uid, uid, 0o600, b"secret"),
        "config/.bashrc": (uid, uid, 0o640, b"alias ll='ls -l'\n"),
    }
    for rel, (u, g, mode, content) in made.items():
        p = root / rel
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
        os.chown(p, u, g)
        os.chmod(p, mode)
    (root / "workspace" / "link").symlink_to("notes.md")
    # A venv's interpreter link: absolute, it names a path in the container, not the host.
    (root / "workspace" / "python").symlink_to("/usr/bin/python3")
    os.link(root / "workspace" / "notes.md", root / "workspace" / "notes-again.md")
    for link in ("link", "python"):
        os.lchown(root / "workspace" / link, uid, uid)
    return made


def snapshot(stack: Stack, user: str) -> dict[str, tuple]:
    return tree_snapshot(Path(stack.plan.workspaceBase) / user)


def test_round_trip_keeps_owners_modes_and_contents(tmp_path):
    stack = make_stack(tmp_path)
    populate(stack, "ada")
    populate(stack, "bo")
    before = {u: snapshot(stack, u) for u in ("ada", "bo")}
    archive = stack.backup(tmp_path / "backups")
    assert archive.name.startswith("code-server-multi-code.localhost-") and archive.suffixes[-2:] == [".tar", ".gz"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        first = tar.getmembers()[0]
        manifest = json.load(tar.extractfile(first))
        assert first.name == backup.MANIFEST
        assert manifest["domain"] == "code.localhost" and sorted(manifest["users"]) == ["ada", "bo"]
        assert all(m.uname == "" for m in tar.getmembers())

    ws = Path(stack.plan.workspaceBase)
    (ws / "ada" / "workspace" / "notes.md").write_text("changed")
    (ws / "ada" / "workspace" / "run.sh").unlink()
    (ws / "ada" / "workspace" / "new-file").write_text("made after the backup")
    (ws / "bo" / "workspace" / "notes.md").write_text("bo's change stays")

    assert stack.restore(archive, ["ada"]) == ["ada"]
    assert snapshot(stack, "ada") == before["ada"]
    assert (ws / "bo" / "workspace" / "notes.md").read_text() == "bo's change stays"
    assert sorted(p.name for p in ws.iterdir()) == ["ada", "bo"]  # no staging left behind

    assert stack.restore(archive) == ["ada", "bo"]
    assert {u: snapshot(stack, u) for u in ("ada", "bo")} == before


def test_a_fifo_is_left_out_of_the_backup(tmp_path):
    # It carries no data, and restore refuses special files.
    stack = make_stack(tmp_path)
    populate(stack, "ada")
    os.mkfifo(Path(stack.plan.workspaceBase) / "ada" / "workspace" / "pipe")
    _, members = backup.read(stack.backup(tmp_path / "backups"))
    assert "ada/workspace/pipe" not in {m.name for m in members}


def test_restore_on_a_fresh_host_before_any_up(tmp_path):
    old = make_stack(tmp_path / "old")
    populate(old, "ada")
    populate(old, "bo")
    before = {u: snapshot(old, u) for u in ("ada", "bo")}
    archive = old.backup(tmp_path / "backups")
    settings = {
        "domain": "code.localhost",
        "workspaceBase": str(tmp_path / "new" / "deep" / "ws"),
        "runtimeDir": str(tmp_path / "new" / "run"),
        "diskQuota": None,
        "users": {u: {"hashedPasswordFile": f"/nonexistent/{u}"} for u in ("ada", "bo")},
    }
    fresh = Stack(planlib.from_settings(settings), tmp_path / "new" / "state", progress=lambda m: None)
    assert not Path(fresh.plan.workspaceBase).exists()
    assert fresh.restore(archive) == ["ada", "bo"]
    assert {u: snapshot(fresh, u) for u in ("ada", "bo")} == before
    assert stat.S_IMODE(Path(fresh.plan.workspaceBase).stat().st_mode) == 0o711


def test_restore_shifts_owners_to_a_new_uid_range(tmp_path):
    old = make_stack(tmp_path)
    populate(old, "ada")
    archive = old.backup(tmp_path / "backups")
    new = make_stack(tmp_path, ada={"uidBase": 65536 * 100})
    new_uid = new.plan.users["ada"].ids.hostUid
    assert new_uid != old.plan.users["ada"].ids.hostUid
    new.restore(archive, ["ada"])
    owners = {v[0] for k, v in snapshot(new, "ada").items() if k != "."}
    assert owners == {new_uid}
    assert Path(new.plan.workspaceBase, "ada").stat().st_uid == 0  # the user dir stays root's


def test_retention_keeps_the_newest(tmp_path):
    stack = make_stack(tmp_path, keep=2)
    target = tmp_path / "backups"
    target.mkdir()
    unrelated = target / "something-else.tar.gz"
    unrelated.write_text("not ours")
    made = [stack.backup(target) for _ in range(3)]
    remaining = sorted(target.glob("code-server-multi-*.tar.gz"))
    assert remaining == sorted(made[1:])
    assert unrelated.exists()


# ---- archives restore must refuse ----------------------------------------------


def tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def manifest_member(domain="code.localhost", users=("ada",), **overrides) -> tuple[tarfile.TarInfo, bytes]:
    body = {
        "format": backup.FORMAT,
        "version": backup.VERSION,
        "domain": domain,
        "users": {u: {"idBase": 65536 * 100, "idSize": 65536} for u in users},
    } | overrides
    return tarfile.TarInfo(backup.MANIFEST), json.dumps(body).encode()


USER_UID = 65536 * 100 + 1000  # uid 1000 in the container, in the id range manifest_member gives


def entry(name, kind=tarfile.DIRTYPE, linkname="", data=None, owner=None, mode=None):
    """A member as a backup holds it: the user's own directory root's, the rest the user's."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.mode = mode if mode is not None else 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.uid = info.gid = owner if owner is not None else 0 if "/" not in name else USER_UID
    return info, data


def appended(good: Path, path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A real backup with members added at its end, as someone who can change it would."""
    raw = io.BytesIO(gzip.decompress(good.read_bytes()))
    with tarfile.open(fileobj=raw, mode="a") as tar:
        users_uid = tar.getmember("ada/workspace").uid
        for info, data in members:
            if info.uid == USER_UID:  # the user of this real backup
                info.uid = info.gid = users_uid
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def bad_archives(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    outside = tmp_path / "outside"  # stands for any host path outside every user's tree
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    flipped = tmp_path / "flipped.tar.gz"
    flipped.write_bytes(raw[:-12] + bytes(b ^ 0xFF for b in raw[-12:-8]) + raw[-8:])
    not_gzip = tmp_path / "notes.tar.gz"
    not_gzip.write_text("just text")
    plain_tar = tmp_path / "other.tar.gz"
    tar_gz(plain_tar, [entry("ada"), entry("ada/file", tarfile.REGTYPE, data=b"x")])
    return {
        "truncated": (truncated, "not a readable tar.gz"),
        "corrupt": (flipped, "not a readable tar.gz"),
        "not gzip": (not_gzip, "not a readable tar.gz"),
        "no manifest": (plain_tar, "not a code-server-multi backup"),
        "foreign manifest": (
            tar_gz(tmp_path / "f.tar.gz", [(tarfile.TarInfo(backup.MANIFEST), b'{"format": "x"}'), entry("ada")]),
            "manifest is not ours",
        ),
        "other stack": (
            tar_gz(
                tmp_path / "o.tar.gz",
                [manifest_member("code.example.org", ("ada", "linus")), entry("ada"), entry("linus")],
            ),
            "backup of the stack for code.example.org (users ada, linus), not of this one (code.localhost)",
        ),
        "newer format": (
            tar_gz(tmp_path / "v.tar.gz", [manifest_member(version=99), entry("ada")]),
            "format version 99",
        ),
        "path escape": (
            tar_gz(
                tmp_path / "e.tar.gz",
                [manifest_member(), entry("ada"), entry("ada/../../etc", tarfile.REGTYPE, data=b"x")],
            ),
            "not inside a user directory",
        ),
        "absolute path": (
            tar_gz(
                tmp_path / "a.tar.gz",
                [manifest_member(), entry("ada"), entry("/etc/cron.d/x", tarfile.REGTYPE, data=b"x")],
            ),
            "not inside a user directory",
        ),
        "through a symlink": (
            tar_gz(
                tmp_path / "s.tar.gz",
                [
                    manifest_member(),
                    entry("ada"),
                    entry("ada/workspace/out", tarfile.SYMTYPE, "/etc"),
                    entry("ada/workspace/out/passwd", tarfile.REGTYPE, data=b"x"),
                ],
            ),
            "below a symbolic link",
        ),
        # A real backup with a link out and then a file of the same name: extracting the
        # file would write through the link, as root, outside the user's directory.
        "a name twice, link then file": (
            appended(
                good,
                tmp_path / "twice.tar.gz",
                [
                    entry("ada/workspace/x", tarfile.SYMTYPE, str(outside / "written")),
                    entry("ada/workspace/x", tarfile.REGTYPE, data=b"written through the link"),
                ],
            ),
            "appears twice",
        ),
        "a name twice, file then link": (
            appended(
                good, tmp_path / "twice2.tar.gz", [entry("ada/workspace/notes.md", tarfile.SYMTYPE, str(outside))]
            ),
            "appears twice",
        ),
        "symlink climbing out": (
            appended(good, tmp_path / "up.tar.gz", [entry("ada/workspace/bo", tarfile.SYMTYPE, "../../bo/workspace")]),
            "points outside",
        ),
        "symlink for a mounted directory": (
            tar_gz(
                tmp_path / "mnt.tar.gz",
                [
                    manifest_member(),
                    entry("ada"),
                    entry("ada/workspace", tarfile.SYMTYPE, str(outside)),
                    entry("ada/config"),
                ],
            ),
            "only directories",
        ),
        "fifo": (
            appended(good, tmp_path / "fifo.tar.gz", [entry("ada/workspace/p", tarfile.FIFOTYPE)]),
            "device or another special file",
        ),
        "set-uid root": (
            appended(
                good,
                tmp_path / "root.tar.gz",
                [entry("ada/workspace/sh", tarfile.REGTYPE, data=b"#!/bin/sh\n", owner=0, mode=0o4755)],
            ),
            "set-uid or set-gid and owned by 0:0, outside ada's id range",
        ),
        "device": (
            tar_gz(tmp_path / "d.tar.gz", [manifest_member(), entry("ada"), entry("ada/sda", tarfile.BLKTYPE)]),
            "device",
        ),
        "hard link out": (
            tar_gz(
                tmp_path / "h.tar.gz",
                [manifest_member(), entry("ada"), entry("ada/shadow", tarfile.LNKTYPE, "/etc/shadow")],
            ),
            "hard link",
        ),
        "user missing": (
            tar_gz(tmp_path / "m.tar.gz", [manifest_member(users=("ada", "bo")), entry("ada")]),
            "holds no directory for them",
        ),
        "user not in settings": (
            tar_gz(tmp_path / "n.tar.gz", [manifest_member(users=("ada", "zed")), entry("ada"), entry("zed")]),
            "zed from",
        ),
    }


def test_every_bad_archive_is_refused_before_anything_changes(tmp_path):
    stack = make_stack(tmp_path)
    populate(stack, "ada")
    good = stack.backup(tmp_path / "backups")
    before = snapshot(stack, "ada")
    cases = bad_archives(tmp_path, good)
    (tmp_path / "outside").mkdir()
    outside_before = os.stat(tmp_path / "outside")
    for name, (archive, message) in cases.items():
        with pytest.raises(BadInput) as e:
            stack.restore(archive)
        assert message in str(e.value), f"{name}: {e.value}"
        assert snapshot(stack, "ada") == before, name
        assert os.listdir(tmp_path / "outside") == [], name
        assert os.stat(tmp_path / "outside")[:6] == outside_before[:6], name
    with pytest.raises(BadInput, match="holds no backup of cy"):
        stack.restore(good, ["cy"])
    with pytest.raises(BadInput, match="does not exist"):
        stack.restore(tmp_path / "missing.tar.gz")
    assert snapshot(stack, "ada") == before


def test_cli_restore_of_a_corrupt_archive_exits_2(tmp_path):
    stack = make_stack(tmp_path)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(planlib.to_json(stack.plan)))
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(gzip.compress(b"x" * 1000)[:-20])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "csm.cli",
            "restore",
            str(corrupt),
            "--plan",
            str(plan_file),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "not a readable tar.gz" in proc.stderr and "nothing was restored" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_backup_with_a_plan_file_as_nixos_runs_it(tmp_path):
    # modules/code-server-multi/backup.nix: csm backup --plan <plan.json> --to <target>
    stack = make_stack(tmp_path)
    populate(stack, "ada")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(planlib.to_json(stack.plan)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "csm.cli",
            "backup",
            "--plan",
            str(plan_file),
            "--to",
            str(tmp_path / "target"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    archive = Path(proc.stdout.strip())
    assert archive.parent == tmp_path / "target" and archive.is_file()
    manifest, members = backup.read(archive)
    assert manifest["domain"] == "code.localhost"
    assert "ada/workspace/notes.md" in {m.name for m in members}


FOREIGN_MANIFESTS = {
    "other format": {"format": "x", "version": backup.VERSION, "users": {}},
    "users not a mapping": {"format": backup.FORMAT, "version": backup.VERSION, "users": ["ada"]},
    "no users": {"format": backup.FORMAT, "version": backup.VERSION},
    "a list": [backup.FORMAT],
    "not JSON": "{format",
}


@pytest.mark.parametrize("optimize", [[], ["-O"]], ids=["python", "python -O"])
def test_a_foreign_manifest_is_refused_also_without_asserts(tmp_path, optimize):
    # `python -O` drops assert statements: the check must not be one.
    archives = []
    for body in FOREIGN_MANIFESTS.values():
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        archives.append(
            str(tar_gz(tmp_path / f"{len(archives)}.tar.gz", [(tarfile.TarInfo(backup.MANIFEST), data), entry("ada")]))
        )
    script = (
        "import sys\nfrom csm.runner import backup, BadInput\nfor a in sys.argv[1:]:\n"
        "    try:\n        backup.read(a)\n    except BadInput as e:\n        print(e)\n"
        "    else:\n        print('accepted', a)\n"
    )
    proc = subprocess.run([sys.executable, *optimize, "-c", script, *archives], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(FOREIGN_MANIFESTS)
    for name, line in zip(FOREIGN_MANIFESTS, lines, strict=True):
        assert line.endswith("is not a code-server-multi backup (its manifest is not ours); nothing was restored"), (
            f"{name}: {line}"
        )


def test_extraction_itself_never_writes_through_a_link(tmp_path):
    # Belt and braces: were read()'s checks ever to miss one, the extraction refuses too.
    stack = make_stack(tmp_path)
    populate(stack, "ada")
    good = stack.backup(tmp_path / "backups")
    before = snapshot(stack, "ada")
    (tmp_path / "outside").mkdir()
    archive = appended(
        good,
        tmp_path / "twice.tar.gz",
        [
            entry("ada/workspace/x", tarfile.SYMTYPE, str(tmp_path / "outside" / "written")),
            entry("ada/workspace/x", tarfile.REGTYPE, data=b"written through the link"),
        ],
    )
    ids = stack.plan.users["ada"].ids
    with pytest.raises(BadInput, match="stopped before replacing anything"):
        backup._swap_in(stack, archive, "ada", Path(stack.plan.workspaceBase), 0, ids.base, ids.size)
    assert os.listdir(tmp_path / "outside") == []
    assert snapshot(stack, "ada") == before
    assert sorted(os.listdir(stack.plan.workspaceBase)) == ["ada", "bo"]
