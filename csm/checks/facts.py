"""What the image contract checks against, written once: image/contract.json (user,
home, port, ...) and image/versions.json (code-server, node, opencode), read from
image/ of the sources csm evaluates (csm.plan.source_dir: $CSM_SOURCE_DIR or the checkout)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from csm.plan import source_dir


def image_dir() -> Path:
    return source_dir() / "image"


@functools.cache
def _read(name: str, directory: str) -> dict:
    path = Path(directory) / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"the image contract needs {path} ({e}): set CSM_SOURCE_DIR to a checkout of code-server-multi "
            "(the Nix package's csm sets it to its own copy)"
        ) from e


def facts() -> dict:
    """image/contract.json: what the image and the plan agree on."""
    return _read("contract.json", str(image_dir()))


def versions() -> dict:
    """image/versions.json: what the image must contain."""
    return _read("versions.json", str(image_dir()))


def gate() -> dict:
    """image/gate.json: what any client of a deployment meets (the gate's paths, the
    session cookie's names); the plan's gate.paths and gate.cookie are these."""
    return _read("gate.json", str(image_dir()))


def opencode_extension_id() -> str:
    """The opencode extension the image carries (versions.json)."""
    return str(next(e["id"] for e in versions()["extensions"] if e["id"].endswith(".opencode")))


def health_path() -> str:
    """code-server's unauthenticated health endpoint."""
    return str(facts()["healthPath"])


def gate_path(name: str) -> str:
    """One of every deployment's gate paths (login, logout, ready, wake), as the plan's
    gate.paths: the checks run against any address, with no plan at hand."""
    return str(gate()["paths"][name])


def cookie_names() -> dict[str, str]:
    """The session cookie's name by scheme, as the plan's gate.cookie."""
    return dict(gate()["cookie"])


def default_image() -> str:
    return f"{facts()['imageName']}:{facts()['imageTag']}"
