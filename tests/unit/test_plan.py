"""Tier 0: every .nix parses, the plan evaluates on the examples and meets its
invariants, and each kind of bad setting gets its documented message."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from invariants import DEFAULTS, assert_plan_meets_invariants, size_bytes

from csm import plan as planlib
from csm.plan_types import Password

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.nix"))


def nix_settings(path: Path) -> dict:
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(
    "path", sorted(p for p in ROOT.rglob("*.nix") if ".venv" not in p.parts), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_nix_file_parses(path):
    subprocess.run(["nix-instantiate", "--parse", str(path)], check=True, capture_output=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_plan_meets_invariants(path):
    assert_plan_meets_invariants(planlib.load(path), nix_settings(path))


def test_team_example_overrides_only_what_it_says():
    team = planlib.load(ROOT / "examples/team.nix")
    grace, ada = team.users["grace"], team.users["ada"]
    assert grace.limits.memoryBytes == 6 * 1024**3 and grace.limits.cpus == "2"
    assert ada.limits.memoryBytes == size_bytes(DEFAULTS["user"]["memoryLimit"])
    assert ada.limits.cpus == DEFAULTS["user"]["cpuLimit"]
    assert team.users["linus"].password == Password(file="/run/secrets/code-server/linus", hashed=False)
    assert ada.password.hashed is True
    assert team.acme.extraDomainNames == ["*.code.example.org"]
    assert sorted(team.backup.paths) == [f"/var/lib/vscode/{n}" for n in ("ada", "grace", "linus")]


def test_uids_do_not_move_when_a_user_is_added():
    one = planlib.from_settings({"domain": "c.test", "users": {"ada": {"passwordFile": "/s/a"}}})
    two = planlib.from_settings(
        {"domain": "c.test", "users": {"ada": {"passwordFile": "/s/a"}, "aaron": {"passwordFile": "/s/b"}}}
    )
    assert one.users["ada"].ids == two.users["ada"].ids


def test_secret_contents_never_reach_the_plan(tmp_path):
    secret = tmp_path / "hash"
    secret.write_text("$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0c2FsdA$TOPSECRETHASHVALUE\n")
    keys = tmp_path / "keys.env"
    keys.write_text("ANTHROPIC_API_KEY=sk-ant-NEVER-IN-PLAN\n")
    plan = planlib.from_settings(
        {"domain": "c.test", "users": {"ada": {"hashedPasswordFile": str(secret), "environmentFiles": [str(keys)]}}}
    )
    text = json.dumps(planlib.to_json(plan))
    assert "TOPSECRETHASHVALUE" not in text and "sk-ant-NEVER-IN-PLAN" not in text
    assert str(secret) in text  # only the path


def test_free_provider_disabled_unless_asked_and_sharing_off():
    base = {"domain": "c.test", "users": {"ada": {"passwordFile": "/s/a"}}}
    cfg = planlib.from_settings(base).opencode["config"]
    assert cfg["disabled_providers"] == ["opencode"] and cfg["share"] == "disabled" and cfg["autoupdate"] is False
    allowed = planlib.from_settings({**base, "opencode": {"allowFreeProvider": True}}).opencode["config"]
    assert "disabled_providers" not in allowed
    env = json.loads(planlib.from_settings(base).users["ada"].container.environment["OPENCODE_CONFIG_CONTENT"])
    assert env == cfg


def good(**user) -> dict:
    return {"domain": "code.test", "users": {"ada": {"hashedPasswordFile": "/run/secrets/ada", **user}}}


BAD_SETTINGS = {
    # Settings of earlier versions say why they went.
    "a user's port": (
        good(port=8090),
        ["users.ada.port is no longer a setting: code-server now listens on a Unix socket behind the login gate"],
    ),
    "gate session idle timeout": (
        {**good(), "gate": {"sessionIdleTimeout": "soon"}},
        ['gate.sessionIdleTimeout = "soon" is not a duration'],
    ),
    "gate lifetime": ({**good(), "gate": {"sessionLifetime": 0}}, ["gate.sessionLifetime = 0 is not a duration"]),
    "gate ipv6 prefix": ({**good(), "gate": {"ipv6Prefix": 200}}, ["gate.ipv6Prefix = 200 must be a prefix length"]),
    "gate state among workspaces": (
        {**good(), "workspaceBase": "/srv/ws", "gate": {"stateDir": "/srv/ws/gate"}},
        ['gate.stateDir ("/srv/ws/gate") and workspaceBase ("/srv/ws") overlap'],
    ),
    "gate state in a system tree": (
        {**good(), "gate": {"stateDir": "/etc/gate"}},
        ['gate.stateDir = "/etc/gate" lies in a system directory'],
    ),
    "password file with a line break": (
        {"domain": "code.test", "users": {"ada": {"hashedPasswordFile": "/s/a\nb"}}},
        ['users.ada.hashedPasswordFile = "/s/a\\nb" holds a line break or another control'],
    ),
    "runtimeDir too long for a socket": (
        {**good(), "runtimeDir": "/run/" + "r" * 80},
        ["characters long; the sockets below it must fit in 107 bytes, so use at most 77"],
    ),
    "gate unknown key": ({**good(), "gate": {"port": 1}}, ["gate.port is not a setting (known: "]),
    "uppercase name": (
        {"domain": "code.test", "users": {"Ada": {"passwordFile": "/s"}}},
        ['users.Ada: the name "Ada" is not a DNS label'],
    ),
    "underscore in name": (
        {"domain": "code.test", "users": {"a_b": {"passwordFile": "/s"}}},
        ['users.a_b: the name "a_b" is not a DNS label'],
    ),
    "leading dash": (
        {"domain": "code.test", "users": {"-ab": {"passwordFile": "/s"}}},
        ['users.-ab: the name "-ab" is not a DNS label'],
    ),
    "trailing dash": (
        {"domain": "code.test", "users": {"ab-": {"passwordFile": "/s"}}},
        ['users.ab-: the name "ab-" is not a DNS label'],
    ),
    "name longer than 63": (
        {"domain": "code.test", "users": {"a" * 64: {"passwordFile": "/s"}}},
        [f'users.{"a" * 64}: the name "{"a" * 64}" is not a DNS label'],
    ),
    "reserved name": (
        {"domain": "code.test", "users": {"www": {"passwordFile": "/s"}}},
        ['users.www: the name "www" is reserved'],
    ),
    "soft limit above hard": (
        good(memoryLimit="2g", memorySoftLimit="3g"),
        ['users.ada.memorySoftLimit ("3g") is above memoryLimit ("2g")'],
    ),
    "size that does not parse": (good(memoryLimit="lots"), ['users.ada.memoryLimit = "lots" is not a size']),
    "soft size that does not parse": (
        good(memorySoftLimit="2.5 gigs"),
        ['users.ada.memorySoftLimit = "2.5 gigs" is not a size'],
    ),
    "no password file": (
        {"domain": "code.test", "users": {"ada": {}}},
        ["users.ada: no password file", "csm passwd ada"],
    ),
    "both password files": (good(passwordFile="/s/p"), ["users.ada: both hashedPasswordFile and passwordFile"]),
    "relative password file": (
        {"domain": "code.test", "users": {"ada": {"passwordFile": "secrets/ada"}}},
        ['users.ada.passwordFile must be an absolute path, got "secrets/ada"'],
    ),
    "domain not a hostname": ({**good(), "domain": "Code_Test"}, ['domain = "Code_Test" is not a hostname']),
    "domain with empty label": ({**good(), "domain": "code..test"}, ['domain = "code..test" is not a hostname']),
    "no domain": ({"users": good()["users"]}, ["domain is not set"]),
    "no users": ({"domain": "code.test", "users": {}}, ["users is empty"]),
    "misspelt user setting": (good(memorylimit="4g"), ["users.ada.memorylimit is not a setting", "check its spelling"]),
    "misspelt top setting": ({**good(), "domian": "x"}, ["domian is not a setting"]),
    "cpu not a number": (good(cpuLimit="lots"), ['users.ada.cpuLimit = "lots" is not a positive number of CPUs']),
    "memory too small for code-server": (
        good(memoryLimit="100m", memorySoftLimit="50m"),
        ['users.ada.memoryLimit = "100m" is below 512m'],
    ),
    "pids limit too small": (good(pidsLimit=5), ["users.ada.pidsLimit = 5 must be a whole number of at least 64"]),
    "api key written out": (
        {**good(), "opencode": {"provider": {"x": {"options": {"apiKey": "sk-123"}}}}},
        ["opencode.provider.x.options.apiKey is written out", "{env:VARIABLE}"],
    ),
    "authorization header written out": (
        {**good(), "opencode": {"provider": {"x": {"options": {"headers": {"Authorization": "Bearer sk-1"}}}}}},
        ["opencode.provider.x.options.headers.Authorization is written out"],
    ),
    "token in extraConfig written out": (
        {**good(), "opencode": {"extraConfig": {"mcp": {"gh": {"environment": {"GITHUB_TOKEN": "ghp_1"}}}}}},
        ["opencode.extraConfig.mcp.gh.environment.GITHUB_TOKEN is written out"],
    ),
    "key beside its reference": (
        {**good(), "opencode": {"provider": {"x": {"options": {"apiKey": "sk-live-abc{env:X}"}}}}},
        ["opencode.provider.x.options.apiKey holds text beside its reference", "{env:VARIABLE}"],
    ),
    "private key written out": (
        {**good(), "opencode": {"extraConfig": {"mcp": {"s": {"environment": {"privateKey": "-----BEGIN KEY"}}}}}},
        ["opencode.extraConfig.mcp.s.environment.privateKey is written out"],
    ),
    "credentials written out": (
        {**good(), "opencode": {"provider": {"x": {"options": {"credentials": {"user": "u", "pass": "p"}}}}}},
        [
            "opencode.provider.x.options.credentials.pass is written out",
            "opencode.provider.x.options.credentials.user is written out",
        ],
    ),
    "api keys listed": (
        {**good(), "opencode": {"provider": {"x": {"options": {"apiKeys": ["sk-1", "{env:B}"]}}}}},
        ["opencode.provider.x.options.apiKeys.0 is written out"],
    ),
    "cookie header written out": (
        {**good(), "opencode": {"provider": {"x": {"options": {"headers": {"Cookie": "session=abc123"}}}}}},
        ["opencode.provider.x.options.headers.Cookie is written out", "{env:VARIABLE}"],
    ),
    "key in a URL's query": (
        {**good(), "opencode": {"provider": {"x": {"options": {"baseURL": "https://ai.test/v1?key=AIza123"}}}}},
        ["opencode.provider.x.options.baseURL holds a key in a URL's query (key=…)", "key={env:VARIABLE}"],
    ),
    "api_key in a URL's query": (
        {**good(), "opencode": {"extraConfig": {"mcp": {"r": {"url": "https://mcp.test/sse?v=1&api_key=abc"}}}}},
        ["opencode.extraConfig.mcp.r.url holds a key in a URL's query (api_key=…)"],
    ),
    "token in a URL in a command": (
        {
            **good(),
            "opencode": {"extraConfig": {"mcp": {"l": {"command": ["npx", "srv", "--url=https://h.test/?token=t1"]}}}},
        },
        ["opencode.extraConfig.mcp.l.command.2 holds a key in a URL's query (token=…)"],
    ),
    "password in a URL": (
        {**good(), "opencode": {"provider": {"x": {"options": {"baseURL": "https://ada:hunter2@ai.test/v1"}}}}},
        ["opencode.provider.x.options.baseURL holds a password in a URL", "https://user:{env:VARIABLE}@host"],
    ),
    "acme without provider": (
        {**good(), "acme": {"enable": True, "credentialsFile": "/s/dns"}},
        ["acme.dnsProvider is not set"],
    ),
    "basePort": ({**good(), "basePort": 20000}, ["basePort is no longer a setting"]),
    "bad extra volume": (good(extraVolumes=["data:/data"]), ['users.ada.extraVolumes entry "data:/data"']),
    "workspaceBase with a space": (
        {**good(), "workspaceBase": "/srv/code base"},
        ['workspaceBase = "/srv/code base" may hold only letters', "tmpfiles"],
    ),
    "backup target with a percent": (
        {**good(), "backup": {"enable": True, "target": "/srv/backup%h"}},
        ['backup.target = "/srv/backup%h" may hold only letters'],
    ),
    "name prefix not a label": ({**good(), "namePrefix": "Code_Server"}, ['namePrefix = "Code_Server" must be']),
    "volume option U": (
        good(extraVolumes=["/etc:/mnt/etc:U"]),
        ['users.ada.extraVolumes entry "/etc:/mnt/etc:U" has the option "U"', "only ro, rw, z, Z"],
    ),
    "volume options mixed": (good(extraVolumes=["/srv/data:/data:ro,U,exec"]), ['has the options "U", "exec"']),
    "workspaceBase is /": ({**good(), "workspaceBase": "/"}, ['workspaceBase = "/" is a shared system directory']),
    "workspaceBase is /etc": (
        {**good(), "workspaceBase": "/etc"},
        ['workspaceBase = "/etc" lies in a system directory (/etc)'],
    ),
    "workspaceBase below /usr": (
        {**good(), "workspaceBase": "/usr/local/vscode"},
        ['workspaceBase = "/usr/local/vscode" lies in a system directory (/usr)'],
    ),
    "workspaceBase is /var": (
        {**good(), "workspaceBase": "/var"},
        ['workspaceBase = "/var" is a shared system directory'],
    ),
    "workspaceBase with ..": ({**good(), "workspaceBase": "/var/lib/../../etc"}, ["must be a plain absolute path"]),
    "workspaceBase with trailing slash": ({**good(), "workspaceBase": "/etc/"}, ["must be a plain absolute path"]),
    "runtimeDir is /tmp": (
        {**good(), "runtimeDir": "/tmp"},
        ['runtimeDir = "/tmp" is a shared system directory that everyone may write to', '"/run/code-server-multi"'],
    ),
    "runtimeDir is /run": ({**good(), "runtimeDir": "/run"}, ['runtimeDir = "/run" is a shared system directory']),
    "runtimeDir in /nix": (
        {**good(), "runtimeDir": "/nix/var/csm"},
        ["runtimeDir", "lies in a system directory (/nix)"],
    ),
    "runtimeDir among the workspaces": (
        {**good(), "runtimeDir": "/var/lib/vscode/ada/workspace"},
        ["runtimeDir", "and workspaceBase", "overlap"],
    ),
}


def test_the_name_prefix_names_the_containers():
    assert planlib.from_settings(good()).users["ada"].container.name == "code-server-ada"
    other = planlib.from_settings({**good(), "namePrefix": "csm-test"})
    assert other.users["ada"].container.name == "csm-test-ada"


@pytest.mark.parametrize("settings, fragments", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_settings_get_a_message_naming_field_and_fix(settings, fragments):
    with pytest.raises(planlib.PlanError) as err:
        planlib.from_settings(settings)
    message = str(err.value)
    assert message.startswith("invalid settings:\n  - "), message
    assert "error:" not in message and "trace" not in message
    for fragment in fragments:
        assert fragment in message


def test_all_problems_are_reported_at_once():
    settings = {"domain": "code.test", "users": {"Ada": {}, "bo": {"passwordFile": "/s", "memoryLimit": "x"}}}
    with pytest.raises(planlib.PlanError) as err:
        planlib.from_settings(settings)
    lines = str(err.value).splitlines()[1:]
    assert any("users.Ada: the name" in ln for ln in lines)
    assert any("users.Ada: no password file" in ln for ln in lines)
    assert any("users.bo.memoryLimit" in ln for ln in lines)


def test_nix_path_for_a_secret_is_refused(tmp_path):
    settings = tmp_path / "settings.nix"
    settings.write_text('{ domain = "code.test"; users.ada.hashedPasswordFile = ./ada.hash; }')
    with pytest.raises(planlib.PlanError, match="is a Nix path .* world-readable Nix store"):
        planlib.load(settings)


def test_missing_and_broken_settings_files(tmp_path):
    with pytest.raises(planlib.PlanError, match="does not exist"):
        planlib.load(tmp_path / "nope.nix")
    broken = tmp_path / "broken.nix"
    broken.write_text("{ domain = ; }")
    with pytest.raises(planlib.PlanError, match="syntax error"):
        planlib.load(broken)


def test_evaluation_is_quiet_on_a_host_without_nix_build_users():
    """Debian's nix-bin does not create the `nixbld` group, and Nix warns about it on
    every call unless told that evaluation needs no build users. The environment the
    runner and the tests use says so, whatever the caller's NIX_CONFIG holds."""
    for caller in ({}, {"NIX_CONFIG": "build-users-group = nixbld"}):
        env = planlib.nix_environment({"PATH": "/usr/bin:/bin", **caller})
        done = subprocess.run(["nix-instantiate", "--eval", "--expr", "1 + 1"], capture_output=True, text=True, env=env)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "2", "")


