"""The code's own gates, as the package's Nix build runs them (package.nix): ruff's
lint and its formatting, and mypy's types, with the settings of pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.parametrize("gate", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(gate):
    proc = subprocess.run([str(RUFF), *gate, "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, (
        f"ruff {' '.join(gate)} (fix: `.venv/bin/ruff check --fix . && .venv/bin/ruff format .`):\n"
        + proc.stdout
        + proc.stderr
    )


def test_mypy():
    mypy = Path(sys.executable).with_name("mypy")
    proc = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, "mypy (the settings are pyproject.toml's [tool.mypy]):\n" + proc.stdout + proc.stderr
