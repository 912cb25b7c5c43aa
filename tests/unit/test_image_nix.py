"""image/default.nix, evaluated with stand-ins for nixpkgs (which cannot be fetched
here): what it asks dockerTools for, and how it treats versions.json."""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = json.loads((ROOT / "image/versions.json").read_text())

STUB = r"""
{ codeServerVersion, opencodeVersion, strict }:
let
  lib = {
    versions.major = v: builtins.head (builtins.splitVersion v);
    filter = builtins.filter;
    concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
    concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
    warn = msg: x: builtins.trace "warning: ${msg}" x;
  };
  drv = name: attrs: attrs // {
    inherit name;
    type = "derivation";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    inherit lib;
    pkgs = pkgs;
    code-server = drv "code-server" { version = codeServerVersion; };
    opencode = drv "opencode" { version = opencodeVersion; };
    nodejs_24 = drv "nodejs" { version = "24.9.0"; };
    # the store path names what was fetched, so the test can tell
    fetchurl = a: drv a.name { } // {
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" "${a.url} ${a.hash}")}-${a.name}";
    };
    runCommand = name: env: script: drv name { inherit env script; };
    writeText = name: text: drv name { inherit text; };
    dockerTools = {
      streamLayeredImage = args: args;
      caCertificates = drv "ca-certificates" { };
      binSh = drv "bin-sh" { };
      usrBinEnv = drv "usr-bin-env" { };
    };
  } // builtins.listToAttrs (map (n: { name = n; value = drv n { }; }) [
    "python3" "git" "ripgrep" "curl" "less" "tini" "bashInteractive" "coreutils" "findutils"
    "gnugrep" "gnused" "gawk" "gnutar" "gzip" "diffutils" "procps" "which" "jq"
  ]);
  image = import IMAGE { inherit pkgs; strictVersions = strict; inherit (pkgs) code-server; };
in {
  inherit (image) name tag config fakeRootCommands;
  contents = map (c: c.name) image.contents;
  extensions = image.passthru.extensions.script;
  vsixUrls = map (e: e.url) image.passthru.versions.extensions;
}
"""


def evaluate(tmp_path, code_server=VERSIONS["code-server"], opencode=VERSIONS["opencode"], strict=False):
    expr = tmp_path / "eval.nix"
    expr.write_text(STUB.replace("IMAGE", str(ROOT / "image")))
    argv = ["nix-instantiate", "--eval", "--strict", "--json", str(expr),
            "--argstr", "codeServerVersion", code_server, "--argstr", "opencodeVersion", opencode,
            "--arg", "strict", "true" if strict else "false"]
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    done = evaluate(tmp_path_factory.mktemp("nix"))
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_it_parses():
    subprocess.run(["nix-instantiate", "--parse", str(ROOT / "image/default.nix")],
                   check=True, capture_output=True)


def test_name_and_tag_are_the_ones_the_module_runs(image):
    assert f"{image['name']}:{image['tag']}" == "localhost/code-server-multi:latest"


def test_config(image):
    config = image["config"]
    assert config["Entrypoint"][0].endswith("-tini/bin/tini") and config["Entrypoint"][1:] == ["--"]
    assert config["Cmd"][0] == "code-server"
    assert config["Cmd"][config["Cmd"].index("--extensions-dir") + 1] == "/opt/code-server/extensions"
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/home/coder/project"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HOME"] == "/home/coder" and env["USER"] == "coder" and env["LANG"] == "C.UTF-8"
    assert env["OPENCODE_DISABLE_AUTOUPDATE"] == "1" and env["SSL_CERT_FILE"]
    labels = config["Labels"]
    assert labels["code-server-multi.recipe"] == "nix"
    assert labels["code-server-multi.code-server"] == VERSIONS["code-server"]
    assert labels["code-server-multi.extensions"] == ",".join(
        f"{e['id']}@{e['version']}" for e in VERSIONS["extensions"])


