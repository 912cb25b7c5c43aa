"""The guides stay true to the tree: every test docs/security.md names as proof exists
(a file::function, a parameter id, a NixOS subtest), and docs/onboarding.md shows
exactly the pictures `make docs-screenshots` takes."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY = (ROOT / "docs" / "security.md").read_text()
ONBOARDING = (ROOT / "docs" / "onboarding.md").read_text()

# `tests/e2e/test_x.py::test_name[param]`, and the shorthand `::test_name` for the same file
FULL = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[([^\]`]+)\])?`")
SHORT = re.compile(r"`::(\w+)(?:\[([^\]`]+)\])?`")
SUBTEST = re.compile(r'`(nixos-tests/[\w-]+\.py)` subtest "([^"]+)"')


def references() -> list[tuple[str, str, str | None]]:
    """(file, function, parameter id) for every test security.md names; a `::name`
    belongs to the file named last before it."""
    found, current = [], None
    for m in re.finditer(f"{FULL.pattern}|{SHORT.pattern}", SECURITY):
        if m.group(1):
            current = m.group(1)
            found.append((current, m.group(2), m.group(3)))
        else:
            assert current, f"`::{m.group(4)}` comes before any file name"
            found.append((current, m.group(4), m.group(5)))
    return found


def functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_every_test_security_md_names_exists():
    refs = references()
    assert len(refs) >= 40, f"only {len(refs)} test references found; did the format change?"
    sources = "\n".join(p.read_text() for p in (ROOT / "csm").rglob("*.py"))
    for file, name, param in refs:
        path = ROOT / file
        assert path.is_file(), f"docs/security.md names {file}, which does not exist"
        assert name.startswith("test_") and name in functions(path), (
            f"docs/security.md names {file}::{name}, which is not a test there"
        )
        if param:  # parameter ids live in the test file or in the csm code it parametrizes over
            assert param in path.read_text() or param in sources, f"{file}::{name}[{param}]: no such parameter"


def test_every_nixos_subtest_security_md_names_exists():
    found = SUBTEST.findall(SECURITY)
    assert found
    for file, title in found:
        assert f'subtest("{title}")' in (ROOT / file).read_text(), f'{file} has no subtest "{title}"'


def screenshot_steps() -> list[str]:
    spec = importlib.util.spec_from_file_location("docs_screenshots", ROOT / "scripts" / "docs-screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.PICTURES)


def test_onboarding_shows_every_picture_the_script_takes_and_no_other():
    shown = re.findall(r"\]\(img/onboarding/([\w-]+)\.png\)", ONBOARDING)
    steps = screenshot_steps()
    assert shown == steps, f"onboarding.md shows {shown}; scripts/docs-screenshots.py takes {steps}"
    on_disk = sorted(p.stem for p in (ROOT / "docs" / "img" / "onboarding").glob("*.png"))
    assert on_disk == sorted(steps), f"docs/img/onboarding holds {on_disk}: run `make docs-screenshots`"
    assert "make docs-screenshots" in ONBOARDING.split("\n## ")[0], "say how the pictures are made, at the top"
