"""The portable image build fails with a message naming the missing tool or the
source it could not reach, and leaves no half-imported image: `latest` stays as it
was, no temporary tag or tree is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csm.image import load_contract

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = load_contract()["imageName"]


def images() -> set[str]:
    out = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", REPOSITORY],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(out.split("\n")) - {""}


def build(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    cache = tmp_path / "cache"
    return subprocess.run(
        [sys.executable, "-m", "csm.image", "build", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "CSM_CACHE_DIR": str(cache), **env},
        timeout=300,
    )


def assert_nothing_left(tmp_path: Path, before: set[str]) -> None:
    assert images() == before, "the failed build changed the images"
    stages = tmp_path / "cache" / "stages"
    leftovers = [p.name for p in stages.iterdir()] if stages.exists() else []
    assert not [p for p in leftovers if p.startswith(".tmp-")], leftovers


def test_a_missing_tool_is_named_with_its_package(tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    for tool in ("podman", "unshare", "hardlink", "chroot", "mount", "tar"):  # everything but debootstrap
        (path / tool).symlink_to(shutil.which(tool))
    before = images()
    done = build(tmp_path, PATH=str(path))
    assert done.returncode == 1
    assert "missing tools: debootstrap (apt-get install debootstrap)" in done.stderr
    assert "scripts/install-deps" in done.stderr
    assert_nothing_left(tmp_path, before)


def test_an_unreachable_debian_archive_is_named(tmp_path):
    before = images()
    # --rebuild: the image of these inputs exists already; build it again from scratch.
    done = build(tmp_path, "--rebuild", CSM_DEBIAN_MIRROR="http://127.0.0.1:9/debian")
    assert done.returncode == 1, done.stderr
    assert "cannot reach Debian's archive at http://127.0.0.1:9/debian/dists/" in done.stderr
    assert "CSM_DEBIAN_MIRROR" in done.stderr
    assert_nothing_left(tmp_path, before)
