"""Tier 2: the NixOS module under real nixpkgs lib.evalModules (nixpkgs' lib as
tier2.py finds it), with nixpkgs' real oci-containers module and the other NixOS
options it sets declared by tests/tier2/nixos-options.nix. Checks the mapping of the
plan, down to the units oci-containers generates from it."""
from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import files

from tier2 import MARKS, NIXPKGS_LIB, OCI_CONTAINERS, ROOT

pytestmark = MARKS


def evaluate(settings_file: Path) -> dict:
    proc = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "--read-write-mode", str(ROOT / "tests/tier2/eval-module.nix"),
         "--arg", "nixpkgsLib", str(NIXPKGS_LIB), "--arg", "ociContainers", str(OCI_CONTAINERS),
         "--arg", "settingsFile", str(settings_file)],
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


def podman_run(script: str) -> list[str]:
    """The words of a unit's script as bash reads them (oci-containers joins them with
    a backslash-newline)."""
    return shlex.split(script.replace("\\\n", " "))


def pairs(words: list[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:]))


def test_each_unit_oci_containers_generates_runs_the_plans_container(team):
    """What nixpkgs' oci-containers makes of the mapping: the podman run line, the image
    loaded from the stream, a unit systemd restarts and that is ready only when healthy."""
    module, plan = team
    assert module["warnings"] == []
    for u in plan["users"].values():
        c = u["container"]
        unit = module["services"][f"podman-{c['name']}"]
        words = podman_run(unit["script"])
        assert words[:3] == ["exec", "podman", "run"]
        # the plan's flags last, then the image and code-server's arguments
        assert words[-len(c["cmd"]) - 1:] == [c["image"], *c["cmd"]]
        options = words[3:-len(c["cmd"]) - 1]
        assert options[-len(c["extraOptions"]) - 2:] == ["--pull", "never", *c["extraOptions"]]
        assert {f"--name={c['name']}", "--sdnotify=healthy", "--rm"} <= set(options)
        expected = {("-u", c["user"])} | {("--env-file", f) for f in c["environmentFiles"]} \
            | {("-p", p) for p in c["ports"]} | {("-v", v) for v in c["volumes"]} \
            | {("-e", f"{k}={v}") for k, v in c["environment"].items()}
        assert expected <= pairs(options)
        # the limits and the uid map, from the plan's numbers rather than its flags
        limits, ids = u["limits"], u["ids"]
        assert {f"--memory={limits['memoryBytes']}", f"--memory-swap={limits['memoryBytes']}",
                f"--memory-reservation={limits['memorySoftBytes']}", f"--cpus={limits['cpus']}",
                f"--pids-limit={limits['pids']}", f"--uidmap=0:{ids['base']}:{ids['size']}",
                f"--gidmap=0:{ids['base']}:{ids['size']}", f"--network={u['network']['name']}"} <= set(options)
        # --sdnotify=healthy waits for this check: without it the unit would never be ready
        assert any(w.startswith("--health-cmd=") for w in options)
        (pre_start,) = unit["serviceConfig"]["ExecStartPre"]
        assert "/nix/store/image-stream | podman load" in Path(pre_start.removesuffix("/bin/pre-start")).read_text()
        assert {k: unit["serviceConfig"][k] for k in ("Type", "Delegate", "Restart", "User")} == \
            {"Type": "notify", "Delegate": True, "Restart": "always", "User": "root"}
        assert unit["wantedBy"] == ["multi-user.target"]


def test_the_published_plan_is_plan_nix_of_the_settings(team):
    """So the admin verbs' tests (test_nixos_admin.py), which evaluate plan.nix from a
    settings file, test them against the plan the module writes to planFile."""
    module, plan = team
    assert module["plan"] == plan


