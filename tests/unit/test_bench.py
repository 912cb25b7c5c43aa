"""The benchmark's arithmetic, its baseline and its clients (its figures come from
`make bench`, never from a test)."""

import asyncio
import concurrent.futures
import html
import socket
import threading
import urllib.request
from pathlib import Path

import pytest

from csm import plan as planlib
from csm.bench import code_server, common, flood, gate, gate_requests, stack

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_of_a_known_sample():
    xs = [i / 1000 for i in range(1, 101)]
    assert common.percentile(xs, 50) in (0.05, 0.051)
    assert common.percentile(xs, 99) == 0.099
    assert common.percentile([0.2], 99) == 0.2


def test_a_figure_meets_its_goal_when_at_or_below_it():
    assert common.verdict(1.10, 1.10) == {"value": 1.10, "goal": 1.10, "met": True}
    assert not common.verdict(1.11, 1.10)["met"]
    assert common.goal_text(common.verdict(0.4, 1), " s") == "goal <= 1 s: met"
    assert common.goal_text(common.verdict(2, 1)) == "goal <= 1: MISSED"


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
    cmd = planlib.load(ROOT / "examples" / "demo.nix").users["demo"].container.cmd
    argv = stack.BareCodeServer(tmp_path, cmd).argv("/tmp/h")
    assert argv[:2] == [f"{tmp_path}/usr/local/bin/node", str(entry)]
    assert Path(argv[1]).read_text() == "// code-server\n"
    assert argv[-1] == "/tmp/h" and len(argv) == len(cmd) + 1  # the folder: the bare home
    # The plan's arguments one for one, except the values that name a place in the
    # container: those are the host's (the image's files mounted at tmp_path).
    plan_args, bare_args = cmd[1:-1], argv[2:-1]
    assert "--socket" in plan_args, "the plan's code-server listens on a socket"
    host_places = {
        "--socket": "/tmp/h/code-server.sock",
        "--user-data-dir": "/tmp/h/data",
        "--extensions-dir": str(tmp_path) + plan_args[plan_args.index("--extensions-dir") + 1],
    }
    for i, (planned, bare) in enumerate(zip(plan_args, bare_args, strict=True)):
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
    "/usr/local/bin/node /usr/local/lib/code-server/lib/vscode/extensions/node_modules/"
    "typescript/lib/tsserver.js": "TypeScript server",
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
        (tmp_path / "memory.stat").write_text(
            f"cache {200 * mib}\ntotal_rss {300 * mib}\ntotal_inactive_file {150 * mib}\n"
        )
    else:
        (tmp_path / "memory.current").write_text(f"{500 * mib}\n")
        (tmp_path / "memory.stat").write_text(f"anon {300 * mib}\nfile {200 * mib}\ninactive_file {150 * mib}\n")
    assert memory.cgroup_figures(tmp_path) == {"cgroup_mib": 350, "cgroup_anon_mib": 300}


# ---- the clients of code-server's socket and of the flood ---------------------------------


@pytest.fixture
def echo_socket(tmp_path):
    """A Unix socket that echoes each connection's bytes, then says how many it got
    after the client's half-close (so a forwarder must pass EOF on, and keep the
    other direction open)."""
    path = str(tmp_path / "echo.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                total = 0
                while data := conn.recv(65536):
                    total += len(data)
                    conn.sendall(data)
                conn.sendall(f"got {total}".encode())

    threading.Thread(target=serve, daemon=True).start()
    yield path
    server.close()


def test_the_forwarder_passes_bytes_both_ways_and_the_half_close(echo_socket):
    payload = bytes(range(256)) * 1024  # 256 KiB: more than one read
    with code_server.UnixForwarder(echo_socket) as fwd:
        assert fwd.url == f"http://127.0.0.1:{fwd.port}" and fwd.port
        for _ in range(2):  # one connection after another
            with socket.create_connection(("127.0.0.1", fwd.port), timeout=5) as c:
                threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR))).start()
                got = b""
                while data := c.recv(65536):
                    got += data
            assert got == payload + f"got {len(payload)}".encode()


def test_the_forwarder_closes_a_connection_it_cannot_pass_on(tmp_path):
    with code_server.UnixForwarder(str(tmp_path / "absent.sock")) as fwd:
        with socket.create_connection(("127.0.0.1", fwd.port), timeout=5) as c:
            assert c.recv(10) == b""


def test_http_on_a_unix_socket(tmp_path):
    from http.server import BaseHTTPRequestHandler
    from socketserver import UnixStreamServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"alive")

        def log_message(self, *args):
            pass

    class Server(UnixStreamServer):
        def get_request(self):
            request, _ = super().get_request()
            return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)

    path = str(tmp_path / "cs.sock")
    with Server(path, Hello) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        code_server.wait_for_health(path, timeout=5)
        assert code_server.socket_get(path, "/nothing")[0] == 404
        with code_server.UnixForwarder(path) as fwd:  # what Chromium gets
            assert urllib.request.urlopen(f"{fwd.url}/healthz", timeout=5).read() == b"alive"
        server.shutdown()


def answer(raw: bytes):
    async def read():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        first = await flood._read_answer(reader)
        return first, await reader.read()

    # A loop of its own, in a thread: the browser tests' loop may be running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_the_flood_reads_each_answer_to_its_end():
    assert answer(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nloginHTTP/1.1 401 Unauthorized\r\n") == (
        (401, False),
        b"HTTP/1.1 401 Unauthorized\r\n",
    )
    assert answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT") == (
        (200, False),
        b"NEXT",
    )
    assert answer(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") == ((503, True), b"")


WORKBENCH_PAGE = """\
<meta id="vscode-workbench-web-configuration" data-settings="{&quot;serverBasePath&quot;:&quot;.&quot;,
&quot;webviewEndpoint&quot;:&quot;stable-53c2f/static/out/vs/workbench/contrib/webview/browser/pre&quot;}">
<link rel="icon" href="./_static/src/browser/media/favicon.ico" />
<link rel="stylesheet" href="stable-53c2f/static/out/vs/code/browser/workbench/workbench.css">
<script type="module" src=""></script>
<script type="module" src="stable-53c2f/static/out/nls.messages.js"></script>"""


def test_the_static_assets_are_found_in_the_workbench_page():
    page = html.unescape(WORKBENCH_PAGE)
    assert sorted(gate_requests.ASSET.findall(page)) == [
        "stable-53c2f/static/out/nls.messages.js",
        "stable-53c2f/static/out/vs/code/browser/workbench/workbench.css",
    ]
    assert gate_requests.WEBVIEW.findall(page) == ["stable-53c2f/static/out/vs/workbench/contrib/webview/browser/pre"]


def test_the_gate_bench_defaults_are_the_issues_figures():
    args = gate.parser().parse_args([])
    assert (args.flood_rate, args.flood_seconds, args.rounds) == (1000, 60, 3)
    assert gate.parser().parse_args(["--flood-seconds", "10", "--json", "x.json"]).flood_seconds == 10
