"""Evaluate the plan (modules/code-server-multi/plan.nix) with nix-instantiate.

The runner and the tests consume exactly what the NixOS module would: the JSON
of `import plan.nix settings`, evaluated by Nix itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, NoReturn

from .plan_types import Plan


def source_dir() -> Path:
    """Where the Nix files csm evaluates (modules/code-server-multi) and the data they
    read (image/, pyproject.toml) are, in the checkout's layout: $CSM_SOURCE_DIR (the
    Nix package's wrapper sets it to its copy of them, package.nix: sourceDir), else
    the checkout this csm runs from."""
    return Path(os.environ.get("CSM_SOURCE_DIR") or Path(__file__).resolve().parent.parent).absolute()


def nix_file(name: str) -> Path:
    """modules/code-server-multi/<name> of source_dir(): plan.nix, kube.nix."""
    path = source_dir() / "modules" / "code-server-multi" / name
    if not path.is_file():
        raise PlanError(
            f"{path} does not exist: set CSM_SOURCE_DIR to a checkout of code-server-multi "
            "(the Nix package's csm sets it to its own copy)"
        )
    return path


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
    return _instantiate(
        "--expr", expr, "--argstr", "planNix", str(nix_file("plan.nix")), "--argstr", "settings", str(settings)
    )


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


def load(settings_file: str | os.PathLike) -> Plan:
    """The plan for a settings file written in Nix."""
    return from_json(_evaluate(_FROM_NIX, settings_path(settings_file)), f"the plan of {settings_file}")


def from_settings(settings: dict) -> Plan:
    """The plan for settings given as Python data (tests, generated settings)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(settings, f)
    try:
        return from_json(_evaluate(_FROM_JSON, Path(f.name)), "the plan")
    finally:
        os.unlink(f.name)


def load_plan(path: str | os.PathLike) -> Plan:
    """The plan in a file: plan.json as the NixOS module writes it, or the runner's
    stack.json holding one. PlanError naming the file (and the field) otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"cannot read the plan {path}: {e}") from None
    holds_plan = isinstance(data, dict) and "plan" in data and "users" not in data
    return from_json(data["plan"] if holds_plan else data, str(path))


def from_json(data: object, source: str) -> Plan:
    """The plan as typed objects, every field checked: a plan from another version
    of code-server-multi is refused with the field that differs."""
    return _typed(Plan, data, source, "")


def to_json(plan: Plan) -> dict:
    return dataclasses.asdict(plan)


def _refuse(source: str, where: str, problem: str) -> NoReturn:
    raise PlanError(
        f"{source}: {where.lstrip('.') or 'the plan'} {problem}; it was written by another version of "
        "code-server-multi: write it again (`csm up SETTINGS`, or on NixOS `nixos-rebuild switch`)"
    )


def _typed(tp, value, source: str, where: str):
    """value checked against the type tp (a dataclass of csm.plan_types, or a
    builtin/generic type), built into it."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _refuse(source, where, f"is {_kind(value)}, not an object")
        hints = typing.get_type_hints(tp)
        missing = [n for n in hints if n not in value]
        unknown = [k for k in value if k not in hints]
        if missing or unknown:
            what = f"lacks {', '.join(missing)}" if missing else f"has unknown fields {', '.join(unknown)}"
            _refuse(source, where, what)
        return typing.cast(Any, tp)(**{n: _typed(t, value[n], source, f"{where}.{n}") for n, t in hints.items()})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            with contextlib.suppress(PlanError):
                return _typed(option, value, source, where)
        _refuse(source, where, f"is {_kind(value)}, not {' or '.join(_kind_of(a) for a in args)}")
    if origin is list:
        if not isinstance(value, list):
            _refuse(source, where, f"is {_kind(value)}, not a list")
        return [_typed(args[0], x, source, f"{where}[{i}]") for i, x in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _refuse(source, where, f"is {_kind(value)}, not an object")
        return {k: _typed(args[1], x, source, f"{where}.{k}") for k, x in value.items()}
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        type(None): value is None,
    }[tp]
    if not ok:
        _refuse(source, where, f"is {_kind(value)}, not {_kind_of(tp)}")
    return float(value) if tp is float else value


def _kind_of(tp) -> str:
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "a string", type(None): "null"}
    return names.get(tp, "an object")


def _kind(value: object) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return "null" if value is None else f"{json.dumps(value)}"
