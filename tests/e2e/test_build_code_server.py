"""image/build-code-server.sh ships code-server as upstream made it: its login route is
not touched (its login is off, `--auth none`; the project's gate checks passwords in
front of it). Uses the manifest's node and code-server tarballs, verified."""

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from csm.image import inputs
from csm.image.sources import Downloads

pytestmark = pytest.mark.live

LOGIN = "package/out/node/routes/login.js"


@pytest.fixture(scope="module")
def tarballs():
    manifest = inputs.load_manifest(inputs.load_versions())
    downloads = Downloads(inputs.cache_dir() / "downloads")
    files = downloads.get_all([manifest["node"], manifest["codeServer"]], "the npm registry")
    return files[manifest["node"]["file"]], files[manifest["codeServer"]["file"]]


@pytest.fixture(scope="module")
def node(tarballs, tmp_path_factory):
    into = tmp_path_factory.mktemp("node")
    subprocess.run(
        [
            "tar",
            "-xzf",
            tarballs[0],
            "-C",
            into,
            "--strip-components=1",
            "--no-same-owner",
            "package/bin/node",
            "package/include",
        ],
        check=True,
    )
    return into


def fake_code_server(directory: Path, login_js: bytes) -> Path:
    """A code-server tarball with no dependencies and the given login.js."""
    lock = {"lockfileVersion": 3, "requires": True, "packages": {"": {"name": "x", "version": "0.0.0"}}}
    files = {LOGIN: login_js, "package/out/node/entry.js": b"console.log('0.0.0')\n"}
    for root in ("package", "package/lib/vscode", "package/lib/vscode/extensions"):
        files[f"{root}/package.json"] = json.dumps({"name": "x", "version": "0.0.0"}).encode()
        files[f"{root}/npm-shrinkwrap.json"] = json.dumps(lock).encode()
    for helper in ("remote-cli/code-linux.sh", "helpers/browser-linux.sh"):
        files[f"package/lib/vscode/bin/{helper}"] = b"#!/bin/sh\n"
    directory.mkdir()
    with tarfile.open(directory / "code-server-0.0.0.tgz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return directory


def build(node: Path, tarball_dir: Path, out: Path) -> subprocess.CompletedProcess:
    npm = subprocess.run(["sh", "-c", "command -v npm"], capture_output=True, text=True).stdout.strip()
    bin_dir = out.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool, target in (("node", node / "bin/node"), ("npm", Path(npm).resolve())):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(target)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "npm_config_nodedir": str(node),
        "HOME": str(out.parent),
    }
    return subprocess.run(
        ["sh", str(inputs.BUILD_SCRIPT), str(tarball_dir), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def upstream_login(tarballs) -> bytes:
    with tarfile.open(tarballs[1]) as tar:
        return tar.extractfile(LOGIN).read()


def test_the_build_leaves_code_servers_login_route_as_upstream_ships_it(tarballs, node, tmp_path):
    upstream = upstream_login(tarballs)
    done = build(node, fake_code_server(tmp_path / "t", upstream), tmp_path / "out")
    assert (tmp_path / "out/out/node/routes/login.js").read_bytes() == upstream
    # the fake has no native modules: the build stops there, with the sources unpacked as they are
    assert done.returncode != 0 and "native modules left without" in done.stderr, done.stderr
