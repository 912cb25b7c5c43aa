"""`csm smoke` on bad input, and against an address where nothing answers."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from csm.checks import smoke

PASSWORD = "correct-horse-battery"

CSM = str(Path(sys.executable).parent / "csm")  # the installed command


def run_smoke(*args, stdin=""):
    return subprocess.run([CSM, "smoke", *args], input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "url, user, expected",
    [
        ("https://code.example.org", "ada", "https://ada.code.example.org"),
        ("https://ada.code.example.org", "ada", "https://ada.code.example.org"),
        ("http://code.localhost:8080/", "demo", "http://demo.code.localhost:8080"),
        ("code.example.org", "ada", "https://ada.code.example.org"),
    ],
)
def test_user_url(url, user, expected):
    assert smoke.user_url(url, user) == expected


def test_missing_password_file_is_named(tmp_path):
    done = run_smoke("http://code.localhost:1", "--user", "ada", "--password-file", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert f"cannot read the password file {tmp_path / 'nope'}" in done.stderr
    assert done.stdout == ""  # nothing was checked


def test_empty_password_is_refused():
    done = run_smoke("http://code.localhost:1", "--user", "ada", stdin="\n")
    assert done.returncode == 2 and "the password is empty" in done.stderr


@pytest.mark.parametrize("url", ["ftp://code.example.org", "https://code.example.org/login", "https://:x"])
def test_bad_url_is_refused(url):
    done = run_smoke(url, "--user", "ada", stdin=PASSWORD)
    assert done.returncode == 2 and "csm smoke:" in done.stderr and done.stdout == ""


def test_user_is_required():
    done = run_smoke("https://code.example.org", stdin=PASSWORD)
    assert done.returncode == 2 and "--user" in done.stderr


def test_nothing_listening_fails_every_check_and_never_prints_the_password(tmp_path):
    with socket.socket() as s:  # a port that is certainly closed: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        password_file = tmp_path / "pw"
        password_file.write_text(PASSWORD + "\n")
        done = run_smoke(
            f"http://code.localhost:{port}",
            "--user",
            "ada",
            "--password-file",
            str(password_file),
            "--other-user",
            "bo",
        )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == len(smoke.deployment_checks(other_user="bo"))
    assert all(line.startswith("FAIL ") for line in lines), lines
    assert "refused" in lines[0].lower()
    assert PASSWORD not in done.stdout + done.stderr
