"""The NixOS admin verbs (`csm ... --plan /etc/code-server-multi/plan.json`) against a
plan as the module publishes it: plan.nix evaluated by nix-instantiate from a settings
file, as default.nix imports it (tier 2 checks the module's plan is that very plan).
systemd is played by csm.testing.systemctl (a recording stand-in on PATH); csm, the
files, the hashes, the sessions and the archives are real."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from csm import plan as planlib
from csm.gate.core import session_store
from csm.runner import nixos
from csm.testing.systemctl import SystemctlStandIn

# Their plans name directories' owners by the accounts `csm up` creates.
pytestmark = pytest.mark.usefixtures("host_accounts")

# Names no other test uses: container names are global on the host.
UNA_UNIT = "podman-code-server-una.service"
GATE_UNIT = "code-server-multi-gate.service"


class NixosHost:
    """A plan.json whose every path is below tmp_path, and systemd's stand-in."""

    def __init__(self, tmp_path: Path):
        self.base = tmp_path
        self.hash_file = tmp_path / "secrets" / "una.hash"
        settings = tmp_path / "settings.nix"
        settings.write_text(f'''{{
          domain = "code.test"; workspaceBase = "{tmp_path}/ws"; runtimeDir = "{tmp_path}/run";
          gate.stateDir = "{tmp_path}/gate"; diskQuota = null;  # disks: test_module_tier2, e2e/test_disk_quota
          users.una.hashedPasswordFile = "{self.hash_file}";
          users.ned.passwordFile = "{tmp_path}/secrets/ned.plain";
        }}''')
        self.plan = planlib.load(settings)
        # The module declares the gate's accounts; this stand-in host (any fresh Debian)
        # has only its own, so the sockets' guard directories get Debian's nogroup.
        self.plan.gate.proxyGroup = "nogroup"
        for user in self.plan.users.values():
            for d in user.directories:
                d.gid = "nogroup" if d.gid == "csm-proxy" else d.gid
        self.plan_file = tmp_path / "plan.json"
        self.plan_file.write_text(json.dumps(planlib.to_json(self.plan)))
        self.systemd = SystemctlStandIn(tmp_path)

    def csm(self, *args, stdin: str = "", **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "csm.cli", *map(str, args)],
            input=stdin,
            text=True,
            capture_output=True,
            env=self.systemd.env(**env),
        )

    def with_plan(self, verb: str, *args, **kw) -> subprocess.CompletedProcess:
        return self.csm(verb, "--plan", self.plan_file, "--state-dir", self.base / "state", *args, **kw)


@pytest.fixture()
def host(tmp_path):
    return NixosHost(tmp_path)


# ---- csm passwd ------------------------------------------------------------------------


