"""scripts/kube-check, the checks only a real cluster can run (docs/kubernetes.md): it
parses, and without kubectl it says what to do instead of failing half-way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/kube-check"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_without_kubectl_it_says_so():
    csm = Path(sys.executable).with_name("csm")
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT), "examples/team.nix"],
        env={"PATH": "/nonexistent", "CSM": str(csm)},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr == "kubectl is not installed; install it and point it at the cluster\n"
