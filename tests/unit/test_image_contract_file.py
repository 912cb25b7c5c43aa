"""image/contract.json is the one place for what the image and the plan agree on: change
a value in a copy of it and plan.nix, the portable recipe's settings and the contract
check all follow."""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.checks import image as check
from csm.image import assemble, inputs

ROOT = Path(__file__).resolve().parents[2]
CHANGED = {
    "imageName": "localhost/other-image",
    "imageTag": "v9",
    "user": "learner",
    "uid": 1234,
    "gid": 1235,
    "home": "/home/learner",
    "project": "/home/learner/work",
    "port": 9090,
    "extensionsDir": "/opt/ext",
    "healthPath": "/alive",
}


@pytest.fixture
def changed_tree(tmp_path):
    """A copy of the module and image/ with every contract value changed."""
    shutil.copytree(ROOT / "modules", tmp_path / "modules")
    (tmp_path / "image").mkdir()
    shutil.copy(ROOT / "image/gate.json", tmp_path / "image/gate.json")
    shutil.copy(ROOT / "image/versions.json", tmp_path / "image/versions.json")
    contract = json.loads((ROOT / "image/contract.json").read_text())
    assert set(contract) == set(CHANGED), "the test changes every field of the contract"
    (tmp_path / "image/contract.json").write_text(json.dumps(CHANGED))
    return tmp_path


def plan_of(tree: Path) -> dict:
    expr = (
        f"import {tree}/modules/code-server-multi/plan.nix "
        '{ domain = "code.test"; users.ada = { passwordFile = "/run/ada"; }; }'
    )
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], capture_output=True, text=True, check=True
    ).stdout
    return planlib.from_json(json.loads(out), "the changed tree's plan")


def test_plan_follows_the_contract(changed_tree):
    plan, c = plan_of(changed_tree), CHANGED
    ada = plan.users["ada"].container
    assert plan.image == "localhost/other-image:v9"
    assert ada.user == "1234:1235"
    assert ada.ports == []  # the plan runs code-server on a socket: the contract's port is the image's default only
    assert any(v.endswith(f":{c['home']}") for v in ada.volumes)
    assert any(v.endswith(f":{c['project']}") for v in ada.volumes)
    assert ada.cmd[ada.cmd.index("--extensions-dir") + 1] == "/opt/ext"
    assert c["project"] in ada.cmd and "9090" not in json.dumps(dataclasses.asdict(ada))
    assert ada.healthCheck[-1] == "http://localhost/alive" and ada.healthPath == "/alive"
    assert plan.users["ada"].ids.hostGid - plan.users["ada"].ids.hostUid == 1


def test_the_checkout_plan_uses_the_checkout_contract():
    plan, c = plan_of(ROOT), inputs.load_contract()
    assert plan.image == f"{c['imageName']}:{c['imageTag']}"
    assert plan.users["ada"].container.user == f"{c['uid']}:{c['gid']}"


def test_portable_recipe_follows_the_contract(changed_tree, tmp_path):
    c = inputs.load_contract(changed_tree / "image/contract.json")
    assert inputs.image_reference(c) == ("localhost/other-image", "v9")
    changes = assemble.podman_changes(c, inputs.load_versions(), "k", [])
    assert "USER 1234:1235" in changes and "WORKDIR /home/learner/work" in changes
    assert "EXPOSE 9090" in changes and "ENV HOME=/home/learner" in changes and "ENV USER=learner" in changes
    cmd = json.loads(next(x for x in changes if x.startswith("CMD "))[4:])
    assert cmd == ["code-server", "--bind-addr", "0.0.0.0:9090", "--extensions-dir", "/opt/ext", "/home/learner/work"]
    etc = tmp_path / "root/etc"
    etc.mkdir(parents=True)
    for name, line in (
        ("passwd", "root:x:0:0:root:/root:/bin/bash"),
        ("group", "root:x:0:"),
        ("shadow", "root:*:1::::::"),
        ("gshadow", "root:*::"),
    ):
        (etc / name).write_text(line + "\n")
    assemble.add_user(tmp_path / "root", c)
    assert "learner:x:1234:1235:learner:/home/learner:/bin/bash" in (etc / "passwd").read_text()
    assert "learner:x:1235:" in (etc / "group").read_text()


def test_contract_check_follows_the_contract(changed_tree, monkeypatch):
    monkeypatch.setenv("CSM_SOURCE_DIR", str(changed_tree))
    assert check.default_image() == "localhost/other-image:v9"
    config = {
        "Entrypoint": ["/usr/bin/tini", "--"],
        "User": "1234:1235",
        "WorkingDir": "/home/learner/work",
        "ExposedPorts": {"9090/tcp": {}},
        "Env": [
            "HOME=/home/learner",
            "USER=learner",
            "LANG=C.UTF-8",
            "OPENCODE_DISABLE_AUTOUPDATE=1",
            "PATH=/usr/bin",
            "SSL_CERT_FILE=/etc/ssl/c.crt",
        ],
    }
    podman = check.Podman(lambda command: json.dumps([{"Config": config}]))
    assert "9090/tcp" in check.image_config("img", podman)
    old = dict(config, User="1000:1000", ExposedPorts={"8080/tcp": {}})
    with pytest.raises(AssertionError, match="not 1234.*not 9090/tcp"):
        check.image_config("img", check.Podman(lambda command: json.dumps([{"Config": old}])))
    monkeypatch.delenv("CSM_SOURCE_DIR")
    assert check.default_image() == "{imageName}:{imageTag}".format(**inputs.load_contract())
