"""From the cached stages to an image: the root filesystem (the contract's user, home,
project and extensions directory), the pinned extensions, the trims, and `podman import`
with the image's configuration, followed by a smoke test."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .inputs import BuildError
from .shell import CA_FILE, PATH, in_root, remove_tree
from .trim import strip_setuid, trim_debian
from .workshop import Workshop

CODE_SERVER_DIR = "usr/local/lib/code-server"
RIPGREP = "lib/vscode/node_modules/@vscode/ripgrep-universal/bin/linux-x64/rg"


def _copy(b: Workshop, source: str | Path, target: str | Path, what: str) -> None:
    b.log.run(["cp", "-a", str(source), str(target)], what)


def add_user(root: Path, c: dict) -> None:
    """The contract's user and group, refused if the Debian base already has those ids."""
    user, uid, gid, home = c["user"], c["uid"], c["gid"], c["home"]
    entries = (
        ("passwd", f"{user}:x:{uid}:{gid}:{user}:{home}:/bin/bash", 2, uid),
        ("group", f"{user}:x:{gid}:", 2, gid),
        ("shadow", f"{user}:!:19000:0:99999:7:::", None, None),
        ("gshadow", f"{user}:!::", None, None),
    )
    for file, line, id_field, wanted_id in entries:
        path = root / "etc" / file
        lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{user}:")]
        if id_field is not None and any(line.split(":")[id_field : id_field + 1] == [str(wanted_id)] for line in lines):
            raise BuildError(f"the Debian base already has an entry with id {wanted_id} in /etc/{file}")
        path.write_text("\n".join([*lines, line]) + "\n")


def root_filesystem(b: Workshop, base: Path, node: Path, code_server: Path, opencode: Path) -> Path:
    c = b.contract
    b.work = b.cache / "work" / f"build-{secrets.token_hex(4)}"
    b.work.mkdir(parents=True)
    root = b.work / "rootfs"
    _copy(b, f"{base}/.", f"{root}/", "copying the Debian base")
    local = root / "usr" / "local"
    (local / "lib" / "node_modules").mkdir(parents=True, exist_ok=True)
    _copy(b, f"{node}/bin/.", f"{local}/bin/", "copying node")
    _copy(b, f"{node}/lib/node_modules/npm", f"{local}/lib/node_modules/", "copying npm")
    _copy(b, code_server / "code-server", root / CODE_SERVER_DIR, "copying code-server")
    _copy(b, opencode / "bin" / "opencode", local / "bin" / "opencode", "copying opencode")
    (local / "bin" / "code-server").symlink_to("../lib/code-server/out/node/entry.js")
    if not (root / CODE_SERVER_DIR / RIPGREP).is_file():
        raise BuildError(
            f"code-server ships no ripgrep binary at {RIPGREP}: add ripgrep to RUNTIME_PACKAGES in csm/image/stages.py"
        )
    (local / "bin" / "rg").symlink_to(os.path.relpath(root / CODE_SERVER_DIR / RIPGREP, local / "bin"))

    add_user(root, c)
    for path in (c["project"], c["extensionsDir"]):
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    skel = root / "etc" / "skel"
    if skel.is_dir():
        _copy(b, f"{skel}/.", root / c["home"].lstrip("/"), "copying /etc/skel")
    return root


