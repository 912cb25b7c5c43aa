"""Evaluate the plan (modules/code-server-multi/plan.nix) with nix-instantiate.

The runner and the tests consume exactly what the NixOS module would: the JSON
of `import plan.nix settings`, evaluated by Nix itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLAN_NIX = ROOT / "modules" / "code-server-multi" / "plan.nix"


def nix_environment(environ: dict | None = None) -> dict[str, str]:
    """The environment every evaluation of the project runs nix-instantiate in.

    Evaluating never builds, so Nix needs no build users: without this, Debian's
    nix-bin (which does not create the `nixbld` group) warns on every call, and a
    fresh host would print what a used one does not."""
    environ = dict(os.environ if environ is None else environ)
    extra = "build-users-group ="
    environ["NIX_CONFIG"] = "\n".join(filter(None, [environ.get("NIX_CONFIG", ""), extra]))
    environ["NIX_PATH"] = ""
    return environ


class PlanError(Exception):
    """Settings the plan rejects, or a settings file Nix cannot read."""


# File paths reach Nix as --argstr values, never spliced into Nix source: any
# character a file name can hold (é, ", ${) stays what it is. `/. + s` makes a path.
_FROM_NIX = "{ planNix, settings }: import (/. + planNix) (import (/. + settings))"
_FROM_JSON = "{ planNix, settings }: import (/. + planNix) (builtins.fromJSON (builtins.readFile (/. + settings)))"


def _instantiate(*args: str):
    """nix-instantiate --eval --strict --json with these arguments, as Python data."""
    nix = shutil.which("nix-instantiate")
    if nix is None:
        raise PlanError("nix-instantiate is not installed; run scripts/install-deps (Debian: apt-get install nix-bin)")
    proc = subprocess.run(
        [nix, "--eval", "--strict", "--json", *args], capture_output=True, text=True, env=nix_environment()
    )
    if proc.returncode != 0:
        raise PlanError(_error_text(proc.stderr))
    return json.loads(proc.stdout)


def _evaluate(expr: str, settings: Path) -> dict:
    return _instantiate("--expr", expr, "--argstr", "planNix", str(PLAN_NIX), "--argstr", "settings", str(settings))


def nix_value(path: str | os.PathLike):
    """The value of a Nix file holding plain data (settings, option lists), as Python data."""
    return _instantiate(str(path))


def _error_text(stderr: str) -> str:
    """The plan's own message, or Nix's first error, without the stack trace."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    m = re.search(r"code-server-multi: invalid settings:\n((?:[ \t]*- .*(?:\n|$))+)", text)
    if m:
        problems = [ln.strip() for ln in m.group(1).splitlines() if ln.strip()]
        return "invalid settings:\n" + "\n".join(f"  {p}" for p in problems)
    lines = [
        ln
        for ln in text.splitlines()
        if ln.strip() and "--show-trace" not in ln and not ln.startswith(("       … ", "warning: "))
    ]
    return "\n".join(lines[:6]).removeprefix("error: ").strip() or "nix-instantiate failed"


def evaluate(expr: str, **argstr: str | os.PathLike):
    """A Nix function of string arguments (--argstr: file paths stay strings), as
    Python data; PlanError with the plan's own message when settings are refused."""
    return _instantiate("--expr", expr, *[a for k, v in sorted(argstr.items()) for a in ("--argstr", k, str(v))])


def settings_path(settings_file: str | os.PathLike) -> Path:
    """A settings file that exists and can be read, as an absolute path."""
    path = Path(settings_file)
    if not path.is_file():
        raise PlanError(f"settings file {path} does not exist; give a .nix file such as examples/demo.nix")
    if not os.access(path, os.R_OK):
        raise PlanError(f"settings file {path} is not readable")
    return path.resolve()


def load(settings_file: str | os.PathLike) -> dict:
    """The plan for a settings file written in Nix."""
    return _evaluate(_FROM_NIX, settings_path(settings_file))


def from_settings(settings: dict) -> dict:
    """The plan for settings given as Python data (tests, generated settings)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(settings, f)
    try:
        return _evaluate(_FROM_JSON, Path(f.name))
    finally:
        os.unlink(f.name)


def read_json(path: str | os.PathLike) -> dict:
    """A plan as the NixOS module writes it (plan.json), or the runner's stack.json
    holding one; ValueError/OSError naming the file when it is neither."""
    data = json.loads(Path(path).read_text())
    plan = data["plan"] if isinstance(data, dict) and "plan" in data and "users" not in data else data
    if not isinstance(plan, dict) or "users" not in plan or "gate" not in plan:
        raise ValueError(
            f"{path} holds no plan of this version of code-server-multi (no users or gate); "
            "write it again with `csm up` or a NixOS switch"
        )
    return plan
