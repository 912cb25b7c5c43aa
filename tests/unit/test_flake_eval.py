"""Every flake output evaluated as `nix flake check` would, against a stand-in nixpkgs
whose callPackage is nixpkgs' (tests/unit/standin/pkgs.nix, like nixos-25.11 with a
code-server 4.91.1 and an opencode that are not ours): packages instantiated to the
.drv files Nix would build, the module's image defaults, lib.plan on the examples,
the VM tests down to their nodes and scripts. Any throw, missing hash or version
drift fails. The image's .drv graph shows what it is made of.

Runs with the builtins-only copy of nixpkgs' lib always, and with nixpkgs' real lib
(tier 2) where tier2.py finds it, which also evaluates a NixOS host that
imports the module without setting its image, and the VM tests' server nodes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from flake_outputs import Drv, NixError, closure, copy_tree, evaluate, instantiate
from tier2 import FOUND, MARKS, NIXPKGS_LIB, ROOT

from csm import kube
from csm import plan as planlib

LIBS = ["builtins-lib", pytest.param("nixpkgs-lib", marks=MARKS)]


def lib_of(which: str) -> Path | None:
    return NIXPKGS_LIB if which == "nixpkgs-lib" else None


@pytest.fixture(scope="module", params=LIBS)
def flake(request):
    lib = lib_of(request.param)
    return evaluate("outputs", nixpkgs_lib=lib), lib


@pytest.fixture(scope="module")
def image():
    """The image's .drv and everything it needs, and what the image is made from
    (under nixpkgs' real lib where there is one)."""
    (image_drv,) = instantiate("packages.image", nixpkgs_lib=NIXPKGS_LIB)
    drvs = closure(image_drv)
    manifest = json.loads((ROOT / "image/manifest.json").read_text())
    contract = json.loads((ROOT / "image/contract.json").read_text())
    return drvs[image_drv], drvs, manifest, contract


def named(drvs, pattern):
    """The one derivation whose name matches `pattern` (a package name, then its version)."""
    (drv,) = [d for d in drvs.values() if re.fullmatch(pattern, d.env.get("name", ""))]
    return drv


def fetched(drvs) -> dict[str, str]:
    """url -> hash of every fixed-output fetch in the closure."""
    return {d.env["url"]: d.env["outputHash"] for d in drvs.values() if d.builder == "builtin:fetchurl"}


def test_packages_instantiate(flake):
    outputs, lib = flake
    assert sorted(outputs["packages"]) == ["csm", "default", "gate-image", "image"]
    assert outputs["packages"]["default"] == outputs["packages"]["csm"]
    assert sorted(instantiate("packages", nixpkgs_lib=lib)) == sorted(set(outputs["packages"].values()))
    csm = Drv(outputs["packages"]["csm"])
    src = Path(csm.env["src"])
    assert sorted(p.name for p in src.iterdir()) == ["csm", "pyproject.toml"], "csm's source is the package alone"
    assert (src / "csm/cli.py").is_file() and (src / "csm/checks/smoke.py").is_file()
    # test helpers (playwright) and benches stay out of the runtime package
    assert not (src / "csm/testing").exists() and not (src / "csm/bench").exists()
    deps = {Drv(d).env.get("pname") for d in csm.inputs}
    assert {"requests", "websocket-client", "argon2-cffi", "setuptools"} <= deps


def test_the_module_defaults_to_the_flakes_image_and_csm(flake):
    outputs, _ = flake
    contract = json.loads((ROOT / "image/contract.json").read_text())
    defaults = outputs["moduleDefaults"]
    assert defaults["imageStream"] == outputs["packages"]["image"]
    assert defaults["image"] == f"{contract['imageName']}:{contract['imageTag']}"
    assert defaults["package"] == outputs["packages"]["csm"]
    assert outputs["nixosModules"] == ["code-server-multi", "default"]


@pytest.mark.parametrize("example", ["demo", "team"])
def test_lib_plan_is_the_runners_plan(flake, example):
    outputs, _ = flake
    assert outputs["plans"][example] == planlib.to_json(planlib.load(ROOT / f"examples/{example}.nix"))


def test_lib_kube_is_what_csm_kube_renders(flake):
    outputs, _ = flake
    assert outputs["kube"]["team"] == kube.render(ROOT / "examples/team.nix")


def test_checks_are_the_vm_tests_with_their_nodes_and_scripts(flake):
    outputs, _ = flake
    checks = outputs["checks"]
    assert sorted(checks) == ["acme-wildcard", "server"]
    assert checks["server"]["nodes"] == ["client", "server"]
    assert checks["acme-wildcard"]["nodes"] == ["acme", "client", "dnsserver", "server"]


@pytest.mark.tier2
@FOUND
def test_a_host_importing_the_module_runs_the_flakes_image():
    outputs = evaluate("outputs", nixpkgs_lib=NIXPKGS_LIB)
    host = evaluate("host", nixpkgs_lib=NIXPKGS_LIB)
    servers = [c["server"] for c in outputs["checks"].values()]
    for config in [host, *servers]:
        assert config["assertions"] == []
        assert config["containers"], "the host runs containers"
        for container in config["containers"].values():
            assert container["imageStream"] == outputs["packages"]["image"]
            assert container["image"] == outputs["moduleDefaults"]["image"]
        assert outputs["packages"]["csm"] in config["systemPackages"]
        # the login gate runs the flake's csm
        assert config["gate"]["package"]["drvPath"] == outputs["packages"]["csm"]
        assert config["gate"]["execStart"].startswith(f"{config['gate']['package']['out']}/bin/csm gate serve ")


def test_every_tarball_of_the_manifest_is_fetched_by_its_integrity(image):
    _, drvs, manifest, _ = image
    fetches = fetched(drvs)
    for entry in [manifest["codeServer"], manifest["opencode"], *manifest["npmDependencies"]]:
        assert fetches.get(entry["url"]) == entry["integrity"], entry["name"]
    for e in manifest["extensions"]:
        assert fetches.get(e["url"]) == e["hash"], e["id"]
    assert len(fetches) == 2 + len(manifest["npmDependencies"]) + len(manifest["extensions"]), (
        "the image fetches nothing the manifest does not name"
    )


def test_code_server_is_built_from_the_manifest_by_the_shared_script(image):
    _, drvs, manifest, _ = image
    build = named(drvs, r"code-server-[\d.]+")
    assert build.env["version"] == manifest["codeServer"]["version"]
    tarballs = named(drvs, "code-server-tarballs")
    by_url = {d.env["url"]: d.out for d in drvs.values() if d.builder == "builtin:fetchurl"}
    entries = {e["name"]: e["path"] for e in tarballs.json("entries")}
    wanted = [manifest["codeServer"], *manifest["npmDependencies"]]
    assert entries == {e["file"]: by_url[e["url"]] for e in wanted}
    script = build.env["buildPhase"]
    assert re.search(
        rf"bash /nix/store/[a-z0-9]{{32}}-build-code-server\.sh {tarballs.out} \$out/libexec/code-server", script
    ), script
    node = named(drvs, r"nodejs-24\.[\d.]+")
    assert build.env["npm_config_nodedir"] == node.out
    native = build.env["nativeBuildInputs"].split()
    for tool in (r"nodejs-24\.[\d.]+", r"python3-[\d.]+", r"pkg-config-wrapper-[\d.]+", r"gnumake-[\d.]+"):
        assert named(drvs, tool).out in native, tool
    assert named(drvs, r"krb5-[\d.]+").out in build.env["buildInputs"].split()
    assert f"{node.out}/bin/node" in build.env["installPhase"]
    assert "$out/libexec/code-server/out/node/entry.js" in build.env["installPhase"]


def test_opencode_is_the_registry_binary_untouched_with_a_standard_loader(image):
    image_drv, drvs, manifest, _ = image
    opencode = named(drvs, r"opencode-[\d.]+")
    assert opencode.env["version"] == manifest["opencode"]["version"]
    fetch = [d for d in drvs.values() if d.env.get("url") == manifest["opencode"]["url"]]
    assert opencode.env["src"] == fetch[0].out
    assert opencode.env["dontFixup"] == "1", "strip/patchelf would break the Bun executable"
    loader = named(drvs, "lib64-ld-linux")
    glibc = named(drvs, r"glibc-[\d.-]+")
    assert f"ln -s {glibc.out}/lib/ld-linux-x86-64.so.2 $out/lib64/ld-linux-x86-64.so.2" in loader.env["buildCommand"]
    contents = image_drv.env["contents"].split()
    assert opencode.out in contents and loader.out in contents


def test_the_image_holds_ours_and_not_nixpkgs_code_server_or_opencode(image):
    image_drv, drvs, _, _ = image
    outputs = evaluate("outputs", nixpkgs_lib=NIXPKGS_LIB)
    everything = "\n".join(json.dumps(d.env) for d in drvs.values())
    for name in ("code-server", "opencode"):
        assert outputs["nixpkgs"][name] not in everything, f"nixpkgs' {name} reached the image"
    contents = image_drv.env["contents"].split()
    for name in (r"code-server-[\d.]+", r"opencode-[\d.]+", r"nodejs-24\.[\d.]+", "lib64-ld-linux"):
        assert named(drvs, name).out in contents, name


def test_image_config_follows_the_contract_and_versions(image):
    image_drv, drvs, manifest, contract = image
    config = image_drv.json("config")
    assert image_drv.env["imageName"] == contract["imageName"] and image_drv.env["imageTag"] == contract["imageTag"]
    assert config["Entrypoint"][0].endswith("-tini-0.19.0/bin/tini") and config["Entrypoint"][1:] == ["--"]
    cmd = config["Cmd"]
    assert cmd[0] == "code-server" and cmd[-1] == contract["project"]
    assert cmd[cmd.index("--bind-addr") + 1] == f"0.0.0.0:{contract['port']}"
    assert cmd[cmd.index("--extensions-dir") + 1] == contract["extensionsDir"]
    assert config["User"] == f"{contract['uid']}:{contract['gid']}"
    assert config["WorkingDir"] == contract["project"]
    assert config["ExposedPorts"] == {f"{contract['port']}/tcp": {}}
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HOME"] == contract["home"] and env["USER"] == contract["user"]
    assert env["OPENCODE_DISABLE_AUTOUPDATE"] == "1" and env["SSL_CERT_FILE"]
    versions = manifest["versions"]
    labels = config["Labels"]
    assert labels["code-server-multi.recipe"] == "nix"
    assert labels["code-server-multi.code-server"] == versions["code-server"]
    assert labels["code-server-multi.opencode"] == versions["opencode"]
    assert labels["code-server-multi.node"].split(".")[0] == versions["node"].split(".")[0]
    session = json.loads((ROOT / "image" / "session-extension" / "package.json").read_text())
    assert labels["code-server-multi.extensions"] == ",".join(
        [f"{e['id']}@{e['version']}" for e in versions["extensions"]]
        + [f"{session['publisher']}.{session['name']}@{session['version']}"]
    )
    packed = named(drvs, "code-server-multi.session.vsix")  # packed by the same script as the portable recipe
    script = re.fullmatch(r"python3 (/nix/store/\S+-pack\.py) \$out\n", packed.env["buildCommand"]).group(1)
    assert Path(script).read_bytes() == (ROOT / "image" / "session-extension" / "pack.py").read_bytes()
    commands = image_drv.env["fakeRootCommands"]
    extensions = named(drvs, "code-server-multi-extensions")
    assert f"cp -r {extensions.out}/. .{contract['extensionsDir']}/" in commands
    assert f"chown -R {contract['uid']}:{contract['gid']} .{contract['home']} .{contract['extensionsDir']}" in commands
    passwd = named(drvs, "passwd").env["text"]
    assert (
        f"{contract['user']}:x:{contract['uid']}:{contract['gid']}:{contract['user']}:{contract['home']}:/bin/bash"
        in passwd
    )


# What must stop the evaluation: each a change to a copy of the tree.
@pytest.fixture
def copy():
    root = copy_tree()
    yield root
    shutil.rmtree(root)


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("which", LIBS)
def test_a_missing_hash_stops_the_evaluation(copy, which):
    edit_json(copy / "image/manifest.json", lambda m: m["npmDependencies"][0].update(integrity=None))
    with pytest.raises(NixError, match=r"image/manifest.json: \S+ has no SRI hash \(got null\)"):
        instantiate("packages.image", root=copy, nixpkgs_lib=lib_of(which))


@pytest.mark.parametrize("which", LIBS)
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["codeServer"].update(version="4.91.1"), r"- code-server: 4\.91\.1 \(versions.json: "),
        (lambda m: m["opencode"].update(version="1.0.0"), r"- opencode: 1\.0\.0 \(versions.json: "),
        (lambda m: m["versions"].update(node="22.1.0"), r"made from another image/versions.json"),
    ],
    ids=["code-server", "opencode", "versions"],
)
def test_a_version_drift_stops_the_evaluation(copy, which, change, message):
    edit_json(copy / "image/manifest.json", change)
    with pytest.raises(NixError, match=message):
        evaluate("outputs", root=copy, nixpkgs_lib=lib_of(which))


