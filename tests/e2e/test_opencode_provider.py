"""opencode really answers, through a provider configured in the settings.

The settings' `opencode.provider` names an OpenAI-compatible provider whose baseURL is
a fake chat-completions server (csm.testing.fake_openai) that this test runs on the
host, on the host's outward address (containers reach it as any server outside). The
API key reaches the container only through an env file listed in the user's
`environmentFiles`; the config says `apiKey = "{env:FAKE_API_KEY}"`. Then
`opencode run` inside the user's container must print the fake's reply, and the key
must show up nowhere but in the Authorization header the fake received: not in any
process's command line on the host or in the container (looked at while opencode waits
for the answer), not in podman's record of the container's command, not in the plan,
not in the container's log or the user's files.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.testing.fake_openai import MODEL, FakeOpenAI, host_address, opencode_settings
from csm.testing.stacks import TEST_PREFIX, free_port

pytestmark = pytest.mark.live

USER = "cy"
CONTAINER = f"{TEST_PREFIX}-{USER}"  # checked against the plan in `ai`
KEY = f"sk-fake-{secrets.token_hex(20)}"
REPLY = f"The fake model says hello {secrets.token_hex(4)}"
PROVIDER = "fake"
WAIT = 180  # seconds: generous bounds for opencode to ask and to finish, never reached when it works


def command_lines_on_host() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:  # the process is gone
                pass
    return lines


def command_lines_in_container() -> list[str]:
    script = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done'
    out = subprocess.run(
        ["podman", "exec", CONTAINER, "sh", "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ai(live_stack_factory, tmp_path_factory):
    """A stack with user cy, whose opencode talks to a fake provider on this host."""
    here = tmp_path_factory.mktemp("opencode-provider")
    key_file = here / "fake-provider.env"
    key_file.write_text(f"FAKE_API_KEY={KEY}\n")
    key_file.chmod(0o400)
    gateway = host_address()
    port = free_port(gateway)
    settings = {
        "opencode": opencode_settings(
            PROVIDER, "Fake provider", f"http://{gateway}:{port}/v1", "FAKE_API_KEY", "Fake model"
        ),
        "users": {USER: {"environmentFiles": [str(key_file)]}},
    }
    stack = live_stack_factory([USER], extra_settings=settings)
    assert stack.container(USER) == CONTAINER
    fake = FakeOpenAI(gateway, port, reply=REPLY, log_path=here / "fake-provider.log", hold=True)
    fake.start()
    try:
        yield stack, fake, here
    finally:
        fake.stop()
        stack.close()


@pytest.fixture(scope="module")
def answered(ai):
    """Runs `opencode run` in cy's container; while the fake holds the answer, takes
    every command line on the host and in the container."""
    stack, fake, here = ai
    out, err = here / "opencode.out", here / "opencode.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [
                "podman",
                "exec",
                "--workdir",
                "/home/coder/project",
                CONTAINER,
                "opencode",
                "run",
                "--model",
                f"{PROVIDER}/{MODEL}",
                "Say hello.",
            ],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        arrived = fake.completion_arrived.wait(WAIT)
        if not arrived:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"opencode sent no chat completion to the fake within {WAIT} s "
                f"(exit {proc.returncode}); stdout {out.read_text()[-800:]!r}, "
                f"stderr {err.read_text()[-1500:]!r}"
            )
        snapshot = {"host": command_lines_on_host(), "container": command_lines_in_container()}
        fake.release()
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.read_text(), err.read_text(), snapshot


def test_opencode_run_prints_the_providers_answer(answered):
    returncode, out, err, _ = answered
    assert returncode == 0, f"opencode run exited {returncode}: {err[-1500:]}"
    assert REPLY in out, f"opencode run printed {out!r} (stderr {err[-800:]!r})"


def test_the_provider_got_the_key_from_the_env_file_and_the_model_from_the_settings(ai, answered):
    _, fake, _ = ai
    completions = fake.completions()
    assert completions, "the fake received no chat completion"
    for request in completions:
        assert request.headers.get("Authorization") == f"Bearer {KEY}", request.headers
        assert request.body.get("model") == MODEL, request.body


def test_the_key_is_on_no_command_line_while_opencode_uses_it(answered):
    _, _, _, snapshot = answered
    # The snapshot is only evidence if it caught opencode at work.
    assert any("opencode" in line and " run " in line for line in snapshot["host"]), snapshot["host"]
    assert any("opencode" in line for line in snapshot["container"]), snapshot["container"]
    for where, lines in snapshot.items():
        leaked = [line for line in lines if KEY in line]
        assert not leaked, f"the API key is on a command line in the {where}: {leaked}"


def test_the_key_is_not_in_podmans_record_of_the_command(answered):
    info = json.loads(
        subprocess.run(["podman", "container", "inspect", CONTAINER], check=True, capture_output=True, text=True).stdout
    )[0]
    for field in ("Args", "Path"):
        assert KEY not in json.dumps(info.get(field)), field
    for field in ("Cmd", "Entrypoint", "CreateCommand"):
        assert KEY not in json.dumps(info["Config"].get(field)), f"Config.{field}"
    # The env file is how it gets in, by name only.
    assert any("--env-file" in arg for arg in info["Config"]["CreateCommand"])


def test_the_key_is_not_in_the_plan_or_the_stacks_state(ai, answered):
    stack, _, _ = ai
    assert KEY not in json.dumps(planlib.to_json(stack.plan))
    assert "{env:FAKE_API_KEY}" in json.dumps(planlib.to_json(stack.plan))
    for path in stack.state_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key is in {path}"


def test_the_key_is_not_in_the_containers_log_or_the_users_files(ai, answered):
    stack, _, _ = ai
    logs = subprocess.run(["podman", "logs", CONTAINER], check=True, capture_output=True, text=True)
    assert KEY not in logs.stdout + logs.stderr
    for path in stack.user_dir(USER).rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert KEY.encode() not in path.read_bytes(), f"the API key is in {path}"


def test_the_fakes_log_has_the_key_only_in_the_authorization_header(ai, answered):
    _, _, here = ai
    lines = (here / "fake-provider.log").read_text().splitlines()
    with_key = [line for line in lines if KEY in line]
    assert with_key, "the fake logged no Authorization header"
    assert set(with_key) == {f"Authorization: Bearer {KEY}"}, with_key