def test_contents_cover_the_contract(image):
    for name in ("code-server", "opencode", "nodejs", "python3", "git", "ripgrep", "curl", "less",
                 "tini", "bashInteractive", "coreutils", "findutils", "ca-certificates", "bin-sh"):
        assert name in image["contents"], name


def test_the_extension_is_installed_from_the_pinned_vsix(image):
    script = image["extensions"]
    for e in VERSIONS["extensions"]:
        fetched = hashlib.sha256(f"{e['url']} {e['hash']}".encode()).hexdigest()[:32]
        assert f"--install-extension /nix/store/{fetched}-{e['id']}-{e['version']}.vsix" in script
        assert f"grep -qix '{e['id']}@{e['version']}'" in script
    assert "--install-extension" in script
    assert 's|$out|/opt/code-server/extensions|g' in script
    assert image["vsixUrls"] == [e["url"] for e in VERSIONS["extensions"]]


def test_user_dirs_and_ownership(image):
    commands = image["fakeRootCommands"]
    assert "chmod 1777 ./tmp" in commands
    assert "chown -R 1000:1000 ./home/coder ./opt/code-server" in commands
    assert "./etc/passwd" in commands and "./etc/group" in commands


def test_a_version_drift_is_a_warning(tmp_path):
    done = evaluate(tmp_path, code_server="4.91.1")
    assert done.returncode == 0, done.stderr
    assert "code-server 4.91.1 (versions.json: " + VERSIONS["code-server"] + ")" in done.stderr


def test_a_version_drift_stops_a_strict_evaluation(tmp_path):
    done = evaluate(tmp_path, opencode="1.0.0", strict=True)
    assert done.returncode != 0
    assert "opencode 1.0.0 (versions.json: " + VERSIONS["opencode"] + ")" in done.stderr


RELEASE_STUB = r"""
{ hash }:
let
  drv = name: attrs: attrs // { inherit name; type = "derivation"; outPath = "/nix/store/x-${name}"; };
  versions = builtins.fromJSON (builtins.readFile VERSIONS) // { codeServerRelease.hash = hash; };
  f = import CODE_SERVER;
  d = f {
    lib = { getExe = p: "${p.outPath}/bin/node"; licenses.mit = "mit"; };
    stdenv = { mkDerivation = a: drv a.pname a; cc.cc.lib = drv "libstdc++" { }; };
    fetchurl = a: drv "src" a;
    autoPatchelfHook = drv "autoPatchelfHook" { };
    makeWrapper = drv "makeWrapper" { };
    krb5 = drv "krb5" { };
    nodejs = drv "nodejs" { };
    inherit versions;
  };
in { inherit (d) version installPhase; url = d.src.url; hash = d.src.hash; }
"""


def evaluate_release(tmp_path, hash_expr):
    expr = tmp_path / "release.nix"
    expr.write_text(RELEASE_STUB.replace("VERSIONS", str(ROOT / "image/versions.json"))
                    .replace("CODE_SERVER", str(ROOT / "image/code-server.nix")))
    return subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", str(expr), "--arg", "hash", hash_expr],
                          capture_output=True, text=True)


def test_code_server_release_is_the_pinned_one_run_by_nixpkgs_node(tmp_path):
    done = evaluate_release(tmp_path, '"sha256-AAAA"')
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    version = VERSIONS["code-server"]
    assert d["version"] == version and d["hash"] == "sha256-AAAA"
    assert d["url"].endswith(f"/v{version}/code-server-{version}-linux-amd64.tar.gz")
    assert "/nix/store/x-nodejs/bin/node" in d["installPhase"]


def test_code_server_release_without_a_hash_says_how_to_get_one(tmp_path):
    done = evaluate_release(tmp_path, "null")
    assert done.returncode != 0
    assert "codeServerRelease.hash is not set" in done.stderr and "nix store prefetch-file" in done.stderr