def test_a_node_major_other_than_versions_json_stops_the_evaluation(copy):
    for name in ("versions.json", "manifest.json"):
        edit_json(copy / "image" / name, lambda v: (v.get("versions", v)).update(node="26.0.0"))
    with pytest.raises(NixError, match=r"node major of nixpkgs' nodejs_24 .*: 24 \(versions.json: 26\)"):
        evaluate("outputs", root=copy)


def test_the_build_gives_npm_rebuild_scripts_an_interpreter_the_sandbox_has(image, tmp_path):
    """The Nix sandbox has no /usr/bin/env; the npm first in the build's PATH points the
    dependencies' #!/usr/bin/env lines at coreutils' env before `npm rebuild` runs them.
    Runs that script, as the .drv holds it, on a node_modules of its own."""
    _, drvs, _, _ = image
    build = named(drvs, r"code-server-[\d.]+")
    shim = named(drvs, "npm")
    assert f"ln -s {shim.out} $TMPDIR/bin/npm && export PATH=$TMPDIR/bin:$PATH" in build.env["buildPhase"]
    coreutils, node = named(drvs, r"coreutils-[\d.]+"), named(drvs, r"nodejs-24\.[\d.]+")
    script = tmp_path / "npm"
    script.write_text(shim.env["text"])
    bin_js = tmp_path / "node_modules/node-gyp-build/bin.js"
    bin_js.parent.mkdir(parents=True)
    bin_js.write_text("#!/usr/bin/env node\nrequire('./')\n")
    comment = tmp_path / "node_modules/x.sh"
    comment.write_text("#!/bin/sh\n#!/usr/bin/env node\n")
    done = subprocess.run(["bash", str(script), "rebuild", "argon2"], cwd=tmp_path, capture_output=True, text=True)
    assert f"{node.out}/bin/npm" in done.stderr, "then it runs nodejs_24's npm"
    assert bin_js.read_text() == f"#!{coreutils.out}/bin/env node\nrequire('./')\n"
    assert comment.read_text() == "#!/bin/sh\n#!/usr/bin/env node\n"


def test_the_gate_image_is_the_one_kube_renders(flake):
    """`nix build .#gate-image` makes the image the rendered gate Deployment names
    (the project's version as its tag), holding the flake's csm."""
    outputs, lib = flake
    instantiate("packages", nixpkgs_lib=lib)  # the .drv files Drv reads
    image = Drv(outputs["packages"]["gate-image"])
    (deployment,) = [o for o in kube.render(ROOT / "examples/team.nix")["objects"] if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert f"{image.env['imageName']}:{image.env['imageTag']}" == container["image"]
    assert Drv(outputs["packages"]["csm"]).env["version"] == image.env["imageTag"]
    assert outputs["packages"]["csm"] in image.inputs
