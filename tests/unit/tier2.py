"""Where tier 2 finds nixpkgs' lib: $NIXPKGS_LIB when set, else ../shared/nixpkgs-lib
beside the repository, which every developer and CI has (../shared/nixpkgs-lib.SOURCE.md).
Resolved from the repository root, so pytest may run from anywhere. Without it, every
tier-2 test skips with MARKS' reason, which says what to provide."""
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


NIXPKGS_LIB = _nixpkgs_lib()

SKIP_REASON = (
    f"TIER 2 SKIPPED: no nixpkgs lib, so the NixOS module, the flake's host and the VM tests' server "
    f"nodes were NOT evaluated under nixpkgs' real lib. Provide {SHARED / 'nixpkgs-lib'} (nixpkgs' lib, "
    f"e.g. a checkout of nix-community/nixpkgs.lib), or set NIXPKGS_LIB=/path/to/nixpkgs.lib.")

FOUND = pytest.mark.skipif(NIXPKGS_LIB is None, reason=SKIP_REASON)
MARKS = [pytest.mark.tier2, FOUND]
