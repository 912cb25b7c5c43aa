"""`csm kube`: the plan as Kubernetes objects (modules/code-server-multi/kube.nix).

    csm kube render SETTINGS [--namespace N] [--out DIR]   # the objects, as YAML
    csm kube secrets SETTINGS [--namespace N]              # the kubectl lines that create the Secrets

The objects never hold a secret: they name Secrets the admin creates from the very
files the settings name (`kubectl create secret ... --from-file`), so the contents
pass through neither csm nor a command line. docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from csm import plan as planlib

DEFAULT_NAMESPACE = "code-server-multi"

# Settings in Nix (an admin's file) or JSON (generated ones); paths stay strings.
_EXPR = """{ kubeNix, settings, namespace }:
  let path = /. + settings;
  in import (/. + kubeNix) {
    settings = if builtins.match ".*[.]json" settings != null
      then builtins.fromJSON (builtins.readFile path) else import path;
    inherit namespace;
  }"""


def render(settings_file: str | Path, namespace: str = DEFAULT_NAMESPACE) -> dict:
    """{namespace, objects, secrets, notes} for a settings file (.nix or .json)."""
    path = planlib.settings_path(settings_file)
    return planlib.evaluate(_EXPR, kubeNix=planlib.nix_file("kube.nix"), settings=path, namespace=namespace)


# ---- YAML: a deterministic subset (sorted keys, strings always quoted) --------------
# Every string is written as a JSON string, which YAML reads as the same string: no
# "on"/"1.5"/"null" ever turns into a boolean, number or nothing.
_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_./-]*")
_YAML_WORDS = {"y", "yes", "n", "no", "true", "false", "on", "off", "null", "~"}


def _inline(value) -> str | None:
    if isinstance(value, dict | list):
        return ("{}" if isinstance(value, dict) else "[]") if not value else None
    return json.dumps(value, ensure_ascii=False)


def _key(k: str) -> str:
    return k if _PLAIN_KEY.fullmatch(k) and k.lower() not in _YAML_WORDS else json.dumps(k, ensure_ascii=False)


def _block(value, depth: int) -> list[str]:
    pad = "  " * depth
    lines: list[str] = []
    if isinstance(value, dict):
        for k in sorted(value):
            text = _inline(value[k])
            if text is None:
                lines += [f"{pad}{_key(k)}:", *_block(value[k], depth + 1)]
            else:
                lines.append(f"{pad}{_key(k)}: {text}")
        return lines
    for item in value:
        text = _inline(item)
        if text is None:
            first, *rest = _block(item, depth + 1)
            lines += [f"{pad}- {first.lstrip()}", *rest]
        else:
            lines.append(f"{pad}- {text}")
    return lines


def to_yaml(obj: dict) -> str:
    """One object as a YAML document."""
    return "\n".join(_block(obj, 0)) + "\n"


def yaml_stream(objects: list[dict]) -> str:
    return "".join(f"---\n{to_yaml(o)}" for o in objects)


def file_names(objects: list[dict]) -> list[str]:
    """One file per object; the number is its kind's first place in the stream, so
    `kubectl apply -f DIR` (alphabetical) creates the Namespace first."""
    rank: dict[str, int] = {}
    for o in objects:
        rank.setdefault(o["kind"], len(rank))
    return [f"{rank[o['kind']]:02d}-{o['kind'].lower()}-{o['metadata']['name']}.yaml" for o in objects]


def secret_commands(rendered: dict) -> list[str]:
    """The kubectl lines creating or updating each Secret from its files: paths, never
    contents. `create --dry-run=client` turns the files into the Secret, and a
    server-side apply creates it or replaces its data, so the same lines run again after
    adding a person or changing a password."""
    ns = rendered["namespace"]
    apply = ["kubectl", "--namespace", ns, "apply", "--server-side", "--force-conflicts", "--filename=-"]
    lines = []
    for s in rendered["secrets"]:
        args = ["kubectl", "--namespace", ns, "create", "secret"]
        if "tls" in s:
            args += ["tls", s["name"], f"--cert={s['tls']['cert']}", f"--key={s['tls']['key']}"]
        elif "fromEnvFile" in s:
            args += ["generic", s["name"], f"--from-env-file={s['fromEnvFile']}"]
        else:
            args += ["generic", s["name"], *(f"--from-file={k}={v}" for k, v in sorted(s["fromFile"].items()))]
        args += ["--dry-run=client", "--output=yaml"]
        lines.append(f"# {s['what']}\n{shlex.join(args)} | {shlex.join(apply)}")
    return lines


def _write_out(out: Path, objects: list[dict]) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise planlib.PlanError(f"--out {out} exists and is not an empty directory; give a new or empty one")
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in zip(file_names(objects), objects, strict=True):
        (out / name).write_text(to_yaml(obj))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csm kube", description="the plan as Kubernetes objects (docs/kubernetes.md)")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help in [("render", "print the objects as a YAML stream"), ("secrets", "print the Secret lines")]:
        c = sub.add_parser(name, help=help)
        c.add_argument("settings", help="settings file (.nix), e.g. examples/team.nix")
        c.add_argument("--namespace", default=DEFAULT_NAMESPACE, help=f"(default {DEFAULT_NAMESPACE})")
        if name == "render":
            c.add_argument("--out", type=Path, help="write one file per object into this new directory")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        rendered = render(args.settings, args.namespace)
        if args.command == "secrets":
            print("\n".join(secret_commands(rendered)))
            return 0
        if args.out:
            _write_out(args.out, rendered["objects"])
        else:
            sys.stdout.write(yaml_stream(rendered["objects"]))
    except (planlib.PlanError, OSError) as e:
        print(f"csm kube {args.command}: {e}", file=sys.stderr)
        return 2
    for note in rendered["notes"]:
        print(f"csm kube render: note: {note}", file=sys.stderr)
    print("csm kube render: create these Secrets first (`csm kube secrets` prints only them):", file=sys.stderr)
    print("\n".join(secret_commands(rendered)), file=sys.stderr)
    return 0
