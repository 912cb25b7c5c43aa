"""The gate, live: the one front door in front of every workspace (csm/gate).

- Wrong passwords are charged before they are checked: 60 sent at once from one
  address get at most the allowance checked, the same through other spellings of
  the login path (which check nothing), and the owner gets in from another address.
- A login form posted from another site is refused, right password or not.
- code-server has no TCP port on the host; its socket refuses ordinary host accounts.
- The session is 256 random bits kept hashed: not the password hash, not in any file
  of the state; `csm passwd` and `csm sessions --revoke` end it; ada's opens nothing of
  bo's; logout ends it; it survives `csm down` and `up`.
- The gate runs as its own account, owns only its own directories, and cannot start
  or stop a container except through the root side's two verbs.
- A link a user plants in their own socket directory never leads nginx to another
  user's code-server.

On a stack of its own (users gil, hal), with 127.0.0.x addresses no other test uses."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from csm import sockets
from csm.checks import commands, facts, host, http, login
from csm.gate import control
from csm.runner import passwd

pytestmark = pytest.mark.live
RUN = commands.subprocess_runner


@pytest.fixture(scope="module")
def pair(live_stack_factory):
    stack = live_stack_factory(["gil", "hal"])
    yield stack
    stack.close()


def target(stack, user: str, source: str | None = None) -> http.Target:
    return http.Target(stack.url(user), stack.password(user), source_address=source)


def test_sixty_wrong_passwords_at_once_get_at_most_the_allowance_checked(pair):
    print(
        login.concurrent_guesses_charged_first(
            target(pair, "gil", "127.0.0.81"), owner=target(pair, "gil", "127.0.0.82"), guesses=60
        )
    )


def test_other_spellings_of_the_login_path_check_nothing(pair):
    print(login.login_path_variants_check_nothing(target(pair, "gil", "127.0.0.83")))


def test_a_login_posted_from_another_site_is_refused(pair):
    print(login.cross_site_login_refused(target(pair, "gil", "127.0.0.84")))


def test_no_tcp_port_and_the_socket_refuses_other_host_accounts(pair):
    for name in ("gil", "hal"):
        user = pair.plan.users[name]
        print(host.no_tcp_port(RUN, user))
        print(host.socket_only_for_root_and_nginx(RUN, user, account="nobody"))
    gate = pair.plan.gate
    probe = ["runuser", "-u", "nobody", "--", "python3", "-c", host.SOCKET_PROBE]
    for where in (gate.socket, gate.control.socket):
        out = subprocess.run(probe + [where], capture_output=True, text=True).stdout.strip()
        assert out == "Permission denied", f"the host account nobody connecting to {where}: {out!r}"
    listeners = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    assert not any(word in listeners for word in ("conmon", "rootlessport", "code-server")), listeners


def _state_files(stack) -> list[Path]:
    roots = [
        stack.state_dir,
        Path(stack.plan.gate.stateDir),
        Path(stack.plan.runtimeDir),
        Path(stack.settings["users"]["gil"]["hashedPasswordFile"]).parent,
    ]
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def test_the_session_is_not_the_hash_and_not_in_any_file(pair):
    t = target(pair, "gil", "127.0.0.85")
    cookie = t.session()
    hashed = Path(pair.plan.users["gil"].password.file).read_text().strip()
    assert cookie != hashed and len(cookie) >= 43, "256 random bits, not the password hash"
    for path in _state_files(pair):
        assert cookie.encode() not in path.read_bytes(), f"{path} holds the session value"
    assert http._has_session(t, cookie)
    assert not http._has_session(t.sibling("hal"), cookie), "gil's session opens hal's workspace"


def test_logout_ends_the_session(pair):
    t = target(pair, "gil", "127.0.0.86")
    cookie = t.session()
    page = http._http(t, "GET", facts.gate_path("logout"), cookie=cookie)
    assert page.status_code == 200 and 'action="/_csm/logout"' in page.text
    refused = http._http(
        t, "POST", facts.gate_path("logout"), cookie=cookie, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403 and http._has_session(t, cookie), "another site ended the session"
    out = http._http(t, "POST", facts.gate_path("logout"), cookie=cookie, headers={"Origin": t.origin})
    assert out.status_code == 303 and "Max-Age=0" in out.headers.get("Set-Cookie", "")
    assert not http._has_session(t, cookie)


def test_sessions_survive_down_and_up_and_are_listed(pair):
    t = target(pair, "hal", "127.0.0.87")
    cookie = t.session()
    pair.stack.down()
    pair.stack.up()
    assert http._has_session(t, cookie), "a session did not survive csm down and up"
    listed = subprocess.run(
        [
            str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "csm"),
            "sessions",
            "hal",
            "--state-dir",
            str(pair.state_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0 and "hal" in listed.stdout, listed.stdout + listed.stderr
    assert cookie not in listed.stdout


def test_csm_sessions_revoke_and_csm_passwd_end_every_session(pair, tmp_path):
    csm = str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "csm")
    t = target(pair, "hal", "127.0.0.88")
    cookie = t.session()
    out = subprocess.run(
        [csm, "sessions", "hal", "--revoke", "--state-dir", str(pair.state_dir)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not http._has_session(t, cookie), "csm sessions --revoke left the session working"
    t._cookie = None
    cookie = t.session()
    new = passwd.generate()
    out = subprocess.run(
        [csm, "passwd", "hal", "--state-dir", str(pair.state_dir)], input=new + "\n", capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert not http._has_session(t, cookie), "csm passwd left the old session working"
    assert http._login(t, t.password)[1] is None, "the old password still logs in"
    assert http._login(t, new)[1] is not None, "the new password does not log in"
    pair._passwords["hal"] = new


def test_the_gate_runs_as_its_own_account_and_only_asks_the_root_side(pair):
    gate = pair.plan.gate
    account = pwd.getpwnam(gate.user)
    pid = int((pair.state_dir / "gate.pid").read_text().split()[0])
    uids = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")][0]
    assert uids.split()[1:] == [str(account.pw_uid)] * 4, uids
    owned = subprocess.run(
        ["find", str(pair.base), "/etc", "/usr", "-xdev", "-user", gate.user], capture_output=True, text=True
    ).stdout.split()
    allowed = (Path(gate.directory), Path(gate.stateDir), pair.state_dir / "credentials")
    for path in owned:
        assert any(Path(path) == a or a in Path(path).parents for a in allowed), f"{gate.user} owns {path}"
    as_gate = ["runuser", "-u", gate.user, "--"]
    for argv in (
        ["podman", "start", pair.container("gil")],
        ["touch", str(pair.state_dir / "x")],
        ["cat", pair.plan.users["gil"].password.file],
    ):
        assert subprocess.run(as_gate + argv, capture_output=True).returncode != 0, f"{gate.user} could {argv}"
    for verb in ("stop", "restart", "exec"):
        with pytest.raises(control.ControlError):
            control.ask(gate.control.socket, verb, "gil")


def test_a_link_planted_in_ones_socket_directory_never_reaches_another_users_code_server(pair):
    """gil, in their own container, puts a symbolic link to hal's socket where their
    code-server's socket was. nginx connects to root's link (csm/sockets.py), so gil's
    session still reaches gil's code-server only: not an app of hal's, not hal's
    workbench, even after root's refresh (the idle service's round, a wake)."""
    gil, hal = pair.plan.users["gil"], pair.plan.users["hal"]
    secret = f"hal-{os.urandom(6).hex()}"
    subprocess.run(
        [
            "podman",
            "exec",
            pair.container("hal"),
            "sh",
            "-c",
            f"mkdir -p /tmp/app && echo {secret} > /tmp/app/secret.txt",
        ],
        check=True,
    )
    subprocess.run(
        [
            "podman",
            "exec",
            "-w",
            "/tmp/app",
            "-d",
            pair.container("hal"),  # hal's app
            "timeout",
            "120",
            "python3",
            "-m",
            "http.server",
            "8124",
        ],
        check=True,
    )
    inside = gil.container.socket
    planted = subprocess.run(
        [
            "podman",
            "exec",
            pair.container("gil"),
            "sh",
            "-c",
            f"mv {inside} {inside}.real && ln -s {hal.socketSource} {inside} && ls -l {inside}",
        ],
        capture_output=True,
        text=True,
    )
    assert planted.returncode == 0, planted.stderr
    try:
        assert not sockets.link(gil), "root linked a symbolic link"
        t = target(pair, "gil", "127.0.0.89")
        for _ in range(3):
            r = http._http(t, "GET", "/proxy/8124/secret.txt", cookie=t.session())
            assert secret not in r.text, "gil's session reached an app in hal's container"
            assert http._has_session(t, t.session()), "gil lost their own workbench"
            time.sleep(1)
    finally:
        subprocess.run(
            ["podman", "exec", pair.container("gil"), "sh", "-c", f"rm -f {inside} && mv {inside}.real {inside}"],
            check=True,
        )
