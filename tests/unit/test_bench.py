"""The benchmark's arithmetic and its baseline (its figures come from `make bench`,
never from a test)."""
from pathlib import Path

from csm import bench
from csm import plan as planlib

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_of_a_known_sample():
    xs = [i / 1000 for i in range(1, 101)]
    assert bench.percentile(xs, 50) in (0.05, 0.051)
    assert bench.percentile(xs, 99) == 0.099
    assert bench.percentile([0.2], 99) == 0.2


def test_the_bare_baseline_runs_the_plans_command_with_host_places():
    cmd = planlib.load(ROOT / "examples" / "demo.nix")["users"]["demo"]["container"]["cmd"]
    argv = bench.BareCodeServer(Path("/mnt/img"), cmd).argv(4321, "/tmp/h")
    assert argv[:2] == ["/mnt/img/usr/local/bin/node", f"/mnt/img/{bench.CODE_SERVER_ENTRY}"]
    assert argv[-1] == "/tmp/h" and len(argv) == len(cmd) + 1  # the folder: the bare home
    # The plan's arguments one for one, except the values that name a place in the
    # container: those are the host's (the image's files mounted at /mnt/img).
    plan_args, bare_args = cmd[1:-1], argv[2:-1]
    host_places = {"--bind-addr": "127.0.0.1:4321", "--user-data-dir": "/tmp/h/data",
                   "--extensions-dir": "/mnt/img" + plan_args[plan_args.index("--extensions-dir") + 1]}
    for i, (planned, bare) in enumerate(zip(plan_args, bare_args)):
        assert bare == host_places.get(plan_args[i - 1], planned) if i else bare == planned, (i, planned, bare)
