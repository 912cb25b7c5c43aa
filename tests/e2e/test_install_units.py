"""`csm install-units` writes a systemd unit that brings the stack up at boot.

There is no systemd running here to boot, so the proof is in two halves: systemd's own
parser (`systemd-analyze verify`) accepts the unit without a warning, and the unit's
ExecStart and ExecStop, read back the way systemd reads them and run with only the
unit's environment, bring a stack of its own (user uma) up, answering through nginx,
and down again. Bad input writes no unit and never replaces a file it did not write."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from csm.runner import nginx, podman
from csm.runner.host import Host
from csm.testing import unit_file

pytestmark = pytest.mark.live
CSM = Path(sys.executable).with_name("csm")  # the venv's csm, as a person runs it
UNIT = "csm-test-uma.service"


@pytest.fixture(scope="module")
def setup(stack_kit):
    stack_kit.require_image()
    base = stack_kit.fresh_base_dir()
    http_port = stack_kit.free_port()
    settings = stack_kit.stack_settings(base, ["uma"], {"idleStopAfter": None})
    password = stack_kit.write_password(settings, "uma")
    (base / "settings.json").write_text(json.dumps(settings))
    nix = base / "uma's settings $HOME 50%.nix"  # to prove the quoting: systemd reads ' $ % specially
    nix.write_text(f'builtins.fromJSON (builtins.readFile "{base / "settings.json"}")\n')
    (base / "units").mkdir()
    yield {
        "base": base,
        "nix": nix,
        "state": base / "state",
        "port": http_port,
        "units": base / "units",
        "password": password,
    }
    subprocess.run([CSM, "down", "--unmount", "--state-dir", base / "state"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def install(setup, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CSM,
            "install-units",
            setup["nix"],
            "--http-port",
            str(setup["port"]),
            "--state-dir",
            setup["state"],
            "--unit-dir",
            setup["units"],
            "--unit",
            UNIT,
            *extra,
        ],
        capture_output=True,
        text=True,
    )


def test_the_unit_passes_systemds_own_check(setup):
    proc = install(setup)
    assert proc.returncode == 0, proc.stderr
    assert f"systemctl enable --now {UNIT}" in proc.stdout
    verify = subprocess.run(["systemd-analyze", "verify", setup["units"] / UNIT], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_the_units_commands_bring_the_stack_up_and_down(setup, web_client):
    assert install(setup).returncode == 0
    unit = unit_file.directives(setup["units"] / UNIT)
    env = dict(w.split("=", 1) for value in unit["Environment"] for w in unit_file.words(value, command=False))
    assert env["CSM_STATE_DIR"] == str(setup["state"])
    (start,), (stop,) = unit["ExecStart"], unit["ExecStop"]
    assert unit_file.words(start, env)[:3] == [str(CSM), "up", str(setup["nix"])]

    up = subprocess.run(unit_file.words(start, env), env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    url = f"http://uma.code.localhost:{setup['port']}"
    assert web_client.login(url, setup["password"]), "uma cannot log in through nginx"

    down = subprocess.run(unit_file.words(stop, env), env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert nginx.running_pid(setup["state"]) is None
    assert podman.inspect(Host.detect(), "csm-test-uma") is None


def test_a_file_it_did_not_write_is_never_replaced(setup):
    foreign = setup["units"] / "other.service"
    foreign.write_text("[Service]\nExecStart=/bin/true\n")
    proc = install(setup, "--unit", "other.service")
    assert proc.returncode == 2
    assert "was not written by `csm install-units`" in proc.stderr and "--unit" in proc.stderr
    assert foreign.read_text() == "[Service]\nExecStart=/bin/true\n"


def test_settings_that_do_not_evaluate_write_no_unit(setup):
    bad = setup["base"] / "bad.nix"
    bad.write_text('{ users.ada = { }; basePort = "x"; }\n')
    proc = subprocess.run(
        [
            CSM,
            "install-units",
            bad,
            "--state-dir",
            setup["base"] / "other-state",
            "--unit-dir",
            setup["units"],
            "--unit",
            "bad.service",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert "basePort" in proc.stderr
    assert not (setup["units"] / "bad.service").exists()
