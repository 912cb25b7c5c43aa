"""Checks of idle stop and wake after login, the same on the portable stack and in
the NixOS VM test.

Host checks take `run` (see csm.checks.host) and the plan; the checks through nginx
take `run` on the machine that makes the request (the client in a VM test) and use
curl, given the user's address (`url`), and where needed `connect_ip` (the address
nginx listens on, for names the machine does not resolve), `ca_file`, `source` (a
local address to send from) and `cookie` (the session, "name=value", from log_in).

    cookie = idle.log_in(client.succeed, url, "/tmp/cy.password")
    print(idle.stopped_for_being_idle(server.succeed, plan, plan.users["cy"]))
    print(idle.stranger_starts_nothing(client.succeed, server.succeed, url, plan.users["cy"], 60))
    print(idle.visit_shows_starting_page(client.succeed, url, "cy", cookie=cookie))
    print(idle.woken(client.succeed, url, cookie=cookie))
"""

from __future__ import annotations

import shlex
import time

from csm.checks import CheckFailed
from csm.checks.facts import gate_path, health_path
from csm.plan_types import Plan, User
from csm.waiting import wait_until

PODMAN = "podman"


def _running(run, user: User) -> str:
    """ "true", "false", or "absent" (NixOS units remove their container on stop)."""
    name = shlex.quote(user.container.name)
    return run(
        f"{PODMAN} container inspect --format '{{{{.State.Running}}}}' {name} 2>/dev/null || echo absent"
    ).strip()


def _marked(run, plan: Plan, user: User) -> bool:
    marker = shlex.quote(f"{plan.idle.stateDir}/{user.name}.json")
    return run(f"test -f {marker} && echo yes || echo no").strip() == "yes"


def stopped_for_being_idle(run, plan: Plan, user: User, timeout: float = 300) -> str:
    """The container stops by itself within idleStopAfter plus a few checks, marked as idle."""
    stop_after = user.idle.stopAfterSeconds
    start = time.monotonic()
    try:
        wait_until(
            lambda: _running(run, user) != "true" and _marked(run, plan, user),
            timeout,
            f"{user.name} stopped for being idle",
            interval=1,
        )
    except TimeoutError:
        raise CheckFailed(f"{user.name} (idleStopAfter {stop_after} s) still runs after {timeout:.0f} s") from None
    seen = time.monotonic() - start
    return f"{user.name} was stopped for being idle ({stop_after} s idle; seen {seen:.0f} s after the check began)"