# A directory name no Nix string literal could carry as written: é (which JSON
# escapes to \u00e9, not Nix), an interpolation and a quote.
ODD_DIR = 'caf\u00e9 ${builtins.abort "spliced"} "q"'


def test_file_paths_reach_nix_exactly_as_they_are(tmp_path, monkeypatch):
    odd = tmp_path / ODD_DIR
    for part in ("modules/code-server-multi", "image"):  # the plan reads image/contract.json
        shutil.copytree(ROOT / part, odd / part)
    monkeypatch.setenv("CSM_SOURCE_DIR", str(odd))
    settings = odd / "settings.nix"
    secret = f"{odd}/ada.hash"
    settings.write_text(
        f'{{ domain = "code.test"; users.ada.hashedPasswordFile = {json.dumps(secret, ensure_ascii=False)}; }}'.replace(
            "${", "\\${"
        )
    )
    from_file = planlib.load(settings)
    assert from_file.users["ada"].password.file == secret
    monkeypatch.setattr(tempfile, "tempdir", str(odd))  # where from_settings writes its JSON
    from_data = planlib.from_settings({"domain": "code.test", "users": {"ada": {"hashedPasswordFile": secret}}})
    assert from_data == from_file


def test_a_name_with_a_newline_gets_the_whole_message():
    settings = {"domain": "code.test", "users": {"ada\nbo": {"passwordFile": "/s", "memoryLimit": "x"}}}
    with pytest.raises(planlib.PlanError) as err:
        planlib.from_settings(settings)
    lines = str(err.value).splitlines()
    assert lines[0] == "invalid settings:" and all(ln.startswith("  - ") for ln in lines[1:]), lines
    assert any('users."ada\\nbo": the name "ada\\nbo" is not a DNS label' in ln for ln in lines), lines
    assert any('users."ada\\nbo".memoryLimit = "x" is not a size' in ln for ln in lines), lines


