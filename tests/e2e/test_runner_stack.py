"""The runner live, through the csm command line, as an admin uses it: up, up again,
a settings change, a new password, reset, status, backup and restore, a user
removed, logs, down and up again. The tests share one stack of their own (users rita
and sam) for speed, but none relies on another having run: each starts with
`cli.given(...)`, which brings the stack to the base settings plus what the test
needs. Settings are JSON read by a small Nix file, so a test can change them."""

from __future__ import annotations

import copy
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from csm.runner import files, podman
from csm.runner.host import Host
from csm.runner.preflight import port_free
from csm.runner.stack import Stack
from csm.testing.stacks import IMAGE

pytestmark = pytest.mark.live
USERS = ["rita", "sam"]
HOST = Host.detect()
RITA_AT_1G = {"users": {"rita": {"memoryLimit": "1g", "memorySoftLimit": "900m"}}}


class CliStack:
    def __init__(self, kit):
        kit.require_image()
        self.merge = kit.merge
        self.base = kit.fresh_base_dir()
        self.state = self.base / "state"
        self.http_port = kit.free_port()
        self.settings = kit.stack_settings(self.base, USERS)
        self.base_settings = copy.deepcopy(self.settings)
        self.passwords = {u: kit.write_password(self.settings, u) for u in USERS}
        self.json = self.base / "settings.json"
        self.nix = self.base / "settings.nix"
        self.nix.write_text(f'builtins.fromJSON (builtins.readFile "{self.json}")\n')
        self.write()

    def write(self):
        self.json.write_text(json.dumps(self.settings))

    def given(self, changes: dict | None = None) -> subprocess.CompletedProcess:
        """The stack up, on the base settings (rita and sam, default limits) with
        `changes` merged in; only what differs from the running stack is recreated."""
        self.settings = self.merge(copy.deepcopy(self.base_settings), changes or {})
        self.write()
        return self.up()

    def csm(self, *args, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "csm.cli", *map(str, args), "--state-dir", str(self.state)],
            input=stdin,
            capture_output=True,
            text=True,
        )

    def up(self) -> subprocess.CompletedProcess:
        proc = self.csm("up", self.nix, "--http-port", self.http_port)
        assert proc.returncode == 0, proc.stderr
        return proc

    @property
    def plan(self) -> dict:
        return Stack.from_state(self.state).plan

    def url(self, user: str) -> str:
        return f"http://{user}.code.localhost:{self.http_port}"

    def container(self, user: str) -> dict | None:
        """The user's container, found the way the runner finds its own (labels), so
        also after the user left the settings."""
        mine = [
            c
            for c in podman.containers(HOST, f"{self.plan.labels.user}={user}")
            if (c.get("Labels") or {}).get(podman.STACK_LABEL) == str(self.state)
        ]
        return podman.inspect(HOST, mine[0]["Names"][0]) if mine else None

    def container_name(self, user: str) -> str:
        return self.plan.users[user].container.name

    def user_dir(self, user: str) -> Path:
        return Path(self.settings["workspaceBase"]) / user

    def exec(self, user: str, script: str) -> str:
        proc = subprocess.run(
            ["podman", "exec", self.container_name(user), "sh", "-c", script], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(scope="module")
def cli(stack_kit):
    s = CliStack(stack_kit)
    try:
        yield s
    finally:
        s.csm("down", "--unmount")
        shutil.rmtree(s.base, ignore_errors=True)


def ids(cli: CliStack) -> dict[str, str | None]:
    return {u: (c or {}).get("Id") for u, c in ((u, cli.container(u)) for u in USERS)}


def test_up_prints_each_address_and_each_user_gets_the_workbench(cli, web_client):
    proc = cli.given()
    for user in USERS:
        assert cli.url(user) in proc.stdout
        cookie = web_client.login(cli.url(user), cli.passwords[user])
        assert "workbench" in web_client.workbench(cli.url(user), cookie)


def test_the_running_config_passes_nginx_and_gixy(cli, stack_kit):
    cli.given()
    conf = cli.state / "nginx.conf"
    assert stack_kit.gixy_issues(conf) == []
    check = subprocess.run(
        ["nginx", "-t", "-q", "-c", str(conf), "-p", f"{cli.state}/", "-e", str(cli.state / "logs" / "error.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_directories_have_the_plans_owners_and_modes(cli):
    cli.given()
    plan = cli.plan
    for d in plan.directories + [d for u in plan.users.values() for d in u.directories]:
        st = Path(d.path).stat()
        owner = (files.account_id(d.uid, "user"), files.account_id(d.gid, "group"), oct(int(d.mode, 8)))
        assert (st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))) == owner, d


def test_the_password_reaches_only_the_gate_and_no_command_line(cli):
    """The container gets neither the password nor its hash; the gate's copy is its
    account's alone (0400 in a 0700 directory)."""
    cli.given()
    plan = cli.plan
    gate_user = pwd.getpwnam(plan.gate.user)
    credentials = cli.state / "credentials"
    assert (credentials.stat().st_uid, stat.S_IMODE(credentials.stat().st_mode)) == (gate_user.pw_uid, 0o700)
    for user in USERS:
        hashed = Path(cli.settings["users"][user]["hashedPasswordFile"]).read_text().strip()
        copy = credentials / user
        assert copy.read_text().strip() == hashed
        assert (copy.stat().st_uid, stat.S_IMODE(copy.stat().st_mode)) == (gate_user.pw_uid, 0o400)
        info = cli.container(user)
        assert not any(hashed in e or "PASSWORD" in e for e in info["Config"]["Env"]), "the container got the password"
        create_command = " ".join(info["Config"]["CreateCommand"])
        assert hashed not in create_command and cli.passwords[user] not in create_command
        config = plan.users[user].container.environment["OPENCODE_CONFIG_CONTENT"]
        assert config not in create_command  # config arrives by env file too: `ps` shows none of it
        assert not any(hashed in v or config in v for v in info["Config"]["Labels"].values())
        assert f"OPENCODE_CONFIG_CONTENT={config}" in info["Config"]["Env"]
    for user in USERS:
        assert not any(cli.passwords[user].encode() in c for c in cmdlines())


def cmdlines() -> list[bytes]:
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(p.read_bytes())
        except OSError:
            pass  # the process ended meanwhile
    return found


def test_up_twice_changes_nothing(cli):
    cli.given()
    before = ids(cli)
    started = {u: cli.container(u)["State"]["StartedAt"] for u in USERS}
    pid = (cli.state / "nginx.pid").read_text()
    conf = (cli.state / "nginx.conf").stat().st_mtime_ns
    proc = cli.up()
    assert "nothing to change" in proc.stderr
    assert ids(cli) == before
    assert {u: cli.container(u)["State"]["StartedAt"] for u in USERS} == started
    assert (cli.state / "nginx.pid").read_text() == pid
    assert (cli.state / "nginx.conf").stat().st_mtime_ns == conf


def test_a_settings_change_recreates_only_that_user(cli, web_client):
    cli.given()
    before = ids(cli)
    proc = cli.given(RITA_AT_1G)
    assert "recreating csm-test-rita: its settings or its image changed" in proc.stderr
    after = ids(cli)
    assert after["sam"] == before["sam"] and after["rita"] != before["rita"]
    assert cli.container("rita")["HostConfig"]["Memory"] == 2**30
    cookie = web_client.login(cli.url("rita"), cli.passwords["rita"])
    assert "workbench" in web_client.workbench(cli.url("rita"), cookie)


def test_status_reports_health_memory_oom_and_activity(cli, web_client):
    cli.given(RITA_AT_1G)
    for user in USERS:  # activity: code-server counts requests, and rita's container is new
        web_client.workbench(cli.url(user), web_client.login(cli.url(user), cli.passwords[user]))
    proc = cli.csm("status", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = json.loads(proc.stdout)
    assert status["healthy"] and status["nginx_pid"]
    for u in status["users"]:
        assert (u["state"], u["health"]) == ("running", "healthy")
        assert 0 < u["memory_bytes"] < u["memory_limit_bytes"]
        assert u["memory_limit_bytes"] == cli.plan.users[u["name"]].limits.memoryBytes
        assert isinstance(u["oom_kills"], int)  # the kernel's count; the next test makes it move
        assert u["last_activity"] is not None
    table = cli.csm("status")
    assert table.returncode == 0
    assert re.search(
        r"^rita\s+csm-test-rita\s+running\s+healthy\s+\d+ MiB / 1\.0 GiB\s+"
        r"\d+ MiB / 20\.0 GiB \(\d+%\)\s+\d+\s+\d+\s+\d{4}-",
        table.stdout,
        re.M,
    ), table.stdout
    for u in status["users"]:  # each on a disk of the default quota
        assert u["disk_quota_bytes"] == 20 * 2**30 and 0 < u["disk_used_bytes"] < u["disk_size_bytes"], u


def status_of(cli: CliStack) -> dict[str, dict]:
    return {u["name"]: u for u in json.loads(cli.csm("status", "--json").stdout)["users"]}


def test_status_counts_an_oom_kill(cli):
    cli.given(RITA_AT_1G)  # a process asking rita's container for 1.5 GiB is killed
    before = status_of(cli)
    hog = subprocess.run(
        ["podman", "exec", "csm-test-rita", "python3", "-c", "b = bytearray(1536 * 2**20)"],
        capture_output=True,
        text=True,
    )
    assert hog.returncode == 137, hog.stderr
    after = status_of(cli)
    assert after["rita"]["oom_kills"] == before["rita"]["oom_kills"] + 1 and after["rita"]["health"] == "healthy"
    assert after["sam"]["oom_kills"] == before["sam"]["oom_kills"]

    # kill -9 ends a process with the same 137, and is no OOM kill: not of a process
    # in the container, nor of the container's own (which stops it).
    killed = subprocess.run(
        ["podman", "exec", "csm-test-rita", "sh", "-c", "kill -9 $$"], capture_output=True, text=True
    )
    assert killed.returncode == 137, killed.stderr
    subprocess.run(["podman", "kill", "--signal=KILL", "csm-test-sam"], check=True, capture_output=True)
    subprocess.run(["podman", "wait", "csm-test-sam"], check=True, capture_output=True)
    now = status_of(cli)
    assert now["rita"]["oom_kills"] == after["rita"]["oom_kills"]
    assert (now["sam"]["state"], now["sam"]["exit_code"], now["sam"]["oom_kills"]) == ("exited", 137, None)


def test_passwd_takes_effect_at_once_for_that_user_only(cli, web_client):
    """No container is touched: the gate has the new password at once."""
    cli.given()
    before = ids(cli)
    sam_cookie = web_client.login(cli.url("sam"), cli.passwords["sam"])
    proc = cli.csm("passwd", "rita", stdin="a new password for rita\n")
    assert proc.returncode == 0, proc.stderr
    assert "the gate has the new password" in proc.stdout
    assert ids(cli) == before
    assert "workbench" in web_client.workbench(cli.url("sam"), sam_cookie), "sam's session ended too"
    cli.passwords["rita"] = "a new password for rita"
    cookie = web_client.login(cli.url("rita"), cli.passwords["rita"])
    assert "workbench" in web_client.workbench(cli.url("rita"), cookie)
    assert "nothing to change" in cli.up().stderr


def test_reset_gives_a_fresh_container_and_keeps_workspace_and_home(cli):
    cli.given()
    cli.exec(
        "rita",
        "echo kept > ~/project/hello.txt && mkdir -p ~/.config/demo && echo yes > ~/.config/demo/setting"
        " && touch /tmp/scratch",
    )
    before = ids(cli)
    proc = cli.csm("reset", "rita")
    assert proc.returncode == 0, proc.stderr
    after = ids(cli)
    assert after["rita"] != before["rita"] and after["sam"] == before["sam"]
    assert cli.exec("rita", "cat ~/project/hello.txt ~/.config/demo/setting") == "kept\nyes\n"
    assert cli.exec("rita", "test -e /tmp/scratch && echo there || echo gone") == "gone\n"
    host_file = cli.user_dir("rita") / "workspace" / "hello.txt"
    assert host_file.stat().st_uid == cli.plan.users["rita"].ids.hostUid


def test_backup_and_restore_into_the_running_stack(cli):
    cli.given()
    cli.exec(
        "rita",
        "mkdir -p ~/project/keep && echo one > ~/project/keep/a && chmod 640 ~/project/keep/a"
        " && chmod 750 ~/project/keep && ln -sf a ~/project/keep/link",
    )
    keep = cli.user_dir("rita") / "workspace" / "keep"

    def snapshot():
        return {
            p.name: (
                p.lstat().st_uid,
                p.lstat().st_gid,
                stat.S_IMODE(p.lstat().st_mode),
                p.read_bytes() if p.is_file() and not p.is_symlink() else None,
            )
            for p in [keep, *keep.iterdir()]
        }

    before = snapshot()
    proc = cli.csm("backup", "--to", cli.base / "backups")
    assert proc.returncode == 0, proc.stderr
    archive = Path(proc.stdout.strip())
    assert archive.is_file() and archive.parent == cli.base / "backups"
    assert "paused csm-test-rita" in proc.stderr
    assert all(cli.container(u)["State"]["Status"] == "running" for u in USERS)  # resumed

    cli.exec("rita", "rm ~/project/keep/a && echo later > ~/project/keep/b")
    dee_before = ids(cli)["sam"]
    proc = cli.csm("restore", archive, "--user", "rita")
    assert proc.returncode == 0, proc.stderr
    assert snapshot() == before
    assert cli.exec("rita", "cat ~/project/keep/a") == "one\n"  # the container sees it too
    assert ids(cli)["sam"] == dee_before
    assert cli.csm("status").returncode == 0


def test_a_user_removed_from_the_settings_is_stopped_and_keeps_the_workspace(cli, web_client):
    cli.given()
    rita_before = ids(cli)["rita"]
    del cli.settings["users"]["sam"]
    cli.write()
    proc = cli.up()
    assert "sam is no longer in the settings: stopping and removing container csm-test-sam" in proc.stderr
    assert cli.container("sam") is None
    assert (cli.user_dir("sam") / "workspace").is_dir()
    assert ids(cli)["rita"] == rita_before
    assert web_client.request("GET", cli.url("sam"), "/").status_code == 404  # the landing page now
    gone = cli.csm("logs", "sam")
    assert gone.returncode == 2 and "no user 'sam'" in gone.stderr


def test_logs_show_code_server(cli):
    cli.given()
    proc = cli.csm("logs", "rita", "--tail", "50")
    assert proc.returncode == 0
    assert "HTTP server listening" in proc.stdout + proc.stderr


def test_down_stops_everything_and_keeps_workspaces(cli):
    cli.given()
    cli.exec("rita", "echo kept over down > ~/project/down.txt")
    env_file = Path(cli.plan.runtimeDir) / "rita.config.env"
    assert env_file.exists()
    proc = cli.csm("down")
    assert proc.returncode == 0, proc.stderr
    assert cli.container("rita") is None
    assert not (cli.state / "nginx.pid").exists() and port_free("0.0.0.0", cli.http_port)
    assert not env_file.exists()
    assert (cli.user_dir("rita") / "workspace" / "down.txt").read_text() == "kept over down\n"
    status = cli.csm("status")
    assert status.returncode == 1 and "absent" in status.stdout and "not running" in status.stdout
    logs = cli.csm("logs", "rita")
    assert logs.returncode == 1 and "rita has no container" in logs.stderr


def test_up_after_down_brings_the_same_work_back(cli, web_client):
    cli.given()
    cli.exec("rita", "echo kept over down and up > ~/project/again.txt")
    assert cli.csm("down").returncode == 0
    cli.up()
    assert cli.exec("rita", "cat ~/project/again.txt") == "kept over down and up\n"
    cookie = web_client.login(cli.url("rita"), cli.passwords["rita"])
    assert "workbench" in web_client.workbench(cli.url("rita"), cookie)


def test_a_rebuilt_image_under_the_same_name_recreates_the_containers(live_stack_factory):
    """`make image` keeps the name and changes the image: `csm up` must notice."""
    tag = f"localhost/code-server-multi:csm-test-{os.getpid()}"
    subprocess.run(["podman", "tag", IMAGE, tag], check=True)
    scratch = None
    try:
        stack = live_stack_factory(["ira"], extra_settings={"image": tag})
        assert stack.stack.up() == {"ira": "unchanged"}
        scratch = subprocess.run(
            ["podman", "create", "--pull=never", IMAGE], check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run(["podman", "commit", "-q", scratch, tag], check=True, capture_output=True)
        assert stack.stack.up() == {"ira": "recreated"}
        assert stack.stack.up() == {"ira": "unchanged"}
        stack.close()
    finally:
        if scratch:
            subprocess.run(["podman", "rm", "--force", scratch], capture_output=True)
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True)
