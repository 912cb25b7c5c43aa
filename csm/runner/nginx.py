"""nginx: the plan's servers rendered into one nginx.conf, run as the runner's own
master process (`nginx -c <state>/nginx.conf -p <state>`), stopped by its pid file
(runner/supervisor.py). Its certificate comes from runner/local_ca.py.

Everything inside the servers comes from the plan. The skeleton around them (pid,
logs, temp paths, `server_tokens off`) is what NixOS's nginx module writes around
the same servers, pointed at the state directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from csm.plan_types import Plan, User

from ..waiting import wait_until
from . import BadInput, HostNotReady, RunnerError
from .local_ca import Tls
from .supervisor import Supervised

INDENT = "    "
# NixOS's services.nginx defaults (sslProtocols, sslCiphers: Mozilla's intermediate list).
SSL_PROTOCOLS = "TLSv1.2 TLSv1.3"
SSL_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def quoted(path: str | Path) -> str:
    """A path as an nginx string: quoted, so spaces and semicolons stay in it.
    nginx would still expand a `$` and has no escape for it, so such paths are refused."""
    text = str(path)
    if any(c in text for c in '$"\\\n'):
        raise BadInput(
            f"the path {text!r} holds a character nginx cannot take in its config "
            "($, a double quote, a backslash or a newline); choose a state directory without one"
        )
    return f'"{text}"'


def _block(head: str, lines: list[str], depth: int) -> list[str]:
    pad = INDENT * depth
    return [f"{pad}{head} {{"] + [f"{pad}{INDENT}{ln}" for ln in lines] + [f"{pad}}}"]


def _listen(port: int, tls: bool, default: bool = False) -> str:
    return f"listen {port}{' ssl' if tls else ''}{' default_server' if default else ''};"


def _user_server(user: User, listen: str, extra: list[str]) -> list[str]:
    ngx = user.nginx
    body = [listen, f"server_name {ngx['serverName']};"] + ngx["config"] + extra
    for location, loc in ngx["locations"].items():
        proxy = [f"proxy_pass {loc['proxyPass']};"] if loc["proxyPass"] else []
        body += _block(f"location {location}", proxy + loc["config"], 0)
    return _block("server", body, 1)


def _default_server(plan: Plan, listen: str, landing: Path, extra: list[str]) -> list[str]:
    default = plan.nginx["defaultServer"]
    body = [listen, "server_name _;", f"root {quoted(landing)};"] + default["config"] + extra
    for location, lines in default["locations"].items():
        body += _block(f"location {location}", lines, 0)
    return _block("server", body, 1)


def render(plan: Plan, state_dir: Path, http_port: int, tls: Tls | None = None) -> str:
    """nginx.conf for the plan: one server per user, the default server with the
    landing page, and with TLS the same servers on tls.port plus a redirect."""
    state = Path(state_dir)
    landing = state / "landing"
    http = [
        "server_tokens off;",
        "types { text/html html; }",
        "default_type application/octet-stream;",
        f"access_log {quoted(state / 'logs' / 'access.log')};",
    ] + [
        f"{kind}_temp_path {quoted(state / 'tmp' / kind)};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]
    http += [f"server_names_hash_bucket_size {plan.nginx['serverNamesHashBucketSize']};"]
    http += plan.nginx["httpConfig"]
    if tls:
        http += [
            f"ssl_certificate {quoted(tls.certificate)};",
            f"ssl_certificate_key {quoted(tls.key)};",
            f"ssl_protocols {SSL_PROTOCOLS};",
            f"ssl_ciphers {SSL_CIPHERS};",
        ]
        tls_lines = plan.nginx["tlsConfig"]
        suffix = "" if tls.port == 443 else f":{tls.port}"
        servers = _block(
            "server",
            [
                _listen(http_port, False, default=True),
                "server_name _;",
                f"return 301 https://$host{suffix}$request_uri;",
            ],
            1,
        )
        servers += _default_server(plan, _listen(tls.port, True, default=True), landing, tls_lines)
        for user in plan.users.values():
            servers += _user_server(user, _listen(tls.port, True), tls_lines)
    else:
        servers = _default_server(plan, _listen(http_port, False, default=True), landing, [])
        for user in plan.users.values():
            servers += _user_server(user, _listen(http_port, False), [])
    ngx = plan.nginx
    lines = [
        "# Rendered by csm from the plan; `csm up` rewrites it.",
        # Workers in the plan's proxy group: only they (and root) reach the sockets.
        f"user {plan.gate.proxyGroup} {plan.gate.proxyGroup};",
        *ngx["mainConfig"],
        f"pid {quoted(state / 'nginx.pid')};",
        f"error_log {quoted(state / 'logs' / 'error.log')};",
        f"events {{ worker_connections {ngx['workerConnections']}; }}",
        "http {",
        *(INDENT + ln for ln in http),
        *servers,
        "}",
    ]
    return "\n".join(lines) + "\n"


def binary() -> str:
    found = shutil.which("nginx")
    if not found:
        raise HostNotReady("nginx is not installed; run scripts/install-deps (Debian: apt-get install nginx)")
    return found


def _args(state: Path, conf: Path) -> list[str]:
    # -e: errors before the config is read go to our log, not the distribution's.
    return [binary(), "-c", str(conf), "-p", f"{state}/", "-e", str(state / "logs" / "error.log")]


def prepare(state: Path, plan: Plan) -> None:
    """Directories nginx writes to, and the landing page its workers read. The logs
    (who logged in from where, every address asked for) are root's: the master opens them."""
    (state / "tmp").mkdir(mode=0o755, exist_ok=True)
    (state / "logs").mkdir(mode=0o750, exist_ok=True)
    os.chmod(state / "logs", 0o750)
    landing = state / "landing"
    landing.mkdir(mode=0o755, exist_ok=True)
    os.chmod(landing, 0o755)
    page = landing / "index.html"
    if not page.exists() or page.read_text() != plan.nginx["defaultServer"]["landingHtml"]:
        page.write_text(plan.nginx["defaultServer"]["landingHtml"])
    os.chmod(page, 0o644)


