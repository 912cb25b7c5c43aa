"""How systemd reads back what `csm install-units` writes, for tests on a host where
systemd is not running: a unit's directives, and a command line or Environment= value
split into words the way systemd does for the quoting render() uses (double-quoted
words with `\\` escapes). Specifiers (%x) and, in command lines, variables ($NAME,
${NAME}) are expanded as systemd would, so a character render() failed to escape
changes the result instead of passing through."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

SPECIFIER = "\0specifier\0"  # what systemd would put in place of %x: never the intended text


def directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key, []).append(value)
    return out


def words(value: str, env: dict[str, str] | None = None, command: bool = True) -> list[str]:
    """`env`: the unit's Environment=, which systemd expands $NAME from in commands."""
    out = []
    for word in shlex.split(value):
        word = re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else SPECIFIER, word)
        if command:
            word = re.sub(
                r"\$(\$|\{(\w+)\}|(\w+))",
                lambda m: "$" if m.group(1) == "$" else (env or {}).get(m.group(2) or m.group(3), ""),
                word,
            )
        out.append(word)
    return out