def test_passwd_with_the_plan_writes_the_hash_ends_her_sessions_and_restarts_the_gate(host):
    """The gate reads the password files as systemd credentials at its start: the new
    hash takes a restart of the gate, never of her container (which has no password)."""
    host.systemd.set(GATE_UNIT, "active")
    host.systemd.set(UNA_UNIT, "active")
    Path(host.plan.gate.stateDir).mkdir(mode=0o700)
    store = session_store(host.plan)
    store.create("una", "$argon2id$old")
    proc = host.with_plan("passwd", "una", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    hashed = host.hash_file.read_text()
    assert PasswordHasher().verify(hashed.strip(), "correct horse") and hashed.count("\n") == 1
    assert stat.S_IMODE(host.hash_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(host.hash_file.parent.stat().st_mode) == 0o700
    assert hashed.strip() not in proc.stdout + proc.stderr and "correct horse" not in proc.stdout + proc.stderr
    assert f"try-restart {GATE_UNIT}" in host.systemd.calls() and f"{GATE_UNIT} was restarted" in proc.stdout
    assert not any(UNA_UNIT in c for c in host.systemd.calls() if not c.startswith("is-active"))
    assert list(store.sessions("una")) == [] and "ended una's 1 session(s)" in proc.stdout


@pytest.fixture()
def systemd_here(host, monkeypatch):
    """The stand-in for csm.runner.nixos called in this process."""
    for key, value in host.systemd.env().items():
        if key in ("PATH", "SYSTEMCTL_STATE"):
            monkeypatch.setenv(key, value)
    return host.systemd


@pytest.mark.parametrize(
    "state, action, calls",
    [
        ("active", "restarted", [f"try-restart {GATE_UNIT}"]),
        # Retrying its start (Restart=always), e.g. for a password file that did not exist yet
        ("activating", "restarted", [f"try-restart {GATE_UNIT}"]),
        ("failed", "started", [f"restart {GATE_UNIT}"]),
        # An admin stopped it: left stopped
        ("inactive", "stopped", []),
    ],
)
def test_a_new_password_restarts_the_gate_unless_an_admin_stopped_it(host, systemd_here, state, action, calls):
    systemd_here.set(GATE_UNIT, state)
    assert nixos.restart_gate(host.plan) == action
    assert [c for c in systemd_here.calls() if not c.startswith("is-active")] == calls
    assert nixos.gate_unit(host.plan) == GATE_UNIT


@pytest.mark.parametrize(
    "state, pid, line",
    [
        ("active", 777, f"gate ({GATE_UNIT}): running (pid 777)"),
        ("failed", None, f"gate ({GATE_UNIT}): not running (failed); see `journalctl -u {GATE_UNIT}`"),
        ("inactive", None, f"gate ({GATE_UNIT}): not running (inactive)"),
    ],
)
def test_status_line_of_the_gate(host, systemd_here, state, pid, line):
    systemd_here.set(GATE_UNIT, state, pid=pid)
    assert nixos.gate_line(host.plan) == line


def test_nothing_of_the_nixos_path_names_a_port_or_a_secret_env_file():
    source = Path(nixos.__file__).read_text()
    assert not re.search(r"\bports?\b|basePort|envFile|HASHED_PASSWORD|fromFiles", source)


def test_passwd_to_an_explicit_file_needs_no_plan_and_touches_no_unit(host, tmp_path):
    out = tmp_path / "for-sops" / "una.hash"
    proc = host.csm("passwd", "una", "--output", out, stdin="correct horse")
    assert proc.returncode == 0, proc.stderr
    assert PasswordHasher().verify(out.read_text().strip(), "correct horse")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and host.systemd.calls() == []


def test_passwd_output_beside_other_files_leaves_their_directory_alone(host, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    assert host.csm("passwd", "una", "--output", shared / "una.hash", stdin="x").returncode == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_the_hash_costs_at_least_what_code_server_itself_uses(host):
    """A deliberate pin of code-server 4.139.1's own cost: it calls argon2.hash() of the
    npm package argon2 0.44.0, whose defaults are argon2id m=65536 KiB, t=3, p=4, a
    32-byte hash and a 16-byte salt. `argon2 -m 12` (4 MiB) is far below it."""
    assert host.with_plan("passwd", "una", stdin="pw").returncode == 0
    m = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([^$]+)\$([^$]+)", host.hash_file.read_text().strip())
    assert m, host.hash_file.read_text()
    memory, time_cost, lanes = map(int, m.group(1, 2, 3))
    salt_bytes, hash_bytes = (len(m.group(i)) * 3 // 4 for i in (4, 5))  # unpadded base64
    assert memory >= 65536 and time_cost >= 3 and lanes >= 4
    assert salt_bytes >= 16 and hash_bytes >= 32


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("ned",), "x", "users.ned uses passwordFile"),
        (("cy",), "x", "no user 'cy'"),
        (("una",), "two\nlines\n", "line break"),
        (("una",), "", "empty"),
    ],
)
def test_passwd_with_the_plan_refuses_and_writes_nothing(host, args, stdin, message):
    proc = host.with_plan("passwd", *args, stdin=stdin)
    assert proc.returncode == 2 and message in proc.stderr
    assert not host.hash_file.exists() and not any("restart" in c for c in host.systemd.calls())


# ---- csm prepare (the unit's preStart) -------------------------------------------------


def test_prepare_makes_the_directories_and_seeds_settings_without_any_password(host):
    """The container's start needs no password file: the gate alone reads them."""
    assert not host.hash_file.exists()
    proc = host.with_plan("prepare", "una")
    assert proc.returncode == 0, proc.stderr
    user = host.plan.users["una"]
    for d in user.directories:
        assert Path(d.path).is_dir(), d.path
    socket_dir = Path(user.socketSource).parent
    assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o711 and socket_dir.stat().st_uid == user.ids.hostUid
    assert stat.S_IMODE(socket_dir.parent.stat().st_mode) == 0o710
    assert not list(Path(host.plan.runtimeDir).rglob("*.env"))  # nothing composed with a secret
    seed = user.seedFiles[0]
    assert Path(seed.path).read_bytes() == seed.content.encode()
    Path(seed.path).write_text('{"mine": true}')
    assert host.with_plan("prepare", "una").returncode == 0
    assert Path(seed.path).read_text() == '{"mine": true}'  # a person's own settings are kept


# ---- csm status --------------------------------------------------------------------------


def test_status_reads_nginx_and_the_units_from_systemd(host):
    host.systemd.set("nginx.service", "active", pid=4242)
    host.systemd.set(UNA_UNIT, "failed")
    proc = host.with_plan("status")
    assert proc.returncode == 1  # the containers are absent: not healthy
    assert "nginx (nginx.service): running (pid 4242), port 80" in proc.stdout
    assert re.search(r"una\s+code-server-una\s+absent, unit failed", proc.stdout), proc.stdout
    data = json.loads(host.with_plan("status", "--json").stdout)
    assert data["nginx_pid"] == 4242 and data["units"] == {"una": "failed", "ned": "inactive"}
    assert data["healthy"] is False


def test_status_says_when_nginx_is_down(host):
    proc = host.with_plan("status")
    assert proc.returncode == 1 and "nginx (nginx.service): not running" in proc.stdout


# ---- csm restore ---------------------------------------------------------------------------


def make_backup(host: NixosHost) -> tuple[Path, Path]:
    host.hash_file.parent.mkdir(mode=0o700)
    host.hash_file.write_text("$argon2id$good\n")
    assert host.with_plan("prepare", "una").returncode == 0
    (host.base / "secrets" / "ned.plain").write_text("pw\n")
    assert host.with_plan("prepare", "ned").returncode == 0
    notes = Path(host.plan.workspaceBase) / "una" / "workspace" / "notes.md"
    notes.write_text("as backed up")
    proc = host.with_plan("backup", "--to", host.base / "backups")
    assert proc.returncode == 0, proc.stderr
    notes.write_text("changed since")
    return Path(proc.stdout.strip()), notes


def test_restore_stops_the_unit_before_the_swap_and_starts_it_after(host):
    archive, notes = make_backup(host)
    host.systemd.set(UNA_UNIT, "active")
    proc = host.with_plan("restore", "--user", "una", archive, SYSTEMCTL_WATCH=str(notes))
    assert proc.returncode == 0, proc.stderr
    assert notes.read_text() == "as backed up"
    # With Restart=always, a container stopped under systemd's feet comes straight
    # back; only the unit's own stop keeps it down while the files are swapped.
    assert [c for c in host.systemd.calls() if not c.startswith("is-active")] == [
        f"stop {UNA_UNIT} | changed since",
        f"start {UNA_UNIT} | as backed up",
    ]
    assert host.systemd.state_of(UNA_UNIT) == "active"


def test_restore_leaves_a_stopped_unit_stopped(host):
    archive, notes = make_backup(host)
    proc = host.with_plan("restore", "--user", "una", archive)
    assert proc.returncode == 0, proc.stderr
    assert notes.read_text() == "as backed up"
    assert [c for c in host.systemd.calls() if not c.startswith("is-active")] == []


def test_restore_reports_a_unit_that_does_not_come_back(host):
    archive, notes = make_backup(host)
    host.systemd.set(UNA_UNIT, "active", fails=True)
    proc = host.with_plan("restore", "--user", "una", archive)
    assert proc.returncode == 1
    assert f"systemctl start {UNA_UNIT} failed" in proc.stderr and f"journalctl -u {UNA_UNIT}" in proc.stderr
    assert notes.read_text() == "as backed up"  # the files were restored all the same


# ---- csm reset, csm logs ----------------------------------------------------------------------


def test_reset_restarts_the_users_unit(host):
    host.systemd.set(UNA_UNIT, "active")
    proc = host.with_plan("reset", "una")
    assert proc.returncode == 0, proc.stderr
    assert host.systemd.calls() == [f"restart {UNA_UNIT}"] and "fresh container" in proc.stdout


@pytest.mark.parametrize(
    "user, fails, code, message",
    [
        ("una", True, 1, f"systemctl restart {UNA_UNIT} failed"),
        ("cy", False, 2, "no user 'cy'"),
    ],
)
def test_reset_says_what_went_wrong(host, user, fails, code, message):
    host.systemd.set(UNA_UNIT, "active", fails=fails)
    proc = host.with_plan("reset", user)
    assert proc.returncode == code and message in proc.stderr


def test_logs_with_the_plan_names_a_missing_container(host):
    proc = host.with_plan("logs", "una")
    assert proc.returncode == 1 and "una has no container (code-server-una)" in proc.stderr
