"""Tier 0 for the NixOS VM tests (nixos-tests/): what can be checked without nixpkgs.

The VM tests themselves run only on a machine with Nix, KVM and a binary cache
(docs/nixos-tests.md). Here: the settings their server nodes use evaluate to a valid
plan; each test's script, built by Nix exactly as the driver gets it, compiles, passes
pyflakes with the driver's names (as the driver's own lint does), and calls only
csm.checks functions that exist, with arguments they accept. Parsing every .nix file
is test_plan.py's job.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from flake_outputs import evaluate
from pyflakes.api import check as pyflakes_check
from pyflakes.reporter import Reporter
from tier2 import FOUND

from csm import plan as planlib
from csm.checks import host, http, idle, image, limits, login, network, proxy, smoke, workbench
from csm.plan import nix_value

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "nixos-tests"
# Each VM test, its server's settings, and its nodes (the script's machine names).
VM_TESTS = {
    "server": ("server-settings.nix", ["client", "server"]),
    "acme-wildcard": ("acme-settings.nix", ["acme", "client", "dnsserver", "server"]),
}
# Names the NixOS test driver gives every test script besides the machines.
DRIVER_NAMES = [
    "start_all",
    "subtest",
    "machines",
    "driver",
    "log",
    "join_all",
    "retry",
    "run_tests",
    "test_script",
    "serial_stdout_on",
    "serial_stdout_off",
    "polling_condition",
    "create_machine",
    "vlans",
]
CHECK_MODULES = {
    "host": host,
    "http": http,
    "idle": idle,
    "image": image,
    "network": network,
    "login": login,
    "limits": limits,
    "proxy": proxy,
    "smoke": smoke,
    "workbench": workbench,
}


@pytest.fixture(scope="module")
def checks():
    """The flake's checks as test_flake_eval.py evaluates them: each VM test's nodes,
    and its script built with the plan of its settings as the server node."""
    return evaluate("outputs")["checks"]


@pytest.fixture(scope="module", params=sorted(VM_TESTS))
def vm_test(request, checks):
    name = request.param
    settings_file, nodes = VM_TESTS[name]
    return name, checks[name], nodes, TESTS / settings_file


def test_default_nix_lists_the_tests_the_flake_checks(checks):
    assert sorted(checks) == sorted(VM_TESTS)


def test_nodes_are_the_machines_the_script_drives(vm_test):
    _, evaluated, nodes, _ = vm_test
    assert evaluated["nodes"] == nodes


@pytest.mark.parametrize("settings_file", ["server-settings.nix", "acme-settings.nix"])
def test_server_settings_make_a_valid_plan(settings_file):
    plan = planlib.load(TESTS / settings_file)
    assert sorted(plan.users) == (["ada", "bo", "cy"] if settings_file == "server-settings.nix" else ["ada", "bo"])
    passwords = nix_value(TESTS / "passwords.nix")
    for name, user in plan.users.items():
        assert user.hostname == f"{name}.{plan.domain}"
        # server-node.nix writes each user's password file from passwords.nix, under /etc.
        assert user.password.file.startswith("/etc/code-server-multi-test/") and passwords[name]
    kinds = {u.password.hashed for u in plan.users.values()}
    assert kinds == {True, False}, "both password kinds (a hash, a plain password) are exercised"


def test_acme_settings_ask_for_a_wildcard_by_dns01():
    acme = planlib.load(TESTS / "acme-settings.nix").acme
    assert acme.enable and acme.dnsProvider == "exec"
    assert acme.extraDomainNames == [f"*.{acme.domain}"]
    assert acme.credentialsFile.startswith("/etc/code-server-multi-test/")


def test_script_constants_carry_the_plan_unchanged(vm_test):
    _, evaluated, _, settings_file = vm_test
    script = evaluated["testScript"]
    prelude = script[: script.index("\n#")]  # the constants, up to the script's first comment
    names: dict = {}
    exec(prelude, names)
    assert names["PLAN"] == planlib.to_json(planlib.load(settings_file))


def test_the_server_script_finds_the_image_contract_in_the_store():
    """The csm package ships only csm/: the script points csm at the package's copy of
    the sources, whose image/contract.json and versions.json are the checkout's."""
    script = evaluate("outputs.checks.server.testScript", store=True)
    names: dict = {}
    exec(script[: script.index("\n#")], names)
    for file in ("contract.json", "versions.json"):
        assert (Path(names["SOURCE_DIR"]) / "image" / file).read_bytes() == (ROOT / "image" / file).read_bytes()


