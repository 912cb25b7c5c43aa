"""The benchmark's arithmetic (its figures come from `make bench`, never from a test)."""
from csm import bench


def test_percentiles_of_a_known_sample():
    xs = [i / 1000 for i in range(1, 101)]
    assert bench.percentile(xs, 50) in (0.05, 0.051)
    assert bench.percentile(xs, 99) == 0.099
    assert bench.percentile([0.2], 99) == 0.2


def test_podman_memory_usage_is_read_in_its_units():
    assert bench.parse_usage("612.3MB / 3.221GB") == 612_300_000
    assert bench.parse_usage("1.5GiB / 3GiB") == 3 * 1024**3 // 2
    assert bench.parse_usage("512kB / 1GB") == 512_000


def test_report_names_every_figure_and_its_ratio():
    r = {"machine": {"cpus": 2, "memory_gib": 23.5, "kernel": "6"}, "image_bytes": 956e6,
         "cold_start": {"container_via_nginx_s": 0.4, "bare_process_s": 0.3, "ratio": 1.33},
         "workbench_s": {"via_nginx": 3.1, "direct": 3.0, "ratio": 1.03},
         "websocket": {"via_nginx_ms": {"p50": 0.16, "p99": 3.4}, "direct_ms": {"p50": 0.07, "p99": 2.0}, "ratio_p50": 2.2},
         "memory": {"one_idle_user_mib": 612, "five_users_mib": 2345},
         "new_user": {"first_start_s": 1.8, "second_start_s": 1.7, "ratio": 1.06}}
    text = bench.report(r)
    for figure in ("956 MB", "ratio 1.33", "ratio 1.03", "p50 ratio 2.20", "612 MiB", "2345 MiB", "ratio 1.1"):
        assert figure in text, figure


def test_the_bare_baseline_runs_the_plans_command_with_host_places():
    cmd = ["code-server", "--bind-addr", "0.0.0.0:8080", "--auth", "password", "--disable-telemetry",
           "--extensions-dir", "/opt/code-server/extensions", "--user-data-dir", "/home/coder/.local/x",
           "/home/coder/project"]
    argv = bench.BareCodeServer(bench.Path("/mnt/img"), cmd).argv(4321, "/tmp/h")
    assert argv[:2] == ["/mnt/img/usr/local/bin/node", f"/mnt/img/{bench.CODE_SERVER_ENTRY}"]
    assert argv[2:] == ["--bind-addr", "127.0.0.1:4321", "--auth", "password", "--disable-telemetry",
                        "--extensions-dir", "/mnt/img/opt/code-server/extensions", "--user-data-dir", "/tmp/h/data",
                        "/tmp/h"]
