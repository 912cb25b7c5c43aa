"""The csm command line without containers: help, exit codes, and every bad input
that is caught before anything changes (and leaves nothing behind)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from csm import cli

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["up", "down", "status", "passwd", "reset", "backup", "restore", "logs"]


def csm(*args, env=None, stdin="", user=None):
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run(
        prefix + [sys.executable, "-m", "csm.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command):
    proc = csm(*([command] if command else []), "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: csm" in proc.stdout and "exit codes:" in proc.stdout


def test_top_level_help_lists_every_command():
    out = csm("--help").stdout
    for command in COMMANDS + ["image", "smoke"]:
        assert f"    {command} " in out


def test_up_help_documents_create_passwords():
    out = csm("up", "--help").stdout
    assert "--create-passwords" in out and "passwords/USER" in out


def test_usage_errors_exit_2():
    assert csm("frobnicate").returncode == 2
    assert csm("passwd").returncode == 2
    assert csm("up", "--http-port", "eighty").returncode == 2


@pytest.fixture
def stack_dirs(tmp_path):
    """Settings for one user whose every path lies under tmp_path."""
    hash_file = tmp_path / "secrets" / "ada.hash"
    hash_file.parent.mkdir()
    hash_file.write_text("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")

    def settings(**extra) -> Path:
        fields = {
            "domain": '"code.localhost"',
            "workspaceBase": f'"{tmp_path}/ws"',
            "runtimeDir": f'"{tmp_path}/run"',
            "users.ada.hashedPasswordFile": f'"{hash_file}"',
            **extra,
        }
        path = tmp_path / "settings.nix"
        path.write_text("{ " + " ".join(f"{k} = {v};" for k, v in fields.items()) + " }\n")
        return path

    settings.tmp = tmp_path
    settings.hash_file = hash_file
    return settings


def assert_nothing_made(tmp_path: Path):
    assert not (tmp_path / "ws").exists(), "a workspace was created"
    assert not (tmp_path / "run").exists(), "an env file directory was created"
    assert not (tmp_path / "state" / "nginx.pid").exists()
    out = subprocess.run(
        ["podman", "ps", "-a", "--format={{.Names}}", f"--filter=label=io.code-server-multi.stack={tmp_path}/state"],
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == ""


def up(settings: Path, *args, **kwargs):
    return csm("up", settings, "--state-dir", settings.parent / "state", "--http-port", "18080", *args, **kwargs)


def test_unknown_settings_file(tmp_path):
    proc = csm("up", tmp_path / "nope.nix", "--state-dir", tmp_path / "state")
    assert proc.returncode == 2
    assert f"settings file {tmp_path}/nope.nix does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_settings_path_is_a_directory(tmp_path):
    proc = csm("up", tmp_path, "--state-dir", tmp_path / "state")
    assert proc.returncode == 2 and "is a directory" in proc.stderr


def test_unreadable_settings_file():
    # root reads everything: run csm as nobody, in a directory nobody may enter
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        base.chmod(0o755)
        settings = base / "settings.nix"
        settings.write_text('{ domain = "code.localhost"; users.ada.hashedPasswordFile = "/x"; }')
        settings.chmod(0o600)
        proc = csm("up", settings, "--state-dir", base / "state", user=65534)
        assert proc.returncode == 2, proc.stderr
        assert f"settings file {settings} is not readable" in proc.stderr
        assert not (base / "state").exists()
    finally:
        shutil.rmtree(base)


def test_invalid_settings_show_the_plans_message_without_a_nix_trace(stack_dirs):
    settings = stack_dirs(**{"users.ada.memoryLimit": '"lots"', "namePrefix": '"-x"'})
    proc = up(settings)
    assert proc.returncode == 2
    assert "invalid settings:" in proc.stderr
    assert 'users.ada.memoryLimit = "lots" is not a size' in proc.stderr
    assert 'namePrefix = "-x" must be' in proc.stderr
    for trace in ("while evaluating", "--show-trace", "at /", "Traceback"):
        assert trace not in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


def test_settings_with_a_nix_syntax_error(stack_dirs):
    settings = stack_dirs()
    settings.write_text("{ domain = ; }")
    proc = up(settings)
    assert proc.returncode == 2 and "syntax error" in proc.stderr and "Traceback" not in proc.stderr


def path_without(tmp_path: Path, missing: str) -> dict:
    """An environment whose PATH has the tools csm uses, except `missing`."""
    bin_dir = tmp_path / f"bin-without-{missing}"
    bin_dir.mkdir()
    for tool in ("nix-instantiate", "podman", "nginx", "runc", "openssl", "conmon", "iptables"):
        found = shutil.which(tool)
        if tool != missing and found:
            (bin_dir / tool).symlink_to(found)
    return {**os.environ, "PATH": str(bin_dir)}


@pytest.mark.parametrize("tool, package", [("nix-instantiate", "nix-bin"), ("podman", "podman"), ("nginx", "nginx")])
def test_a_missing_program_is_named_with_the_fix(stack_dirs, tool, package):
    assert shutil.which(tool), f"{tool} must be installed for this test to mean anything"
    proc = up(stack_dirs(), env=path_without(stack_dirs.tmp, tool))
    assert proc.returncode == 3, proc.stderr
    assert f"{tool} is not installed" in proc.stderr and "scripts/install-deps" in proc.stderr
    assert f"apt-get install {package}" in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


@pytest.mark.parametrize(
    "content, message",
    [
        ("first\nsecond\n", "holds more than one line"),
        ("", "is empty"),
    ],
)
def test_a_bad_password_file_is_refused_before_anything_starts(stack_dirs, content, message):
    stack_dirs.hash_file.write_text(content)
    proc = up(stack_dirs())
    assert proc.returncode == 2
    assert message in proc.stderr and str(stack_dirs.hash_file) in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


def test_a_missing_password_file_points_at_csm_passwd(stack_dirs):
    stack_dirs.hash_file.unlink()
    proc = up(stack_dirs())
    assert proc.returncode == 2
    assert f"{stack_dirs.hash_file} does not exist" in proc.stderr and "csm passwd" in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


def test_a_missing_key_file_is_named(stack_dirs):
    settings = stack_dirs(**{"users.ada.environmentFiles": f'[ "{stack_dirs.tmp}/keys.env" ]'})
    proc = up(settings)
    assert proc.returncode == 2 and f"{stack_dirs.tmp}/keys.env does not exist" in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


def test_same_port_for_http_and_tls(stack_dirs):
    proc = up(stack_dirs(), "--tls", "18080")
    assert proc.returncode == 2 and "both 18080" in proc.stderr
    assert_nothing_made(stack_dirs.tmp)


@pytest.mark.parametrize(
    "command", [["down"], ["status"], ["reset", "ada"], ["logs", "ada"], ["backup"], ["restore", "x.tar.gz"], ["up"]]
)
def test_commands_without_a_stack_say_how_to_start_one(tmp_path, command):
    proc = csm(*command, "--state-dir", tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    assert "csm up SETTINGS" in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_delegated_module_fails_only_its_command(monkeypatch, capsys):
    monkeypatch.setitem(cli.DELEGATED, "image", ("csm.no_such_module", "x"))
    assert cli.main(["image", "build"]) == 1
    assert "csm image: not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["down", "--help"])
    assert e.value.code == 0
