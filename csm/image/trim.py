"""What the image leaves out and tidies, on plain directory trees: files nobody can use
at run time on linux/x86-64, Debian's docs, setuid bits, duplicate files."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from .inputs import BuildError

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


def trim_debian(root: Path) -> None:
    """Docs (but not the copyright files), man pages, message translations (the image
    has no locales but C.UTF-8, so they are never shown), apt lists and caches, logs."""
    doc = root / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if (path.is_file() or path.is_symlink()) and path.name != "copyright":
                path.unlink()
    for rel in (
        "usr/share/man",
        "usr/share/info",
        "usr/share/lintian",
        "usr/share/locale",
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/cache/debconf",
        "var/log",
    ):
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


def hardlink_duplicates(top: Path, minimum: int = 64 << 10) -> int:
    """Identical files (same content, mode and owner; e.g. the ripgrep copies) become one,
    with util-linux's hardlink. Returns the bytes saved."""
    before = tree_size(top)
    done = subprocess.run(
        ["hardlink", "--ignore-time", "--quiet", "--minimum-size", str(minimum), str(top)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BuildError(f"hardlink {top} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return before - tree_size(top)
