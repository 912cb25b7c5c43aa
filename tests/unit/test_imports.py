"""The shape of csm's import graph (tests/unit/imports.py reads it with `ast`; imports
at module level and inside functions count alike).

The rule for test code, precisely:
- csm/testing (needs playwright) and csm/bench (drives Chromium through it) are not
  shipped (package.nix); nothing in the shipped package imports them.
- csm/checks is shipped, for one product feature: `csm smoke`, which cli.py reaches
  through its DELEGATED table by importlib (a string, not an import). No other shipped
  module imports csm.checks: the runtime (runner, gate, idle, image, cli, ...) does
  not depend on the checks that test it.
"""

from __future__ import annotations

import ast

import imports

TEST_CODE = ("csm.testing", "csm.bench")
CHECKS = "csm.checks"


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_nothing_shipped_imports_test_code_and_the_runtime_never_imports_the_checks():
    wrong = []
    for name, found in imports.graph().items():
        if _within(name, TEST_CODE):
            continue
        forbidden = TEST_CODE if _within(name, (CHECKS,)) else (*TEST_CODE, CHECKS)
        wrong += [
            f"{name} imports {target} (line {line})" for target, line in found.items() if _within(target, forbidden)
        ]
    assert not wrong, "shipped code imports test code (see this file's docstring):\n" + "\n".join(wrong)


def test_the_one_door_from_the_runtime_into_the_checks_is_csm_smoke():
    tree = ast.parse((imports.PACKAGE / "cli.py").read_text())
    (table,) = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "DELEGATED"
    ]
    modules = {key.value: ast.literal_eval(value)[0] for key, value in zip(table.keys, table.values, strict=True)}
    assert {cmd: m for cmd, m in modules.items() if _within(m, (CHECKS, *TEST_CODE))} == {"smoke": "csm.checks.smoke"}


def test_no_import_cycles():
    found = imports.cycles(imports.graph())
    assert not found, "modules that import each other, directly or around a circle:\n" + "\n".join(
        " <-> ".join(c) for c in found
    )
