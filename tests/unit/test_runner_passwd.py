"""csm passwd: argon2id hash files, no trailing-newline trap, the right modes."""

from __future__ import annotations

import io
import os
import pty
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from csm import plan as planlib
from csm.runner import BadInput, passwd

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "given, read",
    [
        ("s3cret\n", "s3cret"),  # echo secret | csm passwd
        ("s3cret", "s3cret"),  # printf secret | csm passwd
        ("  spaced  \n", "  spaced  "),  # only the newline goes
    ],
)
def test_read_from_stdin_strips_exactly_one_newline(given, read):
    assert passwd.read(io.StringIO(given), prompt=False) == read


@pytest.mark.parametrize(
    "given, message",
    [
        ("", "empty"),
        ("\n", "empty"),
        ("two\nlines\n", "line break"),
        ("s3cret\n\n", "line break"),
    ],
)
def test_read_refuses_empty_and_multiline(given, message):
    with pytest.raises(BadInput, match=message):
        passwd.read(io.StringIO(given), prompt=False)


def test_hash_is_argon2id_and_verifies_without_newline():
    hashed = passwd.hash_password("s3cret")
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "s3cret")
    assert not passwd.verify(hashed, "s3cret\n")


def test_hash_file_modes(tmp_path):
    target = tmp_path / "secrets" / "ada.hash"
    passwd.write_hash_file(target, passwd.hash_password("x"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert target.read_text().count("\n") == 1


def test_generated_passwords_are_readable_and_differ():
    a, b = passwd.generate(), passwd.generate()
    assert a != b and len(a) == 19
    assert set(a) <= set(passwd.ALPHABET + "-")


def test_which_file_and_why_not():
    plan = planlib.load(ROOT / "examples" / "team.nix")
    assert passwd.hashed_password_file(plan, "ada") == "/run/secrets/code-server/ada"
    with pytest.raises(BadInput, match="users.linus uses passwordFile"):
        passwd.hashed_password_file(plan, "linus")
    with pytest.raises(BadInput, match=r"no user 'nobody'.*ada, grace, linus"):
        passwd.hashed_password_file(plan, "nobody")


def csm(*args, stdin="", cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "csm.cli", *args], input=stdin, capture_output=True, text=True, cwd=cwd
    )


def settings_file(tmp_path) -> tuple[Path, Path]:
    hash_file = tmp_path / "secrets" / "ada.hash"
    s = tmp_path / "settings.nix"
    s.write_text(
        f'{{ domain = "code.localhost"; workspaceBase = "{tmp_path}/ws"; runtimeDir = "{tmp_path}/run"; '
        f'users.ada.hashedPasswordFile = "{hash_file}"; users.bo.passwordFile = "{tmp_path}/bo"; }}'
    )
    return s, hash_file


def test_cli_writes_the_hash_from_stdin(tmp_path):
    settings, hash_file = settings_file(tmp_path)
    proc = csm("passwd", "ada", str(settings), "--state-dir", str(tmp_path / "state"), stdin="correct horse\n")
    assert proc.returncode == 0, proc.stderr
    assert str(hash_file) in proc.stdout and "next `csm up`" in proc.stdout
    assert PasswordHasher().verify(hash_file.read_text().strip(), "correct horse")
    assert stat.S_IMODE(hash_file.stat().st_mode) == 0o600
    assert "correct horse" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "user, stdin, message",
    [
        ("bo", "x\n", "users.bo uses passwordFile"),
        ("cy", "x\n", "no user 'cy'"),
        ("ada", "two\nlines\n", "line break"),
    ],
)
def test_cli_refuses_and_writes_nothing(tmp_path, user, stdin, message):
    settings, hash_file = settings_file(tmp_path)
    proc = csm("passwd", user, str(settings), "--state-dir", str(tmp_path / "state"), stdin=stdin)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not hash_file.exists()


def csm_on_a_terminal(args: list[str], answers: list[bytes]) -> tuple[int, bytes]:
    """Run csm with a terminal as its controlling tty, answering each prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "csm.cli", *args])
    seen = b""
    for answer in answers:
        while not seen.rstrip().endswith(b":"):
            seen += os.read(fd, 1024)
        os.write(fd, answer)
        seen += b"|"
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen


def test_cli_prompts_twice_on_a_terminal(tmp_path):
    settings, hash_file = settings_file(tmp_path)
    code, out = csm_on_a_terminal(
        ["passwd", "ada", str(settings), "--state-dir", str(tmp_path / "state")], [b"typed secret\n", b"typed secret\n"]
    )
    assert code == 0, out
    assert b"New password:" in out and b"Again:" in out and b"typed secret" not in out  # not echoed
    assert PasswordHasher().verify(hash_file.read_text().strip(), "typed secret")


def test_cli_refuses_two_different_passwords(tmp_path):
    settings, hash_file = settings_file(tmp_path)
    code, out = csm_on_a_terminal(
        ["passwd", "ada", str(settings), "--state-dir", str(tmp_path / "state")], [b"one\n", b"two\n"]
    )
    assert code == 2 and b"the two passwords differ" in out
    assert not hash_file.exists()
