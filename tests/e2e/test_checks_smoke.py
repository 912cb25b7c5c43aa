"""`csm smoke` against the live stack, as an admin runs it against a real server."""

import subprocess
import sys
from pathlib import Path

import pytest

from csm.checks.smoke import deployment_checks

pytestmark = pytest.mark.live

CSM = str(Path(sys.executable).parent / "csm")  # the installed command


def smoke(*args, stdin):
    return subprocess.run([CSM, "smoke", *args], input=stdin, capture_output=True, text=True, timeout=300)


def domain_url(live_stack):
    return f"http://{live_stack.plan.domain}:{live_stack.http_port}"


def test_smoke_passes_on_a_working_deployment(live_stack):
    # bo spends his one wrong password of the session here (ada spends hers in test_checks_http).
    done = smoke(domain_url(live_stack), "--user", "bo", "--other-user", "ada", stdin=live_stack.password("bo") + "\n")
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split(":")[0] for line in lines] == [f"PASS {name}" for name, _ in deployment_checks(other_user="ada")]
    assert live_stack.password("bo") not in done.stdout + done.stderr


def test_smoke_fails_for_a_user_the_deployment_does_not_have(live_stack, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("whatever\n")
    done = smoke(domain_url(live_stack), "--user", "nobody", "--password-file", str(password_file), stdin="")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("FAIL healthz_answers: login to ") and "gave no session: HTTP 404" in lines[0]
    assert lines[-1].startswith("SKIP session_does_not_open_other_user")
    # The unknown-address checks still pass: they do not need the user to exist.
    assert any(line.startswith("PASS unknown_host_gets_landing_page") for line in lines)