def install_extensions(b: Workshop, root: Path, vsix: Sequence[Path]) -> list[str]:
    """Each VSIX, installed by code-server itself inside the new tree (offline)."""
    c = b.contract
    if not vsix:
        return []
    assert b.work is not None, "a build has its work directory while it runs"
    staging = b.work / "vsix"
    staging.mkdir()
    names = []
    for index, path in enumerate(vsix):
        name = f"{index}.vsix"
        shutil.copy2(path, staging / name)
        names.append(name)
    installs = " && ".join(
        f"code-server --user-data-dir /tmp/data --extensions-dir {shlex.quote(c['extensionsDir'])} "
        f"--install-extension /tmp/vsix/{n}"
        for n in names
    )
    in_root(root, installs, b.log, "installing the pinned VS Code extensions", binds=[(staging, "/tmp/vsix", True)])
    listing = root / c["extensionsDir"].lstrip("/") / "extensions.json"
    try:
        installed = sorted(f"{e['identifier']['id']}@{e['version']}" for e in json.loads(listing.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BuildError(f"code-server left no usable {c['extensionsDir']}/extensions.json: {e}") from e
    if len(installed) < len(names):
        raise BuildError(f"{len(names)} VSIX files but only {installed} installed")
    return installed


def finish(b: Workshop, root: Path) -> None:
    """Ownership, trims, no setuid, and no host leftovers."""
    c = b.contract
    for path in (c["home"], c["extensionsDir"]):
        b.log.run(["chown", "-R", f"{c['uid']}:{c['gid']}", str(root / path.lstrip("/"))], f"chown {path}")
    trim_debian(root)
    b.log.note(f"setuid/setgid bits stripped from: {strip_setuid(root)}")
    if (root / "usr/bin/sudo").exists():
        raise BuildError("sudo is in the image: take it out of RUNTIME_PACKAGES")
    for rel in ("etc/resolv.conf", "etc/hostname"):  # podman provides these at run time
        path = root / rel
        if path.exists() or path.is_symlink():
            path.unlink()
        path.write_text("")
    for rel in ("dev", "proc", "sys", "tmp", "run"):
        path = root / rel
        if path.is_dir():
            for child in path.iterdir():
                remove_tree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (root / "tmp").chmod(0o1777)


def podman_changes(contract: dict, versions: dict, key: str, installed: Sequence[str]) -> list[str]:
    """The image's configuration (`podman import --change`), from the contract."""
    c, v = contract, versions
    # Only the image's own facts; the plan gives the full command (auth, telemetry...).
    cmd = ["code-server", "--bind-addr", f"0.0.0.0:{c['port']}", "--extensions-dir", c["extensionsDir"], c["project"]]
    labels = {
        "org.opencontainers.image.title": "code-server-multi",
        "code-server-multi.recipe": "portable",
        "code-server-multi.key": key,
        "code-server-multi.code-server": v["code-server"],
        "code-server-multi.opencode": v["opencode"],
        "code-server-multi.node": v["node"],
        "code-server-multi.extensions": ",".join(installed),
    }
    return [
        'ENTRYPOINT ["/usr/bin/tini", "--"]',
        "CMD " + json.dumps(cmd),
        f"USER {c['uid']}:{c['gid']}",
        f"WORKDIR {c['project']}",
        f"EXPOSE {c['port']}",
        f"ENV PATH={PATH}",
        f"ENV HOME={c['home']}",
        f"ENV USER={c['user']}",
        "ENV LANG=C.UTF-8",
        f"ENV SSL_CERT_FILE={CA_FILE}",
        "ENV OPENCODE_DISABLE_AUTOUPDATE=1",
        *(f"LABEL {k}={json.dumps(val)}" for k, val in labels.items()),
    ]


def import_image(b: Workshop, root: Path, installed: Sequence[str]) -> None:
    changes = podman_changes(b.contract, b.versions, b.key, installed)
    argv = [
        b.podman,
        "import",
        *(a for change in changes for a in ("--change", change)),
        "--message",
        f"code-server-multi {b.key}",
        "-",
        b.temp_tag,
    ]
    b.log.note(f"\n$ tar -C {root} -c . | {shlex.join(argv)}")
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE, stderr=b.log.file
    )
    imported = subprocess.run(argv, stdin=tar.stdout, stdout=b.log.file, stderr=subprocess.STDOUT)
    if tar.stdout:
        tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        raise BuildError(
            f"podman import failed (tar {tar.returncode}, podman {imported.returncode})\n"
            f"--- last lines of {b.log.path} ---\n{b.log.tail()}"
        )
    smoke = "code-server --version && HOME=$(mktemp -d) opencode --version"
    b.log.run(
        [b.podman, "run", "--rm", "--pull=never", *b.run_args, b.temp_tag, "sh", "-c", smoke],
        "the new image's smoke test (code-server and opencode --version)",
    )
