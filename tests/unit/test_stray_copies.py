"""Each value the image contract, the gate's public names and the plan define is
written once: a copy elsewhere in the code goes stale when the source changes (the
idle service once counted connections on a copy of code-server's port). This finds
string literals equal to (or, for paths and prefixes, starting with) such a value,
and the port as a number, in csm/ and modules/, outside the one place that defines it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "image/contract.json").read_text())
GATE = json.loads((ROOT / "image/gate.json").read_text())
VERSIONS = json.loads((ROOT / "image/versions.json").read_text())
CONTAINERS_NIX = "modules/code-server-multi/plan/containers.nix"

# value -> (how it may appear: "equal" or "prefix", where it is defined)
FACTS = {
    CONTRACT["healthPath"]: ("equal", "image/contract.json"),
    CONTRACT["home"]: ("prefix", "image/contract.json"),
    CONTRACT["extensionsDir"]: ("prefix", "image/contract.json"),
    CONTRACT["imageName"]: ("prefix", "image/contract.json"),
    GATE["paths"]["prefix"]: ("prefix", "image/gate.json"),
    **{name: ("equal", "image/gate.json") for name in GATE["cookie"].values()},
    **{e["id"]: ("equal", "image/versions.json") for e in VERSIONS["extensions"]},
    "io.code-server-multi.user": ("prefix", CONTAINERS_NIX),
    "podman-": ("prefix", CONTAINERS_NIX),  # the units oci-containers makes
}
PORT = CONTRACT["port"]
# Not the contract's port, though the same number: the demo's nginx port (the README's
# `make demo` address), the runner's default for `csm up`.
PORT_ALLOWED = {("csm/runner/stack.py", "DEFAULT_HTTP_PORT")}


def sources() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "csm", "modules"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in listed.stdout.split() if p.endswith((".py", ".nix"))]


def python_literals(text: str):
    """(line, string value or int) of every literal, docstrings and comments aside."""
    previous = tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.STRING and previous not in (tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT):
            body = re.sub(r"^[rbuf]*('''|\"\"\"|'|\")", "", tok.string, flags=re.I)
            yield tok.start[0], re.sub(r"('''|\"\"\"|'|\")$", "", body)
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            yield tok.start[0], int(tok.string)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            previous = tok.type


def nix_literals(text: str):
    for number, line in enumerate(text.splitlines(), 1):
        code = re.sub(r"#.*", "", line)
        for value in re.findall(r'"((?:[^"\\]|\\.)*)"', code):
            yield number, value
        for value in re.findall(r"(?<![\w.\"/-])(\d+)(?![\w.])", re.sub(r'"(?:[^"\\]|\\.)*"', "", code)):
            yield number, int(value)


def stray_copies() -> list[str]:
    found = []
    for path in sources():
        relative = str(path.relative_to(ROOT))
        text = path.read_text()
        literals = python_literals(text) if path.suffix == ".py" else nix_literals(text)
        lines = text.splitlines()
        for number, value in literals:
            line = lines[number - 1]
            if value == PORT and not any(relative == f and name in line for f, name in PORT_ALLOWED):
                found.append(f"{relative}:{number}: the port {PORT} (image/contract.json)")
            if not isinstance(value, str):
                continue
            for fact, (how, home) in FACTS.items():
                hit = value == fact or (how == "prefix" and value.startswith(fact))
                if hit and relative != home:
                    found.append(f"{relative}:{number}: {value!r} copies {fact!r} ({home})")
    return found


def test_no_contract_or_plan_value_is_written_twice():
    assert stray_copies() == [], "read these from where they are defined:\n" + "\n".join(stray_copies())
