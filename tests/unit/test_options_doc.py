"""docs/options.md says what the module declares: regenerate it with `make docs`."""

import importlib.util
from pathlib import Path

from csm.plan import nix_value

ROOT = Path(__file__).resolve().parents[2]


def test_options_doc_is_in_step_with_the_declarations():
    spec = importlib.util.spec_from_file_location("options_doc", ROOT / "scripts/options-doc.py")
    doc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(doc)
    rendered = doc.render()
    assert "## `services.code-server-multi.users.<name>.memoryLimit`" in rendered
    assert '- Default: `"3g"`' in rendered
    assert (ROOT / "docs/options.md").read_text() == rendered, "docs/options.md is stale: run `make docs`"


def test_options_and_plan_settings_are_the_same_names():
    """Every setting the plan takes (setting-names.nix: the top-level names of
    defaults.nix, and those without a default) is an option, and every option but the
    NixOS-only ones is a setting (so the module passes everything through)."""
    options = nix_value(ROOT / "scripts/options-json.nix")
    prefix = "services.code-server-multi."
    names = {o["name"].removeprefix(prefix).replace("users.<name>.", "user.") for o in options}
    nixos_only = {"enable", "imageStream", "package"}
    defaults = nix_value(ROOT / "modules/code-server-multi/defaults.nix")
    without_default = set(nix_value(ROOT / "modules/code-server-multi/setting-names.nix")) - set(defaults)
    free_form = {"vscodeSettings"}  # one option holding any VS Code settings, not a section
    section = lambda k, v: isinstance(v, dict) and v and k not in free_form  # noqa: E731
    settings = {
        f"{k}.{sub}" if section(k, v) else k for k, v in defaults.items() for sub in (v if section(k, v) else [None])
    }
    assert names - nixos_only == settings | without_default
