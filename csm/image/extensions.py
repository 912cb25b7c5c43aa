"""The VS Code extensions pinned in image/versions.json (id, version, url, SRI sha256).

Each is taken, verified by its pinned hash, from image/extensions/ if the file is there,
else from the download cache, else from its registry (open-vsx.org) if reachable. If
none has it, the image is built without it and the build says so in one line, naming
how to add it."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .inputs import EXTENSIONS_SRC, BuildError, vsix_files
from .sources import Downloads, reachable


@dataclass(frozen=True)
class Extension:
    id: str
    version: str
    url: str
    hash: str  # SRI sha256

    @property
    def file_name(self) -> str:
        return f"{self.id}-{self.version}.vsix"


@dataclass
class Resolved:
    found: list[tuple[Extension, Path]]
    absent: list[tuple[Extension, str]]  # (extension, one line: why and how to add it)


def pinned(versions: dict) -> list[Extension]:
    items = versions.get("extensions") or []
    try:
        return [Extension(e["id"], e["version"], e["url"], e["hash"]) for e in items]
    except (KeyError, TypeError) as e:
        raise BuildError(f"image/versions.json: each extension needs id, version, url, hash ({e})") from e


def _sri_sha256(path: Path) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def resolve(versions: dict, downloads: Downloads, directory: Path = EXTENSIONS_SRC, probe: bool = True) -> Resolved:
    """Where each pinned VSIX comes from. A file in `directory` that matches no pin, or a
    pinned file whose hash differs, is refused: the image holds only pinned inputs."""
    wanted = pinned(versions)
    local = {_sri_sha256(p): p for p in vsix_files(directory)}
    by_hash = {e.hash: e for e in wanted}
    strangers = [p.name for h, p in local.items() if h not in by_hash]
    if strangers:
        pins = ", ".join(f"{e.file_name} ({e.hash})" for e in wanted) or "none"
        raise BuildError(
            f"{directory}: {', '.join(strangers)} match no extension pinned in image/versions.json "
            f"(pinned: {pins}); remove them, or pin them in image/versions.json"
        )
    resolved = Resolved([], [])
    reach: dict[str, bool] = {}
    for ext in wanted:
        if ext.hash in local:
            resolved.found.append((ext, local[ext.hash]))
        elif downloads.has(ext.hash):
            resolved.found.append((ext, downloads.path(ext.hash)))
        else:
            origin = "{0.scheme}://{0.netloc}/".format(urlsplit(ext.url))
            if probe and origin not in reach:
                reach[origin] = reachable(origin)
            if reach.get(origin):
                resolved.found.append(
                    (ext, downloads.get(ext.url, ext.hash, f"the extension {ext.id}", "Check the network."))
                )
            else:
                resolved.absent.append(
                    (
                        ext,
                        (
                            f"{ext.id} {ext.version} left out: {origin} is not reachable. To add it, download "
                            f"{ext.url} into {directory}/ (it must match {ext.hash}) and build again."
                        ),
                    )
                )
    return resolved


# The project's own extension ("Log out" in the workbench), packed from the checkout
# by the same script the Nix image runs (image/session-extension/pack.py).
SESSION_SRC = EXTENSIONS_SRC.parent / "session-extension"
SESSION_ID = "code-server-multi.session"


def session_vsix(directory: Path) -> Path:
    """The packed VSIX in `directory` (byte for byte the same for the same sources)."""
    out = directory / f"{SESSION_ID}.vsix"
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(SESSION_SRC / "pack.py"), str(out)], check=True)
    return out
