"""The host-side checks (csm.checks.host) against live containers.

The shared stack (ada, bo) gets the checks that change nothing. The destructive ones
(memory hog, fork bomb, kill -9, CPU load) run on a stack of their own, `limits`, whose
user `greedy` has small limits that make each check sharp on this 2-core host and
whose `calm` is the neighbour; it also serves HTTPS, so the deployment checks run once
over TLS as well.
"""

from dataclasses import replace

import pytest

from csm.checks import CheckFailed, facts, host, http, proxy, workbench
from csm.checks import limits as limit_checks  # `limits` is the limits stack's fixture
from csm.checks.commands import subprocess_runner

pytestmark = pytest.mark.live
run = subprocess_runner

GREEDY_LIMITS = {"memoryLimit": "1g", "memorySoftLimit": "768m", "cpuLimit": "0.5", "pidsLimit": 256}


@pytest.fixture(scope="module")
def limits(live_stack_factory):
    stack = live_stack_factory(["greedy", "calm"], extra_settings={"users": {"greedy": GREEDY_LIMITS}}, tls=True)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def greedy(limits):
    return limits.plan.users["greedy"]


# ---- the shared stack: nothing changes ---------------------------------------------


@pytest.mark.parametrize("name", ["ada", "bo"])
def test_memory_limit_matches_plan(live_stack, name):
    limit_checks.memory_limit_matches_plan(run, live_stack.plan.users[name])


@pytest.mark.parametrize("name", ["ada", "bo"])
def test_processes_run_as_mapped_uid(live_stack, name):
    host.processes_run_as_mapped_uid(run, live_stack.plan.users[name])


@pytest.mark.parametrize("name", ["ada", "bo"])
def test_no_tcp_port_only_the_socket(live_stack, name):
    host.no_tcp_port(run, live_stack.plan.users[name])
    host.socket_only_for_root_and_nginx(run, live_stack.plan.users[name])


def test_opencode_answers(live_stack):
    host.opencode_answers(run, live_stack.plan.users["ada"])


def test_image_extensions_listed(live_stack):
    host.image_extensions_listed(run, live_stack.plan.users["ada"])


def test_the_extension_check_requires_opencode_when_asked(live_stack):
    ada = live_stack.plan.users["ada"]
    image = run(f"podman inspect --format '{{{{.Image}}}}' {ada.container.name}").strip()
    if facts.opencode_extension_id() in run(f"podman image inspect --format '{{{{json .Config.Labels}}}}' {image}"):
        assert facts.opencode_extension_id() in host.image_extensions_listed(run, ada, require_opencode=True)
    else:  # a portable image built without the VSIX
        with pytest.raises(CheckFailed, match=r"does not list \['sst-dev.opencode'\]"):
            host.image_extensions_listed(run, ada, require_opencode=True)


def test_the_uid_check_sees_a_wrong_uid(live_stack):
    ada = live_stack.plan.users["ada"]
    wrong = replace(ada, ids=replace(ada.ids, hostUid=0))
    with pytest.raises(CheckFailed, match="not running as host uid 0"):
        host.processes_run_as_mapped_uid(run, wrong)


def test_the_memory_check_sees_another_limit(live_stack):
    ada = live_stack.plan.users["ada"]
    wrong = replace(ada, limits=replace(ada.limits, memoryBytes=ada.limits.memoryBytes * 2))
    with pytest.raises(CheckFailed, match="memory limit in force is"):
        limit_checks.memory_limit_matches_plan(run, wrong)


# ---- the limits stack: over TLS, then destructive ----------------------------------


@pytest.mark.parametrize(
    "check",
    [
        "healthz_answers",
        "right_password_gives_session",
        "websocket_speaks_vscode_protocol",
        "foreign_origin_websocket_refused",
    ],
)
def test_deployment_checks_over_tls(limits, check):
    target = http.Target(limits.url("calm"), limits.password("calm"), ca_file=str(limits.ca_file))
    assert target.scheme == "https"
    getattr(workbench, check)(target)


def test_unknown_host_over_tls_gets_landing_page(limits):
    target = http.Target(limits.url("calm"), ca_file=str(limits.ca_file))
    proxy.unknown_host_gets_landing_page(target, limits.plan.nginx["defaultServer"]["landingHtml"])


def test_small_memory_limit_in_force(greedy):
    assert "1073741824 bytes" in limit_checks.memory_limit_matches_plan(run, greedy)


def test_memory_hog_killed_neighbour_healthy(limits, greedy):
    limit_checks.memory_hog_killed_neighbour_healthy(run, greedy, limits.plan.users["calm"])


def test_fork_bomb_stopped_by_pids_limit(greedy):
    assert "pids limit 256" in limit_checks.fork_bomb_stopped_by_pids_limit(run, greedy)


def test_cpu_quota_holds(greedy):
    limit_checks.cpu_quota_holds(run, greedy)


def test_workspace_survives_kill(limits, greedy):
    # The runner brings the killed container back, as `csm up` would after a crash.
    host.workspace_survives_kill(run, greedy, restart=limits.stack.up)
