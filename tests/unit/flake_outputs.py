"""The flake's outputs, evaluated by tests/unit/flake_eval.nix against a stand-in
nixpkgs, and the derivations `nix-instantiate` writes for its packages.

`copy_tree()` gives a copy of the checkout's tracked files for tests that change one.
"""

from __future__ import annotations

import ast
import atexit
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from tier2 import OCI_CONTAINERS, ROOT

from csm.plan import nix_environment

EVAL = Path(__file__).with_name("flake_eval.nix")


class NixError(AssertionError):
    """Nix failed, or warned: a warning here is the evaluation's own (lib.warn, a
    deprecation), since nix_environment leaves out the host's build-users warning."""


def _run(*args: str) -> str:
    done = subprocess.run(["nix-instantiate", *args], capture_output=True, text=True, env=nix_environment())
    if done.returncode or "warning" in done.stderr:
        raise NixError(done.stderr)
    return done.stdout


def copy_tree() -> Path:
    """A copy of the checkout's tracked files (deleted at exit)."""
    dest = Path(tempfile.mkdtemp(prefix="csm-flake-"))
    atexit.register(shutil.rmtree, dest, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _args(root: Path, nixpkgs_lib: Path | None) -> list[str]:
    args = ["--arg", "root", str(root)]
    if nixpkgs_lib:
        args += ["--arg", "nixpkgsLib", str(nixpkgs_lib)]
    if nixpkgs_lib and OCI_CONTAINERS:
        args += ["--arg", "ociContainers", str(OCI_CONTAINERS)]
    return args


def evaluate(attr: str, root: Path | None = None, nixpkgs_lib: Path | None = None, store: bool = False):
    """`attr` of flake_eval.nix, evaluated strictly to JSON. With `store`, the paths it
    names (builtins.path, "${./file}") are written to the store as a build would."""
    mode = ["--read-write-mode"] if store else []
    return json.loads(
        _run("--eval", "--strict", "--json", *mode, str(EVAL), "-A", attr, *_args(root or ROOT, nixpkgs_lib))
    )


def instantiate(attr: str, root: Path | None = None, nixpkgs_lib: Path | None = None) -> list[str]:
    """The .drv paths of the derivations in `attr`, written to the store as `nix build` would."""
    return _run("--no-gc-warning", str(EVAL), "-A", attr, *_args(root or ROOT, nixpkgs_lib)).split()


class Drv:
    """A .drv file: outputs, input derivations, and its environment."""

    def __init__(self, path: str):
        # ATerm: Derive([outputs],[inputDrvs],[inputSrcs],system,builder,[args],[env]);
        # its string escapes are Python's.
        outputs, inputs, _, _, self.builder, _, env = ast.literal_eval(Path(path).read_text()[len("Derive") :])
        self.path = path
        self.out = dict((o[0], o[1]) for o in outputs)["out"]
        self.inputs = [i[0] for i in inputs]
        self.env = dict(env)

    def json(self, key: str):
        return json.loads(self.env[key])


def closure(drv_path: str) -> dict[str, Drv]:
    """Every derivation `drv_path` needs, by .drv path."""
    seen: dict[str, Drv] = {}
    todo = [drv_path]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen[path] = Drv(path)
            todo += seen[path].inputs
    return seen
