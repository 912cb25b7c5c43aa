"""The portable image's cache key: same inputs, same key; any changed input (manifest,
contract, VSIX, recipe), a new one; and each stage's key follows only its own inputs."""

import copy
import json
import re

import pytest

from csm import image
from csm.image import inputs, stages

RECIPE = "recipe v1"


@pytest.fixture
def manifest():
    return image.load_manifest(image.load_versions())


@pytest.fixture
def contract():
    return image.load_contract()


def key(manifest, contract, vsix=(), recipe=RECIPE):
    return image.cache_key(manifest, contract, list(vsix), recipe)


def vsix(tmp_path, name="sst-dev.opencode-0.0.13.vsix", content=b"PK\x03\x04 fake"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_versions_file_names_every_version():
    versions = image.load_versions()
    for field in ("code-server", "opencode", "node", "npm", "debian"):
        assert versions[field]
    assert "codeServerRelease" not in versions, "release tarballs are not used: the manifest pins npm tarballs"
    assert versions["node"].split(".")[0] == "24", "code-server 4.13x needs Node 24"
    ext = versions["extensions"][0]
    assert ext["id"] == "sst-dev.opencode"
    assert ext["url"].endswith(f"/{ext['id']}-{ext['version']}.vsix")
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", ext["hash"])


def test_same_inputs_same_key(manifest, contract, tmp_path):
    one = key(manifest, contract, [vsix(tmp_path)])
    again = key(json.loads(json.dumps(manifest)), dict(contract), [tmp_path / "sst-dev.opencode-0.0.13.vsix"])
    assert one == again
    assert re.fullmatch(r"[0-9a-f]{16}", one)


def test_key_ignores_order_of_vsix_files(manifest, contract, tmp_path):
    a, b = vsix(tmp_path, "a.vsix", b"a"), vsix(tmp_path, "b.vsix", b"b")
    assert key(manifest, contract, [a, b]) == key(manifest, contract, [b, a])


@pytest.mark.parametrize("entry", ["node", "npm", "codeServer", "opencode"])
def test_a_changed_tarball_changes_the_key(manifest, contract, entry):
    changed = copy.deepcopy(manifest)
    changed[entry]["integrity"] = "sha512-" + "A" * 86 + "=="
    assert key(changed, contract) != key(manifest, contract)


def test_a_changed_dependency_changes_the_key(manifest, contract):
    changed = copy.deepcopy(manifest)
    changed["npmDependencies"][0]["version"] += "-next"
    assert key(changed, contract) != key(manifest, contract)


@pytest.mark.parametrize("field", ["uid", "home", "port", "extensionsDir", "imageName"])
def test_a_changed_contract_changes_the_key(manifest, contract, field):
    changed = dict(contract, **{field: contract[field] + (1 if isinstance(contract[field], int) else "x")})
    assert key(manifest, changed) != key(manifest, contract)


def test_adding_or_changing_a_vsix_changes_the_key(manifest, contract, tmp_path):
    assert key(manifest, contract, [vsix(tmp_path)]) != key(manifest, contract)
    assert key(manifest, contract, [vsix(tmp_path, content=b"one")]) != key(
        manifest, contract, [vsix(tmp_path, content=b"two")]
    )


def test_the_key_covers_every_recipe_file(manifest, contract, tmp_path):
    files = inputs.recipe_files()
    assert inputs.BUILD_SCRIPT in files and inputs.RECIPE_DIR / "stages.py" in files
    copies = []
    for path in files:
        copies.append(tmp_path / path.name)
        copies[-1].write_bytes(path.read_bytes())
    assert inputs.recipe_digest(copies) == inputs.recipe_digest()
    copies[-1].write_bytes(copies[-1].read_bytes() + b"\n# changed\n")
    assert inputs.recipe_digest(copies) != inputs.recipe_digest()
    assert key(manifest, contract, recipe=inputs.recipe_digest(copies)) != key(
        manifest, contract, recipe=inputs.recipe_digest()
    )


def stage_keys(manifest):
    return image.stage_keys(manifest, stages.RUNTIME_PACKAGES, stages.BUILD_PACKAGES)


def test_stage_keys_follow_only_their_own_inputs(manifest):
    keys = stage_keys(manifest)
    bumped = copy.deepcopy(manifest)
    bumped["opencode"]["version"] = "9.9.9"
    after = stage_keys(bumped)
    assert after["opencode"] != keys["opencode"]
    assert {k: v for k, v in after.items() if k != "opencode"} == {k: v for k, v in keys.items() if k != "opencode"}
    node_bump = copy.deepcopy(manifest)
    node_bump["node"]["version"] = "24.99.0"
    after = stage_keys(node_bump)
    assert after["base"] == keys["base"] and after["opencode"] == keys["opencode"]
    assert after["node"] != keys["node"] and after["code-server"] != keys["code-server"]
    dep_bump = copy.deepcopy(manifest)
    dep_bump["npmDependencies"].pop()
    after = stage_keys(dep_bump)
    assert after["code-server"] != keys["code-server"] and after["node"] == keys["node"]
