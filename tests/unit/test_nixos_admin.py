"""The NixOS admin verbs (`csm ... --plan /etc/code-server-multi/plan.json`) against a
plan as the module publishes it: plan.nix evaluated by nix-instantiate from a settings
file, as default.nix imports it (tier 2 checks the module's plan is that very plan).
systemd is played by csm.testing.systemctl (a recording stand-in on PATH); csm, the
files, the hashes and the archives are real."""
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
from csm.testing.systemctl import SystemctlStandIn

# Names no other test uses: container names are global on the host.
UNA_UNIT = "podman-code-server-una.service"


class NixosHost:
    """A plan.json whose every path is below tmp_path, and systemd's stand-in."""

    def __init__(self, tmp_path: Path):
        self.base = tmp_path
        self.hash_file = tmp_path / "secrets" / "una.hash"
        settings = tmp_path / "settings.nix"
        settings.write_text(f'''{{
          domain = "code.test"; workspaceBase = "{tmp_path}/ws"; runtimeDir = "{tmp_path}/run";
          users.una.hashedPasswordFile = "{self.hash_file}";
          users.ned.passwordFile = "{tmp_path}/secrets/ned.plain";
        }}''')
        self.plan = planlib.load(settings)
        self.plan_file = tmp_path / "plan.json"
        self.plan_file.write_text(json.dumps(self.plan))
        self.systemd = SystemctlStandIn(tmp_path)

    def csm(self, *args, stdin: str = "", **env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "csm.cli", *map(str, args)], input=stdin, text=True,
                              capture_output=True, env=self.systemd.env(**env))

    def with_plan(self, verb: str, *args, **kw) -> subprocess.CompletedProcess:
        return self.csm(verb, "--plan", self.plan_file, "--state-dir", self.base / "state", *args, **kw)


@pytest.fixture()
def host(tmp_path):
    return NixosHost(tmp_path)


# ---- csm passwd ------------------------------------------------------------------------

def test_passwd_with_the_plan_writes_the_users_hash_file_and_restarts_her_unit(host):
    host.systemd.set(UNA_UNIT, "active")
    proc = host.with_plan("passwd", "una", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    hashed = host.hash_file.read_text()
    assert PasswordHasher().verify(hashed.strip(), "correct horse") and hashed.count("\n") == 1
    assert stat.S_IMODE(host.hash_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(host.hash_file.parent.stat().st_mode) == 0o700
    assert hashed.strip() not in proc.stdout + proc.stderr and "correct horse" not in proc.stdout + proc.stderr
    assert "session cookie" in proc.stdout  # it says the file is a credential
    assert f"try-restart {UNA_UNIT}" in host.systemd.calls() and f"{UNA_UNIT} was restarted" in proc.stdout


def test_passwd_leaves_a_stopped_unit_stopped(host):
    proc = host.with_plan("passwd", "una", stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith(("try-restart", "start", "restart")) for c in host.systemd.calls())
    assert host.systemd.state_of(UNA_UNIT) == "inactive" and "applies when it starts" in proc.stdout


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


@pytest.mark.parametrize("args, stdin, message", [
    (("ned",), "x", "users.ned uses passwordFile"),
    (("cy",), "x", "no user 'cy'"),
    (("una",), "two\nlines\n", "line break"),
    (("una",), "", "empty"),
])
def test_passwd_with_the_plan_refuses_and_writes_nothing(host, args, stdin, message):
    proc = host.with_plan("passwd", *args, stdin=stdin)
    assert proc.returncode == 2 and message in proc.stderr
    assert not host.hash_file.exists() and not any("restart" in c for c in host.systemd.calls())


# ---- csm prepare (the unit's preStart) -------------------------------------------------

def test_prepare_composes_the_env_file_and_seeds_settings(host):
    host.hash_file.parent.mkdir(mode=0o700)
    host.hash_file.write_text("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA\n")
    proc = host.with_plan("prepare", "una")
    assert proc.returncode == 0, proc.stderr
    user = host.plan["users"]["una"]
    env = Path(user["secrets"]["envFile"])
    assert env.read_text() == "HASHED_PASSWORD=$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    seed = user["seedFiles"][0]
    assert Path(seed["path"]).read_bytes() == seed["content"].encode()
    Path(seed["path"]).write_text('{"mine": true}')
    assert host.with_plan("prepare", "una").returncode == 0
    assert Path(seed["path"]).read_text() == '{"mine": true}'  # a person's own settings are kept


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"), (b"$argon2id$abc\r\n", "holds a carriage return"), (b"a\0b", "holds a NUL byte"),
    (b"\xff\xfe", "is not UTF-8 text"), (b"one\ntwo\n", "holds more than one line"),
])
def test_prepare_refuses_a_bad_secret_file_and_keeps_the_last_good_env(host, content, problem):
    host.hash_file.parent.mkdir(mode=0o700)
    host.hash_file.write_text("$argon2id$good\n")
    assert host.with_plan("prepare", "una").returncode == 0
    host.hash_file.write_bytes(content)
    proc = host.with_plan("prepare", "una")
    assert proc.returncode == 2
    assert f"{host.hash_file} {problem}" in proc.stderr and "csm passwd una" in proc.stderr
    assert Path(host.plan["users"]["una"]["secrets"]["envFile"]).read_text() == "HASHED_PASSWORD=$argon2id$good\n"


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
    notes = Path(host.plan["workspaceBase"]) / "una" / "workspace" / "notes.md"
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
        f"stop {UNA_UNIT} | changed since", f"start {UNA_UNIT} | as backed up"]
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


@pytest.mark.parametrize("user, fails, code, message", [
    ("una", True, 1, f"systemctl restart {UNA_UNIT} failed"),
    ("cy", False, 2, "no user 'cy'"),
])
def test_reset_says_what_went_wrong(host, user, fails, code, message):
    host.systemd.set(UNA_UNIT, "active", fails=fails)
    proc = host.with_plan("reset", user)
    assert proc.returncode == code and message in proc.stderr


def test_logs_with_the_plan_names_a_missing_container(host):
    proc = host.with_plan("logs", "una")
    assert proc.returncode == 1 and "una has no container (code-server-una)" in proc.stderr
