"""The Nix package's csm carries the Nix files and data it evaluates (package.nix:
sourceDir), so `csm kube render` and everything that evaluates plan.nix work from a
Nix install, where no checkout is at hand.

package.nix is evaluated as the flake does (tests/unit/flake_eval.nix), under nixpkgs'
real lib where tier2.py finds it and under the builtins-only stand-in always, with
the store writable, so the filtered copies Nix would build from really exist. Then
the package's own source (csm/ alone) runs from a directory outside the checkout,
pointed at that copy by CSM_SOURCE_DIR as the package's wrapper does, and must
render and plan byte for byte what the checkout does. A file the filter leaves out
fails here, not on an admin's machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flake_outputs import evaluate
from tier2 import NIXPKGS_LIB, ROOT, SHARED

from csm import kube
from csm import plan as planlib

SKIP_REASON = (
    "TIER 2 SKIPPED: package.nix's copy of the Nix sources csm evaluates was NOT evaluated under "
    "nixpkgs' real lib (only under the builtins-only stand-in). Provide "
    f"{SHARED / 'nixpkgs-lib'} (nixpkgs' lib, e.g. a checkout of nix-community/nixpkgs.lib), "
    "or set NIXPKGS_LIB to a checkout of nixpkgs."
)
LIBS = [
    "builtins-lib",
    pytest.param("nixpkgs-lib", marks=[pytest.mark.tier2, pytest.mark.skipif(NIXPKGS_LIB is None, reason=SKIP_REASON)]),
]
SETTINGS = [ROOT / "examples/team.nix", ROOT / "examples/demo.nix"]


@pytest.fixture(scope="module", params=LIBS)
def package(request, tmp_path_factory):
    """The package's sources (csm/) and its copy of what csm evaluates, as store paths,
    the arguments its wrapper gets, and an empty directory outside the checkout."""
    lib = NIXPKGS_LIB if request.param == "nixpkgs-lib" else None
    csm = {
        attr: evaluate(f"packages.csm.{attr}", nixpkgs_lib=lib, store=True)
        for attr in ("src", "sourceDir", "makeWrapperArgs")
    }
    return csm, tmp_path_factory.mktemp("elsewhere")


def shipped_csm(package, *args: str, source_dir: bool = True) -> subprocess.CompletedProcess:
    """`python *args` with the package's csm (not the checkout's) on the path, from a
    directory outside the checkout, with the wrapper's CSM_SOURCE_DIR (or none)."""
    csm, elsewhere = package
    env = {k: v for k, v in os.environ.items() if k not in ("CSM_SOURCE_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = csm["src"]
    if source_dir:
        env["CSM_SOURCE_DIR"] = csm["sourceDir"]
    return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True)


def test_the_wrapper_points_csm_at_the_copy(package):
    csm, _ = package
    args = csm["makeWrapperArgs"]
    assert ["--set-default", "CSM_SOURCE_DIR", csm["sourceDir"]] == args[args.index("CSM_SOURCE_DIR") - 1 :][:3]


def test_the_copy_holds_what_csm_evaluates_and_not_the_nixos_module(package):
    csm, _ = package
    copy, src = Path(csm["sourceDir"]), Path(csm["src"])
    assert sorted(p.name for p in copy.iterdir()) == ["image", "modules", "pyproject.toml"]
    assert sorted(p.name for p in (copy / "image").iterdir()) == ["contract.json", "gate.json", "versions.json"]
    assert [p.name for p in (copy / "modules").iterdir()] == ["code-server-multi"]
    modules = copy / "modules/code-server-multi"
    for name in ("plan.nix", "kube.nix"):
        assert (modules / name).read_bytes() == (ROOT / "modules/code-server-multi" / name).read_bytes()
    # the NixOS module's own files: nothing csm evaluates imports them
    for name in ("default.nix", "containers.nix", "nginx.nix", "gate.nix", "acme.nix", "backup.nix"):
        assert not (modules / name).exists(), f"{name} is the NixOS module's, not csm's"
    # and the package itself stays csm/ alone
    assert sorted(p.name for p in src.iterdir()) == ["csm", "pyproject.toml"]


def test_the_shipped_csm_runs_from_its_own_copy(package):
    csm, _ = package
    done = shipped_csm(
        package,
        "-c",
        "import csm.plan as p, csm.checks.facts as f; print(p.__file__, p.source_dir(), f.image_dir(), sep='\\n')",
    )
    assert done.returncode == 0, done.stderr
    module, source_dir, image_dir = done.stdout.splitlines()
    assert module == f"{csm['src']}/csm/plan.py", "the package's csm, not the checkout's"
    assert (source_dir, image_dir) == (csm["sourceDir"], f"{csm['sourceDir']}/image")


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda p: p.name)
def test_kube_render_from_the_copy_is_the_checkouts(package, settings):
    shipped = shipped_csm(package, "-m", "csm.cli", "kube", "render", str(settings))
    here = subprocess.run(
        [sys.executable, "-m", "csm.cli", "kube", "render", str(settings)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "CSM_SOURCE_DIR"},
        capture_output=True,
        text=True,
    )
    assert here.returncode == 0 and "kind:" in here.stdout, here.stderr
    assert shipped.returncode == 0, shipped.stderr
    assert (shipped.stdout, shipped.stderr) == (here.stdout, here.stderr), "the same objects, notes and Secrets"


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda p: p.name)
def test_the_plan_from_the_copy_is_the_checkouts(package, settings):
    shipped = shipped_csm(
        package,
        "-c",
        "import json, sys; from csm import plan as p, kube as k\n"
        "print(json.dumps([p.to_json(p.load(sys.argv[1])), k.render(sys.argv[1])], sort_keys=True))",
        str(settings),
    )
    assert shipped.returncode == 0, shipped.stderr
    assert json.loads(shipped.stdout) == [planlib.to_json(planlib.load(settings)), kube.render(settings)]


def test_without_the_copy_the_shipped_csm_says_what_is_missing(package):
    """The package's csm/ alone has no Nix files beside it: this is what the copy is for."""
    done = shipped_csm(package, "-m", "csm.cli", "kube", "render", str(SETTINGS[0]), source_dir=False)
    assert done.returncode != 0 and "CSM_SOURCE_DIR" in done.stderr, done.stderr
