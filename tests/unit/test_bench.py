"""The benchmark's arithmetic and its baseline (its figures come from `make bench`,
never from a test)."""
from pathlib import Path

import pytest

from csm import bench
from csm import plan as planlib

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_of_a_known_sample():
    xs = [i / 1000 for i in range(1, 101)]
    assert bench.percentile(xs, 50) in (0.05, 0.051)
    assert bench.percentile(xs, 99) == 0.099
    assert bench.percentile([0.2], 99) == 0.2


def image_tree(root: Path, link: str) -> Path:
    """An image's /usr/local as the portable recipe lays it out: code-server a link to
    npm's link to the entry script (relative links), or one absolute link."""
    entry = root / "usr/local/lib/code-server/out/node/entry.js"
    entry.parent.mkdir(parents=True)
    entry.write_text("// code-server\n")
    (root / "usr/local/bin").mkdir(parents=True)
    if link == "relative":
        npm_bin = root / "usr/local/lib/code-server/node_modules/.bin"
        npm_bin.mkdir(parents=True)
        (npm_bin / "code-server").symlink_to("../../out/node/entry.js")
        (root / "usr/local/bin/code-server").symlink_to("../lib/code-server/node_modules/.bin/code-server")
    else:  # absolute: inside the image, never the host's /usr/local
        (root / "usr/local/bin/code-server").symlink_to("/usr/local/lib/code-server/out/node/entry.js")
    return entry


@pytest.mark.parametrize("link", ["relative", "absolute"])
def test_the_bare_baseline_runs_the_plans_command_with_host_places(tmp_path, link):
    entry = image_tree(tmp_path, link)
    cmd = planlib.load(ROOT / "examples" / "demo.nix")["users"]["demo"]["container"]["cmd"]
    argv = bench.BareCodeServer(tmp_path, cmd).argv(4321, "/tmp/h")
    assert argv[:2] == [f"{tmp_path}/usr/local/bin/node", str(entry)]
    assert Path(argv[1]).read_text() == "// code-server\n"
    assert argv[-1] == "/tmp/h" and len(argv) == len(cmd) + 1  # the folder: the bare home
    # The plan's arguments one for one, except the values that name a place in the
    # container: those are the host's (the image's files mounted at tmp_path).
    plan_args, bare_args = cmd[1:-1], argv[2:-1]
    host_places = {"--bind-addr": "127.0.0.1:4321", "--user-data-dir": "/tmp/h/data",
                   "--extensions-dir": str(tmp_path) + plan_args[plan_args.index("--extensions-dir") + 1]}
    for i, (planned, bare) in enumerate(zip(plan_args, bare_args)):
        assert bare == host_places.get(plan_args[i - 1], planned) if i else bare == planned, (i, planned, bare)


# The memory profile's roles: the command lines a running idle user's container shows.
ROLE_CASES = {
    "/usr/bin/tini -- code-server --bind-addr 0.0.0.0:8080 --auth password": "tini",
    "node /usr/local/bin/code-server --bind-addr 0.0.0.0:8080": "code-server server",
    "/usr/local/bin/node /usr/local/lib/code-server/out/node/entry": "code-server server",
    "/usr/local/bin/node --dns-result-order=ipv4first /usr/local/lib/code-server/lib/vscode/out/bootstrap-fork "
    "--type=extensionHost --transformURIs": "extension host",
    "/usr/local/bin/node /usr/local/lib/code-server/lib/vscode/out/bootstrap-fork --type=ptyHost": "pty host",
    "/usr/local/bin/node /usr/local/lib/code-server/lib/vscode/out/bootstrap-fork --type=fileWatcher": "file watcher",
    "/usr/local/bin/node /usr/local/lib/code-server/lib/vscode/extensions/json-language-features/server/dist/node/"
    "jsonServerMain --node-ipc --clientProcessId=12": "language servers",
    "/usr/local/bin/node /usr/local/lib/code-server/lib/vscode/extensions/node_modules/typescript/lib/tsserver.js":
        "TypeScript server",
    "/usr/bin/bash --init-file /usr/local/lib/code-server/lib/vscode/out/vs/workbench/contrib/terminal/common/"
    "scripts/shellIntegration-bash.sh": "shell",
    "/usr/local/bin/opencode serve --port 4096": "opencode",
    "/usr/bin/git status": "other: git",
}


@pytest.mark.parametrize("cmdline", ROLE_CASES)
def test_memory_roles_by_command_line(cmdline):
    from csm.testing import memory
    assert memory.role(cmdline) == ROLE_CASES[cmdline]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_cgroup_figures_leave_out_inactive_file_cache(tmp_path, version):
    from csm.testing import memory
    mib = memory.MIB
    if version == "v1":
        (tmp_path / "memory.usage_in_bytes").write_text(f"{500 * mib}\n")
        (tmp_path / "memory.stat").write_text(f"cache {200 * mib}\ntotal_rss {300 * mib}\ntotal_inactive_file {150 * mib}\n")
    else:
        (tmp_path / "memory.current").write_text(f"{500 * mib}\n")
        (tmp_path / "memory.stat").write_text(f"anon {300 * mib}\nfile {200 * mib}\ninactive_file {150 * mib}\n")
    assert memory.cgroup_figures(tmp_path) == {"cgroup_mib": 350, "cgroup_anon_mib": 300}
