"""Tier 2: the NixOS module under real nixpkgs lib.evalModules (nixpkgs' lib as
tier2.py finds it), with nixpkgs' real oci-containers module and the other NixOS
options it sets declared by tests/tier2/nixos-options.nix. Checks the mapping of the
plan, down to the units oci-containers generates from it."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tier2 import MARKS, NIXPKGS_LIB, OCI_CONTAINERS, ROOT

from csm import plan as planlib
from csm.plan_types import Directory
from csm.runner import disks, files

# Its plans name directories' owners by the accounts `csm up` creates.
pytestmark = [*MARKS, pytest.mark.usefixtures("host_accounts")]


def evaluate(settings_file: Path, host_module: Path | None = None) -> dict:
    """The module with these settings; host_module: more of the host's configuration."""
    proc = subprocess.run(
        [
            "nix-instantiate",
            "--eval",
            "--strict",
            "--json",
            "--read-write-mode",
            str(ROOT / "tests/tier2/eval-module.nix"),
            "--arg",
            "nixpkgsLib",
            str(NIXPKGS_LIB),
            "--arg",
            "ociContainers",
            str(OCI_CONTAINERS),
            "--arg",
            "settingsFile",
            str(settings_file),
            *(["--arg", "hostModule", str(host_module)] if host_module else []),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise planlib.PlanError(planlib._error_text(proc.stderr))
    return json.loads(proc.stdout)


def service(thing: dict) -> str:
    """The key in systemd.services of a plan's container or network: its unit's name."""
    return thing["unit"].removesuffix(".service")


@pytest.fixture(scope="module")
def team():
    return evaluate(ROOT / "examples/team.nix"), planlib.to_json(
        planlib.load(ROOT / "examples/team.nix")
    )  # as the module sees it: JSON


def test_containers_are_the_plans(team):
    module, plan = team
    assert module["podman"] is True
    assert sorted(module["containers"]) == sorted(u["container"]["name"] for u in plan["users"].values())
    for u in plan["users"].values():
        c = module["containers"][u["container"]["name"]]
        for key in ("image", "cmd", "user", "environment", "environmentFiles", "ports", "volumes", "extraOptions"):
            assert c[key] == u["container"][key], key
        assert c["podman"]["sdnotify"] == "healthy" and c["pull"] == "never" and c["hasImageStream"]
        # code-server's only listener is its socket, in a host directory only root and
        # nginx's group traverse: no port on the host, no password in the container
        assert c["ports"] == [] and f"{Path(u['socketSource']).parent}:/run/code-server-multi" in c["volumes"]
        assert not {"PASSWORD", "HASHED_PASSWORD"} & set(c["environment"])
        assert u["password"]["file"] not in json.dumps(c)


def podman_run(script: str) -> list[str]:
    """The words of a unit's script as bash reads them (oci-containers joins them with
    a backslash-newline)."""
    return shlex.split(script.replace("\\\n", " "))


def pairs(words: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(words))


def test_each_unit_oci_containers_generates_runs_the_plans_container(team):
    """What nixpkgs' oci-containers makes of the mapping: the podman run line, the image
    loaded from the stream, a unit systemd restarts and that is ready only when healthy."""
    module, plan = team
    assert module["warnings"] == []
    for u in plan["users"].values():
        c = u["container"]
        unit = module["services"][service(c)]  # oci-containers' own unit, by the plan's name
        words = podman_run(unit["script"])
        assert words[:3] == ["exec", "podman", "run"]
        # the plan's flags last, then the image and code-server's arguments
        assert words[-len(c["cmd"]) - 1 :] == [c["image"], *c["cmd"]]
        options = words[3 : -len(c["cmd"]) - 1]
        assert options[-len(c["extraOptions"]) - 2 :] == ["--pull", "never", *c["extraOptions"]]
        assert {f"--name={c['name']}", "--sdnotify=healthy", "--rm"} <= set(options)
        expected = (
            {("-u", c["user"])}
            | {("--env-file", f) for f in c["environmentFiles"]}
            | {("-v", v) for v in c["volumes"]}
            | {("-e", f"{k}={v}") for k, v in c["environment"].items()}
        )
        assert expected <= pairs(options)
        # no TCP port of any kind: nothing published, not the host's network, and
        # code-server told to listen on its socket with its own login off
        published = [w for w in options if w in ("-p", "-P", "--publish-all") or w.startswith(("--publish", "-p="))]
        assert published == [] and not any(w in ("--network=host", "--net=host") for w in options), published
        assert pairs(c["cmd"]) >= {("--socket", "/run/code-server-multi/code-server.sock"), ("--auth", "none")}
        assert "--bind-addr" not in c["cmd"] and not any("PASSWORD" in w for w in words)
        # the limits and the uid map, from the plan's numbers rather than its flags
        limits, ids = u["limits"], u["ids"]
        assert {
            f"--memory={limits['memoryBytes']}",
            f"--memory-swap={limits['memoryBytes']}",
            f"--memory-reservation={limits['memorySoftBytes']}",
            f"--cpus={limits['cpus']}",
            f"--pids-limit={limits['pids']}",
            f"--uidmap=0:{ids['base']}:{ids['size']}",
            f"--gidmap=0:{ids['base']}:{ids['size']}",
            f"--network={u['network']['name']}",
        } <= set(options)
        # --sdnotify=healthy waits for this check: without it the unit would never be ready
        assert any(w.startswith("--health-cmd=") for w in options)
        (pre_start,) = unit["serviceConfig"]["ExecStartPre"]
        assert "/nix/store/image-stream | podman load" in Path(pre_start.removesuffix("/bin/pre-start")).read_text()
        assert {k: unit["serviceConfig"][k] for k in ("Type", "Delegate", "Restart", "User")} == {
            "Type": "notify",
            "Delegate": True,
            "Restart": "always",
            "User": "root",
        }
        assert unit["wantedBy"] == ["multi-user.target"]


def test_the_published_plan_is_plan_nix_of_the_settings(team):
    """So the admin verbs' tests (test_nixos_admin.py), which evaluate plan.nix from a
    settings file, test them against the plan the module writes to planFile."""
    module, plan = team
    assert module["plan"] == plan


def test_each_unit_prepares_its_start_with_csm(team):
    module, plan = team
    for name, u in plan["users"].items():
        script = module["services"][service(u["container"])]["preStart"]
        assert script.startswith(f"/nix/store/csm/bin/csm prepare --plan {module['planFile']} {name}\n"), script
        assert "cat " not in script and "printf" not in script  # no second implementation in shell
        # once healthy, root links the socket code-server made where nginx connects (csm/sockets.py)
        after = module["services"][service(u["container"])]["postStart"]
        assert after == f"/nix/store/csm/bin/csm prepare --plan {module['planFile']} --started {name}\n", after
    assert module["etc"][module["planFile"].removeprefix("/etc/")]["source"]


def _run_prestart(module: dict, name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The unit's preStart as systemd would run it (bash, as root), with the csm of this
    checkout in place of the package's store path and the module's plan at planFile."""
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(module["plan"]))
    unit = module["services"][service(module["plan"]["users"][name]["container"])]
    script = (
        unit["preStart"]
        .replace("/nix/store/csm/bin/csm", str(ROOT / ".venv/bin/csm"))
        .replace(module["planFile"], str(plan_file))
    )
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
      gate.stateDir = "{tmp_path}/gate"; diskQuota = null;  # the disk: test_prestart_mounts_the_users_disk
      users.ada.hashedPasswordFile = "{hash_file}";
      vscodeSettings = {{ "terminal.integrated.cwd" = "%h/project %%"; "x" = "a\\nb"; }};
    }}''')
    return settings, hash_file


def test_prestart_writes_the_seed_byte_for_byte_and_the_socket_directory(own_paths, tmp_path):
    settings, hash_file = own_paths
    hash_file.write_text("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n")
    module = evaluate(settings)
    user = module["plan"]["users"]["ada"]
    for d in module["plan"]["directories"]:  # what tmpfiles' `d` rules do first
        files.ensure_directory(Directory(**d))
    proc = _run_prestart(module, "ada", tmp_path)
    assert proc.returncode == 0, proc.stderr
    seed = user["seedFiles"][0]
    assert Path(seed["path"]).read_bytes() == seed["content"].encode()
    assert "%h/project %%" in seed["content"] and "\\n" in seed["content"]
    st = Path(seed["path"]).stat()
    assert (st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))) == (seed["uid"], seed["gid"], "0o" + seed["mode"][1:])
    # podman mounts the socket directory: it must exist before the container starts
    socket_dir = Path(user["socketSource"]).parent
    assert socket_dir.is_dir() and stat.S_IMODE(socket_dir.stat().st_mode) == 0o711
    assert stat.S_IMODE(socket_dir.parent.stat().st_mode) == 0o710
    assert "argon2id" not in proc.stdout + proc.stderr


def test_prestart_never_reads_the_password_file(own_paths, tmp_path):
    """The password is the gate's alone: a container starts without it (and a broken
    hash file is the gate's to report, not the container's)."""
    settings, hash_file = own_paths
    module = evaluate(settings)
    for d in module["plan"]["directories"]:
        files.ensure_directory(Directory(**d))
    assert not hash_file.exists()
    proc = _run_prestart(module, "ada", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert str(hash_file) not in module["services"][service(module["plan"]["users"]["ada"]["container"])]["preStart"]


def test_prestart_mounts_the_users_disk_of_the_quotas_size(tmp_path):
    """The NixOS path's disk: the unit's preStart (csm prepare, as on the host) creates
    and mounts it with the programs the unit's path gives it; a changed quota restarts
    the unit, whose next preStart resizes it (the same code as `csm up`)."""
    settings = tmp_path / "settings.nix"
    settings.write_text(f"""{{
      domain = "code.test"; workspaceBase = "{tmp_path}/ws"; runtimeDir = "{tmp_path}/run";
      gate.stateDir = "{tmp_path}/gate"; diskQuota = "1G";
      users.ada.hashedPasswordFile = "{tmp_path}/ada.hash";
    }}""")
    module = evaluate(settings)
    user = module["plan"]["users"]["ada"]
    unit = module["services"][service(user["container"])]
    assert {"/nix/store/util-linux", "/nix/store/e2fsprogs"} <= set(unit["path"])
    assert [json.loads(t) for t in unit["restartTriggers"]] == [user["disk"]]
    typed = planlib.from_json(module["plan"], "the module's plan").users["ada"]
    for d in module["plan"]["directories"]:
        files.ensure_directory(Directory(**d))
    try:
        proc = _run_prestart(module, "ada", tmp_path)
        assert proc.returncode == 0, proc.stderr
        use = disks.usage(typed)
        assert use and use.quota_bytes == 2**30 and 0.9 * 2**30 < use.size_bytes <= 2**30
        assert disks.mounted_device(user["disk"]["mountPoint"]) is not None
        assert Path(user["seedFiles"][0]["path"]).is_file()  # written onto the disk
    finally:
        disks.unmount(typed.disk)
        disks.release_base(module["plan"]["workspaceBase"])
    assert not Path(user["seedFiles"][0]["path"]).exists()  # it was on the disk, not beneath it


def test_each_container_starts_on_its_own_isolated_network(team):
    module, plan = team
    for u in plan["users"].values():
        net = u["network"]
        container = module["services"][service(u["container"])]
        assert net["unit"] in container["requires"] and net["unit"] in container["after"]
        network = module["services"][service(net)]
        assert network["serviceConfig"] == {"Type": "oneshot", "RemainAfterExit": True}
        create = network["script"].split("podman network create ", 1)[1].split()
        assert [shlex.split(w)[0] for w in create] == net["createOptions"] + [net["name"]]
        assert "--opt=isolate=true" in net["createOptions"]
        assert network["postStop"] == f"podman network rm --force {net['name']}"
        assert f"--network={net['name']}" in module["containers"][u["container"]["name"]]["extraOptions"]


def test_password_posts_meet_the_login_limit_on_the_gates_one_login_path(team):
    module, plan = team
    assert (
        "map $request_method $csm_login_key { POST $binary_remote_addr; default ''; }"
        in module["nginx"]["appendHttpConfig"]
    )
    for u in plan["users"].values():
        login = module["nginx"]["virtualHosts"][u["hostname"]]["locations"][f"= {plan['gate']['paths']['login']}"]
        assert "limit_req zone=csm_login" in login["extraConfig"] and login["proxyPass"] == "http://csm_gate"


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


def test_every_user_host_asks_the_gate_and_proxies_to_code_servers_socket(team):
    """nginx reaches code-server and the gate on Unix sockets only; every location that
    reaches code-server first asks the gate."""
    module, plan = team
    gate = plan["gate"]
    assert f"upstream csm_gate {{ server unix:{gate['socket']}; keepalive 64; }}" in module["nginx"]["appendHttpConfig"]
    for u in plan["users"].values():
        locations = module["nginx"]["virtualHosts"][u["hostname"]]["locations"]
        to_code_server = {w: loc for w, loc in locations.items() if loc["proxyPass"] == f"http://unix:{u['socket']}:"}
        assert sorted(to_code_server) == ["/", "@csm_websocket"]
        for loc in to_code_server.values():
            assert f"auth_request {gate['paths']['auth']};" in loc["extraConfig"]
        assert "internal;" in locations[f"= {gate['paths']['auth']}"]["extraConfig"]
        for loc in locations.values():  # no loopback or other TCP upstream anywhere
            assert loc["proxyPass"] in (None, "http://csm_gate", f"http://unix:{u['socket']}:"), loc["proxyPass"]


def test_nginx_gets_the_plans_bucket_size_connections_and_workers(team):
    module, plan = team
    nginx = module["nginx"]
    assert nginx["serverNamesHashBucketSize"] == plan["nginx"]["serverNamesHashBucketSize"]
    assert nginx["eventsConfig"] == f"worker_connections {plan['nginx']['workerConnections']};"
    assert nginx["appendConfig"].splitlines() == [
        "worker_processes auto;",
        f"worker_rlimit_nofile {2 * plan['nginx']['workerConnections']};",
    ]


def test_the_longest_name_the_plan_accepts_sizes_nginxs_bucket(tmp_path):
    """A 63-character user under a long domain: nginx's default bucket (64) cannot hold
    the name; the plan's size must reach services.nginx."""
    name = "a" + "b" * 61 + "c"
    domain = "d" * 40 + ".example.org"
    settings = tmp_path / "long.nix"
    settings.write_text(f'{{ domain = "{domain}"; users.{name}.hashedPasswordFile = "/s/{name}"; }}')
    module = evaluate(settings)
    size = module["nginx"]["serverNamesHashBucketSize"]
    host = f"{name}.{domain}"
    assert size == module["plan"]["nginx"]["serverNamesHashBucketSize"] and size > 64
    # what ngx_hash_init needs for that name (a pointer, the name, 2 bytes; aligned to 8; the end pointer)
    assert size >= 16 + 8 * ((len(host) + 2 + 7) // 8)
    assert host in module["nginx"]["virtualHosts"]


def test_tmpfiles_create_the_plans_directories_and_nothing_with_interpreted_content(team):
    module, plan = team
    for d in plan["directories"] + [d for u in plan["users"].values() for d in u["directories"]]:
        assert f"d {d['path']} {d['mode']} {d['uid']} {d['gid']} -" in module["tmpfiles"]
    # the seed is csm prepare's: tmpfiles' `f` would expand % specifiers and \ escapes
    assert [r for r in module["tmpfiles"] if not r.startswith("d ")] == []


def test_tmpfiles_give_the_sockets_directories_to_the_gate_and_nginxs_group_only(team):
    """Who may reach which socket is decided by these directories: the gate's only by
    nginx's group, the control socket only by the gate, each code-server's only by
    root and nginx's group (then the user's own directory, which only its uid owns)."""
    module, plan = team
    g, run = plan["gate"], plan["runtimeDir"]
    rules = set(module["tmpfiles"])
    assert {
        f"d {run} 0711 0 0 -",
        f"d {run}/users 0711 0 0 -",
        f"d {g['directory']} 0750 {g['user']} {g['proxyGroup']} -",
        f"d {g['control']['directory']} 0750 0 {g['user']} -",
        f"d {g['stateDir']} 0700 {g['user']} {g['user']} -",
    } <= rules
    assert Path(g["socket"]).parent == Path(g["directory"])
    assert Path(g["control"]["socket"]).parent == Path(g["control"]["directory"])
    for u in plan["users"].values():
        socket_dir = Path(u["socketSource"]).parent
        ids = u["ids"]
        assert f"d {socket_dir.parent} 0710 0 {g['proxyGroup']} -" in rules
        assert f"d {socket_dir} 0711 {ids['hostUid']} {ids['hostGid']} -" in rules
        assert socket_dir.parent.parent == Path(run) / "users"


def test_wildcard_certificate_by_dns01(team):
    module, _ = team
    cert = module["acme"]["code.example.org"]
    assert cert["extraDomainNames"] == ["*.code.example.org"] and cert["dnsProvider"] == "cloudflare"
    assert cert["environmentFile"] == "/run/secrets/acme-cloudflare.env" and cert["group"] == "nginx"


def test_backup_service_and_timer(team):
    module, _ = team
    # The path is pinned on purpose: docs/admin.md tells admins to run csm with it.
    assert (
        "csm backup --plan /etc/code-server-multi/plan.json"
        in module["services"]["code-server-multi-backup"]["serviceConfig"]["ExecStart"]
    )
    assert module["timers"]["code-server-multi-backup"]["timerConfig"]["OnCalendar"] == "daily"
    assert module["assertions"] == []


def test_demo_without_acme_serves_plain_http():
    module = evaluate(ROOT / "examples/demo.nix")
    host = module["nginx"]["virtualHosts"]["demo.code.localhost"]
    assert not host["forceSSL"] and host["useACMEHost"] is None and module["acme"] == {}
    assert "code-server-multi-backup" not in module["services"]


def test_bad_settings_fail_the_module_with_the_plans_message(tmp_path):
    bad = tmp_path / "bad.nix"
    bad.write_text(
        '{ domain = "code.test"; '
        'users.ada = { hashedPasswordFile = "/s"; memoryLimit = "1g"; memorySoftLimit = "2g"; }; }'
    )
    with pytest.raises(planlib.PlanError, match=r'users.ada.memorySoftLimit \("2g"\) is above memoryLimit'):
        evaluate(bad)


@pytest.mark.parametrize(
    "setting, message",
    [
        ('workspaceBase = "/etc";', 'workspaceBase = "/etc" lies in a system directory'),
        ('runtimeDir = "/tmp";', 'runtimeDir = "/tmp" is a shared system directory'),
        ('users.ada.extraVolumes = [ "/etc:/mnt/etc:U" ];', 'has the option "U"'),
    ],
)
def test_footguns_fail_the_module_with_the_plans_message(tmp_path, setting, message):
    bad = tmp_path / "bad.nix"
    bad.write_text('{ domain = "code.test"; users.ada.hashedPasswordFile = "/s"; ' + setting + " }")
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
    # The path is pinned on purpose: docs/admin.md tells admins to run csm with it.
    assert module["planFile"] == "/etc/code-server-multi/plan.json"
    build = Path(module["etc"][module["planFile"].removeprefix("/etc/")]["source"])
    assert build.name.endswith("code-server-multi-plan.json")


def test_the_published_plan_is_checked_by_csm_when_it_is_built(team, tmp_path):
    """The module's plan.json is built by a script that runs `csm check-plan` on it (the
    consumer checks what it is handed): run here with the real csm, it publishes the
    module's plan, and refuses one csm cannot read, naming the field."""
    module, _ = team
    script = Path(module["etc"][module["planFile"].removeprefix("/etc/")]["source"]).read_text()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def build(plan: dict) -> subprocess.CompletedProcess:
        source, out = tmp_path / "plan-input", tmp_path / "out"
        source.write_text(json.dumps(plan))
        out.unlink(missing_ok=True)
        return subprocess.run(
            ["bash", "-euc", script],
            env={**env, "planPath": str(source), "out": str(out)},
            capture_output=True,
            text=True,
        )

    proc = build(module["plan"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out").read_text()) == module["plan"]
    broken = copy.deepcopy(module["plan"])
    del broken["users"]["ada"]["container"]["unit"]
    proc = build(broken)
    assert proc.returncode == 2 and "users.ada.container lacks unit" in proc.stderr
    assert not (tmp_path / "out").exists()


def tls_settings(tmp_path, tls: str, acme: str = "") -> Path:
    f = tmp_path / "tls.nix"
    f.write_text(f'{{ domain = "code.test"; users.ada.hashedPasswordFile = "/s/ada"; tls = {tls}; {acme} }}')
    return f


def test_tls_from_certificate_files(tmp_path):
    module = evaluate(
        tls_settings(tmp_path, '{ certificateFile = "/var/lib/certs/full.pem"; keyFile = "/var/lib/certs/key.pem"; }')
    )
    for name in ("ada.code.test", "*.code.test"):
        host = module["nginx"]["virtualHosts"][name]
        assert (
            host["sslCertificate"] == "/var/lib/certs/full.pem"
            and host["sslCertificateKey"] == "/var/lib/certs/key.pem"
        )
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


@pytest.mark.parametrize(
    "tls, acme, message",
    [
        ('{ certificateFile = "/c.pem"; }', "", "tls: certificateFile and keyFile go together"),
        ('{ certificateFile = "/c.pem"; keyFile = ./key.pem; }', "", "tls.keyFile"),
        (
            '{ useACMEHost = "example.org"; }',
            'acme = { enable = true; dnsProvider = "x"; credentialsFile = "/c"; };',
            "acme.enable gets its own certificate",
        ),
    ],
)
def test_tls_mistakes_are_named(tmp_path, tls, acme, message):
    with pytest.raises(planlib.PlanError, match=re.escape(message)):
        evaluate(tls_settings(tmp_path, tls, acme))


def test_idle_service_runs_csm_idle_on_the_published_plan_through_systemd(team):
    module, plan = team
    service = module["services"]["code-server-multi-idle"]
    assert (
        service["serviceConfig"]["ExecStart"]
        == f"/nix/store/csm/bin/csm idle serve --plan {module['planFile']} --systemd"
    )
    assert service["wantedBy"] == ["multi-user.target"] and service["path"]
    assert service["restartTriggers"] == [module["etc"][module["planFile"].removeprefix("/etc/")]["source"]]
    assert "User" not in service["serviceConfig"]  # the root side: it starts and stops units
    # A stopped workspace is woken by the gate (after login), never by nginx directly.
    for u in plan["users"].values():
        locations = module["nginx"]["virtualHosts"][u["hostname"]]["locations"]
        assert locations["@csm_wake"]["proxyPass"] == "http://csm_gate"
        assert f"rewrite ^ {plan['gate']['paths']['wake']}? break;" in locations["@csm_wake"]["extraConfig"]


def test_no_idle_service_when_everyone_is_always_on(tmp_path):
    always_on = tmp_path / "always-on.nix"
    always_on.write_text(f"import {ROOT / 'examples/team.nix'} // {{ idleStopAfter = null; }}")
    module = evaluate(always_on)
    assert "code-server-multi-idle" not in module["services"]
    assert module["plan"]["gate"]["unit"].removesuffix(".service") in module["services"]  # the gate stays


# ---- the login gate ---------------------------------------------------------------------------


def gate_unit(module: dict) -> dict:
    return module["services"][module["plan"]["gate"]["unit"].removesuffix(".service")]


def test_the_gate_runs_csm_gate_as_its_own_system_account_never_root(team):
    module, plan = team
    g, unit = plan["gate"], gate_unit(module)
    config = unit["serviceConfig"]
    assert config["ExecStart"] == f"/nix/store/csm/bin/csm gate serve --plan {module['planFile']} --credentials %d"
    assert config["User"] == g["user"] == "csm-gate" and config["Group"] == g["user"]
    assert config["User"] not in ("root", "0", module["nginx"]["user"]) and not config.get("DynamicUser")
    account = module["users"]["users"][g["user"]]
    assert account["isSystemUser"] and not account["isNormalUser"] and account["group"] == g["user"]
    assert account["uid"] != 0 and g["user"] in module["users"]["groups"]
    # it may not gain privileges or capabilities back, nor leave its sockets
    assert (
        config["NoNewPrivileges"] is True
        and config["CapabilityBoundingSet"] == ""
        and config.get("AmbientCapabilities", "") == ""
    )
    assert config["RestrictAddressFamilies"] == ["AF_UNIX"] and config["PrivateNetwork"] is True
    assert unit["wantedBy"] == ["multi-user.target"]
    assert unit["restartTriggers"] == [module["etc"][module["planFile"].removeprefix("/etc/")]["source"]]


def test_the_gate_is_hardened_and_writes_only_its_socket_and_state_directories(team):
    module, plan = team
    g, config = plan["gate"], gate_unit(module)["serviceConfig"]
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": True,
        "PrivateTmp": True,
        "PrivateDevices": True,
        "ProtectKernelTunables": True,
        "ProtectKernelModules": True,
        "ProtectKernelLogs": True,
        "ProtectControlGroups": True,
        "ProtectClock": True,
        "ProtectHostname": True,
        "ProtectProc": "invisible",
        "RestrictNamespaces": True,
        "RestrictRealtime": True,
        "RestrictSUIDSGID": True,
        "LockPersonality": True,
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }
    assert {k: config.get(k) for k in expected} == expected
    assert config["SystemCallFilter"][0] == "@system-service" and "~@privileged" in config["SystemCallFilter"]
    assert sorted(config["ReadWritePaths"]) == sorted([g["directory"], g["stateDir"]])
    assert Path(g["socket"]).parent == Path(g["directory"])
    # Restarts by itself, whatever the reason, without ever giving up
    assert config["Restart"] == "always" and gate_unit(module)["unitConfig"]["StartLimitIntervalSec"] == 0


def test_the_gate_gets_every_users_password_file_as_a_credential_named_after_the_user(team):
    module, plan = team
    credentials = gate_unit(module)["serviceConfig"]["LoadCredential"]
    assert sorted(credentials) == sorted(f"{n}:{u['password']['file']}" for n, u in plan["users"].items())
    assert {c.split(":", 1)[0] for c in credentials} == set(plan["users"])  # none missing, none extra


def test_a_percent_in_a_password_files_name_reaches_systemd_escaped(tmp_path):
    settings = tmp_path / "percent.nix"
    settings.write_text('{ domain = "code.test"; users.ada.hashedPasswordFile = "/run/secrets/100%ada"; }')
    assert gate_unit(evaluate(settings))["serviceConfig"]["LoadCredential"] == ["ada:/run/secrets/100%%ada"]


def test_the_gate_starts_after_its_directories_and_before_nginx_without_needing_it(team):
    module, _ = team
    unit = gate_unit(module)
    assert "systemd-tmpfiles-setup.service" in unit["after"] and unit["before"] == ["nginx.service"]
    assert "nginx.service" not in unit["requires"] + unit["after"]


def test_nginx_joins_the_proxy_group_and_restarts_to_get_it(team):
    module, plan = team
    proxy = plan["gate"]["proxyGroup"]
    assert proxy in module["users"]["groups"]
    assert module["users"]["users"][module["nginx"]["user"]]["extraGroups"] == [proxy]
    assert module["services"]["nginx"]["restartTriggers"] == [f"supplementary group {proxy}"]
    # the gate's own account is not in it: it reaches no user's code-server
    assert proxy not in module["users"]["users"][plan["gate"]["user"]]["extraGroups"]


def test_a_host_with_its_own_nginx_user_gets_that_user_into_the_proxy_group(tmp_path):
    host = tmp_path / "host.nix"
    host.write_text('{ services.nginx.user = "www"; }')
    module = evaluate(ROOT / "examples/demo.nix", host)
    assert module["users"]["users"]["www"]["extraGroups"] == [module["plan"]["gate"]["proxyGroup"]]
    assert "nginx" not in module["users"]["users"]