def test_each_unit_prepares_its_start_with_csm(team):
    module, plan = team
    for name, u in plan["users"].items():
        script = module["services"][f"podman-{u['container']['name']}"]["preStart"]
        assert script.startswith(f"/nix/store/csm/bin/csm prepare --plan {module['planFile']} {name}\n"), script
        assert "cat " not in script and "printf" not in script  # no second implementation in shell
    assert module["etc"][module["planFile"].removeprefix("/etc/")]["source"]


def _run_prestart(module: dict, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The unit's preStart as systemd would run it (bash, as root), with the csm of this
    checkout in place of the package's store path and the module's plan at planFile."""
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(module["plan"]))
    unit = module["services"][f"podman-{module['plan']['users'][name]['container']['name']}"]
    script = unit["preStart"].replace("/nix/store/csm/bin/csm", str(ROOT / ".venv/bin/csm")) \
        .replace(module["planFile"], str(plan_file))
    return subprocess.run(["bash", "-euc", script], capture_output=True, text=True)


@pytest.fixture()
def own_paths(tmp_path):
    """Settings whose every path is below tmp_path, and a seed with what tmpfiles'
    `f` would have expanded (%h, %%, \\n)."""
    hash_file = tmp_path / "secrets" / "ada.hash"
    hash_file.parent.mkdir()
    settings = tmp_path / "settings.nix"
    settings.write_text(f'''{{
      domain = "code.test"; workspaceBase = "{tmp_path}/ws"; runtimeDir = "{tmp_path}/run";
      users.ada.hashedPasswordFile = "{hash_file}";
      vscodeSettings = {{ "terminal.integrated.cwd" = "%h/project %%"; "x" = "a\\nb"; }};
    }}''')
    return settings, hash_file


def test_prestart_writes_the_seed_byte_for_byte_and_the_secret_env(own_paths, tmp_path):
    settings, hash_file = own_paths
    hash_file.write_text("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n")
    module = evaluate(settings)
    user = module["plan"]["users"]["ada"]
    for d in user["directories"]:  # what tmpfiles' `d` rules do first
        files.ensure_directory(d)
    proc = _run_prestart(module, "ada", tmp_path)
    assert proc.returncode == 0, proc.stderr
    seed = user["seedFiles"][0]
    assert Path(seed["path"]).read_bytes() == seed["content"].encode()
    assert '%h/project %%' in seed["content"] and "\\n" in seed["content"]
    st = Path(seed["path"]).stat()
    assert (st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))) == (seed["uid"], seed["gid"], "0o" + seed["mode"][1:])
    env = Path(user["secrets"]["envFile"])
    assert env.read_text() == "HASHED_PASSWORD=$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "argon2id" not in proc.stdout + proc.stderr


def test_prestart_refuses_a_bad_secret_file_and_names_it(own_paths, tmp_path):
    settings, hash_file = own_paths
    hash_file.write_bytes(b"$argon2id$v=19$abc\r\n")
    module = evaluate(settings)
    proc = _run_prestart(module, "ada", tmp_path)
    assert proc.returncode == 2
    assert f"{hash_file} holds a carriage return" in proc.stderr and "csm passwd ada" in proc.stderr
    assert not Path(module["plan"]["users"]["ada"]["secrets"]["envFile"]).exists()


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


def test_tmpfiles_create_the_plans_directories_and_nothing_with_interpreted_content(team):
    module, plan = team
    for u in plan["users"].values():
        for d in u["directories"]:
            assert f"d {d['path']} {d['mode']} {d['uid']} {d['gid']} -" in module["tmpfiles"]
    # the seed is csm prepare's: tmpfiles' `f` would expand % specifiers and \ escapes
    assert [r for r in module["tmpfiles"] if not r.startswith("d ")] == []


def test_wildcard_certificate_by_dns01(team):
    module, _ = team
    cert = module["acme"]["code.example.org"]
    assert cert["extraDomainNames"] == ["*.code.example.org"] and cert["dnsProvider"] == "cloudflare"
    assert cert["environmentFile"] == "/run/secrets/acme-cloudflare.env" and cert["group"] == "nginx"


def test_backup_service_and_timer(team):
    module, _ = team
    # The path is pinned on purpose: docs/admin.md tells admins to run csm with it.
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


def tls_settings(tmp_path, tls: str, acme: str = "") -> Path:
    f = tmp_path / "tls.nix"
    f.write_text(f'{{ domain = "code.test"; users.ada.hashedPasswordFile = "/s/ada"; tls = {tls}; {acme} }}')
    return f


def test_tls_from_certificate_files(tmp_path):
    module = evaluate(tls_settings(tmp_path, '{ certificateFile = "/var/lib/certs/full.pem"; keyFile = "/var/lib/certs/key.pem"; }'))
    for name in ("ada.code.test", "*.code.test"):
        host = module["nginx"]["virtualHosts"][name]
        assert host["sslCertificate"] == "/var/lib/certs/full.pem" and host["sslCertificateKey"] == "/var/lib/certs/key.pem"
        assert host["useACMEHost"] is None
    assert module["nginx"]["virtualHosts"]["ada.code.test"]["forceSSL"]
    assert module["nginx"]["virtualHosts"]["*.code.test"]["addSSL"]
    assert "Strict-Transport-Security" in module["nginx"]["virtualHosts"]["ada.code.test"]["extraConfig"]
    assert module["acme"] == {} and module["firewall"] == [80, 443]


def test_tls_from_an_existing_acme_certificate(tmp_path):
    module = evaluate(tls_settings(tmp_path, '{ useACMEHost = "example.org"; }'))
    host = module["nginx"]["virtualHosts"]["ada.code.test"]
    assert host["useACMEHost"] == "example.org" and host["forceSSL"] and host["sslCertificate"] is None
    assert module["acme"] == {}  # the host's own cert: the module adds none
    assert module["plan"]["tls"]["enable"] and module["firewall"] == [80, 443]


@pytest.mark.parametrize("tls, acme, message", [
    ('{ certificateFile = "/c.pem"; }', "", "tls: certificateFile and keyFile go together"),
    ('{ certificateFile = "/c.pem"; keyFile = ./key.pem; }', "", "tls.keyFile"),
    ('{ useACMEHost = "example.org"; }', 'acme = { enable = true; dnsProvider = "x"; credentialsFile = "/c"; };',
     "acme.enable gets its own certificate"),
])
def test_tls_mistakes_are_named(tmp_path, tls, acme, message):
    with pytest.raises(planlib.PlanError, match=re.escape(message)):
        evaluate(tls_settings(tmp_path, tls, acme))


def test_idle_service_runs_csm_idle_on_the_published_plan_through_systemd(team):
    module, plan = team
    service = module["services"]["code-server-multi-idle"]
    assert service["serviceConfig"]["ExecStart"] == \
        "/nix/store/csm/bin/csm idle serve --plan /etc/code-server-multi/plan.json --systemd"
    assert service["wantedBy"] == ["multi-user.target"] and service["path"]
    assert service["restartTriggers"] == [module["etc"]["code-server-multi/plan.json"]["source"]]
    assert "limit_req_zone $binary_remote_addr zone=csm_wake:" in module["nginx"]["appendHttpConfig"]
    for u in plan["users"].values():
        locations = module["nginx"]["virtualHosts"][u["hostname"]]["locations"]
        for where in ("@csm_wake", f"= {plan['idle']['readyPath']}"):
            assert locations[where]["proxyPass"] == f"http://127.0.0.1:{plan['idle']['waker']['port']}", where


def test_no_idle_service_when_everyone_is_always_on(tmp_path):
    always_on = tmp_path / "always-on.nix"
    always_on.write_text(f'import {ROOT / "examples/team.nix"} // {{ idleStopAfter = null; }}')
    module = evaluate(always_on)
    assert "code-server-multi-idle" not in module["services"]
    assert "csm_wake" not in module["nginx"]["appendHttpConfig"]