def test(state: Path, conf: Path) -> None:
    proc = subprocess.run(_args(state, conf) + ["-t", "-q"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunnerError(f"nginx rejected the rendered config {conf}:\n{proc.stderr.strip()}")


def supervised(state: Path) -> Supervised:
    # nginx writes the pid file; only our master names our config
    # ("nginx: master process /usr/sbin/nginx -c <state>/nginx.conf ...").
    return Supervised(state / "nginx.pid", ("nginx", f"-c {state / 'nginx.conf'} "))


def running_pid(state: Path) -> int | None:
    """The pid of the nginx master this state directory started, if it runs."""
    found = supervised(state).running()
    return found[0] if found else None


def start(state: Path) -> int:
    conf = state / "nginx.conf"
    proc = subprocess.run(_args(state, conf), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunnerError(f"nginx did not start:\n{proc.stderr.strip()}\n(log: {state}/logs/error.log)")
    try:
        return supervised(state).wait_running(5, "nginx's pid file")
    except TimeoutError:
        raise RunnerError(f"nginx started but wrote no pid file; see {state}/logs/error.log") from None


def _workers(master: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.add(int(stat.parent.name))
    return found


def reload(state: Path, timeout: float = 10) -> None:
    """Load the new config; returns once workers running it have started."""
    pid = running_pid(state)
    if not pid:
        return
    old = _workers(pid)
    os.kill(pid, signal.SIGHUP)
    with contextlib.suppress(TimeoutError):  # old workers serve on; the next request shows any error
        wait_until(lambda: _workers(pid) - old, timeout, "nginx's new workers", interval=0.05)


def stop(state: Path, timeout: float = 10) -> bool:
    """Stop our nginx by its pid; True if one was running."""
    pid = running_pid(state)
    if not pid:
        return False
    # graceful first: finish the requests in flight
    supervised(state).stop(pid, signal.SIGQUIT, timeout, signal.SIGTERM)
    return True