@pytest.mark.parametrize("base", ["/var/lib/vscode", "/srv/vscode", "/home/vscode", "/var/tmp/csm-test-x/workspaces"])
def test_ordinary_directories_are_accepted(base):
    plan = planlib.from_settings(
        {
            **good(),
            "workspaceBase": base,
            "runtimeDir": "/run/csm",
            "users": {"ada": {"hashedPasswordFile": "/s", "extraVolumes": ["/srv/d:/d:ro,Z"]}},
        }
    )
    assert plan.workspaceBase == base


@pytest.mark.parametrize(
    "case",
    [
        "key beside its reference",
        "cookie header written out",
        "key in a URL's query",
        "api_key in a URL's query",
        "token in a URL in a command",
        "password in a URL",
    ],
)
def test_a_written_out_secret_is_never_repeated_in_its_message(case):
    settings, _ = BAD_SETTINGS[case]
    with pytest.raises(planlib.PlanError) as e:
        planlib.from_settings(settings)
    for secret in ["sk-live-abc", "abc123", "AIza123", "=abc", "t1", "hunter2"]:
        assert secret not in str(e.value), case


def test_secrets_given_as_references_pass_wherever_they_sit():
    """The written-out-secret rule looks at names that mean a secret, everywhere in the
    opencode settings; references pass, and ordinary settings are not mistaken for keys."""
    plan = planlib.from_settings(
        {
            **good(),
            "opencode": {
                "provider": {
                    "x": {
                        "options": {
                            "apiKey": "{env:X_KEY}",
                            "baseURL": "http://ai.test/v1",
                            "headers": {
                                "Authorization": "Bearer {env:X_TOKEN}",
                                "X-Api-Key": "{file:/run/secrets/x-header}",
                                "Cookie": "sid={env:SID}; csrf={env:CSRF}",
                            },
                            "apiKeys": ["{env:A}", "{env:B}"],
                            "credentials": {"user": "{env:U}", "password": "{file:/run/secrets/p}"},
                        }
                    },
                    "y": {
                        "options": {
                            "baseURL": "https://ai.test/v1?key={env:Y_KEY}&model=m",
                            "privateKey": "{file:/run/secrets/y.pem}",
                        }
                    },
                    "z": {"options": {"baseURL": "https://ada:{env:Z_PASS}@ai.test/v1?page=2&token="}},
                },
                "extraConfig": {
                    "keybinds": {"leader": "ctrl+x"},
                    "mcp": {
                        "gh": {"environment": {"GITHUB_TOKEN": "{env:GH}"}},
                        "git": {"url": "ssh://git@git.test/x?ref=main"},
                    },
                },
            },
        }
    )
    config = plan.opencode["config"]
    assert config["provider"]["x"]["options"]["headers"]["Authorization"] == "Bearer {env:X_TOKEN}"
    assert config["keybinds"] == {"leader": "ctrl+x"}
