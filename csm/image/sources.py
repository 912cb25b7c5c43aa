"""Verified downloads: every file the image is built from is checked against the hash
the manifest (or versions.json) pins, and kept under the cache by that hash, so a
second build, or another version that shares a tarball, downloads nothing."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .inputs import DEFAULT_REGISTRY, BuildError

NPM_HINT = "Check the network, or set CSM_NPM_REGISTRY to a reachable registry."


def registry_url(url: str) -> str:
    """The manifest names registry.npmjs.org; CSM_NPM_REGISTRY points elsewhere (a mirror)."""
    mirror = os.environ.get("CSM_NPM_REGISTRY")
    if mirror and url.startswith(DEFAULT_REGISTRY):
        return mirror.rstrip("/") + "/" + url[len(DEFAULT_REGISTRY) :]
    return url


def http_get(url: str, what: str, hint: str, timeout: float = 30) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "code-server-multi image build"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as e:
        raise BuildError(f"{what}: {url} answered HTTP {e.code}. {hint}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"cannot reach {what} at {url} ({reason}). {hint}") from e


def reachable(url: str, timeout: float = 5) -> bool:
    try:
        http_get(url, url, "", timeout=timeout)
        return True
    except BuildError:
        return False


def sri(algorithm: str, data: bytes) -> str:
    return f"{algorithm}-" + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def _sri_parts(integrity: str) -> tuple[str, str]:
    algorithm, _, value = integrity.partition("-")
    if algorithm not in ("sha256", "sha512") or not value:
        raise BuildError(f"unsupported integrity {integrity!r} (sha256-… or sha512-… expected)")
    return algorithm, base64.b64decode(value).hex()


class Downloads:
    """Files by their hash: <cache>/downloads/<algorithm>/<hex digest>."""

    def __init__(self, directory: Path, note: Callable[[str], None] = lambda text: None):
        self.directory = directory
        self.note = note

    def path(self, integrity: str) -> Path:
        algorithm, hex_digest = _sri_parts(integrity)
        return self.directory / algorithm / hex_digest

    def has(self, integrity: str) -> bool:
        return self.path(integrity).is_file()

    def get(self, url: str, integrity: str, what: str, hint: str = NPM_HINT) -> Path:
        """The file at `url`, verified against `integrity`, from the cache when it is there."""
        target = self.path(integrity)
        if target.is_file():
            return target
        url = registry_url(url)
        self.note(f"download {url}")
        data = http_get(url, what, hint, timeout=600)
        algorithm, _ = _sri_parts(integrity)
        got = sri(algorithm, data)
        if got != integrity:
            raise BuildError(
                f"{what}: {url} does not match its pinned hash {integrity} (got {got}); "
                "the download is corrupt or the pin is wrong"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        partial.write_bytes(data)
        partial.rename(target)
        return target

    def get_all(self, items: Iterable[dict], what: str, workers: int = 8) -> dict[str, Path]:
        """Manifest entries ({name, url, integrity, file}) -> {file: verified path}."""
        items = list(items)

        def one(item: dict) -> tuple[str, Path]:
            return item["file"], self.get(item["url"], item["integrity"], f"{what} ({item['name']}@{item['version']})")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, items))

    def link_into(self, files: dict[str, Path], directory: Path) -> None:
        """Lays the verified files out under their manifest names (hard links: no copy)."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            target = directory / name
            try:
                os.link(source, target)
            except OSError:
                target.write_bytes(source.read_bytes())
