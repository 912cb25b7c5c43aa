"""The image contract's checks with a scripted runner: what each one accepts, what
it reports, and that the extension is never reported present when it is not."""

import json
import shlex

import pytest

from csm.checks import image

LABELS = {
    "code-server-multi.code-server": image.versions()["code-server"],
    "code-server-multi.opencode": image.versions()["opencode"],
}


class Runner:
    """A machine.succeed stand-in: answers by the first matching fragment."""

    def __init__(self, answers, labels=None):
        self.answers = answers
        self.labels = dict(LABELS if labels is None else labels)
        self.commands = []

    def __call__(self, command):
        self.commands.append(command)
        if " image inspect " in command:
            return json.dumps([{"Config": {"Labels": self.labels}}])
        for fragment, answer in self.answers.items():
            if fragment in command:
                if isinstance(answer, Exception):
                    raise answer
                return answer
        raise AssertionError(f"unexpected command {command}")


def podman(answers, labels=None, run_args=("--runtime", "runc")):
    runner = Runner(answers, labels)
    return image.Podman(runner, run_args=run_args), runner


def test_every_podman_run_carries_the_host_flags():
    p, runner = podman({"--version": "4.139.1 abc with Code 1.139.1\n"})
    image.code_server_version("img", p)
    run = next(c for c in runner.commands if " run " in c)
    assert shlex.split(run)[:6] == ["podman", "run", "--rm", "--pull=never", "--runtime", "runc"]


def test_code_server_version_skips_log_lines():
    v = image.versions()["code-server"]
    p, _ = podman({"--version": f"[2026] info  Wrote default config file\n{v} abc with Code 1.139.1\n"})
    assert image.code_server_version("img", p) == f"code-server {v} abc with Code 1.139.1"


def test_code_server_version_must_be_the_pinned_one_and_match_the_label():
    pinned = image.versions()["code-server"]
    p, _ = podman({"--version": "4.91.1 abc with Code 1.91.1\n"})
    with pytest.raises(AssertionError, match=f"image/versions.json pins {pinned}"):
        image.code_server_version("img", p)
    p, _ = podman(
        {"--version": f"{pinned} abc with Code 1.1.1\n"}, labels={**LABELS, "code-server-multi.code-server": "4.0.0"}
    )
    with pytest.raises(AssertionError, match="ships 4.0.0"):
        image.code_server_version("img", p)


def test_opencode_version_must_be_the_pinned_one():
    pinned = image.versions()["opencode"]
    p, _ = podman({"opencode --version": f"{pinned}\n"})
    assert image.opencode_version("img", p) == f"opencode {pinned}"
    p, _ = podman({"opencode --version": "1.0.0\n"})
    with pytest.raises(AssertionError, match=f"pins {pinned}"):
        image.opencode_version("img", p)


def test_a_failing_command_becomes_an_assertion():
    p, _ = podman({"opencode --version": RuntimeError("exit 127: opencode: not found")})
    with pytest.raises(AssertionError, match="not found"):
        image.opencode_version("img", p)


LISTED = "[2026] info  Wrote default config file\nsst-dev.opencode@0.0.13\n"


@pytest.mark.parametrize("required", [True, False])
def test_extension_listed(required):
    p, _ = podman({"--list-extensions": LISTED})
    assert image.extension("img", p, required=required).startswith("sst-dev.opencode@0.0.13 installed")


def test_extension_required_and_absent_fails():
    p, _ = podman({"--list-extensions": "\n"})
    with pytest.raises(AssertionError, match="required"):
        image.extension("img", p, required=True)


def test_extension_optional_and_absent_is_reported_absent():
    p, _ = podman({"--list-extensions": "other.ext@1.0.0\n"})
    assert "absent" in image.extension("img", p, required=False)


def test_extension_promised_by_the_image_must_be_there():
    p, _ = podman(
        {"--list-extensions": "\n"}, labels={**LABELS, "code-server-multi.extensions": "sst-dev.opencode@0.0.13"}
    )
    with pytest.raises(AssertionError, match="says it ships"):
        image.extension("img", p, required=False)


def test_default_user():
    c = image.facts()
    user, uid, gid, home = c["user"], c["uid"], c["gid"], c["home"]
    passwd = f"root:x:0:0:root:/root:/bin/bash\n{user}:x:{uid}:{gid}:{user}:{home}:/bin/bash\n"
    p, _ = podman({"id -u": f"{uid}\n{gid}\n{home}\n{passwd}"})
    assert image.default_user("img", p) == f"default user {user} {uid}:{gid}, HOME {home}"
    p, _ = podman({"id -u": f"0\n0\n/root\n{passwd}"})
    with pytest.raises(AssertionError, match="uid 0"):
        image.default_user("img", p)


def test_setuid_files_fail_and_the_search_runs_as_root():
    p, runner = podman({"find /": "/usr/bin/su\n"})
    with pytest.raises(AssertionError, match="/usr/bin/su"):
        image.no_privilege_escalation("img", p)
    assert "--user 0" in runner.commands[-1]
    p, _ = podman({"find /": ""})
    assert image.no_privilege_escalation("img", p) == "no sudo, no setuid or setgid files"


def test_tools_report_versions():
    out = (
        "python3\tPython 3.11.2\nnode\tv24.21.0\nnpm\t11.21.2\ngit\tgit version 2.39.5\n"
        "rg\tripgrep 14.1.1 (rev 3a612f88b8)\ncurl\tcurl 7.88.1\nless\tless 590\ncacert\t/etc/ssl/c.crt\n"
    )
    p, _ = podman({"printf": out})
    assert image.tools("img", p) == (
        "python3 3.11.2, node 24.21.0, npm 11.21.2, git 2.39.5, rg 14.1.1, "
        "curl 7.88.1, less 590, CA bundle /etc/ssl/c.crt"
    )
    p, _ = podman({"printf": out.replace("rg\tripgrep 14.1.1 (rev 3a612f88b8)", "rg\tsh: 1: rg: not found")})
    with pytest.raises(AssertionError, match="rg"):
        image.tools("img", p)
    p, _ = podman({"printf": out.replace("node\tv24.21.0", "node\tv20.20.2")})
    with pytest.raises(AssertionError, match="pins node 24"):
        image.tools("img", p)


PASSWORD_FILE = {"mktemp": "/tmp/tmp.pw\n", "rm -f ": ""}  # password_env_file, and its removal


def test_healthz_always_removes_its_container_and_its_password_file():
    p, runner = podman(
        {**PASSWORD_FILE, " run ": "id\n", " exec ": RuntimeError("exit 1"), " logs ": "boom\n", " rm ": ""}
    )
    with pytest.raises(AssertionError, match="did not answer"):
        image.healthz("img", p, within=0.5)
    assert " rm " in runner.commands[-1]
    p, runner = podman({**PASSWORD_FILE, " run ": "id\n", " exec ": '{"status":"alive","lastHeartbeat":1}', " rm ": ""})
    assert "answered 'alive'" in image.healthz("img", p)
    assert " rm " in runner.commands[-1]
    run = next(c for c in runner.commands if " run " in c)
    assert "--env-file /tmp/tmp.pw" in run and "PASSWORD=" not in run, "the password is on podman's command line"
    assert "rm -f /tmp/tmp.pw" in runner.commands


def test_contract_names_are_unique_and_required_flag_reaches_the_extension_check():
    names = [name for name, _ in image.contract(require_extension=True)]
    assert len(names) == len(set(names))
    p, _ = podman({"--list-extensions": "\n"})
    check = dict(image.contract(require_extension=True))["extension sst-dev.opencode"]
    with pytest.raises(AssertionError):
        check("img", p)
