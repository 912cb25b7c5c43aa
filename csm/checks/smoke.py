"""`csm smoke URL --user NAME`: prove a running deployment works, from outside.

Runs the deployment checks of csm.checks.workbench and csm.checks.proxy against a
real server (through its proxy, as a browser would) and prints one line per check;
exits 0 only when every check passed, 1 when one failed, 2 on bad arguments.

The password comes from --password-file or standard input, never the command line.
The run spends one of code-server's wrong-password allowances for the user (two a
minute, twelve more an hour).
"""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from csm.checks import http, login, proxy, workbench

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own exit code is 2 as well; keep the hint short
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"csm smoke: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="csm smoke",
        description="Check a running code-server-multi deployment from outside, through its proxy. "
        "Prints one line per check; exits 0 only if all pass.",
    )
    p.add_argument(
        "url",
        metavar="URL",
        help="the deployment's address, https://code.example.org, or the user's, https://ada.code.example.org",
    )
    p.add_argument("--user", required=True, help="the user whose workspace to log in to")
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="file holding the user's password (default: read it from standard input)",
    )
    p.add_argument(
        "--other-user",
        metavar="NAME",
        help="another user's name: check that this user's session does not open theirs (their password is not needed)",
    )
    p.add_argument(
        "--connect",
        metavar="IP",
        help="connect to this address instead of resolving the names (*.localhost goes to 127.0.0.1 by itself)",
    )
    p.add_argument("--ca-file", metavar="FILE", help="trust this CA certificate for https")
    p.add_argument(
        "--full",
        action="store_true",
        help="also keep a WebSocket idle for 75 s, and send a burst of logins until the "
        "proxy limits them (this machine's address then waits a minute)",
    )
    p.add_argument(
        "--lockout",
        metavar="A,B,C,D,E",
        help="instead, check the login limits from five local addresses of this machine: a class "
        "of 20 logs in from A, B, C and D guess wrong passwords for 3 minutes while the "
        "owner logs in from E every 20 s; before that, 60 wrong passwords at once from B, other "
        "spellings of the login path from D and cross-site logins from C (spends A's to D's "
        "wrong-password allowance for an hour)",
    )
    p.add_argument(
        "--shared-prefix",
        metavar="A,B,C",
        help="instead, check that addresses of one IPv6 network (A, B, C...: local addresses of "
        "this machine in one /64) share one wrong-password allowance; the owner logs in from "
        "this machine's own address (spends that network's allowance for an hour)",
    )
    return p


def deployment_checks(
    other_user: str | None = None, landing_html: str | None = None, full: bool = False
) -> list[tuple[str, Callable[[http.Target], str]]]:
    """The checks `csm smoke` runs, in order, as (name, check(target)).

    other_user: another user's name, for the cross-user check (left out without it).
    landing_html: the plan's landing page, compared exactly when given.
    full: also the slow or disruptive ones: a WebSocket idle for 75 s, and a burst of
    logins that gets this machine's address rate-limited for a minute (last, so nothing
    after it is limited). The upload check needs an app in the container, so it is
    not among these."""
    checks: list[Callable[[http.Target], str]] = [
        workbench.healthz_answers,
        workbench.login_page_served,
        workbench.wrong_password_gives_no_session,
        workbench.right_password_gives_session,
        workbench.websocket_speaks_vscode_protocol,
        workbench.foreign_origin_websocket_refused,
        workbench.websocket_without_session_refused,
    ]
    if other_user:
        checks.append(functools.partial(workbench.session_does_not_open_other_user, other_user=other_user))
    checks += [
        functools.partial(proxy.unknown_subdomain_gets_landing_page, landing_html=landing_html),
        functools.partial(proxy.unknown_host_gets_landing_page, landing_html=landing_html),
    ]
    if full:
        checks += [proxy.idle_websocket_stays_open, proxy.login_attempts_rate_limited]
    return [(getattr(c, "func", c).__name__, c) for c in checks]


def lockout_checks(addresses: list[str]) -> list[tuple[str, Callable[[http.Target], str]]]:
    """The login-limit checks from five local addresses, as (name, check(target))."""
    if len(addresses) != 5 or len(set(addresses)) != 5:
        raise ValueError(f"--lockout needs five different local addresses, got {addresses}")
    classroom, *attackers, owner = addresses
    racer, cross, speller = attackers
    return [
        ("login_page_loads_not_limited", lambda t: login.login_page_loads_not_limited(t.from_source(classroom))),
        ("classroom_logs_in", lambda t: login.classroom_logs_in(t.from_source(classroom))),
        (
            "concurrent_guesses_charged_first",
            lambda t: login.concurrent_guesses_charged_first(t.from_source(racer), owner=t.from_source(owner)),
        ),
        (
            "login_path_variants_check_nothing",
            lambda t: login.login_path_variants_check_nothing(t.from_source(speller)),
        ),
        ("cross_site_login_refused", lambda t: login.cross_site_login_refused(t.from_source(cross))),
        (
            "owner_never_locked_out",
            lambda t: login.owner_never_locked_out(t.from_source(owner), [t.from_source(a) for a in attackers]),
        ),
    ]


def user_url(url: str, user: str) -> str:
    """The user's address from the deployment's (or the user's own) address."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an address like https://code.example.org")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give only scheme, host and port, like https://code.example.org")
    host = parts.hostname.lower()
    if not host.startswith(f"{user}."):
        host = f"{user}.{host}"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def read_password(path: str | None) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"cannot read the password file {path}: {e.strerror}") from e
    elif sys.stdin.isatty():
        text = getpass.getpass("password: ")
    else:
        text = sys.stdin.readline()
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError("the password is empty; give it in --password-file or on standard input")
    return password


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        target = http.Target(
            user_url(args.url, args.user),
            read_password(args.password_file),
            connect_ip=args.connect,
            ca_file=args.ca_file,
        )
    except ValueError as e:
        print(f"csm smoke: {e}", file=sys.stderr)
        return USAGE_ERROR
    print(f"checking {target.url} as {args.user}", file=sys.stderr)
    if args.lockout and args.shared_prefix:
        print("csm smoke: give --lockout or --shared-prefix, not both", file=sys.stderr)
        return USAGE_ERROR
    if args.lockout:
        try:
            checks = lockout_checks([a.strip() for a in args.lockout.split(",")])
        except ValueError as e:
            print(f"csm smoke: {e}", file=sys.stderr)
            return USAGE_ERROR
    elif args.shared_prefix:
        guessers = [a.strip() for a in args.shared_prefix.split(",")]
        checks = [
            (
                "one_prefix_shares_an_allowance",
                lambda t: login.one_prefix_shares_an_allowance([t.from_source(a) for a in guessers], owner=t),
            )
        ]
    else:
        checks = deployment_checks(other_user=args.other_user, full=args.full)
    failed = 0
    for name, check in checks:
        try:
            print(f"PASS {name}: {check(target)}", flush=True)
        except Exception as e:  # a check's failure, or anything else it ran into
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {detail}", flush=True)
    if not args.other_user and not args.lockout and not args.shared_prefix:
        print("SKIP session_does_not_open_other_user: give --other-user NAME to check it", flush=True)
    print(f"{len(checks) - failed} of {len(checks)} checks passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