def keeps_running(run, user: User, seconds: float) -> str:
    """The container is not stopped during `seconds` (e.g. while a job keeps it busy)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        state = _running(run, user)
        if state != "true":
            raise CheckFailed(
                f"{user.name}'s container stopped ({state}) after {time.monotonic() - start:.0f} s, "
                "although it was busy"
            )
        time.sleep(1)
    return f"{user.name} kept running for {seconds:.0f} s"


def _curl(
    connect_ip: str | None = None,
    ca_file: str | None = None,
    source: str | None = None,
    cookie: str | None = None,
    max_time: float = 10,
) -> list[str]:
    argv = ["curl", "-sS", "--max-time", str(max_time), "-i"]
    if cookie:
        argv += ["--cookie", cookie]
    if connect_ip:
        argv += ["--connect-to", f"::{connect_ip}:"]
    if ca_file:
        argv += ["--cacert", ca_file]
    if source:
        argv += ["--interface", source]
    return argv


def _answer(run, command: str, url: str) -> tuple[int, dict, str]:
    out = run(command + " || printf 'HTTP/1.1 000 no-answer\\r\\n\\r\\n'")
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise CheckFailed(f"curl {url} printed {out[:200]!r}") from None
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def get(run, url: str, **connection) -> tuple[int, dict, str]:
    """One GET with curl: (status, headers with lower-case names, body); status 0
    when nothing answered within max_time."""
    return _answer(run, shlex.join(_curl(**connection) + [url]), url)


def log_in(run, url: str, password_file: str, **connection) -> str:
    """Log in at the gate with the password in password_file (on the machine `run`
    runs on: never on a command line); the session cookie as "name=value"."""
    origin = url.rstrip("/")
    argv = _curl(**connection) + [
        "-H",
        f"Origin: {origin}",
        "--data-urlencode",
        f"password@{password_file}",
        origin + gate_path("login"),
    ]
    status, headers, body = _answer(run, shlex.join(argv), url)
    cookie = headers.get("set-cookie", "").split(";")[0]
    if status != 303 or "=" not in cookie:
        raise CheckFailed(f"logging in at {origin} gave HTTP {status} ({headers.get('x-csm-login')}), no session")
    return cookie


def stranger_starts_nothing(
    run, server_run, url: str, user: User, seconds: float = 60, every: float = 4, **connection
) -> str:
    """Visits without a session to a stopped workspace, for `seconds`, get the login
    page (401) and start nothing: the container stays stopped all along."""
    start, visits = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        for path in ("/", health_path(), gate_path("wake"), gate_path("ready")):
            status, headers, body = get(run, url.rstrip("/") + path, **connection)
            visits += 1
            if status != 401:
                raise CheckFailed(
                    f"a visit to {path} without a session answered {status} "
                    f"({headers.get('x-csm-wake')}), not the login page"
                )
        if _running(server_run, user) == "true":
            raise CheckFailed(f"{user.name}'s container started after {visits} visits without a session")
        time.sleep(every)
    return f"{visits} visits without a session in {seconds:.0f} s got the login page; {user.name} stayed stopped"


def visit_shows_starting_page(run, url: str, name: str, **connection) -> str:
    """A logged-in visit (connection's cookie) to a stopped user starts them and gets
    the starting page: 503 with Retry-After."""
    status, headers, body = get(run, url, **connection)
    if status != 503 or headers.get("x-csm-wake") != "starting" or f"Starting {name}&#8217;s workspace" not in body:
        raise CheckFailed(
            f"{url} answered {status} ({headers.get('x-csm-wake')}) {body[:200]!r}, not the starting page"
        )
    if not headers.get("retry-after", "").isdigit():
        raise CheckFailed(f"the starting page has no Retry-After ({headers})")
    return f"{url} answers 503 'Starting {name}'s workspace…' with Retry-After {headers['retry-after']}"


def told_ready(run, url: str, plan: Plan, timeout: float = 300, **connection) -> str:
    """The starting page's question (the plan's gate.paths.ready, which the gate holds
    while the container starts) is answered "ready" once code-server answers, and the
    address then gives code-server's own page, not the starting page or a hang."""
    path, hold = plan.gate.paths.ready, plan.gate.readyHoldSeconds
    start = time.monotonic()
    answer: tuple = ()

    def failed() -> CheckFailed:
        return CheckFailed(
            f"{path} answered {answer[0]} ({answer[1]}) {time.monotonic() - start:.0f} s after the "
            "first question, not 'ready' once code-server answers"
        )

    def ready() -> bool:  # the gate holds each question up to `hold`: no pause between them
        nonlocal answer
        status, headers, _ = get(run, url.rstrip("/") + path, **connection, max_time=hold + 5)
        answer = (status, headers.get("x-csm-wake"))
        if answer != (200, "ready") and answer[1] != "starting":
            raise failed()
        return answer == (200, "ready")

    try:
        wait_until(ready, timeout, f"{path} ready", interval=0)
    except TimeoutError:
        raise failed() from None
    held = time.monotonic() - start
    status, headers, _ = get(run, url, **connection, max_time=5)
    if status not in (200, 302) or "x-csm-wake" in headers:
        raise CheckFailed(f"{path} said ready, but {url} then answered {status} ({headers.get('x-csm-wake')})")
    return f"{path} said ready after {held:.1f} s, and {url} then answered {status} from code-server"


def woken(run, url: str, timeout: float = 300, **connection) -> float:
    """Seconds until code-server itself answers the address again (the workbench, for
    the connection's cookie), asking the address itself (the starting page asks the gate
    instead, see told_ready). A request that gets no answer is given up after 1.5 s."""
    start = time.monotonic()
    answer: tuple = ()

    def code_server() -> bool:
        nonlocal answer
        status, headers, _ = get(run, url, **connection, max_time=1.5)
        answer = (status, headers.get("x-csm-wake", "not the gate"))
        return status in (200, 302) and "x-csm-wake" not in headers

    try:
        wait_until(code_server, timeout, f"{url} answered by code-server", interval=0.25)
    except TimeoutError:
        raise CheckFailed(
            f"{url} did not turn into code-server within {timeout:.0f} s; it last answered {answer[0]} ({answer[1]})"
        ) from None
    return time.monotonic() - start


def wake_refused(run, url: str, page: str, **connection) -> str:
    """The gate answers a logged-in visit with `page` (failed, stopped) and starts nothing."""
    status, headers, body = get(run, url, **connection)
    if headers.get("x-csm-wake") != page:
        raise CheckFailed(f"{url} answered {status} ({headers.get('x-csm-wake')}), not the {page} page")
    return f"{url} answers {status} with the {page} page (Retry-After {headers.get('retry-after', '-')})"
