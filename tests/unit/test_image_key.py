"""The portable image's cache key: same inputs, same key; any changed input, a new one."""
import json
import re

import pytest

from csm import image

RECIPE = b"# recipe v1\n"


@pytest.fixture
def versions():
    return image.load_versions()


def vsix(tmp_path, name="sst-dev.opencode-0.0.13.vsix", content=b"PK\x03\x04 fake"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_versions_file_names_every_version(versions):
    for field in ("code-server", "opencode", "node", "npm", "debian"):
        assert versions[field]
    assert versions["node"].split(".")[0] == "24", "code-server 4.13x needs Node 24"
    ext = versions["extensions"][0]
    assert ext["id"] == "sst-dev.opencode"
    assert ext["url"].endswith(f"/{ext['id']}-{ext['version']}.vsix")
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", ext["hash"])


def test_same_inputs_same_key(versions, tmp_path):
    one = image.cache_key(versions, [vsix(tmp_path)], RECIPE)
    again = image.cache_key(json.loads(json.dumps(versions)), [tmp_path / "sst-dev.opencode-0.0.13.vsix"], RECIPE)
    assert one == again
    assert re.fullmatch(r"[0-9a-f]{16}", one)


def test_key_ignores_order_of_vsix_files(versions, tmp_path):
    a, b = vsix(tmp_path, "a.vsix", b"a"), vsix(tmp_path, "b.vsix", b"b")
    assert image.cache_key(versions, [a, b], RECIPE) == image.cache_key(versions, [b, a], RECIPE)


@pytest.mark.parametrize("field", ["code-server", "opencode", "node", "npm", "debian"])
def test_a_changed_version_changes_the_key(versions, field):
    changed = dict(versions, **{field: versions[field] + "-next"})
    assert image.cache_key(changed, [], RECIPE) != image.cache_key(versions, [], RECIPE)


def test_a_changed_extension_pin_changes_the_key(versions):
    changed = json.loads(json.dumps(versions))
    changed["extensions"][0]["version"] = "0.0.14"
    assert image.cache_key(changed, [], RECIPE) != image.cache_key(versions, [], RECIPE)


def test_adding_a_vsix_changes_the_key(versions, tmp_path):
    assert image.cache_key(versions, [vsix(tmp_path)], RECIPE) != image.cache_key(versions, [], RECIPE)


def test_a_changed_vsix_changes_the_key(versions, tmp_path):
    before = image.cache_key(versions, [vsix(tmp_path, content=b"one")], RECIPE)
    after = image.cache_key(versions, [vsix(tmp_path, content=b"two")], RECIPE)
    assert before != after


def test_a_changed_recipe_changes_the_key(versions):
    assert image.cache_key(versions, [], RECIPE) != image.cache_key(versions, [], RECIPE + b"#")


def test_the_key_covers_this_recipe_by_default(versions):
    assert image.cache_key(versions, []) == image.cache_key(versions, [], image.Path(image.__file__).read_bytes())


def test_stage_keys_follow_only_their_own_inputs(versions):
    keys = image.stage_keys(versions)
    bumped = image.stage_keys(dict(versions, opencode="9.9.9"))
    assert bumped["opencode"] != keys["opencode"]
    assert {k: v for k, v in bumped.items() if k != "opencode"} == \
        {k: v for k, v in keys.items() if k != "opencode"}
    node_bump = image.stage_keys(dict(versions, node="24.99.0"))
    assert node_bump["base"] == keys["base"]
    assert all(node_bump[k] != keys[k] for k in ("node", "code-server", "opencode"))
