"""Room sizes in csm/: no Python file over 300 lines and no function over 60, except
what is listed below with the reason it is left. A new excess fails; so does an entry
here that no longer exceeds (remove it, the room shrank).

    .venv/bin/python tests/unit/test_sizes.py    # prints every excess
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60

# Left as they are, and why.
ALLOWED = {
    # Not split yet: the command table and its handlers (cli.py, 568 lines), the stack's
    # up/down/reset with their undo steps (stack.py, 467) and backup's archive checks
    # (backup.py, 333). Each is one concern; the split is a follow-up of its own.
    "csm/cli.py",
    "csm/cli.py:_parser",  # the argparse tree of every subcommand, one declaration
    "csm/runner/stack.py",
    "csm/runner/backup.py",
    "csm/runner/backup.py:_check_members",
    # A test double: one HTTP handler class, built in a closure over its scripted answers.
    "csm/testing/fake_openai.py:_handler_class",
}


def excesses() -> dict[str, int]:
    """{"path" or "path:function": its lines} for every room over its bound."""
    found = {}
    for path in sorted((ROOT / "csm").rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        if len(text.splitlines()) > MAX_FILE_LINES:
            found[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{rel}:{node.name}"] = lines
    return found


def test_no_room_over_its_size_but_the_listed_ones():
    found = excesses()
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not new, f"over {MAX_FILE_LINES} lines a file or {MAX_FUNCTION_LINES} a function: {new}"
    assert not ALLOWED - set(found), f"no longer over the bound, remove from ALLOWED: {ALLOWED - set(found)}"


if __name__ == "__main__":
    for room, lines in excesses().items():
        print(f"{lines:5d}  {room}{'' if room in ALLOWED else '   (not allowed)'}")
