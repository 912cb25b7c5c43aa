"""What the portable image is built from, and the keys that name its cache entries.

- image/contract.json: what the image and the plan agree on (user, home, port, ...);
- image/versions.json: what we want; image/manifest.json: every tarball that gives it,
  generated from versions.json by scripts/update-versions;
- the recipe itself (this package and image/build-code-server.sh) and the VSIX.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "image"
CONTRACT_FILE = IMAGE_DIR / "contract.json"
VERSIONS_FILE = IMAGE_DIR / "versions.json"
MANIFEST_FILE = IMAGE_DIR / "manifest.json"
EXTENSIONS_SRC = IMAGE_DIR / "extensions"
BUILD_SCRIPT = IMAGE_DIR / "build-code-server.sh"
RECIPE_DIR = Path(__file__).resolve().parent

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
UPDATE_HINT = "run scripts/update-versions (on a machine with the npm registry) and commit both files"


class BuildError(Exception):
    """A failure with a message a person can act on."""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BuildError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise BuildError(f"{path} must hold a JSON object")
    return data


def load_contract(path: Path = CONTRACT_FILE) -> dict:
    contract = _read_json(path)
    fields = {
        "imageName": str,
        "imageTag": str,
        "user": str,
        "uid": int,
        "gid": int,
        "home": str,
        "project": str,
        "port": int,
        "extensionsDir": str,
        "healthPath": str,
    }
    for field, kind in fields.items():
        if not isinstance(contract.get(field), kind) or contract[field] in ("", None):
            raise BuildError(f'{path}: "{field}" must be a {kind.__name__}')
    return contract


def load_versions(path: Path = VERSIONS_FILE) -> dict:
    versions = _read_json(path)
    for field in ("code-server", "opencode", "node", "npm", "debian"):
        if not isinstance(versions.get(field), str) or not versions[field]:
            raise BuildError(f'{path}: "{field}" must name a version')
    return versions


def load_manifest(versions: dict, path: Path = MANIFEST_FILE) -> dict:
    """The manifest, refused unless it was generated from these very versions."""
    if not path.is_file():
        raise BuildError(f"{path} is missing: {UPDATE_HINT}")
    manifest = _read_json(path)
    if manifest.get("versions") != versions:
        raise BuildError(f"{path} was generated from other versions than {VERSIONS_FILE.name}: {UPDATE_HINT}")
    for key in ("node", "npm", "codeServer", "opencode"):
        _check_tarball(manifest.get(key), f"{path}: {key}")
    deps = manifest.get("npmDependencies")
    if not isinstance(deps, list) or not deps:
        raise BuildError(f"{path}: npmDependencies is empty: {UPDATE_HINT}")
    for item in deps:
        _check_tarball(item, f"{path}: npmDependencies")
    return manifest


def _check_tarball(item: object, where: str) -> None:
    if not isinstance(item, dict) or not all(
        isinstance(item.get(k), str) and item[k] for k in ("name", "version", "url", "integrity", "file")
    ):
        raise BuildError(f"{where}: an entry lacks name/version/url/integrity/file: {UPDATE_HINT}")
    if not item["integrity"].startswith("sha512-") or "/" in item["file"] or item["file"].startswith("."):
        raise BuildError(f"{where}: {item['name']} has a bad integrity or file name: {UPDATE_HINT}")


def image_reference(contract: dict) -> tuple[str, str]:
    """(repository, tag) of the image both recipes build."""
    return contract["imageName"], contract["imageTag"]


# ------------------------------------------------------------------ keys


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest(value: object, length: int = 16) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:length]


def recipe_files() -> list[Path]:
    return sorted(RECIPE_DIR.glob("*.py")) + [BUILD_SCRIPT]


def recipe_digest(files: Iterable[Path] | None = None) -> str:
    digest_ = hashlib.sha256()
    for path in recipe_files() if files is None else files:
        digest_.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest_.hexdigest()


def cache_key(manifest: dict, contract: dict, vsix: Iterable[Path] = (), recipe: str | None = None) -> str:
    """The image's key: same inputs, same key; any change of the manifest (and so of
    versions.json), the contract, a VSIX or the recipe, a new one."""
    return digest(
        {
            "manifest": manifest,
            "contract": contract,
            "vsix": sorted((p.name, sha256_file(p)) for p in vsix),
            "recipe": recipe_digest() if recipe is None else recipe,
            "arch": "amd64",
        }
    )


# Bump one when its step changes in a way its other inputs do not show.
STAGE_REVISION = {"base": 1, "builder": 1, "node": 2, "code-server": 3, "opencode": 2}


def stage_keys(manifest: dict, runtime_packages: Iterable[str], build_packages: Iterable[str]) -> dict[str, str]:
    """Each step's own key, so a change redoes only the steps it touches."""
    suite = manifest["versions"]["debian"]
    keys = {
        "base": digest([STAGE_REVISION["base"], suite, list(runtime_packages)]),
        "builder": digest([STAGE_REVISION["builder"], suite, list(build_packages)]),
        "node": digest([STAGE_REVISION["node"], manifest["node"], manifest["npm"]]),
        "opencode": digest([STAGE_REVISION["opencode"], manifest["opencode"]]),
    }
    keys["code-server"] = digest(
        [
            STAGE_REVISION["code-server"],
            manifest["codeServer"],
            manifest["npmDependencies"],
            BUILD_SCRIPT.read_bytes().hex(),
            keys["node"],
            keys["builder"],
        ]
    )
    return keys


# ------------------------------------------------------------------ places


def vsix_files(directory: Path = EXTENSIONS_SRC) -> list[Path]:
    return sorted(directory.glob("*.vsix")) if directory.is_dir() else []


def cache_dir() -> Path:
    if os.environ.get("CSM_CACHE_DIR"):
        return Path(os.environ["CSM_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/code-server-multi")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "code-server-multi"


def mirror() -> str:
    return (os.environ.get("CSM_DEBIAN_MIRROR") or DEFAULT_MIRROR).rstrip("/")
