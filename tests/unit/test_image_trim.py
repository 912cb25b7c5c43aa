"""What the portable recipe trims from node_modules, on made-up trees."""

import struct
from pathlib import Path

import pytest

from csm.image import BuildError, shell, trim


def elf(machine: int) -> bytes:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5] = 2, 1  # 64-bit, little endian
    header[18:20] = struct.pack("<H", machine)
    return bytes(header) + b"\0" * 100


def pe() -> bytes:
    data = bytearray(256)
    data[:2] = b"MZ"
    data[60:64] = struct.pack("<I", 128)
    data[128:132] = b"PE\0\0"
    return bytes(data)


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data,kind",
    [
        (elf(62), "x86_64"),
        (elf(183), "foreign"),  # aarch64
        (pe(), "foreign"),
        (b"\xcf\xfa\xed\xfe" + b"\0" * 60, "foreign"),  # Mach-O 64
        (b"\xca\xfe\xba\xbe\0\0\0\x02" + b"\0" * 56, "foreign"),  # universal Mach-O
        (b"\xca\xfe\xba\xbe\0\0\0\x37" + b"\0" * 56, None),  # a Java class file
        (b"MZ is just text here" + b" " * 60, None),
        (b"#!/usr/bin/env node\n", None),
    ],
)
def test_binary_kind(tmp_path, data, kind):
    assert trim.binary_kind(write(tmp_path / "f", data)) == kind


def test_trim_node_modules(tmp_path):
    top = tmp_path / "node_modules"
    keep = [
        write(top / "pty/build/Release/pty.node", elf(62)),
        write(top / "pty/prebuilds/linux-x64/pty.node", elf(62)),
        write(top / "lib/out/main.js", b"//# sourceMappingURL=main.js.map"),
        write(top / "jslib/build/index.js"),  # a JS package's build/ is code
        write(top / "jslib/build/obj/thing.js"),
        write(top / "data/table.map"),  # not a source map
    ]
    gone = [
        write(top / "pty/build/Release/obj.target/pty.node", elf(62)),
        write(top / "pty/build/Release/.deps/x.d"),
        write(top / "pty/build/Makefile"),
        write(top / "pty/build/pty.target.mk"),
        write(top / "pty/prebuilds/win32-x64/conpty.node", pe()),
        write(top / "pty/prebuilds/linux-arm64/pty.node", elf(183)),
        write(top / "lib/out/main.js.map"),
        write(top / "lib/out/style.css.map"),
    ]
    write(top / "pty/binding.gyp")
    saved = trim.trim_node_modules(top)
    assert all(p.exists() for p in keep), [p for p in keep if not p.exists()]
    assert not any(p.exists() for p in gone), [p for p in gone if p.exists()]
    assert saved["other-platform binaries"] > 0 and saved["source maps"] > 0
    assert saved["build intermediates"] > 0


def test_hardlink_duplicates(tmp_path):
    a = write(tmp_path / "a/rg", b"r" * (100 << 10))
    b = write(tmp_path / "b/rg", b"r" * (100 << 10))
    c = write(tmp_path / "c/other", b"o" * (100 << 10))
    small = [write(tmp_path / f"{d}/tiny", b"t") for d in "ab"]
    mode = write(tmp_path / "d/rg", b"r" * (100 << 10))
    mode.chmod(0o700)  # same content, other mode: a link would change one of them
    assert trim.hardlink_duplicates(tmp_path) == 100 << 10
    assert a.samefile(b) and not a.samefile(c) and not a.samefile(mode)
    assert not small[0].samefile(small[1])


def test_strip_setuid(tmp_path):
    f = write(tmp_path / "usr/bin/su")
    f.chmod(0o4755)
    g = write(tmp_path / "usr/bin/wall")
    g.chmod(0o2755)
    assert sorted(trim.strip_setuid(tmp_path)) == ["/usr/bin/su", "/usr/bin/wall"]
    assert f.stat().st_mode & 0o7777 == 0o755 and g.stat().st_mode & 0o7777 == 0o755


def test_remove_tree_refuses_a_mounted_tree(tmp_path, monkeypatch):
    victim = write(tmp_path / "root/dev/null").parent.parent
    monkeypatch.setattr(shell, "_mounts_under", lambda path: [str(victim / "dev")])
    with pytest.raises(BuildError, match="still mounted"):
        shell.remove_tree(victim)
    assert victim.exists()


def test_trim_drops_other_platform_prebuilds_and_pdb(tmp_path):
    top = tmp_path / "node_modules"
    keep = write(top / "node-pty/prebuilds/linux-x64/pty.node", elf(62))
    gone = [
        write(top / "node-pty/prebuilds/win32-x64/conpty.pdb"),
        write(top / "node-pty/prebuilds/darwin-arm64/pty.node", b"\xcf\xfa\xed\xfe" + b"\0" * 60),
        write(top / "other/thing.pdb"),
    ]
    trim.trim_node_modules(top)
    assert keep.exists()
    assert not any(p.exists() for p in gone)
    assert sorted(p.name for p in (top / "node-pty/prebuilds").iterdir()) == ["linux-x64"]
