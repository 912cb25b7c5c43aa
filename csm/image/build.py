"""One build: preflight, the cached stages, assembly, import; and the cache's
housekeeping (what a killed build left, stages and images no longer used)."""

from __future__ import annotations

import fcntl
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..progress import Steps
from . import assemble, stages
from .extensions import Resolved, resolve, session_vsix
from .inputs import (
    BuildError,
    cache_dir,
    cache_key,
    image_reference,
    load_contract,
    load_manifest,
    load_versions,
    stage_keys,
)
from .shell import Log, remove_tree
from .sources import Downloads
from .trim import tree_size

TEMP_TAG_PREFIX = "build-"
STEPS = 8


def current_inputs(downloads: Downloads, probe: bool = True) -> tuple[dict, dict, dict, Resolved]:
    """(contract, versions, manifest, resolved extensions) of the checkout."""
    contract = load_contract()
    versions = load_versions()
    manifest = load_manifest(versions)
    return contract, versions, manifest, resolve(versions, downloads, probe=probe)


class Build:
    def __init__(self, *, rebuild: bool = False, keep_work: bool = False, out=sys.stdout):
        self.cache = cache_dir()
        self.stages = self.cache / "stages"
        self.log = Log(self.cache / "logs" / f"build-{time.strftime('%Y%m%d-%H%M%S')}.log")
        self.downloads = Downloads(self.cache / "downloads", self.log.note)
        self.contract, self.versions, self.manifest, self.extensions = current_inputs(self.downloads)
        self.vsix = [path for _ext, path in self.extensions.found] + [session_vsix(self.cache / "session")]
        self.key = cache_key(self.manifest, self.contract, self.vsix)
        self.keys = stage_keys(self.manifest, stages.RUNTIME_PACKAGES, stages.BUILD_PACKAGES)
        self.repository, self.tag = image_reference(self.contract)
        self.rebuild = rebuild
        self.keep_work = keep_work
        self.progress = Steps(STEPS, self.log.path, out=out)
        self.temp_tag = f"{self.repository}:{TEMP_TAG_PREFIX}{secrets.token_hex(4)}"
        self.work: Path | None = None
        self.temporary: list[Path] = []
        self.podman = "podman"
        self.run_args: tuple[str, ...] = ()
        self.jobs = os.cpu_count() or 2

    # ---- plumbing

    def stage(self, name: str) -> Path:
        return self.stages / f"{name}-{self.keys[name]}"

    def cached(self, name: str) -> bool:
        return not self.rebuild and self.stage(name).is_dir()

    def new_temp_dir(self, name: str) -> Path:
        self.stages.mkdir(parents=True, exist_ok=True)
        path = self.stages / f".tmp-{name}-{secrets.token_hex(4)}"
        path.mkdir()
        self.temporary.append(path)
        return path

    def commit(self, temp: Path, name: str) -> Path:
        final = self.stage(name)
        remove_tree(final)
        temp.rename(final)
        self.temporary.remove(temp)
        return final

    def podman_out(self, *args: str) -> str:
        return subprocess.run([self.podman, *args], capture_output=True, text=True).stdout

    def image_exists(self, ref: str) -> bool:
        return (
            subprocess.run(
                [self.podman, "image", "exists", ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ).returncode
            == 0
        )

    def preflight(self) -> None:
        if platform.machine() not in ("x86_64", "amd64"):
            raise BuildError(f"the portable recipe builds x86_64 images only (this host is {platform.machine()})")
        if os.geteuid() != 0:
            raise BuildError(
                "the portable image build needs root (debootstrap, chroot, mount namespaces): "
                "run it as root or with sudo"
            )
        needs = {
            "podman": "podman",
            "debootstrap": "debootstrap",
            "unshare": "util-linux",
            "hardlink": "util-linux",
            "chroot": "coreutils",
            "mount": "mount",
            "tar": "tar",
        }
        missing = [f"{tool} (apt-get install {package})" for tool, package in needs.items() if not shutil.which(tool)]
        if missing:
            raise BuildError("missing tools: " + ", ".join(missing) + ". scripts/install-deps installs them.")
        suite = self.versions["debian"]
        if not Path(f"/usr/share/debootstrap/scripts/{suite}").exists():
            raise BuildError(f"this debootstrap does not know Debian {suite}: install a newer debootstrap")
        if not Path(stages.DEBIAN_KEYRING).is_file():
            raise BuildError(
                f"{stages.DEBIAN_KEYRING} is missing, so Debian's archive cannot be verified: "
                "apt-get install debian-archive-keyring"
            )
        from csm.runner.host import Host

        host = Host.detect()
        self.podman, self.run_args = host.podman, host.run_args

    # ---- the whole

    def run(self) -> str:
        p = self.progress
        key_ref, latest = f"{self.repository}:{self.key}", f"{self.repository}:{self.tag}"
        p.say(f"==> image {self.repository}, key {self.key} (log: {self.log.path})")
        for _ext, line in self.extensions.absent:
            p.say(f"==> {line}")
        with p.step(1, "preflight: tools, root, cache") as r:
            self.preflight()
            r["note"] = f"ok ({self.cache})"
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                p.say("==> another image build is running on this host; waiting for it")
                fcntl.flock(lock, fcntl.LOCK_EX)
            self.clean_leftovers()
            if not self.rebuild and self.image_exists(key_ref):
                self.log.run([self.podman, "tag", key_ref, latest], "tagging latest")
                p.say(f"==> {key_ref} is up to date: tagged {self.tag} ({p.elapsed():.1f} s)")
                return key_ref
            try:
                return self._build(key_ref, latest)
            finally:
                self.cleanup()

    def _build(self, key_ref: str, latest: str) -> str:
        p, v = self.progress, self.versions
        suite = v["debian"]
        with p.step(2, f"Debian {suite} base ({len(stages.RUNTIME_PACKAGES)} packages, debootstrap)") as r:
            if self.cached("base"):
                base, r["note"] = self.stage("base") / "rootfs", "cached"
            else:
                base = stages.debootstrap(self, "base", stages.RUNTIME_PACKAGES)
        with p.step(3, f"Debian {suite} build tools (debootstrap)") as r:
            if self.cached("code-server"):
                builder, r["note"] = self.stage("builder") / "rootfs", "not needed (code-server cached)"
            elif self.cached("builder"):
                builder, r["note"] = self.stage("builder") / "rootfs", "cached"
            else:
                builder = stages.debootstrap(self, "builder", stages.BUILD_PACKAGES)
        with p.step(4, f"node {v['node']} + npm {v['npm']} (verified registry tarballs)") as r:
            if self.cached("node"):
                node, r["note"] = self.stage("node"), "cached"
            else:
                node = stages.node(self)
        trims: dict[str, int] = {}
        deps = len(self.manifest["npmDependencies"])
        with p.step(5, f"code-server {v['code-server']} ({deps} verified tarballs, built offline)") as r:
            if self.cached("code-server"):
                code_server, r["note"] = self.stage("code-server"), "cached"
            else:
                code_server, trims = stages.code_server(self, builder, node)
        with p.step(6, f"opencode {v['opencode']} (verified registry tarball)") as r:
            if self.cached("opencode"):
                opencode, r["note"] = self.stage("opencode"), "cached"
            else:
                opencode = stages.opencode(self)
        with p.step(7, "assemble the root filesystem" + (f" (+{len(self.vsix)} VSIX)" if self.vsix else "")) as r:
            root = assemble.root_filesystem(self, base, node, code_server, opencode)
            installed = assemble.install_extensions(self, root, self.vsix)
            assemble.finish(self, root)
            r["note"] = f"{tree_size(root) / 1e6:.0f} MB; extensions: {', '.join(installed) or 'none'}"
        if trims:
            self.log.note("trimmed: " + ", ".join(f"{k} {b / 1e6:.0f} MB" for k, b in trims.items()))
        with p.step(8, "podman import, smoke test, tag") as r:
            assemble.import_image(self, root, installed)
            replaced = self.podman_out("image", "inspect", "--format", "{{.Id}}", key_ref).strip()
            self.log.run([self.podman, "tag", self.temp_tag, key_ref, latest], "tagging the image")
            self.podman_out("untag", self.temp_tag, self.temp_tag)
            if replaced:  # a --rebuild of the same key: the old image is now untagged
                self.podman_out("rmi", replaced)
            size = int(
                self.log.capture(
                    [self.podman, "image", "inspect", "--format", "{{.Size}}", key_ref], "podman image inspect"
                ).strip()
            )
            r["note"] = f"{size / 1e6:.0f} MB"
        self.prune()
        p.say(f"==> {latest} = {key_ref} built in {p.elapsed():.0f} s ({size / 1e6:.0f} MB)")
        return key_ref

    # ---- cache housekeeping

    def clean_leftovers(self) -> None:
        """What a killed build left behind (we hold the lock, so no build is running)."""
        for path in [*self.stages.glob(".tmp-*"), *(self.cache / "work").glob("build-*")]:
            remove_tree(path)
        for ref in self.podman_out("images", "--format", "{{.Repository}}:{{.Tag}}", self.repository).split():
            if ref.startswith(f"{self.repository}:{TEMP_TAG_PREFIX}"):
                self.podman_out("rmi", ref)

    def prune(self) -> None:
        """Keeps this build's stages and the one before it of each kind, the last 20
        logs; old image keys go unless a container still uses them."""
        for old in sorted((self.cache / "logs").glob("build-*.log"))[:-20]:
            old.unlink()
        for name in self.keys:
            current = self.stage(name)
            if current.exists():
                os.utime(current)
            others = sorted(
                (p for p in self.stages.glob(f"{name}-*") if p != current and len(p.name) == len(name) + 17),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            for old in others[1:]:
                remove_tree(old)
        # images this recipe made that lost their tags (a --rebuild of the same key)
        for image_id in self.podman_out(
            "images", "--quiet", "--filter", "dangling=true", "--filter", "label=code-server-multi.recipe=portable"
        ).split():
            self.podman_out("rmi", image_id)
        for ref in self.podman_out("images", "--format", "{{.Repository}}:{{.Tag}}", self.repository).split():
            tag = ref.rsplit(":", 1)[-1]
            if len(tag) == 16 and all(c in "0123456789abcdef" for c in tag) and tag != self.key:
                self.podman_out("rmi", ref)  # fails (and is left alone) while a container uses it

    def cleanup(self) -> None:
        if self.image_exists(self.temp_tag):
            self.podman_out("rmi", self.temp_tag)
        for path in list(self.temporary):
            remove_tree(path)
        if self.work and not self.keep_work:
            remove_tree(self.work)
