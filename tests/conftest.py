"""Fixtures shared by every test directory.

live_stack (session): the portable stack, live, with two users `ada` and `bo` on
domain `code.localhost`, behind nginx on a free port. Its attributes:

    .plan .stack (csm.runner.stack.Stack) .http_port .users (names) .state_dir
    .url(user)       -> "http://<user>.code.localhost:<port>"
    .password(user)  -> the plaintext password (generated for this session)
    .workspace(user) -> host path of the user's workspace (~/project inside)
    .home(user)      -> host path of the user's home (config) directory
    .settings        -> the settings dict the plan was made from

It fails (never skips) when the image is missing: run `make image`.

web_client (session): a small browser-less client for the runner's own tests: log
in through nginx, fetch the workbench, open VS Code's WebSocket. It connects to
127.0.0.1 (Python does not resolve *.localhost) and sends the real Host/Origin.

stack_kit (session): the helpers the fixtures use (free_port, fresh_base_dir,
stack_settings, write_password, require_image, gixy_issues), for tests that run their own stack.

live_stack_factory (session): more stacks, e.g. with extra settings. Use user
names no other live stack of the session uses (container names are global), and
stop the stack when your tests are done with it:

    @pytest.fixture(scope="module")
    def fake_ai_stack(live_stack_factory):
        stack = live_stack_factory(users=["cy"], extra_settings={
            "opencode": {"provider": {...}, "model": "fake/fake-model"},
            "users": {"cy": {"environmentFiles": ["/path/to/keys.env"]}},
        }, tls=False)
        yield stack
        stack.close()

extra_settings is merged into the base settings (dicts merge key by key, anything
else replaces). tls=True also serves HTTPS on .tls_port with a local CA
(.ca_file; .url() then gives the https address). Stacks still running at the end
of the session are stopped there; their directories (under /var/tmp, because the
containers' mapped users cannot traverse /tmp/pytest-of-root) are deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from csm.checks import http, workbench
from csm.plan import nix_environment
from csm.testing import stacks
from csm.testing.stacks import (
    IMAGE,
    ImageMissing,
    ThrowawayStack,
    free_port,
    fresh_base_dir,
    merge,
    stack_settings,
    write_password,
)

DOMAIN = stacks.DOMAIN

# Every nix-instantiate the tests run, directly or through csm, evaluates the way the
# runner does: the same on a fresh host as on one where someone created `nixbld`.
os.environ.update(nix_environment())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Live tests never skip: wherever `make test` runs them the stack runs, so a skip
    would hide a test that did not happen. It is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("live") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"a live test was skipped ({reason}); live tests must run wherever the stack runs"


def require_image(image: str = IMAGE) -> None:
    try:
        stacks.require_image(image)
    except ImageMissing as e:
        pytest.fail(f"{e} (live tests never skip)")


def gixy_issues(conf: Path) -> list:
    """What gixy (as NixOS runs it on every nginx config) finds in a config."""
    gixy = Path(sys.executable).with_name("gixy")
    proc = subprocess.run([str(gixy), "-f", "json", str(conf)], capture_output=True, text=True)
    issues = json.loads(proc.stdout or "null")
    assert isinstance(issues, list), f"gixy failed: {proc.stderr}"
    return issues


@pytest.fixture(scope="session", autouse=True)
def no_disk_left_mounted(tmp_path_factory):
    """What this session's tests mount (users' disks, workspaceBase made shared) below
    their own directories (throwaway stacks, pytest's tmp_path), they unmount."""
    yield
    own = [str(d) for d in [tmp_path_factory.getbasetemp(), *stacks.MADE]]
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    left = [p for p in points if any(p == d or p.startswith(d + "/") for d in own)]
    assert not left, f"the tests left these mounted: {left}"


@pytest.fixture(scope="session")
def live_stack_factory():
    started: list[ThrowawayStack] = []
    names: set[str] = set()

    def start(users: list[str], extra_settings: dict | None = None, tls: bool = False) -> ThrowawayStack:
        require_image()
        clash = names & set(users)
        if clash:
            raise ValueError(f"users {sorted(clash)} already belong to a live stack of this session; pick other names")
        stack = ThrowawayStack(users, extra_settings, tls)
        names.update(users)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.close()


@pytest.fixture(scope="session")
def live_stack(live_stack_factory) -> ThrowawayStack:
    return live_stack_factory(["ada", "bo"])


# ---- a browser-less client --------------------------------------------------------


class WebClient:
    """The runner tests' client, on csm.checks.http's transport: connects to 127.0.0.x
    whatever the name, sends the real Host and Origin."""

    def __init__(self, ca_file: str | Path | None = None, source: str | None = None):
        self.ca_file, self.source = ca_file, source

    def target(self, url: str, password: str | None = None) -> http.Target:
        return http.Target(
            url,
            password,
            connect_ip="127.0.0.1",
            source_address=self.source,
            ca_file=str(self.ca_file) if self.ca_file else None,
        )

    def request(self, method: str, url: str, path: str = "/", cookie: str | None = None, **kwargs):
        return http._http(self.target(url), method, path, cookie=cookie, **kwargs)

    def login(self, url: str, password: str) -> str:
        """The session cookie after logging in with the right password."""
        return self.target(url, password).session()

    def workbench(self, url: str, cookie: str) -> str:
        """The workbench page, following code-server's redirect to the folder it opens."""
        path = "/"
        for _ in range(3):
            r = self.request("GET", url, path, cookie=cookie)
            if r.status_code not in (301, 302, 303, 307, 308):
                break
            location = urlsplit(r.headers["Location"])
            assert location.netloc in ("", urlsplit(url).netloc), f"redirected away to {r.headers['Location']}"
            path = "/" + (location.path or "").lstrip("./") + (f"?{location.query}" if location.query else "")
        assert r.status_code == 200, f"GET {url}{path} answered {r.status_code}"
        return r.text

    def vscode_handshake(self, url: str, cookie: str) -> dict:
        """Open the workbench's WebSocket, send VS Code's auth control message and
        return the server's first control message ({"type": "sign", ...})."""
        ws = http._ws(self.target(url), workbench._vscode_path(), cookie=cookie)
        try:
            return workbench._vscode_handshake(ws)
        finally:
            ws.close()


@pytest.fixture(scope="session")
def web_client() -> WebClient:
    return WebClient()


@pytest.fixture(scope="session")
def stack_kit():
    return types.SimpleNamespace(
        free_port=free_port,
        fresh_base_dir=fresh_base_dir,
        stack_settings=stack_settings,
        write_password=write_password,
        require_image=require_image,
        WebClient=WebClient,
        gixy_issues=gixy_issues,
        merge=merge,
    )


@pytest.fixture(scope="session")
def _team_plan():
    from csm import plan as planlib

    return planlib.load(Path(__file__).resolve().parent.parent / "examples" / "team.nix")


@pytest.fixture
def planned_plan(_team_plan):
    """A copy of a real plan (examples/team.nix), for a test to change."""
    import copy

    return copy.deepcopy(_team_plan)


@pytest.fixture
def planned_user(_team_plan):
    """A copy of a real plan's user (ada of examples/team.nix), for a test to change."""
    import copy

    return copy.deepcopy(_team_plan.users["ada"])


@pytest.fixture(scope="session")
def host_accounts(_team_plan):
    """The accounts `csm up` creates first (the gate's, and nginx workers' group): a plan
    names its directories' owners by them, and a fresh host has neither."""
    from csm.runner import gate

    gate.ensure_accounts(_team_plan)
