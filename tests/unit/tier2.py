"""Where tier 2 finds nixpkgs' lib and nixpkgs' real oci-containers module: $NIXPKGS_LIB
when set, else ../shared beside the repository, which every developer and CI has
(../shared/nixpkgs-lib.SOURCE.md). Resolved from the repository root, so pytest may run
from anywhere. Without them, every tier-2 test skips with MARKS' reason, which says
what to provide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def _nixpkgs_lib() -> Path | None:
    if os.environ.get("NIXPKGS_LIB"):
        return Path(os.environ["NIXPKGS_LIB"]).resolve()
    shared = SHARED / "nixpkgs-lib"
    return shared if (shared / "lib/default.nix").is_file() else None


def _oci_containers(nixpkgs_lib: Path | None) -> Path | None:
    # A whole nixpkgs checkout named by NIXPKGS_LIB brings its own.
    candidates = [nixpkgs_lib / "nixos/modules/virtualisation/oci-containers.nix"] if nixpkgs_lib else []
    candidates.append(SHARED / "nixos-modules/oci-containers.nix")
    return next((p for p in candidates if p.is_file()), None)


NIXPKGS_LIB = _nixpkgs_lib()
OCI_CONTAINERS = _oci_containers(NIXPKGS_LIB)

SKIP_REASON = (
    "TIER 2 SKIPPED: the NixOS module, the flake's host and the VM tests' server nodes were NOT evaluated "
    "under nixpkgs' real lib with nixpkgs' real oci-containers module. Provide "
    f"{SHARED / 'nixpkgs-lib'} (nixpkgs' lib, e.g. a checkout of nix-community/nixpkgs.lib) and "
    f"{SHARED / 'nixos-modules/oci-containers.nix'} (nixpkgs' nixos/modules/virtualisation/oci-containers.nix), "
    "or set NIXPKGS_LIB to a checkout of nixpkgs. Missing: "
    + ", ".join(
        what for what, found in [("nixpkgs' lib", NIXPKGS_LIB), ("oci-containers.nix", OCI_CONTAINERS)] if found is None
    )
    + "."
)

FOUND = pytest.mark.skipif(NIXPKGS_LIB is None or OCI_CONTAINERS is None, reason=SKIP_REASON)
MARKS = [pytest.mark.tier2, FOUND]
