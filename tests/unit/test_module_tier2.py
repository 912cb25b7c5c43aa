"""Tier 2: the NixOS module under real nixpkgs lib.evalModules (NIXPKGS_LIB names a
nixpkgs lib checkout, e.g. nix-community/nixpkgs.lib), the NixOS options it sets
declared by tests/tier2/eval-module.nix. Checks the mapping of the plan."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from csm import plan as planlib

ROOT = Path(__file__).resolve().parents[2]
NIXPKGS_LIB = os.environ.get("NIXPKGS_LIB")

pytestmark = [
    pytest.mark.tier2,
    pytest.mark.skipif(not NIXPKGS_LIB, reason=(
        "TIER 2 SKIPPED: NIXPKGS_LIB is not set, so the NixOS module was NOT evaluated under real "
        "nixpkgs lib. Set NIXPKGS_LIB=/path/to/nixpkgs.lib (a checkout of nix-community/nixpkgs.lib) "
        "to run it.")),
]


def evaluate(settings_file: Path) -> dict:
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", str(ROOT / "tests/tier2/eval-module.nix"),
         "--arg", "nixpkgsLib", str(Path(NIXPKGS_LIB).resolve()), "--arg", "settingsFile", str(settings_file)],
        capture_output=True, text=True)
    if proc.returncode:
        raise planlib.PlanError(planlib._error_text(proc.stderr))
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def team():
    return evaluate(ROOT / "examples/team.nix"), planlib.load(ROOT / "examples/team.nix")


def test_containers_are_the_plans(team):
    module, plan = team
    assert module["podman"] is True
    assert sorted(module["containers"]) == sorted(u["container"]["name"] for u in plan["users"].values())
    for u in plan["users"].values():
        c = module["containers"][u["container"]["name"]]
        for key in ("image", "cmd", "user", "environment", "environmentFiles", "ports", "volumes", "extraOptions"):
            assert c[key] == u["container"][key], key
        assert c["podman"]["sdnotify"] == "healthy" and c["pull"] == "never" and c["hasImageStream"]


def test_secrets_are_composed_at_start_from_files(team):
    module, plan = team
    for u in plan["users"].values():
        script = module["services"][f"podman-{u['container']['name']}"]["preStart"]
        for s in u["secrets"]["fromFiles"]:
            assert f"value=$(cat {s['file']})" in script and f"{s['variable']} \"$value\"" in script
        assert f"mv \"$tmp\" {u['secrets']['envFile']}" in script and "umask 077" in script


def test_each_container_starts_on_its_own_isolated_network(team):
    module, plan = team
    for u in plan["users"].values():
        net = u["network"]
        unit = f"podman-network-{net['name']}"
        container = module["services"][f"podman-{u['container']['name']}"]
        assert f"{unit}.service" in container["requires"] and f"{unit}.service" in container["after"]
        network = module["services"][unit]
        assert network["serviceConfig"] == {"Type": "oneshot", "RemainAfterExit": True}
        create = network["script"].split("podman network create ", 1)[1].split()
        assert [shlex.split(w)[0] for w in create] == net["createOptions"] + [net["name"]]
        assert "--opt=isolate=true" in net["createOptions"]
        assert network["postStop"] == f"podman network rm --force {net['name']}"
        assert f"--network={net['name']}" in module["containers"][u["container"]["name"]]["extraOptions"]


def test_tls_marks_the_session_cookie_and_the_login_limit_counts_posts_only(team):
    module, plan = team
    for u in plan["users"].values():
        assert "proxy_cookie_flags code-server-session secure httponly;" in \
            module["nginx"]["virtualHosts"][u["hostname"]]["extraConfig"]
    assert "map $request_method $csm_login_key { POST $binary_remote_addr; default ''; }" in \
        module["nginx"]["appendHttpConfig"]


def test_one_virtual_host_per_user_and_a_default_landing_host(team):
    module, plan = team
    hosts = module["nginx"]["virtualHosts"]
    assert sorted(hosts) == sorted([u["hostname"] for u in plan["users"].values()] + ["*.code.example.org"])
    for u in plan["users"].values():
        h = hosts[u["hostname"]]
        assert h["forceSSL"] and h["useACMEHost"] == "code.example.org"
        assert "Strict-Transport-Security" in h["extraConfig"]
        for where, loc in u["nginx"]["locations"].items():
            assert h["locations"][where]["proxyPass"] == loc["proxyPass"]
            assert h["locations"][where]["recommendedProxySettings"] is False
            assert h["locations"][where]["extraConfig"] == "\n".join(loc["config"])
    landing = hosts["*.code.example.org"]
    assert landing["default"] and landing["root"] and "return 404;" in landing["locations"]["/"]["extraConfig"]
    assert all(loc["proxyPass"] is None for loc in landing["locations"].values())
    assert "limit_req_zone" in module["nginx"]["appendHttpConfig"]
    assert module["firewall"] == [80, 443]


def test_tmpfiles_create_the_plans_directories_and_seed_files(team):
    module, plan = team
    for u in plan["users"].values():
        for d in u["directories"]:
            assert f"d {d['path']} {d['mode']} {d['uid']} {d['gid']} -" in module["tmpfiles"]
        for f in u["seedFiles"]:  # `f`: written only when the file does not exist
            assert f"f {f['path']} {f['mode']} {f['uid']} {f['gid']} - {f['content']}" in module["tmpfiles"]


def test_wildcard_certificate_by_dns01(team):
    module, _ = team
    cert = module["acme"]["code.example.org"]
    assert cert["extraDomainNames"] == ["*.code.example.org"] and cert["dnsProvider"] == "cloudflare"
    assert cert["environmentFile"] == "/run/secrets/acme-cloudflare.env" and cert["group"] == "nginx"


def test_backup_service_and_timer(team):
    module, _ = team
    assert "csm backup --plan /etc/code-server-multi/plan.json" in \
        module["services"]["code-server-multi-backup"]["serviceConfig"]["ExecStart"]
    assert module["timers"]["code-server-multi-backup"]["timerConfig"]["OnCalendar"] == "daily"
    assert module["assertions"] == []


def test_demo_without_acme_serves_plain_http():
    module = evaluate(ROOT / "examples/demo.nix")
    host = module["nginx"]["virtualHosts"]["demo.code.localhost"]
    assert not host["forceSSL"] and host["useACMEHost"] is None and module["acme"] == {}
    assert "code-server-multi-backup" not in module["services"]


def test_bad_settings_fail_the_module_with_the_plans_message(tmp_path):
    bad = tmp_path / "bad.nix"
    bad.write_text('{ domain = "code.test"; users.ada = { hashedPasswordFile = "/s"; memoryLimit = "1g"; memorySoftLimit = "2g"; }; }')
    with pytest.raises(planlib.PlanError, match=r'users.ada.memorySoftLimit \("2g"\) is above memoryLimit'):
        evaluate(bad)


@pytest.mark.parametrize("setting, message", [
    ('workspaceBase = "/etc";', 'workspaceBase = "/etc" lies in a system directory'),
    ('runtimeDir = "/tmp";', 'runtimeDir = "/tmp" is a shared system directory'),
    ('users.ada.extraVolumes = [ "/etc:/mnt/etc:U" ];', 'has the option "U"'),
])
def test_footguns_fail_the_module_with_the_plans_message(tmp_path, setting, message):
    bad = tmp_path / "bad.nix"
    bad.write_text('{ domain = "code.test"; users.ada.hashedPasswordFile = "/s"; ' + setting + ' }')
    with pytest.raises(planlib.PlanError, match=re.escape(message)):
        evaluate(bad)


def test_module_types_refuse_a_nix_path_secret(tmp_path):
    bad = tmp_path / "bad.nix"
    bad.write_text('{ domain = "code.test"; users.ada.hashedPasswordFile = ./ada.hash; }')
    with pytest.raises(planlib.PlanError, match="hashedPasswordFile"):
        evaluate(bad)


def test_csm_is_installed_and_the_plan_published_for_it(team):
    module, _ = team
    assert module["systemPackages"] == ["csm"]
    assert module["etc"]["code-server-multi/plan.json"]["source"] == "/nix/store/code-server-multi-plan.json"
