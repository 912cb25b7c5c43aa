#!/usr/bin/env python3
"""Render docs/options.md from the module's declarations (scripts/options-json.nix).

make docs        # .venv/bin/python scripts/options-doc.py > docs/options.md
                 # (tests/unit/test_options_doc.py keeps it in step)
"""

import sys
from pathlib import Path

from csm.plan import nix_value

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
# Options of `services.code-server-multi`

Generated from `modules/code-server-multi/default.nix` by `scripts/options-doc.py`
(`make docs`); a test fails when this file and the declarations disagree. Defaults
live in `modules/code-server-multi/defaults.nix`. The portable runner takes the same
settings in a plain Nix file, without `services.code-server-multi.` and `enable`
(see `examples/`).
"""


def render() -> str:
    options = nix_value(ROOT / "scripts/options-json.nix")
    parts = [HEADER]
    for o in options:
        parts.append(f"\n## `{o['name']}`\n\n{o['description'].strip()}\n\n- Type: {o['type']}\n")
        if "default" in o:
            parts.append(f"- Default: `{o['default']}`\n")
        if "example" in o:
            parts.append(f"- Example: `{o['example']}`\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