def test_script_compiles_and_passes_pyflakes_with_the_driver_names(vm_test, monkeypatch):
    name, evaluated, nodes, _ = vm_test
    script = evaluated["testScript"]
    compile(script, f"{name} test script", "exec")
    monkeypatch.setenv("PYFLAKES_BUILTINS", ",".join(nodes + DRIVER_NAMES))

    class Collect:
        def __init__(self):
            self.lines = []

        def write(self, text):
            self.lines.append(text)

        def flush(self):
            pass

    out = Collect()
    problems = pyflakes_check(script, f"{name} test script", Reporter(out, out))
    assert problems == 0, "".join(out.lines)


def test_script_calls_only_checks_that_exist_with_arguments_they_take(vm_test):
    name, evaluated, _, _ = vm_test
    tree = ast.parse(evaluated["testScript"])
    calls = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in CHECK_MODULES:
            assert hasattr(CHECK_MODULES[node.value.id], node.attr), (
                f"{name}: csm.checks.{node.value.id}.{node.attr} does not exist"
            )
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in CHECK_MODULES
        ):
            target = getattr(CHECK_MODULES[node.func.value.id], node.func.attr, None)
            assert target, f"{name}: csm.checks.{node.func.value.id}.{node.func.attr} does not exist"
            signature = inspect.signature(target)
            try:
                signature.bind(*[None] * len(node.args), **{k.arg: None for k in node.keywords if k.arg})
            except TypeError as e:
                pytest.fail(
                    f"{name}: {node.func.value.id}.{node.func.attr}{signature} called at line "
                    f"{node.lineno} with {len(node.args)} arguments and {[k.arg for k in node.keywords]}: {e}"
                )
            calls += 1
    if name == "server":
        assert calls > 0, "the server test runs csm.checks"


def test_csm_smoke_takes_the_options_the_server_test_gives_it(checks):
    script = checks["server"]["testScript"]
    invocations = [part[: part.index(")")] for part in script.split('"csm smoke')[1:]]
    assert len(invocations) == 3, "the server test runs csm smoke for the deployment, the login limits and one /64"
    options = {o for action in smoke.parser()._actions for o in action.option_strings}
    for invocation in invocations:
        used = set(re.findall(r"(--[a-z][a-z-]*)", invocation))
        assert used and used <= options, f"csm smoke has no {sorted(used - options)}"


@pytest.mark.tier2
@FOUND
@pytest.mark.parametrize("settings_file", ["server-settings.nix", "acme-settings.nix"])
def test_the_module_accepts_the_server_settings(settings_file):
    from test_module_tier2 import evaluate

    module = evaluate(TESTS / settings_file)
    assert module["assertions"] == []
    plan = planlib.load(TESTS / settings_file)
    assert sorted(module["containers"]) == sorted(f"code-server-{n}" for n in plan.users)
    # The gate gets exactly the files server-node.nix writes (one per user, under /etc).
    gate = module["services"][plan.gate.unit.removesuffix(".service")]
    assert sorted(gate["serviceConfig"]["LoadCredential"]) == sorted(
        f"{n}:{u.password.file}" for n, u in plan.users.items()
    )


@FOUND
def test_the_server_script_reads_the_plan_where_the_module_writes_it():
    """PLAN_FILE comes from the server node's planFile: the csm commands the script runs
    take the same --plan as the units the module writes."""
    from tier2 import NIXPKGS_LIB

    server = evaluate("outputs", nixpkgs_lib=NIXPKGS_LIB)["checks"]["server"]
    names: dict = {}
    exec(server["testScript"][: server["testScript"].index("\n#")], names)
    assert f" --plan {names['PLAN_FILE']} " in server["server"]["gate"]["execStart"]


def test_the_plan_files_path_is_written_once_as_the_planfile_option():
    """The module's units and the VM tests read services.code-server-multi.planFile;
    a second copy of its path would go stale the day it moves."""
    path = "/etc/code-server-multi/plan.json"
    copies = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in sorted([*(ROOT / "modules").rglob("*.nix"), *TESTS.iterdir()])
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if path in line and not line.lstrip().startswith("#")
    ]
    # one line of default.nix: planFile's default
    assert [c.split(":")[0] for c in copies] == ["modules/code-server-multi/default.nix"], copies


def test_the_server_test_has_a_user_who_is_stopped_when_idle_and_two_who_stay_on():
    plan = planlib.load(TESTS / "server-settings.nix")
    assert plan.users["cy"].idle.stopAfterSeconds == 30 and plan.idle.users == ["cy"]
    assert planlib.load(TESTS / "acme-settings.nix").idle.enable is False
