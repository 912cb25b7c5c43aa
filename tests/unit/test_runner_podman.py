"""`podman run` argv from the plan: everything the plan says, the host's quirks,
no secret, and a spec digest that changes only with the user's own spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from csm import plan as planlib
from csm.runner import podman
from csm.runner.host import Host

ROOT = Path(__file__).resolve().parents[2]
HOST = Host(run_args=("--runtime", "runc", "--ulimit", "nofile=1024:4096"))


@pytest.fixture(scope="module")
def team():
    return planlib.load(ROOT / "examples" / "team.nix")


def argv_of(user, host=HOST):
    return podman.run_argv(user, host, "/var/lib/code-server-multi", f"/run/csm/{user.name}.config.env")


def test_argv_carries_the_plan_and_the_host(team):
    for user in team.users.values():
        c = user.container
        argv = argv_of(user)
        assert argv[:5] == ["podman", "run", "-d", f"--name={c.name}", "--pull=never"]
        assert argv[5 : 5 + len(HOST.run_args)] == list(HOST.run_args)
        for option in c.extraOptions:
            assert option in argv
        assert [a for a in argv if a.startswith("--publish=")] == [f"--publish={p}" for p in c.ports]
        assert [a for a in argv if a.startswith("--volume=")] == [f"--volume={v}" for v in c.volumes]
        assert f"--user={c.user}" in argv
        # image, then the command, last
        assert argv[-len(c.cmd) - 1 :] == [c.image, *c.cmd]


def test_env_files_in_plan_order_then_the_plain_environment(team):
    grace = team.users["grace"]
    env_files = [a.removeprefix("--env-file=") for a in argv_of(grace) if a.startswith("--env-file=")]
    assert env_files == grace.container.environmentFiles + ["/run/csm/grace.config.env"]


def test_no_environment_value_and_no_secret_on_the_command_line(team):
    for user in team.users.values():
        argv = argv_of(user)
        assert not any(a == "-e" or a.startswith(("--env=", "-e=")) for a in argv)
        for value in user.container.environment.values():
            assert not any(value in a for a in argv)
        # the password file is the gate's: podman never sees it
        assert not any(user.password.file in a for a in argv)


def test_nothing_is_published(team):
    """code-server listens on a Unix socket: no port of the host is ever opened for it."""
    for user in team.users.values():
        assert not any(a.startswith(("--publish", "-p", "--network=host")) for a in argv_of(user))


def test_spec_digest_changes_only_for_the_user_whose_spec_changed():
    base = {"domain": "code.localhost", "users": {u: {"hashedPasswordFile": f"/s/{u}"} for u in ("ada", "bo")}}
    before = planlib.from_settings(base)
    base["users"]["ada"]["memoryLimit"] = "4g"
    after = planlib.from_settings(base)

    def digest(plan, name):
        argv = argv_of(plan.users[name])
        return podman.spec_digest(argv, "OPENCODE_CONFIG_CONTENT={}\n", "sha256:1")

    assert digest(before, "ada") != digest(after, "ada")
    assert digest(before, "bo") == digest(after, "bo")
    # the host's flags are part of the spec: a new runtime recreates
    other_host = podman.run_argv(
        after.users["bo"], Host(run_args=()), "/var/lib/code-server-multi", "/run/csm/bo.config.env"
    )
    assert podman.spec_digest(other_host, "OPENCODE_CONFIG_CONTENT={}\n", "sha256:1") != digest(after, "bo")
    # so is the plain environment
    assert podman.spec_digest(argv_of(after.users["bo"]), "X=1\n", "sha256:1") != digest(after, "bo")
    # and the image the name stands for: a rebuilt image recreates
    assert podman.spec_digest(argv_of(after.users["bo"]), "OPENCODE_CONFIG_CONTENT={}\n", "sha256:2") != digest(
        after, "bo"
    )


def test_spec_label_goes_before_the_image(team):
    argv = argv_of(team.users["ada"])
    labelled = podman.with_spec_label(argv, "abc")
    assert f"--label={podman.SPEC_LABEL}=abc" in labelled
    assert labelled.index(f"--label={podman.SPEC_LABEL}=abc") < labelled.index(team.users["ada"].container.image)
    assert [a for a in labelled if a != f"--label={podman.SPEC_LABEL}=abc"] == argv


def test_stack_label_names_the_state_dir(team):
    argv = argv_of(team.users["ada"])
    assert f"--label={podman.STACK_LABEL}=/var/lib/code-server-multi" in argv
    assert f"--label={team.labels.user}=ada" in argv  # from the plan


def test_the_container_restarts_and_joins_its_own_network(team):
    for user in team.users.values():
        argv = argv_of(user)
        assert f"--restart={user.container.restart}" in argv
        assert f"--network={user.network.name}" in argv
        create = podman.network_create_argv(user, HOST, "/var/lib/code-server-multi")
        assert create[:3] == ["podman", "network", "create"] and create[-1] == user.network.name
        assert "--opt=isolate=true" in create and "--disable-dns" in create
        assert f"--label={podman.STACK_LABEL}=/var/lib/code-server-multi" in create
    names = [u.network.name for u in team.users.values()]
    assert len(set(names)) == len(names)
