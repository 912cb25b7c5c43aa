"""`csm status --plan` and `csm logs --plan` on a NixOS host, live: the user's container really runs and
passes its health check (started here by the runner from the same plan, as the
module's unit would), nginx and the unit are systemd's (played by
csm.testing.systemctl, as this host has no systemd)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from csm import plan as planlib
from csm.testing.systemctl import SystemctlStandIn

pytestmark = pytest.mark.live
USER = "nils"  # no other live stack uses it: container names are global


@pytest.fixture(scope="module")
def nixos_stack(live_stack_factory):
    stack = live_stack_factory([USER])
    yield stack
    stack.close()


def unit(stack) -> str:
    """The user's unit, as the NixOS module names it after the container."""
    return f"podman-{stack.container(USER)}.service"


def status(stack, tmp_path, systemd, *args):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(planlib.to_json(stack.plan)))
    return subprocess.run(
        [sys.executable, "-m", "csm.cli", "status", "--plan", str(plan), "--state-dir", str(tmp_path / "state"), *args],
        capture_output=True,
        text=True,
        env=systemd.env(),
    )


def test_status_is_healthy_when_nginx_the_unit_and_the_container_are(nixos_stack, tmp_path):
    systemd = SystemctlStandIn(tmp_path)
    systemd.set("nginx.service", "active", pid=4242)
    systemd.set(nixos_stack.plan.gate.unit, "active", pid=4343)
    systemd.set(unit(nixos_stack), "active", restarts=3)
    proc = status(nixos_stack, tmp_path, systemd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nginx (nginx.service): running (pid 4242), port 80" in proc.stdout
    assert f"gate ({nixos_stack.plan.gate.unit}): running (pid 4343)" in proc.stdout
    assert f"{nixos_stack.container(USER)}  running" in proc.stdout and "healthy" in proc.stdout
    # systemd recreates the container on each restart: its count is the unit's NRestarts.
    user = json.loads(status(nixos_stack, tmp_path, systemd, "--json").stdout)["users"][0]
    assert user["restarts"] == 3


def test_status_is_unhealthy_when_nginx_or_the_unit_is_not(nixos_stack, tmp_path):
    systemd = SystemctlStandIn(tmp_path)
    systemd.set(unit(nixos_stack), "active")
    systemd.set(nixos_stack.plan.gate.unit, "active", pid=4343)
    assert status(nixos_stack, tmp_path, systemd).returncode == 1  # nginx.service inactive
    systemd.set("nginx.service", "active", pid=4242)
    systemd.set(nixos_stack.plan.gate.unit, "failed")
    assert status(nixos_stack, tmp_path, systemd).returncode == 1  # nobody can log in
    systemd.set(nixos_stack.plan.gate.unit, "active", pid=4343)
    systemd.set(unit(nixos_stack), "deactivating")
    proc = status(nixos_stack, tmp_path, systemd, "--json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["units"] == {USER: "deactivating"}


def test_logs_with_the_plan_show_the_containers_log(nixos_stack, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(planlib.to_json(nixos_stack.plan)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "csm.cli",
            "logs",
            USER,
            "--plan",
            str(plan),
            "--tail",
            "50",
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    socket = nixos_stack.plan.users[USER].container.socket
    assert f"HTTP server listening on {socket}" in proc.stdout + proc.stderr
